// The gateway's lifecycle through the library API, in process: certificate rotation (file watcher
// and reload()), graceful shutdown with its drain deadline, listen/address, and route reloads.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import type WebSocket from 'ws';
import type { Issued } from '../../src/pki/index.js';
import { issueCertificate } from '../../src/pki/index.js';
import {
  canary,
  closed,
  echoRoute,
  nextMessage,
  openClient,
  startGateway,
  type TestGateway,
} from '../helpers/gateway.js';
import { testPki } from '../helpers/pki.js';
import { HS, RawClient, upgraded } from '../helpers/raw.js';

const gateways: TestGateway[] = [];
const raws: RawClient[] = [];

after(async () => {
  for (const raw of raws) raw.destroy();
  await Promise.all(gateways.map((gw) => gw.close()));
});

async function start(...args: Parameters<typeof startGateway>): Promise<TestGateway> {
  const gw = await startGateway(...args);
  gateways.push(gw);
  return gw;
}

function track(raw: RawClient): RawClient {
  raws.push(raw);
  return raw;
}

/** SHA-256 of the certificate a fresh TLS connection is served, lowercase hex like Issued.fingerprint256. */
function servedFingerprint(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.destroy();
      resolve(fingerprint.replaceAll(':', '').toLowerCase());
    });
    socket.once('error', reject);
  });
}

/** Polls `check` until it holds or `timeoutMs` passes; returns whether it held. */
async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Replaces a file the way rotation tools do: write a temp name, then rename over the original. */
function replaceAtomically(path: string, text: string, mode = 0o644): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode });
  renameSync(tmp, path);
}

function rotate(files: { cert: string; key: string }, next: Issued): void {
  replaceAtomically(files.key, next.keyPem, 0o600);
  replaceAtomically(files.cert, next.certPem);
}

async function echoes(ws: WebSocket, text: string): Promise<void> {
  const reply = nextMessage(ws);
  ws.send(text);
  assert.equal((await reply).data.toString(), text);
}

function newServerCert(ca: Issued): Promise<Issued> {
  return issueCertificate(ca, {
    kind: 'server',
    commonName: 'localhost',
    dns: ['localhost'],
    ip: ['127.0.0.1'],
  });
}

describe('certificate hot reload', () => {
  let gw: TestGateway;
  let files: { cert: string; key: string };
  let ca: Issued;
  let current: Issued;

  before(async () => {
    const pki = await testPki();
    ca = pki.ca;
    current = pki.server;
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-rotate-'));
    files = { cert: join(dir, 'server.crt'), key: join(dir, 'server.key') };
    writeFileSync(files.cert, current.certPem);
    writeFileSync(files.key, current.keyPem, { mode: 0o600 });
    gw = await start({ tls: { cert: files.cert, key: files.key } });
    assert.equal(await servedFingerprint(gw.port, gw.ca), current.fingerprint256);
  });

  it('serves an atomically replaced certificate to new connections within 2 s; open ones keep echoing', async () => {
    const ws = await openClient(gw);
    const next = await newServerCert(ca);
    rotate(files, next);
    const seen = await eventually(
      async () => (await servedFingerprint(gw.port, gw.ca)) === next.fingerprint256,
      2_000,
    );
    assert.ok(seen, 'the new certificate was not served within 2 s');
    current = next;
    await echoes(ws, 'after rotation');
    assert.ok(
      gw.logs.some((l) => l.event === 'certificates' && l.outcome === 'reloaded' && l.reason === 'watch'),
    );
    ws.close(1000);
    await closed(ws);
  });

  it('keeps the previous certificate when a half-written file appears, and logs a warning', async () => {
    const next = await newServerCert(ca);
    const failedBefore = gw.logs.filter((l) => l.event === 'certificates' && l.outcome === 'failed').length;
    // Not atomic on purpose: the watcher sees a truncated PEM next to a key that does not match it.
    writeFileSync(files.cert, next.certPem.slice(0, Math.floor(next.certPem.length / 2)));
    const failed = await eventually(
      () => gw.logs.filter((l) => l.event === 'certificates' && l.outcome === 'failed').length > failedBefore,
      2_000,
    );
    assert.ok(failed, 'no certificates/failed log line within 2 s');
    const line = gw.logs.filter((l) => l.event === 'certificates' && l.outcome === 'failed').at(-1);
    assert.equal(line?.level, 'warn');
    assert.equal(line?.reason, 'watch');
    assert.equal(await servedFingerprint(gw.port, gw.ca), current.fingerprint256);
    await canary(gw);
  });

  it('gateway.reload() (the SIGHUP path) re-reads the files at once', async () => {
    const next = await newServerCert(ca);
    const ws = await openClient(gw);
    rotate(files, next);
    // Synchronously after the writes, before the watcher's debounce can fire: only reload() applies them.
    await gw.gateway.reload();
    assert.equal(await servedFingerprint(gw.port, gw.ca), next.fingerprint256);
    assert.ok(
      gw.logs.some((l) => l.event === 'certificates' && l.outcome === 'reloaded' && l.reason === 'reload'),
    );
    current = next;
    await echoes(ws, 'after reload');
    ws.close(1000);
    await closed(ws);
  });
});

describe('certificate hot reload from a Kubernetes secret volume', () => {
  it('follows the ..data symlink swap the kubelet makes when a secret changes', async () => {
    const pki = await testPki();
    // The kubelet's layout: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>/, swapped by rename.
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-secret-'));
    const version = (name: string, issued: Issued) => {
      mkdirSync(join(dir, name));
      writeFileSync(join(dir, name, 'tls.crt'), issued.certPem);
      writeFileSync(join(dir, name, 'tls.key'), issued.keyPem, { mode: 0o600 });
    };
    version('..v1', pki.server);
    symlinkSync('..v1', join(dir, '..data'));
    symlinkSync('..data/tls.crt', join(dir, 'tls.crt'));
    symlinkSync('..data/tls.key', join(dir, 'tls.key'));
    const gw = await start({ tls: { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') } });
    assert.equal(await servedFingerprint(gw.port, gw.ca), pki.server.fingerprint256);

    const next = await newServerCert(pki.ca);
    version('..v2', next);
    symlinkSync('..v2', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    const seen = await eventually(
      async () => (await servedFingerprint(gw.port, gw.ca)) === next.fingerprint256,
      2_000,
    );
    assert.ok(seen, 'the rotated secret was not served within 2 s');
  });
});

describe('graceful shutdown', () => {
  it('close() sends 1001 SHUTTING_DOWN to every client and resolves once they have left', async () => {
    const gw = await start();
    const clients = await Promise.all([openClient(gw), openClient(gw), openClient(gw)]);
    assert.equal(gw.gateway.connectionCount(), 3);
    const closes = clients.map((ws) => closed(ws));
    const startedAt = Date.now();
    await gw.gateway.close({ drainTimeoutMs: 1_000 });
    const tookMs = Date.now() - startedAt;
    for (const c of await Promise.all(closes)) assert.deepEqual(c, { code: 1001, reason: 'SHUTTING_DOWN' });
    assert.equal(gw.gateway.connectionCount(), 0);
    assert.equal(gw.gateway.stats.closedByCode.SHUTTING_DOWN, 3);
    // Cooperating clients answer the close at once: close() does not sit out the deadline.
    assert.ok(tookMs < 1_000, `close() took ${tookMs} ms`);
    assert.equal(gw.gateway.address(), null);
  });

  it('during the drain: 503 SHUTTING_DOWN for a request already on the wire, refused connects, a silent peer cut at the deadline', async () => {
    const gw = await start();
    const drainTimeoutMs = 1_000;
    const silent = track(await upgraded(gw.port, gw.ca));
    // A request whose first bytes are in before close(): the connection is busy, not idle, so it stays.
    const request = HS();
    const inFlight = track(await RawClient.connect(gw.port, gw.ca));
    inFlight.write(request.slice(0, 24));
    // A TLS connection that has sent nothing yet: idle, so close() ends it without an answer.
    const idle = track(await RawClient.connect(gw.port, gw.ca));
    await new Promise((r) => setTimeout(r, 100)); // let the server parse the partial request line

    const startedAt = Date.now();
    const closing = gw.gateway.close({ drainTimeoutMs });

    const frame = await silent.readClose();
    assert.deepEqual([frame.code, frame.reason], [1001, 'SHUTTING_DOWN']);

    inFlight.write(request.slice(24));
    const res = await inFlight.readResponse();
    assert.equal(res.status, 503);
    assert.equal((JSON.parse(res.body) as { code: string }).code, 'SHUTTING_DOWN');
    assert.equal(res.headers['retry-after'], '1');

    await assert.rejects(RawClient.connect(gw.port, gw.ca), { code: 'ECONNREFUSED' });

    await idle.waitClosed();
    assert.equal(idle.pending().length, 0);

    // The silent peer never answers the close: it is cut when the drain deadline passes.
    await silent.waitClosed(drainTimeoutMs + 1_000);
    const cutAfterMs = Date.now() - startedAt;
    assert.ok(cutAfterMs >= drainTimeoutMs - 100, `cut after ${cutAfterMs} ms, before the deadline`);
    await closing;
    const tookMs = Date.now() - startedAt;
    assert.ok(tookMs < drainTimeoutMs + 1_000, `close() took ${tookMs} ms`);
    assert.equal(gw.gateway.connectionCount(), 0);
  });
});

describe('listen, address and reload', () => {
  it('address() reports the bound port and a second listen() rejects', async () => {
    const gw = await start();
    const address = gw.gateway.address();
    assert.equal(address?.address, '127.0.0.1');
    assert.equal(address?.port, gw.port);
    assert.ok(gw.port > 0);
    await assert.rejects(gw.gateway.listen());
    assert.equal(gw.gateway.address()?.port, gw.port);
    await canary(gw);
  });

  it('reload() with new routes keeps open connections on their route and serves the new one', async () => {
    const gw = await start();
    const ws = await openClient(gw, '/echo');
    await echoes(ws, 'before reload');

    await gw.gateway.reload({ ...gw.gateway.config, routes: [echoRoute({ path: '/echo2' })] });
    assert.deepEqual(
      gw.gateway.config.routes.map((r) => r.path),
      ['/echo2'],
    );
    assert.equal(gw.logs.filter((l) => l.event === 'reload' && l.key !== undefined).length, 0);

    await echoes(ws, 'admitted under the old config');
    const fresh = await openClient(gw, '/echo2');
    await echoes(fresh, 'new route');

    const gone = track(await RawClient.connect(gw.port, gw.ca));
    gone.write(HS({}, { path: '/echo' }));
    const res = await gone.readResponse();
    assert.equal(res.status, 404);
    assert.equal((JSON.parse(res.body) as { code: string }).code, 'ROUTE_NOT_FOUND');
    assert.equal(gw.gateway.connectionCount(), 2);
  });

  it('reload() keeps the running log settings and names the key that needs a restart', async () => {
    const gw = await start();
    const running = gw.gateway.config.log;
    await gw.gateway.reload({ ...gw.gateway.config, log: { ...running, bufferBytes: 0, level: 'debug' } });
    assert.deepEqual(gw.gateway.config.log, running);
    assert.ok(gw.logs.some((l) => l.event === 'reload' && l.key === 'log' && l.level === 'warn'));
    assert.ok(!gw.logs.some((l) => l.event === 'reload' && l.key === 'listen'));
    await canary(gw);
  });
});
