// `portcullis pki ...` run as a process, the way an operator runs it, in temporary directories:
// the files and modes it writes, certificates that verify (in node:crypto and in openssl), a CRL a
// real TLS server enforces, SPKI pins of files and of a live TLS chain, and the docs/mtls.md
// walk-through with every command it shows.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { spkiPin, x509 } from '../../src/pki/index.js';
import { writeStoreCrl } from '../../src/pki/store.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'portcullis.js');
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const DAY_MS = 24 * 60 * 60 * 1000;
const HAS_OPENSSL = spawnSync('openssl', ['version']).status === 0;

const dirs: string[] = [];
const children: ChildProcess[] = [];
const servers: tls.Server[] = [];

after(() => {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const server of servers) server.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-pki-'));
  dirs.push(dir);
  return dir;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion in `cwd`, with stdin closed. */
function exec(command: string, args: string[], cwd: string, timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} timed out; stderr:\n${stderr}`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `portcullis pki ...` with the built binary. */
function pki(cwd: string, ...args: string[]): Promise<Run> {
  return exec(process.execPath, [BIN, 'pki', ...args], cwd);
}

/** Runs `portcullis pki ...` and fails the test unless it exits 0. */
async function pkiOk(cwd: string, ...args: string[]): Promise<Run> {
  const result = await pki(cwd, ...args);
  assert.equal(result.code, 0, `pki ${args.join(' ')} exited ${result.code}:\n${result.stderr}`);
  return result;
}

function mode(path: string): number {
  return statSync(path).mode & 0o777;
}

function cert(path: string): X509Certificate {
  return new X509Certificate(readFileSync(path));
}

/** The extended key usage OIDs (node names this list keyUsage). */
function ekus(c: X509Certificate): string[] {
  return c.keyUsage ?? [];
}

function crlSerials(path: string): string[] {
  return new x509.X509Crl(readFileSync(path, 'utf8')).entries.map((e) => e.serialNumber.toLowerCase());
}

interface IssuedJson {
  serial: string;
  kind: string;
  subject: string;
  sans: string[];
  status: string;
  certPath: string;
  keyPath: string;
  certFile: string;
  keyFile: string;
  pin: string;
}

/** A PKI directory made by the CLI, with a server and two device certificates. */
interface Made {
  cwd: string;
  dir: string;
  server: IssuedJson;
  device42: IssuedJson;
  device43: IssuedJson;
}

async function makePki(): Promise<Made> {
  const cwd = tempDir();
  await pkiOk(cwd, 'init', '--name', 'Test Devices CA');
  const server = JSON.parse(
    (
      await pkiOk(
        cwd,
        'issue',
        'server',
        '--dns',
        'localhost,gw.example',
        '--ip',
        '127.0.0.1',
        '--ip',
        '::1',
        '--json',
      )
    ).stdout,
  ) as IssuedJson;
  const device42 = JSON.parse(
    (
      await pkiOk(
        cwd,
        'issue',
        'client',
        '--name',
        'device-42',
        '--uri',
        'spiffe://example.org/device/42',
        '--email',
        'ops@example.org',
        '--days',
        '30',
        '--json',
      )
    ).stdout,
  ) as IssuedJson;
  const device43 = JSON.parse(
    (await pkiOk(cwd, 'issue', 'client', '--name', 'device-43', '--json')).stdout,
  ) as IssuedJson;
  return { cwd, dir: join(cwd, '.portcullis', 'pki'), server, device42, device43 };
}

/** A TLS server like the gateway's mTLS listener: client certificate required and verified. */
async function mtlsServer(made: Made, crl?: string): Promise<number> {
  const server = tls.createServer(
    {
      cert: readFileSync(made.server.certPath),
      key: readFileSync(made.server.keyPath),
      ca: readFileSync(join(made.dir, 'ca.crt')),
      ...(crl === undefined ? {} : { crl: readFileSync(crl) }),
      requestCert: true,
      rejectUnauthorized: true,
    },
    (socket) => {
      const peer = socket.getPeerCertificate();
      socket.end(`hello ${String(peer.subject.CN)}\n`);
    },
  );
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** Connects with a client certificate; resolves with what the server wrote before the socket closed. */
function present(port: number, made: Made, client: IssuedJson): Promise<string> {
  return new Promise((resolve) => {
    let data = '';
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ca: readFileSync(join(made.dir, 'ca.crt')),
      cert: readFileSync(client.certPath),
      key: readFileSync(client.keyPath),
    });
    socket.on('data', (d: Buffer) => {
      data += d.toString();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(data));
  });
}

describe('portcullis pki init', () => {
  it('creates ca.crt, ca.key (0600), index.json and an empty signed CRL in a 0700 directory', async () => {
    const cwd = tempDir();
    const dir = join(cwd, 'nested', 'pki');
    const { stdout } = await pkiOk(cwd, 'init', '--dir', dir, '--name', 'Acme Devices CA', '--days', '400');
    assert.match(stdout, /Created CA CN=Acme Devices CA \(p256\)/);
    assert.equal(mode(dir), 0o700);
    assert.equal(mode(join(dir, 'issued')), 0o700);
    assert.equal(mode(join(dir, 'ca.key')), 0o600);
    const ca = cert(join(dir, 'ca.crt'));
    assert.equal(ca.ca, true);
    assert.ok(ca.checkIssued(ca) && ca.verify(ca.publicKey), 'self-signed');
    assert.ok(ca.checkPrivateKey(createPrivateKey(readFileSync(join(dir, 'ca.key')))));
    assert.equal(ca.subject, 'CN=Acme Devices CA');
    const lifetime = new Date(ca.validTo).getTime() - Date.now();
    assert.ok(Math.abs(lifetime - 400 * DAY_MS) < DAY_MS, `CA lifetime ${lifetime}`);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')), {
      version: 1,
      crlDays: 7,
      certificates: [],
    });
    const crl = new x509.X509Crl(readFileSync(join(dir, 'crl.pem'), 'utf8'));
    assert.equal(crl.entries.length, 0);
    assert.ok(
      await crl.verify({ publicKey: new x509.X509Certificate(readFileSync(join(dir, 'ca.crt'), 'utf8')) }),
    );
    assert.ok(crl.nextUpdate && crl.nextUpdate.getTime() > Date.now() + 6 * DAY_MS);
  });

  it('--key rsa3072 and --key ed25519 select the CA key algorithm', async () => {
    const cwd = tempDir();
    await pkiOk(cwd, 'init', '--dir', 'rsa', '--key', 'rsa3072');
    await pkiOk(cwd, 'init', '--dir', 'ed', '--key', 'ed25519');
    const rsa = cert(join(cwd, 'rsa', 'ca.crt')).publicKey;
    assert.equal(rsa.asymmetricKeyType, 'rsa');
    assert.equal(rsa.asymmetricKeyDetails?.modulusLength, 3072);
    assert.equal(cert(join(cwd, 'ed', 'ca.crt')).publicKey.asymmetricKeyType, 'ed25519');
  });

  it('never replaces an existing CA: exit 1 with a clear message, the key untouched', async () => {
    const cwd = tempDir();
    await pkiOk(cwd, 'init');
    const key = readFileSync(join(cwd, '.portcullis/pki/ca.key'));
    const again = await pki(cwd, 'init', '--key', 'ed25519');
    assert.equal(again.code, 1);
    assert.match(
      again.stderr,
      /a CA already exists in .*\(ca\.key, ca\.crt, index\.json\); it is never overwritten/,
    );
    assert.deepEqual(readFileSync(join(cwd, '.portcullis/pki/ca.key')), key);
    // There is no --force: asking for one is a usage error, not an overwrite.
    assert.equal((await pki(cwd, 'init', '--force')).code, 2);
    assert.deepEqual(readFileSync(join(cwd, '.portcullis/pki/ca.key')), key);
  });
});

// Every case only reads the store, so they run side by side (each is a process start).
describe('portcullis pki: input validation', { concurrency: 4 }, () => {
  let cwd: string;
  before(async () => {
    cwd = tempDir();
    await pkiOk(cwd, 'init');
  });

  const usage: [string[], RegExp][] = [
    [['init', '--dir', 'other', '--key', 'dsa'], /--key: "dsa" is not one of/],
    [['init', '--dir', 'other', '--days', '0'], /--days: 0 is out of range/],
    [['init', '--dir', 'other', '--name', 'Bad/CA'], /--name: "Bad\/CA" is not a valid CA name/],
    [['issue', 'server', '--dns', 'exa mple.com'], /--dns: "exa mple.com" is not a valid DNS name/],
    [['issue', 'server', '--dns', '127.0.0.1'], /--dns: .*use --ip/],
    [['issue', 'server', '--dns', '-bad.example'], /--dns: a value is required \(write --dns=-VALUE/],
    [['issue', 'server', '--dns=-bad.example'], /--dns: "-bad.example" is not a valid DNS name/],
    [['issue', 'server', '--ip', '300.1.1.1'], /--ip: "300.1.1.1" is not an IP address/],
    [
      ['issue', 'server', '--dns', 'a.example', '--days', '826'],
      /--days: 826 is out of range: server certificates take 1 to 825 days/,
    ],
    [['issue', 'server', '--dns', 'a.example', '--days', 'ten'], /--days: "ten" is not a whole number/],
    [['issue', 'server'], /--dns: a server certificate needs at least one --dns or --ip/],
    [['issue', 'client'], /--name: a client certificate needs a --name/],
    [['issue', 'client', '--name', '../evil'], /--name: "\.\.\/evil" is not a valid name/],
    [['issue', 'client', '--name', 'd-1', '--uri', 'not a uri'], /--uri: "not a uri" is not an absolute URI/],
    [['issue', 'client', '--name', 'd-1', '--email', 'nobody'], /--email: "nobody" is not an email address/],
    [['issue', 'client', '--name', 'd-1', '--dns', 'a.example'], /unknown option --dns/],
    [['issue', 'printer', '--name', 'p'], /issue server or issue client/],
    [['revoke'], /exactly one of --serial HEX or --cert FILE/],
    [['revoke', '--serial', 'xyz'], /--serial: "xyz" is not a hexadecimal serial number/],
    [['crl', '--days', '366'], /--days: 366 is out of range: CRLs take 1 to 365 days/],
    [['pin'], /give a PEM FILE or a wss:\/\/HOST:PORT URL/],
    [['pin', 'ws://127.0.0.1:1'], /must be wss:\/\/ or https:\/\//],
    [['pin', 'some.pem', '--ca', 'ca.crt'], /--ca applies to a wss:\/\/ URL/],
    [['list', '--bogus'], /unknown option --bogus/],
    [['frobnicate'], /unknown command: frobnicate/],
  ];
  for (const [args, message] of usage) {
    it(`exit 2 for: pki ${args.join(' ')}`, async () => {
      const index = readFileSync(join(cwd, '.portcullis/pki/index.json'), 'utf8');
      const result = await pki(cwd, ...args);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, message);
      assert.equal(result.stdout, '');
      assert.equal(readFileSync(join(cwd, '.portcullis/pki/index.json'), 'utf8'), index, 'nothing recorded');
    });
  }

  it('pki help prints the usage (exit 0); pki alone prints it as an error (exit 2)', async () => {
    const help = await pkiOk(cwd, 'help');
    for (const command of [
      'init',
      'issue server',
      'issue client',
      'revoke',
      'crl',
      'pin FILE',
      'pin wss://',
      'list',
    ]) {
      assert.ok(help.stdout.includes(`  ${command}`), `usage shows ${command}`);
    }
    const bare = await pki(cwd);
    assert.equal(bare.code, 2);
    assert.match(bare.stderr, /^usage: portcullis pki <command>/);
    const top = await exec(process.execPath, [BIN, 'help'], cwd);
    assert.match(top.stdout, /^ {2}pki <command> /m);
  });

  it('exit 1 when there is no CA, naming the command that makes one', async () => {
    const result = await pki(tempDir(), 'issue', 'client', '--name', 'device-1');
    assert.equal(result.code, 1);
    assert.match(result.stderr, /no CA in .*run: portcullis pki init/);
  });
});

describe('portcullis pki issue', () => {
  let made: Made;
  before(async () => {
    made = await makePki();
  });

  it('server: verifies against the CA, serverAuth only, the SANs asked for, key 0600, 365 days', () => {
    const ca = cert(join(made.dir, 'ca.crt'));
    const server = cert(made.server.certPath);
    assert.ok(server.checkIssued(ca) && server.verify(ca.publicKey));
    assert.equal(server.ca, false);
    assert.deepEqual(ekus(server), [SERVER_AUTH]);
    assert.equal(server.subject, 'CN=localhost');
    assert.equal(
      server.subjectAltName,
      'DNS:localhost, DNS:gw.example, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
    );
    assert.ok(server.checkHost('gw.example') && server.checkIP('127.0.0.1'));
    assert.equal(server.serialNumber.toLowerCase(), made.server.serial);
    assert.equal(mode(made.server.keyPath), 0o600);
    assert.ok(server.checkPrivateKey(createPrivateKey(readFileSync(made.server.keyPath))));
    const lifetime = new Date(server.validTo).getTime() - Date.now();
    assert.ok(Math.abs(lifetime - 365 * DAY_MS) < DAY_MS);
    const ku = new x509.X509Certificate(readFileSync(made.server.certPath, 'utf8')).getExtension(
      x509.KeyUsagesExtension,
    );
    assert.equal(ku?.usages, x509.KeyUsageFlags.digitalSignature);
    assert.equal(made.server.pin, spkiPin(readFileSync(made.server.certPath, 'utf8')));
    assert.deepEqual(made.server.sans, [
      'DNS:localhost',
      'DNS:gw.example',
      'IP:127.0.0.1',
      'IP:0:0:0:0:0:0:0:1',
    ]);
    assert.equal(made.server.certFile, 'issued/localhost.crt');
    assert.equal(made.server.keyFile, 'issued/localhost.key');
  });

  it('client: verifies against the CA, clientAuth only, CN, URI and email SANs, --days honoured', () => {
    const ca = cert(join(made.dir, 'ca.crt'));
    const device = cert(made.device42.certPath);
    assert.ok(device.checkIssued(ca) && device.verify(ca.publicKey));
    assert.deepEqual(ekus(device), [CLIENT_AUTH]);
    assert.equal(device.subject, 'CN=device-42');
    assert.equal(device.subjectAltName, 'URI:spiffe://example.org/device/42, email:ops@example.org');
    assert.equal(mode(made.device42.keyPath), 0o600);
    const lifetime = new Date(device.validTo).getTime() - Date.now();
    assert.ok(Math.abs(lifetime - 30 * DAY_MS) < DAY_MS);
    assert.notEqual(made.device42.serial, made.device43.serial);
    assert.equal(cert(made.device43.certPath).subjectAltName, undefined, 'no empty SAN extension');
  });

  it('records every certificate in index.json with its files relative to the PKI directory', () => {
    const index = JSON.parse(readFileSync(join(made.dir, 'index.json'), 'utf8')) as {
      certificates: IssuedJson[];
    };
    assert.deepEqual(
      index.certificates.map((e) => [e.kind, e.subject, e.status, e.certFile, e.keyFile]),
      [
        ['server', 'CN=localhost', 'valid', 'issued/localhost.crt', 'issued/localhost.key'],
        ['client', 'CN=device-42', 'valid', 'issued/device-42.crt', 'issued/device-42.key'],
        ['client', 'CN=device-43', 'valid', 'issued/device-43.crt', 'issued/device-43.key'],
      ],
    );
  });

  it('never overwrites an issued file: the same name again fails (exit 1); --out puts it elsewhere', async () => {
    const before = readFileSync(made.device43.certPath);
    const again = await pki(made.cwd, 'issue', 'client', '--name', 'device-43');
    assert.equal(again.code, 1);
    assert.match(
      again.stderr,
      /device-43\.crt already exists; it is never overwritten \(choose another --name or --out\)/,
    );
    assert.deepEqual(readFileSync(made.device43.certPath), before);
    const renewed = JSON.parse(
      (
        await pkiOk(
          made.cwd,
          'issue',
          'client',
          '--name',
          'device-43',
          '--out',
          'renewed/device-43',
          '--json',
        )
      ).stdout,
    ) as IssuedJson;
    assert.equal(renewed.certPath, join(made.cwd, 'renewed', 'device-43.crt'));
    assert.equal(renewed.certFile, renewed.certPath, 'outside the PKI directory the path is absolute');
    assert.equal(mode(renewed.keyPath), 0o600);
  });

  it('prints a human summary with serial, names, files and pin', async () => {
    const { stdout } = await pkiOk(made.cwd, 'issue', 'server', '--dns', 'api.example', '--days', '90');
    assert.match(stdout, /^Issued server certificate CN=api\.example$/m);
    assert.match(stdout, /^ {2}serial {2}[0-9a-f]{32}$/m);
    assert.match(stdout, /^ {2}names {3}DNS:api\.example$/m);
    assert.match(stdout, /^ {2}cert {4}\.portcullis\/pki\/issued\/api\.example\.crt$/m);
    assert.match(stdout, /^ {2}key {5}\.portcullis\/pki\/issued\/api\.example\.key \(0600\)$/m);
    assert.match(stdout, /^ {2}pin {5}sha256\/[A-Za-z0-9+/]{43}=$/m);
  });

  it('openssl verify accepts them for their purpose only', {
    skip: !HAS_OPENSSL && 'openssl not on PATH',
  }, async () => {
    const ca = join(made.dir, 'ca.crt');
    const all = await exec(
      'openssl',
      ['verify', '-CAfile', ca, made.server.certPath, made.device42.certPath],
      made.cwd,
    );
    assert.equal(all.code, 0, all.stdout + all.stderr);
    assert.match(all.stdout, /localhost\.crt: OK/);
    assert.match(all.stdout, /device-42\.crt: OK/);
    const asServer = await exec(
      'openssl',
      ['verify', '-purpose', 'sslserver', '-CAfile', ca, made.server.certPath],
      made.cwd,
    );
    assert.equal(asServer.code, 0, asServer.stderr);
    const asClient = await exec(
      'openssl',
      ['verify', '-purpose', 'sslclient', '-CAfile', ca, made.device42.certPath],
      made.cwd,
    );
    assert.equal(asClient.code, 0, asClient.stderr);
    const wrong = await exec(
      'openssl',
      ['verify', '-purpose', 'sslserver', '-CAfile', ca, made.device42.certPath],
      made.cwd,
    );
    assert.notEqual(wrong.code, 0, 'a device certificate is not a server certificate');
  });

  it('openssl verify accepts certificates from RSA and Ed25519 CAs too', {
    skip: !HAS_OPENSSL && 'openssl not on PATH',
  }, async () => {
    const cwd = tempDir();
    for (const key of ['rsa3072', 'ed25519']) {
      await pkiOk(cwd, 'init', '--dir', key, '--key', key);
      const issued = JSON.parse(
        (await pkiOk(cwd, 'issue', 'client', '--dir', key, '--name', `device-${key}`, '--json')).stdout,
      ) as IssuedJson;
      const result = await exec(
        'openssl',
        ['verify', '-CAfile', join(cwd, key, 'ca.crt'), issued.certPath],
        cwd,
      );
      assert.equal(result.code, 0, `${key}: ${result.stdout}${result.stderr}`);
    }
  });
});

describe('portcullis pki revoke and crl', () => {
  let made: Made;
  before(async () => {
    made = await makePki();
  });

  it('revoke --cert lists the serial in a re-signed crl.pem, and a TLS server using it refuses only that client', async () => {
    const crlPath = join(made.dir, 'crl.pem');
    // Before: the same server and CRL file accept both devices.
    const port0 = await mtlsServer(made, crlPath);
    assert.equal(await present(port0, made, made.device42), 'hello device-42\n');

    const { stdout } = await pkiOk(made.cwd, 'revoke', '--cert', made.device42.certPath);
    assert.match(stdout, new RegExp(`^Revoked CN=device-42 \\(serial ${made.device42.serial}\\)`, 'm'));
    assert.match(stdout, /Wrote \.portcullis\/pki\/crl\.pem: 1 revoked, next update /);
    assert.deepEqual(crlSerials(crlPath), [made.device42.serial]);
    const crl = new x509.X509Crl(readFileSync(crlPath, 'utf8'));
    assert.ok(
      await crl.verify({
        publicKey: new x509.X509Certificate(readFileSync(join(made.dir, 'ca.crt'), 'utf8')),
      }),
    );
    assert.ok(crl.nextUpdate && crl.nextUpdate.getTime() > Date.now());

    const port = await mtlsServer(made, crlPath);
    assert.equal(await present(port, made, made.device42), '', 'the revoked device is refused');
    assert.equal(await present(port, made, made.device43), 'hello device-43\n', 'another device is accepted');
  });

  it('openssl verify -crl_check reports the revoked certificate', {
    skip: !HAS_OPENSSL && 'openssl not on PATH',
  }, async () => {
    const args = [
      'verify',
      '-crl_check',
      '-CAfile',
      join(made.dir, 'ca.crt'),
      '-CRLfile',
      join(made.dir, 'crl.pem'),
    ];
    const revoked = await exec('openssl', [...args, made.device42.certPath], made.cwd);
    assert.notEqual(revoked.code, 0);
    assert.match(revoked.stdout + revoked.stderr, /certificate revoked/);
    const good = await exec('openssl', [...args, made.device43.certPath], made.cwd);
    assert.equal(good.code, 0, good.stdout + good.stderr);
  });

  it('revoke --serial accepts openssl-style serials; revoking twice is not an error; unknown serials are', async () => {
    const colons = (made.server.serial.toUpperCase().match(/../g) ?? []).join(':');
    await pkiOk(made.cwd, 'revoke', '--serial', colons);
    assert.deepEqual(
      crlSerials(join(made.dir, 'crl.pem')).sort(),
      [made.device42.serial, made.server.serial].sort(),
    );
    const twice = await pkiOk(made.cwd, 'revoke', '--serial', made.server.serial);
    assert.match(twice.stdout, /was already revoked at/);
    const unknown = await pki(made.cwd, 'revoke', '--serial', '0123456789abcdef');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no certificate with serial 0123456789abcdef/);
  });

  it('revoke --cert refuses a certificate from another CA', async () => {
    const other = await makePki();
    const result = await pki(made.cwd, 'revoke', '--cert', other.device43.certPath);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /was not issued by the CA in/);
  });

  it('crl --days N --out FILE signs a CRL valid N days; revoke then keeps that N', async () => {
    const out = join(made.cwd, 'published.crl');
    const { stdout } = await pkiOk(made.cwd, 'crl', '--days', '30', '--out', out);
    assert.match(stdout, /^Wrote published\.crl: 2 revoked, next update /m);
    const crl = new x509.X509Crl(readFileSync(out, 'utf8'));
    const days = ((crl.nextUpdate?.getTime() ?? 0) - Date.now()) / DAY_MS;
    assert.ok(days > 29.9 && days <= 30, `nextUpdate in ${days} days`);
    assert.equal(crl.entries.length, 2);
    await pkiOk(made.cwd, 'revoke', '--cert', made.device43.certPath);
    const next = new x509.X509Crl(readFileSync(join(made.dir, 'crl.pem'), 'utf8'));
    assert.ok(((next.nextUpdate?.getTime() ?? 0) - Date.now()) / DAY_MS > 29.9);
    assert.equal(next.entries.length, 3);
  });
});

describe('a CRL past nextUpdate', () => {
  it('makes a TLS server refuse every client certificate, which is why pki crl must run before then', async () => {
    const made = await makePki();
    const stale = join(made.cwd, 'stale.crl');
    // Signed ten days ago, valid for one day: what an unattended crl.pem looks like a week late.
    await writeStoreCrl(made.dir, { days: 1, out: stale, now: new Date(Date.now() - 10 * DAY_MS) });
    const port = await mtlsServer(made, stale);
    assert.equal(await present(port, made, made.device43), '', 'refused with a stale CRL');
    await pkiOk(made.cwd, 'crl', '--out', stale);
    const fresh = await mtlsServer(made, stale);
    assert.equal(await present(fresh, made, made.device43), 'hello device-43\n', 'accepted once re-signed');
  });
});

describe('portcullis pki list', () => {
  it('shows serial, kind, subject, expiry and status as a table and as JSON', async () => {
    const made = await makePki();
    await pkiOk(made.cwd, 'revoke', '--serial', made.device42.serial);
    const { stdout } = await pkiOk(made.cwd, 'list');
    const lines = stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^SERIAL\s+KIND\s+SUBJECT\s+EXPIRES\s+STATUS$/);
    const row = (e: IssuedJson, status: string) =>
      new RegExp(
        `^${e.serial}\\s+${e.kind}\\s+${e.subject}\\s+\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ\\s+${status}$`,
      );
    assert.match(lines[1] ?? '', row(made.server, 'valid'));
    assert.match(lines[2] ?? '', row(made.device42, 'revoked'));
    assert.match(lines[3] ?? '', row(made.device43, 'valid'));
    const json = JSON.parse((await pkiOk(made.cwd, 'list', '--json')).stdout) as (IssuedJson & {
      revokedAt?: string;
    })[];
    assert.deepEqual(
      json.map((e) => [e.serial, e.status]),
      [
        [made.server.serial, 'valid'],
        [made.device42.serial, 'revoked'],
        [made.device43.serial, 'valid'],
      ],
    );
    assert.match(json[1]?.revokedAt ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(json[0]?.certPath, made.server.certPath);
  });

  it('says so when nothing has been issued', async () => {
    const cwd = tempDir();
    await pkiOk(cwd, 'init');
    assert.match((await pkiOk(cwd, 'list')).stdout, /No certificates issued yet/);
    assert.equal((await pkiOk(cwd, 'list', '--json')).stdout.trim(), '[]');
  });
});

describe('portcullis pki pin', () => {
  let made: Made;
  let caPem: string;
  let leafPem: string;
  let port: number;
  before(async () => {
    made = await makePki();
    caPem = readFileSync(join(made.dir, 'ca.crt'), 'utf8');
    leafPem = readFileSync(made.server.certPath, 'utf8');
    // A TLS server with this PKI's chain. src/pki issues no intermediate CAs, so the chain is leaf
    // and root; the server sends the leaf only, as most do, and the client completes the chain.
    const server = tls.createServer({ cert: leafPem, key: readFileSync(made.server.keyPath) }, (s) =>
      s.end(),
    );
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  it('pin FILE prints the pin spkiPin computes, marked leaf', async () => {
    const { stdout } = await pkiOk(made.cwd, 'pin', made.server.certPath);
    assert.deepEqual(stdout.trimEnd().split('\n'), [
      expect('ROLE  PIN', 'SUBJECT'),
      expect(`leaf  ${spkiPin(leafPem)}`, 'CN=localhost'),
    ]);
    const json = JSON.parse((await pkiOk(made.cwd, 'pin', made.server.certPath, '--json')).stdout) as unknown;
    assert.deepEqual(json, [{ pin: spkiPin(leafPem), subject: 'CN=localhost', role: 'leaf' }]);
  });

  it('pin of a chain file marks each certificate leaf or root', async () => {
    const chain = join(made.cwd, 'chain.pem');
    writeFileSync(chain, leafPem + caPem);
    const json = JSON.parse((await pkiOk(made.cwd, 'pin', chain, '--json')).stdout) as {
      role: string;
      pin: string;
    }[];
    assert.deepEqual(
      json.map((p) => [p.role, p.pin]),
      [
        ['leaf', spkiPin(leafPem)],
        ['root', spkiPin(caPem)],
      ],
    );
  });

  it('pin wss://127.0.0.1:PORT --ca ca.crt verifies the live chain and pins leaf and root', async () => {
    const { stdout } = await pkiOk(
      made.cwd,
      'pin',
      `wss://127.0.0.1:${port}`,
      '--ca',
      join(made.dir, 'ca.crt'),
    );
    const lines = stdout.trimEnd().split('\n');
    assert.equal(lines.length, 3);
    assert.match(lines[1] ?? '', new RegExp(`^leaf\\s+${escapeRegExp(spkiPin(leafPem))}\\s+CN=localhost$`));
    assert.match(
      lines[2] ?? '',
      new RegExp(`^root\\s+${escapeRegExp(spkiPin(caPem))}\\s+CN=Test Devices CA$`),
    );
    const json = JSON.parse(
      (
        await pkiOk(
          made.cwd,
          'pin',
          `wss://localhost:${port}/any/path`,
          '--ca',
          join(made.dir, 'ca.crt'),
          '--json',
        )
      ).stdout,
    ) as { role: string; pin: string }[];
    assert.deepEqual(
      json.map((p) => [p.role, p.pin]),
      [
        ['leaf', spkiPin(leafPem)],
        ['root', spkiPin(caPem)],
      ],
    );
  });

  it('pin wss:// refuses a chain it cannot verify: unknown CA, or a name the certificate does not cover', async () => {
    const untrusted = await pki(made.cwd, 'pin', `wss://127.0.0.1:${port}`);
    assert.equal(untrusted.code, 1);
    assert.match(
      untrusted.stderr,
      /127\.0\.0\.1:\d+: UNABLE_TO_VERIFY_LEAF_SIGNATURE: .*for a private CA pass --ca FILE/,
    );
    assert.equal(untrusted.stdout, '');
    const wrongName = await pki(
      made.cwd,
      'pin',
      `wss://127.0.0.1:${port}`,
      '--ca',
      join(made.dir, 'ca.crt'),
      '--servername',
      'other.example',
    );
    assert.equal(wrongName.code, 1);
    assert.match(wrongName.stderr, /ERR_TLS_CERT_ALTNAME_INVALID/);
    const byName = await pkiOk(
      made.cwd,
      'pin',
      `wss://127.0.0.1:${port}`,
      '--ca',
      join(made.dir, 'ca.crt'),
      '--servername',
      'gw.example',
    );
    assert.match(byName.stdout, /^leaf /m);
  });

  it('pin wss:// to a closed port fails with exit 1', async () => {
    const probe = tls.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const closed = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const result = await pki(made.cwd, 'pin', `wss://127.0.0.1:${closed}`);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /ECONNREFUSED/);
  });
});

describe('interop: openssl s_client with a certificate from the CLI', {
  skip: !HAS_OPENSSL && 'openssl not on PATH',
}, () => {
  it('completes an mTLS handshake with a Node TLS server that requires client certificates', async () => {
    const made = await makePki();
    const port = await mtlsServer(made, join(made.dir, 'crl.pem'));
    const result = await exec(
      'openssl',
      [
        's_client',
        '-connect',
        `127.0.0.1:${port}`,
        '-cert',
        made.device43.certPath,
        '-key',
        made.device43.keyPath,
        '-CAfile',
        join(made.dir, 'ca.crt'),
        '-verify_return_error',
        // Read until the server closes: under TLS 1.3 the server checks the client certificate
        // after the client's handshake is done, so its answer is the proof it accepted it.
        '-ign_eof',
      ],
      made.cwd,
    );
    // The exit status is not checked: OpenSSL 3 reports a peer that closes without close_notify
    // (as node:tls does after end()) as an error, after the exchange this test is about.
    assert.match(result.stdout, /Verify return code: 0 \(ok\)/, result.stderr);
    assert.match(result.stdout, /hello device-43/, 'the server saw the client certificate');
  });
});

/** A long-running process started through `sh -c`, in its own process group like a terminal job. */
interface Job {
  child: ChildProcess;
  output(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<number | null>;
  /** Sends a signal to the job's process group, as a terminal's Ctrl-C does. */
  signal(name: NodeJS.Signals): void;
}

function job(command: string, cwd: string, env: NodeJS.ProcessEnv): Job {
  // A simple command replaces the shell (exec), so signals and the exit status are the command's own.
  const script = /[|;&<>]/.test(command) ? command : `exec ${command}`;
  const child = spawn('sh', ['-c', script], { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  const wakers = new Set<() => void>();
  const append = (d: Buffer) => {
    out += d.toString();
    for (const wake of wakers) wake();
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  exited.then(() => {
    for (const wake of wakers) wake();
  });
  return {
    child,
    output: () => out,
    exited,
    signal(name) {
      if (child.pid !== undefined && child.exitCode === null) process.kill(-child.pid, name);
    },
    waitFor(pattern, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          wakers.delete(check);
          reject(new Error(`timed out waiting for ${pattern} from: ${command}\n${out}`));
        }, timeoutMs);
        function check() {
          const match = out.match(pattern);
          if (!match && child.exitCode === null && child.signalCode === null) return;
          clearTimeout(timer);
          wakers.delete(check);
          if (match) resolve(match);
          else reject(new Error(`exited before ${pattern}: ${command}\n${out}`));
        }
        wakers.add(check);
        check();
      });
    },
  };
}

/** The lines of the fenced blocks of one language; in `sh` blocks, continuation lines are joined. */
function fenced(markdown: string, lang: string): string[] {
  const blocks: string[] = [];
  for (const match of markdown.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)) {
    if (match[1] === lang) blocks.push(match[2] as string);
  }
  return blocks;
}

function shellCommands(markdown: string): string[] {
  return fenced(markdown, 'sh')
    .flatMap((block) => block.replace(/\\\n\s*/g, ' ').split('\n'))
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

describe('docs/mtls.md, run as written', () => {
  const doc = readFileSync(join(ROOT, 'docs', 'mtls.md'), 'utf8');
  const shown = shellCommands(doc);
  const ran = new Set<string>();
  // Below the repository, so `import WebSocket from 'ws'` in device.mjs resolves as in a project.
  mkdirSync(join(ROOT, 'tmp'), { recursive: true });
  const cwd = mkdtempSync(join(ROOT, 'tmp', 'mtls-doc-'));
  dirs.push(cwd);
  // `npx portcullis` as in an installed project: a shim on PATH runs this checkout's binary.
  const shim = join(cwd, '.bin');
  mkdirSync(shim);
  writeFileSync(
    join(shim, 'npx'),
    `#!/bin/sh\n[ "$1" = portcullis ] || exit 127\nshift\nexec "${process.execPath}" "${BIN}" "$@"\n`,
  );
  chmodSync(join(shim, 'npx'), 0o755);
  const env = { ...process.env, NO_COLOR: '1', PATH: `${shim}:${process.env.PATH ?? ''}` };
  let port = 0;
  let gateway: Job | undefined;
  let device42: Job | undefined;

  /** Starts a command the page shows (with the test's port for 8443). */
  function start(command: string): Job {
    assert.ok(shown.includes(command), `docs/mtls.md does not show: ${command}`);
    ran.add(command);
    return job(port === 0 ? command : command.replaceAll('8443', String(port)), cwd, env);
  }

  /** Runs a command the page shows to completion; resolves with its exit code and output. */
  async function sh(command: string): Promise<{ code: number | null; output: string }> {
    const j = start(command);
    const code = await j.exited;
    return { code, output: j.output() };
  }

  async function shOk(command: string): Promise<string> {
    const { code, output } = await sh(command);
    assert.equal(code, 0, `${command} exited ${code}:\n${output}`);
    return output;
  }

  after(() => {
    device42?.signal('SIGKILL');
    gateway?.signal('SIGKILL');
  });

  it('1-3: creates the CA and the server and device certificates, which openssl accepts', async () => {
    await shOk('npx portcullis pki init --name "Example Devices CA"');
    await shOk('npx portcullis pki issue server --dns localhost --ip 127.0.0.1');
    await shOk('npx portcullis pki issue client --name device-42');
    await shOk('npx portcullis pki issue client --name device-43 --uri spiffe://example.org/device/43');
    const listed = await shOk('npx portcullis pki list');
    assert.match(listed, /client\s+CN=device-43\s+\S+\s+valid/);
    assert.equal(mode(join(cwd, '.portcullis/pki/issued/device-42.key')), 0o600);
    if (HAS_OPENSSL) {
      const verified = await shOk(
        'openssl verify -CAfile .portcullis/pki/ca.crt .portcullis/pki/issued/localhost.crt .portcullis/pki/issued/device-42.crt',
      );
      assert.match(verified, /device-42\.crt: OK/);
    }
  });

  it('4: the mtls.yaml shown passes config check and serves', async () => {
    const [yaml] = fenced(doc, 'yaml').filter((b) => b.startsWith('# mtls.yaml\n'));
    assert.ok(yaml, 'docs/mtls.md has a yaml block starting with "# mtls.yaml"');
    assert.match(yaml, /port: 8443/);
    writeFileSync(join(cwd, 'mtls.yaml'), yaml.replace('port: 8443', 'port: 0'));
    assert.match(await shOk('npx portcullis config check mtls.yaml'), /^ok: 1 route/m);
    gateway = start('npx portcullis serve --config mtls.yaml');
    const [, url] = await gateway.waitFor(/Portcullis listening on (wss:\/\/127\.0\.0\.1:\d+)/);
    port = Number(new URL(url as string).port);
    assert.ok(port > 0);
  });

  it('5: device.mjs connects device-42; openssl s_client gets an HTTP answer with device-43; pin reads the live chain', async () => {
    const [js] = fenced(doc, 'js').filter((b) => b.startsWith('// device.mjs\n'));
    assert.ok(js, 'docs/mtls.md has a js block starting with "// device.mjs"');
    writeFileSync(join(cwd, 'device.mjs'), js.replaceAll('8443', String(port)));
    device42 = start('node device.mjs device-42');
    await device42.waitFor(/^received: hello from device-42$/m);
    // Log lines are buffered for up to log.flushIntervalMs.
    await (gateway as Job).waitFor(/"outcome":"accepted".*"identity":"device-42"/);

    if (HAS_OPENSSL) {
      const [sClient] = shown.filter((c) => c.includes('openssl s_client'));
      assert.ok(sClient);
      const answer = await shOk(sClient);
      assert.match(answer, /^HTTP\/1\.1 426 Upgrade Required/m);
      assert.match(answer, /"code":"UPGRADE_REQUIRED"/);
    }

    const pins = await shOk('npx portcullis pki pin wss://127.0.0.1:8443 --ca .portcullis/pki/ca.crt');
    const caPin = spkiPin(readFileSync(join(cwd, '.portcullis/pki/ca.crt'), 'utf8'));
    const leafPin = spkiPin(readFileSync(join(cwd, '.portcullis/pki/issued/localhost.crt'), 'utf8'));
    assert.match(pins, new RegExp(`^leaf\\s+${escapeRegExp(leafPin)}\\s+CN=localhost$`, 'm'));
    assert.match(pins, new RegExp(`^root\\s+${escapeRegExp(caPin)}\\s+CN=Example Devices CA$`, 'm'));
  });

  it('6: revoking device-42 closes its open connection with 4403 and refuses it again; device-43 still connects', async () => {
    const live = device42 as Job;
    const revokedAt = Date.now();
    const out = await shOk('npx portcullis pki revoke --cert .portcullis/pki/issued/device-42.crt');
    assert.match(out, /^Revoked CN=device-42 /m);
    await live.waitFor(/^closed: 4403 CERTIFICATE_REVOKED$/m, 5_000);
    const tookMs = Date.now() - revokedAt;
    assert.equal(await live.exited, 1);
    assert.ok(tookMs < 3_000, `closed ${tookMs} ms after revoke started`);
    await (gateway as Job).waitFor(/"event":"close","code":"CERTIFICATE_REVOKED","closeCode":4403/);

    const again = await sh('node device.mjs device-42');
    assert.equal(again.code, 1, again.output);
    assert.doesNotMatch(again.output, /received:/);
    assert.match(again.output, /^closed: 1006/m);
    await (gateway as Job).waitFor(/"event":"tls","outcome":"rejected","reason":"CERT_REVOKED"/);

    const other = start('node device.mjs device-43');
    await other.waitFor(/^received: hello from device-43$/m);
    other.signal('SIGINT');
    assert.equal(await other.exited, 0, other.output());
    assert.match(other.output(), /^closed: 1000/m);
  });

  it('7: re-signs the CRL, still listing device-42', async () => {
    const out = await shOk('npx portcullis pki crl --days 7');
    assert.match(out, /^Wrote \.portcullis\/pki\/crl\.pem: 1 revoked, next update /m);
    const device42Serial = new X509Certificate(
      readFileSync(join(cwd, '.portcullis/pki/issued/device-42.crt')),
    ).serialNumber.toLowerCase();
    assert.deepEqual(crlSerials(join(cwd, '.portcullis/pki/crl.pem')), [device42Serial]);
    gateway?.signal('SIGTERM');
    assert.equal(await gateway?.exited, 0);
  });

  it('shows no command that this test does not run', () => {
    assert.ok(shown.length >= 10, `found only ${shown.length} commands`);
    const skipped = HAS_OPENSSL
      ? []
      : shown.filter((c) => c.startsWith('openssl') || c.includes('| openssl'));
    assert.deepEqual(
      shown.filter((c) => !ran.has(c) && !skipped.includes(c)),
      [],
    );
  });
});

function expect(left: string, right: string): string {
  // The pin column is as wide as a pin, so SUBJECT starts after it.
  const width = 'leaf  '.length + 'sha256/'.length + 44;
  return `${left.padEnd(width)}  ${right}`;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
