// M-07 over real TLS sockets: a publisher emits seq 1..N at a steady rate through gateway.publish
// while a subscriber's connection drops; it resumes with `since` and must end up with every seq
// exactly once and in order, or an explicit gap frame naming exactly what was lost, or a reset
// after a gateway restart. Never a silent loss.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { type CryptoKey, exportSPKI, generateKeyPair, SignJWT } from 'jose';
import type WebSocket from 'ws';
import { canary, echoRoute, openClient, startGateway, type TestGateway } from '../helpers/gateway.js';

type Frame = Record<string, unknown>;

const PROTOCOL = 'portcullis.v1';
const ISS = 'https://idp.test/';
const AUD = 'portcullis';
/** Publications per test run: about 1.2 s at the publisher's 2 ms pace (~500/s, as in threats.md). */
const N = 600;
const PACE_MS = 2;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `probe` every 5 ms until it returns a value (not undefined, null, false or 0), or fails after `timeoutMs`. */
async function until<T>(
  probe: () => T | undefined | null | false | 0,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== null && value !== false && value !== 0) return value as T;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * One broker connection as a resuming client sees it: every frame kept in arrival order. After
 * drop() it ignores whatever its socket still parses, like a client whose network just went away.
 */
class Subscriber {
  readonly frames: Frame[] = [];
  closeInfo: { code: number; reason: string } | undefined;
  private dropped = false;

  constructor(
    readonly ws: WebSocket,
    private readonly onFrame: (frame: Frame, self: Subscriber) => void = () => undefined,
  ) {
    ws.on('message', (data) => {
      if (this.dropped) return;
      const frame = JSON.parse((data as Buffer).toString()) as Frame;
      this.frames.push(frame);
      this.onFrame(frame, this);
    });
    ws.on('close', (code, reason) => {
      this.closeInfo = { code, reason: reason.toString() };
    });
    ws.on('error', () => undefined);
  }

  send(frame: Frame): void {
    this.ws.send(JSON.stringify(frame));
  }

  /** The connection drops at once: no close handshake, nothing more is read. */
  drop(): void {
    this.dropped = true;
    this.ws.terminate();
  }

  /** The seqs of the message frames received, in arrival order. */
  seqs(): number[] {
    return this.frames.filter((f) => f.type === 'message').map((f) => f.seq as number);
  }

  lastSeq(): number {
    return this.seqs().at(-1) ?? 0;
  }

  /** Waits for the answer to request `id`. */
  answer(id: string | number): Promise<Frame> {
    return until(() => this.frames.find((f) => f.id === id), 3_000, `the answer to ${id}`);
  }

  /** A barrier: answers come in order over one stream, so every frame sent before it is here. */
  async sync(): Promise<void> {
    this.send({ type: 'unsubscribe', id: 'sync', channel: 'sync:barrier' });
    assert.deepEqual(await this.answer('sync'), { type: 'ack', id: 'sync' });
  }
}

/** Publishes { i } for i = 1..n on `channel`, one every PACE_MS; `onEach` sees each i once sent. */
async function publishSteadily(
  gw: TestGateway,
  channel: string,
  n: number,
  onEach: (i: number) => void = () => undefined,
) {
  for (let i = 1; i <= n; i++) {
    assert.equal(gw.gateway.publish(channel, { i }).ok, true);
    onEach(i);
    await sleep(PACE_MS);
  }
}

/** Every message frame is { channel, seq, data: { i: seq } }: the seq is the publisher's count. */
function assertMessagesAreTheirSeq(frames: Frame[], channel: string): void {
  for (const f of frames.filter((x) => x.type === 'message')) {
    assert.deepEqual(f, { type: 'message', channel, seq: f.seq, data: { i: f.seq } });
  }
}

const range = (from: number, to: number) =>
  Array.from({ length: Math.max(0, to - from + 1) }, (_, k) => from + k);

describe('M-07 broker resume over real sockets', () => {
  let dir: string;
  let keyFile: string;
  let privateKey: CryptoKey;
  const gateways: TestGateway[] = [];
  const sockets: WebSocket[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-resume-'));
    const pair = await generateKeyPair('ES256');
    privateKey = pair.privateKey;
    keyFile = join(dir, 'app.pub.pem');
    writeFileSync(keyFile, await exportSPKI(pair.publicKey));
  });

  afterEach(() => {
    for (const ws of sockets.splice(0)) ws.terminate();
  });

  after(async () => {
    await Promise.all(gateways.splice(0).map((gw) => gw.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  /** A gateway with two broker routes: /live keeps 1000 publications per channel, /small keeps 5. */
  async function start(): Promise<TestGateway> {
    const route = (path: string, historySize: number) => ({
      path,
      auth: ['app'],
      origins: ['https://app.test'],
      subprotocols: [PROTOCOL],
      broker: { channels: [{ pattern: 'feed:*', subscribe: true }], historySize },
    });
    const gw = await startGateway({
      limits: { closeTimeoutMs: 1_000 },
      authenticators: { app: { type: 'jwt', keyFile, issuer: ISS, audience: AUD, algorithms: ['ES256'] } },
      routes: [echoRoute(), route('/live', 1_000), route('/small', 5)],
    } as Parameters<typeof startGateway>[0]);
    gateways.push(gw);
    return gw;
  }

  async function connect(gw: TestGateway, path: string, onFrame?: (f: Frame, s: Subscriber) => void) {
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256' })
      .setSubject('reader')
      .setIssuer(ISS)
      .setAudience(AUD)
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(privateKey);
    const ws = await openClient(gw, path, {
      protocols: PROTOCOL,
      headers: { Authorization: `Bearer ${token}` },
    });
    assert.equal(ws.protocol, PROTOCOL);
    sockets.push(ws);
    return new Subscriber(ws, onFrame);
  }

  /** Subscribes and returns the ack, which carries the channel's epoch and latest seq. */
  async function subscribe(
    s: Subscriber,
    id: string,
    channel: string,
    since?: { epoch: string; seq: number },
  ) {
    s.send({ type: 'subscribe', id, channel, ...(since ? { since } : {}) });
    const ack = await s.answer(id);
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    assert.match(String(ack.epoch), /^[A-Za-z0-9._-]{1,64}$/);
    assert.ok(Number.isSafeInteger(ack.seq));
    return ack as { type: 'ack'; id: string; epoch: string; seq: number };
  }

  it('M-07 a subscriber whose connection drops mid-stream resumes with since and receives every seq 1..N exactly once, in order', {
    timeout: 30_000,
  }, async () => {
    const gw = await start();
    const channel = 'feed:steady';
    let dropAfter = 0;
    const first = await connect(gw, '/live', (f, self) => {
      if (f.type === 'message' && (f.seq as number) >= N / 3 && dropAfter === 0) {
        dropAfter = f.seq as number;
        self.drop(); // the network goes away: frames already on the wire are lost to this client
      }
    });
    const ack = await subscribe(first, 's', channel);
    assert.equal(ack.seq, 0);
    const publishing = publishSteadily(gw, channel, N);
    await until(() => dropAfter, 10_000, 'the drop');
    assert.ok(dropAfter >= N / 3 && dropAfter < N, `dropped after seq ${dropAfter}`);
    const received = first.seqs();
    assert.deepEqual(received, range(1, dropAfter));
    await sleep(40); // about 20 publications go by while it is away
    const second = await connect(gw, '/live');
    const resumed = await subscribe(second, 'r', channel, { epoch: ack.epoch, seq: dropAfter });
    assert.equal(resumed.epoch, ack.epoch, 'the same seq space: no restart under a resuming client');
    assert.ok(resumed.seq > dropAfter, 'publications went by while it was away');
    await publishing;
    await until(() => second.lastSeq() === N, 10_000, `seq ${N} on the resumed connection`);
    await second.sync();
    assert.deepEqual(
      second.frames.filter((f) => f.type === 'gap'),
      [],
      'nothing was lost, so no gap',
    );
    assert.deepEqual([...received, ...second.seqs()], range(1, N), 'every seq exactly once, in order');
    assertMessagesAreTheirSeq([...first.frames, ...second.frames], channel);
    // The ack comes first, then the replay, then live publications: nothing out of order.
    assert.equal(
      second.frames[0],
      second.frames.find((f) => f.id === 'r'),
    );
    second.ws.close(1000);
    await canary(gw);
  });

  it('M-07 with historySize 5 the resumed subscriber gets a gap frame naming exactly the lost range, then every later seq once, in order', {
    timeout: 30_000,
  }, async () => {
    const gw = await start();
    const channel = 'feed:small';
    let dropAfter = 0;
    const first = await connect(gw, '/small', (f, self) => {
      if (f.type === 'message' && (f.seq as number) >= N / 3 && dropAfter === 0) {
        dropAfter = f.seq as number;
        self.drop();
      }
    });
    const ack = await subscribe(first, 's', channel);
    let published = 0;
    const publishing = publishSteadily(gw, channel, N, (i) => {
      published = i;
    });
    await until(() => dropAfter, 10_000, 'the drop');
    assert.ok(dropAfter >= N / 3 && dropAfter < N - 50, `dropped after seq ${dropAfter}`);
    // Away long enough for more than historySize publications to go by.
    await until(() => published >= dropAfter + 30, 10_000, '30 publications while away');
    const second = await connect(gw, '/small');
    const resumed = await subscribe(second, 'r', channel, { epoch: ack.epoch, seq: dropAfter });
    assert.equal(resumed.epoch, ack.epoch);
    await publishing;
    await until(() => second.lastSeq() === N, 10_000, `seq ${N} on the resumed connection`);
    await second.sync();
    const [ackFrame, gap, ...rest] = second.frames.filter((f) => f.id !== 'sync');
    assert.equal(
      ackFrame,
      second.frames.find((f) => f.id === 'r'),
      'the ack comes first',
    );
    assert.equal(gap?.type, 'gap', `a gap right after the ack, not ${JSON.stringify(gap)}`);
    const to = gap?.to as number;
    assert.deepEqual(gap, { type: 'gap', channel, from: dropAfter + 1, to });
    // Exactly the lost range: what the first connection got, the gap and what the second got
    // partition 1..N, so nothing was lost without being named, and nothing named was delivered.
    assert.equal(to, resumed.seq - 5, 'history held exactly the last 5 at the resume');
    assert.deepEqual([...first.seqs(), ...range(dropAfter + 1, to), ...second.seqs()], range(1, N));
    assert.deepEqual(
      rest.map((f) => f.type),
      rest.map(() => 'message'),
      'one gap, then messages only',
    );
    assertMessagesAreTheirSeq(rest, channel);
    second.ws.close(1000);
    await canary(gw);
  });

  it('M-07 after a gateway restart (close, then a new gateway on a new port) the resumed subscriber gets ack then reset, then live seqs', {
    timeout: 30_000,
  }, async () => {
    const channel = 'feed:restart';
    const before = await start();
    const first = await connect(before, '/live');
    const ack = await subscribe(first, 's', channel);
    await publishSteadily(before, channel, 10);
    await until(() => first.lastSeq() === 10, 3_000, 'seq 10');
    await before.close();
    gateways.splice(gateways.indexOf(before), 1);
    await until(() => first.closeInfo, 3_000, 'the shutdown close');
    assert.deepEqual(first.closeInfo, { code: 1001, reason: 'SHUTTING_DOWN' });

    const restarted = await start();
    assert.notEqual(restarted.port, before.port);
    assert.deepEqual(restarted.gateway.publish(channel, { i: 1 }), { ok: true, delivered: 0 });
    const second = await connect(restarted, '/live');
    const resumed = await subscribe(second, 'r', channel, { epoch: ack.epoch, seq: first.lastSeq() });
    assert.notEqual(resumed.epoch, ack.epoch, 'a new gateway has a new epoch');
    await until(() => second.frames.length >= 2, 3_000, 'the reset');
    assert.deepEqual(second.frames[1], { type: 'gap', channel, reset: true });
    for (let i = 1; i <= 3; i++) restarted.gateway.publish(channel, { i: resumed.seq + i });
    await until(() => second.seqs().length === 3, 3_000, 'three live messages');
    await second.sync();
    assert.deepEqual(second.seqs(), range(resumed.seq + 1, resumed.seq + 3), 'live seqs follow the new ack');
    assert.deepEqual(
      second.frames.map((f) => f.type),
      ['ack', 'gap', 'message', 'message', 'message', 'ack'],
      'no replay from an unknown past: only the reset',
    );
    assertMessagesAreTheirSeq(second.frames, channel);
    second.ws.close(1000);
    await canary(restarted);
  });
});
