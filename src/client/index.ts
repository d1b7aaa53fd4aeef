// The Node SDK's public surface: `import { connect } from 'portcullis/client'`.

export type { PinMismatchInfo } from './classify.js';
export { type ConnectOptions, connect, NodeClient, type Pem, type TlsCredentials } from './connect.js';
export { MIN_PINS, type PinScope } from './pins.js';
export * from './shared-exports.js';
export { BEARER_PROTOCOL_PREFIX, type TokenProvider, type TokenReason } from './token.js';
