// The one table of failures that the server and the SDK share. Every refusal before the 101 and
// every close after it carries one of these codes; docs/errors.md lists the same codes, and a test
// keeps the two in step. Codes are never renamed.

/** What a client should do after a failure: give up, reconnect with backoff, or refresh credentials first. */
export type Retry = 'never' | 'backoff' | 'refresh';

/** One row of the ERRORS table. `close` is the WebSocket close code used after the 101. */
export interface ErrorSpec {
  readonly status: number;
  readonly close: number;
  readonly retry: Retry;
  readonly message: string;
}

/** Every failure Portcullis reports, mapped to the wire in this one place. */
export const ERRORS = {
  // Handshake shape (RFC 6455 section 4.2.1)
  BAD_REQUEST: { status: 400, close: 1002, retry: 'never', message: 'Malformed request' },
  METHOD_NOT_ALLOWED: { status: 405, close: 1002, retry: 'never', message: 'Only GET can be upgraded' },
  HTTP_VERSION_NOT_SUPPORTED: { status: 400, close: 1002, retry: 'never', message: 'HTTP/1.1 is required' },
  UPGRADE_REQUIRED: {
    status: 426,
    close: 1002,
    retry: 'never',
    message: 'This route accepts WebSocket upgrades only',
  },
  BAD_UPGRADE: { status: 400, close: 1002, retry: 'never', message: 'Upgrade must be websocket' },
  UNSUPPORTED_VERSION: {
    status: 426,
    close: 1002,
    retry: 'never',
    message: 'Sec-WebSocket-Version must be 13',
  },
  BAD_KEY: { status: 400, close: 1002, retry: 'never', message: 'Missing or invalid Sec-WebSocket-Key' },
  DUPLICATE_HEADER: { status: 400, close: 1002, retry: 'never', message: 'A security header was sent twice' },
  BODY_NOT_ALLOWED: {
    status: 400,
    close: 1002,
    retry: 'never',
    message: 'An upgrade request must not have a body',
  },
  BAD_PATH: {
    status: 400,
    close: 1002,
    retry: 'never',
    message: 'The request path is not in canonical form',
  },
  URI_TOO_LONG: { status: 414, close: 1002, retry: 'never', message: 'The request target is too long' },
  HEADERS_TOO_LARGE: { status: 431, close: 1002, retry: 'never', message: 'Request headers are too large' },
  REQUEST_TIMEOUT: {
    status: 408,
    close: 1002,
    retry: 'backoff',
    message: 'The request was not received in time',
  },
  HOST_NOT_ALLOWED: { status: 421, close: 1008, retry: 'never', message: 'This host is not served here' },
  SNI_MISMATCH: {
    status: 421,
    close: 1008,
    retry: 'never',
    message: 'Host does not match the TLS server name',
  },
  ROUTE_NOT_FOUND: { status: 404, close: 1008, retry: 'never', message: 'No route for this path' },
  BAD_SUBPROTOCOL: { status: 400, close: 1002, retry: 'never', message: 'Malformed Sec-WebSocket-Protocol' },
  SUBPROTOCOL_NOT_SUPPORTED: {
    status: 400,
    close: 1002,
    retry: 'never',
    message: 'None of the offered subprotocols is allowed',
  },
  BAD_EXTENSION: { status: 400, close: 1002, retry: 'never', message: 'Malformed Sec-WebSocket-Extensions' },
  // Cross-Site WebSocket Hijacking defence
  ORIGIN_NOT_ALLOWED: { status: 403, close: 4403, retry: 'never', message: 'Origin not allowed' },
  // Authentication and authorization
  UNAUTHENTICATED: { status: 401, close: 4401, retry: 'never', message: 'Authentication required' },
  FORBIDDEN: { status: 403, close: 4403, retry: 'never', message: 'Forbidden' },
  MFA_REQUIRED: {
    status: 403,
    close: 4403,
    retry: 'refresh',
    message: 'Multi-factor authentication is required',
  },
  CLAIMS_NOT_SATISFIED: {
    status: 403,
    close: 4403,
    retry: 'never',
    message: 'Credential lacks a required claim',
  },
  AUTH_RATE_LIMITED: {
    status: 429,
    close: 4429,
    retry: 'backoff',
    message: 'Too many failed authentication attempts',
  },
  CREDENTIAL_EXPIRED: {
    status: 401,
    close: 4401,
    retry: 'refresh',
    message: 'Credential expired; refresh and reconnect',
  },
  CREDENTIAL_REVOKED: { status: 401, close: 4401, retry: 'never', message: 'Credential revoked' },
  CERTIFICATE_REVOKED: { status: 403, close: 4403, retry: 'never', message: 'Client certificate revoked' },
  DISCONNECTED: { status: 403, close: 1008, retry: 'backoff', message: 'Disconnected by an operator' },
  AUTH_UNAVAILABLE: {
    status: 503,
    close: 1013,
    retry: 'backoff',
    message: 'Authentication service unavailable',
  },
  // Admission control
  TOO_MANY_CONNECTIONS: { status: 503, close: 1013, retry: 'backoff', message: 'The server is at capacity' },
  IP_CONNECTION_LIMIT: {
    status: 429,
    close: 4429,
    retry: 'backoff',
    message: 'Too many connections from this address',
  },
  IDENTITY_CONNECTION_LIMIT: {
    status: 429,
    close: 4429,
    retry: 'backoff',
    message: 'Too many connections for this identity',
  },
  HANDSHAKE_RATE_LIMITED: {
    status: 429,
    close: 4429,
    retry: 'backoff',
    message: 'Too many handshakes; slow down',
  },
  SERVER_BUSY: { status: 503, close: 1013, retry: 'backoff', message: 'Too many handshakes in progress' },
  SHUTTING_DOWN: { status: 503, close: 1001, retry: 'backoff', message: 'The server is shutting down' },
  // After the 101: framing (RFC 6455 section 5) and message limits
  PROTOCOL_ERROR: { status: 400, close: 1002, retry: 'never', message: 'WebSocket protocol error' },
  INVALID_PAYLOAD: { status: 400, close: 1007, retry: 'never', message: 'Invalid UTF-8 in a text message' },
  UNSUPPORTED_DATA: {
    status: 400,
    close: 1003,
    retry: 'never',
    message: 'This route does not accept this data type',
  },
  BAD_JSON: { status: 400, close: 1007, retry: 'never', message: 'Text message is not valid JSON' },
  SCHEMA_VIOLATION: {
    status: 400,
    close: 1008,
    retry: 'never',
    message: 'Message does not match the route schema',
  },
  MESSAGE_TOO_BIG: { status: 413, close: 1009, retry: 'never', message: 'Message too big' },
  TOO_MANY_FRAGMENTS: {
    status: 400,
    close: 1008,
    retry: 'never',
    message: 'Too many fragments in one message',
  },
  RATE_LIMITED: { status: 429, close: 4429, retry: 'backoff', message: 'Message rate limit exceeded' },
  CONTROL_FLOOD: { status: 429, close: 1008, retry: 'backoff', message: 'Too many control frames' },
  IDLE_TIMEOUT: { status: 408, close: 4408, retry: 'backoff', message: 'Connection idle for too long' },
  PONG_TIMEOUT: { status: 408, close: 4408, retry: 'backoff', message: 'No pong received in time' },
  SLOW_CONSUMER: { status: 503, close: 1013, retry: 'backoff', message: 'Client is not reading fast enough' },
  MAX_LIFETIME: {
    status: 503,
    close: 1001,
    retry: 'backoff',
    message: 'Connection reached its maximum lifetime',
  },
  TOO_MANY_ERRORS: { status: 400, close: 1008, retry: 'never', message: 'Too many invalid requests' },
  TOO_MANY_SUBSCRIPTIONS: { status: 429, close: 1008, retry: 'never', message: 'Subscription limit reached' },
  BAD_GATEWAY: {
    status: 502,
    close: 1014,
    retry: 'backoff',
    message: 'The upstream refused or broke the connection',
  },
  UPSTREAM_UNAVAILABLE: { status: 503, close: 1013, retry: 'backoff', message: 'No upstream is available' },
  UPSTREAM_TIMEOUT: {
    status: 504,
    close: 1014,
    retry: 'backoff',
    message: 'The upstream did not answer in time',
  },
  NORMAL_CLOSURE: { status: 200, close: 1000, retry: 'never', message: 'Closed' },
  INTERNAL: { status: 500, close: 1011, retry: 'backoff', message: 'Internal error' },
} as const satisfies Record<string, ErrorSpec>;

/** A stable, machine-readable failure code. */
export type ErrorCode = keyof typeof ERRORS;

/** The JSON body of every HTTP refusal. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
}

/** An expected failure carrying its stable code; the adapters map it to the wire through ERRORS. */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, detail?: string) {
    super(detail ?? ERRORS[code].message);
    this.name = 'GatewayError';
    this.code = code;
  }
}

/** True for a string that names a row of ERRORS. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERRORS, value);
}

/** The client-safe body for a refusal. */
export function errorBody(code: ErrorCode): ErrorBody {
  return { code, message: ERRORS[code].message };
}

/** Close codes that RFC 6455 section 7.4.1 forbids on the wire. */
export const RESERVED_CLOSE_CODES: ReadonlySet<number> = new Set([1004, 1005, 1006, 1015]);

/** True for a close code that may be sent in a close frame (RFC 6455 section 7.4). */
export function isSendableCloseCode(code: number): boolean {
  if (!Number.isInteger(code)) return false;
  if (code >= 1000 && code <= 1014) return !RESERVED_CLOSE_CODES.has(code);
  return code >= 3000 && code <= 4999;
}

/** The ErrorCode a close reason names, when the peer is a Portcullis server. */
export function codeFromCloseReason(reason: string): ErrorCode | undefined {
  return isErrorCode(reason) ? reason : undefined;
}
