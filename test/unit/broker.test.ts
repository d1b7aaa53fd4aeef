// The Broker driven with fake sessions (send/close/info only): the index, ACL, limits and fan-out
// logic gain nothing from a real socket. End-to-end tests over real sockets live in test/e2e.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { type BrokerConfig, BrokerTargetSchema } from '../../src/config/schema.js';
import type { Principal } from '../../src/core/principal.js';
import type { ErrorCode } from '../../src/protocol.js';
import { Broker, type BrokerOptions, type BrokerSession } from '../../src/server/broker.js';

const T0 = 1_000_000;

class FakeSession implements BrokerSession {
  readonly sent: (Buffer | string)[] = [];
  closedWith: ErrorCode | null = null;
  info: { principal: Principal | null };
  /** What send answers: false models a closed socket or a slow consumer being closed. */
  accepting = true;

  constructor(principal: Principal | null) {
    this.info = { principal };
  }

  send(data: Buffer | string, isBinary: boolean): boolean {
    assert.equal(isBinary, false, 'the broker only sends text');
    if (!this.accepting || this.closedWith) return false;
    this.sent.push(data);
    return true;
  }

  close(code: ErrorCode): void {
    this.closedWith ??= code;
  }

  /** The frames received since the last call, parsed. */
  frames(): Record<string, unknown>[] {
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
    assert.deepEqual(a.frames(), [ack('s1')]);
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
    assert.deepEqual(a.frames(), [ack(1), ack(2)]);
    assert.deepEqual(h.broker.publish('news:x', 'once'), { ok: true, delivered: 1 });
    assert.equal(a.frames().length, 1);
    assert.deepEqual(h.broker.subscriptionsOf(a), ['news:x']);
  });

  it('R-09 caps subscriptions per connection; unsubscribing frees a slot', () => {
    const h = harness({ channels: RULES, maxSubscriptions: 3 });
    const a = connect(h, alice);
    for (let i = 0; i < 4; i++) send(h, a, sub(i, `news:${i}`));
    assert.deepEqual(codes(a), [ack(0), ack(1), ack(2), err('TOO_MANY_SUBSCRIPTIONS', 3)]);
    send(h, a, unsub('u', 'news:0'));
    send(h, a, sub('again', 'news:3'));
    assert.deepEqual(codes(a), [ack('u'), ack('again')]);
    assert.deepEqual(h.broker.subscriptionsOf(a).sort(), ['news:1', 'news:2', 'news:3']);
  });

  it('acknowledges an unsubscribe of a channel it never had and stops delivery after one', () => {
    const h = harness({ channels: RULES });
    const a = connect(h, alice);
    send(h, a, unsub(1, 'news:none'));
    send(h, a, sub(2, 'news:x'));
    send(h, a, unsub(3, 'news:x'));
    assert.deepEqual(a.frames(), [ack(1), ack(2), ack(3)]);
    assert.deepEqual(h.broker.publish('news:x', 1), { ok: true, delivered: 0 });
    assert.equal(h.broker.channelCount, 0, 'the emptied channel is forgotten');
  });

  it('refuses a subscribe after the credential expired', () => {
    const h = harness({ channels: RULES });
    const a = connect(h, principal('alice', {}, T0 + 1_000));
    send(h, a, sub(1, 'user:alice'));
    h.clock.now = T0 + 1_000;
    send(h, a, sub(2, 'news:x'));
    assert.deepEqual(codes(a), [ack(1), err('CREDENTIAL_EXPIRED', 2)]);
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
      ack(1),
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
      ack(1),
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

  it('removes a closed session from every channel and forgets empty channels', () => {
    const h = harness({ channels: RULES });
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
