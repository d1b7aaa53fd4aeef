// Gateway mode end to end: a real TLS gateway in front of a Node `ws` app and of the Python example
// app (Debian's python3-websockets), with identities verified by the app's side with jose against
// the gateway's JWKS, balancing, health checks, and both legs closed on revocation and expiry.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, exportSPKI, generateKeyPair, type JWK, jwtVerify, SignJWT } from 'jose';
import type WebSocket from 'ws';
import { WebSocketServer } from 'ws';
import { checkConfigFile } from '../../src/config/check.js';
import { ConfigError } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { spkiPin } from '../../src/pki/index.js';
import { createGateway } from '../../src/server/gateway.js';
import { IDENTITY_ISSUER, IDENTITY_TYP, JWKS_PATH } from '../../src/server/identity-token.js';
import { closed, nextMessage, openClient, startGateway, type TestGateway } from '../helpers/gateway.js';
import { testPki } from '../helpers/pki.js';
import { HS, RawClient } from '../helpers/raw.js';
import {
  closedPort,
  type PythonUpstream,
  SYSTEM_PYTHON,
  startPythonUpstream,
  startWsUpstream,
  type WsUpstream,
} from '../helpers/upstream.js';
import { sleep, until } from '../helpers/wait.js';

type RouteInput = ConfigInput['routes'][number];

const ISS = 'https://idp.test/';

/** An upstream route: anonymous unless `auth` is given, Origin https://app.test. */
function upstreamRoute(
  path: string,
  upstream: Record<string, unknown>,
  extra: Partial<RouteInput> = {},
): RouteInput {
  return { path, auth: 'none', origins: ['https://app.test'], upstream, ...extra } as RouteInput;
}

/** Signs bearer tokens the gateway's `staff` authenticator accepts. */
async function issuer() {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-relay-'));
  const keyFile = join(dir, 'idp.pub.pem');
  writeFileSync(keyFile, await exportSPKI(publicKey));
  const sign = (claims: Record<string, unknown> = {}, ttlSec = 300) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ sub: 'alice', role: 'admin', secret: 'do-not-forward', ...claims })
      .setProtectedHeader({ alg: 'ES256' })
      .setIssuer(ISS)
      .setAudience('chat')
      .setIssuedAt(now)
      .setExpirationTime(now + ttlSec)
      .sign(privateKey);
  };
  const authenticators = {
    staff: {
      type: 'jwt',
      keyFile,
      issuer: ISS,
      audience: 'chat',
      algorithms: ['ES256'],
      clockToleranceSec: 0,
    },
  } as ConfigInput['authenticators'];
  return { sign, authenticators, dir };
}

/** GET over HTTPS trusting the test CA; resolves with status, headers and body. */
function httpsGet(
  gw: TestGateway,
  path: string,
  options: { method?: string; host?: string } = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port: gw.port,
        path,
        method: options.method ?? 'GET',
        ca: gw.ca,
        servername: 'localhost',
        headers: { host: options.host ?? `localhost:${gw.port}` },
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Runs `body` against a gateway started with `config`, and always closes the gateway. */
async function withGateway(
  config: Partial<ConfigInput>,
  body: (gw: TestGateway) => Promise<void>,
): Promise<void> {
  const gw = await startGateway(config);
  try {
    await body(gw);
  } finally {
    await gw.close();
  }
}

/** Opens a client on `path` with a bearer token and, optionally, subprotocols. */
function openWithToken(
  gw: TestGateway,
  path: string,
  token: string,
  protocols: string[] = [],
): Promise<WebSocket> {
  return openClient(gw, path, { headers: { authorization: `Bearer ${token}` }, protocols });
}

async function echo(ws: WebSocket, data: string | Buffer): Promise<{ data: Buffer; isBinary: boolean }> {
  const reply = nextMessage(ws);
  ws.send(data);
  return reply;
}

describe('relay to a Node ws app', () => {
  let app: WsUpstream;
  let gw: TestGateway;
  let idp: Awaited<ReturnType<typeof issuer>>;
  before(async () => {
    idp = await issuer();
    app = await startWsUpstream({ protocols: ['chat.v2', 'chat.v1'] });
    gw = await startGateway({
      authenticators: idp.authenticators,
      routes: [
        upstreamRoute(
          '/chat',
          { url: app.url, identityClaims: ['role'], passHeaders: ['x-request-id'] },
          {
            auth: ['staff'],
            subprotocols: ['chat.v1', 'chat.v2'],
          },
        ),
        upstreamRoute('/anon', { url: `${app.url}/fixed?from=gw` }),
        upstreamRoute(
          '/plain',
          { url: app.url, plainIdentityHeaders: true, identityHeader: false },
          {
            auth: ['staff'],
          },
        ),
        { path: '/echo', auth: 'none', origins: ['https://app.test'], echo: {} },
      ],
    });
  });
  after(async () => {
    await gw.close();
    await app.close();
  });

  it('relays text and binary both ways, and the upstream chooses the subprotocol among those offered', async () => {
    const token = await idp.sign();
    const ws = await openClient(gw, '/chat', {
      headers: { authorization: `Bearer ${token}`, 'x-request-id': 'r-1' },
      protocols: ['chat.v1', 'chat.v2', 'chat.v9'],
    });
    // The upstream prefers chat.v2; the gateway offered it the client's list minus what the route lacks.
    assert.equal(ws.protocol, 'chat.v2');
    const request = app.requests.at(-1);
    assert.equal(request?.headers['sec-websocket-protocol'], 'chat.v1,chat.v2');
    assert.equal(request?.headers['x-request-id'], 'r-1');
    assert.equal(request?.headers.authorization, undefined, 'Authorization is not on the allowlist');
    assert.equal(request?.url, '/chat');
    const text = await echo(ws, 'hello');
    assert.deepEqual([text.data.toString(), text.isBinary], ['hello', false]);
    const binary = await echo(ws, Buffer.from([0, 1, 2, 255]));
    assert.deepEqual([[...binary.data], binary.isBinary], [[0, 1, 2, 255], true]);
    ws.close(1000);
    await closed(ws);
  });

  it('hands the app an identity token it verifies with jose against /.well-known/portcullis/jwks.json', async () => {
    const token = await idp.sign({}, 120);
    const ws = await openWithToken(gw, '/chat', token, ['chat.v1']);
    const identity = app.requests.at(-1)?.headers['x-portcullis-identity'];
    assert.equal(typeof identity, 'string');
    const res = await httpsGet(gw, JWKS_PATH);
    assert.equal(res.status, 200);
    assert.match(String(res.headers['cache-control']), /max-age=\d+/);
    const jwks = JSON.parse(res.body) as { keys: JWK[] };
    assert.ok(
      jwks.keys.every((k) => k.kty === 'EC' && k.d === undefined),
      'public keys only',
    );
    const { payload, protectedHeader } = await jwtVerify(identity as string, createLocalJWKSet(jwks), {
      issuer: IDENTITY_ISSUER,
      audience: '/chat',
      typ: IDENTITY_TYP,
      algorithms: ['ES256'],
    });
    assert.equal(protectedHeader.alg, 'ES256');
    assert.equal(payload.sub, 'alice');
    assert.equal(payload.auth, 'staff');
    assert.equal(payload.role, 'admin', 'identityClaims are copied');
    assert.equal(payload.secret, undefined, 'claims not listed stay in the gateway');
    assert.ok((payload.exp as number) - (payload.iat as number) <= 60, 'short-lived');
    ws.close();
    await closed(ws);
  });

  it('serves the JWKS only to GET/HEAD and under the Host rules', async () => {
    assert.equal((await httpsGet(gw, JWKS_PATH, { method: 'POST' })).status, 405);
    assert.equal((await httpsGet(gw, JWKS_PATH, { method: 'HEAD' })).status, 200);
    assert.equal((await httpsGet(gw, `${JWKS_PATH}x`)).status, 404);
    // A Host that does not match the TLS server name is refused here as everywhere else.
    assert.equal((await httpsGet(gw, JWKS_PATH, { host: 'gw.test' })).status, 421);
  });

  it('passes plain identity headers only where the route opts in, percent-encoded', async () => {
    const token = await idp.sign({ sub: 'bob\u00e9 %x' });
    const ws = await openWithToken(gw, '/plain', token);
    const headers = app.requests.at(-1)?.headers ?? {};
    assert.equal(headers['x-portcullis-subject'], 'bob%C3%A9%20%25x');
    assert.equal(headers['x-portcullis-authenticator'], 'staff');
    assert.equal(headers['x-portcullis-identity'], undefined);
    ws.close();
    await closed(ws);
  });

  it('an anonymous route forwards no identity; a URL with a path replaces the client path', async () => {
    const ws = await openClient(gw, '/anon?room=7&access_token=leak&ticket=t');
    const request = app.requests.at(-1);
    assert.equal(request?.headers['x-portcullis-identity'], undefined);
    assert.equal(request?.url, '/fixed?from=gw&room=7', 'credential parameters are never replayed');
    assert.equal(request?.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(request?.headers['x-forwarded-proto'], 'https');
    assert.equal(request?.headers['x-forwarded-host'], 'localhost');
    ws.close();
    await closed(ws);
  });

  it('maps closes: the client code reaches the app, an app code reaches the client without its reason', async () => {
    const ws = await openClient(gw, '/anon');
    const upstream = await until(() => app.sockets.at(-1), 'upstream socket');
    const seen = new Promise<number>((resolve) => upstream.once('close', (code) => resolve(code)));
    ws.close(4000, 'bye');
    assert.equal(await seen, 4000);
    await closed(ws);

    const ws2 = await openClient(gw, '/anon');
    const upstream2 = await until(() => (app.sockets.length > 0 ? app.sockets.at(-1) : undefined), 'socket');
    const got = closed(ws2);
    upstream2.close(4001, 'stack trace at db-7.internal:5432');
    assert.deepEqual(await got, { code: 4001, reason: '' });
  });

  it('a revoked identity closes both legs: 4401 to the client, 1001 CREDENTIAL_REVOKED to the app', async () => {
    const token = await idp.sign({ sub: 'carol' });
    const ws = await openWithToken(gw, '/chat', token, ['chat.v1']);
    const upstream = app.sockets.at(-1) as WebSocket;
    const seen = new Promise<[number, string]>((resolve) =>
      upstream.once('close', (code, reason) => resolve([code, reason.toString()])),
    );
    const got = closed(ws);
    assert.equal(await gw.gateway.revoke({ subject: 'carol' }), 1);
    assert.equal((await got).code, 4401);
    assert.deepEqual(await seen, [1001, 'CREDENTIAL_REVOKED']);
  });

  it('an expiring identity closes both legs when the credential expires', async () => {
    const token = await idp.sign({ sub: 'dave' }, 1);
    const ws = await openWithToken(gw, '/chat', token, ['chat.v1']);
    const upstream = app.sockets.at(-1) as WebSocket;
    const seen = new Promise<[number, string]>((resolve) =>
      upstream.once('close', (code, reason) => resolve([code, reason.toString()])),
    );
    const got = await closed(ws);
    assert.equal(got.code, 4401);
    assert.equal(got.reason, 'CREDENTIAL_EXPIRED');
    assert.deepEqual(await seen, [1001, 'CREDENTIAL_EXPIRED']);
  });
});

describe('relay policies and lifecycle', () => {
  let app: WsUpstream;
  let gw: TestGateway;
  let dir: string;
  before(async () => {
    app = await startWsUpstream();
    dir = mkdtempSync(join(tmpdir(), 'portcullis-relay-schema-'));
    const schema = join(dir, 'chat.json');
    writeFileSync(
      schema,
      JSON.stringify({ type: 'object', required: ['text'], properties: { text: { type: 'string' } } }),
    );
    gw = await startGateway({
      routes: [
        upstreamRoute('/schema', { url: app.url }, { schema }),
        upstreamRoute('/deflate', { url: app.url }, { perMessageDeflate: true }),
        upstreamRoute(
          '/small',
          { url: app.url },
          { limits: { maxMessageBytes: 1_024, maxSendQueueBytes: 1_048_576, bytesBurst: 2_097_152 } },
        ),
      ],
    });
  });
  after(async () => {
    await gw.close();
    await app.close();
  });

  it('the route schema applies to client-to-upstream messages: a violation closes and never reaches the app', async () => {
    const ws = await openClient(gw, '/schema');
    const upstream = await until(() => app.sockets.at(-1), 'upstream');
    const received: string[] = [];
    upstream.on('message', (d) => received.push(d.toString()));
    assert.equal((await echo(ws, '{"text":"hi"}')).data.toString(), '{"text":"hi"}');
    const got = closed(ws);
    ws.send('{"text":5}');
    assert.equal((await got).code, 1008);
    await sleep(50);
    assert.deepEqual(received, ['{"text":"hi"}']);
  });

  it('the size limit applies to both directions: an oversized app message closes the client 1014, never delivered', async () => {
    const ws = await openClient(gw, '/small');
    const upstream = await until(() => app.sockets.at(-1), 'upstream');
    const messages: Buffer[] = [];
    ws.on('message', (d) => messages.push(d as Buffer));
    const got = closed(ws);
    upstream.send(Buffer.alloc(1_025));
    assert.equal((await got).code, 1014);
    assert.equal(messages.length, 0);
    const ws2 = await openClient(gw, '/small');
    const got2 = closed(ws2);
    ws2.send(Buffer.alloc(1_025));
    assert.equal((await got2).code, 1009);
  });

  it('an upgrade ws refuses after the upstream answered releases the upstream leg', async () => {
    const before = app.sockets.length;
    const client = await RawClient.connect(gw.port, gw.ca);
    // An extension offer the gateway passes and ws then refuses (a window size out of range).
    client.write(
      HS(
        { 'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits=99' },
        { path: '/deflate' },
      ),
    );
    const res = await client.readResponse();
    assert.equal(res.status, 400);
    client.destroy();
    // The upstream was connected first (prepare runs before ws sees the offer), and is let go with 1001.
    const upstream = await until(
      () => (app.sockets.length > before ? app.sockets.at(-1) : undefined),
      'upstream',
    );
    const [code] = await until(() => app.closes.get(upstream), 'the upstream leg to close');
    assert.equal(code, 1001);
  });

  it('a reload keeps the identity key: the JWKS still verifies tokens issued before it', async () => {
    const idp = await issuer();
    await withGateway(
      {
        authenticators: idp.authenticators,
        routes: [upstreamRoute('/r', { url: app.url }, { auth: ['staff'] })],
      },
      async (gw2) => {
        const before = JSON.parse((await httpsGet(gw2, JWKS_PATH)).body) as { keys: JWK[] };
        await gw2.gateway.reload({ ...gw2.gateway.config });
        const after = JSON.parse((await httpsGet(gw2, JWKS_PATH)).body) as { keys: JWK[] };
        assert.deepEqual(
          after.keys.map((k) => k.kid),
          before.keys.map((k) => k.kid),
        );
      },
    );
  });
});

describe('wss:// upstreams: CA, pins, client certificate', () => {
  let upstreamPort: number;
  let server: ReturnType<typeof createHttpsServer>;
  let wss: WebSocketServer;
  let dir: string;
  let pins: { good: string; bad: string };
  const clientCns: string[] = [];
  before(async () => {
    const pki = await testPki();
    dir = mkdtempSync(join(tmpdir(), 'portcullis-relay-tls-'));
    for (const [name, text] of Object.entries({
      'ca.crt': pki.ca.certPem,
      'client.crt': pki.client.certPem,
      'client.key': pki.client.keyPem,
    })) {
      writeFileSync(join(dir, name), text);
    }
    pins = { good: spkiPin(pki.server.certPem), bad: spkiPin(pki.otherCa.certPem) };
    server = createHttpsServer({
      cert: pki.server.certPem,
      key: pki.server.keyPem,
      ca: pki.ca.certPem,
      requestCert: true,
      rejectUnauthorized: true,
    });
    wss = new WebSocketServer({ server });
    wss.on('connection', (ws, req) => {
      const cert = (req.socket as import('node:tls').TLSSocket).getPeerCertificate();
      clientCns.push(String(cert.subject?.CN));
      ws.on('message', (d, isBinary) => ws.send(d, { binary: isBinary }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    upstreamPort = (server.address() as AddressInfo).port;
  });
  after(async () => {
    wss.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('connects with the route CA, a matching pin and a client certificate; refuses a wrong pin or an unknown CA', async () => {
    const url = `wss://localhost:${upstreamPort}`;
    const tls = { ca: join(dir, 'ca.crt'), cert: join(dir, 'client.crt'), key: join(dir, 'client.key') };
    await withGateway(
      {
        routes: [
          upstreamRoute('/ok', { url, ...tls, pins: [pins.good, pins.bad] }),
          upstreamRoute('/ip', { url: `wss://127.0.0.1:${upstreamPort}`, ...tls, servername: 'localhost' }),
          upstreamRoute('/bad-pin', { url, ...tls, pins: [pins.bad] }),
          upstreamRoute('/no-ca', { url, cert: tls.cert, key: tls.key }),
          upstreamRoute('/no-cert', { url, ca: tls.ca }),
        ],
      },
      async (gw) => {
        for (const path of ['/ok', '/ip']) {
          const ws = await openClient(gw, path);
          assert.equal((await echo(ws, 'over tls')).data.toString(), 'over tls', path);
          ws.terminate();
        }
        assert.deepEqual(clientCns.slice(0, 2), ['device-1', 'device-1']);
        for (const path of ['/bad-pin', '/no-ca', '/no-cert']) {
          await assert.rejects(openClient(gw, path), /unexpected status 502/, path);
        }
        const failures = gw.logs.filter((l) => l.event === 'upstream' && l.outcome === 'failed');
        assert.equal(failures.find((l) => l.route === '/bad-pin')?.detail, 'PIN_MISMATCH');
      },
    );
  });
});

// Skipped only on a developer machine without Debian's python3; in CI (.ci/run installs
// python3-websockets) a missing interpreter fails instead of hiding.
describe('relay to the Python websockets app', {
  skip: !process.env.CI && !existsSync(SYSTEM_PYTHON),
}, () => {
  let py: PythonUpstream;
  let gw: TestGateway;
  let idp: Awaited<ReturnType<typeof issuer>>;
  before(async () => {
    idp = await issuer();
    py = await startPythonUpstream();
    gw = await startGateway({
      authenticators: idp.authenticators,
      routes: [upstreamRoute('/py', { url: py.url }, { auth: ['staff'], subprotocols: ['chat.v1'] })],
    });
  });
  after(async () => {
    await gw.close();
    await py.close();
  });

  it('interoperates: echo, the subprotocol Python chose, forwarded and identity headers', async () => {
    const token = await idp.sign();
    const ws = await openWithToken(gw, '/py', token, ['chat.v1']);
    assert.equal(ws.protocol, 'chat.v1');
    assert.equal((await echo(ws, 'ping from node')).data.toString(), 'ping from node');
    assert.deepEqual([...(await echo(ws, Buffer.from([9, 8, 7]))).data], [9, 8, 7]);
    const who = JSON.parse((await echo(ws, 'whoami')).data.toString()) as {
      subprotocol: string;
      path: string;
      headers: Record<string, string>;
    };
    assert.equal(who.subprotocol, 'chat.v1');
    assert.equal(who.path, '/py');
    assert.equal(who.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(who.headers['x-forwarded-proto'], 'https');
    const jwks = JSON.parse((await httpsGet(gw, JWKS_PATH)).body) as { keys: JWK[] };
    const { payload } = await jwtVerify(
      who.headers['x-portcullis-identity'] as string,
      createLocalJWKSet(jwks),
      {
        issuer: IDENTITY_ISSUER,
        audience: '/py',
      },
    );
    assert.equal(payload.sub, 'alice');
    ws.close();
    await closed(ws);
  });

  it('an application close code from Python reaches the client, its reason does not', async () => {
    const token = await idp.sign();
    const ws = await openWithToken(gw, '/py', token, ['chat.v1']);
    const got = closed(ws);
    ws.send('close:4002');
    assert.deepEqual(await got, { code: 4002, reason: '' });
  });
});

describe('several upstreams', () => {
  let a: WsUpstream;
  let b: WsUpstream;
  before(async () => {
    a = await startWsUpstream();
    b = await startWsUpstream();
  });
  after(async () => {
    await a.close();
    await b.close();
  });

  it('round-robin alternates; least-connections prefers the upstream with fewer connections', async () => {
    await withGateway(
      {
        routes: [
          upstreamRoute('/rr', { url: [a.url, b.url] }),
          upstreamRoute('/lc', { url: [a.url, b.url], balance: 'least-connections' }),
        ],
      },
      async (gw) => {
        /** Opens a client and says which upstream took it. */
        const open = async (path: string): Promise<[WebSocket, 'a' | 'b']> => {
          const before = a.requests.length;
          const ws = await openClient(gw, path);
          return [ws, a.requests.length > before ? 'a' : 'b'];
        };
        const rr = [await open('/rr'), await open('/rr'), await open('/rr'), await open('/rr')];
        assert.deepEqual(
          rr.map(([, u]) => u),
          ['a', 'b', 'a', 'b'],
        );
        const lc = [await open('/lc'), await open('/lc'), await open('/lc'), await open('/lc')];
        assert.deepEqual(
          lc.map(([, u]) => u),
          ['a', 'b', 'a', 'b'],
          'ties rotate',
        );
        // Now a and b hold two /lc connections each and the rotation points at a; free one on b.
        const onB = lc[3]?.[0] as WebSocket;
        const bOpen = b.server.clients.size;
        onB.close();
        await closed(onB);
        await until(() => b.server.clients.size === bOpen - 1, 'the upstream leg to close');
        await sleep(20);
        assert.equal((await open('/lc'))[1], 'b');
        for (const [ws] of [...rr, ...lc]) ws.terminate();
      },
    );
  });

  it('retries a refused upstream on the next one and ejects it after ejectAfterFailures', async () => {
    const dead = `ws://127.0.0.1:${await closedPort()}`;
    await withGateway(
      {
        routes: [
          upstreamRoute('/r', { url: [dead, a.url], retries: 1, ejectAfterFailures: 2, ejectForMs: 60_000 }),
        ],
      },
      async (gw) => {
        for (let i = 0; i < 6; i++) {
          const ws = await openClient(gw, '/r');
          assert.equal((await echo(ws, `m${i}`)).data.toString(), `m${i}`);
          ws.terminate();
        }
        const failures = gw.logs.filter((l) => l.event === 'upstream' && l.outcome === 'failed');
        assert.equal(failures.length, 2, 'the dead upstream is ejected after two refusals');
        assert.equal(failures[0]?.failure, 'refused');
      },
    );
  });

  it('active health checks take a dead upstream out before any client meets it', async () => {
    const dead = `ws://127.0.0.1:${await closedPort()}`;
    await withGateway(
      {
        routes: [
          upstreamRoute('/h', {
            url: [dead, a.url],
            retries: 0,
            healthCheck: { type: 'websocket', intervalMs: 200, timeoutMs: 100, unhealthyAfter: 1 },
          }),
          upstreamRoute('/none', {
            url: dead,
            healthCheck: {
              type: 'http',
              path: '/healthz',
              intervalMs: 200,
              timeoutMs: 100,
              unhealthyAfter: 1,
            },
          }),
        ],
      },
      async (gw) => {
        await sleep(150);
        for (let i = 0; i < 4; i++) (await openClient(gw, '/h')).terminate();
        assert.equal(gw.logs.filter((l) => l.event === 'upstream').length, 0);
        await assert.rejects(openClient(gw, '/none'), /unexpected status 503/);
      },
    );
  });
});

describe('upstream configuration', () => {
  it('refuses unreadable files and a bad identity key at start, naming the key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-relay-cfg-'));
    const rsa = join(dir, 'rsa.pem');
    writeFileSync(
      rsa,
      generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
    );
    const base = { listen: { host: '127.0.0.1', port: 0 }, tls: false } as const;
    const issuesOf = (upstream: Record<string, unknown>) => {
      try {
        createGateway({ ...base, routes: [upstreamRoute('/x', upstream)] } as ConfigInput);
      } catch (err) {
        if (err instanceof ConfigError) return err.issues.join('\n');
        throw err;
      }
      return '';
    };
    assert.match(
      issuesOf({ url: 'wss://127.0.0.1:1', ca: join(dir, 'missing.crt') }),
      /^routes\[0\]\.upstream\.ca: /,
    );
    assert.match(
      issuesOf({ url: 'ws://127.0.0.1:1', identityKeyFile: rsa }),
      /routes\[0\]\.upstream\.identityKeyFile: .*P-256/,
    );
    assert.match(issuesOf({ url: 'ws://127.0.0.1:1', passHeaders: ['X-Forwarded-For'] }), /passHeaders\[0\]/);
    assert.match(issuesOf({ url: 'ws://127.0.0.1:1', passHeaders: ['x_user'] }), /underscores/);
    assert.match(issuesOf({ url: ['ws://a:1', 'ws://a:1'] }), /twice/);
    assert.match(issuesOf({ url: ['ws://a:1', 'wss://b:1'] }), /mixes/);
    assert.match(issuesOf({ url: 'http://a:1' }), /ws:\/\/ or wss:\/\//);
    assert.match(issuesOf({ url: 'ws://user:pw@a:1' }), /credentials/);
    assert.match(issuesOf({ url: 'ws://a:1', ca: 'x.crt' }), /wss:\/\/ upstreams only/);
  });

  it('signs with a key file: its thumbprint is the kid the JWKS publishes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-relay-key-'));
    const keyFile = join(dir, 'identity.key');
    writeFileSync(
      keyFile,
      generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
    );
    const app = await startWsUpstream();
    const idp = await issuer();
    const gw = await startGateway({
      authenticators: idp.authenticators,
      routes: [
        upstreamRoute(
          '/k',
          { url: app.url, identityKeyFile: keyFile, identityAudience: 'chat-app' },
          { auth: ['staff'] },
        ),
      ],
    });
    try {
      const ws = await openWithToken(gw, '/k', await idp.sign());
      const jwks = JSON.parse((await httpsGet(gw, JWKS_PATH)).body) as { keys: JWK[] };
      assert.equal(jwks.keys.length, 1);
      const token = app.requests.at(-1)?.headers['x-portcullis-identity'] as string;
      const { protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks), { audience: 'chat-app' });
      assert.equal(protectedHeader.kid, jwks.keys[0]?.kid);
      ws.terminate();
    } finally {
      await gw.close();
      await app.close();
    }
  });

  it('the example configs (examples/upstream-node, examples/upstream-python) pass config check and build', async () => {
    for (const file of [
      'examples/upstream-node/portcullis.yaml',
      'examples/upstream-python/portcullis.yaml',
    ]) {
      const result = checkConfigFile(file);
      assert.ok(result.ok, `${file}: ${result.lines.join('; ')}`);
      await createGateway(result.config as NonNullable<typeof result.config>).close();
    }
  });

  it('serves no JWKS when no route signs identities', async () => {
    await withGateway({}, async (gw) => {
      assert.equal((await httpsGet(gw, JWKS_PATH)).status, 404);
    });
  });
});
