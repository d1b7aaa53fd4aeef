// Token buckets with burst: the one rate primitive behind message, byte, control-frame and
// handshake limits. Time is an argument, so tests need no sleeps.

/** A refill rate (tokens per second) and a capacity (the burst). */
export interface RateRule {
  readonly perSecond: number;
  readonly burst: number;
}

/** The mutable state of one bucket: tokens left at `at` (ms). */
export interface Bucket {
  tokens: number;
  at: number;
}

/** A full bucket at time `now`. */
export function fullBucket(rule: RateRule, now: number): Bucket {
  return { tokens: rule.burst, at: now };
}

function refill(rule: RateRule, bucket: Bucket, now: number): void {
  if (now > bucket.at) {
    bucket.tokens = Math.min(rule.burst, bucket.tokens + ((now - bucket.at) * rule.perSecond) / 1000);
    bucket.at = now;
  }
}

/**
 * Takes `cost` tokens. Returns 0 when they were taken, otherwise the milliseconds until the
 * bucket holds enough (nothing is taken then). A cost above the burst can never pass: Infinity.
 */
export function take(rule: RateRule, bucket: Bucket, now: number, cost = 1): number {
  refill(rule, bucket, now);
  if (bucket.tokens >= cost) {
    bucket.tokens -= cost;
    return 0;
  }
  if (cost > rule.burst) return Number.POSITIVE_INFINITY;
  return Math.ceil(((cost - bucket.tokens) * 1000) / rule.perSecond);
}

/** True when the bucket has refilled to its burst by `now` (so it can be forgotten). */
export function isFull(rule: RateRule, bucket: Bucket, now: number): boolean {
  refill(rule, bucket, now);
  return bucket.tokens >= rule.burst;
}

/** Milliseconds until one token is available (0 when one is there now); takes nothing. */
export function waitForOne(rule: RateRule, bucket: Bucket, now: number): number {
  refill(rule, bucket, now);
  return bucket.tokens >= 1 ? 0 : Math.ceil(((1 - bucket.tokens) * 1000) / rule.perSecond);
}
