// Failures only a client can see: the TLS layer, a bad 101, a dropped socket. The gateway's own
// codes come from the shared ERRORS table (src/protocol.ts); these rows never go on the wire, so
// they live here and not there. Codes are never renamed.
import { ERRORS, type ErrorCode, isErrorCode, type Retry } from '../protocol.js';

/** One row of the client table: what to do next and a message safe to print. */
export interface ClientErrorSpec {
  readonly retry: Retry;
  readonly message: string;
}

/** Failures detected by the SDK itself, with the retry flag the reconnect loop obeys. */
export const CLIENT_ERRORS = {
  PIN_MISMATCH: {
    retry: 'never',
    message: 'No certificate in the server chain matches a configured pin',
  },
  TLS_ERROR: { retry: 'backoff', message: 'The server certificate could not be verified' },
  CLIENT_CERT_REJECTED: {
    retry: 'never',
    message: 'The server refused the client certificate; not retried until credentials change',
  },
  HANDSHAKE_FAILED: {
    retry: 'backoff',
    message: 'The server did not complete the WebSocket handshake correctly',
  },
  HANDSHAKE_TIMEOUT: { retry: 'backoff', message: 'The opening handshake did not finish in time' },
  REDIRECT_NOT_FOLLOWED: {
    retry: 'never',
    message: 'The server answered with a redirect; redirects are not followed',
  },
  UNEXPECTED_RESPONSE: { retry: 'never', message: 'The server refused the upgrade' },
  SERVER_UNAVAILABLE: { retry: 'backoff', message: 'The server is unavailable; try again later' },
  CONNECTION_FAILED: { retry: 'backoff', message: 'The connection could not be established' },
  CONNECTION_LOST: { retry: 'backoff', message: 'The connection dropped without a close frame' },
  NOT_OPEN: { retry: 'never', message: 'The connection is not open' },
  ACK_TIMEOUT: { retry: 'never', message: 'The server did not answer the request in time' },
  TOO_MANY_PENDING: { retry: 'never', message: 'Too many requests are waiting for an answer' },
  QUEUE_OVERFLOW: { retry: 'never', message: 'Messages arrived faster than the application read them' },
} as const satisfies Record<string, ClientErrorSpec>;

/** A failure code the SDK reports: the gateway's codes plus the client-only rows. */
export type ClientErrorCode = ErrorCode | keyof typeof CLIENT_ERRORS;

/** True for a code of the client-only table. */
export function isClientOnlyCode(value: unknown): value is keyof typeof CLIENT_ERRORS {
  return typeof value === 'string' && Object.hasOwn(CLIENT_ERRORS, value);
}

/** The retry flag of any code the SDK reports. */
export function retryOf(code: ClientErrorCode): Retry {
  return isErrorCode(code) ? ERRORS[code].retry : CLIENT_ERRORS[code].retry;
}

/** The client-safe message of any code the SDK reports. */
export function messageOf(code: ClientErrorCode): string {
  return isErrorCode(code) ? ERRORS[code].message : CLIENT_ERRORS[code].message;
}

/** An expected failure with its stable code; `detail` never carries a token or header value. */
export class ClientError extends Error {
  readonly code: ClientErrorCode;
  readonly retry: Retry;
  /** HTTP status of a refused upgrade, when there was one. */
  readonly status: number | undefined;
  /** The channel a broker error concerns, when it concerns one. */
  readonly channel: string | undefined;

  constructor(code: ClientErrorCode, detail?: string, extra: { status?: number; channel?: string } = {}) {
    super(detail ? `${code}: ${detail}` : `${code}: ${messageOf(code)}`);
    this.name = 'ClientError';
    this.code = code;
    this.retry = retryOf(code);
    this.status = extra.status;
    this.channel = extra.channel;
  }
}
