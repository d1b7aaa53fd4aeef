// The public surface both builds share (Node: index.ts, browser: browser.ts).
export { ERRORS, type ErrorCode, type Retry } from '../protocol.js';
export { DEFAULT_RECONNECT, type ReconnectOptions, type ReconnectPolicy } from './backoff.js';
export { BROKER_PROTOCOL, type ChannelHandler, type ChannelMessage } from './broker.js';
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
export { CLIENT_ERRORS, ClientError, type ClientErrorCode, retryOf } from './errors.js';
export { type BaseConnectOptions, CLIENT_DEFAULTS, type Timers } from './options.js';
