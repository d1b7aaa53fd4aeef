import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fullBucket, isFull, type RateRule, take } from '../../src/core/rate.js';

// Every test drives the clock by hand: `now` is a plain number of milliseconds.
const T0 = 1_000_000;

describe('take (token bucket)', () => {
  it('starts full and lets exactly the burst pass at one instant', () => {
    const rule: RateRule = { perSecond: 10, burst: 5 };
    const bucket = fullBucket(rule, T0);
    assert.deepEqual(bucket, { tokens: 5, at: T0 });
    for (let i = 0; i < 5; i++) assert.equal(take(rule, bucket, T0), 0, `take ${i + 1} of the burst`);
    assert.equal(take(rule, bucket, T0), 100, 'one token at 10/s is 100 ms away');
    assert.equal(bucket.tokens, 0, 'a refused take leaves the bucket untouched');
  });

  it('refills at perSecond and answers the wait in whole milliseconds, rounded up', () => {
    const rule: RateRule = { perSecond: 3, burst: 2 };
    const bucket = fullBucket(rule, T0);
    assert.equal(take(rule, bucket, T0, 2), 0);
    assert.equal(take(rule, bucket, T0), 334, '1000/3 ms, rounded up');
    assert.equal(take(rule, bucket, T0 + 333), 1, '0.999 tokens after 333 ms: 1 ms to go');
    assert.equal(take(rule, bucket, T0 + 334), 0, 'a full token after 334 ms');
    assert.ok(Math.abs(bucket.tokens - 0.002) < 1e-9);
  });

  it('never refills above the burst however long the bucket rested', () => {
    const rule: RateRule = { perSecond: 100, burst: 4 };
    const bucket = fullBucket(rule, T0);
    assert.equal(take(rule, bucket, T0, 4), 0);
    assert.equal(take(rule, bucket, T0 + 3_600_000), 0);
    assert.equal(bucket.tokens, 3, 'capped at 4 before the take');
    assert.equal(take(rule, bucket, T0 + 3_600_000, 4), 10, 'one token short at 100/s');
  });

  it('takes a cost of several tokens and computes the wait for the shortfall', () => {
    const rule: RateRule = { perSecond: 1000, burst: 1000 };
    const bucket = fullBucket(rule, T0);
    assert.equal(take(rule, bucket, T0, 600), 0);
    assert.equal(take(rule, bucket, T0, 600), 200, '200 tokens short at 1000/s');
    assert.equal(bucket.tokens, 400);
    assert.equal(take(rule, bucket, T0 + 200, 600), 0);
    assert.equal(bucket.tokens, 0);
  });

  it('answers Infinity for a cost above the burst, which could never pass', () => {
    const rule: RateRule = { perSecond: 1000, burst: 10 };
    const bucket = fullBucket(rule, T0);
    assert.equal(take(rule, bucket, T0, 11), Number.POSITIVE_INFINITY);
    assert.equal(take(rule, bucket, T0 + 60_000, 11), Number.POSITIVE_INFINITY, 'even after a long rest');
    assert.equal(bucket.tokens, 10, 'nothing was taken');
    assert.equal(take(rule, bucket, T0, 10), 0, 'a cost equal to the burst passes');
  });

  it('does not refill when the clock goes backwards', () => {
    const rule: RateRule = { perSecond: 10, burst: 2 };
    const bucket = fullBucket(rule, T0);
    assert.equal(take(rule, bucket, T0, 2), 0);
    assert.equal(take(rule, bucket, T0 - 5_000), 100);
    assert.deepEqual(bucket, { tokens: 0, at: T0 });
  });

  it('supports fractional rates (one token every 2 s)', () => {
    const rule: RateRule = { perSecond: 0.5, burst: 1 };
    const bucket = fullBucket(rule, T0);
    assert.equal(take(rule, bucket, T0), 0);
    assert.equal(take(rule, bucket, T0), 2_000);
    assert.equal(take(rule, bucket, T0 + 1_000), 1_000);
    assert.equal(take(rule, bucket, T0 + 2_000), 0);
  });
});

describe('isFull', () => {
  it('is true only once the bucket has refilled to its burst', () => {
    const rule: RateRule = { perSecond: 10, burst: 3 };
    const bucket = fullBucket(rule, T0);
    assert.equal(isFull(rule, bucket, T0), true);
    take(rule, bucket, T0, 3);
    assert.equal(isFull(rule, bucket, T0), false);
    assert.equal(isFull(rule, bucket, T0 + 299), false);
    assert.equal(isFull(rule, bucket, T0 + 300), true);
  });
});
