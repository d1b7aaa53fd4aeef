// Shared state behind one interface: the memory engine now, Redis later for several processes.
// Calls are async so a networked engine fits without changing the callers.
import type { ErrorCode } from '../protocol.js';
import type { RateRule } from '../core/rate.js';

/** Where a connection comes from, for per-IP and per-identity accounting. */
export interface ConnectionKey {
  readonly ip: string;
  readonly identity?: string | undefined;
}

/** Caps that admission checks against. */
export interface AdmissionLimits {
  readonly maxConnections: number;
  readonly perIpConnections: number;
  readonly perIdentityConnections: number;
}

/** An admission verdict; `retryAfterMs` goes out as Retry-After. */
export type Admit = { ok: true } | { ok: false; code: ErrorCode; retryAfterMs?: number };

/** State that must be shared by every process serving the same deployment. */
export interface Engine {
  /** Counts one handshake attempt from `ip` against its rate; refuses when the bucket is empty. */
  takeHandshake(ip: string, rule: RateRule, now: number): Promise<Admit>;
  /** Reserves a connection slot for `key` if every cap allows; pair with release(). */
  acquire(key: ConnectionKey, limits: AdmissionLimits): Promise<Admit>;
  /** Releases a slot taken by acquire(). */
  release(key: ConnectionKey): Promise<void>;
  /** Current counts, for tests, metrics and the admin API. */
  counts(): { connections: number; ips: number; identities: number; handshakeBuckets: number };
  /** Stops timers and connections. */
  close(): Promise<void>;
}
