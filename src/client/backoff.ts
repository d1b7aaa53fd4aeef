// When to reconnect, decided without a clock or a socket: exponential backoff with full jitter,
// a floor from Retry-After or an overload signal, and the caps that stop the loop. The client
// passes in `now` and `random`, so a test can drive every branch without sleeping.
import type { Retry } from '../protocol.js';

/** The reconnect policy with every limit filled in. */
export interface ReconnectPolicy {
  /** False: one attempt only. */
  readonly enabled: boolean;
  /** Cap of the first delay; the first delay is random in [0, initialDelayMs]. */
  readonly initialDelayMs: number;
  /** Cap of the jittered part of any delay. */
  readonly maxDelayMs: number;
  /** Failed attempts in a row before giving up (Infinity: no limit). */
  readonly maxAttempts: number;
  /** Time since the first failure of a streak before giving up (Infinity: no limit). */
  readonly maxElapsedMs: number;
  /** A server's Retry-After is honoured up to this long, so a hostile value cannot park the client. */
  readonly maxRetryAfterMs: number;
  /** A connection open at least this long resets the attempt count; a shorter one does not. */
  readonly stableAfterMs: number;
}

/** The defaults: first delay random in 0..5 s (threats.md C-09), then doubling up to 60 s. */
export const DEFAULT_RECONNECT: ReconnectPolicy = Object.freeze({
  enabled: true,
  initialDelayMs: 5_000,
  maxDelayMs: 60_000,
  maxAttempts: Number.POSITIVE_INFINITY,
  maxElapsedMs: Number.POSITIVE_INFINITY,
  maxRetryAfterMs: 300_000,
  stableAfterMs: 10_000,
});

/** The user's reconnect option: `false`, `true` or a partial policy. */
export type ReconnectOptions = boolean | Partial<ReconnectPolicy>;

/** Fills in defaults and checks every number (throws a TypeError naming the field). */
export function reconnectPolicy(option: ReconnectOptions | undefined): ReconnectPolicy {
  if (option === false) return { ...DEFAULT_RECONNECT, enabled: false };
  const policy: ReconnectPolicy = { ...DEFAULT_RECONNECT, ...(option === true ? {} : option) };
  for (const key of [
    'initialDelayMs',
    'maxDelayMs',
    'maxAttempts',
    'maxElapsedMs',
    'maxRetryAfterMs',
    'stableAfterMs',
  ] as const) {
    const value = policy[key];
    if (typeof value !== 'number' || Number.isNaN(value) || value < 0) {
      throw new TypeError(`reconnect.${key} must be a number >= 0`);
    }
  }
  if (policy.maxDelayMs < policy.initialDelayMs) {
    throw new TypeError('reconnect.maxDelayMs must be >= reconnect.initialDelayMs');
  }
  return Object.freeze(policy);
}

/**
 * The jittered delay before retry number `attempt` (1 for the first retry): uniformly random in
 * [0, min(maxDelayMs, initialDelayMs * 2^(attempt-1))] ("full jitter"), so clients dropped together
 * do not come back together.
 */
export function backoffDelay(policy: ReconnectPolicy, attempt: number, random: () => number): number {
  const exponent = Math.min(Math.max(attempt - 1, 0), 52);
  const cap = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** exponent);
  return Math.floor(random() * cap);
}

/**
 * Milliseconds from a Retry-After value (delta-seconds or an HTTP-date, RFC 9110 section 10.2.3),
 * or undefined when it is absent or unreadable.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d{1,10}$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  if (Number.isNaN(date) || !/[A-Za-z]/.test(text)) return undefined;
  return Math.max(0, date - nowMs);
}

/** What the failure says about retrying, as the reconnect decision needs it. */
export interface RetryHint {
  readonly retry: Retry;
  /** From Retry-After, when the server sent one. */
  readonly retryAfterMs?: number | undefined;
  /** 1013, 429 or 503 without Retry-After: wait at least initialDelayMs. */
  readonly overloaded?: boolean | undefined;
}

/** Where the current streak of failures stands. */
export interface StreakState {
  /** The retry about to be scheduled: 1 for the first. */
  readonly attempt: number;
  /** When the first failure of this streak happened. */
  readonly streakStartedAt: number;
  readonly now: number;
  /** True when a token provider function can be asked for a new credential. */
  readonly canRefresh: boolean;
}

/** Reconnect after `delayMs` (asking the token provider for a fresh credential when `refresh`), or stop. */
export type ReconnectDecision =
  | { readonly action: 'retry'; readonly delayMs: number; readonly refresh: boolean }
  | {
      readonly action: 'stop';
      readonly reason: 'disabled' | 'terminal' | 'cannot-refresh' | 'max-attempts' | 'max-elapsed';
    };

/** Decides whether and when to reconnect after a failure. */
export function decideReconnect(
  policy: ReconnectPolicy,
  hint: RetryHint,
  state: StreakState,
  random: () => number,
): ReconnectDecision {
  if (hint.retry === 'never') return { action: 'stop', reason: 'terminal' };
  if (hint.retry === 'refresh' && !state.canRefresh) return { action: 'stop', reason: 'cannot-refresh' };
  if (!policy.enabled) return { action: 'stop', reason: 'disabled' };
  if (state.attempt > policy.maxAttempts) return { action: 'stop', reason: 'max-attempts' };
  const floor =
    hint.retryAfterMs !== undefined
      ? Math.min(hint.retryAfterMs, policy.maxRetryAfterMs)
      : hint.overloaded
        ? policy.initialDelayMs
        : 0;
  // The jitter goes on top of the floor: every client told "30 s" must not return at 30.000 s.
  const delayMs = floor + backoffDelay(policy, state.attempt, random);
  if (state.now + delayMs - state.streakStartedAt > policy.maxElapsedMs) {
    return { action: 'stop', reason: 'max-elapsed' };
  }
  return { action: 'retry', delayMs, refresh: hint.retry === 'refresh' };
}
