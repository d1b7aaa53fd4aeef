// What the gateway lends the HTTP endpoints it serves itself (ticket, publish): read access to the
// live policy and log, the rejection counter and the refusal options. Nothing else of its state.
import type { HandshakePolicy } from '../core/handshake.js';
import type { ErrorCode } from '../protocol.js';
import type { AuditLogger } from './audit.js';
import type { RefusalOptions } from './http.js';

/** The gateway as an HTTP endpoint sees it; read at each use, so a reload applies mid-request. */
export interface EndpointHost {
  /** The compiled handshake policy (Host rules, route table, header limits). */
  readonly policy: HandshakePolicy;
  /** The Strict-Transport-Security value, or undefined on plaintext. */
  readonly hsts: string | undefined;
  /** Operational log lines. */
  readonly log: AuditLogger;
  /** Counts a refusal in the stats, like a refused handshake. */
  countRejection(code: ErrorCode): void;
  /** The options every refusal is written with. */
  refusal(retryAfterMs?: number): RefusalOptions;
}
