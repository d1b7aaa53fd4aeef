// The audit log: one JSON line per handshake decision and one per close (fields in CONTRACT.md).
// Values that come from the client are escaped and truncated here, at the sink; tokens, cookies,
// Authorization values and message bodies are never passed to the logger at all, and pino's
// redact is a second line of defence for anything that slips into an error object.
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

/** Creates the JSON logger (stdout unless a destination is given). */
export function createLogger(level: string, destination?: DestinationStream): AuditLogger {
  return pino(
    {
      level,
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT, censor: '[redacted]' },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

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
