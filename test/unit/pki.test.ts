// src/pki: certificate fields, real node:tls handshakes (TLS, mTLS, CRL), SPKI pins, dev
// certificates, and openssl as an independent second opinion when it is on PATH.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import {
  createCa,
  createCrl,
  DEV_CA_NAME,
  ensureDevCertificates,
  type Issued,
  issueCertificate,
  type KeyType,
  normalizeSerial,
  spkiPin,
  spkiPinsOfChain,
  x509,
} from '../../src/pki/index.js';
import { type TestPki, testPki } from '../helpers/pki.js';

const DAY_MS = 24 * 60 * 60 * 1000;
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

let pki: TestPki;
before(async () => {
  pki = await testPki();
});

const cert = (issued: Issued | string) =>
  new X509Certificate(typeof issued === 'string' ? issued : issued.certPem);
const parsed = (issued: Issued) => new x509.X509Certificate(issued.certPem);
const hex = (fp: string) => fp.replace(/:/g, '').toLowerCase();

interface Outcome {
  /** What the server saw, or undefined when it dropped the connection before 'secureConnection'. */
  server: { authorized: boolean; authorizationError: string | undefined; peerCn: unknown } | undefined;
  clientAuthorized: boolean;
  peer: tls.PeerCertificate | undefined;
  received: string;
}

// One real handshake on 127.0.0.1, port 0. The server answers 'welcome' once the handshake is
// accepted, so `received` shows whether application data ever flowed.
async function handshake(serverOpts: tls.TlsOptions, clientOpts: tls.ConnectionOptions): Promise<Outcome> {
  let server: Outcome['server'];
  const srv = tls.createServer(serverOpts, (socket) => {
    server = {
      authorized: socket.authorized,
      authorizationError: socket.authorizationError?.toString(),
      peerCn: socket.getPeerCertificate().subject?.CN,
    };
    socket.end('welcome');
  });
  srv.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  try {
    return await new Promise<Outcome>((resolve) => {
      let received = '';
      let peer: tls.PeerCertificate | undefined;
      let clientAuthorized = false;
      const socket = tls.connect({ host: '127.0.0.1', port, ...clientOpts }, () => {
        peer = socket.getPeerCertificate();
        clientAuthorized = socket.authorized;
      });
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => {
        received += chunk;
      });
      // A refused client sees a reset or an alert; the outcome is read from `server`/`received`.
      socket.on('error', () => {});
      socket.on('close', () => resolve({ server, clientAuthorized, peer, received }));
    });
  } finally {
    await new Promise((resolve) => srv.close(resolve));
  }
}

function serverTls(p: TestPki, extra: tls.TlsOptions = {}): tls.TlsOptions {
  return { cert: p.server.certPem, key: p.server.keyPem, ...extra };
}

function mtlsServer(p: TestPki, rejectUnauthorized: boolean, crl?: string): tls.TlsOptions {
  return serverTls(p, {
    ca: p.ca.certPem,
    requestCert: true,
    rejectUnauthorized,
    ...(crl === undefined ? {} : { crl }),
  });
}

function asClient(p: TestPki, client: Issued): tls.ConnectionOptions {
  return { ca: p.ca.certPem, servername: 'localhost', cert: client.certPem, key: client.keyPem };
}

describe('pki: certificate fields', () => {
  it('createCa makes a self-signed CA: CA:true and keyCertSign + cRLSign, both critical, with an SKI', () => {
    const ca = cert(pki.ca);
    assert.equal(ca.ca, true);
    assert.ok(ca.checkIssued(ca) && ca.verify(ca.publicKey));
    const p = parsed(pki.ca);
    const bc = p.getExtension(x509.BasicConstraintsExtension);
    assert.equal(bc?.ca, true);
    assert.equal(bc?.critical, true);
    const ku = p.getExtension(x509.KeyUsagesExtension);
    assert.equal(ku?.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    assert.equal(ku?.critical, true);
    assert.match(p.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId ?? '', /^[0-9a-f]{40}$/);
    assert.equal(ca.subject, 'CN=Portcullis Test CA');
  });

  it('a server certificate has its SANs, CA:false, EKU serverAuth and keyUsage digitalSignature', () => {
    const server = cert(pki.server);
    assert.equal(
      server.subjectAltName,
      'DNS:localhost, DNS:gw.test, DNS:app.test, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
    );
    assert.equal(server.ca, false);
    assert.deepEqual(server.keyUsage, [SERVER_AUTH]);
    const p = parsed(pki.server);
    assert.equal(p.getExtension(x509.KeyUsagesExtension)?.usages, x509.KeyUsageFlags.digitalSignature);
    assert.equal(p.getExtension(x509.BasicConstraintsExtension)?.critical, true);
    assert.ok(server.checkIssued(cert(pki.ca)) && server.verify(cert(pki.ca).publicKey));
  });

  it("a server certificate's authorityKeyIdentifier is the CA's subjectKeyIdentifier", () => {
    const ski = parsed(pki.ca).getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
    assert.ok(ski);
    assert.equal(parsed(pki.server).getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId, ski);
  });

  it('a client certificate has CN device-1, EKU clientAuth, no SAN and CA:false', () => {
    const client = cert(pki.client);
    assert.equal(client.subject, 'CN=device-1');
    assert.deepEqual(client.keyUsage, [CLIENT_AUTH]);
    assert.equal(client.subjectAltName, undefined);
    assert.equal(client.ca, false);
  });

  it('extendedKeyUsage overrides the EKU implied by kind', () => {
    assert.deepEqual(cert(pki.serverOnlyEkuClient).keyUsage, [SERVER_AUTH]);
  });

  it('uri and email SANs are written', async () => {
    const issued = await issueCertificate(pki.ca, {
      kind: 'client',
      commonName: 'svc',
      uri: ['spiffe://portcullis.test/svc'],
      email: ['ops@portcullis.test'],
    });
    assert.equal(cert(issued).subjectAltName, 'URI:spiffe://portcullis.test/svc, email:ops@portcullis.test');
  });

  it('validity defaults to about a year, starting a minute back; notBefore/notAfter override it', async () => {
    const now = Date.now();
    const server = cert(pki.server);
    assert.ok(Math.abs(new Date(server.validTo).getTime() - (now + 365 * DAY_MS)) < 5 * 60_000);
    assert.ok(new Date(server.validFrom).getTime() <= now);
    assert.ok(new Date(cert(pki.expiredClient).validTo).getTime() < now);
    const future = await issueCertificate(pki.ca, {
      kind: 'client',
      commonName: 'later',
      notBefore: new Date(now + DAY_MS),
      notAfter: new Date(now + 2 * DAY_MS),
    });
    assert.ok(new Date(cert(future).validFrom).getTime() > now);
  });

  it('serials are 16 random positive bytes, unique, and match the certificate', () => {
    const all = Object.values(pki).filter((v): v is Issued => typeof v !== 'string');
    assert.equal(new Set(all.map((i) => i.serial)).size, all.length);
    for (const issued of all) {
      assert.match(issued.serial, /^[4-7][0-9a-f]{31}$/);
      assert.equal(issued.serial, cert(issued).serialNumber.toLowerCase());
    }
  });

  it('fingerprint256 is the lowercase hex sha256 of the DER', () => {
    const c = cert(pki.server);
    assert.equal(pki.server.fingerprint256, createHash('sha256').update(c.raw).digest('hex'));
    assert.equal(pki.server.fingerprint256, hex(c.fingerprint256));
  });

  it('rejects an ip SAN that is not an IP address and a notAfter before notBefore', async () => {
    await assert.rejects(
      issueCertificate(pki.ca, { kind: 'server', commonName: 'x', ip: ['localhost'] }),
      TypeError,
    );
    const now = Date.now();
    await assert.rejects(
      issueCertificate(pki.ca, {
        kind: 'client',
        commonName: 'x',
        notBefore: new Date(now),
        notAfter: new Date(now - 1),
      }),
      RangeError,
    );
  });

  const keyTypes: { keyType: KeyType; asymmetricKeyType: string; usages: number }[] = [
    { keyType: 'p256', asymmetricKeyType: 'ec', usages: x509.KeyUsageFlags.digitalSignature },
    {
      keyType: 'rsa3072',
      asymmetricKeyType: 'rsa',
      usages: x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
    },
    { keyType: 'ed25519', asymmetricKeyType: 'ed25519', usages: x509.KeyUsageFlags.digitalSignature },
  ];
  for (const { keyType, asymmetricKeyType, usages } of keyTypes) {
    it(`keyType ${keyType}: CA and server certificate load in node:tls and complete a handshake`, async () => {
      const ca = await createCa({ keyType });
      const server = await issueCertificate(ca, {
        kind: 'server',
        commonName: 'localhost',
        dns: ['localhost'],
        keyType,
      });
      const c = cert(server);
      assert.equal(c.publicKey.asymmetricKeyType, asymmetricKeyType);
      assert.equal(cert(ca).publicKey.asymmetricKeyType, asymmetricKeyType);
      if (keyType === 'rsa3072') assert.equal(c.publicKey.asymmetricKeyDetails?.modulusLength, 3072);
      assert.equal(parsed(server).getExtension(x509.KeyUsagesExtension)?.usages, usages);
      const out = await handshake(
        { cert: server.certPem, key: server.keyPem },
        { ca: ca.certPem, servername: 'localhost' },
      );
      assert.equal(out.clientAuthorized, true);
      assert.equal(out.received, 'welcome');
    });
  }
});

describe('pki: CRLs', () => {
  it('createCrl lists the revoked serial, is signed by the CA, and is fresh for 7 days', async () => {
    const crl = new x509.X509Crl(pki.crl);
    assert.ok(await crl.verify({ publicKey: parsed(pki.ca).publicKey }));
    assert.ok(crl.findRevoked(pki.revokedClient.serial));
    assert.equal(crl.findRevoked(pki.client.serial), null);
    assert.equal(crl.issuer, 'CN=Portcullis Test CA');
    const days = ((crl.nextUpdate?.getTime() ?? 0) - crl.thisUpdate.getTime()) / DAY_MS;
    assert.equal(days, 7);
  });

  it('staleCrl has a nextUpdate in the past', () => {
    const crl = new x509.X509Crl(pki.staleCrl);
    assert.ok((crl.nextUpdate?.getTime() ?? Number.POSITIVE_INFINITY) < Date.now());
  });

  it('serials are accepted in any case and with colons, as node and openssl print them', async () => {
    const printed = cert(pki.revokedClient).serialNumber;
    assert.equal(normalizeSerial(printed), pki.revokedClient.serial);
    assert.equal(normalizeSerial('0A:bC'), '0abc');
    assert.equal(normalizeSerial('abc'), '0abc');
    assert.throws(() => normalizeSerial('xyz'), TypeError);
    const crl = await createCrl(pki.ca, [{ serial: printed.match(/../g)!.join(':') }]);
    assert.ok(new x509.X509Crl(crl).findRevoked(pki.revokedClient.serial));
  });

  it('loads into tls.createSecureContext with the CA and server certificate', () => {
    assert.doesNotThrow(() =>
      tls.createSecureContext({
        cert: pki.server.certPem,
        key: pki.server.keyPem,
        ca: pki.ca.certPem,
        crl: pki.crl,
      }),
    );
  });
});

describe('pki: TLS handshakes on 127.0.0.1', { timeout: 30_000 }, () => {
  it('a client trusting the CA completes a handshake, and checkServerIdentity passes for localhost', async () => {
    const out = await handshake(serverTls(pki), { ca: pki.ca.certPem, servername: 'localhost' });
    assert.equal(out.clientAuthorized, true);
    assert.equal(out.received, 'welcome');
    assert.ok(out.peer);
    assert.equal(tls.checkServerIdentity('localhost', out.peer), undefined);
  });

  it('checkServerIdentity accepts every SAN and refuses any other name', async () => {
    const { peer } = await handshake(serverTls(pki), { ca: pki.ca.certPem, servername: 'localhost' });
    assert.ok(peer);
    for (const host of ['localhost', 'gw.test', 'app.test', '127.0.0.1', '::1']) {
      assert.equal(tls.checkServerIdentity(host, peer), undefined, host);
    }
    for (const host of ['evil.test', 'gw.test.evil', '127.0.0.2']) {
      assert.ok(tls.checkServerIdentity(host, peer) instanceof Error, host);
    }
  });

  it('a client that does not trust the CA refuses the server', async () => {
    const out = await handshake(serverTls(pki), { ca: pki.otherCa.certPem, servername: 'localhost' });
    assert.equal(out.clientAuthorized, false);
    assert.equal(out.received, '');
  });

  it('mTLS: a client certificate from the CA is authorized under requestCert + rejectUnauthorized', async () => {
    const out = await handshake(mtlsServer(pki, true), asClient(pki, pki.client));
    assert.equal(out.server?.authorized, true);
    assert.equal(out.server?.peerCn, 'device-1');
    assert.equal(out.received, 'welcome');
  });

  it('mTLS: a good client is still authorized when the CRL is loaded', async () => {
    const out = await handshake(mtlsServer(pki, true, pki.crl), asClient(pki, pki.client));
    assert.equal(out.server?.authorized, true);
    assert.equal(out.received, 'welcome');
  });

  const refusals: { title: string; client: keyof TestPki; crl?: 'crl' | 'staleCrl'; code: string }[] = [
    {
      title: 'a revoked client, with the CRL loaded',
      client: 'revokedClient',
      crl: 'crl',
      code: 'CERT_REVOKED',
    },
    { title: 'an expired client', client: 'expiredClient', code: 'CERT_HAS_EXPIRED' },
    // OpenSSL's code when a lone leaf's issuer is not among the trusted CAs.
    {
      title: 'a client from another CA',
      client: 'clientFromOtherCa',
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    },
    {
      title: 'a client with only the serverAuth EKU',
      client: 'serverOnlyEkuClient',
      code: 'INVALID_PURPOSE',
    },
    {
      title: 'any client, when the CRL is stale',
      client: 'client',
      crl: 'staleCrl',
      code: 'CRL_HAS_EXPIRED',
    },
  ];
  for (const { title, client, crl, code } of refusals) {
    it(`mTLS refuses ${title}: authorizationError ${code}`, async () => {
      const crlPem = crl === undefined ? undefined : pki[crl];
      const issued = pki[client] as Issued;
      // Under rejectUnauthorized the server drops the connection before any application data.
      const strict = await handshake(mtlsServer(pki, true, crlPem), asClient(pki, issued));
      assert.equal(strict.server, undefined);
      assert.equal(strict.received, '');
      // With rejectUnauthorized off the same handshake completes, so the reason can be read.
      const lax = await handshake(mtlsServer(pki, false, crlPem), asClient(pki, issued));
      assert.equal(lax.server?.authorized, false);
      assert.equal(lax.server?.authorizationError, code);
    });
  }
});

describe('pki: SPKI pins', () => {
  it('spkiPin is sha256/ + base64 of the sha256 of the SubjectPublicKeyInfo DER', () => {
    const spki = cert(pki.server).publicKey.export({ type: 'spki', format: 'der' });
    const expected = `sha256/${createHash('sha256').update(spki).digest('base64')}`;
    assert.equal(spkiPin(pki.server.certPem), expected);
    assert.match(expected, /^sha256\/[A-Za-z0-9+/]{43}=$/);
  });

  it('spkiPin of a chain PEM pins the first certificate, and differs per key', () => {
    const chain = pki.server.certPem + pki.ca.certPem;
    assert.equal(spkiPin(chain), spkiPin(pki.server.certPem));
    assert.notEqual(spkiPin(pki.ca.certPem), spkiPin(pki.server.certPem));
  });

  it('spkiPinsOfChain names each certificate leaf, intermediate or root', () => {
    assert.deepEqual(spkiPinsOfChain(pki.server.certPem + pki.ca.certPem), [
      { pin: spkiPin(pki.server.certPem), subject: 'CN=localhost', role: 'leaf' },
      { pin: spkiPin(pki.ca.certPem), subject: 'CN=Portcullis Test CA', role: 'root' },
    ]);
    const roles = spkiPinsOfChain(pki.client.certPem + pki.server.certPem + pki.ca.certPem).map(
      (c) => c.role,
    );
    assert.deepEqual(roles, ['leaf', 'intermediate', 'root']);
  });

  it('throws when the PEM holds no certificate', () => {
    assert.throws(() => spkiPin(pki.server.keyPem), TypeError);
    assert.throws(() => spkiPinsOfChain(''), TypeError);
  });
});

describe('pki: dev certificates', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-pki-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const mode = async (path: string) => (await stat(path)).mode & 0o777;

  it('creates a 0700 dir with ca.crt, ca.key, server.crt and server.key; keys are 0600', async () => {
    const devDir = join(dir, 'a', 'certs');
    const out = await ensureDevCertificates(devDir);
    assert.equal(out.created, true);
    assert.deepEqual(out, {
      caCertPath: join(devDir, 'ca.crt'),
      certPath: join(devDir, 'server.crt'),
      keyPath: join(devDir, 'server.key'),
      created: true,
    });
    assert.equal(await mode(devDir), 0o700);
    assert.equal(await mode(join(devDir, 'ca.key')), 0o600);
    assert.equal(await mode(out.keyPath), 0o600);
  });

  it('the server certificate verifies against the dev CA for 127.0.0.1, ::1 and localhost', async () => {
    const devDir = join(dir, 'b');
    const out = await ensureDevCertificates(devDir);
    const ca = new X509Certificate(await readFile(out.caCertPath));
    const server = new X509Certificate(await readFile(out.certPath));
    assert.equal(ca.subject, `CN=${DEV_CA_NAME}`);
    assert.equal(ca.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.ok(new Date(ca.validTo).getTime() - Date.now() > 3649 * DAY_MS);
    assert.ok(server.checkIssued(ca) && server.verify(ca.publicKey));
    assert.equal(server.checkIP('127.0.0.1'), '127.0.0.1');
    assert.equal(server.checkIP('::1'), '::1');
    assert.equal(server.checkHost('localhost'), 'localhost');
    assert.deepEqual(server.keyUsage, [SERVER_AUTH]);
    assert.ok(new Date(server.validTo).getTime() - Date.now() <= 825 * DAY_MS);
    const outcome = await handshake(
      { cert: await readFile(out.certPath), key: await readFile(out.keyPath) },
      { ca: await readFile(out.caCertPath) },
    );
    assert.equal(outcome.clientAuthorized, true);
    assert.equal(outcome.received, 'welcome');
  });

  it('reuses valid certificates on the next call: created false, same fingerprint', async () => {
    const devDir = join(dir, 'c');
    const first = await ensureDevCertificates(devDir);
    const before = cert(await readFile(first.certPath, 'utf8')).fingerprint256;
    const second = await ensureDevCertificates(devDir);
    assert.equal(second.created, false);
    assert.equal(cert(await readFile(second.certPath, 'utf8')).fingerprint256, before);
  });

  it('re-issues the server certificate within 7 days of expiry or for a new host, keeping the CA', async () => {
    const devDir = join(dir, 'd');
    const first = await ensureDevCertificates(devDir);
    const caBefore = await readFile(first.caCertPath, 'utf8');
    const caKeyBefore = await readFile(join(devDir, 'ca.key'), 'utf8');
    const fp = async () => cert(await readFile(first.certPath, 'utf8')).fingerprint256;
    const initial = await fp();

    const wider = await ensureDevCertificates(devDir, { hosts: ['gw.test'] });
    assert.equal(wider.created, true);
    const widened = await fp();
    assert.notEqual(widened, initial);
    assert.equal(cert(await readFile(first.certPath, 'utf8')).checkHost('gw.test'), 'gw.test');
    assert.equal((await ensureDevCertificates(devDir, { hosts: ['gw.test'] })).created, false);

    const late = await ensureDevCertificates(devDir, { now: new Date(Date.now() + 820 * DAY_MS) });
    assert.equal(late.created, true);
    assert.notEqual(await fp(), widened);

    assert.equal(await readFile(first.caCertPath, 'utf8'), caBefore);
    assert.equal(await readFile(join(devDir, 'ca.key'), 'utf8'), caKeyBefore);
  });

  it('reuses an existing CA key when the server certificate is missing', async () => {
    const devDir = join(dir, 'e');
    const first = await ensureDevCertificates(devDir);
    const caBefore = await readFile(first.caCertPath, 'utf8');
    await unlink(first.certPath);
    const again = await ensureDevCertificates(devDir);
    assert.equal(again.created, true);
    assert.equal(await readFile(first.caCertPath, 'utf8'), caBefore);
    const ca = new X509Certificate(caBefore);
    assert.ok(new X509Certificate(await readFile(first.certPath)).verify(ca.publicKey));
    assert.equal(await mode(first.keyPath), 0o600);
  });

  it('refuses to replace a CA key whose certificate is missing, and leaves the key alone', async () => {
    const devDir = join(dir, 'f');
    const first = await ensureDevCertificates(devDir);
    const caKey = await readFile(join(devDir, 'ca.key'), 'utf8');
    await unlink(first.caCertPath);
    await assert.rejects(ensureDevCertificates(devDir), /ca\.key exists but .*ca\.crt is missing/);
    assert.equal(await readFile(join(devDir, 'ca.key'), 'utf8'), caKey);
  });
});

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

describe('pki: openssl interop', { skip: hasOpenssl ? false : 'openssl is not on PATH' }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-openssl-'));
    await writeFile(join(dir, 'ca.pem'), pki.ca.certPem);
    await writeFile(join(dir, 'server.pem'), pki.server.certPem);
    await writeFile(join(dir, 'client.pem'), pki.client.certPem);
    await writeFile(join(dir, 'revoked.pem'), pki.revokedClient.certPem);
    await writeFile(join(dir, 'crl.pem'), pki.crl);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const openssl = (...args: string[]) => spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });

  it('openssl verify accepts the server certificate for sslserver and the client for sslclient', () => {
    const server = openssl('verify', '-purpose', 'sslserver', '-CAfile', 'ca.pem', 'server.pem');
    assert.equal(server.status, 0, server.stderr);
    assert.equal(server.stdout.trim(), 'server.pem: OK');
    const client = openssl('verify', '-purpose', 'sslclient', '-CAfile', 'ca.pem', 'client.pem');
    assert.equal(client.status, 0, client.stderr);
  });

  it('openssl verify -crl_check reports the revoked client as revoked', () => {
    const out = openssl('verify', '-crl_check', '-CAfile', 'ca.pem', '-CRLfile', 'crl.pem', 'revoked.pem');
    assert.notEqual(out.status, 0);
    assert.match(out.stdout + out.stderr, /certificate revoked/);
    const ok = openssl('verify', '-crl_check', '-CAfile', 'ca.pem', '-CRLfile', 'crl.pem', 'client.pem');
    assert.equal(ok.status, 0, ok.stderr);
  });

  it('openssl crl reads nextUpdate about 7 days ahead', () => {
    const out = openssl('crl', '-in', 'crl.pem', '-noout', '-nextupdate');
    assert.equal(out.status, 0, out.stderr);
    const next = Date.parse(out.stdout.trim().replace(/^nextUpdate=/, ''));
    assert.ok(Math.abs(next - (Date.now() + 7 * DAY_MS)) < 10 * 60_000, out.stdout);
  });
});
