// Turns what a transport saw (a close frame, an HTTP refusal, a socket error) into one code and a
// retry flag. Pure: the transports gather the facts, this file decides, and the tests feed it tables.
import { codeFromCloseReason, ERRORS, isErrorCode, type Retry } from '../protocol.js';
import { parseRetryAfter } from './backoff.js';
import { type ClientErrorCode, retryOf } from './errors.js';

/** What a pin check saw, reported with PIN_MISMATCH (pins are public: safe to log). */
export interface PinMismatchInfo {
  readonly host: string;
  readonly scope: 'leaf' | 'chain';
  /** `sha256/...` of every certificate that was checked, leaf first. */
  readonly seen: readonly string[];
}

/** The outcome of one connection or attempt. `code` is null for a plain close from a non-Portcullis peer. */
export interface Failure {
  readonly code: ClientErrorCode | null;
  readonly retry: Retry;
  readonly retryAfterMs?: number | undefined;
  readonly overloaded?: boolean | undefined;
  readonly status?: number | undefined;
  /** Safe to log: never a header value or a token. */
  readonly detail?: string | undefined;
  readonly pinMismatch?: PinMismatchInfo | undefined;
}

function failure(code: ClientErrorCode, extra: Omit<Failure, 'code' | 'retry'> = {}): Failure {
  return { code, retry: retryOf(code), ...extra };
}

// Close codes that mean "try again" when the peer names no ErrorCode (RFC 6455 section 7.4.1,
// IANA registry): going away, internal error, service restart, try again later, bad gateway.
const TRY_AGAIN_CLOSE_CODES: ReadonlySet<number> = new Set([1001, 1011, 1012, 1013, 1014]);

/** A close after the 101: the gateway's reason names the code; otherwise the close code decides. */
export function classifyClose(code: number, reason: string): Failure {
  const named = codeFromCloseReason(reason);
  if (named) return failure(named, { overloaded: code === 1013 || ERRORS[named].status === 503 });
  // 1006 is reported locally when the socket ended without a close frame; 1005 when the frame had no code.
  if (code === 1006 || code === 1005) return failure('CONNECTION_LOST');
  return {
    code: null,
    retry: TRY_AGAIN_CLOSE_CODES.has(code) ? 'backoff' : 'never',
    overloaded: code === 1013,
  };
}

/** Statuses that mean "later" when the body names no ErrorCode. */
const TRY_AGAIN_STATUSES: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504]);

/** What an HTTP answer other than 101 carried. */
export interface RefusalFacts {
  readonly status: number;
  /** The parsed JSON body, when it was JSON. */
  readonly body: unknown;
  readonly retryAfter: string | undefined;
  readonly now: number;
}

/** An HTTP refusal of the upgrade: the body's `code` when the peer is Portcullis, else the status. */
export function classifyRefusal(facts: RefusalFacts): Failure {
  const { status } = facts;
  if (status >= 300 && status < 400) return failure('REDIRECT_NOT_FOLLOWED', { status });
  const overloaded = status === 429 || status === 503;
  const retryAfterMs = overloaded ? parseRetryAfter(facts.retryAfter, facts.now) : undefined;
  const bodyCode =
    typeof facts.body === 'object' && facts.body !== null
      ? (facts.body as { code?: unknown }).code
      : undefined;
  // A 101 without Upgrade/Connection (Node does not treat it as an upgrade) or a 2xx instead of
  // the 101 is a bad server handshake (threats.md C-01), as from a captive portal or a proxy that
  // does not upgrade: it may be gone later, so it backs off like an invalid Sec-WebSocket-Accept.
  const code: ClientErrorCode = isErrorCode(bodyCode)
    ? bodyCode
    : TRY_AGAIN_STATUSES.has(status)
      ? 'SERVER_UNAVAILABLE'
      : status < 300
        ? 'HANDSHAKE_FAILED'
        : 'UNEXPECTED_RESPONSE';
  return failure(code, { status, overloaded, retryAfterMs });
}

/** Facts about a socket-level error, gathered by the Node transport. */
export interface SocketErrorFacts {
  /** `err.code` (an OpenSSL verify code, ERR_SSL_*, ECONNRESET, WS_ERR_*, PIN_MISMATCH...). */
  readonly errorCode: string | undefined;
  readonly message: string;
  /** The negotiated TLS version, once the TLS handshake finished. */
  readonly tlsVersion: string | undefined;
  /** Milliseconds between the end of the TLS handshake and this error. */
  readonly msSinceSecure: number | undefined;
  /** True when a client certificate was configured for this attempt. */
  readonly clientCert: boolean;
  /** True once any HTTP response (101 or not) arrived. */
  readonly responded: boolean;
  /** True once a 101 arrived (whether or not it was valid). */
  readonly upgraded: boolean;
  /** True once the connection was open. */
  readonly opened: boolean;
  readonly pinMismatch?: PinMismatchInfo | undefined;
}

/**
 * How soon after the TLS handshake an EOF still counts as the server refusing the client
 * certificate. In TLS 1.3 the client finishes its handshake before the server has checked the
 * certificate, so the refusal arrives as "connected, then EOF" (threats.md T-06, C-09).
 */
export const CERT_REFUSAL_WINDOW_MS = 2_000;

// TLS alerts the server sends about the client's certificate.
const CLIENT_CERT_ALERTS =
  /^ERR_SSL_(TLSV13_ALERT_CERTIFICATE_REQUIRED|SSLV3_ALERT_BAD_CERTIFICATE|TLSV1_ALERT_UNKNOWN_CA|SSLV3_ALERT_CERTIFICATE_(EXPIRED|REVOKED|UNKNOWN)|SSLV3_ALERT_UNSUPPORTED_CERTIFICATE|TLSV1_ALERT_ACCESS_DENIED)$/;
// OpenSSL verify codes and Node's TLS errors about the server's certificate or the TLS session.
const TLS_FAILURES =
  /^(CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH|INVALID_CA|INVALID_PURPOSE|PATH_LENGTH_EXCEEDED|ERR_TLS_|ERR_SSL_|ERR_OSSL_|EPROTO$)/;
const EOF_CODES: ReadonlySet<string> = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

/** A socket error before or after the 101. */
export function classifySocketError(facts: SocketErrorFacts): Failure {
  const { errorCode } = facts;
  const detail = errorCode ?? 'socket error';
  if (errorCode === 'PIN_MISMATCH') return failure('PIN_MISMATCH', { pinMismatch: facts.pinMismatch });
  if (errorCode?.startsWith('WS_ERR_')) return failure(frameErrorCode(errorCode), { detail });
  if (facts.upgraded && !facts.opened) return failure('HANDSHAKE_FAILED', { detail: facts.message });
  if (facts.message === 'Opening handshake has timed out') return failure('HANDSHAKE_TIMEOUT');
  if (errorCode && CLIENT_CERT_ALERTS.test(errorCode)) return failure('CLIENT_CERT_REJECTED', { detail });
  const eof =
    (errorCode !== undefined && EOF_CODES.has(errorCode)) || /socket hang up|EOF/i.test(facts.message);
  if (
    eof &&
    facts.clientCert &&
    !facts.responded &&
    facts.tlsVersion === 'TLSv1.3' &&
    facts.msSinceSecure !== undefined &&
    facts.msSinceSecure <= CERT_REFUSAL_WINDOW_MS
  ) {
    return failure('CLIENT_CERT_REJECTED', { detail: 'connection closed right after the TLS handshake' });
  }
  if (errorCode && TLS_FAILURES.test(errorCode)) return failure('TLS_ERROR', { detail });
  return failure(facts.opened ? 'CONNECTION_LOST' : 'CONNECTION_FAILED', { detail });
}

/** ws's framing errors, mapped as the gateway maps them (docs/errors.md). */
export function frameErrorCode(wsCode: string): ClientErrorCode {
  switch (wsCode) {
    case 'WS_ERR_INVALID_UTF8':
      return 'INVALID_PAYLOAD';
    case 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH':
    case 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH':
      return 'MESSAGE_TOO_BIG';
    case 'WS_ERR_TOO_MANY_BUFFERED_PARTS':
      return 'TOO_MANY_FRAGMENTS';
    default:
      return 'PROTOCOL_ERROR';
  }
}
