// The Broker driven with fake sessions (send/close/info only): the index, ACL, limits and fan-out
// logic gain nothing from a real socket. End-to-end tests over real sockets live in test/e2e.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { type BrokerConfig, BrokerTargetSchema } from '../../src/config/schema.js';
import { messageFrame } from '../../src/core/broker-protocol.js';
import type { Principal } from '../../src/core/principal.js';
import type { ErrorCode } from '../../src/protocol.js';
import {
  Broker,
  type BrokerOptions,
  type BrokerSession,
  RETAINED_OVERHEAD_BYTES,
} from '../../src/server/broker.js';

const T0 = 1_000_000;
/** What frames() shows for any well-formed epoch; tests that compare epochs use rawFrames(). */
const EPOCH = '<epoch>';
const EPOCH_RE = /^[A-Za-z0-9_-]{11}\.[A-Za-z0-9_-]{8}$/;

class FakeSession implements BrokerSession {
  readonly sent: (Buffer | string)[] = [];
  closedWith: ErrorCode | null = null;
  info: { principal: Principal | null };
  /** What send answers: false models a closed socket or a slow consumer being closed. */
  accepting = true;
  /** A send queue cap like the real Session's: past it the session closes with SLOW_CONSUMER. */
  maxQueueBytes = Number.POSITIVE_INFINITY;
  /** Called after each accepted send (to change the principal mid-replay). */
  afterSend: (() => void) | undefined;
  private queued = 0;

  constructor(principal: Principal | null) {
    this.info = { principal };
  }

  send(data: Buffer | string, isBinary: boolean): boolean {
    assert.equal(isBinary, false, 'the broker only sends text');
    if (!this.accepting || this.closedWith) return false;
    const size = Buffer.byteLength(data);
    if (this.queued + size > this.maxQueueBytes) {
      this.close('SLOW_CONSUMER');
      return false;
    }
    this.queued += size;
    this.sent.push(data);
    this.afterSend?.();
    return true;
  }

  close(code: ErrorCode): void {
    this.closedWith ??= code;
  }

  /** The frames received since the last call, parsed, with every epoch checked and shown as EPOCH. */
  frames(): Record<string, unknown>[] {
    return this.rawFrames().map((f) => {
      if (!Object.hasOwn(f, 'epoch')) return f;
      assert.match(String(f.epoch), EPOCH_RE);
      return { ...f, epoch: EPOCH };
    });
  }

  /** The frames received since the last call, parsed, as sent. */
  rawFrames(): Record<string, unknown>[] {
    const out = this.sent.map((d) => JSON.parse(d.toString()) as Record<string, unknown>);
    this.sent.length = 0;
    return out;
  }
}

function principal(
  subject: string,
  claims: Record<string, unknown> = {},
  expiresAt: number | null = null,
): Principal {
  return { subject, claims, expiresAt, authenticator: 'test' };
}

function config(input: Record<string, unknown>): BrokerConfig {
  return BrokerTargetSchema.parse(input);
}

interface Harness {
  broker: Broker<FakeSession>;
  clock: { now: number };
  refreshCalls: [FakeSession, string][];
}

function harness(input: Record<string, unknown>, options: Partial<BrokerOptions<FakeSession>> = {}): Harness {
  const clock = { now: T0 };
  const refreshCalls: [FakeSession, string][] = [];
  const broker = new Broker<FakeSession>(config(input), {
    maxJsonDepth: 32,
    now: () => clock.now,
    refresh: async (session, token) => {
      refreshCalls.push([session, token]);
      return undefined;
    },
    ...options,
  });
  return { broker, clock, refreshCalls };
}

function connect(h: Harness, who: Principal | null): FakeSession {
  const session = new FakeSession(who);
  h.broker.onOpen(session);
  return session;
}

function send(h: Harness, session: FakeSession, frame: unknown): void {
  const text = typeof frame === 'string' ? frame : JSON.stringify(frame);
  h.broker.onMessage(session, Buffer.from(text), false);
}

const sub = (id: string | number, channel: string) => ({ type: 'subscribe', id, channel });
const unsub = (id: string | number, channel: string) => ({ type: 'unsubscribe', id, channel });
const pub = (id: string | number, channel: string, data: unknown) => ({ type: 'publish', id, channel, data });
const ack = (id: string | number) => ({ type: 'ack', id });
/** The ack of a subscribe: the channel's epoch and the seq of its latest publication. */
const subAck = (id: string | number, seq = 0) => ({ type: 'ack', id, epoch: EPOCH, seq });
const err = (code: string, id?: string | number) =>
  id === undefined ? { type: 'error', code } : { type: 'error', id, code };

/** Frames with the message text dropped, so tests assert codes, not prose. */
function codes(session: FakeSession): Record<string, unknown>[] {
  return session.frames().map(({ message: _message, ...rest }) => rest);
}

const alice = principal('alice', { org: 'acme', roles: ['reader', 'writer'] });
const bob = principal('bob', { org: 'globex', roles: ['reader'] });

const RULES = [
  { pattern: 'user:{sub}', subscribe: true, publish: true },
  { pattern: 'org:{claims.org}:*', subscribe: true, publish: true },
  { pattern: 'room:*', subscribe: true, publish: true, when: { claims: { roles: 'writer' } } },
  { pattern: 'room:*', subscribe: true },
  { pattern: 'news:*', subscribe: true },
];

describe('Broker: subscribe and unsubscribe', () => {
  it('acknowledges a subscribe and delivers publications to the subscriber', () => {
    const h = harness({ channels: RULES });
    const a = connect(h, alice);
    send(h, a, sub('s1', 'user:alice'));
    assert.deepEqual(a.frames(), [subAck('s1')]);
    assert.deepEqual(h.broker.publish('user:alice', { n: 1 }), { ok: true, delivered: 1 });
    assert.deepEqual(a.frames(), [{ type: 'message', channel: 'user:alice', seq: 1, data: { n: 1 } }]);
  });

  it('M-03 user:alice is unreadable by bob: FORBIDDEN, and zero bytes of hers reach him', () => {
    const h = harness({ channels: RULES });
    const a = connect(h, alice);
    const b = connect(h, bob);
    send(h, a, sub(1, 'user:alice'));
    for (const [i, channel] of ['user:alice', 'user:Alice', 'user:*', 'user:{sub}', 'org:acme:x'].entries()) {
      send(h, b, sub(i, channel));
      send(h, b, pub(`p${i}`, channel, { forged: true }));
    }
    const frames = codes(b);
    assert.equal(frames.length, 10);
    for (const f of frames) assert.equal(f.code, 'FORBIDDEN');
    h.broker.publish('user:alice', { secret: 'alice-only' });
    h.broker.publish('org:acme:x', { secret: 'acme-only' });
    assert.deepEqual(b.frames(), []);
    assert.equal(
      a.frames().filter((f) => f.type === 'message').length,
      1,
      'bob forged nothing into her channel',
    );
  });

  it('M-04 refuses wildcard and look-alike names with FORBIDDEN', () => {
    const h = harness({
      channels: [
        { pattern: '*', subscribe: true },
        { pattern: '*:*', subscribe: true },
      ],
    });
    const a = connect(h, alice);
    const names = ['*', '#', '>', 'user.>', 'user:*', '..', '.+', 'user:\uff21lice', 'x'.repeat(201)];
    for (const name of names) send(h, a, sub(name.slice(0, 64), name));
    assert.deepEqual(
      codes(a).map((f) => f.code),
      names.map(() => 'FORBIDDEN'),
    );
    assert.equal(h.broker.channelCount, 0);
  });

  it('M-08 acknowledges a repeated subscribe without subscribing twice', () => {
    const h = harness({ channels: RULES });
    const a = connect(h, alice);
    send(h, a, sub(1, 'news:x'));
    send(h, a, sub(2, 'news:x'));
    assert.deepEqual(a.frames(), [subAck(1), subAck(2)]);
    assert.deepEqual(h.broker.publish('news:x', 'once'), { ok: true, delivered: 1 });
    assert.equal(a.frames().length, 1);
    assert.deepEqual(h.broker.subscriptionsOf(a), ['news:x']);
  });

  it('R-09 caps subscriptions per connection; unsubscribing frees a slot', () => {
    const h = harness({ channels: RULES, maxSubscriptions: 3 });
    const a = connect(h, alice);
    for (let i = 0; i < 4; i++) send(h, a, sub(i, `news:${i}`));
    assert.deepEqual(codes(a), [subAck(0), subAck(1), subAck(2), err('TOO_MANY_SUBSCRIPTIONS', 3)]);
    send(h, a, unsub('u', 'news:0'));
    send(h, a, sub('again', 'news:3'));
    assert.deepEqual(codes(a), [ack('u'), subAck('again')]);
    assert.deepEqual(h.broker.subscriptionsOf(a).sort(), ['news:1', 'news:2', 'news:3']);
  });

  it('acknowledges an unsubscribe of a channel it never had and stops delivery after one', () => {
    const h = harness({ channels: RULES });
    const a = connect(h, alice);
    send(h, a, unsub(1, 'news:none'));
    send(h, a, sub(2, 'news:x'));
    send(h, a, unsub(3, 'news:x'));
    assert.deepEqual(a.frames(), [ack(1), subAck(2), ack(3)]);
    assert.deepEqual(h.broker.publish('news:x', 1), { ok: true, delivered: 0 });
    assert.equal(h.broker.channelCount, 0, 'no channel has a subscriber left');
  });

  it('refuses a subscribe after the credential expired', () => {
    const h = harness({ channels: RULES });
    const a = connect(h, principal('alice', {}, T0 + 1_000));
    send(h, a, sub(1, 'user:alice'));
    h.clock.now = T0 + 1_000;
    send(h, a, sub(2, 'news:x'));
    assert.deepEqual(codes(a), [subAck(1), err('CREDENTIAL_EXPIRED', 2)]);
  });
});

describe('Broker: publishing from a client', () => {
  it('checks the publish permission of the deciding rule', () => {
    const h = harness({ channels: RULES });
    const a = connect(h, alice);
    const b = connect(h, bob);
    send(h, b, sub(1, 'room:lobby'));
    send(h, b, pub(2, 'room:lobby', 'from bob'));
    send(h, a, pub(3, 'room:lobby', 'from alice'));
    send(h, a, pub(4, 'news:x', 'no rule grants publish'));
    assert.deepEqual(codes(b), [
      subAck(1),
      err('FORBIDDEN', 2),
      { type: 'message', channel: 'room:lobby', seq: 1, data: 'from alice' },
    ]);
    assert.deepEqual(codes(a), [ack(3), err('FORBIDDEN', 4)]);
  });

  it('delivers to the publisher too when it is subscribed', () => {
    const h = harness({ channels: RULES });
    const a = connect(h, alice);
    send(h, a, sub(1, 'user:alice'));
    send(h, a, pub(2, 'user:alice', { note: 'self' }));
    assert.deepEqual(a.frames(), [
      subAck(1),
      { type: 'message', channel: 'user:alice', seq: 1, data: { note: 'self' } },
      ack(2),
    ]);
  });

  it('R-09 rate-limits publishing per channel and per connection', () => {
    const h = harness({
      channels: [{ pattern: 'room:*', subscribe: true, publish: true, publishPerSecond: 2, publishBurst: 3 }],
    });
    const a = connect(h, alice);
    const b = connect(h, bob);
    for (let i = 0; i < 4; i++) send(h, a, pub(i, 'room:1', i));
    assert.deepEqual(codes(a), [ack(0), ack(1), ack(2), err('RATE_LIMITED', 3)]);
    send(h, a, pub('other', 'room:2', 'x'));
    send(h, b, pub('bob', 'room:1', 'x'));
    assert.deepEqual(codes(a), [ack('other')], 'another channel has its own bucket');
    assert.deepEqual(codes(b), [ack('bob')], 'another connection has its own bucket');
    h.clock.now = T0 + 500;
    send(h, a, pub('later', 'room:1', 'x'));
    send(h, a, pub('too-soon', 'room:1', 'x'));
    assert.deepEqual(codes(a), [ack('later'), err('RATE_LIMITED', 'too-soon')]);
  });

  it('keeps per-channel publish buckets bounded by maxSubscriptions', () => {
    const h = harness({
      channels: [{ pattern: 'room:*', publish: true, publishPerSecond: 1, publishBurst: 1 }],
      maxSubscriptions: 2,
      maxErrors: 100,
    });
    const a = connect(h, alice);
    send(h, a, pub(1, 'room:a', 1));
    send(h, a, pub(2, 'room:b', 1));
    send(h, a, pub(3, 'room:c', 1));
    assert.deepEqual(codes(a), [ack(1), ack(2), err('RATE_LIMITED', 3)]);
    h.clock.now = T0 + 1_000; // a and b refilled: their buckets can be forgotten
    send(h, a, pub(4, 'room:c', 1));
    assert.deepEqual(codes(a), [ack(4)]);
  });

  it('validates data against the channel schema', () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-broker-'));
    const schema = join(dir, 'chat.json');
    writeFileSync(
      schema,
      JSON.stringify({
        type: 'object',
        properties: { text: { type: 'string', maxLength: 10 } },
        required: ['text'],
        additionalProperties: false,
      }),
    );
    const h = harness({
      channels: [
        { pattern: 'chat:*', subscribe: true, publish: true, schema },
        { pattern: 'free:*', subscribe: true, publish: true },
      ],
    });
    const a = connect(h, alice);
    const b = connect(h, bob);
    send(h, b, sub(0, 'chat:1'));
    b.frames();
    send(h, a, pub(1, 'chat:1', { text: 'hi' }));
    send(h, a, pub(2, 'chat:1', { text: 'far too long for it' }));
    send(h, a, pub(3, 'chat:1', { text: 'hi', admin: true }));
    send(h, a, pub(4, 'chat:1', 'hi'));
    send(h, a, pub(5, 'free:1', 'anything'));
    assert.deepEqual(codes(a), [
      ack(1),
      err('SCHEMA_VIOLATION', 2),
      err('SCHEMA_VIOLATION', 3),
      err('SCHEMA_VIOLATION', 4),
      ack(5),
    ]);
    assert.deepEqual(
      b.frames().map((f) => f.data),
      [{ text: 'hi' }],
      'only the valid publication was delivered',
    );
  });

  it('refuses to start with a schema file that does not compile', () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-broker-'));
    const schema = join(dir, 'bad.json');
    writeFileSync(schema, JSON.stringify({ type: 'object', propertiez: {} }));
    assert.throws(
      () => harness({ channels: [{ pattern: 'a', publish: true, schema }] }),
      /schema .*bad\.json/,
    );
  });
});

describe('Broker: fan-out', () => {
  function fanOut(subscribers: number): { stringifyCalls: number; sessions: FakeSession[]; h: Harness } {
    const h = harness({ channels: [{ pattern: 'room:*', subscribe: true, publish: true }] });
    const sessions = Array.from({ length: subscribers }, (_, i) => connect(h, principal(`u${i}`)));
    for (const s of sessions) send(h, s, sub(1, 'room:big'));
    for (const s of sessions) s.frames();
    const original = JSON.stringify;
    let stringifyCalls = 0;
    JSON.stringify = ((...args: Parameters<typeof JSON.stringify>) => {
      stringifyCalls++;
      return original(...args);
    }) as typeof JSON.stringify;
    try {
      assert.deepEqual(h.broker.publish('room:big', { big: 'x'.repeat(1000) }), {
        ok: true,
        delivered: subscribers,
      });
    } finally {
      JSON.stringify = original;
    }
    return { stringifyCalls, sessions, h };
  }

  it('serialises a publication once, whatever the number of subscribers', () => {
    const small = fanOut(10);
    const large = fanOut(2_000);
    assert.equal(large.stringifyCalls, small.stringifyCalls, 'no serialisation per subscriber');
    assert.ok(large.stringifyCalls <= 2, `${large.stringifyCalls} JSON.stringify calls for one publication`);
  });

  it('sends the very same bytes to every subscriber', () => {
    const { sessions } = fanOut(500);
    const first = sessions[0]?.sent[0];
    assert.ok(Buffer.isBuffer(first));
    for (const s of sessions) {
      assert.equal(s.sent.length, 1);
      assert.equal(s.sent[0], first, 'the same Buffer instance');
    }
    assert.deepEqual(JSON.parse(first.toString()), {
      type: 'message',
      channel: 'room:big',
      seq: 1,
      data: { big: 'x'.repeat(1000) },
    });
  });

  it('numbers publications per channel and counts only accepted sends', () => {
    const h = harness({ channels: [{ pattern: 'room:*', subscribe: true }] });
    const a = connect(h, alice);
    const b = connect(h, bob);
    send(h, a, sub(1, 'room:1'));
    send(h, b, sub(1, 'room:1'));
    send(h, a, sub(2, 'room:2'));
    h.broker.publish('room:1', 'one');
    h.broker.publish('room:2', 'other');
    b.accepting = false;
    assert.deepEqual(h.broker.publish('room:1', 'two'), { ok: true, delivered: 1 });
    assert.deepEqual(
      a
        .frames()
        .filter((f) => f.type === 'message')
        .map((f) => [f.channel, f.seq, f.data]),
      [
        ['room:1', 1, 'one'],
        ['room:2', 1, 'other'],
        ['room:1', 2, 'two'],
      ],
    );
  });

  it('refuses server-side publications with an invalid channel or unserialisable data', () => {
    const h = harness({ channels: RULES });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    for (const [channel, data] of [
      ['user:*', 1],
      ['', 1],
      ['a'.repeat(201), 1],
      ['news:x', undefined],
      ['news:x', () => 1],
      ['news:x', 1n],
      ['news:x', cyclic],
    ] as [string, unknown][]) {
      assert.deepEqual(h.broker.publish(channel, data), { ok: false, code: 'BAD_REQUEST' }, channel);
    }
    assert.deepEqual(h.broker.publish('news:nobody', { a: 1 }), { ok: true, delivered: 0 });
    assert.equal(h.broker.channelCount, 0, 'publishing creates no index entry');
    assert.equal(h.broker.retainedChannelCount, 0, 'nor retains anything for a channel nobody held');
  });
});

describe('Broker: delivery-time ACL', () => {
  it('A-08 unsubscribes a subscriber whose new principal the rule no longer grants', () => {
    const h = harness({ channels: RULES });
    const a = connect(h, alice);
    send(h, a, sub(1, 'org:acme:news'));
    send(h, a, sub(2, 'user:alice'));
    a.frames();
    a.info.principal = principal('alice', { org: 'globex' }); // moved to another org mid-connection
    assert.deepEqual(h.broker.publish('org:acme:news', { secret: 1 }), { ok: true, delivered: 0 });
    assert.deepEqual(codes(a), [{ type: 'error', channel: 'org:acme:news', code: 'FORBIDDEN' }]);
    assert.deepEqual(h.broker.subscriptionsOf(a), ['user:alice']);
    assert.equal(h.broker.subscriberCount('org:acme:news'), 0);
    h.broker.publish('org:acme:news', { secret: 2 });
    h.broker.publish('user:alice', 'still hers');
    assert.deepEqual(
      a.frames().map((f) => f.data),
      ['still hers'],
    );
  });

  it('A-08 drops a subscription whose `when` claim was removed', () => {
    const h = harness({
      channels: [{ pattern: 'ch1', subscribe: true, when: { claims: { roles: 'reader:ch1' } } }],
    });
    const a = connect(h, principal('alice', { roles: ['reader:ch1'] }));
    const b = connect(h, principal('bob', { roles: ['reader:ch1'] }));
    send(h, a, sub(1, 'ch1'));
    send(h, b, sub(1, 'ch1'));
    a.frames();
    b.frames();
    a.info.principal = principal('alice', { roles: [] });
    assert.deepEqual(h.broker.publish('ch1', 'x'), { ok: true, delivered: 1 });
    assert.deepEqual(codes(a), [{ type: 'error', channel: 'ch1', code: 'FORBIDDEN' }]);
    assert.equal(b.frames().length, 1);
  });

  it('keeps delivering when a replaced principal is still granted', () => {
    const h = harness({ channels: RULES });
    const a = connect(h, alice);
    send(h, a, sub(1, 'user:alice'));
    a.frames();
    a.info.principal = principal('alice', { org: 'acme' }, T0 + 60_000);
    h.broker.publish('user:alice', 1);
    assert.deepEqual(
      a.frames().map((f) => f.type),
      ['message'],
    );
  });

  it('A-07 delivers nothing once the credential has expired', () => {
    const h = harness({ channels: RULES });
    const a = connect(h, principal('alice', {}, T0 + 3_000));
    send(h, a, sub(1, 'user:alice'));
    a.frames();
    h.clock.now = T0 + 2_999;
    assert.deepEqual(h.broker.publish('user:alice', 'before'), { ok: true, delivered: 1 });
    h.clock.now = T0 + 3_000;
    assert.deepEqual(h.broker.publish('user:alice', 'after'), { ok: true, delivered: 0 });
    assert.deepEqual(
      a.frames().map((f) => f.data),
      ['before'],
    );
  });
});

describe('Broker: errors and closing', () => {
  it('M-01 answers malformed frames with error frames carrying the code and valid id', () => {
    const h = harness({ channels: RULES });
    const a = connect(h, alice);
    send(h, a, '{not json');
    send(h, a, '{"type":"sub","id":"x","channel":"a"}');
    send(h, a, '{"type":"subscribe","id":"y","channel":42}');
    send(h, a, '{"type":"subscribe","id":"z","channel":"news:a","userId":"victim"}');
    const frames = a.frames();
    assert.deepEqual(
      frames.map(({ message: _m, ...rest }) => rest),
      [err('BAD_JSON'), err('BAD_REQUEST', 'x'), err('BAD_REQUEST', 'y'), err('BAD_REQUEST', 'z')],
    );
    for (const f of frames) assert.ok(!JSON.stringify(f).includes('victim'), 'input never echoed');
  });

  it('M-01 closes with TOO_MANY_ERRORS after maxErrors error frames', () => {
    const h = harness({ channels: RULES, maxErrors: 3 });
    const a = connect(h, alice);
    for (let i = 0; i < 3; i++) send(h, a, sub(i, 'user:bob'));
    assert.equal(a.frames().length, 3);
    assert.equal(a.closedWith, null);
    send(h, a, '{not json');
    assert.equal(a.closedWith, 'TOO_MANY_ERRORS');
    assert.deepEqual(a.frames(), [], 'the closing error is the close code, not a fourth frame');
    send(h, a, sub('late', 'user:alice'));
    assert.deepEqual(a.frames(), [], 'nothing is processed after the close');
  });

  it('M-01 refills the error allowance at maxErrors per minute', () => {
    const h = harness({ channels: RULES, maxErrors: 2 });
    const a = connect(h, alice);
    send(h, a, '{');
    send(h, a, '{');
    h.clock.now = T0 + 30_000;
    send(h, a, '{');
    assert.equal(a.closedWith, null);
    send(h, a, '{');
    assert.equal(a.closedWith, 'TOO_MANY_ERRORS');
  });

  it('closes a binary frame with UNSUPPORTED_DATA', () => {
    const h = harness({ channels: RULES });
    const a = connect(h, alice);
    h.broker.onMessage(a, Buffer.from(JSON.stringify(sub(1, 'user:alice'))), true);
    assert.equal(a.closedWith, 'UNSUPPORTED_DATA');
    assert.deepEqual(h.broker.subscriptionsOf(a), []);
  });

  it('removes a closed session from every channel and, with history off, forgets empty channels', () => {
    const h = harness({ channels: RULES, historySize: 0 });
    const a = connect(h, alice);
    const b = connect(h, bob);
    for (let i = 0; i < 50; i++) send(h, a, sub(i, `news:${i}`));
    send(h, a, sub('u', 'user:alice'));
    send(h, b, sub(1, 'news:0'));
    assert.equal(h.broker.channelCount, 51);
    h.broker.onClose(a);
    assert.equal(h.broker.channelCount, 1, 'only the channel bob still holds is left');
    assert.equal(h.broker.subscriberCount('news:0'), 1);
    assert.deepEqual(h.broker.subscriptionsOf(a), []);
    assert.equal(h.broker.connectionCount, 1);
    h.broker.onClose(b);
    h.broker.onClose(b);
    assert.equal(h.broker.channelCount, 0);
    assert.equal(h.broker.connectionCount, 0);
    assert.equal(h.broker.retainedChannelCount, 0);
    assert.deepEqual(h.broker.publish('news:0', 1), { ok: true, delivered: 0 });
  });
});

describe('Broker: auth.refresh', () => {
  it('calls the refresh hook with the session and token, then acknowledges', async () => {
    const h = harness({ channels: RULES });
    const a = connect(h, alice);
    send(h, a, { type: 'auth.refresh', id: 'r1', token: 'new.jwt.token' });
    assert.deepEqual(a.frames(), [], 'the answer waits for the hook');
    await new Promise(setImmediate);
    assert.deepEqual(h.refreshCalls, [[a, 'new.jwt.token']]);
    assert.deepEqual(a.frames(), [ack('r1')]);
  });

  it('answers the code the hook refuses with, counted as an error', async () => {
    const h = harness({ channels: RULES, maxErrors: 1 }, { refresh: async () => 'FORBIDDEN' });
    const a = connect(h, alice);
    send(h, a, { type: 'auth.refresh', id: 1, token: 'bob.token' });
    await new Promise(setImmediate);
    assert.deepEqual(codes(a), [err('FORBIDDEN', 1)]);
    send(h, a, { type: 'auth.refresh', id: 2, token: 'bob.token' });
    await new Promise(setImmediate);
    assert.equal(a.closedWith, 'TOO_MANY_ERRORS');
  });

  it('answers INTERNAL when the hook throws, and reports the error', async () => {
    const reported: unknown[] = [];
    const h = harness(
      { channels: RULES },
      {
        refresh: async () => {
          throw new Error('boom');
        },
        onError: (_s, e) => reported.push(e),
      },
    );
    const a = connect(h, alice);
    send(h, a, { type: 'auth.refresh', id: 1, token: 't' });
    await new Promise(setImmediate);
    assert.deepEqual(codes(a), [err('INTERNAL', 1)]);
    assert.equal(reported.length, 1);
  });

  it('allows one refresh in flight per connection', async () => {
    const h = harness({ channels: RULES });
    const a = connect(h, alice);
    send(h, a, { type: 'auth.refresh', id: 1, token: 't1' });
    send(h, a, { type: 'auth.refresh', id: 2, token: 't2' });
    await new Promise(setImmediate);
    assert.deepEqual(codes(a), [err('RATE_LIMITED', 2), ack(1)]);
    assert.equal(h.refreshCalls.length, 1);
  });

  it('re-checks subscriptions against the refreshed principal at once', async () => {
    const h = harness(
      { channels: RULES },
      {
        refresh: async (session) => {
          session.info.principal = principal('alice', { org: 'globex' });
          return undefined;
        },
      },
    );
    const a = connect(h, alice);
    send(h, a, sub(1, 'org:acme:news'));
    send(h, a, sub(2, 'user:alice'));
    a.frames();
    send(h, a, { type: 'auth.refresh', id: 'r', token: 't' });
    await new Promise(setImmediate);
    assert.deepEqual(codes(a), [ack('r'), { type: 'error', channel: 'org:acme:news', code: 'FORBIDDEN' }]);
    assert.deepEqual(h.broker.subscriptionsOf(a), ['user:alice']);
  });

  it('sends nothing when the session closed while the hook ran', async () => {
    const h = harness({ channels: RULES });
    const a = connect(h, alice);
    send(h, a, { type: 'auth.refresh', id: 1, token: 't' });
    h.broker.onClose(a);
    await new Promise(setImmediate);
    assert.deepEqual(a.frames(), []);
  });
});

describe('Broker: history and resume (M-07)', () => {
  const ROOMS = [{ pattern: 'room:*', subscribe: true, publish: true }, ...RULES];
  const since = (id: string | number, channel: string, epoch: string, seq: number) => ({
    type: 'subscribe',
    id,
    channel,
    since: { epoch, seq },
  });
  const msg = (channel: string, seq: number, data: unknown = seq) => ({
    type: 'message',
    channel,
    seq,
    data,
  });
  /** Publishes seqs from..to with the seq as data. */
  const publishRange = (h: Harness, channel: string, from: number, to: number) => {
    for (let n = from; n <= to; n++) h.broker.publish(channel, n);
  };
  /** Subscribes and returns the channel's epoch from the ack. */
  const epochOf = (h: Harness, s: FakeSession, channel: string): string => {
    send(h, s, sub('e', channel));
    const [first] = s.rawFrames();
    assert.equal(first?.type, 'ack');
    return first.epoch as string;
  };

  it('the subscribe ack carries the channel epoch (prefixed by the broker epoch) and its latest seq', () => {
    const h = harness({ channels: ROOMS });
    const a = connect(h, alice);
    const b = connect(h, bob);
    send(h, a, sub(1, 'room:1'));
    publishRange(h, 'room:1', 1, 3);
    send(h, b, sub(2, 'room:1'));
    const [first] = a.rawFrames();
    const [second] = b.rawFrames();
    assert.deepEqual(first, { type: 'ack', id: 1, epoch: first?.epoch, seq: 0 });
    assert.deepEqual(second, { type: 'ack', id: 2, epoch: first?.epoch, seq: 3 });
    assert.match(String(first?.epoch), EPOCH_RE);
    assert.ok(String(first?.epoch).startsWith(`${h.broker.epoch}.`));
    assert.notEqual(harness({ channels: ROOMS }).broker.epoch, h.broker.epoch, 'random per instance');
  });

  it('replays exactly the missed publications, in order, after the ack; live ones continue after them', () => {
    const h = harness({ channels: ROOMS });
    const a = connect(h, alice);
    const epoch = epochOf(h, a, 'room:1');
    publishRange(h, 'room:1', 1, 3);
    assert.deepEqual(a.frames(), [msg('room:1', 1), msg('room:1', 2), msg('room:1', 3)]);
    h.broker.onClose(a); // the connection drops after seq 3
    publishRange(h, 'room:1', 4, 6);
    const again = connect(h, alice);
    send(h, again, since('r', 'room:1', epoch, 3));
    h.broker.publish('room:1', 7);
    assert.deepEqual(again.frames(), [
      subAck('r', 6),
      msg('room:1', 4),
      msg('room:1', 5),
      msg('room:1', 6),
      msg('room:1', 7),
    ]);
  });

  it('replays nothing when nothing was missed, and only the rest when part was received', () => {
    const h = harness({ channels: ROOMS });
    const a = connect(h, alice);
    const epoch = epochOf(h, a, 'room:1');
    publishRange(h, 'room:1', 1, 6);
    const b = connect(h, alice);
    send(h, b, since(1, 'room:1', epoch, 6));
    send(h, b, since(2, 'room:2', epochOf(h, connect(h, bob), 'room:2'), 0));
    assert.deepEqual(b.frames(), [subAck(1, 6), subAck(2, 0)]);
    const c = connect(h, alice);
    send(h, c, since(1, 'room:1', epoch, 4));
    assert.deepEqual(c.frames(), [subAck(1, 6), msg('room:1', 5), msg('room:1', 6)]);
    // since.seq 0 is "nothing received yet": the whole retained run.
    const d = connect(h, alice);
    send(h, d, since(1, 'room:1', epoch, 0));
    assert.deepEqual(
      d.frames().map((f) => f.seq),
      [6, 1, 2, 3, 4, 5, 6],
    );
  });

  it('a subscriber that resumes on a channel it already holds gets what it asked for, each live publication once', () => {
    const h = harness({ channels: ROOMS });
    const a = connect(h, alice);
    const epoch = epochOf(h, a, 'room:1');
    publishRange(h, 'room:1', 1, 2);
    a.frames();
    send(h, a, since('again', 'room:1', epoch, 1));
    h.broker.publish('room:1', 3);
    assert.deepEqual(a.frames(), [subAck('again', 2), msg('room:1', 2), msg('room:1', 3)]);
    assert.equal(h.broker.subscriberCount('room:1'), 1);
  });

  it('keeps the seq counter while the channel is retained: it never restarts under a client that may resume', () => {
    const h = harness({ channels: ROOMS, historyTtlMs: 10_000 });
    const a = connect(h, alice);
    const epoch = epochOf(h, a, 'room:1');
    publishRange(h, 'room:1', 1, 2);
    send(h, a, unsub('u', 'room:1'));
    assert.equal(h.broker.channelCount, 0);
    assert.equal(h.broker.retainedChannelCount, 1);
    h.clock.now = T0 + 9_999;
    assert.deepEqual(h.broker.publish('room:1', 3), { ok: true, delivered: 0 });
    a.frames();
    send(h, a, sub('back', 'room:1'));
    const [backAck] = a.rawFrames();
    assert.deepEqual(backAck, { type: 'ack', id: 'back', epoch, seq: 3 });
  });

  it('with a small historySize: ack, then a gap naming exactly the lost seqs, then the retained ones', () => {
    const h = harness({ channels: ROOMS, historySize: 3 });
    const a = connect(h, alice);
    const epoch = epochOf(h, a, 'room:1');
    publishRange(h, 'room:1', 1, 2);
    h.broker.onClose(a);
    publishRange(h, 'room:1', 3, 10);
    const b = connect(h, alice);
    send(h, b, since('r', 'room:1', epoch, 2));
    assert.deepEqual(b.frames(), [
      subAck('r', 10),
      { type: 'gap', channel: 'room:1', from: 3, to: 7 },
      msg('room:1', 8),
      msg('room:1', 9),
      msg('room:1', 10),
    ]);
  });

  it('historySize + 1 publications retain historySize: the oldest one is reported lost', () => {
    const h = harness({ channels: ROOMS, historySize: 5 });
    const a = connect(h, alice);
    const epoch = epochOf(h, a, 'room:1');
    publishRange(h, 'room:1', 1, 6);
    const cost = Buffer.byteLength(messageFrame('room:1', 1, '1')) + RETAINED_OVERHEAD_BYTES;
    assert.equal(h.broker.retainedBytes, 5 * cost);
    const b = connect(h, alice);
    send(h, b, since(1, 'room:1', epoch, 0));
    assert.deepEqual(
      b.frames().map((f) => (f.type === 'gap' ? [f.from, f.to] : f.seq)),
      [6, [1, 1], 2, 3, 4, 5, 6],
    );
  });

  it('historyTtlMs: expired publications are reported lost; an idle channel past it is forgotten and resumes with a reset', () => {
    const h = harness({ channels: ROOMS, historyTtlMs: 1_000 });
    const a = connect(h, alice);
    const epoch = epochOf(h, a, 'room:1');
    publishRange(h, 'room:1', 1, 3);
    h.clock.now = T0 + 600;
    publishRange(h, 'room:1', 4, 5);
    h.broker.onClose(a);
    h.clock.now = T0 + 1_000; // 1..3 are exactly 1000 ms old: gone
    const b = connect(h, alice);
    send(h, b, since(1, 'room:1', epoch, 0));
    assert.deepEqual(b.frames(), [
      subAck(1, 5),
      { type: 'gap', channel: 'room:1', from: 1, to: 3 },
      msg('room:1', 4),
      msg('room:1', 5),
    ]);
    h.broker.onClose(b); // left at T0 + 1000: kept until T0 + 2000
    h.clock.now = T0 + 2_000;
    const c = connect(h, alice);
    send(h, c, since(1, 'room:1', epoch, 5));
    const [resetAck, reset] = c.rawFrames();
    assert.equal(resetAck?.seq, 0, 'a new incarnation of the channel');
    assert.notEqual(resetAck?.epoch, epoch, 'with a new epoch, so old seqs cannot be mistaken for new ones');
    assert.deepEqual(reset, { type: 'gap', channel: 'room:1', reset: true });
  });

  it('idle channels are swept by later activity, so retained memory does not outlive the TTL', () => {
    const h = harness({ channels: ROOMS, historyTtlMs: 1_000 });
    const a = connect(h, alice);
    for (let i = 0; i < 20; i++) send(h, a, sub(i, `room:${i}`));
    for (let i = 0; i < 20; i++) h.broker.publish(`room:${i}`, 'x'.repeat(100));
    h.broker.onClose(a);
    assert.equal(h.broker.retainedChannelCount, 20);
    assert.ok(h.broker.retainedBytes > 20 * 100);
    h.clock.now = T0 + 1_000;
    const b = connect(h, bob);
    send(h, b, sub(1, 'news:other'));
    h.broker.publish('news:other', 1);
    assert.equal(h.broker.retainedChannelCount, 1, 'only the channel just published to');
    assert.equal(
      h.broker.retainedBytes,
      Buffer.byteLength(messageFrame('news:other', 1, '1')) + RETAINED_OVERHEAD_BYTES,
    );
  });

  it('a different epoch (the gateway restarted) gets ack then reset, and no replay', () => {
    const before = harness({ channels: ROOMS });
    const old = connect(before, alice);
    const epoch = epochOf(before, old, 'room:1');
    publishRange(before, 'room:1', 1, 4);
    const after = harness({ channels: ROOMS }); // a new broker: a new gateway start
    const b = connect(after, alice);
    send(after, b, sub('x', 'room:1'));
    after.broker.publish('room:1', 'new');
    b.frames();
    send(after, b, since('r', 'room:1', epoch, 4));
    assert.deepEqual(b.frames(), [subAck('r', 1), { type: 'gap', channel: 'room:1', reset: true }]);
  });

  it('a since.seq the channel never reached is a reset, not silence', () => {
    const h = harness({ channels: ROOMS });
    const a = connect(h, alice);
    const epoch = epochOf(h, a, 'room:1');
    publishRange(h, 'room:1', 1, 2);
    a.frames();
    send(h, a, since('r', 'room:1', epoch, 50));
    assert.deepEqual(a.frames(), [subAck('r', 2), { type: 'gap', channel: 'room:1', reset: true }]);
  });

  it('historySize 0: the seq space ends with the last subscriber (reset); while others hold it, a gap names the loss', () => {
    const h = harness({ channels: ROOMS, historySize: 0 });
    const a = connect(h, alice);
    const b = connect(h, bob);
    const epoch = epochOf(h, a, 'room:1');
    send(h, b, sub(1, 'room:1'));
    publishRange(h, 'room:1', 1, 2);
    h.broker.onClose(a);
    publishRange(h, 'room:1', 3, 5);
    assert.equal(h.broker.retainedBytes, 0);
    const a2 = connect(h, alice);
    send(h, a2, since('r', 'room:1', epoch, 2));
    assert.deepEqual(a2.frames(), [subAck('r', 5), { type: 'gap', channel: 'room:1', from: 3, to: 5 }]);
    h.broker.onClose(a2);
    h.broker.onClose(b);
    assert.equal(h.broker.retainedChannelCount, 0);
    const a3 = connect(h, alice);
    send(h, a3, since('r', 'room:1', epoch, 5));
    assert.deepEqual(a3.frames(), [subAck('r', 0), { type: 'gap', channel: 'room:1', reset: true }]);
  });

  it('maxRetainedChannels: the least recently published channel loses its history first', () => {
    const h = harness({ channels: ROOMS, maxRetainedChannels: 2 });
    const a = connect(h, alice);
    const epochs = [1, 2, 3].map((n) => epochOf(h, a, `room:${n}`));
    for (const n of [1, 2, 3]) {
      h.clock.now += 1;
      h.broker.publish(`room:${n}`, 1);
    }
    assert.equal(h.broker.retainedChannelCount, 2);
    const b = connect(h, alice);
    send(h, b, since(1, 'room:1', epochs[0] as string, 0));
    send(h, b, since(2, 'room:2', epochs[1] as string, 0));
    assert.deepEqual(b.frames(), [
      subAck(1, 1),
      { type: 'gap', channel: 'room:1', from: 1, to: 1 },
      subAck(2, 1),
      msg('room:2', 1),
    ]);
  });

  it('maxRetainedChannels: an evicted channel nobody holds is forgotten, and resuming it is a reset', () => {
    const h = harness({ channels: ROOMS, maxRetainedChannels: 2 });
    const a = connect(h, alice);
    const epochs = [1, 2, 3].map((n) => epochOf(h, a, `room:${n}`));
    h.broker.onClose(a); // room:1, room:2, room:3 left in that order: room:1 goes
    assert.equal(h.broker.retainedChannelCount, 2);
    const b = connect(h, alice);
    send(h, b, since(1, 'room:1', epochs[0] as string, 0));
    send(h, b, since(2, 'room:2', epochs[1] as string, 0));
    assert.deepEqual(b.frames(), [
      subAck(1, 0),
      { type: 'gap', channel: 'room:1', reset: true },
      subAck(2, 0),
    ]);
  });

  it('maxHistoryBytes: over the budget the least recently published channel is trimmed first, oldest first', () => {
    const cost = Buffer.byteLength(messageFrame('room:1', 1, '1')) + RETAINED_OVERHEAD_BYTES;
    const h = harness({ channels: ROOMS, maxHistoryBytes: 3 * cost });
    const a = connect(h, alice);
    const e1 = epochOf(h, a, 'room:1');
    const e2 = epochOf(h, a, 'room:2');
    publishRange(h, 'room:1', 1, 2);
    publishRange(h, 'room:2', 1, 1);
    assert.equal(h.broker.retainedBytes, 3 * cost);
    h.broker.publish('room:2', 2); // one cost over: room:1 loses seq 1
    assert.equal(h.broker.retainedBytes, 3 * cost);
    const b = connect(h, alice);
    send(h, b, since(1, 'room:1', e1, 0));
    send(h, b, since(2, 'room:2', e2, 0));
    assert.deepEqual(b.frames(), [
      subAck(1, 2),
      { type: 'gap', channel: 'room:1', from: 1, to: 1 },
      msg('room:1', 2),
      subAck(2, 2),
      msg('room:2', 1),
      msg('room:2', 2),
    ]);
  });

  it('maxHistoryBytes + 1: a publication bigger than the whole budget is not retained, and a resume reports it lost', () => {
    const small = Buffer.byteLength(messageFrame('room:1', 1, '"x"')) + RETAINED_OVERHEAD_BYTES;
    const h = harness({ channels: ROOMS, maxHistoryBytes: small });
    const a = connect(h, alice);
    const epoch = epochOf(h, a, 'room:1');
    h.broker.publish('room:1', 'x');
    assert.equal(h.broker.retainedBytes, small, 'exactly the budget is kept');
    h.broker.publish('room:1', 'xy'); // one byte more than the budget on its own
    assert.equal(h.broker.retainedBytes, 0);
    const b = connect(h, alice);
    send(h, b, since(1, 'room:1', epoch, 0));
    assert.deepEqual(b.frames(), [subAck(1, 2), { type: 'gap', channel: 'room:1', from: 1, to: 2 }]);
  });

  it('M-03 history is as private as the live channel: a refused resume gets the refusal and zero retained bytes', () => {
    const h = harness({ channels: ROOMS });
    const a = connect(h, alice);
    const epoch = epochOf(h, a, 'user:alice');
    h.broker.publish('user:alice', { secret: 'alice-only' });
    const b = connect(h, bob);
    send(h, b, since(1, 'user:alice', epoch, 0));
    assert.deepEqual(codes(b), [err('FORBIDDEN', 1)]);
    const expired = connect(h, principal('alice', {}, T0));
    send(h, expired, since(1, 'user:alice', epoch, 0));
    assert.deepEqual(codes(expired), [err('CREDENTIAL_EXPIRED', 1)]);
  });

  it('replays re-check the channel ACL like live delivery: a principal dropped mid-replay stops it with the drop error', () => {
    const h = harness({ channels: ROOMS });
    const a = connect(h, alice);
    const epoch = epochOf(h, a, 'org:acme:news');
    publishRange(h, 'org:acme:news', 1, 5);
    const b = connect(h, alice);
    let sends = 0;
    b.afterSend = () => {
      if (++sends === 2) b.info.principal = principal('alice', { org: 'globex' }); // after the ack and seq 1
    };
    send(h, b, since(1, 'org:acme:news', epoch, 0));
    assert.deepEqual(codes(b), [
      subAck(1, 5),
      msg('org:acme:news', 1),
      { type: 'error', channel: 'org:acme:news', code: 'FORBIDDEN' },
    ]);
    assert.deepEqual(h.broker.subscriptionsOf(b), []);
  });

  it('R-08 replays are subject to the send-queue cap: the session is closed, and what it got is a prefix in order', () => {
    const h = harness({ channels: ROOMS });
    const a = connect(h, alice);
    const epoch = epochOf(h, a, 'room:1');
    for (let n = 1; n <= 10; n++) h.broker.publish('room:1', 'x'.repeat(100));
    const b = connect(h, alice);
    b.maxQueueBytes = 600; // the ack and a few messages of ~150 bytes
    send(h, b, since(1, 'room:1', epoch, 0));
    assert.equal(b.closedWith, 'SLOW_CONSUMER');
    const frames = b.frames();
    assert.deepEqual(frames[0], subAck(1, 10));
    const seqs = frames.slice(1).map((f) => f.seq);
    assert.ok(seqs.length > 0 && seqs.length < 10, `${seqs.length} replayed before the cap`);
    assert.deepEqual(
      seqs,
      seqs.map((_, i) => i + 1),
    );
  });

  it('malformed since is BAD_REQUEST and subscribes nothing', () => {
    const h = harness({ channels: ROOMS });
    const a = connect(h, alice);
    for (const bad of [null, {}, { epoch: 'e' }, { epoch: 'e', seq: -1 }, { epoch: 'e', seq: 1, x: 1 }, 5]) {
      send(h, a, { type: 'subscribe', id: 1, channel: 'room:1', since: bad });
    }
    assert.deepEqual(
      codes(a).map((f) => f.code),
      Array(6).fill('BAD_REQUEST'),
    );
    assert.deepEqual(h.broker.subscriptionsOf(a), []);
  });
});
