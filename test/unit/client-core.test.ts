// The client core over a fake transport and a fake clock: the reconnect loop obeys the retry flag,
// backs off with jitter, refreshes credentials, iterates messages, and the broker helpers match
// answers to requests across reconnects. No sockets and no sleeps.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BROKER_PROTOCOL } from '../../src/client/broker.js';
import type { Failure } from '../../src/client/classify.js';
import {
  Client,
  type CloseEvent,
  type DialRequest,
  type Message,
  type ReconnectingEvent,
  type Transport,
  type TransportHandlers,
} from '../../src/client/client.js';
import type { ClientError } from '../../src/client/errors.js';
import { type BaseConnectOptions, resolveBaseOptions, type Timers } from '../../src/client/options.js';

/** A clock whose timers run only when the test advances it. */
class FakeTimers implements Timers {
  private t = 1_000_000;
  private nextId = 1;
  private readonly tasks = new Map<number, { at: number; run: () => void }>();
  now(): number {
    return this.t;
  }
  setTimeout(run: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.tasks.set(id, { at: this.t + ms, run });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.tasks.delete(handle as number);
  }
  /** Moves the clock forward, running every timer that falls due, in order. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      const due = [...this.tasks.entries()]
        .filter(([, task]) => task.at <= end)
        .sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.tasks.delete(due[0]);
      this.t = due[1].at;
      due[1].run();
      await settle();
    }
    this.t = end;
  }
  pending(): number {
    return this.tasks.size;
  }
}

class FakeTransport implements Transport {
  readonly sent: Message[] = [];
  bufferedAmount = 0;
  closedWith: { code: number; reason: string } | undefined;
  paused = false;
  constructor(
    readonly request: DialRequest,
    readonly handlers: TransportHandlers,
  ) {}
  send(data: Message): void {
    this.sent.push(data);
  }
  close(code: number, reason: string): void {
    this.closedWith = { code, reason };
    queueMicrotask(() => this.handlers.close(code, reason, undefined));
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  /** Frames sent so far, parsed. */
  frames(): Record<string, unknown>[] {
    return this.sent.map((d) => JSON.parse(String(d)) as Record<string, unknown>);
  }
}

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

interface Harness {
  client: Client;
  timers: FakeTimers;
  dials: FakeTransport[];
  closes: CloseEvent[];
  reconnecting: ReconnectingEvent[];
  errors: ClientError[];
  debug: string[];
  last(): FakeTransport;
}

function harness(options: BaseConnectOptions = {}, url = 'wss://gw.test/x'): Harness {
  const timers = new FakeTimers();
  const dials: FakeTransport[] = [];
  const debug: string[] = [];
  const client = new Client(
    resolveBaseOptions(
      url,
      {
        reconnect: { initialDelayMs: 1_000, maxDelayMs: 8_000 },
        random: () => 0.5,
        timers,
        debug: (line) => debug.push(line),
        ...options,
      },
      false,
    ),
    (request, handlers) => {
      const transport = new FakeTransport(request, handlers);
      dials.push(transport);
      return transport;
    },
  );
  const h: Harness = {
    client,
    timers,
    dials,
    closes: [],
    reconnecting: [],
    errors: [],
    debug,
    last: () => dials[dials.length - 1] as FakeTransport,
  };
  client.on('close', (e) => h.closes.push(e));
  client.on('reconnecting', (e) => h.reconnecting.push(e));
  client.on('error', (e) => h.errors.push(e));
  return h;
}

const fail = (code: Failure['code'], retry: Failure['retry'], extra: Partial<Failure> = {}): Failure => ({
  code,
  retry,
  ...extra,
});

describe('client core: reconnect', () => {
  it('opens, delivers messages and sends', async () => {
    const h = harness();
    await settle();
    assert.equal(h.dials.length, 1);
    h.last().handlers.open('');
    assert.equal(h.client.readyState, Client.OPEN);
    const got: Message[] = [];
    h.client.on('message', (m) => got.push(m));
    h.last().handlers.message('hi');
    h.client.send('out');
    assert.deepEqual(got, ['hi']);
    assert.deepEqual(h.last().sent, ['out']);
  });

  it('C-09 backoff delays grow and are jittered (injected random and clock)', async () => {
    const randoms = [0.9, 0.1, 0.6, 0.3, 0.99];
    const h = harness({ random: () => randoms.shift() ?? 0.5 });
    await settle();
    for (let i = 0; i < 5; i++) {
      h.last().handlers.close(1006, '', fail('CONNECTION_FAILED', 'backoff'));
      const { delayMs } = h.reconnecting[i] as ReconnectingEvent;
      await h.timers.advance(delayMs - 1);
      assert.equal(h.dials.length, i + 1, 'no attempt before the delay');
      await h.timers.advance(1);
      assert.equal(h.dials.length, i + 2, 'an attempt when the delay ends');
    }
    assert.deepEqual(
      h.reconnecting.map((r) => r.delayMs),
      [900, 200, 2_400, 2_400, 7_920],
    );
    assert.deepEqual(
      h.reconnecting.map((r) => r.attempt),
      [1, 2, 3, 4, 5],
    );
  });

  it('C-09 1006 after a short-lived open keeps backing off; a stable connection resets the count', async () => {
    const h = harness({ reconnect: { initialDelayMs: 1_000, maxDelayMs: 8_000, stableAfterMs: 5_000 } });
    await settle();
    for (let i = 0; i < 3; i++) {
      h.last().handlers.open('');
      await h.timers.advance(100);
      h.last().handlers.close(1006, '', undefined);
      await h.timers.advance((h.reconnecting[i] as ReconnectingEvent).delayMs);
    }
    assert.deepEqual(
      h.reconnecting.map((r) => r.attempt),
      [1, 2, 3],
    );
    h.last().handlers.open('');
    await h.timers.advance(6_000);
    h.last().handlers.close(1006, '', undefined);
    assert.equal(h.reconnecting.at(-1)?.attempt, 1);
    assert.equal(h.closes.at(-1)?.errorCode, 'CONNECTION_LOST');
  });

  it('C-07 terminal codes are not retried', async () => {
    for (const [reason, code] of [
      ['ORIGIN_NOT_ALLOWED', 4403],
      ['UNAUTHENTICATED', 4401],
      ['CREDENTIAL_REVOKED', 4401],
      ['FORBIDDEN', 4403],
    ] as const) {
      const h = harness();
      await settle();
      h.last().handlers.open('');
      h.last().handlers.close(code, reason, undefined);
      await h.timers.advance(120_000);
      assert.equal(h.dials.length, 1, reason);
      assert.equal(h.client.readyState, Client.CLOSED);
      assert.equal(h.closes.length, 1);
      assert.deepEqual(
        { errorCode: h.closes[0]?.errorCode, reconnecting: h.closes[0]?.reconnecting },
        { errorCode: reason, reconnecting: false },
      );
      assert.equal(h.errors[0]?.code, reason);
    }
  });

  it('C-03 PIN_MISMATCH is terminal and reported with the pins seen', async () => {
    const h = harness();
    const seen: unknown[] = [];
    h.client.on('pinMismatch', (info) => seen.push(info));
    await settle();
    const info = { host: 'gw.test', scope: 'chain' as const, seen: ['sha256/x'] };
    h.last().handlers.close(1006, '', fail('PIN_MISMATCH', 'never', { pinMismatch: info }));
    await h.timers.advance(600_000);
    assert.equal(h.dials.length, 1);
    assert.deepEqual(seen, [info]);
    await assert.rejects(h.client.ready(), (err: ClientError) => err.code === 'PIN_MISMATCH');
  });

  it('C-09 Retry-After is honoured', async () => {
    const h = harness();
    await settle();
    h.last().handlers.close(1006, '', fail('SERVER_BUSY', 'backoff', { retryAfterMs: 30_000, status: 503 }));
    assert.equal(h.reconnecting[0]?.delayMs, 30_500);
    await h.timers.advance(30_000);
    assert.equal(h.dials.length, 1);
    await h.timers.advance(500);
    assert.equal(h.dials.length, 2);
  });

  it('C-07 CREDENTIAL_EXPIRED calls the token provider again before reconnecting', async () => {
    const reasons: string[] = [];
    let n = 0;
    const h = harness({
      token: ({ reason }) => {
        reasons.push(reason);
        n++;
        return `token${n}`;
      },
    });
    await settle();
    assert.equal(h.last().request.token, 'token1');
    h.last().handlers.open('');
    h.last().handlers.close(4401, 'CREDENTIAL_EXPIRED', undefined);
    assert.equal(h.closes[0]?.retry, 'refresh');
    await h.timers.advance(h.reconnecting[0]?.delayMs ?? 0);
    assert.equal(h.dials.length, 2);
    assert.equal(h.last().request.token, 'token2');
    assert.deepEqual(reasons, ['connect', 'refresh']);
  });

  it('C-07 with a static token, a refresh code stops instead of looping on the dead token', async () => {
    const h = harness({ token: 'static-token' });
    await settle();
    h.last().handlers.open('');
    h.last().handlers.close(4401, 'CREDENTIAL_EXPIRED', undefined);
    await h.timers.advance(120_000);
    assert.equal(h.dials.length, 1);
    assert.equal(h.client.readyState, Client.CLOSED);
  });

  it('a failing token provider is AUTH_UNAVAILABLE (backoff); an invalid token is UNAUTHENTICATED', async () => {
    const h = harness({
      token: () => {
        throw new Error('idp down: secret=SENTINEL');
      },
    });
    await settle();
    assert.equal(h.dials.length, 0);
    assert.equal(h.closes[0]?.errorCode, 'AUTH_UNAVAILABLE');
    assert.equal(h.closes[0]?.reconnecting, true);
    assert.ok(!h.errors.some((e) => e.message.includes('SENTINEL')));
    const bad = harness({ token: () => 'not a token' });
    await settle();
    assert.equal(bad.closes[0]?.errorCode, 'UNAUTHENTICATED');
    assert.equal(bad.closes[0]?.reconnecting, false);
  });

  it('C-07 the token never appears in debug lines, errors or the URL', async () => {
    const SENTINEL = 'SENTINEL-TOKEN-42';
    const h = harness({ token: async () => SENTINEL }, 'wss://gw.test/x?room=1');
    await settle();
    h.last().handlers.open('');
    h.last().handlers.close(4401, 'CREDENTIAL_EXPIRED', undefined);
    await h.timers.advance(10_000);
    h.last().handlers.close(1006, '', fail('CONNECTION_FAILED', 'backoff', { detail: 'ECONNREFUSED' }));
    assert.ok(h.debug.length >= 5);
    for (const line of [...h.debug, ...h.errors.map((e) => e.message)]) {
      assert.ok(!line.includes(SENTINEL), line);
      assert.ok(!line.includes('room=1'), line);
    }
    assert.ok(h.dials.every((d) => !d.request.url.href.includes(SENTINEL)));
  });

  it('stops after maxAttempts and rejects ready()', async () => {
    const h = harness({ reconnect: { initialDelayMs: 10, maxDelayMs: 10, maxAttempts: 2 } });
    await settle();
    for (let i = 0; i < 3; i++) {
      h.last().handlers.close(1006, '', fail('CONNECTION_FAILED', 'backoff'));
      await h.timers.advance(10);
    }
    assert.equal(h.dials.length, 3);
    assert.equal(h.client.readyState, Client.CLOSED);
    await assert.rejects(h.client.ready(), (err: ClientError) => err.code === 'CONNECTION_FAILED');
  });

  it('close() while waiting to reconnect stops at once', async () => {
    const h = harness();
    await settle();
    h.last().handlers.close(1006, '', fail('CONNECTION_FAILED', 'backoff'));
    h.client.close();
    assert.equal(h.client.readyState, Client.CLOSED);
    await h.timers.advance(60_000);
    assert.equal(h.dials.length, 1);
    assert.equal(h.closes.at(-1)?.reconnecting, false);
  });

  it('close() on an open connection sends the close and does not reconnect', async () => {
    const h = harness();
    await settle();
    h.last().handlers.open('');
    h.client.close(1000, 'bye');
    assert.deepEqual(h.last().closedWith, { code: 1000, reason: 'bye' });
    assert.equal(h.client.readyState, Client.CLOSING);
    await settle();
    assert.equal(h.client.readyState, Client.CLOSED);
    assert.throws(() => h.client.close(1005), TypeError);
    assert.throws(
      () => h.client.send('x'),
      (err: ClientError) => err.code === 'NOT_OPEN',
    );
  });

  it('setCredentials restarts a client stopped by a credential refusal', async () => {
    const h = harness();
    await settle();
    h.last().handlers.close(1006, '', fail('CLIENT_CERT_REJECTED', 'never'));
    await h.timers.advance(60_000);
    assert.equal(h.dials.length, 1);
    h.client.setCredentials({ token: 'fresh' });
    await settle();
    assert.equal(h.dials.length, 2);
    assert.equal(h.last().request.token, 'fresh');
  });
});

describe('client core: async iteration', () => {
  it('yields messages in order and ends when the client closes for good', async () => {
    const h = harness();
    await settle();
    h.last().handlers.open('');
    const iterator = h.client[Symbol.asyncIterator]();
    h.last().handlers.message('a');
    h.last().handlers.message(new Uint8Array([1, 2]));
    const first = await iterator.next();
    const second = await iterator.next();
    const third = iterator.next();
    h.last().handlers.message('c');
    assert.deepEqual([first.value, second.value, (await third).value], ['a', new Uint8Array([1, 2]), 'c']);
    const pending = iterator.next();
    h.last().handlers.close(1000, 'NORMAL_CLOSURE', undefined);
    assert.deepEqual(await pending, { value: undefined, done: true });
  });

  it('a slow reader pauses the transport and resumes it once drained', async () => {
    const h = harness({ maxQueuedMessages: 4 });
    await settle();
    h.last().handlers.open('');
    const iterator = h.client[Symbol.asyncIterator]();
    for (let i = 0; i < 4; i++) h.last().handlers.message(String(i));
    assert.equal(h.last().paused, true);
    await iterator.next();
    await iterator.next();
    assert.equal(h.last().paused, false);
  });

  it('a transport that cannot pause fails with QUEUE_OVERFLOW instead of growing', async () => {
    const h = harness({ maxQueuedMessages: 2 });
    await settle();
    const transport = h.last();
    (transport as { pause?: unknown }).pause = undefined;
    transport.handlers.open('');
    h.client[Symbol.asyncIterator]();
    for (let i = 0; i < 3; i++) transport.handlers.message(String(i));
    await settle();
    assert.deepEqual(transport.closedWith, { code: 1008, reason: 'QUEUE_OVERFLOW' });
    assert.equal(h.closes[0]?.errorCode, 'QUEUE_OVERFLOW');
  });
});

describe('client core: broker helpers', () => {
  async function brokerHarness(options: BaseConnectOptions = {}) {
    const h = harness({ protocols: [BROKER_PROTOCOL], ...options });
    await settle();
    h.last().handlers.open(BROKER_PROTOCOL);
    return h;
  }

  it('subscribe and publish resolve on the ack with matching ids; handlers get channel data', async () => {
    const h = await brokerHarness();
    const got: unknown[] = [];
    const subscribed = h.client.subscribe('org:acme:chat', (data, meta) => got.push([data, meta.seq]));
    const [sub] = h.last().frames();
    assert.deepEqual(sub, { type: 'subscribe', id: 1, channel: 'org:acme:chat' });
    h.last().handlers.message('{"type":"ack","id":1}');
    await subscribed;
    const published = h.client.publish('org:acme:chat', { text: 'hi' });
    assert.deepEqual(h.last().frames()[1], {
      type: 'publish',
      id: 2,
      channel: 'org:acme:chat',
      data: { text: 'hi' },
    });
    h.last().handlers.message('{"type":"message","channel":"org:acme:chat","seq":1,"data":{"text":"hi"}}');
    h.last().handlers.message('{"type":"ack","id":2}');
    await published;
    assert.deepEqual(got, [[{ text: 'hi' }, 1]]);
  });

  it('an error frame rejects the request with its code', async () => {
    const h = await brokerHarness();
    const refused = h.client.subscribe('user:bob', () => {});
    h.last().handlers.message('{"type":"error","id":1,"code":"FORBIDDEN","message":"Forbidden"}');
    await assert.rejects(refused, (err: ClientError) => err.code === 'FORBIDDEN');
    const publish = h.client.publish('news:x', 1);
    h.last().handlers.message('{"type":"error","id":2,"code":"RATE_LIMITED","message":"x"}');
    await assert.rejects(publish, (err: ClientError) => err.code === 'RATE_LIMITED');
  });

  it('subscriptions are restored after a reconnect; in-flight publishes fail', async () => {
    const h = await brokerHarness();
    const first = h.client.subscribe('room:1', () => {});
    h.last().handlers.message('{"type":"ack","id":1}');
    await first;
    const publish = h.client.publish('room:1', 'x');
    h.last().handlers.close(1001, 'SHUTTING_DOWN', undefined);
    await assert.rejects(publish, (err: ClientError) => err.code === 'SHUTTING_DOWN');
    await h.timers.advance(h.reconnecting[0]?.delayMs ?? 0);
    h.last().handlers.open(BROKER_PROTOCOL);
    assert.deepEqual(h.last().frames(), [{ type: 'subscribe', id: 3, channel: 'room:1' }]);
  });

  it('a subscription made while disconnected is sent on open and resolves on its ack', async () => {
    const h = harness({ protocols: [BROKER_PROTOCOL] });
    const subscribed = h.client.subscribe('room:2', () => {});
    await settle();
    h.last().handlers.open(BROKER_PROTOCOL);
    assert.deepEqual(h.last().frames(), [{ type: 'subscribe', id: 1, channel: 'room:2' }]);
    h.last().handlers.message('{"type":"ack","id":1}');
    await subscribed;
  });

  it('a subscription the server drops is reported as an error with its channel', async () => {
    const h = await brokerHarness();
    const sub = h.client.subscribe('org:acme:chat', () => {});
    h.last().handlers.message('{"type":"ack","id":1}');
    await sub;
    h.last().handlers.message(
      '{"type":"error","channel":"org:acme:chat","code":"FORBIDDEN","message":"Forbidden"}',
    );
    assert.equal(h.errors[0]?.code, 'FORBIDDEN');
    assert.equal(h.errors[0]?.channel, 'org:acme:chat');
    h.last().handlers.close(1001, '', undefined);
    await h.timers.advance(10_000);
    h.last().handlers.open(BROKER_PROTOCOL);
    assert.deepEqual(h.last().frames(), [], 'a dropped channel is not resubscribed');
  });

  it('a request with no answer fails with ACK_TIMEOUT; too many pending fail at once', async () => {
    const h = await brokerHarness({ requestTimeoutMs: 500, maxPendingRequests: 2 });
    const a = h.client.publish('c:1', 1);
    const b = h.client.publish('c:1', 2);
    await assert.rejects(h.client.publish('c:1', 3), (err: ClientError) => err.code === 'TOO_MANY_PENDING');
    const timedOut = Promise.all([
      assert.rejects(a, (err: ClientError) => err.code === 'ACK_TIMEOUT'),
      assert.rejects(b, (err: ClientError) => err.code === 'ACK_TIMEOUT'),
    ]);
    await h.timers.advance(500);
    await timedOut;
  });

  it('refreshToken sends auth.refresh with a fresh token from the provider', async () => {
    let n = 0;
    const h = await brokerHarness({ token: () => `tok${++n}` });
    const refreshed = h.client.refreshToken();
    await settle();
    assert.deepEqual(h.last().frames(), [{ type: 'auth.refresh', id: 1, token: 'tok2' }]);
    h.last().handlers.message('{"type":"ack","id":1}');
    await refreshed;
  });

  it('C-07 a JWT is refreshed in-band before its exp', async () => {
    const timers = new FakeTimers();
    const exp = Math.floor(timers.now() / 1000) + 600;
    const jwt = (n: number) =>
      `e30.${Buffer.from(JSON.stringify({ sub: 'a', exp: exp + n })).toString('base64url')}.sig${n}`;
    let n = 0;
    const h = await brokerHarness({ timers, token: () => jwt(n++), refreshBeforeExpiryMs: 30_000 });
    await timers.advance(569_000);
    assert.deepEqual(h.last().frames(), []);
    await timers.advance(1_000);
    assert.equal(h.last().frames()[0]?.type, 'auth.refresh');
  });

  it('broker helpers need the portcullis.v1 subprotocol', async () => {
    const h = harness();
    assert.throws(() => h.client.subscribe('a', () => {}), /portcullis\.v1/);
    h.client.close();
  });
});
