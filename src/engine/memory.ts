// The default engine: state in this process's memory. Every map is bounded by the number of
// open connections, or swept when its entries are back at their resting state.
import { type Bucket, fullBucket, isFull, type RateRule, take, waitForOne } from '../core/rate.js';
import type { AdmissionLimits, Admit, ConnectionKey, Engine, StoredTicket } from './types.js';

const RESOLVED: Promise<Admit> = Promise.resolve({ ok: true });
// A handshake bucket that has refilled is indistinguishable from a new one, so it is dropped.
const SWEEP_INTERVAL_MS = 10_000;
// Hard cap on tracked handshake buckets, so a flood of source addresses cannot grow memory without bound.
const MAX_BUCKETS = 100_000;

/** The in-process engine. */
export class MemoryEngine implements Engine {
  private total = 0;
  private readonly perIp = new Map<string, number>();
  private readonly perIdentity = new Map<string, number>();
  private readonly buckets = new Map<string, { rule: RateRule; bucket: Bucket }>();
  private readonly penalties = new Map<string, { rule: RateRule; bucket: Bucket }>();
  private readonly tickets = new Map<string, StoredTicket>();
  private readonly revocations = new Map<string, number>();
  private readonly sweeper: NodeJS.Timeout;

  constructor() {
    this.sweeper = setInterval(() => this.sweep(Date.now()), SWEEP_INTERVAL_MS);
    this.sweeper.unref();
  }

  takeHandshake(ip: string, rule: RateRule, now: number): Promise<Admit> {
    let entry = this.buckets.get(ip);
    if (!entry) {
      if (this.buckets.size >= MAX_BUCKETS) this.sweep(now);
      if (this.buckets.size >= MAX_BUCKETS)
        return Promise.resolve({ ok: false, code: 'SERVER_BUSY', retryAfterMs: 1000 });
      entry = { rule, bucket: fullBucket(rule, now) };
      this.buckets.set(ip, entry);
    }
    const wait = take(rule, entry.bucket, now);
    if (wait === 0) return RESOLVED;
    return Promise.resolve({ ok: false, code: 'HANDSHAKE_RATE_LIMITED', retryAfterMs: wait });
  }

  acquire(key: ConnectionKey, limits: AdmissionLimits): Promise<Admit> {
    if (this.total >= limits.maxConnections)
      return Promise.resolve({ ok: false, code: 'TOO_MANY_CONNECTIONS', retryAfterMs: 1000 });
    const ipCount = this.perIp.get(key.ip) ?? 0;
    if (ipCount >= limits.perIpConnections)
      return Promise.resolve({ ok: false, code: 'IP_CONNECTION_LIMIT', retryAfterMs: 1000 });
    if (key.identity !== undefined) {
      const idCount = this.perIdentity.get(key.identity) ?? 0;
      if (idCount >= limits.perIdentityConnections) {
        return Promise.resolve({ ok: false, code: 'IDENTITY_CONNECTION_LIMIT', retryAfterMs: 1000 });
      }
      this.perIdentity.set(key.identity, idCount + 1);
    }
    this.perIp.set(key.ip, ipCount + 1);
    this.total++;
    return RESOLVED;
  }

  release(key: ConnectionKey): Promise<void> {
    this.total = Math.max(0, this.total - 1);
    decrement(this.perIp, key.ip);
    if (key.identity !== undefined) decrement(this.perIdentity, key.identity);
    return Promise.resolve();
  }

  checkPenalty(key: string, rule: RateRule, now: number): Promise<Admit> {
    const entry = this.penalties.get(key);
    if (!entry) return RESOLVED;
    // Peek: a probe costs nothing, only recorded penalties drain the bucket.
    const wait = waitForOne(rule, entry.bucket, now);
    if (wait === 0) return RESOLVED;
    return Promise.resolve({ ok: false, code: 'AUTH_RATE_LIMITED', retryAfterMs: wait });
  }

  addPenalty(key: string, rule: RateRule, now: number): Promise<void> {
    let entry = this.penalties.get(key);
    if (!entry) {
      if (this.penalties.size >= MAX_BUCKETS) this.sweep(now);
      if (this.penalties.size >= MAX_BUCKETS) return Promise.resolve();
      entry = { rule, bucket: fullBucket(rule, now) };
      this.penalties.set(key, entry);
    }
    entry.bucket.tokens = Math.max(0, entry.bucket.tokens - 1);
    return Promise.resolve();
  }

  putTicket(id: string, ticket: StoredTicket, maxOutstanding: number): Promise<boolean> {
    if (this.tickets.size >= maxOutstanding) this.sweep(Date.now());
    if (this.tickets.size >= maxOutstanding) return Promise.resolve(false);
    this.tickets.set(id, ticket);
    return Promise.resolve(true);
  }

  takeTicket(id: string, now: number): Promise<StoredTicket | undefined> {
    const ticket = this.tickets.get(id);
    if (ticket === undefined) return Promise.resolve(undefined);
    this.tickets.delete(id);
    return Promise.resolve(ticket.expiresAt > now ? ticket : undefined);
  }

  addRevocation(key: string, until: number): Promise<void> {
    this.revocations.set(key, Math.max(until, this.revocations.get(key) ?? 0));
    return Promise.resolve();
  }

  isRevoked(keys: readonly string[], now: number): Promise<boolean> {
    for (const key of keys) {
      const until = this.revocations.get(key);
      if (until !== undefined && until > now) return Promise.resolve(true);
    }
    return Promise.resolve(false);
  }

  counts() {
    return {
      connections: this.total,
      ips: this.perIp.size,
      identities: this.perIdentity.size,
      handshakeBuckets: this.buckets.size,
      tickets: this.tickets.size,
      revocations: this.revocations.size,
    };
  }

  close(): Promise<void> {
    clearInterval(this.sweeper);
    return Promise.resolve();
  }

  private sweep(now: number): void {
    for (const [ip, { rule, bucket }] of this.buckets) if (isFull(rule, bucket, now)) this.buckets.delete(ip);
    for (const [key, { rule, bucket }] of this.penalties)
      if (isFull(rule, bucket, now)) this.penalties.delete(key);
    for (const [id, ticket] of this.tickets) if (ticket.expiresAt <= now) this.tickets.delete(id);
    for (const [key, until] of this.revocations) if (until <= now) this.revocations.delete(key);
  }
}

function decrement(map: Map<string, number>, key: string): void {
  const n = (map.get(key) ?? 0) - 1;
  if (n > 0) map.set(key, n);
  else map.delete(key);
}
