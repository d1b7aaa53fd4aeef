import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type RouteLimits, RouteLimitsSchema } from '../../src/config/schema.js';
import {
  admitControlFrame,
  admitMessage,
  onPong,
  onSent,
  openSession,
  type SessionRules,
  sessionRules,
  tick,
} from '../../src/core/session.js';

// Sans-I/O: the clock is an argument, so nothing here sleeps.
const T0 = 5_000_000;
const CLOSE_TIMEOUT_MS = 1_000;

function rules(limits: Partial<RouteLimits> = {}): SessionRules {
  return sessionRules(RouteLimitsSchema.parse(limits));
}

describe('sessionRules', () => {
  it('derives the message, byte and control buckets from the route limits', () => {
    const r = rules({ messagesPerSecond: 7, messageBurst: 9, bytesPerSecond: 1000, bytesBurst: 70_000 });
    assert.deepEqual(r.messages, { perSecond: 7, burst: 9 });
    assert.deepEqual(r.bytes, { perSecond: 1000, burst: 70_000 });
    assert.deepEqual(r.control, { perSecond: 10, burst: 20 }, 'schema defaults');
  });
});

describe('admitMessage', () => {
  const limits = { messagesPerSecond: 10, messageBurst: 3, bytesPerSecond: 1_000, bytesBurst: 65_536 };

  it('R-09 delivers up to the burst, then throttle says how long to wait', () => {
    const r = rules({ ...limits, onRateExceeded: 'throttle' });
    const s = openSession(r, T0);
    for (let i = 0; i < 3; i++) assert.deepEqual(admitMessage(r, s, 10, T0), { type: 'deliver' });
    assert.deepEqual(admitMessage(r, s, 10, T0), { type: 'wait', ms: 100 });
    assert.deepEqual(admitMessage(r, s, 10, T0 + 100), { type: 'deliver' }, 'one token back after 100 ms');
  });

  it('R-09 drop discards the excess and keeps the connection', () => {
    const r = rules({ ...limits, onRateExceeded: 'drop' });
    const s = openSession(r, T0);
    for (let i = 0; i < 3; i++) admitMessage(r, s, 10, T0);
    assert.deepEqual(admitMessage(r, s, 10, T0), { type: 'drop' });
    assert.deepEqual(admitMessage(r, s, 10, T0 + 1), { type: 'drop' });
    assert.deepEqual(admitMessage(r, s, 10, T0 + 101), { type: 'deliver' });
  });

  it('R-09 close answers RATE_LIMITED once the burst is spent', () => {
    const r = rules({ ...limits, onRateExceeded: 'close' });
    const s = openSession(r, T0);
    for (let i = 0; i < 3; i++) assert.equal(admitMessage(r, s, 10, T0).type, 'deliver');
    assert.deepEqual(admitMessage(r, s, 10, T0), { type: 'close', code: 'RATE_LIMITED' });
  });

  it('R-09 counts bytes too, and gives the message token back when the byte bucket refuses', () => {
    const r = rules({ messagesPerSecond: 10, messageBurst: 3, bytesPerSecond: 10_000, bytesBurst: 65_536 });
    const s = openSession(r, T0);
    assert.equal(admitMessage(r, s, 60_000, T0).type, 'deliver');
    assert.equal(s.messages.tokens, 2);
    // 5,536 bytes left; 10,000 more need (10,000 - 5,536) / 10 per ms = 447 ms (rounded up).
    assert.deepEqual(admitMessage(r, s, 10_000, T0), { type: 'wait', ms: 447 });
    assert.equal(s.messages.tokens, 2, 'a refused message costs no message token');
    assert.equal(admitMessage(r, s, 10_000, T0 + 446).type, 'wait');
    assert.equal(admitMessage(r, s, 10_000, T0 + 447).type, 'deliver');
  });

  it('R-09 throttle closes with RATE_LIMITED for a message no wait could ever admit', () => {
    // bytesBurst below maxMessageBytes is refused by the config check; the rule itself must still be safe.
    const r: SessionRules = { ...rules(limits), bytes: { perSecond: 1_000, burst: 100 } };
    const s = openSession(r, T0);
    assert.deepEqual(admitMessage(r, s, 101, T0), { type: 'close', code: 'RATE_LIMITED' });
  });

  it('records activity for the idle deadline', () => {
    const r = rules(limits);
    const s = openSession(r, T0);
    admitMessage(r, s, 1, T0 + 250);
    assert.equal(s.lastActivityAt, T0 + 250);
  });
});

describe('admitControlFrame', () => {
  it('R-07 allows the control burst, then answers CONTROL_FLOOD; the bucket refills at the configured rate', () => {
    const r = rules({ controlFramesPerSecond: 10, controlFrameBurst: 20 });
    const s = openSession(r, T0);
    for (let i = 0; i < 20; i++) assert.equal(admitControlFrame(r, s, T0), undefined, `frame ${i + 1}`);
    assert.equal(admitControlFrame(r, s, T0), 'CONTROL_FLOOD');
    assert.equal(admitControlFrame(r, s, T0 + 99), 'CONTROL_FLOOD');
    assert.equal(admitControlFrame(r, s, T0 + 101), undefined, '10/s: one frame per 100 ms');
    assert.equal(s.lastActivityAt, T0, 'control frames are not activity');
  });
});

describe('tick', () => {
  const deadlines = {
    idleTimeoutMs: 300,
    pingIntervalMs: 1_000,
    pongTimeoutMs: 200,
    maxLifetimeMs: 10_000,
  };

  it('does nothing before any deadline', () => {
    const r = rules(deadlines);
    const s = openSession(r, T0);
    assert.deepEqual(tick(r, s, T0, CLOSE_TIMEOUT_MS), { type: 'none' });
    assert.deepEqual(tick(r, s, T0 + 299, CLOSE_TIMEOUT_MS), { type: 'none' });
  });

  it('closes an idle connection with IDLE_TIMEOUT; activity pushes the deadline back', () => {
    const r = rules(deadlines);
    const s = openSession(r, T0);
    admitMessage(r, s, 1, T0 + 200);
    assert.deepEqual(tick(r, s, T0 + 300, CLOSE_TIMEOUT_MS), { type: 'none' });
    assert.deepEqual(tick(r, s, T0 + 500, CLOSE_TIMEOUT_MS), { type: 'close', code: 'IDLE_TIMEOUT' });
  });

  it('pings at the interval, once, and closes with PONG_TIMEOUT when no pong comes', () => {
    const r = rules({ ...deadlines, idleTimeoutMs: 60_000 });
    const s = openSession(r, T0);
    assert.deepEqual(tick(r, s, T0 + 999, CLOSE_TIMEOUT_MS), { type: 'none' });
    assert.deepEqual(tick(r, s, T0 + 1_000, CLOSE_TIMEOUT_MS), { type: 'ping' });
    assert.equal(s.awaitingPongSince, T0 + 1_000);
    assert.deepEqual(
      tick(r, s, T0 + 1_100, CLOSE_TIMEOUT_MS),
      { type: 'none' },
      'no second ping while one is unanswered',
    );
    assert.deepEqual(tick(r, s, T0 + 1_200, CLOSE_TIMEOUT_MS), { type: 'close', code: 'PONG_TIMEOUT' });
  });

  it('a pong clears the pong deadline and the next ping comes one interval later', () => {
    const r = rules({ ...deadlines, idleTimeoutMs: 60_000 });
    const s = openSession(r, T0);
    assert.equal(tick(r, s, T0 + 1_000, CLOSE_TIMEOUT_MS).type, 'ping');
    onPong(s);
    assert.equal(s.awaitingPongSince, -1);
    assert.deepEqual(tick(r, s, T0 + 1_500, CLOSE_TIMEOUT_MS), { type: 'none' });
    assert.deepEqual(tick(r, s, T0 + 2_000, CLOSE_TIMEOUT_MS), { type: 'ping' });
  });

  it('a client that only answers pings is still idle: IDLE_TIMEOUT', () => {
    const r = rules({ ...deadlines, idleTimeoutMs: 300, pingIntervalMs: 100, pongTimeoutMs: 100 });
    const s = openSession(r, T0);
    const actions: string[] = [];
    for (let t = T0 + 100; t <= T0 + 300; t += 100) {
      const action = tick(r, s, t, CLOSE_TIMEOUT_MS);
      actions.push(action.type === 'close' ? action.code : action.type);
      if (action.type === 'ping') onPong(s);
    }
    assert.deepEqual(actions, ['ping', 'ping', 'IDLE_TIMEOUT']);
  });

  it('a message sent to the client counts as activity', () => {
    const r = rules(deadlines);
    const s = openSession(r, T0);
    onSent(s, T0 + 250);
    assert.deepEqual(tick(r, s, T0 + 500, CLOSE_TIMEOUT_MS), { type: 'none' });
    assert.deepEqual(tick(r, s, T0 + 550, CLOSE_TIMEOUT_MS), { type: 'close', code: 'IDLE_TIMEOUT' });
  });

  it('closes with MAX_LIFETIME at the lifetime even on a busy connection, before any other deadline', () => {
    const r = rules({ ...deadlines, maxLifetimeMs: 500 });
    const s = openSession(r, T0);
    s.awaitingPongSince = T0; // an overdue pong too: lifetime wins
    admitMessage(r, s, 1, T0 + 499);
    assert.deepEqual(tick(r, s, T0 + 500, CLOSE_TIMEOUT_MS), { type: 'close', code: 'MAX_LIFETIME' });
  });

  it('terminates a closing connection whose peer has not finished the close handshake in time', () => {
    const r = rules(deadlines);
    const s = openSession(r, T0);
    s.closingSince = T0 + 100;
    assert.deepEqual(
      tick(r, s, T0 + 1_099, CLOSE_TIMEOUT_MS),
      { type: 'none' },
      'no idle close while closing',
    );
    assert.deepEqual(tick(r, s, T0 + 1_100, CLOSE_TIMEOUT_MS), { type: 'terminate' });
  });
});
