// Shared state behind one interface: the memory engine now, Redis later for several processes.
// Calls are async so a networked engine fits without changing the callers.

import type { Principal } from '../core/principal.js';
import type { RateRule } from '../core/rate.js';
import type { ErrorCode } from '../protocol.js';

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

/** A one-time connection ticket, bound to an identity and a route. */
export interface StoredTicket {
  readonly route: string;
  readonly expiresAt: number;
  readonly principal: Principal;
}

/** State that must be shared by every process serving the same deployment. */
export interface Engine {
  /** Counts one handshake attempt from `ip` against its rate; refuses when the bucket is empty. */
  takeHandshake(ip: string, rule: RateRule, now: number): Promise<Admit>;
  /** Reserves a connection slot for `key` if every cap allows; pair with release(). */
  acquire(key: ConnectionKey, limits: AdmissionLimits): Promise<Admit>;
  /** Releases a slot taken by acquire(). */
  release(key: ConnectionKey): Promise<void>;
  /** Refuses when `key`'s penalty bucket is empty (e.g. too many failed logins from an IP). */
  checkPenalty(key: string, rule: RateRule, now: number): Promise<Admit>;
  /** Records one penalty (a failed authentication) against `key`. */
  addPenalty(key: string, rule: RateRule, now: number): Promise<void>;
  /** Stores a single-use ticket until `expiresAt`; false when the store is full. */
  putTicket(id: string, ticket: StoredTicket, maxOutstanding: number): Promise<boolean>;
  /** Removes and returns a ticket (single use), or undefined when unknown or expired. */
  takeTicket(id: string, now: number): Promise<StoredTicket | undefined>;
  /** Records a revocation (`jti:<id>` or `sub:<subject>`) until `until` (ms since epoch). */
  addRevocation(key: string, until: number): Promise<void>;
  /** True when any of `keys` is revoked at `now`. */
  isRevoked(keys: readonly string[], now: number): Promise<boolean>;
  /** Current counts, for tests, metrics and the admin API. */
  counts(): {
    connections: number;
    ips: number;
    identities: number;
    handshakeBuckets: number;
    tickets: number;
    revocations: number;
  };
  /** Stops timers and connections. */
  close(): Promise<void>;
}
