// Threat rows T-01..T-04 (../shared/threats.md section 1.1): what the TLS listener refuses before
// any HTTP byte, measured with the real `openssl s_client`, Node's TLS client and raw TCP sockets.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { canary, echoRoute, startGateway, type TestGateway } from '../helpers/gateway.js';
import { HS, RawClient } from '../helpers/raw.js';

const HANDSHAKE_TIMEOUT_MS = 1_000;
const HSTS = /^max-age=(\d+); includeSubDomains$/;
// One TLS alert record: 5-byte record header + level + description. Anything more would be a
// ServerHello, a certificate or HTTP bytes.
const ONE_ALERT_RECORD_BYTES = 7;

interface OpensslRun {
  exitCode: number | null;
  output: string;
}

/** Runs `openssl s_client` against the gateway; `drive` may write to its stdin while it runs. */
function sClient(
  port: number,
  caFile: string,
  args: readonly string[],
  drive?: (stdin: NodeJS.WritableStream, output: () => string) => Promise<void>,
  timeoutMs = 8_000,
): Promise<OpensslRun> {
  const child = spawn(
    'openssl',
    ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-CAfile', caFile, ...args],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (d: Buffer) => {
    output += d.toString('latin1');
  });
  child.stderr.on('data', (d: Buffer) => {
    output += d.toString('latin1');
  });
  child.stdin.on('error', () => undefined); // EPIPE once s_client has exited
  const exited = new Promise<OpensslRun>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`openssl s_client ${args.join(' ')} did not exit within ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (exitCode) => {
      clearTimeout(timer);
      resolve({ exitCode, output });
    });
  });
  if (drive) void drive(child.stdin, () => output).catch(() => undefined);
  else child.stdin.end();
  return exited;
}

function alertNumber(output: string): number | undefined {
  const match = /SSL alert number (\d+)/.exec(output);
  return match ? Number(match[1]) : undefined;
}

function bytesRead(output: string): number | undefined {
  const match = /SSL handshake has read (\d+) bytes/.exec(output);
  return match ? Number(match[1]) : undefined;
}

/** The gateway's listening server; private, read here only to count its open connections. */
function listener(gw: TestGateway): Server {
  const server = (gw.gateway as unknown as { server?: Server }).server;
  if (!server) throw new Error('gateway is not listening');
  return server;
}

function serverConnections(gw: TestGateway): Promise<number> {
  return new Promise((resolve, reject) =>
    listener(gw).getConnections((err, n) => (err ? reject(err) : resolve(n))),
  );
}

async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Writes bytes on a plain TCP socket and collects everything until the server closes it. */
function plainExchange(
  port: number,
  bytes: string | Buffer,
  timeoutMs = 3_000,
): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ data: Buffer.concat(chunks), closed: false });
    }, timeoutMs);
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), closed: true });
    });
  });
}

function parseHead(data: Buffer): { status: number; headers: Record<string, string>; body: string } {
  const text = data.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  assert.notEqual(end, -1, `no HTTP head in ${JSON.stringify(text)}`);
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const i = line.indexOf(':');
    headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
  }
  return { status: Number(statusLine?.split(' ')[1]), headers, body: text.slice(end + 4) };
}

function assertHsts(value: string | undefined, label: string): void {
  const match = HSTS.exec(value ?? '');
  assert.ok(match, `${label}: Strict-Transport-Security was ${JSON.stringify(value)}`);
  assert.ok(Number(match[1]) >= 31_536_000, `${label}: max-age ${match[1]} is under one year`);
}

describe('TLS listener (threats T-01..T-04)', () => {
  let gw: TestGateway;
  let dir: string;
  let caFile: string;

  before(async () => {
    gw = await startGateway({
      // debug: TLS refusals are logged at debug level with Node's reason code.
      log: { level: 'debug' },
      limits: {
        handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
        perIp: { maxConnections: 1_000, handshakesPerSecond: 10_000, handshakeBurst: 10_000 },
      },
    });
    dir = mkdtempSync(join(tmpdir(), 'portcullis-tls-'));
    caFile = join(dir, 'ca.crt');
    writeFileSync(caFile, gw.ca);
  });
  after(async () => {
    await gw.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('T-01 refuses TLS 1.0/1.1, legacy-only suites and TLS_FALLBACK_SCSV with the right alert and no bytes', async () => {
    const rejectedBefore = gw.gateway.stats.tlsRejected;
    const logsBefore = gw.logs.length;
    const cases: { label: string; args: string[]; alert: number; reason: string }[] = [
      {
        label: 'TLS 1.0 only',
        args: ['-tls1', '-cipher', 'DEFAULT@SECLEVEL=0'],
        alert: 70,
        reason: 'ERR_SSL_UNSUPPORTED_PROTOCOL',
      },
      {
        label: 'TLS 1.1 only',
        args: ['-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0'],
        alert: 70,
        reason: 'ERR_SSL_UNSUPPORTED_PROTOCOL',
      },
      {
        label: '3DES/RC4/NULL/aNULL only',
        args: ['-tls1_2', '-cipher', 'DES-CBC3-SHA:RC4-SHA:NULL-SHA:aNULL@SECLEVEL=0'],
        alert: 40,
        reason: 'ERR_SSL_NO_SHARED_CIPHER',
      },
      // CBC and static-RSA key exchange: not on the AEAD + ECDHE list.
      {
        label: 'AES128-SHA only',
        args: ['-tls1_2', '-cipher', 'AES128-SHA'],
        alert: 40,
        reason: 'ERR_SSL_NO_SHARED_CIPHER',
      },
      {
        label: 'ECDHE CBC only',
        args: ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384'],
        alert: 40,
        reason: 'ERR_SSL_NO_SHARED_CIPHER',
      },
      {
        label: 'TLS 1.2 + TLS_FALLBACK_SCSV',
        args: ['-tls1_2', '-fallback_scsv'],
        alert: 86,
        reason: 'ERR_SSL_INAPPROPRIATE_FALLBACK',
      },
    ];
    for (const c of cases) {
      const run = await sClient(gw.port, caFile, c.args);
      assert.notEqual(run.exitCode, 0, `${c.label}: s_client succeeded:\n${run.output}`);
      assert.equal(alertNumber(run.output), c.alert, `${c.label}:\n${run.output}`);
      // No ServerHello, no certificate, no HTTP: the only bytes received are the alert record.
      assert.equal(bytesRead(run.output), ONE_ALERT_RECORD_BYTES, `${c.label}:\n${run.output}`);
      assert.match(run.output, /no peer certificate available/, c.label);
      assert.match(run.output, /Cipher is \(NONE\)/, c.label);
      assert.doesNotMatch(run.output, /HTTP\/1\.[01]/, c.label);
    }
    // Node's own client agrees: a TLS 1.1 ceiling gets protocol_version (70).
    const nodeError = await new Promise<NodeJS.ErrnoException>((resolve, reject) => {
      const socket = tls.connect({
        host: '127.0.0.1',
        port: gw.port,
        ca: gw.ca,
        servername: 'localhost',
        minVersion: 'TLSv1',
        maxVersion: 'TLSv1.1',
        ciphers: 'DEFAULT@SECLEVEL=0',
      });
      socket.once('secureConnect', () => {
        socket.destroy();
        reject(new Error(`TLS 1.1 handshake succeeded (${socket.getProtocol()})`));
      });
      socket.once('error', resolve);
    });
    assert.equal(nodeError.code, 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
    assert.match(nodeError.message, /SSL alert number 70/);

    assert.equal(gw.gateway.stats.tlsRejected - rejectedBefore, cases.length + 1);
    const reasons = gw.logs
      .slice(logsBefore)
      .filter((l) => l.event === 'tls' && l.outcome === 'rejected')
      .map((l) => l.reason);
    for (const reason of [
      'ERR_SSL_UNSUPPORTED_PROTOCOL',
      'ERR_SSL_NO_SHARED_CIPHER',
      'ERR_SSL_INAPPROPRIATE_FALLBACK',
    ]) {
      assert.ok(
        reasons.includes(reason),
        `no tls log line with reason ${reason}: ${JSON.stringify(reasons)}`,
      );
    }
    await canary(gw);
  });

  it('T-02 refuses client-initiated TLS 1.2 renegotiation at the first attempt', async () => {
    // Stronger than threats.md's "at most 3 per 10 minutes": SSL_OP_NO_RENEGOTIATION refuses the
    // first one, so openssl must see exactly one RENEGOTIATING before the connection dies.
    const run = await sClient(gw.port, caFile, ['-tls1_2'], async (stdin, output) => {
      const ready = await waitFor(() => /SSL-Session:[\s\S]*Verify return code/.test(output()), 5_000);
      if (!ready) throw new Error('handshake never completed');
      for (let i = 0; i < 6; i++) {
        stdin.write('R\n');
        await new Promise((r) => setTimeout(r, 400));
      }
      stdin.end();
    });
    assert.match(run.output, /New, TLSv1\.2, Cipher is ECDHE-/, run.output);
    assert.equal(run.output.match(/RENEGOTIATING/g)?.length, 1, run.output);
    assert.match(run.output, /no renegotiation/, run.output);
    assert.notEqual(run.exitCode, 0, run.output);
    assert.equal(run.output.match(/SSL-Session:/g)?.length, 1, 'a second handshake completed');

    // The same through Node's TLS client.
    const error = await new Promise<NodeJS.ErrnoException>((resolve, reject) => {
      const socket = tls.connect({
        host: '127.0.0.1',
        port: gw.port,
        ca: gw.ca,
        servername: 'localhost',
        maxVersion: 'TLSv1.2',
      });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error('renegotiation neither failed nor closed the connection'));
      }, 3_000);
      socket.once('secureConnect', () => {
        socket.renegotiate({ rejectUnauthorized: true }, () => undefined);
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        socket.destroy();
        resolve(err);
      });
    });
    assert.equal(error.code, 'ERR_SSL_NO_RENEGOTIATION');
    await canary(gw);
  });

  it('T-03 destroys 200 stalled TLS handshakes (one 0x16 byte or nothing) at the handshake timeout', async () => {
    const COUNT = 200;
    const baseline = await serverConnections(gw);
    const rejectedBefore = gw.gateway.stats.tlsRejected;
    const sockets: net.Socket[] = [];
    const lifetimes: number[] = [];
    let bytesReceived = 0;
    await Promise.all(
      Array.from(
        { length: COUNT },
        (_, i) =>
          new Promise<void>((resolve, reject) => {
            const socket = net.connect(gw.port, '127.0.0.1');
            sockets.push(socket);
            socket.once('connect', () => {
              const connectedAt = Date.now();
              if (i % 2 === 0) socket.write(Buffer.from([0x16]));
              socket.once('close', () => lifetimes.push(Date.now() - connectedAt));
              resolve();
            });
            socket.on('data', (d: Buffer) => {
              bytesReceived += d.length;
            });
            socket.on('error', reject);
          }),
      ),
    );
    for (const s of sockets) s.removeAllListeners('error').on('error', () => undefined);
    const held = await waitFor(async () => (await serverConnections(gw)) >= baseline + COUNT, 500);
    assert.ok(held, 'the server never accepted all the stalled sockets');

    const allClosed = await waitFor(() => lifetimes.length === COUNT, HANDSHAKE_TIMEOUT_MS + 3_000);
    for (const s of sockets) s.destroy();
    assert.ok(allClosed, `only ${lifetimes.length}/${COUNT} stalled sockets were closed by the server`);
    lifetimes.sort((a, b) => a - b);
    // Closed by the timeout (not at once, and not later than timeout + 1 s).
    assert.ok((lifetimes[0] as number) >= HANDSHAKE_TIMEOUT_MS * 0.8, `first close after ${lifetimes[0]} ms`);
    assert.ok(
      (lifetimes.at(-1) as number) <= HANDSHAKE_TIMEOUT_MS + 1_000,
      `last close after ${lifetimes.at(-1)} ms`,
    );
    assert.equal(bytesReceived, 0);
    assert.equal(gw.gateway.stats.tlsRejected - rejectedBefore, COUNT);
    assert.ok(
      await waitFor(async () => (await serverConnections(gw)) === baseline, 2_000),
      'server connections did not return to baseline',
    );
    await canary(gw);
  });

  it('T-04 (a) answers plaintext HTTP on the TLS port with 0 bytes and a close', async () => {
    const logsBefore = gw.logs.length;
    const { data, closed } = await plainExchange(gw.port, 'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
    assert.equal(closed, true);
    assert.equal(data.length, 0, `server sent ${JSON.stringify(data.toString('latin1'))}`);
    const upgrade = await plainExchange(gw.port, HS());
    assert.equal(upgrade.closed, true);
    assert.equal(upgrade.data.length, 0);
    const reasons = gw.logs
      .slice(logsBefore)
      .filter((l) => l.event === 'tls')
      .map((l) => l.reason);
    assert.deepEqual(reasons, ['ERR_SSL_HTTP_REQUEST', 'ERR_SSL_HTTP_REQUEST']);
    await canary(gw);
  });

  it('T-04 (b) refuses tls: false off loopback; on loopback it serves plain ws:// and never sends HSTS', async () => {
    const base = { routes: [echoRoute()], tls: false as const };
    for (const host of ['0.0.0.0', '::', '192.168.1.10', 'gw.example.com', '127.0.0.1.nip.io']) {
      assert.throws(
        () => parseConfig({ ...base, listen: { host, port: 0 } }),
        (err: unknown) => err instanceof ConfigError && err.issues.some((i) => i.startsWith('tls: ')),
        host,
      );
    }
    for (const host of ['127.0.0.1', 'localhost', '::1']) parseConfig({ ...base, listen: { host, port: 0 } });

    // Plaintext on loopback is a deliberate dev/sidecar mode (the schema allows it only there), so
    // it does upgrade; threats.md's "never 101 on plaintext" holds for every non-loopback bind.
    const plain = await startGateway({ tls: false });
    try {
      assert.match(plain.url, /^ws:\/\/127\.0\.0\.1:\d+$/);
      const accepted = await plainExchange(plain.port, HS(), 500);
      const res101 = parseHead(accepted.data);
      assert.equal(res101.status, 101);
      const refused = await plainExchange(plain.port, HS({ Origin: 'https://evil.test' }));
      const res403 = parseHead(refused.data);
      assert.equal(res403.status, 403);
      assert.equal(JSON.parse(res403.body).code, 'ORIGIN_NOT_ALLOWED');
      const page = await plainExchange(plain.port, 'GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n');
      const res426 = parseHead(page.data);
      assert.equal(res426.status, 426);
      for (const [label, res] of [
        ['101', res101],
        ['403', res403],
        ['426', res426],
      ] as const) {
        assert.equal(
          res.headers['strict-transport-security'],
          undefined,
          `${label} over plaintext carried HSTS`,
        );
      }
    } finally {
      await plain.close();
    }
  });

  it('T-04 (c) sends Strict-Transport-Security (max-age >= 1 year; includeSubDomains) on every HTTPS response', async () => {
    const cases: { label: string; request: string; status: number; code?: string }[] = [
      { label: '101', request: HS(), status: 101 },
      {
        label: 'bad origin',
        request: HS({ Origin: 'https://evil.test' }),
        status: 403,
        code: 'ORIGIN_NOT_ALLOWED',
      },
      { label: 'bad key', request: HS({ 'Sec-WebSocket-Key': 'abc' }), status: 400, code: 'BAD_KEY' },
      {
        label: 'bad version',
        request: HS({ 'Sec-WebSocket-Version': '8' }),
        status: 426,
        code: 'UNSUPPORTED_VERSION',
      },
      { label: 'unknown route', request: HS({}, { path: '/nope' }), status: 404, code: 'ROUTE_NOT_FOUND' },
      {
        label: 'POST upgrade',
        request: HS({ 'Content-Length': '0' }, { method: 'POST' }),
        status: 405,
        code: 'METHOD_NOT_ALLOWED',
      },
      // Over maxHeaderBytes (16 KiB): refused by Node's parser, answered from clientError.
      {
        label: 'header overflow',
        request: HS({ 'X-Big': 'a'.repeat(20_000) }),
        status: 431,
        code: 'HEADERS_TOO_LARGE',
      },
      {
        label: 'plain GET on a route',
        request: 'GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n',
        status: 426,
        code: 'UPGRADE_REQUIRED',
      },
      {
        label: 'plain GET elsewhere',
        request: 'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n',
        status: 404,
        code: 'ROUTE_NOT_FOUND',
      },
    ];
    for (const c of cases) {
      const client = await RawClient.connect(gw.port, gw.ca);
      try {
        client.write(c.request);
        const res = await client.readResponse();
        assert.equal(res.status, c.status, `${c.label}: ${res.raw}`);
        if (c.code) assert.equal(JSON.parse(res.body).code, c.code, c.label);
        assertHsts(res.headers['strict-transport-security'], c.label);
      } finally {
        client.destroy();
      }
    }
    await canary(gw);
  });
});
