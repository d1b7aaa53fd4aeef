// Mutual TLS rows: certificates are checked before any HTTP byte is parsed, on every path, with
// the reason in the log; a CRL update or a certificate's expiry closes live connections.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import WebSocket from 'ws';
import { createCrl, type Issued, issueCertificate } from '../../src/pki/index.js';
import {
  canary,
  certFiles,
  closed,
  echoRoute,
  nextMessage,
  startGateway,
  type TestGateway,
} from '../helpers/gateway.js';
import { testPki } from '../helpers/pki.js';
import { HS } from '../helpers/raw.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Opens a TLS connection with a client certificate, writes `data`, and collects what comes back. */
function rawWithCert(
  port: number,
  ca: string,
  cert: Issued | undefined,
  data: string,
  maxVersion: tls.SecureVersion = 'TLSv1.3',
): Promise<{ bytes: number; error: string | undefined }> {
  return new Promise((resolve) => {
    let bytes = 0;
    let error: string | undefined;
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      ca,
      servername: 'localhost',
      maxVersion,
      ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}),
    });
    socket.on('secureConnect', () => socket.write(data));
    socket.on('data', (d: Buffer) => {
      bytes += d.length;
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error = err.code ?? err.message;
    });
    socket.on('close', () => resolve({ bytes, error }));
    setTimeout(() => socket.destroy(), 3_000).unref();
  });
}

function mtlsClient(gw: TestGateway, cert: Issued, path = '/devices'): Promise<WebSocket> {
  const ws = new WebSocket(`wss://localhost:${gw.port}${path}`, {
    ca: gw.ca,
    cert: cert.certPem,
    key: cert.keyPem,
  });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`status ${res.statusCode}`)));
  });
}

describe('mutual TLS', () => {
  let gw: TestGateway;
  let crlPath: string;
  let client: Issued;
  let shortLived: Issued;
  let other: Issued;

  before(async () => {
    const pki = await testPki();
    const files = await certFiles();
    crlPath = join(files.dir, 'ca.crl');
    writeFileSync(crlPath, pki.crl);
    [client, other] = await Promise.all([
      issueCertificate(pki.ca, { kind: 'client', commonName: 'device-7' }),
      issueCertificate(pki.ca, { kind: 'client', commonName: 'laptop-1' }),
    ]);
    gw = await startGateway({
      tls: { cert: files.cert, key: files.key, clientAuth: 'optional', clientCa: files.ca, crl: crlPath },
      authenticators: { devices: { type: 'mtls', identityFrom: 'cn', allow: ['device-*'] } },
      routes: [echoRoute(), echoRoute({ path: '/devices', auth: ['devices'], allowMissingOrigin: true })],
      log: { level: 'info' },
    });
  });
  after(() => gw.close());

  it('accepts a device certificate and records its identity and fingerprint', async () => {
    const ws = await mtlsClient(gw, client);
    const reply = nextMessage(ws);
    ws.send('hi');
    assert.equal((await reply).data.toString(), 'hi');
    const accepted = gw.logs.filter(
      (l) => l.event === 'handshake' && l.outcome === 'accepted' && l.route === '/devices',
    );
    const last = accepted.at(-1) as { identity: string; tls: { clientCert: string } };
    assert.equal(last.identity, 'device-7');
    assert.equal(last.tls.clientCert, client.fingerprint256);
    ws.close(1000);
    await closed(ws);
  });

  it('T-05 a route that requires a certificate refuses a client without one with 401, before the 101', async () => {
    const ws = new WebSocket(`wss://localhost:${gw.port}/devices`, { ca: gw.ca });
    const status = await new Promise<number>((resolve) => {
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('open', () => resolve(101));
    });
    assert.equal(status, 401);
    await canary(gw);
  });

  it('T-06 refuses wrong-CA, expired, revoked and serverAuth-only certificates with no HTTP bytes, reason logged', async () => {
    const pki = await testPki();
    const cases: [string, Issued, string][] = [
      ['other CA', pki.clientFromOtherCa, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'],
      ['expired', pki.expiredClient, 'CERT_HAS_EXPIRED'],
      ['revoked', pki.revokedClient, 'CERT_REVOKED'],
      ['wrong EKU', pki.serverOnlyEkuClient, 'INVALID_PURPOSE'],
    ];
    for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
      for (const [label, cert, reason] of cases) {
        const mark = gw.logs.length;
        const result = await rawWithCert(gw.port, gw.ca, cert, HS({}, { path: '/devices' }), version);
        assert.equal(result.bytes, 0, `${label} ${version}`);
        await sleep(20);
        const line = gw.logs.slice(mark).find((l) => l.event === 'tls' && l.outcome === 'rejected');
        assert.equal(line?.reason, reason, `${label} ${version}`);
        assert.equal(typeof line?.subject, 'string', `${label} ${version}`);
      }
    }
    await canary(gw);
  });

  it('T-07 a bad certificate gets 0 bytes on every path: upgrade, plain GET, POST, and pipelined requests', async () => {
    const pki = await testPki();
    const requests = [
      HS({}, { path: '/echo' }),
      'GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n',
      'POST /poll HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n',
      'GET /health HTTP/1.1\r\nHost: localhost\r\n\r\nGET /health HTTP/1.1\r\nHost: localhost\r\n\r\n',
      'POST /.portcullis/ticket?route=/devices HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n',
    ];
    const before = gw.gateway.stats.handshakesAccepted + gw.gateway.stats.handshakesRejected;
    for (const request of requests) {
      const result = await rawWithCert(gw.port, gw.ca, pki.expiredClient, request);
      assert.equal(result.bytes, 0, request.split('\r\n')[0]);
    }
    // No route handler ran: neither the upgrade path nor the request path counted anything.
    assert.equal(gw.gateway.stats.handshakesAccepted + gw.gateway.stats.handshakesRejected, before);
    await canary(gw);
  });

  it('T-08 a valid certificate whose subject the route does not allow gets 403 before the 101', async () => {
    const ws = new WebSocket(`wss://localhost:${gw.port}/devices`, {
      ca: gw.ca,
      cert: other.certPem,
      key: other.keyPem,
    });
    const status = await new Promise<number>((resolve) => {
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('open', () => resolve(101));
    });
    assert.equal(status, 403);
    const line = gw.logs.filter((l) => l.event === 'handshake' && l.outcome === 'rejected').at(-1);
    assert.equal(line?.code, 'FORBIDDEN');
    assert.equal(line?.reason, 'subject_not_allowed');
    await canary(gw);
  });

  it('closes a live connection with CERTIFICATE_REVOKED within a second of a CRL update', async () => {
    const pki = await testPki();
    const victim = await mtlsClient(gw, client);
    const bystander = await mtlsClient(
      gw,
      await issueCertificate(pki.ca, { kind: 'client', commonName: 'device-8' }),
    );
    const started = Date.now();
    const updated = await createCrl(pki.ca, [
      { serial: pki.revokedClient.serial },
      { serial: client.serial },
    ]);
    writeFileSync(`${crlPath}.tmp`, updated);
    const { renameSync } = await import('node:fs');
    renameSync(`${crlPath}.tmp`, crlPath);
    const result = await closed(victim);
    assert.equal(result.code, 4403);
    assert.equal(result.reason, 'CERTIFICATE_REVOKED');
    assert.ok(Date.now() - started < 1_500, `closed after ${Date.now() - started} ms`);
    // The other device is untouched, and the revoked one cannot come back.
    const reply = nextMessage(bystander);
    bystander.send('still here');
    assert.equal((await reply).data.toString(), 'still here');
    await assert.rejects(mtlsClient(gw, client));
    bystander.close(1000);
    await closed(bystander);
  });

  it('closes a connection when its client certificate expires (CREDENTIAL_EXPIRED, retry after refresh)', async () => {
    // Issued here, not in before(): under load the suite may take longer than its short life.
    const pki = await testPki();
    shortLived = await issueCertificate(pki.ca, {
      kind: 'client',
      commonName: 'device-short',
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 2_500),
    });
    const ws = await mtlsClient(gw, shortLived);
    const result = await closed(ws);
    assert.equal(result.code, 4401);
    assert.equal(result.reason, 'CREDENTIAL_EXPIRED');
  });
});

describe('a stale CRL fails closed', () => {
  let gw: TestGateway;
  before(async () => {
    const pki = await testPki();
    const files = await certFiles();
    const crl = join(files.dir, 'stale.crl');
    writeFileSync(crl, pki.staleCrl);
    gw = await startGateway({
      tls: { cert: files.cert, key: files.key, clientAuth: 'required', clientCa: files.ca, crl },
      routes: [echoRoute({ allowMissingOrigin: true })],
    });
  });
  after(() => gw.close());

  it('T-06 refuses a good client certificate when the CRL is past its nextUpdate', async () => {
    const pki = await testPki();
    const mark = gw.logs.length;
    const result = await rawWithCert(gw.port, gw.ca, pki.client, HS());
    assert.equal(result.bytes, 0);
    await sleep(20);
    const line = gw.logs.slice(mark).find((l) => l.event === 'tls');
    assert.equal(line?.reason, 'CRL_HAS_EXPIRED');
  });

  it('T-05 refuses a client with no certificate when clientAuth is required, with no HTTP bytes', async () => {
    const mark = gw.logs.length;
    const result = await rawWithCert(gw.port, gw.ca, undefined, HS());
    assert.equal(result.bytes, 0);
    await sleep(20);
    const line = gw.logs.slice(mark).find((l) => l.event === 'tls');
    assert.equal(line?.reason, 'NO_CLIENT_CERTIFICATE');
  });
});
