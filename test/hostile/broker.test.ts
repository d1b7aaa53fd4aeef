// The built-in broker (portcullis.v1) over real TLS sockets: real ws clients holding real ES256
// tokens, the real publish endpoint, the rows of ../shared/threats.md that concern messages and
// channels (M-01..M-04, M-07, M-08, R-08, R-09), and the Quick start of docs/protocol.md run as written.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, afterEach, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type CryptoKey, exportSPKI, generateKeyPair, SignJWT } from 'jose';
import type WebSocket from 'ws';
import { parse as parseYaml } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { ERRORS, type ErrorCode } from '../../src/protocol.js';
import { createGateway } from '../../src/server/gateway.js';
import { canary, echoRoute, openClient, startGateway, type TestGateway } from '../helpers/gateway.js';
import { HS, RawClient } from '../helpers/raw.js';
import { sleep, until } from '../helpers/wait.js';

type Frame = Record<string, unknown>;

const PROTOCOL = 'portcullis.v1';
const ISS = 'https://idp.test/';
const AUD = 'portcullis';
const KiB = 1024;
const MiB = 1024 * KiB;
/** The repository root, wherever the runner was started. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The error frame the server sends for `code`: fixed text from ERRORS, never a piece of the input. */
function errorOf(code: ErrorCode, id?: string | number, channel?: string): Frame {
  return {
    type: 'error',
    ...(id === undefined ? {} : { id }),
    ...(channel === undefined ? {} : { channel }),
    code,
    message: ERRORS[code].message,
  };
}

/**
 * A portcullis.v1 client over a real ws socket: every text frame is kept (parsed) in arrival
 * order, and tests take the ones they expect, so a frame nobody expected is still there to fail on.
 */
class Peer {
  /** Every text received, verbatim (unless recording was turned off for bulk traffic). */
  readonly texts: string[] = [];
  closeInfo: { code: number; reason: string } | undefined;
  binaryFrames = 0;
  private readonly inbox: Frame[] = [];
  private waiters: (() => void)[] = [];
  private syncs = 0;

  constructor(
    readonly ws: WebSocket,
    private readonly record = true,
  ) {
    ws.on('message', (data, isBinary) => {
      if (isBinary) this.binaryFrames++;
      const text = (data as Buffer).toString();
      if (this.record) this.texts.push(text);
      let frame: Frame;
      try {
        frame = JSON.parse(text) as Frame;
      } catch {
        frame = { unparsable: text };
      }
      // A subscribe ack carries the channel's epoch and seq (M-07, asserted in broker-resume.test.ts);
      // checked here and taken off, so the tests below compare answers as {type, id}.
      if (frame.type === 'ack' && Object.hasOwn(frame, 'epoch')) {
        const { epoch, seq, ...answer } = frame;
        assert.equal(typeof epoch, 'string');
        assert.ok(Number.isSafeInteger(seq) && (seq as number) >= 0);
        frame = answer;
      }
      this.inbox.push(frame);
      this.wake();
    });
    ws.on('close', (code, reason) => {
      this.closeInfo = { code, reason: reason.toString() };
      this.wake();
    });
    // A socket the server terminated reports ECONNRESET; the close event carries the outcome.
    ws.on('error', () => undefined);
  }

  send(frame: Frame): void {
    this.ws.send(JSON.stringify(frame));
  }

  sendText(text: string): void {
    this.ws.send(text);
  }

  /** Removes and returns the first received frame matching `match`, waiting for it (bounded). */
  async take(match: (f: Frame) => boolean, what: string, timeoutMs = 3_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex(match);
      if (i !== -1) return this.inbox.splice(i, 1)[0] as Frame;
      if (this.closeInfo) throw new Error(`closed ${JSON.stringify(this.closeInfo)} before ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; unread ${JSON.stringify(this.inbox)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The next frame in arrival order. */
  next(timeoutMs = 3_000): Promise<Frame> {
    return this.take(() => true, 'the next frame', timeoutMs);
  }

  /** Sends an operation and returns its answer (the ack or error carrying its id). */
  request(frame: Frame & { id: string | number }): Promise<Frame> {
    this.send(frame);
    return this.answer(frame.id);
  }

  answer(id: string | number): Promise<Frame> {
    return this.take((f) => (f.type === 'ack' || f.type === 'error') && f.id === id, `the answer to ${id}`);
  }

  /**
   * A barrier: answers come in request order over one TCP stream, so once this ack is here every
   * frame the server sent before it is here too. (Unsubscribing from a channel not held is acked.)
   */
  async sync(): Promise<void> {
    const id = `sync-${++this.syncs}`;
    assert.deepEqual(await this.request({ type: 'unsubscribe', id, channel: 'sync:barrier' }), {
      type: 'ack',
      id,
    });
  }

  /** Frames received and not taken yet. */
  unread(): Frame[] {
    return [...this.inbox];
  }

  /** Message frames received and not taken yet. */
  messages(): Frame[] {
    return this.inbox.filter((f) => f.type === 'message');
  }

  /** Resolves with the close code and reason once the connection has closed (bounded). */
  async closed(timeoutMs = 3_000): Promise<{ code: number; reason: string }> {
    return until(() => this.closeInfo, 'the close', timeoutMs);
  }

  async close(): Promise<void> {
    if (this.closeInfo) return;
    this.ws.close(1000);
    await this.closed();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One HTTPS request to the gateway on a fresh connection (Host and SNI both localhost). */
function httpRequest(
  gw: TestGateway,
  options: {
    method?: string;
    path?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    /** Send only the headers and read the answer without writing the declared body. */
    headersOnly?: boolean;
  } = {},
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1',
      servername: 'localhost',
      port: gw.port,
      ca: gw.ca,
      agent: false,
      method: options.method ?? 'POST',
      path: options.path ?? '/.portcullis/publish',
      headers: { Host: `localhost:${gw.port}`, ...options.headers },
    });
    req.setTimeout(5_000, () => req.destroy(new Error('HTTP request timed out')));
    req.once('error', reject);
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () => {
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
        });
        req.destroy();
      });
      res.once('error', reject);
    });
    if (options.headersOnly) req.flushHeaders();
    else req.end(options.body);
  });
}

/** An HTTP refusal body: exactly {code, message} with the ERRORS text. */
function refusalBody(code: ErrorCode): Frame {
  return { code, message: ERRORS[code].message };
}

const ORG_SCHEMA = {
  type: 'object',
  properties: { text: { type: 'string', maxLength: 200 } },
  required: ['text'],
  additionalProperties: false,
};

/** The channel rules every broker route of the main gateway uses (the brief's rules). */
function channelRules(schemaFile: string) {
  return [
    { pattern: 'user:{sub}', subscribe: true },
    {
      pattern: 'org:{claims.org}:*',
      subscribe: true,
      publish: true,
      when: { claims: { roles: 'member' } },
      schema: schemaFile,
      publishPerSecond: 2,
      publishBurst: 2,
    },
    { pattern: 'public:news', subscribe: true },
  ];
}

describe('broker routes (portcullis.v1) over real sockets', () => {
  let gw: TestGateway;
  let dir: string;
  let privateKey: CryptoKey;
  let publishKey: string;

  /** A real ES256 token for `sub`, signed with the key the gateway trusts. */
  async function token(sub: string, claims: Record<string, unknown> = {}): Promise<string> {
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256' })
      .setSubject(sub)
      .setIssuer(ISS)
      .setAudience(AUD)
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(privateKey);
  }

  /** Opens a broker connection for `sub` with a bearer token and the portcullis.v1 subprotocol. */
  async function connect(
    sub: string,
    claims: Record<string, unknown> = {},
    path = '/live',
    record = true,
  ): Promise<Peer> {
    const ws = await openClient(gw, path, {
      protocols: PROTOCOL,
      headers: { Authorization: `Bearer ${await token(sub, claims)}` },
    });
    assert.equal(ws.protocol, PROTOCOL);
    const peer = new Peer(ws, record);
    opened.push(peer);
    return peer;
  }

  // A failed test must not leave sockets behind for the next test's canary count.
  const opened: Peer[] = [];
  afterEach(() => {
    for (const peer of opened.splice(0)) if (!peer.closeInfo) peer.ws.terminate();
  });

  const member = (org: string) => ({ org, roles: ['member'] });
  const publishHeaders = () => ({
    Authorization: `Bearer ${publishKey}`,
    'Content-Type': 'application/json',
  });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-broker-'));
    const pair = await generateKeyPair('ES256');
    privateKey = pair.privateKey;
    const keyFile = join(dir, 'app.pub.pem');
    writeFileSync(keyFile, await exportSPKI(pair.publicKey));
    const schemaFile = join(dir, 'org-chat.json');
    writeFileSync(schemaFile, JSON.stringify(ORG_SCHEMA));
    publishKey = randomBytes(24).toString('hex'); // 48 characters
    const publishKeyFile = join(dir, 'publish.key');
    writeFileSync(publishKeyFile, `${publishKey}\n`, { mode: 0o600 });
    const brokerRoute = (
      path: string,
      broker: Record<string, unknown>,
      limits: Record<string, unknown> = {},
    ) => ({
      path,
      auth: ['app'],
      origins: ['https://app.test'],
      subprotocols: [PROTOCOL],
      // No history: the tests here count seq from 1 on channels earlier tests used and left.
      // Retention and resume (M-07) are in broker-resume.test.ts.
      broker: { historySize: 0, ...broker },
      limits,
    });
    gw = await startGateway({
      limits: {
        closeTimeoutMs: 1_000,
        perIp: { maxConnections: 1_000, handshakesPerSecond: 10_000, handshakeBurst: 10_000 },
      },
      authenticators: {
        app: { type: 'jwt', keyFile, issuer: ISS, audience: AUD, algorithms: ['ES256'] },
      },
      publishApi: { keyFile: publishKeyFile },
      routes: [
        echoRoute(),
        brokerRoute('/live', { channels: channelRules(schemaFile), maxSubscriptions: 3, maxErrors: 50 }),
        brokerRoute('/strict', { channels: channelRules(schemaFile), maxErrors: 5, maxChannelNameBytes: 64 }),
        brokerRoute(
          '/slow',
          { channels: [{ pattern: 'feed:*', subscribe: true }] },
          { maxMessageBytes: 16 * KiB, maxSendQueueBytes: 256 * KiB },
        ),
      ],
    } as Parameters<typeof startGateway>[0]);
  });

  after(async () => {
    await gw.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a broker handshake without portcullis.v1 (400 SUBPROTOCOL_NOT_SUPPORTED) and selects it when offered', async () => {
    const bearer = `Bearer ${await token('alice', member('acme'))}`;
    const attempt = async (overrides: Record<string, string | null>) => {
      const client = await RawClient.connect(gw.port, gw.ca);
      client.write(HS({ Authorization: bearer, ...overrides }, { path: '/live' }));
      const res = await client.readResponse();
      client.destroy();
      return res;
    };
    for (const offered of [null, 'chat.v1', 'portcullis.v2, portcullis']) {
      const res = await attempt({ 'Sec-WebSocket-Protocol': offered });
      assert.equal(res.status, 400, String(offered));
      assert.deepEqual(JSON.parse(res.body), refusalBody('SUBPROTOCOL_NOT_SUPPORTED'));
    }
    for (const offered of ['portcullis.v1', 'chat.v1, portcullis.v1']) {
      const res = await attempt({ 'Sec-WebSocket-Protocol': offered });
      assert.equal(res.status, 101, offered);
      assert.equal(res.headers['sec-websocket-protocol'], PROTOCOL);
    }
    // Without a credential the broker route answers 401 before any 101 (auth happens at the handshake).
    const client = await RawClient.connect(gw.port, gw.ca);
    client.write(HS({ 'Sec-WebSocket-Protocol': PROTOCOL }, { path: '/live' }));
    const res = await client.readResponse();
    client.destroy();
    assert.equal(res.status, 401);
    assert.deepEqual(JSON.parse(res.body), refusalBody('UNAUTHENTICATED'));
    const audit = gw.logs.filter((l) => l.event === 'handshake' && l.route === '/live');
    assert.ok(audit.some((l) => l.outcome === 'rejected' && l.code === 'SUBPROTOCOL_NOT_SUPPORTED'));
    assert.ok(audit.some((l) => l.outcome === 'accepted' && l.subprotocol === PROTOCOL));
    await until(() => gw.gateway.connectionCount() === 0, 'the raw 101 sockets to go', 3_000);
    await canary(gw);
  });

  it('round trip: subscribe is acked, a server publication arrives as a message, unsubscribe stops it; gateway.publish returns {ok, delivered}', async () => {
    const alice = await connect('alice', member('acme'));
    assert.deepEqual(await alice.request({ type: 'subscribe', id: 1, channel: 'user:alice' }), {
      type: 'ack',
      id: 1,
    });
    assert.deepEqual(gw.gateway.publish('user:alice', { text: 'hi' }, { route: '/live' }), {
      ok: true,
      delivered: 1,
    });
    assert.deepEqual(await alice.next(), {
      type: 'message',
      channel: 'user:alice',
      seq: 1,
      data: { text: 'hi' },
    });
    // Without `route` a publication goes to every broker route; alice is on /live only.
    assert.deepEqual(gw.gateway.publish('user:alice', null), { ok: true, delivered: 1 });
    assert.deepEqual(await alice.next(), { type: 'message', channel: 'user:alice', seq: 2, data: null });
    assert.deepEqual(await alice.request({ type: 'unsubscribe', id: 'u-1', channel: 'user:alice' }), {
      type: 'ack',
      id: 'u-1',
    });
    assert.deepEqual(gw.gateway.publish('user:alice', { text: 'gone' }), { ok: true, delivered: 0 });
    assert.deepEqual(gw.gateway.publish('user:*', 1), { ok: false, delivered: 0 });
    assert.deepEqual(gw.gateway.publish('user:alice', { n: 1n }), { ok: false, delivered: 0 });
    assert.deepEqual(gw.gateway.publish('user:alice', 1, { route: '/echo' }), { ok: false, delivered: 0 });
    await alice.sync();
    assert.deepEqual(alice.unread(), []);
    await alice.close();
    await canary(gw);
  });

  it('F-10 closes a broker connection with 1003 UNSUPPORTED_DATA on a binary frame', async () => {
    const alice = await connect('alice', member('acme'));
    alice.ws.send(Buffer.from([0x00, 0xff]), { binary: true });
    assert.deepEqual(await alice.closed(), { code: 1003, reason: 'UNSUPPORTED_DATA' });
    assert.deepEqual(alice.unread(), []);
    await canary(gw);
  });

  it('M-01 answers malformed frames with stable codes, echoes nothing, and closes with 1008 TOO_MANY_ERRORS past maxErrors', async () => {
    const mallory = await connect('mallory', member('acme'), '/strict');
    const cases: [string, Frame][] = [
      ['{not json SECRET-1', errorOf('BAD_JSON')],
      ['{"type":"nope","id":1,"channel":"SECRET-2"}', errorOf('BAD_REQUEST', 1)],
      ['{"type":"subscribe","id":2,"channel":42}', errorOf('BAD_REQUEST', 2)],
      [
        '{"type":"subscribe","id":"3","channel":"user:mallory","extra":"SECRET-3"}',
        errorOf('BAD_REQUEST', '3'),
      ],
      ['{"type":"publish","id":{"SECRET-4":1},"channel":"org:acme:x","data":1}', errorOf('BAD_REQUEST')],
    ];
    for (const [i, [text, expected]] of cases.entries()) {
      mallory.sendText(text);
      const frame = await mallory.next();
      assert.deepEqual(frame, expected, text);
      // A valid operation between errors is answered normally and spends nothing of the budget.
      if (i === 1) {
        assert.deepEqual(await mallory.request({ type: 'subscribe', id: 'ok', channel: 'user:mallory' }), {
          type: 'ack',
          id: 'ok',
        });
      }
    }
    for (const text of mallory.texts) {
      assert.doesNotMatch(text, /SECRET|not json|extra|stack|\bat \S+ \(/, text);
    }
    // The sixth error answer within the minute is the close instead.
    mallory.sendText('[]');
    assert.deepEqual(await mallory.closed(), { code: 1008, reason: 'TOO_MANY_ERRORS' });
    assert.deepEqual(mallory.unread(), []);
    const audit = await until(
      () => gw.logs.find((l) => l.event === 'close' && l.identity === 'mallory'),
      'the close audit line',
      3_000,
    );
    assert.equal(audit.code, 'TOO_MANY_ERRORS');
    assert.equal(audit.closeCode, 1008);
    assert.doesNotMatch(gw.rawLog(), /SECRET/);
    await canary(gw);
  });

  it('M-01 1,000 malformed messages in a row: exactly maxErrors (5) error frames, then close 1008 TOO_MANY_ERRORS', async () => {
    const mallory = await connect('mallory', member('acme'), '/strict');
    for (let i = 0; i < 1_000; i++) mallory.sendText(`{"type":"subscribe","id":${i},"channel":${i}}`);
    assert.deepEqual(await mallory.closed(5_000), { code: 1008, reason: 'TOO_MANY_ERRORS' });
    assert.deepEqual(
      mallory.unread(),
      [0, 1, 2, 3, 4].map((id) => errorOf('BAD_REQUEST', id)),
    );
    await canary(gw);
  });

  it('M-02 __proto__/constructor keys, 60,000-deep nesting and huge numbers are refused; Object.prototype is untouched and the canary answers fast', async () => {
    const alice = await connect('alice', member('acme'));
    assert.deepEqual(await alice.request({ type: 'subscribe', id: 'r', channel: 'org:acme:room' }), {
      type: 'ack',
      id: 'r',
    });
    const cases: [string, Frame][] = [
      ['{"__proto__":{"polluted":1}}', errorOf('BAD_REQUEST')],
      [
        '{"type":"subscribe","id":1,"channel":"user:alice","__proto__":{"polluted":1}}',
        errorOf('BAD_REQUEST', 1),
      ],
      [
        '{"constructor":{"prototype":{"polluted":1}},"type":"subscribe","id":2,"channel":"user:alice"}',
        errorOf('BAD_REQUEST', 2),
      ],
      [
        '{"type":"publish","id":3,"channel":"org:acme:room","data":{"text":"x","__proto__":{"polluted":1}}}',
        errorOf('SCHEMA_VIOLATION', 3),
      ],
      ['['.repeat(60_000), errorOf('BAD_JSON')],
      [
        `{"type":"publish","id":4,"channel":"org:acme:room","data":${'['.repeat(40)}${']'.repeat(40)}}`,
        errorOf('BAD_JSON'),
      ],
      ['{"type":"subscribe","id":1e400,"channel":"user:alice"}', errorOf('BAD_REQUEST')],
      ['{"type":"subscribe","id":9007199254740993,"channel":"user:alice"}', errorOf('BAD_REQUEST')],
      [`{${Array.from({ length: 6_000 }, (_, i) => `"k${i}":0`).join(',')}}`, errorOf('BAD_REQUEST')],
    ];
    for (const [text, expected] of cases) {
      const started = performance.now();
      alice.sendText(text);
      assert.deepEqual(await alice.next(), expected, text.slice(0, 80));
      const ms = performance.now() - started;
      assert.ok(ms < 1_000, `${text.slice(0, 40)} answered in ${ms.toFixed(0)} ms`);
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(Object.hasOwn(Object.prototype, 'polluted'), false);
    // Nothing of the refused publications reached the channel.
    await alice.sync();
    assert.deepEqual(alice.unread(), []);
    await alice.close();
    const started = performance.now();
    await canary(gw);
    const ms = performance.now() - started;
    assert.ok(ms < 1_000, `canary took ${ms.toFixed(0)} ms`);
  });

  it('M-03 bob can neither subscribe nor publish to user:alice, and zero bytes of server publications to user:alice reach him (gateway.publish and POST /.portcullis/publish)', async () => {
    const alice = await connect('alice', member('acme'));
    const bob = await connect('bob', member('globex'));
    assert.deepEqual(await alice.request({ type: 'subscribe', id: 1, channel: 'user:alice' }), {
      type: 'ack',
      id: 1,
    });
    assert.deepEqual(await bob.request({ type: 'subscribe', id: 1, channel: 'user:bob' }), {
      type: 'ack',
      id: 1,
    });
    assert.deepEqual(
      await bob.request({ type: 'subscribe', id: 2, channel: 'user:alice' }),
      errorOf('FORBIDDEN', 2),
    );
    assert.deepEqual(
      await bob.request({ type: 'publish', id: 3, channel: 'user:alice', data: { text: 'spoofed' } }),
      errorOf('FORBIDDEN', 3),
    );
    assert.deepEqual(
      await bob.request({ type: 'subscribe', id: 4, channel: 'org:acme:chat' }),
      errorOf('FORBIDDEN', 4),
    );
    const secret1 = `alice-secret-${randomBytes(8).toString('hex')}`;
    assert.deepEqual(gw.gateway.publish('user:alice', { secret: secret1 }), { ok: true, delivered: 1 });
    const secret2 = `alice-secret-${randomBytes(8).toString('hex')}`;
    const res = await httpRequest(gw, {
      headers: publishHeaders(),
      body: JSON.stringify({ channel: 'user:alice', data: { secret: secret2 } }),
    });
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.body), { delivered: 1 });
    // Alice got both, in order; the spoofed publication never existed.
    assert.deepEqual(await alice.next(), {
      type: 'message',
      channel: 'user:alice',
      seq: 1,
      data: { secret: secret1 },
    });
    assert.deepEqual(await alice.next(), {
      type: 'message',
      channel: 'user:alice',
      seq: 2,
      data: { secret: secret2 },
    });
    await bob.sync();
    await alice.sync();
    assert.deepEqual(bob.unread(), []);
    assert.deepEqual(alice.unread(), []);
    for (const text of bob.texts) assert.doesNotMatch(text, /alice-secret|spoofed/);
    // L✓: the publication is logged with its channel and count, never its body.
    assert.ok(
      gw.logs.some((l) => l.event === 'publish' && l.outcome === 'accepted' && l.channel === 'user:alice'),
    );
    assert.doesNotMatch(gw.rawLog(), /alice-secret|spoofed/);
    assert.ok(!gw.rawLog().includes(publishKey));
    await alice.close();
    await bob.close();
    await canary(gw);
  });

  it('M-03 fields that name an identity never change it: templates in names, userId/sub fields and claims in frames are refused', async () => {
    const alice = await connect('alice', member('acme'));
    const bob = await connect('bob', member('globex'));
    assert.deepEqual(await alice.request({ type: 'subscribe', id: 'a', channel: 'user:alice' }), {
      type: 'ack',
      id: 'a',
    });
    const attempts: [string, Frame][] = [
      ['{"type":"subscribe","id":"1","channel":"user:{sub}"}', errorOf('FORBIDDEN', '1')],
      ['{"type":"subscribe","id":"2","channel":"org:{claims.org}:chat"}', errorOf('FORBIDDEN', '2')],
      ['{"type":"subscribe","id":"3","channel":"user:alice","userId":"alice"}', errorOf('BAD_REQUEST', '3')],
      ['{"type":"subscribe","id":"4","channel":"user:alice","sub":"alice"}', errorOf('BAD_REQUEST', '4')],
      [
        '{"type":"publish","id":"5","channel":"org:acme:chat","data":{"text":"x"},"claims":{"org":"acme"}}',
        errorOf('BAD_REQUEST', '5'),
      ],
      [
        '{"type":"publish","id":"6","channel":"user:alice","data":{"text":"x","userId":"alice"}}',
        errorOf('FORBIDDEN', '6'),
      ],
      // A replayed capture of alice's own subscribe frame, on bob's socket (M-08).
      ['{"type":"subscribe","id":1,"channel":"user:alice"}', errorOf('FORBIDDEN', 1)],
    ];
    for (const [text, expected] of attempts) {
      bob.sendText(text);
      assert.deepEqual(await bob.next(), expected, text);
    }
    // bob's own channel still works, so the refusals above were about identity, not a broken socket.
    assert.deepEqual(await bob.request({ type: 'subscribe', id: 'own', channel: 'user:bob' }), {
      type: 'ack',
      id: 'own',
    });
    assert.deepEqual(gw.gateway.publish('user:alice', { text: 'for alice only' }), {
      ok: true,
      delivered: 1,
    });
    assert.equal((await alice.take((f) => f.type === 'message', 'alice message')).channel, 'user:alice');
    await bob.sync();
    assert.deepEqual(bob.unread(), []);
    for (const text of bob.texts) assert.doesNotMatch(text, /for alice only/);
    await alice.close();
    await bob.close();
    await canary(gw);
  });

  it('M-04 wildcard, pattern, look-alike and oversized channel names are FORBIDDEN, even for the channel owner', async () => {
    const alice = await connect('alice', member('acme'));
    const bob = await connect('bob', member('acme'));
    assert.deepEqual(await alice.request({ type: 'subscribe', id: 0, channel: 'user:alice' }), {
      type: 'ack',
      id: 0,
    });
    const names = [
      '*',
      '#',
      'user.>',
      'user:*',
      '..',
      '.+',
      'user:>',
      'user:Ａlice', // fullwidth A
      'user:аlice', // Cyrillic а
      'user:alice ',
      'user:alice\u0000',
      'user:ALICE',
      'org:acme:*',
      'org:*:chat',
      `user:${'a'.repeat(10 * KiB)}`,
    ];
    for (const [i, channel] of names.entries()) {
      const id = `n${i}`;
      assert.deepEqual(
        await bob.request({ type: 'subscribe', id, channel }),
        errorOf('FORBIDDEN', id),
        channel,
      );
      const pid = `p${i}`;
      assert.deepEqual(
        await bob.request({ type: 'publish', id: pid, channel, data: { text: 'x' } }),
        errorOf('FORBIDDEN', pid),
        channel,
      );
    }
    // A look-alike is refused, not normalised onto alice's channel, for alice herself too.
    for (const channel of ['user:Ａlice', 'user:ａｌｉｃｅ', 'user:Alice']) {
      assert.deepEqual(
        await alice.request({ type: 'subscribe', id: channel, channel }),
        errorOf('FORBIDDEN', channel),
      );
    }
    assert.deepEqual(gw.gateway.publish('user:alice', { text: 'private' }), { ok: true, delivered: 1 });
    assert.deepEqual(await alice.next(), {
      type: 'message',
      channel: 'user:alice',
      seq: 1,
      data: { text: 'private' },
    });
    await bob.sync();
    assert.deepEqual(bob.unread(), []);
    for (const text of bob.texts) assert.doesNotMatch(text, /private|aaaaaaaa/);
    await alice.close();
    await bob.close();
    await canary(gw);
  });

  it('M-04 the ACL is re-run when the identity changes: a refresh that drops the role drops the subscription at once (error frame with channel) and nothing more is delivered', async () => {
    const erin = await connect('erin', member('acme'));
    const ok = (id: string) => ({ type: 'ack', id });
    assert.deepEqual(await erin.request({ type: 'subscribe', id: 's1', channel: 'org:acme:ops' }), ok('s1'));
    assert.deepEqual(await erin.request({ type: 'subscribe', id: 's2', channel: 'user:erin' }), ok('s2'));
    assert.deepEqual(gw.gateway.publish('org:acme:ops', { text: 'before' }), { ok: true, delivered: 1 });
    assert.equal((await erin.next()).seq, 1);
    const demoted = await token('erin', { org: 'acme', roles: ['viewer'] });
    erin.send({ type: 'auth.refresh', id: 'r1', token: demoted });
    assert.deepEqual(await erin.next(), ok('r1'));
    assert.deepEqual(await erin.next(), errorOf('FORBIDDEN', undefined, 'org:acme:ops'));
    assert.deepEqual(gw.gateway.publish('org:acme:ops', { text: 'after' }), { ok: true, delivered: 0 });
    assert.deepEqual(gw.gateway.publish('user:erin', { text: 'still mine' }), { ok: true, delivered: 1 });
    assert.deepEqual(await erin.next(), {
      type: 'message',
      channel: 'user:erin',
      seq: 1,
      data: { text: 'still mine' },
    });
    // Re-subscribing is now refused with the rule's claim code.
    assert.deepEqual(
      await erin.request({ type: 'subscribe', id: 's3', channel: 'org:acme:ops' }),
      errorOf('CLAIMS_NOT_SATISFIED', 's3'),
    );
    // A refresh to another subject is refused and changes nothing (cross-subject refresh).
    erin.send({ type: 'auth.refresh', id: 'r2', token: await token('alice', member('acme')) });
    assert.deepEqual(await erin.next(), errorOf('FORBIDDEN', 'r2'));
    assert.deepEqual(gw.gateway.publish('user:alice', 1), { ok: true, delivered: 0 });
    await erin.sync();
    assert.deepEqual(erin.unread(), []);
    assert.doesNotMatch(erin.texts.join('\n'), /after/);
    await erin.close();
    await canary(gw);
  });

  it('M-08 a repeated subscribe is acked each time and delivers each publication once', async () => {
    const alice = await connect('alice', member('acme'));
    for (const id of [1, 2, 3]) {
      assert.deepEqual(await alice.request({ type: 'subscribe', id, channel: 'user:alice' }), {
        type: 'ack',
        id,
      });
    }
    assert.equal(gw.gateway.publish('user:alice', { n: 1 }).delivered, 1);
    assert.equal(gw.gateway.publish('user:alice', { n: 2 }).delivered, 1);
    await alice.sync();
    assert.deepEqual(alice.unread(), [
      { type: 'message', channel: 'user:alice', seq: 1, data: { n: 1 } },
      { type: 'message', channel: 'user:alice', seq: 2, data: { n: 2 } },
    ]);
    // A publish repeated with the same id is a new publication (ids correlate, they do not dedupe);
    // the publisher's own message comes before its ack.
    const alice2 = await connect('alice', member('acme'));
    assert.deepEqual(await alice2.request({ type: 'subscribe', id: 's', channel: 'org:acme:dup' }), {
      type: 'ack',
      id: 's',
    });
    for (const n of [1, 2]) {
      alice2.send({ type: 'publish', id: 'same', channel: 'org:acme:dup', data: { text: 'dup' } });
      assert.deepEqual(await alice2.next(), {
        type: 'message',
        channel: 'org:acme:dup',
        seq: n,
        data: { text: 'dup' },
      });
      assert.deepEqual(await alice2.next(), { type: 'ack', id: 'same' });
    }
    await alice.close();
    await alice2.close();
    await canary(gw);
  });

  it('R-09 per-channel publish rate (publishPerSecond 2, publishBurst 2): the third rapid publish gets RATE_LIMITED; a flood is closed with TOO_MANY_ERRORS', async () => {
    const alice = await connect('alice', member('acme'));
    const pub = (id: string, channel: string) => ({ type: 'publish', id, channel, data: { text: id } });
    for (const id of ['p1', 'p2', 'p3']) alice.send(pub(id, 'org:acme:rate'));
    alice.send(pub('other', 'org:acme:other')); // another channel has its own bucket
    assert.deepEqual(await alice.next(), { type: 'ack', id: 'p1' });
    assert.deepEqual(await alice.next(), { type: 'ack', id: 'p2' });
    assert.deepEqual(await alice.next(), errorOf('RATE_LIMITED', 'p3'));
    assert.deepEqual(await alice.next(), { type: 'ack', id: 'other' });
    await sleep(600); // 2 per second: a token is back after 500 ms
    assert.deepEqual(await alice.request(pub('p4', 'org:acme:rate')), { type: 'ack', id: 'p4' });
    await alice.close();

    // On /strict (maxErrors 5) a publish flood gets its burst, five RATE_LIMITED answers, then the close.
    const flooder = await connect('flooder', member('acme'), '/strict');
    for (let i = 0; i < 50; i++) flooder.send(pub(`f${i}`, 'org:acme:flood'));
    assert.deepEqual(await flooder.closed(), { code: 1008, reason: 'TOO_MANY_ERRORS' });
    assert.deepEqual(flooder.unread(), [
      { type: 'ack', id: 'f0' },
      { type: 'ack', id: 'f1' },
      ...[2, 3, 4, 5, 6].map((i) => errorOf('RATE_LIMITED', `f${i}`)),
    ]);
    await canary(gw);
  });

  it('R-09 maxSubscriptions (3): the fourth channel gets TOO_MANY_SUBSCRIPTIONS; re-subscribing takes no slot, unsubscribing frees one', async () => {
    const alice = await connect('alice', member('acme'));
    const sub = (id: number, channel: string) => alice.request({ type: 'subscribe', id, channel });
    assert.deepEqual(await sub(1, 'user:alice'), { type: 'ack', id: 1 });
    assert.deepEqual(await sub(2, 'public:news'), { type: 'ack', id: 2 });
    assert.deepEqual(await sub(3, 'org:acme:a'), { type: 'ack', id: 3 });
    assert.deepEqual(await sub(4, 'org:acme:b'), errorOf('TOO_MANY_SUBSCRIPTIONS', 4));
    assert.deepEqual(await sub(5, 'user:alice'), { type: 'ack', id: 5 });
    assert.deepEqual(await alice.request({ type: 'unsubscribe', id: 6, channel: 'public:news' }), {
      type: 'ack',
      id: 6,
    });
    assert.deepEqual(await sub(7, 'org:acme:b'), { type: 'ack', id: 7 });
    assert.equal(gw.gateway.publish('org:acme:b', { text: 'b' }).delivered, 1);
    assert.equal(gw.gateway.publish('public:news', { text: 'n' }).delivered, 0);
    await alice.sync();
    assert.deepEqual(alice.unread(), [
      { type: 'message', channel: 'org:acme:b', seq: 1, data: { text: 'b' } },
    ]);
    await alice.close();
    await canary(gw);
  });

  it('per-channel schema: an invalid publication gets SCHEMA_VIOLATION and reaches nobody; a valid one reaches the other subscribers', async () => {
    const alice = await connect('alice', member('acme'));
    const dave = await connect('dave', member('acme'));
    // carol is in acme but lacks the role the rule's `when` requires.
    const carol = await connect('carol', { org: 'acme' });
    for (const peer of [alice, dave]) {
      assert.deepEqual(await peer.request({ type: 'subscribe', id: 's', channel: 'org:acme:room' }), {
        type: 'ack',
        id: 's',
      });
    }
    assert.deepEqual(
      await carol.request({ type: 'subscribe', id: 's', channel: 'org:acme:room' }),
      errorOf('CLAIMS_NOT_SATISFIED', 's'),
    );
    assert.deepEqual(
      await alice.request({ type: 'publish', id: 'bad', channel: 'org:acme:room', data: { text: 7 } }),
      errorOf('SCHEMA_VIOLATION', 'bad'),
    );
    alice.send({ type: 'publish', id: 'good', channel: 'org:acme:room', data: { text: 'hello' } });
    const expected = { type: 'message', channel: 'org:acme:room', seq: 1, data: { text: 'hello' } };
    assert.deepEqual(await alice.next(), expected); // the publisher's own copy, before its ack
    assert.deepEqual(await alice.next(), { type: 'ack', id: 'good' });
    assert.deepEqual(await dave.next(), expected);
    await dave.sync();
    await carol.sync();
    assert.deepEqual(dave.unread(), []);
    assert.deepEqual(carol.unread(), []);
    for (const peer of [alice, dave, carol]) await peer.close();
    await canary(gw);
  });

  it('R-09 fan-out: 50 subscribers on one channel each receive every server publication once, with identical bytes and increasing seq', {
    timeout: 20_000,
  }, async () => {
    const peers = await Promise.all(Array.from({ length: 50 }, (_, i) => connect(`fan-${i}`, {}, '/live')));
    await Promise.all(
      peers.map(async (p, i) =>
        assert.deepEqual(await p.request({ type: 'subscribe', id: i, channel: 'public:news' }), {
          type: 'ack',
          id: i,
        }),
      ),
    );
    const payloads = [{ headline: 'one' }, { headline: 'two', body: 'x'.repeat(2_000) }, [1, 'three', null]];
    for (const data of payloads) {
      assert.deepEqual(gw.gateway.publish('public:news', data, { route: '/live' }), {
        ok: true,
        delivered: 50,
      });
    }
    const received = await Promise.all(
      peers.map(async (p) => {
        const frames = [];
        for (let k = 0; k < payloads.length; k++) frames.push(await p.next());
        await p.sync();
        assert.deepEqual(p.unread(), []);
        return p.texts.filter((t) => t.includes('"type":"message"'));
      }),
    );
    const first = received[0] as string[];
    assert.equal(first.length, 3);
    first.forEach((text, k) => {
      assert.deepEqual(JSON.parse(text), {
        type: 'message',
        channel: 'public:news',
        seq: k + 1,
        data: payloads[k],
      });
    });
    for (const texts of received) assert.deepEqual(texts, first); // byte-identical, same seq order
    await Promise.all(peers.map((p) => p.close()));
    await canary(gw);
  });

  it('R-08 a subscriber that stops reading is closed with SLOW_CONSUMER (1013) while another subscriber keeps receiving', {
    timeout: 30_000,
  }, async () => {
    const fast = await connect('fast-reader', {}, '/slow', false);
    const slow = await connect('slow-reader', {}, '/slow', false);
    for (const peer of [fast, slow]) {
      assert.deepEqual(await peer.request({ type: 'subscribe', id: 1, channel: 'feed:big' }), {
        type: 'ack',
        id: 1,
      });
    }
    slow.ws.pause(); // never reads again: the server's queue for it grows
    const blob = 'x'.repeat(32 * KiB);
    const slowClose = () => gw.logs.find((l) => l.event === 'close' && l.identity === 'slow-reader');
    let seq = 0;
    let published = 0;
    let slowDropped = false;
    let worstMs = 0;
    const deadline = Date.now() + 20_000;
    // Loopback socket buffers absorb a few MiB before the server's queue grows; 64 MiB is plenty.
    while (published < 64 * MiB && Date.now() < deadline) {
      const result = gw.gateway.publish('feed:big', { blob }, { route: '/slow' });
      published += blob.length;
      seq++;
      assert.equal(result.ok, true);
      const started = performance.now();
      const frame = await fast.take((f) => f.type === 'message', `message ${seq}`, 5_000);
      worstMs = Math.max(worstMs, performance.now() - started);
      assert.equal(frame.seq, seq, 'the fast subscriber sees every publication in order');
      if (result.delivered === 1) {
        slowDropped = true;
        break;
      }
      assert.equal(result.delivered, 2);
    }
    assert.ok(slowDropped, `the slow reader was never dropped after ${published} bytes`);
    const audit = await until(slowClose, 'the slow reader close audit line', 5_000);
    assert.equal(audit.code, 'SLOW_CONSUMER');
    assert.equal(audit.closeCode, 1013);
    assert.equal(audit.by, 'server');
    assert.ok((audit.bytesOut as number) < published, 'the server stopped queueing for the slow reader');
    assert.ok(worstMs < 1_000, `the fast subscriber waited up to ${worstMs.toFixed(0)} ms`);
    // The fast subscriber keeps receiving, with consecutive seq.
    for (let k = 0; k < 5; k++) {
      assert.deepEqual(gw.gateway.publish('feed:big', { k }, { route: '/slow' }), { ok: true, delivered: 1 });
      seq++;
      assert.deepEqual(await fast.next(), { type: 'message', channel: 'feed:big', seq, data: { k } });
    }
    slow.ws.resume();
    // The close frame sits behind the unread queue, so the peer was cut at the close timeout (1006);
    // 1013 only if the queue happened to drain first.
    const { code } = await slow.closed(10_000);
    assert.ok(code === 1006 || code === 1013, `slow reader saw close ${code}`);
    await fast.close();
    await canary(gw);
  });

  it('A-08 gateway.revoke({subject}) closes the subscriber with CREDENTIAL_REVOKED (4401); nothing more is delivered and the token is refused', async () => {
    const frank = await connect('frank-revoked', member('acme'));
    const other = await connect('alice', member('acme'));
    assert.deepEqual(await frank.request({ type: 'subscribe', id: 1, channel: 'user:frank-revoked' }), {
      type: 'ack',
      id: 1,
    });
    assert.deepEqual(await frank.request({ type: 'subscribe', id: 2, channel: 'public:news' }), {
      type: 'ack',
      id: 2,
    });
    assert.deepEqual(await other.request({ type: 'subscribe', id: 2, channel: 'public:news' }), {
      type: 'ack',
      id: 2,
    });
    assert.equal(await gw.gateway.revoke({ subject: 'frank-revoked', ttlMs: 60_000 }), 1);
    assert.deepEqual(await frank.closed(), { code: 4401, reason: 'CREDENTIAL_REVOKED' });
    assert.deepEqual(gw.gateway.publish('user:frank-revoked', { text: 'late' }), { ok: true, delivered: 0 });
    assert.deepEqual(gw.gateway.publish('public:news', { text: 'late' }), { ok: true, delivered: 1 });
    assert.deepEqual(frank.unread(), []);
    assert.equal((await other.next()).channel, 'public:news');
    // The same token cannot come back.
    const client = await RawClient.connect(gw.port, gw.ca);
    const bearer = `Bearer ${await token('frank-revoked', member('acme'))}`;
    client.write(HS({ Authorization: bearer, 'Sec-WebSocket-Protocol': PROTOCOL }, { path: '/live' }));
    const res = await client.readResponse();
    client.destroy();
    assert.equal(res.status, 401);
    assert.deepEqual(JSON.parse(res.body), refusalBody('CREDENTIAL_REVOKED'));
    await other.close();
    await canary(gw);
  });

  it('publish endpoint: 401 on a wrong key, 413 over 1 MiB, 400 BAD_JSON, 400 BAD_REQUEST, 405 on GET, 200 {delivered} on success', async () => {
    const alice = await connect('alice', member('acme'));
    assert.deepEqual(await alice.request({ type: 'subscribe', id: 1, channel: 'public:news' }), {
      type: 'ack',
      id: 1,
    });
    const json = { 'Content-Type': 'application/json' };
    const body = JSON.stringify({ channel: 'public:news', data: { text: 'x' } });
    const expectRefusal = (res: HttpAnswer, status: number, code: ErrorCode) => {
      assert.equal(res.status, status, `${code}: ${res.body}`);
      assert.deepEqual(JSON.parse(res.body), refusalBody(code));
      assert.equal(res.headers['cache-control'], 'no-store');
    };
    const wrongKey = await httpRequest(gw, {
      headers: { ...json, Authorization: `Bearer ${publishKey.slice(0, -1)}x` },
      body,
    });
    expectRefusal(wrongKey, 401, 'UNAUTHENTICATED');
    assert.equal(wrongKey.headers['www-authenticate'], 'Bearer');
    expectRefusal(await httpRequest(gw, { headers: json, body }), 401, 'UNAUTHENTICATED');
    expectRefusal(
      await httpRequest(gw, { headers: { ...json, Authorization: `Basic ${publishKey}` }, body }),
      401,
      'UNAUTHENTICATED',
    );
    // Declared too big: refused from the headers, the body is never read.
    expectRefusal(
      await httpRequest(gw, {
        headers: { ...publishHeaders(), 'Content-Length': String(MiB + 1) },
        headersOnly: true,
      }),
      413,
      'MESSAGE_TOO_BIG',
    );
    // Streamed (chunked) past the limit: refused once the count passes 1 MiB.
    expectRefusal(
      await httpRequest(gw, {
        headers: { ...publishHeaders(), 'Transfer-Encoding': 'chunked' },
        body: Buffer.alloc(MiB + 1, 0x20),
      }),
      413,
      'MESSAGE_TOO_BIG',
    );
    expectRefusal(await httpRequest(gw, { headers: publishHeaders(), body: '{"channel":' }), 400, 'BAD_JSON');
    for (const bad of [
      { data: 1 },
      { channel: 42, data: 1 },
      { channel: 'public:news' },
      { channel: 'public:news', data: 1, route: 7 },
    ]) {
      expectRefusal(
        await httpRequest(gw, { headers: publishHeaders(), body: JSON.stringify(bad) }),
        400,
        'BAD_REQUEST',
      );
    }
    expectRefusal(
      await httpRequest(gw, {
        headers: publishHeaders(),
        body: JSON.stringify({ channel: 'public:*', data: 1 }),
      }),
      400,
      'BAD_REQUEST',
    );
    const get = await httpRequest(gw, { method: 'GET', headers: { Authorization: `Bearer ${publishKey}` } });
    expectRefusal(get, 405, 'METHOD_NOT_ALLOWED');
    // Nothing refused reached the subscriber.
    await alice.sync();
    assert.deepEqual(alice.unread(), []);
    const ok = await httpRequest(gw, { headers: publishHeaders(), body });
    assert.equal(ok.status, 200);
    assert.deepEqual(JSON.parse(ok.body), { delivered: 1 });
    const routed = await httpRequest(gw, {
      headers: publishHeaders(),
      body: JSON.stringify({ channel: 'public:news', data: { text: 'y' }, route: '/strict' }),
    });
    assert.equal(routed.status, 200);
    assert.deepEqual(JSON.parse(routed.body), { delivered: 0 });
    assert.deepEqual(await alice.next(), {
      type: 'message',
      channel: 'public:news',
      seq: 1,
      data: { text: 'x' },
    });
    await alice.sync();
    assert.deepEqual(alice.unread(), []);
    assert.ok(!gw.rawLog().includes(publishKey), 'the publish key is never logged');
    await alice.close();
    await canary(gw);
  });

  it('gateway.publish without a route is all or nothing: a name one broker route refuses (maxChannelNameBytes) is delivered on none and reported {ok: false, delivered: 0}', async () => {
    // 85 bytes: valid on /live (200) but too long for /strict (64).
    const sub = 'l'.repeat(80);
    const channel = `user:${sub}`;
    const long = await connect(sub, {});
    assert.deepEqual(await long.request({ type: 'subscribe', id: 1, channel }), { type: 'ack', id: 1 });
    assert.deepEqual(gw.gateway.publish(channel, { text: 'x' }), { ok: false, delivered: 0 });
    const res = await httpRequest(gw, {
      headers: publishHeaders(),
      body: JSON.stringify({ channel, data: { text: 'y' } }),
    });
    assert.equal(res.status, 400);
    assert.deepEqual(JSON.parse(res.body), refusalBody('BAD_REQUEST'));
    await long.sync();
    assert.deepEqual(long.unread(), [], 'a publication reported as refused was not delivered either');
    // Addressed to the route that accepts the name, it is delivered.
    assert.deepEqual(gw.gateway.publish(channel, { text: 'z' }, { route: '/live' }), {
      ok: true,
      delivered: 1,
    });
    assert.deepEqual(await long.next(), { type: 'message', channel, seq: 1, data: { text: 'z' } });
    await long.close();
    await canary(gw);
  });

  it('M-07 (within a connection) 500 publications arrive exactly once and in order, seq 1..500', async () => {
    const alice = await connect('alice', member('acme'), '/live', false);
    assert.deepEqual(await alice.request({ type: 'subscribe', id: 1, channel: 'public:news' }), {
      type: 'ack',
      id: 1,
    });
    for (let i = 1; i <= 500; i++) {
      assert.equal(gw.gateway.publish('public:news', { i }, { route: '/live' }).delivered, 1);
      if (i % 50 === 0) await sleep(0); // let the socket flush now and then, like a real backend
    }
    for (let i = 1; i <= 500; i++) {
      assert.deepEqual(await alice.next(), { type: 'message', channel: 'public:news', seq: i, data: { i } });
    }
    await alice.sync();
    assert.deepEqual(alice.unread(), []);
    await alice.close();
    await canary(gw);
  });
});

/** The fenced blocks of one language in a Markdown file, in order. */
function fencedBlocks(markdown: string, lang: string): string[] {
  const out: string[] = [];
  const re = new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``, 'g');
  for (let m = re.exec(markdown); m; m = re.exec(markdown)) out.push(m[1] as string);
  return out;
}

/** Runs `node file` in `cwd`; resolves with its output and exit code (killed after `timeoutMs`). */
function runNode(
  file: string,
  cwd: string,
  timeoutMs: number,
  onStdout: (all: string) => void = () => undefined,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      onStdout(stdout);
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('docs/protocol.md Quick start, run as written', () => {
  it('mint.mjs + portcullis.yaml + client.mjs print the documented output; M-07 shutdown closes the subscriber with 1001 SHUTTING_DOWN', {
    timeout: 30_000,
  }, async () => {
    const doc = readFileSync(join(ROOT, 'docs/protocol.md'), 'utf8');
    const [yamlText] = fencedBlocks(doc, 'yaml');
    const [mint, client] = fencedBlocks(doc, 'js');
    const [expected] = fencedBlocks(doc, 'text');
    assert.ok(yamlText && mint && client && expected, 'the Quick start blocks are in docs/protocol.md');
    assert.match(mint, /writeFileSync\('app\.pub\.pem'/);
    assert.match(client, /'wss:\/\/localhost:8443\/live'/);
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-quickstart-'));
    // `npm install portcullis ws jose` in the doc: here the repository's own node_modules.
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
    writeFileSync(join(dir, 'mint.mjs'), mint);
    const minted = await runNode('mint.mjs', dir, 10_000);
    assert.equal(minted.code, 0, minted.stderr);
    writeFileSync(join(dir, 'token.txt'), minted.stdout);
    writeFileSync(join(dir, 'portcullis.yaml'), yamlText);
    // The documented config as is (tls.dev makes .portcullis/ca.crt next to it); only the port is ours.
    const raw = parseYaml(yamlText) as Record<string, unknown>;
    const config = parseConfig({ ...raw, listen: { host: '127.0.0.1', port: 0 } }, dir);
    const lines: string[] = [];
    const gateway = createGateway(config, {
      logDestination: new Writable({
        write(chunk, _enc, done) {
          lines.push(chunk.toString());
          done();
        },
      }),
    });
    const info = await gateway.listen();
    assert.equal(info.devCaPath, join(dir, '.portcullis', 'ca.crt'));
    let closedGateway: Promise<void> | undefined;
    try {
      writeFileSync(
        join(dir, 'client.mjs'),
        client.replace("'wss://localhost:8443/live'", `'wss://localhost:${info.port}/live'`),
      );
      const wanted = expected.trimEnd();
      const run = await runNode('client.mjs', dir, 15_000, (all) => {
        // Once the documented output is complete, shut the gateway down: the client then sees the
        // drain close and exits by itself.
        if (!closedGateway && all.trimEnd() === wanted)
          closedGateway = gateway.close({ drainTimeoutMs: 2_000 });
      });
      assert.equal(run.stderr, '');
      assert.equal(run.stdout, `${wanted}\nclosed 1001 SHUTTING_DOWN\n`);
      assert.equal(run.code, 0);
    } finally {
      await (closedGateway ?? gateway.close({ drainTimeoutMs: 500 }));
      rmSync(dir, { recursive: true, force: true });
    }
    assert.ok(lines.some((l) => l.includes('"event":"close"') && l.includes('"SHUTTING_DOWN"')));
    assert.ok(!lines.join('').includes(minted.stdout.trim()), 'the token is never logged');
  });
});
