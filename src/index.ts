// Public exports only.
export { ConfigError, loadConfig, parseConfig, parseConfigText } from './config/load.js';
export type { Config, ConfigInput, RouteConfig } from './config/schema.js';
export type { Principal } from './core/principal.js';
export { MemoryEngine } from './engine/memory.js';
export type { Engine } from './engine/types.js';
export { ERRORS, type ErrorCode, GatewayError, isErrorCode, type Retry } from './protocol.js';
export { signSessionCookie } from './server/auth/cookie-sign.js';
export { BEARER_PROTOCOL_PREFIX } from './server/auth/token.js';
export {
  createGateway,
  type Gateway,
  type GatewayOptions,
  type GatewayStats,
  type ListenInfo,
} from './server/gateway.js';
