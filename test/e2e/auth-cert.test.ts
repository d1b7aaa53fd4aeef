import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import { type Issued, issueCertificate } from '../../src/pki/index.js';
import { clientCertificateOf } from '../../src/server/auth/cert.js';
import { createMtlsAuthenticator } from '../../src/server/auth/mtls.js';
import type { ClientCertificate } from '../../src/server/auth/types.js';
import { type TestPki, testPki } from '../helpers/pki.js';

// A TLS server that asks for a client certificate, accepts unverified ones too (so the test can
// see what `authorized: false` yields), and hands each connection to clientCertificateOf.
describe('clientCertificateOf over a real TLS connection', () => {
  let pki: TestPki;
  let server: Server;
  let port: number;
  let rich: Issued;
  const seen: (ClientCertificate | null)[] = [];

  before(async () => {
    pki = await testPki();
    rich = await issueCertificate(pki.ca, {
      kind: 'client',
      commonName: 'device-7',
      dns: ['d7.devices.example', 'a, DNS:evil.example'],
      uri: ['spiffe://corp.example/ns/prod/sa/d7'],
      email: ['ops@corp.example'],
      ip: ['10.0.0.7'],
    });
    server = createServer({
      cert: pki.server.certPem,
      key: pki.server.keyPem,
      ca: pki.ca.certPem,
      requestCert: true,
      rejectUnauthorized: false,
    });
    server.on('secureConnection', (socket: TLSSocket) => {
      seen.push(clientCertificateOf(socket.getPeerCertificate(), socket.authorized));
      socket.end('done');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(() => server.close());

  async function present(client?: Issued): Promise<ClientCertificate | null> {
    const before = seen.length;
    const socket = connect({
      host: '127.0.0.1',
      port,
      ca: pki.ca.certPem,
      servername: 'localhost',
      ...(client ? { cert: client.certPem, key: client.keyPem } : {}),
    });
    socket.on('error', () => {});
    socket.resume();
    await new Promise((resolve) => socket.on('close', resolve));
    assert.equal(seen.length, before + 1);
    return seen[before] ?? null;
  }

  it('reads CN, fingerprints and notAfter of the test client certificate', async () => {
    const cert = await present(pki.client);
    const x509 = new X509Certificate(pki.client.certPem);
    assert.equal(cert?.subjectCN, 'device-1');
    assert.equal(cert?.fingerprint256, pki.client.fingerprint256);
    assert.equal(cert?.x5tS256, Buffer.from(pki.client.fingerprint256, 'hex').toString('base64url'));
    assert.equal(cert?.notAfter, Date.parse(x509.validTo));
    assert.deepEqual([cert?.dnsNames, cert?.uris, cert?.emails], [[], [], []]);
  });

  it('reads every SAN type, and a comma inside a DNS name stays inside that name', async () => {
    const cert = await present(rich);
    assert.deepEqual(cert?.dnsNames, ['d7.devices.example', 'a, DNS:evil.example']);
    assert.deepEqual(cert?.uris, ['spiffe://corp.example/ns/prod/sa/d7']);
    assert.deepEqual(cert?.emails, ['ops@corp.example']);
  });

  it('gives null for a certificate from an untrusted CA and for no certificate', async () => {
    assert.equal(await present(pki.clientFromOtherCa), null);
    assert.equal(await present(), null);
  });

  it('T-08 feeds the mTLS authenticator: allowed CN passes, another CN is forbidden', async () => {
    const devices = createMtlsAuthenticator('devices', {
      type: 'mtls',
      identityFrom: 'cn',
      allow: ['device-1'],
    });
    const base = {
      headers: new Map(),
      query: '',
      routePath: '/d',
      routeKey: '* /d',
      allowQueryToken: false,
      remote: '127.0.0.1',
    };
    const good = await devices.authenticate({
      ...base,
      clientCert: await present(pki.client),
      now: Date.now(),
    });
    assert.equal(good.kind === 'ok' && good.principal.certFingerprint, pki.client.fingerprint256);
    const other = await devices.authenticate({ ...base, clientCert: await present(rich), now: Date.now() });
    assert.deepEqual(other, { kind: 'fail', code: 'FORBIDDEN', reason: 'subject_not_allowed' });
  });
});
