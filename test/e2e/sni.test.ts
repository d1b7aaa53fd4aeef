// Several server certificates chosen by SNI, and the server-certificate expiry warning and figure.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { type Issued, issueCertificate } from '../../src/pki/index.js';
import { certFiles, startGateway, type TestGateway } from '../helpers/gateway.js';
import { testPki } from '../helpers/pki.js';

function servedFingerprint(port: number, ca: string, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername }, () => {
      const fp = socket.getPeerCertificate().fingerprint256.replaceAll(':', '').toLowerCase();
      socket.destroy();
      resolve(fp);
    });
    socket.once('error', reject);
  });
}

describe('server certificates by SNI', () => {
  let gw: TestGateway;
  let chat: Issued;
  let wild: Issued;
  let soon: Issued;

  before(async () => {
    const pki = await testPki();
    const files = await certFiles();
    [chat, wild, soon] = await Promise.all([
      issueCertificate(pki.ca, { kind: 'server', commonName: 'chat.test', dns: ['chat.test'] }),
      issueCertificate(pki.ca, { kind: 'server', commonName: '*.apps.test', dns: ['*.apps.test'] }),
      issueCertificate(pki.ca, {
        kind: 'server',
        commonName: 'soon.test',
        dns: ['soon.test'],
        notAfter: new Date(Date.now() + 10 * 86_400_000),
      }),
    ]);
    const write = (name: string, issued: Issued) => {
      writeFileSync(join(files.dir, `${name}.crt`), issued.certPem);
      writeFileSync(join(files.dir, `${name}.key`), issued.keyPem, { mode: 0o600 });
      return { cert: join(files.dir, `${name}.crt`), key: join(files.dir, `${name}.key`) };
    };
    gw = await startGateway({
      tls: {
        cert: files.cert,
        key: files.key,
        sni: [
          { servername: 'chat.test', ...write('chat', chat) },
          { servername: '*.apps.test', ...write('wild', wild) },
          { servername: 'soon.test', ...write('soon', soon) },
        ],
      },
    });
  });
  after(() => gw.close());

  it('serves the certificate configured for the SNI name, and the default for any other name', async () => {
    const pki = await testPki();
    assert.equal(await servedFingerprint(gw.port, gw.ca, 'chat.test'), chat.fingerprint256);
    assert.equal(await servedFingerprint(gw.port, gw.ca, 'CHAT.test'), chat.fingerprint256);
    assert.equal(await servedFingerprint(gw.port, gw.ca, 'a.apps.test'), wild.fingerprint256);
    assert.equal(await servedFingerprint(gw.port, gw.ca, 'localhost'), pki.server.fingerprint256);
    // A wildcard covers one label only, as in certificates.
    await assert.rejects(servedFingerprint(gw.port, gw.ca, 'a.b.apps.test'));
  });

  it('warns about a server certificate close to expiry and exposes the earliest expiry', () => {
    const warning = gw.logs.find((l) => l.event === 'certificates' && l.outcome === 'expiring');
    assert.ok(warning, 'an expiring warning was logged');
    assert.ok((warning.daysLeft as number) <= 10);
    const notAfter = Date.parse(new X509Certificate(soon.certPem).validTo);
    assert.equal(gw.gateway.stats.serverCertificateNotAfter, notAfter);
  });
});
