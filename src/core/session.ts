// Per-connection decisions after the 101: message admission against the rate buckets, and the
// deadlines (idle, ping/pong, lifetime, close handshake). The adapter feeds events and the clock in
// and carries out the actions that come back.
import type { RouteLimits } from '../config/schema.js';
import type { ErrorCode } from '../protocol.js';
import { type Bucket, fullBucket, type RateRule, take } from './rate.js';

/** The per-connection rate rules, derived once per route. */
export interface SessionRules {
  readonly messages: RateRule;
  readonly bytes: RateRule;
  readonly control: RateRule;
  readonly limits: RouteLimits;
}

/** The mutable state the decisions read and update; small and allocation-free per message. */
export interface SessionState {
  readonly openedAt: number;
  lastActivityAt: number;
  lastPingAt: number;
  /** When the last unanswered ping was sent, or -1. */
  awaitingPongSince: number;
  /** When the close handshake started, or -1. */
  closingSince: number;
  /** When the connection's credential expires (ms), or -1 when it does not; refresh moves it. */
  expiresAt: number;
  readonly messages: Bucket;
  readonly bytes: Bucket;
  readonly control: Bucket;
}

/** What to do with one received data message. */
export type Admission =
  | { type: 'deliver' }
  | { type: 'wait'; ms: number }
  | { type: 'drop' }
  | { type: 'close'; code: ErrorCode };

/** What to do when the deadline clock ticks. */
export type TickAction =
  | { type: 'none' }
  | { type: 'ping' }
  | { type: 'close'; code: ErrorCode }
  | { type: 'terminate' };

// Shared verdicts: the per-message path allocates nothing for the common outcomes.
const DELIVER: Admission = Object.freeze({ type: 'deliver' });
const DROP: Admission = Object.freeze({ type: 'drop' });
const CLOSE_RATE_LIMITED: Admission = Object.freeze({ type: 'close', code: 'RATE_LIMITED' });
const CLOSE_EXPIRED: Admission = Object.freeze({ type: 'close', code: 'CREDENTIAL_EXPIRED' });

/** Derives the rate rules for a route's limits. */
export function sessionRules(limits: RouteLimits): SessionRules {
  return {
    messages: { perSecond: limits.messagesPerSecond, burst: limits.messageBurst },
    bytes: { perSecond: limits.bytesPerSecond, burst: limits.bytesBurst },
    control: { perSecond: limits.controlFramesPerSecond, burst: limits.controlFrameBurst },
    limits,
  };
}

/** A fresh session state at `now`; `expiresAt` is the credential's expiry (-1 for none). */
export function openSession(rules: SessionRules, now: number, expiresAt = -1): SessionState {
  return {
    expiresAt,
    openedAt: now,
    lastActivityAt: now,
    lastPingAt: now,
    awaitingPongSince: -1,
    closingSince: -1,
    messages: fullBucket(rules.messages, now),
    bytes: fullBucket(rules.bytes, now),
    control: fullBucket(rules.control, now),
  };
}

/** Admits a data message of `size` bytes, or says to wait (throttle), drop it or close. */
export function admitMessage(rules: SessionRules, state: SessionState, size: number, now: number): Admission {
  // Past the credential's expiry nothing is delivered, even before the deadline clock ticks.
  if (state.expiresAt >= 0 && now >= state.expiresAt) return CLOSE_EXPIRED;
  state.lastActivityAt = now;
  const waitMessages = take(rules.messages, state.messages, now, 1);
  const waitBytes = waitMessages === 0 ? take(rules.bytes, state.bytes, now, size) : waitMessages;
  if (waitMessages === 0 && waitBytes !== 0) state.messages.tokens += 1; // give back: nothing passed
  const wait = Math.max(waitMessages, waitBytes);
  if (wait === 0) return DELIVER;
  switch (rules.limits.onRateExceeded) {
    case 'throttle':
      return Number.isFinite(wait) ? { type: 'wait', ms: wait } : CLOSE_RATE_LIMITED;
    case 'drop':
      return DROP;
    case 'close':
      return CLOSE_RATE_LIMITED;
    default:
      return rules.limits.onRateExceeded satisfies never;
  }
}

/**
 * Counts a ping or pong from the client against the control-frame bucket. Control frames prove the
 * peer is alive but are not activity: idleTimeoutMs closes connections that carry no messages.
 */
export function admitControlFrame(
  rules: SessionRules,
  state: SessionState,
  now: number,
): ErrorCode | undefined {
  return take(rules.control, state.control, now, 1) === 0 ? undefined : 'CONTROL_FLOOD';
}

/** Records a pong: the peer is alive. */
export function onPong(state: SessionState): void {
  state.awaitingPongSince = -1;
}

/** Records a data message sent to the client: activity in the outbound direction. */
export function onSent(state: SessionState, now: number): void {
  // `now` may come from a coarse clock: never move activity backwards.
  if (now > state.lastActivityAt) state.lastActivityAt = now;
}

/** Decides what the deadline clock asks for at `now`. */
export function tick(
  rules: SessionRules,
  state: SessionState,
  now: number,
  closeTimeoutMs: number,
): TickAction {
  const { limits } = rules;
  if (state.closingSince >= 0) {
    return now - state.closingSince >= closeTimeoutMs ? { type: 'terminate' } : { type: 'none' };
  }
  // A credential is never honoured past its expiry: the client must refresh in time.
  if (state.expiresAt >= 0 && now >= state.expiresAt) return { type: 'close', code: 'CREDENTIAL_EXPIRED' };
  if (now - state.openedAt >= limits.maxLifetimeMs) return { type: 'close', code: 'MAX_LIFETIME' };
  if (state.awaitingPongSince >= 0 && now - state.awaitingPongSince >= limits.pongTimeoutMs) {
    return { type: 'close', code: 'PONG_TIMEOUT' };
  }
  if (now - state.lastActivityAt >= limits.idleTimeoutMs) return { type: 'close', code: 'IDLE_TIMEOUT' };
  if (state.awaitingPongSince < 0 && now - state.lastPingAt >= limits.pingIntervalMs) {
    state.lastPingAt = now;
    state.awaitingPongSince = now;
    return { type: 'ping' };
  }
  return { type: 'none' };
}
