// src/pki/store.ts without the CLI: input checks as tables of inputs and codes, and the store's
// operations on temporary directories (files, modes, index, CRL, locking), with the clock passed in.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createCa, issueCertificate, spkiPin, x509 } from '../../src/pki/index.js';
import {
  checkDays,
  checkDnsName,
  checkEmail,
  checkIp,
  checkName,
  checkUri,
  initStore,
  issueToStore,
  listStore,
  loadCa,
  PkiStoreError,
  readIndex,
  revokeInStore,
  storePaths,
  writeStoreCrl,
} from '../../src/pki/store.js';

const DAY_MS = 24 * 60 * 60 * 1000;
const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-store-'));
  dirs.push(dir);
  return dir;
}

/** A fresh store directory (not yet created) inside a temp dir. */
function storeDir(): string {
  return join(tempDir(), 'pki');
}

function mode(path: string): number {
  return statSync(path).mode & 0o777;
}

/** Runs `fn` and returns the PkiStoreError code and field it threw. */
async function failure(fn: () => unknown): Promise<[string, string | undefined]> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof PkiStoreError) return [err.code, err.field];
    throw err;
  }
  assert.fail('expected a PkiStoreError');
}

function crlSerials(pem: string): string[] {
  return new x509.X509Crl(pem).entries.map((e) => e.serialNumber.toLowerCase());
}

describe('input checks', () => {
  it('checkDnsName accepts host names and leading wildcards, lowercased', () => {
    const ok: [string, string][] = [
      ['localhost', 'localhost'],
      ['GW.Example.COM', 'gw.example.com'],
      ['*.example.com', '*.example.com'],
      ['xn--bcher-kva.example', 'xn--bcher-kva.example'],
      ['a-b.c1', 'a-b.c1'],
      [`${'a'.repeat(63)}.example`, `${'a'.repeat(63)}.example`],
    ];
    for (const [input, expected] of ok) assert.equal(checkDnsName(input), expected, input);
  });

  it('checkDnsName refuses what is not a host name, naming --dns', async () => {
    const bad = [
      '',
      'a..b',
      '-a.example',
      'a-.example',
      'a_b.example',
      'exa mple.com',
      '127.0.0.1',
      '::1',
      '*.com',
      'foo.*.example',
      '**.example.com',
      'a.123',
      `${'a'.repeat(64)}.example`,
      `${'a.'.repeat(127)}ab`,
      'example.com.',
      'bücher.example',
      'a\nb.example',
    ];
    for (const input of bad) {
      assert.deepEqual(await failure(() => checkDnsName(input)), ['INVALID', 'dns'], JSON.stringify(input));
    }
    assert.deepEqual(await failure(() => checkDnsName('*.example.com', false)), ['INVALID', 'dns']);
  });

  it('checkIp accepts IPv4 and IPv6 (brackets stripped) and refuses the rest, naming --ip', async () => {
    assert.equal(checkIp('127.0.0.1'), '127.0.0.1');
    assert.equal(checkIp('::1'), '::1');
    assert.equal(checkIp('[2001:db8::1]'), '2001:db8::1');
    for (const input of ['1.2.3', '256.1.1.1', 'localhost', '', '10.0.0.0/8']) {
      assert.deepEqual(await failure(() => checkIp(input)), ['INVALID', 'ip'], input);
    }
  });

  it('checkName allows 1-64 of A-Z a-z 0-9 . _ - from an alphanumeric start: safe as a CN and a file name', async () => {
    for (const input of ['device-42', 'a', 'A.b_c-1', 'x'.repeat(64)]) assert.equal(checkName(input), input);
    for (const input of ['', '-x', '.hidden', '../x', 'a/b', 'a b', 'x'.repeat(65), 'é', 'a\u0000b']) {
      assert.deepEqual(await failure(() => checkName(input)), ['INVALID', 'name'], JSON.stringify(input));
    }
  });

  it('checkUri wants an absolute URI; a spiffe:// ID needs a trust domain and no query', async () => {
    for (const input of ['spiffe://example.org/device/42', 'urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66']) {
      assert.equal(checkUri(input), input);
    }
    for (const input of [
      'not a uri',
      'device-42',
      '/relative',
      'spiffe:///no-domain',
      'spiffe://td/p?q=1',
      'a:b c',
    ]) {
      assert.deepEqual(await failure(() => checkUri(input)), ['INVALID', 'uri'], input);
    }
  });

  it('checkEmail wants local@domain with a host-name domain', async () => {
    assert.equal(checkEmail('ops@example.org'), 'ops@example.org');
    for (const input of [
      'nobody',
      '@example.org',
      'a b@example.org',
      'a@-x.example',
      'a@exa mple.org',
      'a,b@x.org',
    ]) {
      assert.deepEqual(await failure(() => checkEmail(input)), ['INVALID', 'email'], input);
    }
  });

  it('checkDays takes whole days from 1 to the maximum', async () => {
    assert.equal(checkDays(1, 825, 'x'), 1);
    assert.equal(checkDays(825, 825, 'x'), 825);
    for (const days of [0, -1, 826, 1.5, Number.NaN]) {
      assert.deepEqual(await failure(() => checkDays(days, 825, 'x')), ['INVALID', 'days'], String(days));
    }
  });
});

describe('initStore', () => {
  it('writes ca.crt, ca.key 0600, an empty index and an empty CRL into a new 0700 directory', async () => {
    const dir = storeDir();
    const now = new Date();
    const result = await initStore(dir, { commonName: 'Unit CA', days: 100, now });
    const paths = storePaths(dir);
    assert.equal(mode(paths.dir), 0o700);
    assert.equal(mode(paths.issued), 0o700);
    assert.equal(mode(paths.caKey), 0o600);
    assert.deepEqual(result.warnings, []);
    assert.equal(result.subject, 'CN=Unit CA');
    assert.equal(result.keyType, 'p256');
    const ca = new X509Certificate(readFileSync(paths.caCert));
    assert.ok(ca.ca && ca.checkPrivateKey(createPrivateKey(readFileSync(paths.caKey))));
    assert.equal(ca.serialNumber.toLowerCase(), result.serial);
    assert.ok(Math.abs(new Date(ca.validTo).getTime() - now.getTime() - 100 * DAY_MS) < DAY_MS);
    assert.deepEqual(await readIndex(dir), { version: 1, crlDays: 7, certificates: [] });
    assert.deepEqual(crlSerials(readFileSync(paths.crl, 'utf8')), []);
    // No temporary file is left behind.
    assert.deepEqual(
      ['ca.crt', 'ca.key', 'crl.pem', 'index.json', 'issued'].filter((f) => !existsSync(join(paths.dir, f))),
      [],
    );
  });

  it('CA_EXISTS when any of ca.key, ca.crt or index.json is there; the key is never replaced', async () => {
    const dir = storeDir();
    await initStore(dir);
    const key = readFileSync(storePaths(dir).caKey);
    assert.deepEqual(await failure(() => initStore(dir, { keyType: 'ed25519' })), ['CA_EXISTS', undefined]);
    assert.deepEqual(readFileSync(storePaths(dir).caKey), key);
    for (const only of ['ca.key', 'ca.crt', 'index.json']) {
      const other = storeDir();
      mkdirSync(other, { recursive: true });
      writeFileSync(join(other, only), 'x');
      assert.deepEqual(await failure(() => initStore(other)), ['CA_EXISTS', undefined], only);
      assert.equal(readFileSync(join(other, only), 'utf8'), 'x');
    }
  });

  it('leaves the mode of an existing directory alone and warns when others can read it', async () => {
    const dir = storeDir();
    mkdirSync(dir);
    chmodSync(dir, 0o755);
    const result = await initStore(dir);
    assert.equal(mode(dir), 0o755);
    assert.equal(result.warnings.length, 1);
    assert.match(result.warnings[0] ?? '', /mode 755/);
  });

  it('refuses a bad CA name or lifetime before writing anything', async () => {
    const dir = storeDir();
    assert.deepEqual(await failure(() => initStore(dir, { commonName: 'CA/evil' })), ['INVALID', 'name']);
    assert.deepEqual(await failure(() => initStore(dir, { days: 0 })), ['INVALID', 'days']);
    assert.equal(existsSync(dir), false);
  });
});

describe('issueToStore', () => {
  it('issues a server certificate, writes it (key 0600) and records it with relative paths', async () => {
    const dir = storeDir();
    await initStore(dir);
    const now = new Date();
    const result = await issueToStore(dir, {
      kind: 'server',
      dns: ['GW.example', 'localhost'],
      ip: ['127.0.0.1'],
      now,
    });
    const { entry } = result;
    assert.equal(entry.kind, 'server');
    assert.equal(entry.subject, 'CN=gw.example');
    assert.deepEqual(entry.sans, ['DNS:gw.example', 'DNS:localhost', 'IP:127.0.0.1']);
    assert.equal(entry.status, 'valid');
    assert.equal(entry.certFile, 'issued/gw.example.crt');
    assert.equal(entry.keyFile, 'issued/gw.example.key');
    assert.equal(result.certPath, join(storePaths(dir).dir, 'issued/gw.example.crt'));
    assert.equal(mode(result.keyPath), 0o600);
    const pem = readFileSync(result.certPath, 'utf8');
    const cert = new X509Certificate(pem);
    const ca = new X509Certificate(readFileSync(storePaths(dir).caCert));
    assert.ok(cert.checkIssued(ca) && cert.verify(ca.publicKey));
    assert.equal(cert.serialNumber.toLowerCase(), entry.serial);
    assert.equal(entry.notAfter, new Date(cert.validTo).toISOString().replace('.000', ''));
    assert.equal(result.pin, spkiPin(pem));
    assert.deepEqual((await readIndex(dir)).certificates, [entry]);
  });

  it('names files after a wildcard or IPv6 first name with the unsafe characters replaced', async () => {
    const dir = storeDir();
    await initStore(dir);
    const wild = await issueToStore(dir, { kind: 'server', dns: ['*.example.com'] });
    assert.equal(wild.entry.subject, 'CN=*.example.com');
    assert.equal(wild.entry.certFile, 'issued/_.example.com.crt');
    const v6 = await issueToStore(dir, { kind: 'server', ip: ['::1'] });
    assert.equal(v6.entry.certFile, 'issued/__1.crt');
  });

  it('refuses invalid requests with the field that is wrong, before touching the CA', async () => {
    const dir = storeDir(); // no CA at all: validation comes first
    const cases: [Parameters<typeof issueToStore>[1], string][] = [
      [{ kind: 'server' }, 'dns'],
      [{ kind: 'server', dns: ['bad_name'] }, 'dns'],
      [{ kind: 'server', ip: ['1.2.3'] }, 'ip'],
      [{ kind: 'server', dns: ['a.example'], days: 826 }, 'days'],
      [{ kind: 'server', dns: ['a.example'], commonName: 'a/b' }, 'name'],
      [{ kind: 'client' }, 'name'],
      [{ kind: 'client', commonName: 'd', days: 3651 }, 'days'],
      [{ kind: 'client', commonName: 'd', uri: ['nope'] }, 'uri'],
      [{ kind: 'client', commonName: 'd', email: ['nope'] }, 'email'],
      [{ kind: 'client', commonName: 'd', dns: ['*.example.com'] }, 'dns'],
    ];
    for (const [req, field] of cases) {
      assert.deepEqual(await failure(() => issueToStore(dir, req)), ['INVALID', field], JSON.stringify(req));
    }
  });

  it('NO_CA without a CA; CA_MISMATCH when ca.key is not the key of ca.crt', async () => {
    assert.deepEqual(await failure(() => issueToStore(storeDir(), { kind: 'client', commonName: 'd' })), [
      'NO_CA',
      undefined,
    ]);
    const dir = storeDir();
    await initStore(dir);
    writeFileSync(storePaths(dir).caKey, (await createCa()).keyPem);
    assert.deepEqual(await failure(() => loadCa(dir)), ['CA_MISMATCH', undefined]);
  });

  it('OUTLIVES_CA when the certificate would end after the CA', async () => {
    const dir = storeDir();
    await initStore(dir, { days: 30 });
    assert.deepEqual(await failure(() => issueToStore(dir, { kind: 'client', commonName: 'd', days: 31 })), [
      'OUTLIVES_CA',
      'days',
    ]);
    assert.deepEqual((await readIndex(dir)).certificates, []);
  });

  it('FILE_EXISTS rather than overwrite, naming --name or --out; nothing recorded', async () => {
    const dir = storeDir();
    await initStore(dir);
    const first = await issueToStore(dir, { kind: 'client', commonName: 'device-1' });
    const pem = readFileSync(first.certPath, 'utf8');
    assert.deepEqual(await failure(() => issueToStore(dir, { kind: 'client', commonName: 'device-1' })), [
      'FILE_EXISTS',
      'name',
    ]);
    const out = join(tempDir(), 'certs', 'device-1');
    const elsewhere = await issueToStore(dir, { kind: 'client', commonName: 'device-1', out });
    assert.equal(elsewhere.entry.certFile, `${out}.crt`);
    assert.deepEqual(
      await failure(() => issueToStore(dir, { kind: 'client', commonName: 'device-1', out })),
      ['FILE_EXISTS', 'out'],
    );
    assert.equal(readFileSync(first.certPath, 'utf8'), pem);
    assert.equal((await readIndex(dir)).certificates.length, 2);
  });

  it('keeps every entry when issues run concurrently (the index is locked)', async () => {
    const dir = storeDir();
    await initStore(dir);
    const names = ['d-1', 'd-2', 'd-3', 'd-4', 'd-5', 'd-6'];
    await Promise.all(names.map((commonName) => issueToStore(dir, { kind: 'client', commonName })));
    const subjects = (await readIndex(dir)).certificates.map((e) => e.subject).sort();
    assert.deepEqual(
      subjects,
      names.map((n) => `CN=${n}`),
    );
    assert.equal(existsSync(`${storePaths(dir).index}.lock`), false);
  });

  it('takes over a lock left by a process that no longer exists', async () => {
    const dir = storeDir();
    await initStore(dir);
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    writeFileSync(`${storePaths(dir).index}.lock`, String(dead));
    await issueToStore(dir, { kind: 'client', commonName: 'after-crash' });
    assert.equal((await readIndex(dir)).certificates.length, 1);
  });
});

describe('revokeInStore and writeStoreCrl', () => {
  async function withTwo() {
    const dir = storeDir();
    await initStore(dir);
    const a = await issueToStore(dir, { kind: 'client', commonName: 'device-a' });
    const b = await issueToStore(dir, { kind: 'client', commonName: 'device-b' });
    return { dir, a, b };
  }

  it('marks the entry revoked at `now`, and crl.pem lists it, signed by the CA', async () => {
    const { dir, a, b } = await withTwo();
    const now = new Date('2030-01-02T03:04:05Z');
    const result = await revokeInStore(dir, { serial: a.entry.serial.toUpperCase() }, now);
    assert.equal(result.alreadyRevoked, false);
    assert.equal(result.entry.revokedAt, '2030-01-02T03:04:05Z');
    assert.equal(result.crl.revoked, 1);
    assert.equal(result.crl.nextUpdate, '2030-01-09T03:04:05Z');
    const pem = readFileSync(storePaths(dir).crl, 'utf8');
    assert.deepEqual(crlSerials(pem), [a.entry.serial]);
    const crl = new x509.X509Crl(pem);
    assert.ok(
      await crl.verify({ publicKey: new x509.X509Certificate(readFileSync(storePaths(dir).caCert, 'utf8')) }),
    );
    // The revocation is dated no later than the CRL's thisUpdate.
    assert.ok((crl.entries[0]?.revocationDate.getTime() ?? Infinity) <= crl.thisUpdate.getTime());
    const statuses = (await readIndex(dir)).certificates.map((e) => [e.subject, e.status]);
    assert.deepEqual(statuses, [
      ['CN=device-a', 'revoked'],
      ['CN=device-b', 'valid'],
    ]);
    assert.equal(b.entry.status, 'valid');
  });

  it('revoking twice reports alreadyRevoked and keeps the first date', async () => {
    const { dir, a } = await withTwo();
    await revokeInStore(dir, { serial: a.entry.serial }, new Date('2030-01-01T00:00:00Z'));
    const again = await revokeInStore(dir, { serial: a.entry.serial }, new Date('2030-02-01T00:00:00Z'));
    assert.equal(again.alreadyRevoked, true);
    assert.equal(again.entry.revokedAt, '2030-01-01T00:00:00Z');
    assert.equal(again.crl.revoked, 1);
  });

  it('by certificate: NOT_OUR_CA for another CA; one this CA signed outside the index is added as revoked', async () => {
    const { dir } = await withTwo();
    const other = await createCa();
    const foreign = await issueCertificate(other, { kind: 'client', commonName: 'device-a' });
    assert.deepEqual(
      await failure(() => revokeInStore(dir, { certPem: foreign.certPem, certFile: 'f.crt' })),
      ['NOT_OUR_CA', 'cert'],
    );
    assert.deepEqual(await failure(() => revokeInStore(dir, { certPem: 'junk', certFile: 'j.crt' })), [
      'INVALID',
      'cert',
    ]);
    const outside = await issueCertificate(await loadCa(dir), {
      kind: 'server',
      commonName: 'side',
      dns: ['side.example'],
    });
    const result = await revokeInStore(dir, {
      certPem: outside.certPem,
      certFile: join(tempDir(), 'side.crt'),
    });
    assert.equal(result.entry.kind, 'server');
    assert.equal(result.entry.subject, 'CN=side');
    assert.deepEqual(result.entry.sans, ['DNS:side.example']);
    assert.equal(result.entry.keyFile, undefined);
    assert.deepEqual(crlSerials(readFileSync(storePaths(dir).crl, 'utf8')), [outside.serial]);
  });

  it('NOT_FOUND for a serial the index does not know; INVALID for one that is not hex', async () => {
    const { dir } = await withTwo();
    assert.deepEqual(await failure(() => revokeInStore(dir, { serial: '0badc0de' })), [
      'NOT_FOUND',
      'serial',
    ]);
    assert.deepEqual(await failure(() => revokeInStore(dir, { serial: 'xyz' })), ['INVALID', 'serial']);
  });

  it('writeStoreCrl signs for `days` from `now`, to crl.pem or `out`, and revoke reuses the days', async () => {
    const { dir, a } = await withTwo();
    const now = new Date('2030-05-01T00:00:00Z');
    const out = join(tempDir(), 'published.crl');
    const written = await writeStoreCrl(dir, { days: 30, out, now });
    assert.equal(written.path, out);
    assert.equal(written.nextUpdate, '2030-05-31T00:00:00Z');
    assert.equal(written.thisUpdate, '2030-04-30T23:59:00Z');
    assert.equal((await readIndex(dir)).crlDays, 30);
    const revoked = await revokeInStore(dir, { serial: a.entry.serial }, now);
    assert.equal(revoked.crl.nextUpdate, '2030-05-31T00:00:00Z');
    assert.deepEqual(await failure(() => writeStoreCrl(dir, { days: 366 })), ['INVALID', 'days']);
  });
});

describe('listStore and readIndex', () => {
  it('lists valid, revoked and (at a later `now`) expired certificates', async () => {
    const dir = storeDir();
    await initStore(dir);
    const short = await issueToStore(dir, { kind: 'client', commonName: 'short', days: 1 });
    const long = await issueToStore(dir, { kind: 'client', commonName: 'long', days: 30 });
    const gone = await issueToStore(dir, { kind: 'client', commonName: 'gone', days: 1 });
    await revokeInStore(dir, { serial: gone.entry.serial });
    const status = async (now: Date) => (await listStore(dir, now)).map((e) => [e.subject, e.status]);
    assert.deepEqual(await status(new Date()), [
      ['CN=short', 'valid'],
      ['CN=long', 'valid'],
      ['CN=gone', 'revoked'],
    ]);
    assert.deepEqual(await status(new Date(Date.now() + 2 * DAY_MS)), [
      ['CN=short', 'expired'],
      ['CN=long', 'valid'],
      ['CN=gone', 'revoked'],
    ]);
    assert.equal(short.entry.status, 'valid');
    assert.equal(long.entry.status, 'valid');
  });

  it('BAD_INDEX for an index that is not JSON or not ours; NO_CA when there is none', async () => {
    const dir = storeDir();
    await initStore(dir);
    const { index } = storePaths(dir);
    for (const text of [
      '{',
      '[]',
      '{"version":2,"certificates":[]}',
      '{"version":1,"certificates":[{"serial":1}]}',
    ]) {
      writeFileSync(index, text);
      assert.deepEqual(await failure(() => readIndex(dir)), ['BAD_INDEX', undefined], text);
    }
    assert.deepEqual(await failure(() => listStore(storeDir())), ['NO_CA', undefined]);
  });
});
