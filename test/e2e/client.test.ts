// The SDK and `portcullis connect` against a real gateway over real TLS: echo, iteration, refusals
// that must not be retried, mutual TLS, the broker helpers with JWTs (acks, errors, refresh,
// resubscribe after a reconnect), and the CLI in pipe mode.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type CryptoKey, exportSPKI, generateKeyPair, SignJWT } from 'jose';
import type { Client, CloseEvent } from '../../src/client/client.js';
import { connect } from '../../src/client/index.js';
import { spkiPin } from '../../src/pki/index.js';
import { certFiles, echoRoute, startGateway, type TestGateway } from '../helpers/gateway.js';
import { testPki } from '../helpers/pki.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'portcullis.js');
const ISS = 'https://idp.test/';
const AUD = 'portcullis';
const EAGER = { initialDelayMs: 20, maxDelayMs: 40 };

function finalClose(client: Client): Promise<CloseEvent> {
  return new Promise((resolve) => {
    client.on('close', (event) => {
      if (!event.reconnecting) resolve(event);
    });
  });
}

function waitFor<T>(register: (done: (value: T) => void) => void, ms = 5_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out')), ms);
    register((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

describe('client SDK against the gateway: echo route', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway();
  });
  after(() => gw.close());

  it('sends, receives text and binary, iterates, and closes with 1000', async () => {
    const client = connect(`wss://localhost:${gw.port}/echo`, { ca: gw.ca, origin: 'https://app.test' });
    assert.equal(client.readyState, 0);
    await client.ready();
    assert.equal(client.readyState, 1);
    assert.equal(typeof client.bufferedAmount, 'number');
    client.send('hello');
    client.send(new Uint8Array([1, 2, 3]));
    const got: (string | Uint8Array)[] = [];
    for await (const message of client) {
      got.push(message);
      if (got.length === 2) break;
    }
    assert.equal(got[0], 'hello');
    assert.deepEqual(new Uint8Array(got[1] as Uint8Array), new Uint8Array([1, 2, 3]));
    const end = finalClose(client);
    client.close(1000, 'done');
    const closed = await end;
    assert.equal(closed.code, 1000);
    assert.equal(client.readyState, 3);
  });

  it('a refused Origin is ORIGIN_NOT_ALLOWED with the HTTP status, and is never retried', async () => {
    const before = gw.gateway.stats.rejectedByCode.ORIGIN_NOT_ALLOWED ?? 0;
    const client = connect(`wss://localhost:${gw.port}/echo`, {
      ca: gw.ca,
      origin: 'https://evil.test',
      reconnect: EAGER,
    });
    const errors: { code: string; status: number | undefined }[] = [];
    client.on('error', (e) => errors.push({ code: e.code, status: e.status }));
    const end = await finalClose(client);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(end.errorCode, 'ORIGIN_NOT_ALLOWED');
    assert.deepEqual(errors, [{ code: 'ORIGIN_NOT_ALLOWED', status: 403 }]);
    assert.equal((gw.gateway.stats.rejectedByCode.ORIGIN_NOT_ALLOWED ?? 0) - before, 1);
  });

  it('an unknown route is ROUTE_NOT_FOUND and is never retried', async () => {
    const client = connect(`wss://localhost:${gw.port}/nope`, {
      ca: gw.ca,
      origin: 'https://app.test',
      reconnect: EAGER,
    });
    assert.equal((await finalClose(client)).errorCode, 'ROUTE_NOT_FOUND');
  });

  it('the gateway shutting down (1001 SHUTTING_DOWN) is retried with backoff', async () => {
    const own = await startGateway();
    const client = connect(`wss://localhost:${own.port}/echo`, {
      ca: own.ca,
      origin: 'https://app.test',
      reconnect: { ...EAGER, maxAttempts: 1 },
    });
    await client.ready();
    const closes: CloseEvent[] = [];
    client.on('close', (e) => closes.push(e));
    await own.close();
    await finalClose(client);
    assert.equal(closes[0]?.errorCode, 'SHUTTING_DOWN');
    assert.equal(closes[0]?.reconnecting, true);
  });
});

describe('client SDK against the gateway: mutual TLS', () => {
  let gw: TestGateway;
  before(async () => {
    const files = await certFiles();
    gw = await startGateway({
      tls: { cert: files.cert, key: files.key, clientAuth: 'required', clientCa: files.ca },
      authenticators: { devices: { type: 'mtls', identityFrom: 'cn', allow: ['device-*'] } },
      routes: [echoRoute({ auth: ['devices'] })],
    });
  });
  after(() => gw.close());

  it('connects with a client certificate and pins, and the audit log names the device', async () => {
    const pki = await testPki();
    const client = connect(`wss://localhost:${gw.port}/echo`, {
      ca: gw.ca,
      cert: pki.client.certPem,
      key: pki.client.keyPem,
      origin: 'https://app.test',
      pins: [spkiPin(pki.server.certPem), spkiPin(pki.ca.certPem)],
    });
    await client.ready();
    const reply = waitFor<unknown>((done) => client.once('message', done));
    client.send('device says hi');
    assert.equal(await reply, 'device says hi');
    client.close();
    await finalClose(client);
    const accepted = gw.logs.find((l) => l.event === 'handshake' && l.outcome === 'accepted');
    assert.equal(accepted?.identity, 'device-1');
  });

  it('an expired client certificate is CLIENT_CERT_REJECTED and not retried', async () => {
    const pki = await testPki();
    const before = gw.gateway.stats.tlsRejected;
    const client = connect(`wss://localhost:${gw.port}/echo`, {
      ca: gw.ca,
      cert: pki.expiredClient.certPem,
      key: pki.expiredClient.keyPem,
      origin: 'https://app.test',
      reconnect: EAGER,
    });
    assert.equal((await finalClose(client)).errorCode, 'CLIENT_CERT_REJECTED');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(gw.gateway.stats.tlsRejected - before, 1);
  });
});

interface Idp {
  keyFile: string;
  token(claims?: Record<string, unknown>, ttlSec?: number): Promise<string>;
}

async function idp(): Promise<Idp> {
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-client-'));
  const keyFile = join(dir, 'app.pub.pem');
  writeFileSync(keyFile, await exportSPKI(publicKey));
  const key: CryptoKey = privateKey;
  return {
    keyFile,
    token: (claims = {}, ttlSec = 300) =>
      new SignJWT({ org: 'acme', ...claims })
        .setProtectedHeader({ alg: 'ES256' })
        .setSubject('alice')
        .setIssuer(ISS)
        .setAudience(AUD)
        .setIssuedAt()
        .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSec)
        .sign(key),
  };
}

async function brokerGateway(keys: Idp): Promise<TestGateway> {
  return startGateway({
    authenticators: {
      app: {
        type: 'jwt',
        keyFile: keys.keyFile,
        issuer: ISS,
        audience: AUD,
        algorithms: ['ES256'],
        clockToleranceSec: 0,
      },
    },
    routes: [
      // A JWT route without the broker: nothing refreshes in-band, so expiry closes the connection.
      echoRoute({ path: '/plain', auth: ['app'], allowMissingOrigin: true }),
      {
        path: '/live',
        auth: ['app'],
        allowMissingOrigin: true,
        subprotocols: ['portcullis.v1'],
        broker: {
          channels: [
            { pattern: 'user:{sub}', subscribe: true },
            { pattern: 'org:{claims.org}:*', subscribe: true, publish: true },
          ],
        },
      },
    ],
  });
}

describe('client SDK against the gateway: broker helpers', () => {
  let keys: Idp;
  let gw: TestGateway;
  before(async () => {
    keys = await idp();
    gw = await brokerGateway(keys);
  });
  after(() => gw.close());

  it('subscribe and publish resolve on acks; a forbidden channel rejects with FORBIDDEN', async () => {
    const client = connect(`wss://localhost:${gw.port}/live`, {
      ca: gw.ca,
      protocols: ['portcullis.v1'],
      token: () => keys.token(),
    });
    const received: unknown[] = [];
    await client.subscribe('org:acme:chat', (data, meta) => received.push([meta.channel, data]));
    assert.equal(client.protocol, 'portcullis.v1');
    await client.publish('org:acme:chat', { text: 'hello' });
    assert.deepEqual(received, [['org:acme:chat', { text: 'hello' }]]);
    await assert.rejects(
      client.subscribe('user:bob', () => {}),
      (err: { code: string }) => err.code === 'FORBIDDEN',
    );
    await assert.rejects(
      client.publish('org:globex:chat', 1),
      (err: { code: string }) => err.code === 'FORBIDDEN',
    );
    await client.refreshToken();
    await client.unsubscribe('org:acme:chat');
    client.close();
    await finalClose(client);
  });

  it('resubscribes after the gateway disconnects the user (DISCONNECTED, backoff)', async () => {
    const client = connect(`wss://localhost:${gw.port}/live`, {
      ca: gw.ca,
      protocols: ['portcullis.v1'],
      token: () => keys.token(),
      reconnect: EAGER,
    });
    const received: unknown[] = [];
    await client.subscribe('user:alice', (data) => received.push(data));
    const reopened = waitFor<void>((done) => client.on('open', ({ attempt }) => attempt === 2 && done()));
    const closes: CloseEvent[] = [];
    client.on('close', (e) => closes.push(e));
    assert.equal(gw.gateway.disconnect({ subject: 'alice' }), 1);
    await reopened;
    assert.equal(closes[0]?.errorCode, 'DISCONNECTED');
    // The resubscribe is in flight right after the open: wait until the gateway delivers again.
    for (let i = 0; i < 50 && received.length === 0; i++) {
      gw.gateway.publish('user:alice', { n: i });
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(received.length > 0, 'a publication after the reconnect reached the restored subscription');
    client.close();
    await finalClose(client);
  });

  it('C-07 CREDENTIAL_EXPIRED closes the connection and the provider is asked for a new token', async () => {
    const reasons: string[] = [];
    const client = connect(`wss://localhost:${gw.port}/plain`, {
      ca: gw.ca,
      token: async ({ reason }) => {
        reasons.push(reason);
        return keys.token({}, reasons.length === 1 ? 1 : 300);
      },
      reconnect: EAGER,
    });
    const closes: CloseEvent[] = [];
    client.on('close', (e) => closes.push(e));
    try {
      await waitFor<void>((done) => client.on('open', ({ attempt }) => attempt === 2 && done()), 8_000);
      assert.equal(closes[0]?.errorCode, 'CREDENTIAL_EXPIRED');
      assert.equal(closes[0]?.retry, 'refresh');
      assert.deepEqual(reasons, ['connect', 'refresh']);
    } finally {
      client.close();
    }
  });

  it('C-07 on a broker route a JWT is refreshed in-band before exp: the connection outlives its first token', async () => {
    const reasons: string[] = [];
    const client = connect(`wss://localhost:${gw.port}/live`, {
      ca: gw.ca,
      protocols: ['portcullis.v1'],
      token: async ({ reason }) => {
        reasons.push(reason);
        return keys.token({}, reasons.length === 1 ? 2 : 300);
      },
      refreshBeforeExpiryMs: 1_000,
      reconnect: EAGER,
    });
    const closes: CloseEvent[] = [];
    client.on('close', (e) => closes.push(e));
    try {
      const received: unknown[] = [];
      await client.subscribe('user:alice', (data) => received.push(data));
      await new Promise((r) => setTimeout(r, 3_500));
      assert.deepEqual(closes, []);
      assert.deepEqual(reasons, ['connect', 'expiring']);
      gw.gateway.publish('user:alice', 'still here');
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(received, ['still here']);
    } finally {
      client.close();
    }
  });

  it('C-07 an expired token at connect time is refused and refreshed before the next attempt', async () => {
    const tokens = [await keys.token({}, -60), await keys.token()];
    const reasons: string[] = [];
    const client = connect(`wss://localhost:${gw.port}/live`, {
      ca: gw.ca,
      protocols: ['portcullis.v1'],
      token: ({ reason }) => {
        reasons.push(reason);
        return tokens.shift() as string;
      },
      reconnect: EAGER,
    });
    await client.ready();
    assert.deepEqual(reasons, ['connect', 'refresh']);
    client.close();
    await finalClose(client);
  });
});

/** Runs the built CLI with stdin; resolves with its exit code and output. */
function cli(
  args: string[],
  stdin: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
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
      reject(new Error(`CLI timed out: ${stderr}`));
    }, 15_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(stdin);
  });
}

describe('portcullis connect', () => {
  let gw: TestGateway;
  let caFile: string;
  let keys: Idp;
  let brokerGw: TestGateway;
  before(async () => {
    gw = await startGateway();
    caFile = (await certFiles()).ca;
    keys = await idp();
    brokerGw = await brokerGateway(keys);
  });
  after(async () => {
    await gw.close();
    await brokerGw.close();
  });

  it('pipe mode: each stdin line is sent, each message printed; exit 0 after the 1000 close', async () => {
    const run = await cli(
      ['connect', `wss://localhost:${gw.port}/echo`, '--ca', caFile, '--origin', 'https://app.test'],
      'hello\nsecond line\n',
    );
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'hello\nsecond line\n');
    assert.match(run.stderr, /connected/);
    assert.match(run.stderr, /closed 1000/);
  });

  it('--pin with wrong pins: exit 1 with PIN_MISMATCH and the pins seen', async () => {
    const wrong = [
      `sha256/${Buffer.alloc(32, 7).toString('base64')}`,
      `sha256/${Buffer.alloc(32, 8).toString('base64')}`,
    ];
    const run = await cli(
      [
        'connect',
        `wss://localhost:${gw.port}/echo`,
        '--ca',
        caFile,
        '--origin',
        'https://app.test',
        '--pin',
        wrong[0] as string,
        '--pin',
        wrong[1] as string,
      ],
      'never sent\n',
    );
    assert.equal(run.code, 1);
    assert.match(run.stderr, /PIN_MISMATCH/);
    assert.ok(run.stderr.includes(spkiPin((await testPki()).server.certPem)));
    assert.equal(run.stdout, '');
  });

  it('--pin with the right pin and a backup connects; a single --pin is a usage error', async () => {
    const pki = await testPki();
    const ok = await cli(
      [
        'connect',
        `wss://localhost:${gw.port}/echo`,
        '--ca',
        caFile,
        '--origin',
        'https://app.test',
        '--pin',
        spkiPin(pki.server.certPem),
        `--pin=sha256/${Buffer.alloc(32, 9).toString('base64')}`,
      ],
      'pinned\n',
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, 'pinned\n');
    const one = await cli(
      ['connect', `wss://localhost:${gw.port}/echo`, '--pin', spkiPin(pki.server.certPem)],
      '',
    );
    assert.equal(one.code, 2);
    assert.match(one.stderr, /at least 2/);
  });

  it('--token-file and --protocol: broker frames through a JWT route; the token is never printed', async () => {
    const token = await keys.token();
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-token-'));
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    const run = await cli(
      [
        'connect',
        `wss://localhost:${brokerGw.port}/live`,
        '--ca',
        caFile,
        '--protocol',
        'portcullis.v1',
        '--token-file',
        tokenFile,
      ],
      '{"type":"subscribe","id":1,"channel":"user:alice"}\n{"type":"subscribe","id":2,"channel":"user:bob"}\n',
    );
    assert.equal(run.code, 0, run.stderr);
    const frames = run.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(frames[0]?.type, 'ack');
    assert.equal(frames[0]?.id, 1);
    assert.equal(frames[1]?.code, 'FORBIDDEN');
    assert.ok(!`${run.stdout}${run.stderr}`.includes(token));
  });

  it('a refused handshake exits 1 with the code', async () => {
    const run = await cli(
      ['connect', `wss://localhost:${gw.port}/echo`, '--ca', caFile, '--origin', 'https://evil.test'],
      '',
    );
    assert.equal(run.code, 1);
    assert.match(run.stderr, /ORIGIN_NOT_ALLOWED/);
  });

  it('usage errors exit 2', async () => {
    assert.equal((await cli(['connect'], '')).code, 2);
    assert.equal((await cli(['connect', 'wss://localhost:1/x', '--bogus'], '')).code, 2);
    const insecure = await cli(['connect', 'ws://gw.example/x'], '');
    assert.equal(insecure.code, 2);
    assert.match(insecure.stderr, /ws:\/\/ is refused/);
  });
});
