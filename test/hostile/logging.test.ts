// Rows M-05 (log injection, output encoding) and M-06 (information leaks in refusals and close
// reasons) of ../shared/threats.md, against a real TLS gateway on loopback.
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { after, before, describe, it } from 'node:test';
import type { RateRule } from '../../src/core/rate.js';
import { MemoryEngine } from '../../src/engine/memory.js';
import type { Admit } from '../../src/engine/types.js';
import { ERRORS, type ErrorCode, errorBody, isErrorCode } from '../../src/protocol.js';
import {
  canary,
  closed,
  echoRoute,
  nextMessage,
  openClient,
  startGateway,
  type TestGateway,
} from '../helpers/gateway.js';
import { closePayload, F, HS, RawClient, upgraded } from '../helpers/raw.js';

type LogLine = Record<string, unknown>;
type Response = Awaited<ReturnType<RawClient['readResponse']>>;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// What must never appear raw in a log line: C0/C1 controls, DEL, and U+2028/U+2029, which some
// log viewers and JavaScript parsers treat as line breaks.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/** The first log line matching `match`, waiting for it to be written. */
async function logged(
  gw: TestGateway,
  match: (l: LogLine) => boolean,
  what: string,
  timeoutMs = 3_000,
): Promise<LogLine> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = gw.logs.find(match);
    if (line) return line;
    if (Date.now() > deadline) throw new Error(`timed out waiting for the log line: ${what}`);
    await sleep(10);
  }
}

/** Every line of the raw log is one JSON object, with no raw control or separator characters. */
function assertCleanLog(gw: TestGateway): void {
  const raw = gw.rawLog();
  assert.ok(raw.length > 0);
  for (const line of raw.split('\n')) {
    const parsed: unknown = JSON.parse(line);
    assert.equal(typeof parsed, 'object', line);
    assert.ok(parsed !== null && !Array.isArray(parsed), line);
    assert.doesNotMatch(line, UNSAFE, `raw control character in ${JSON.stringify(line)}`);
  }
}

/** Writes `request` (a string is sent as UTF-8) on a fresh TLS connection and reads the answer. */
async function ask(gw: TestGateway, request: string | Buffer): Promise<Response> {
  const client = await RawClient.connect(gw.port, gw.ca);
  try {
    client.write(request);
    return await client.readResponse();
  } finally {
    client.destroy();
  }
}

describe('M-05 log injection and output encoding', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway();
  });
  after(() => gw.close());

  it('M-05 a close reason and a message body carrying CR/LF, ANSI and "} never reach the log raw', async () => {
    const client = await upgraded(gw.port, gw.ca);
    const body = 'x"}\r\n{"level":"info","event":"forged"}\x1b[2J';
    client.write(F(0x81, body));
    assert.equal((await client.readFrame()).payload.toString(), body);
    client.write(F(0x88, closePayload(4000, 'a\nINFO fake\u2028\x1b[31m')));
    const close = await client.readClose();
    assert.equal(close.code, 4000);
    await client.waitClosed();
    const event = await logged(gw, (l) => l.event === 'close' && l.closeCode === 4000, 'close event');
    assert.equal(event.code, null);
    assert.equal(event.by, 'client');
    assert.equal(event.messagesIn, 1);
    const raw = gw.rawLog();
    assert.ok(
      !raw.includes('INFO fake') && !raw.includes('forged'),
      'neither the reason nor the body is logged',
    );
    assert.ok(!raw.split('\n').some((line) => line.startsWith('INFO')));
    assertCleanLog(gw);
    await canary(gw);
  });

  it('M-05 Node refuses a User-Agent with ESC, NUL or DEL with 400 BAD_REQUEST', async () => {
    for (const value of ['x\x1b[31m', 'x\x00y', 'x\x7fy']) {
      const res = await ask(gw, HS({ 'User-Agent': value }));
      assert.equal(res.status, 400, JSON.stringify(value));
      assert.deepEqual(JSON.parse(res.body), errorBody('BAD_REQUEST'));
    }
    assert.ok(!gw.rawLog().includes('\x1b'));
    assertCleanLog(gw);
  });

  it('M-05 obs-text and U+2028 bytes in Origin are refused and escaped in the audit line', async () => {
    const before = gw.logs.length;
    const origins = [
      'https://x\u2028y',
      'https://app.test\u2029',
      'https://caf\u00e9.test',
      'https://x"}{"event":"forged',
      'https://x%0d%0aINFO',
    ];
    for (const origin of origins) {
      const res = await ask(gw, HS({ Origin: origin })); // written as UTF-8 bytes; Node reads them as latin1
      assert.equal(res.status, 403, JSON.stringify(origin));
      assert.deepEqual(JSON.parse(res.body), errorBody('ORIGIN_NOT_ALLOWED'));
    }
    const deadline = Date.now() + 2_000;
    while (gw.logs.slice(before).filter((l) => l.code === 'ORIGIN_NOT_ALLOWED').length < origins.length) {
      assert.ok(Date.now() < deadline, 'one audit line per refusal');
      await sleep(10);
    }
    const audits = gw.logs.slice(before).filter((l) => l.code === 'ORIGIN_NOT_ALLOWED');
    for (const audit of audits) {
      assert.equal(audit.event, 'handshake');
      assert.equal(audit.outcome, 'rejected');
      assert.equal(audit.status, 403);
      assert.equal(typeof audit.origin, 'string');
      assert.doesNotMatch(
        audit.origin as string,
        UNSAFE,
        'even the decoded value carries no control character',
      );
    }
    // E2 80 A8 read as latin1 holds the C1 control U+0080, which the sink escapes as text.
    assert.ok(audits.some((a) => (a.origin as string).includes('\\u0080')));
    assert.ok(
      audits.some((a) => a.origin === 'https://x"}{"event":"forged'),
      'quotes survive as data, escaped by JSON',
    );
    assert.ok(!gw.logs.some((l) => l.event === 'forged'));
    assertCleanLog(gw);
  });

  it('M-05 query strings, tokens and cookies are never logged', async () => {
    const ws = await openClient(gw, '/echo?access_token=SENTINEL123&q=%0d%0aINFO%20fake', {
      headers: { 'User-Agent': 'agent-SENTINEL-UA' },
    });
    const reply = nextMessage(ws);
    ws.send('hello');
    assert.equal((await reply).data.toString(), 'hello');
    ws.close(1000);
    await closed(ws);
    const refusals: [string, number][] = [
      [HS({ Origin: 'https://evil.test' }, { path: '/echo?token=SENTINEL456' }), 403],
      [HS({}, { path: '/nope?access_token=SENTINEL789' }), 404],
      [HS({ Upgrade: null, Connection: null }, { path: '/echo?access_token=SENTINEL000' }), 426],
      [
        HS(
          { Authorization: 'Bearer SENTINELAUTH', Cookie: 'sid=SENTINELCOOKIE' },
          { path: '/echo?x=SENTINELQ' },
        ),
        101,
      ],
    ];
    for (const [request, status] of refusals) assert.equal((await ask(gw, request)).status, status);
    await logged(gw, (l) => l.code === 'ROUTE_NOT_FOUND', 'audit line for /nope');
    await logged(gw, (l) => l.event === 'close' && l.messagesIn === 1 && l.closeCode === 1000, 'close event');
    const accepted = await logged(gw, (l) => l.outcome === 'accepted', 'accepted audit line');
    assert.equal(accepted.route, '/echo', 'the route is logged without its query');
    assert.doesNotMatch(gw.rawLog(), /SENTINEL/);
    assertCleanLog(gw);
    await canary(gw);
  });
});

/** The memory engine, failing every handshake the way an unreachable networked engine would. */
class UnreachableEngine extends MemoryEngine {
  override takeHandshake(_ip: string, _rule: RateRule, _now: number): Promise<Admit> {
    return Promise.reject(
      new Error('connect ECONNREFUSED redis-7.internal.corp:6379 at /srv/portcullis/engine/redis.js:42'),
    );
  }
}

describe('M-06 information leaks in refusals and close reasons', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({
      limits: { handshakeTimeoutMs: 1_000, closeTimeoutMs: 1_000 },
      routes: [
        echoRoute(),
        echoRoute({
          path: '/rate',
          limits: { messagesPerSecond: 1, messageBurst: 1, onRateExceeded: 'close' },
        }),
        echoRoute({ path: '/idle', limits: { idleTimeoutMs: 300 } }),
        echoRoute({ path: '/small', limits: { maxMessageBytes: 16 } }),
      ],
    });
  });
  after(() => gw.close());

  /** Asserts a response is exactly the ERRORS row: status, body, and nothing private anywhere. */
  function assertGeneric(res: Response, code: ErrorCode): void {
    assert.equal(res.status, ERRORS[code].status, code);
    assert.equal(res.body, JSON.stringify(errorBody(code)), code);
    assert.deepEqual(Object.keys(JSON.parse(res.body)), ['code', 'message']);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.doesNotMatch(res.raw, /\n\s+at |stack|node:|\/work\/|\/home\/|\/srv\/|127\.0\.0\.1/i, code);
    const host = hostname();
    if (host.length >= 6) assert.ok(!res.raw.includes(host), `${code} names the host`);
  }

  it('M-06 refusal bodies are exactly {"code","message"} from the ERRORS table', async () => {
    const rows: [ErrorCode, string][] = [
      ['ROUTE_NOT_FOUND', HS({}, { path: '/nope' })],
      ['ORIGIN_NOT_ALLOWED', HS({ Origin: 'https://evil.test' })],
      ['METHOD_NOT_ALLOWED', HS({}, { method: 'POST' })],
      ['BAD_KEY', HS({ 'Sec-WebSocket-Key': 'abc' })],
      ['UNSUPPORTED_VERSION', HS({ 'Sec-WebSocket-Version': '8' })],
      ['DUPLICATE_HEADER', HS({ Origin: ['https://app.test', 'https://evil.test'] })],
      ['UPGRADE_REQUIRED', HS({ Upgrade: null, Connection: null })],
      ['BAD_REQUEST', HS({ 'User-Agent': 'x\x1b[31m' })],
      ['HEADERS_TOO_LARGE', HS({ 'X-Big': 'a'.repeat(20_000) })],
    ];
    for (const [code, request] of rows) assertGeneric(await ask(gw, request), code);
    // A connection that sends nothing is answered at the handshake timeout.
    const idle = await RawClient.connect(gw.port, gw.ca);
    assertGeneric(await idle.readResponse(3_000), 'REQUEST_TIMEOUT');
    idle.destroy();
    await canary(gw);
  });

  it('M-06 close reasons are ErrorCode strings of at most 123 bytes', async () => {
    const reasons: { code: number; reason: string }[] = [];
    // RATE_LIMITED after the burst of 1.
    const rate = await openClient(gw, '/rate');
    const rateClosed = closed(rate);
    rate.send('1');
    rate.send('2');
    reasons.push(await rateClosed);
    // IDLE_TIMEOUT.
    const idle = await upgraded(gw.port, gw.ca, '/idle');
    reasons.push(await idle.readClose(2_000));
    idle.destroy();
    // CONTROL_FLOOD after the default burst of 20 pings.
    const flood = await upgraded(gw.port, gw.ca);
    flood.write(Buffer.concat(Array.from({ length: 30 }, () => F(0x89, 'p'))));
    reasons.push(await flood.readClose());
    flood.destroy();
    assert.deepEqual(
      reasons.map((r) => [r.code, r.reason]),
      [
        [4429, 'RATE_LIMITED'],
        [4408, 'IDLE_TIMEOUT'],
        [1008, 'CONTROL_FLOOD'],
      ],
    );
    // Framing failures are answered by ws itself, before the gateway sees them: the close frame
    // carries the RFC 6455 code and no reason at all; the ErrorCode goes to the audit log.
    const big = await upgraded(gw.port, gw.ca, '/small');
    big.write(F(0x81, 'x'.repeat(17)));
    const bigClose = await big.readClose();
    big.destroy();
    assert.deepEqual([bigClose.code, bigClose.reason], [1009, '']);
    await logged(
      gw,
      (l) => l.event === 'close' && l.code === 'MESSAGE_TOO_BIG',
      'MESSAGE_TOO_BIG close event',
    );
    for (const { reason } of [...reasons, bigClose]) {
      assert.ok(reason === '' || isErrorCode(reason), reason);
      assert.ok(Buffer.byteLength(reason) <= 123);
    }
    // Every code the gateway could send is a short constant: no room for a cause or a hostname.
    for (const [code, spec] of Object.entries(ERRORS)) {
      assert.match(code, /^[A-Z][A-Z_]*$/);
      assert.ok(Buffer.byteLength(code) <= 123, code);
      assert.ok(Buffer.byteLength(spec.message) <= 123, code);
    }
    await canary(gw);
  });

  it('M-06 a draining gateway closes with 1001 SHUTTING_DOWN', async () => {
    const other = await startGateway();
    const ws = await openClient(other);
    const done = closed(ws);
    await other.close();
    assert.deepEqual(await done, { code: 1001, reason: 'SHUTTING_DOWN' });
  });

  it('M-06 ws refuses the close reasons the gateway must never send: a TypedArray and 124 bytes', async () => {
    const ws = await openClient(gw);
    assert.throws(() => ws.close(1000, new Float32Array(20) as unknown as string), TypeError);
    assert.throws(() => ws.close(1000, 'x'.repeat(124)), RangeError);
    ws.close(1000, 'x'.repeat(123));
    assert.equal((await closed(ws)).code, 1000);
  });
});

describe('M-06 an internal failure', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({}, { engine: new UnreachableEngine() });
  });
  after(() => gw.close());

  it('M-06 answers 500 INTERNAL with the generic body only; the cause goes to the log', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await ask(gw, HS());
      assert.equal(res.status, 500);
      assert.equal(res.body, JSON.stringify(errorBody('INTERNAL')));
      assert.doesNotMatch(res.raw, /ECONNREFUSED|redis|corp|\/srv\/|6379|\n\s+at /);
    }
    const line = await logged(gw, (l) => l.event === 'internal', 'internal log line');
    assert.equal(line.level, 'error');
    assertCleanLog(gw);
    // The same process still answers: a refused client is not a crashed server.
    const client = await RawClient.connect(gw.port, gw.ca);
    client.write(HS({}, { path: '/nope' }));
    assert.equal((await client.readResponse()).status, 500);
    client.destroy();
  });
});
