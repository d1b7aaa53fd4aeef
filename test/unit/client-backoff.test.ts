// The reconnect decision without a clock: full-jitter delays, the Retry-After and overload
// floors, and every reason to stop (threats.md C-09).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  backoffDelay,
  DEFAULT_RECONNECT,
  decideReconnect,
  parseRetryAfter,
  type ReconnectPolicy,
  reconnectPolicy,
} from '../../src/client/backoff.js';

const POLICY: ReconnectPolicy = reconnectPolicy({ initialDelayMs: 1_000, maxDelayMs: 8_000 });
const fixed = (value: number) => () => value;
const STATE = { attempt: 1, streakStartedAt: 0, now: 0, canRefresh: false };

describe('backoffDelay (full jitter)', () => {
  it('C-09 the first delay is random in [0, initialDelayMs]', () => {
    assert.equal(backoffDelay(POLICY, 1, fixed(0)), 0);
    assert.equal(backoffDelay(POLICY, 1, fixed(0.999_999)), 999);
    assert.equal(backoffDelay(POLICY, 1, fixed(0.5)), 500);
  });

  it('C-09 the cap doubles per attempt up to maxDelayMs', () => {
    const caps = [1, 2, 3, 4, 5, 6, 40].map((n) => backoffDelay(POLICY, n, fixed(0.999_999)) + 1);
    assert.deepEqual(caps, [1_000, 2_000, 4_000, 8_000, 8_000, 8_000, 8_000]);
  });

  it('C-09 delays drawn with a real random source spread over the whole range', () => {
    const delays = Array.from({ length: 2_000 }, () => backoffDelay(POLICY, 4, Math.random));
    assert.ok(Math.min(...delays) < 800, 'some delays near 0');
    assert.ok(Math.max(...delays) > 7_200, 'some delays near the cap');
    assert.ok(delays.every((d) => d >= 0 && d <= 8_000));
    assert.ok(new Set(delays).size > 1_000, 'jittered, not a fixed schedule');
  });

  it('defaults follow threats.md C-09: first delay within 0..5 s', () => {
    assert.equal(DEFAULT_RECONNECT.initialDelayMs, 5_000);
    assert.ok(backoffDelay(DEFAULT_RECONNECT, 1, fixed(0.999_999)) < 5_000);
  });
});

describe('reconnectPolicy', () => {
  it('fills defaults, turns false into disabled and names a bad field', () => {
    assert.equal(reconnectPolicy(undefined).enabled, true);
    assert.equal(reconnectPolicy(false).enabled, false);
    assert.throws(() => reconnectPolicy({ initialDelayMs: -1 }), /reconnect\.initialDelayMs/);
    assert.throws(() => reconnectPolicy({ initialDelayMs: 10, maxDelayMs: 5 }), /maxDelayMs/);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2030-01-01T00:00:00Z');
  for (const [value, expected] of [
    ['30', 30_000],
    [' 1 ', 1_000],
    ['0', 0],
    ['Tue, 01 Jan 2030 00:00:10 GMT', 10_000],
    ['Mon, 31 Dec 2029 23:00:00 GMT', 0],
    ['-5', undefined],
    ['1.5', undefined],
    ['soon', undefined],
    ['', undefined],
    [undefined, undefined],
  ] as const) {
    it(`${JSON.stringify(value)} -> ${expected}`, () => {
      assert.equal(parseRetryAfter(value, now), expected);
    });
  }
});

describe('decideReconnect', () => {
  it('C-07 never retries a terminal code', () => {
    assert.deepEqual(decideReconnect(POLICY, { retry: 'never' }, STATE, fixed(0.5)), {
      action: 'stop',
      reason: 'terminal',
    });
  });

  it('C-07 a refresh code reconnects with a fresh token only when a provider exists', () => {
    assert.deepEqual(decideReconnect(POLICY, { retry: 'refresh' }, STATE, fixed(0.5)), {
      action: 'stop',
      reason: 'cannot-refresh',
    });
    assert.deepEqual(
      decideReconnect(POLICY, { retry: 'refresh' }, { ...STATE, canRefresh: true }, fixed(0.5)),
      {
        action: 'retry',
        delayMs: 500,
        refresh: true,
      },
    );
  });

  it('C-09 Retry-After is a floor, with jitter on top, capped by maxRetryAfterMs', () => {
    const hint = { retry: 'backoff', retryAfterMs: 30_000 } as const;
    assert.deepEqual(decideReconnect(POLICY, hint, STATE, fixed(0.5)), {
      action: 'retry',
      delayMs: 30_500,
      refresh: false,
    });
    const hostile = { retry: 'backoff', retryAfterMs: 10 ** 12 } as const;
    const decision = decideReconnect(POLICY, hostile, STATE, fixed(0));
    assert.deepEqual(decision, { action: 'retry', delayMs: POLICY.maxRetryAfterMs, refresh: false });
  });

  it('C-09 1013/429/503 without Retry-After wait at least initialDelayMs', () => {
    const decision = decideReconnect(POLICY, { retry: 'backoff', overloaded: true }, STATE, fixed(0));
    assert.deepEqual(decision, { action: 'retry', delayMs: 1_000, refresh: false });
  });

  it('stops after maxAttempts failures in a row and past maxElapsedMs', () => {
    const limited = reconnectPolicy({
      initialDelayMs: 1_000,
      maxDelayMs: 8_000,
      maxAttempts: 3,
      maxElapsedMs: 5_000,
    });
    assert.equal(
      decideReconnect(limited, { retry: 'backoff' }, { ...STATE, attempt: 3 }, fixed(0)).action,
      'retry',
    );
    assert.deepEqual(decideReconnect(limited, { retry: 'backoff' }, { ...STATE, attempt: 4 }, fixed(0)), {
      action: 'stop',
      reason: 'max-attempts',
    });
    assert.deepEqual(
      decideReconnect(limited, { retry: 'backoff' }, { ...STATE, attempt: 2, now: 4_500 }, fixed(0.9)),
      { action: 'stop', reason: 'max-elapsed' },
    );
  });

  it('a disabled policy never retries', () => {
    assert.deepEqual(decideReconnect(reconnectPolicy(false), { retry: 'backoff' }, STATE, fixed(0)), {
      action: 'stop',
      reason: 'disabled',
    });
  });
});
