// The Node SDK's public surface: `import { connect } from 'portcullis/client'`.
export { ERRORS, type ErrorCode, type Retry } from '../protocol.js';
export { DEFAULT_RECONNECT, type ReconnectOptions, type ReconnectPolicy } from './backoff.js';
export { BROKER_PROTOCOL, type ChannelHandler, type ChannelMessage } from './broker.js';
export type { PinMismatchInfo } from './classify.js';
export {
  CLOSED,
  CLOSING,
  Client,
  type ClientEvents,
  type CloseEvent,
  CONNECTING,
  type CredentialUpdate,
  type Message,
  OPEN,
  type OpenEvent,
  type ReadyState,
  type ReconnectingEvent,
} from './client.js';
export { type ConnectOptions, connect, NodeClient, type Pem, type TlsCredentials } from './connect.js';
export { CLIENT_ERRORS, ClientError, type ClientErrorCode, retryOf } from './errors.js';
export { type BaseConnectOptions, CLIENT_DEFAULTS, type Timers } from './options.js';
export { MIN_PINS, type PinScope } from './pins.js';
export { BEARER_PROTOCOL_PREFIX, type TokenProvider, type TokenReason } from './token.js';
