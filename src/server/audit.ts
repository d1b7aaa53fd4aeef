// The audit log: one JSON line per handshake decision and one per close (fields in CONTRACT.md).
// Values that come from the client are escaped and truncated here, at the sink; tokens, cookies,
// Authorization values and message bodies are never passed to the logger at all, and pino's
// redact is a second line of defence for anything that slips into an error object or an ad-hoc
// field (the two audit events have fixed, typed fields and skip it).
import { type DestinationStream, type Logger, pino } from 'pino';

/** The logger type the gateway writes to. */
export type AuditLogger = Logger;

const REDACT = [
  'authorization',
  'cookie',
  'token',
  '*.authorization',
  '*.cookie',
  '*.token',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.headers["sec-websocket-protocol"]',
];

/** How log lines are written when the gateway makes its own destination (config `log`). */
export interface LogOutput {
  /** Lines are held until this many bytes wait, then written with one system call; 0 writes each. */
  readonly bufferBytes: number;
  /** Bound on bytes waiting for a slow destination; lines beyond it are dropped and counted. */
  readonly maxPendingBytes: number;
}

/**
 * The default destination: stdout (or `dest`, a path or fd) through SonicBoom, asynchronous,
 * buffered to `bufferBytes` and bounded by `maxPendingBytes`. pino flushes it synchronously at
 * process exit; the caller flushes it on a timer and on close. `onDrop` counts the lines a stalled
 * destination made it drop, since logging their loss to the same destination cannot work.
 */
export function createLogDestination(
  output: LogOutput,
  onDrop: () => void,
  dest: number | string = 1,
): DestinationStream {
  const stream = pino.destination({
    dest,
    sync: false,
    minLength: output.bufferBytes,
    maxLength: output.maxPendingBytes,
  });
  stream.on('drop', onDrop);
  return stream;
}

/** Creates the JSON logger writing to `destination`, with redaction for arbitrary fields. */
export function createLogger(level: string, destination: DestinationStream): AuditLogger {
  return pino({ ...BASE_OPTIONS, level, redact: { paths: REDACT, censor: '[redacted]' } }, destination);
}

/**
 * The logger for the two audit events (HandshakeEvent, CloseEvent), on the same destination. Their
 * fields are fixed by those types and none can hold a credential (client-supplied values pass
 * through logSafe), so redaction, which walks every line and was 5% of the handshake's CPU, is
 * left to the general logger, where error objects and ad-hoc fields go.
 */
export function createAuditLogger(level: string, destination: DestinationStream): AuditLogger {
  return pino({ ...BASE_OPTIONS, level }, destination);
}

const BASE_OPTIONS = {
  base: null,
  timestamp: pino.stdTimeFunctions.isoTime,
  formatters: { level: (label: string) => ({ level: label }) },
};

// C0 and C1 controls, DEL, and the Unicode line/paragraph separators that some viewers split on.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
const MAX_LOGGED_CHARS = 256;

/** Escapes and truncates a client-supplied value so it cannot forge or break a log line. */
export function logSafe(value: string | undefined | null): string | null {
  if (value === undefined || value === null) return null;
  const cut = value.length > MAX_LOGGED_CHARS ? `${value.slice(0, MAX_LOGGED_CHARS)}...` : value;
  return cut.replace(UNSAFE, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The `tls` part of an audit event. */
export interface TlsSummary {
  version: string | null;
  clientCert: string | null;
}

/** One handshake decision (CONTRACT.md, Audit log). */
export interface HandshakeEvent {
  event: 'handshake';
  outcome: 'accepted' | 'rejected';
  code: string | null;
  status: number;
  route: string | null;
  remote: string;
  origin: string | null;
  identity: string | null;
  subprotocol: string | null;
  tls: TlsSummary | null;
  ms: number;
  /** A short fixed token saying why authentication failed (never the credential). */
  reason?: string;
}

/** One closed connection (CONTRACT.md, Audit log). */
export interface CloseEvent {
  event: 'close';
  code: string | null;
  closeCode: number;
  by: 'client' | 'server';
  route: string;
  remote: string;
  identity: string | null;
  durationMs: number;
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  dropped: number;
}
