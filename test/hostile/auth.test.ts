// Threat rows A-01..A-10, H-05/H-06 (ambient credentials) and T-08 (../shared/threats.md) against a
// real gateway: every credential is real (ES256 tokens signed with jose against a key file and a
// JWKS served over local HTTPS, HMAC-signed session cookies, bcrypt hashes, client certificates
// issued by src/pki) and every exchange goes over a real TLS socket on 127.0.0.1.
import assert from 'node:assert/strict';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ConnectionOptions } from 'node:tls';
import bcrypt from 'bcryptjs';
import { type CryptoKey, exportJWK, exportSPKI, generateKeyPair, type JWK, SignJWT } from 'jose';
import WebSocket from 'ws';
import type { ConfigInput } from '../../src/config/schema.js';
import { type Issued, issueCertificate } from '../../src/pki/index.js';
import { signSessionCookie } from '../../src/server/auth/cookie-sign.js';
import { BEARER_PROTOCOL_PREFIX } from '../../src/server/auth/token.js';
import {
  canary,
  certFiles,
  closed,
  echoRoute,
  nextMessage,
  openClient,
  startGateway,
  type TestGateway,
} from '../helpers/gateway.js';
import { testPki } from '../helpers/pki.js';
import { F, HS, RawClient } from '../helpers/raw.js';

const ISS = 'https://idp.test/';
const AUD = 'chat';
const TYP = 'at+jwt';
const PASSWORD = 'SENTINEL-PASSWORD-correct-horse';
const ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';

type Response = Awaited<ReturnType<RawClient['readResponse']>>;
type RouteInput = ConfigInput['routes'][number];

interface Signer {
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly jwk: JWK;
  readonly spki: string;
}

async function signer(kid: string): Promise<Signer> {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  return { kid, privateKey, jwk, spki: await exportSPKI(publicKey) };
}

const nowSec = () => Math.floor(Date.now() / 1000);
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A valid claim set for `sub`, with `claims` on top; an `undefined` value removes a claim. */
function claimSet(sub: string, claims: Record<string, unknown> = {}): Record<string, unknown> {
  const now = nowSec();
  const merged: Record<string, unknown> = { iss: ISS, aud: AUD, sub, iat: now, exp: now + 300, ...claims };
  for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
  return merged;
}

/** Signs an access token (typ at+jwt, ES256) for `sub`; header fields may be overridden. */
function jwt(
  s: Signer,
  sub: string,
  claims: Record<string, unknown> = {},
  header: Record<string, unknown> = {},
): Promise<string> {
  return new SignJWT(claimSet(sub, claims))
    .setProtectedHeader({ alg: 'ES256', typ: TYP, kid: s.kid, ...header })
    .sign(s.privateKey);
}

/** A throwaway TLS connection with optional client certificate. */
function connect(gw: TestGateway, tls: ConnectionOptions = {}): Promise<RawClient> {
  return RawClient.connect(gw.port, gw.ca, tls);
}

/**
 * Sends one request that must be refused: exactly one response with `status` and body
 * `{code, message}`, `Connection: close`, no 101 and no Set-Cookie, then the server closes the
 * connection and nothing else ever arrives.
 */
async function expectRefused(
  gw: TestGateway,
  request: string | Buffer,
  status: number,
  code: string,
  label: string,
  tls: ConnectionOptions = {},
): Promise<Response> {
  const client = await connect(gw, tls);
  try {
    client.write(request);
    const res = await client.readResponse();
    assert.equal(res.status, status, `${label}: ${res.raw}`);
    assert.deepEqual(Object.keys(JSON.parse(res.body)).sort(), ['code', 'message'], label);
    assert.equal(JSON.parse(res.body).code, code, label);
    assert.equal(res.headers.connection, 'close', label);
    assert.equal(res.headers['sec-websocket-accept'], undefined, label);
    assert.equal(res.headers['set-cookie'], undefined, label);
    await client.waitClosed();
    assert.equal(client.pending().length, 0, `${label}: bytes after the refusal`);
    return res;
  } finally {
    client.destroy();
  }
}

/** Sends a handshake that must be accepted; the connection is dropped afterwards. */
async function expectAccepted(
  gw: TestGateway,
  request: string,
  label: string,
  tls: ConnectionOptions = {},
): Promise<Response> {
  const client = await connect(gw, tls);
  try {
    client.write(request);
    const res = await client.readResponse();
    assert.equal(res.status, 101, `${label}: ${res.raw}`);
    assert.equal(res.headers['sec-websocket-accept'], ACCEPT, label);
    assert.equal(res.headers['set-cookie'], undefined, label);
    return res;
  } finally {
    client.destroy();
  }
}

/** The handshake audit lines written since log index `from`. */
function handshakes(gw: TestGateway, from: number): Record<string, unknown>[] {
  return gw.logs.slice(from).filter((l) => l.event === 'handshake');
}

/** The one handshake audit line written since `from`, checked field by field. */
function assertAudit(gw: TestGateway, from: number, expected: Record<string, unknown>, label = ''): void {
  const lines = handshakes(gw, from);
  assert.equal(lines.length, 1, `${label}: expected one handshake line, got ${JSON.stringify(lines)}`);
  const line = lines[0] as Record<string, unknown>;
  for (const [key, value] of Object.entries(expected)) assert.deepEqual(line[key], value, `${label}: ${key}`);
}

/** Asserts that none of `secrets` appears anywhere in what the gateway logged. */
function assertNotLogged(gw: TestGateway, secrets: readonly string[]): void {
  const log = gw.rawLog();
  for (const secret of secrets) {
    assert.ok(secret.length >= 8, 'a secret to look for must be specific');
    assert.ok(!log.includes(secret), `the log contains ${secret.slice(0, 24)}...`);
  }
}

/** Rejects when `promise` takes longer than `ms`. */
async function within<T>(promise: Promise<T>, ms: number, label: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The next text message parsed as JSON, within `ms`. */
async function nextJson(ws: WebSocket, ms = 3_000): Promise<Record<string, unknown>> {
  const { data } = await within(nextMessage(ws), ms, 'next message');
  return JSON.parse(data.toString()) as Record<string, unknown>;
}

/** Sends `text` and expects it echoed within a second. */
async function echoes(ws: WebSocket, text: string): Promise<void> {
  const reply = nextMessage(ws);
  ws.send(text);
  const { data } = await within(reply, 1_000, `echo of ${text}`);
  assert.equal(data.toString(), text);
}

/** Opens a WebSocket with a bearer token (and whatever else `options` adds). */
function openWithToken(
  gw: TestGateway,
  path: string,
  token: string,
  options: Parameters<typeof openClient>[2] = {},
): Promise<WebSocket> {
  return openClient(gw, path, {
    ...options,
    headers: { authorization: `Bearer ${token}`, ...options.headers },
  });
}

/** Closes a client and waits for the close handshake. */
async function bye(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return;
  const done = closed(ws);
  ws.close(1000);
  await within(done, 3_000, 'client close');
}

/** A plain HTTP request to the ticket endpoint. */
function ticketRequest(
  headers: Record<string, string | null>,
  options: { method?: string; route?: string } = {},
): string {
  const all: Record<string, string | null> = {
    Host: 'localhost',
    Origin: 'https://app.test',
    'x-portcullis-ticket': '1',
    'Content-Length': '0',
    ...headers,
  };
  if ((options.method ?? 'POST') === 'OPTIONS') delete all['Content-Length'];
  let out = `${options.method ?? 'POST'} /.portcullis/ticket?route=${options.route ?? '/tix'} HTTP/1.1\r\n`;
  for (const [k, v] of Object.entries(all)) if (v !== null) out += `${k}: ${v}\r\n`;
  return `${out}\r\n`;
}

/** Sends one plain request and reads its response. */
async function request(gw: TestGateway, text: string): Promise<Response> {
  const client = await connect(gw);
  try {
    client.write(text);
    return await client.readResponse();
  } finally {
    client.destroy();
  }
}

type AuthenticatorInput = NonNullable<ConfigInput['authenticators']>[string];

/** The access-token authenticator: ES256 from a PEM key file, typ at+jwt, no clock tolerance. */
const staffConfig = (keyFile: string): AuthenticatorInput => ({
  type: 'jwt',
  keyFile,
  issuer: ISS,
  audience: AUD,
  algorithms: ['ES256'],
  clockToleranceSec: 0,
  typ: TYP,
});

describe('authentication and authorization (threats A-01..A-10, H-05, H-06, T-08)', () => {
  let dir: string;
  let gw: TestGateway;
  let staff: Signer;
  let attacker: Signer;
  let idpKey: Signer;
  let keyFile: string;
  let cookieKey: string;
  let jwks: HttpsServer;
  let jwksHits = 0;
  let spy: HttpServer;
  let spyUrl: string;
  let spyRequests = 0;
  let device1: Issued;
  let device2: Issued;
  let laptop: Issued;
  const x5t = (issued: Issued) =>
    createHash('sha256').update(new X509Certificate(issued.certPem).raw).digest('base64url');
  const cookie = (sub: string, claims: Record<string, unknown> = {}) =>
    signSessionCookie({ sub, exp: nowSec() + 300, ...claims }, cookieKey);

  before(async () => {
    const pki = await testPki();
    dir = mkdtempSync(join(tmpdir(), 'portcullis-auth-'));
    [staff, attacker, idpKey] = await Promise.all([signer('staff-1'), signer('staff-1'), signer('idp-1')]);
    keyFile = join(dir, 'staff.pem');
    writeFileSync(keyFile, staff.spki);
    cookieKey = randomBytes(48).toString('base64');
    const cookieKeyFile = join(dir, 'session.key');
    writeFileSync(cookieKeyFile, `${cookieKey}\n`);
    const htpasswd = join(dir, 'users.htpasswd');
    writeFileSync(htpasswd, `ops:${bcrypt.hashSync(PASSWORD, 4)}\n`);
    device1 = pki.client;
    [device2, laptop] = await Promise.all([
      issueCertificate(pki.ca, { kind: 'client', commonName: 'device-2' }),
      issueCertificate(pki.ca, { kind: 'client', commonName: 'laptop-7' }),
    ]);

    // The identity provider's JWKS, over real HTTPS with a certificate from the test CA.
    jwks = createHttpsServer({ cert: pki.server.certPem, key: pki.server.keyPem }, (_req, res) => {
      jwksHits++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [idpKey.jwk] }));
    });
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    // The attacker's key server (A-05): any request here means a header-supplied URL was followed.
    spy = createHttpServer((_req, res) => {
      spyRequests++;
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ keys: [attacker.jwk] }));
    });
    spy.on('connection', () => spyRequests++);
    await new Promise<void>((resolve) => spy.listen(0, '127.0.0.1', resolve));
    spyUrl = `http://127.0.0.1:${(spy.address() as AddressInfo).port}`;

    const files = await certFiles();
    const app = { origins: ['https://app.test'] };
    gw = await startGateway({
      tls: { cert: files.cert, key: files.key, clientAuth: 'optional', clientCa: files.ca },
      limits: {
        handshakeTimeoutMs: 2_000,
        // This suite fails many handshakes from one address on purpose; A-10 has its own gateway.
        perIp: {
          maxConnections: 1_000,
          handshakesPerSecond: 10_000,
          handshakeBurst: 10_000,
          authFailuresPerMinute: 10_000,
          authFailureBurst: 10_000,
        },
      },
      authenticators: {
        staff: staffConfig(keyFile),
        idp: {
          type: 'jwt',
          jwksUrl: `https://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`,
          jwksCaFile: files.ca,
          issuer: ISS,
          audience: AUD,
          algorithms: ['ES256'],
          clockToleranceSec: 0,
        },
        web: { type: 'cookie', keyFiles: [cookieKeyFile] },
        tix: { type: 'ticket', ttlMs: 30_000 },
        pwd: { type: 'basic', htpasswdFile: htpasswd, failuresPerMinute: 10_000, failureBurst: 10_000 },
        devices: { type: 'mtls', identityFrom: 'cn', allow: ['device-*'] },
      },
      routes: [
        echoRoute(),
        echoRoute({ path: '/chat', auth: ['staff'], allowMissingOrigin: true }),
        echoRoute({ path: '/sub', auth: ['staff'], subprotocols: ['chat.v1'] }),
        echoRoute({ path: '/query', auth: ['staff'], allowQueryToken: true }),
        echoRoute({ path: '/idp', auth: ['idp'] }),
        echoRoute({ path: '/tix', auth: ['tix', 'staff'] }),
        echoRoute({ path: '/tix2', auth: ['tix', 'staff'] }),
        echoRoute({ path: '/cookie', auth: ['web'], allowMissingOrigin: true }),
        echoRoute({ path: '/mfa', auth: ['web'], require: { claims: { amr: 'mfa' } } }),
        echoRoute({ path: '/basic', auth: ['pwd'] }),
        echoRoute({ path: '/devices', auth: ['devices'] }),
        echoRoute({ path: '/limited', auth: ['staff'], limits: { maxConnectionsPerIdentity: 2 } }),
        {
          path: '/broker',
          ...app,
          auth: ['staff'],
          subprotocols: ['portcullis.v1'],
          broker: { channels: [{ pattern: 'user:{sub}', subscribe: true, publish: true }] },
        } as RouteInput,
      ],
    });
  });

  after(async () => {
    await gw?.close();
    await Promise.all([
      new Promise((resolve) => jwks?.close(resolve)),
      new Promise((resolve) => spy?.close(resolve)),
    ]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('A-01 refuses a handshake with no credential: 401 UNAUTHENTICATED + WWW-Authenticate: Bearer, no 101, nothing after', async () => {
    const from = gw.logs.length;
    const res = await expectRefused(
      gw,
      Buffer.concat([Buffer.from(HS({}, { path: '/chat' })), F(0x81, 'pipelined')]),
      401,
      'UNAUTHENTICATED',
      'no credential',
    );
    assert.equal(res.headers['www-authenticate'], 'Bearer');
    assertAudit(gw, from, {
      outcome: 'rejected',
      code: 'UNAUTHENTICATED',
      status: 401,
      route: '/chat',
      reason: 'no_credential',
      identity: null,
    });
    // A credential of a kind the route does not accept is no credential at all.
    const session = await cookie('cookie-only');
    await expectRefused(
      gw,
      HS({ Cookie: `session=${session}` }, { path: '/chat' }),
      401,
      'UNAUTHENTICATED',
      'cookie on a bearer route',
    );
    assert.equal(gw.gateway.stats.handshakesAccepted, 0);
    assertNotLogged(gw, [session]);
    await canary(gw);
  });

  it('A-01 refuses a cookie-only handshake without an allowed Origin: 403 ORIGIN_NOT_ALLOWED, never 101', async () => {
    const session = await cookie('cookie-user');
    for (const origin of ['https://evil.test', 'null', 'https://app.test.evil.io']) {
      const from = gw.logs.length;
      await expectRefused(
        gw,
        HS({ Origin: origin, Cookie: `session=${session}` }, { path: '/cookie' }),
        403,
        'ORIGIN_NOT_ALLOWED',
        origin,
      );
      assertAudit(gw, from, { code: 'ORIGIN_NOT_ALLOWED', status: 403, route: '/cookie', identity: null });
    }
    const from = gw.logs.length;
    await expectRefused(
      gw,
      HS({ Origin: null, Cookie: `session=${session}` }, { path: '/cookie' }),
      403,
      'ORIGIN_NOT_ALLOWED',
      'no Origin',
    );
    assertAudit(gw, from, { code: 'ORIGIN_NOT_ALLOWED', reason: 'ambient_credential_without_origin' });
    assertNotLogged(gw, [session]);
    await canary(gw);
  });

  it('A-02 refuses alg none, an empty signature and an algorithm outside the allowlist with 401, audit reason alg_not_allowed', async () => {
    const claims = b64(claimSet('mallory'));
    const valid = await jwt(staff, 'mallory');
    const [head, body, sig] = valid.split('.') as [string, string, string];
    const es384 = await generateKeyPair('ES384');
    const hs = new TextEncoder().encode(randomBytes(32).toString('hex'));
    const cases: [string, string, string][] = [
      ['alg none, empty signature', `${b64({ alg: 'none', typ: TYP })}.${claims}.`, 'alg_not_allowed'],
      ['alg none with a signature', `${b64({ alg: 'none', typ: TYP })}.${claims}.${sig}`, 'alg_not_allowed'],
      ['alg NONE', `${b64({ alg: 'NONE', typ: TYP })}.${claims}.`, 'alg_not_allowed'],
      ['ES256 header, signature stripped', `${head}.${body}.`, 'bad_signature'],
      [
        'ES384 (not allowlisted)',
        await new SignJWT(claimSet('mallory'))
          .setProtectedHeader({ alg: 'ES384', typ: TYP })
          .sign(es384.privateKey),
        'alg_not_allowed',
      ],
      [
        'HS256 with a random secret',
        await new SignJWT(claimSet('mallory')).setProtectedHeader({ alg: 'HS256', typ: TYP }).sign(hs),
        'alg_not_allowed',
      ],
    ];
    for (const [label, token, reason] of cases) {
      const from = gw.logs.length;
      const res = await expectRefused(
        gw,
        HS({ Authorization: `Bearer ${token}` }, { path: '/chat' }),
        401,
        'UNAUTHENTICATED',
        label,
      );
      assert.equal(res.headers['www-authenticate'], 'Bearer', label);
      assertAudit(
        gw,
        from,
        { code: 'UNAUTHENTICATED', status: 401, route: '/chat', reason, identity: null },
        label,
      );
      assertNotLogged(gw, [token]);
    }
    await canary(gw);
  });

  it('A-03 refuses an HS256 token whose HMAC secret is the server public key PEM with 401', async () => {
    const secrets = [staff.spki, staff.spki.trim(), Buffer.from(staff.spki).toString('base64')];
    for (const secret of secrets) {
      const forged = await new SignJWT(claimSet('mallory'))
        .setProtectedHeader({ alg: 'HS256', typ: TYP, kid: staff.kid })
        .sign(new TextEncoder().encode(secret));
      const from = gw.logs.length;
      await expectRefused(
        gw,
        HS({ Authorization: `Bearer ${forged}` }, { path: '/chat' }),
        401,
        'UNAUTHENTICATED',
        'HS256',
      );
      assertAudit(gw, from, { code: 'UNAUTHENTICATED', reason: 'alg_not_allowed', identity: null });
      // The JWKS-backed authenticator too: keys are typed, an EC key never verifies an HMAC.
      const viaJwks = await new SignJWT(claimSet('mallory'))
        .setProtectedHeader({ alg: 'HS256', kid: idpKey.kid })
        .sign(new TextEncoder().encode(idpKey.spki));
      await expectRefused(
        gw,
        HS({ Authorization: `Bearer ${viaJwks}` }, { path: '/idp' }),
        401,
        'UNAUTHENTICATED',
        'HS256 jwks',
      );
    }
    await canary(gw);
  });

  it('A-04 refuses each claim defect with 401; an expired token says CREDENTIAL_EXPIRED', async () => {
    const now = nowSec();
    const other = await signer('staff-1');
    const cases: [string, string, string, string][] = [
      ['exp in the past', await jwt(staff, 'dave', { exp: now - 5 }), 'CREDENTIAL_EXPIRED', 'expired'],
      ['exp missing', await jwt(staff, 'dave', { exp: undefined }), 'UNAUTHENTICATED', 'missing_exp'],
      ['exp not a number', await jwt(staff, 'dave', { exp: 'tomorrow' }), 'UNAUTHENTICATED', 'malformed'],
      ['nbf in the future', await jwt(staff, 'dave', { nbf: now + 120 }), 'UNAUTHENTICATED', 'not_yet_valid'],
      ['iat in the future', await jwt(staff, 'dave', { iat: now + 120 }), 'UNAUTHENTICATED', 'not_yet_valid'],
      ['wrong aud', await jwt(staff, 'dave', { aud: 'billing' }), 'UNAUTHENTICATED', 'wrong_audience'],
      ['aud missing', await jwt(staff, 'dave', { aud: undefined }), 'UNAUTHENTICATED', 'wrong_audience'],
      [
        'wrong iss',
        await jwt(staff, 'dave', { iss: 'https://evil.test/' }),
        'UNAUTHENTICATED',
        'wrong_issuer',
      ],
      ['ID token (typ JWT)', await jwt(staff, 'dave', {}, { typ: 'JWT' }), 'UNAUTHENTICATED', 'wrong_typ'],
      ['no typ', await jwt(staff, 'dave', {}, { typ: undefined }), 'UNAUTHENTICATED', 'wrong_typ'],
      ['sub missing', await jwt(staff, 'dave', { sub: undefined }), 'UNAUTHENTICATED', 'missing_subject'],
      ['minted by another issuer key', await jwt(other, 'dave'), 'UNAUTHENTICATED', 'bad_signature'],
    ];
    for (const [label, token, code, reason] of cases) {
      const from = gw.logs.length;
      await expectRefused(gw, HS({ Authorization: `Bearer ${token}` }, { path: '/chat' }), 401, code, label);
      assertAudit(gw, from, { code, status: 401, reason, identity: null }, label);
      assertNotLogged(gw, [token]);
    }
    // The same token, fixed, is accepted: the refusals above are about the defect alone.
    const from = gw.logs.length;
    await expectAccepted(
      gw,
      HS({ Authorization: `Bearer ${await jwt(staff, 'dave')}` }, { path: '/chat' }),
      'valid',
    );
    assertAudit(gw, from, { outcome: 'accepted', status: 101, identity: 'dave', route: '/chat' });
    await canary(gw);
  });

  it('A-05 never follows kid, jku, x5u or an embedded jwk: 401 and the attacker listener sees 0 requests', async () => {
    const kids = ['../../../../dev/null', "' OR '1'='1", 'k'.repeat(10_240), 'a\r\nb', '/etc/passwd\u0000'];
    const attempts: [string, string, string, string][] = [];
    for (const kid of kids) {
      const reasonFile = kid.length > 256 || /[\r\n\u0000]/.test(kid) ? 'bad_kid' : 'bad_signature';
      const reasonJwks = kid.length > 256 || /[\r\n\u0000]/.test(kid) ? 'bad_kid' : 'unknown_kid';
      attempts.push([
        `kid ${JSON.stringify(kid.slice(0, 20))}`,
        '/chat',
        await jwt(attacker, 'mallory', {}, { kid }),
        reasonFile,
      ]);
      attempts.push([
        `kid ${JSON.stringify(kid.slice(0, 20))} (jwks)`,
        '/idp',
        await jwt(attacker, 'mallory', {}, { kid, typ: undefined }),
        reasonJwks,
      ]);
    }
    const jku = { jku: `${spyUrl}/jwks.json`, kid: 'attacker' };
    const x5u = { x5u: `${spyUrl}/cert.pem`, kid: 'attacker' };
    const embedded = {
      jwk: { kty: attacker.jwk.kty, crv: attacker.jwk.crv, x: attacker.jwk.x, y: attacker.jwk.y },
      kid: undefined,
    };
    for (const [label, header] of [
      ['jku', jku],
      ['x5u', x5u],
      ['embedded jwk', embedded],
    ] as const) {
      attempts.push([label, '/chat', await jwt(attacker, 'mallory', {}, header), 'bad_signature']);
      // Without a kid the JWKS's only key is tried, and the attacker's signature does not verify.
      const viaJwks = header.kid === undefined ? 'bad_signature' : 'unknown_kid';
      attempts.push([
        `${label} (jwks)`,
        '/idp',
        await jwt(attacker, 'mallory', {}, { ...header, typ: undefined }),
        viaJwks,
      ]);
    }
    for (const [label, path, token, reason] of attempts) {
      const from = gw.logs.length;
      await expectRefused(
        gw,
        HS({ Authorization: `Bearer ${token}` }, { path }),
        401,
        'UNAUTHENTICATED',
        label,
      );
      assertAudit(gw, from, { code: 'UNAUTHENTICATED', reason, identity: null }, label);
    }
    assert.equal(spyRequests, 0, 'the attacker key server was contacted');
    // The JWKS itself still works: a token from the identity provider is accepted.
    await expectAccepted(
      gw,
      HS({ Authorization: `Bearer ${await jwt(idpKey, 'ivan', {}, { typ: undefined })}` }, { path: '/idp' }),
      'idp',
    );
    assert.ok(jwksHits >= 1);
    assertNotLogged(gw, ['../../../../dev/null', "' OR '1'='1", 'k'.repeat(64)]);
    await canary(gw);
  });

  it('A-06 refuses ?access_token= where the route does not opt in, accepts it where it does, and never logs it', async () => {
    const token = await jwt(staff, 'quinn');
    const sentinel = 'SENTINEL-A06-query-7d1f';
    let from = gw.logs.length;
    await expectRefused(
      gw,
      HS({}, { path: `/chat?access_token=${token}` }),
      401,
      'UNAUTHENTICATED',
      'query token on /chat',
    );
    assertAudit(gw, from, { code: 'UNAUTHENTICATED', reason: 'no_credential', route: '/chat' });
    await expectRefused(
      gw,
      HS({}, { path: `/chat?access_token=${sentinel}` }),
      401,
      'UNAUTHENTICATED',
      'sentinel on /chat',
    );
    from = gw.logs.length;
    await expectRefused(
      gw,
      HS({}, { path: `/query?access_token=${sentinel}` }),
      401,
      'UNAUTHENTICATED',
      'sentinel on /query',
    );
    assertAudit(gw, from, { code: 'UNAUTHENTICATED', reason: 'malformed', route: '/query' });
    from = gw.logs.length;
    await expectAccepted(gw, HS({}, { path: `/query?access_token=${token}` }), 'query token on /query');
    assertAudit(gw, from, { outcome: 'accepted', route: '/query', identity: 'quinn' });
    assertNotLogged(gw, [token, token.split('.')[2] as string, sentinel, 'SENTINEL', 'access_token']);
    await canary(gw);
  });

  it('A-06 accepts the token in Sec-WebSocket-Protocol and answers exactly chat.v1, never echoing or logging it', async () => {
    const token = await jwt(staff, 'rita');
    const from = gw.logs.length;
    const res = await expectAccepted(
      gw,
      HS({ 'Sec-WebSocket-Protocol': `chat.v1, ${BEARER_PROTOCOL_PREFIX}${token}` }, { path: '/sub' }),
      'subprotocol bearer',
    );
    assert.equal(res.headers['sec-websocket-protocol'], 'chat.v1');
    assert.ok(!res.raw.includes(token), 'the token came back in the response');
    assertAudit(gw, from, { outcome: 'accepted', route: '/sub', identity: 'rita', subprotocol: 'chat.v1' });
    // Through a real client as a browser would do it: the socket works and reports chat.v1.
    const ws = await openClient(gw, '/sub', { protocols: ['chat.v1', `${BEARER_PROTOCOL_PREFIX}${token}`] });
    assert.equal(ws.protocol, 'chat.v1');
    await echoes(ws, 'hello');
    await bye(ws);
    // A bad token in the same place is refused like any other.
    const forged = await jwt(attacker, 'rita');
    await expectRefused(
      gw,
      HS({ 'Sec-WebSocket-Protocol': `chat.v1, ${BEARER_PROTOCOL_PREFIX}${forged}` }, { path: '/sub' }),
      401,
      'UNAUTHENTICATED',
      'forged subprotocol bearer',
    );
    assertNotLogged(gw, [token, forged, BEARER_PROTOCOL_PREFIX]);
    await canary(gw);
  });

  it('A-06 ticket flow: POST with bearer + Origin + custom header gets a single-use, route-bound ticket', async () => {
    const token = await jwt(staff, 'tess');
    const issue = async (route = '/tix'): Promise<string> => {
      const res = await request(gw, ticketRequest({ Authorization: `Bearer ${token}` }, { route }));
      assert.equal(res.status, 200, res.raw);
      assert.equal(res.headers['access-control-allow-origin'], 'https://app.test');
      assert.equal(res.headers.vary, 'Origin');
      const body = JSON.parse(res.body) as { ticket: string; route: string; expiresAt: number };
      assert.match(body.ticket, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(body.route, route);
      assert.ok(body.expiresAt > Date.now() && body.expiresAt <= Date.now() + 30_000);
      return body.ticket;
    };
    const ticket = await issue();
    let from = gw.logs.length;
    await expectAccepted(gw, HS({}, { path: `/tix?ticket=${ticket}` }), 'ticket');
    assertAudit(gw, from, { outcome: 'accepted', route: '/tix', identity: 'tess' });
    from = gw.logs.length;
    await expectRefused(
      gw,
      HS({}, { path: `/tix?ticket=${ticket}` }),
      401,
      'UNAUTHENTICATED',
      'replayed ticket',
    );
    assertAudit(gw, from, { code: 'UNAUTHENTICATED', reason: 'ticket_invalid' });

    const other = await issue();
    from = gw.logs.length;
    await expectRefused(gw, HS({}, { path: `/tix2?ticket=${other}` }), 401, 'UNAUTHENTICATED', 'wrong route');
    assertAudit(gw, from, { code: 'UNAUTHENTICATED', reason: 'ticket_wrong_route', route: '/tix2' });
    // Spent by the failed attempt: it does not work on its own route afterwards either.
    await expectRefused(gw, HS({}, { path: `/tix?ticket=${other}` }), 401, 'UNAUTHENTICATED', 'spent ticket');

    // CSRF defences of the endpoint.
    const refused = async (text: string, status: number, code: string, label: string) => {
      const res = await request(gw, text);
      assert.equal(res.status, status, `${label}: ${res.raw}`);
      assert.equal(JSON.parse(res.body).code, code, label);
      assert.equal(res.headers['access-control-allow-origin'], undefined, label);
      assert.ok(!res.body.includes('ticket"'), label);
    };
    from = gw.logs.length;
    await refused(
      ticketRequest({ Authorization: `Bearer ${token}`, 'x-portcullis-ticket': null }),
      403,
      'FORBIDDEN',
      'no custom header',
    );
    assert.equal(gw.logs.slice(from).find((l) => l.event === 'ticket')?.reason, 'csrf_header_missing');
    await refused(
      ticketRequest({ Authorization: `Bearer ${token}`, Origin: 'https://evil.test' }),
      403,
      'ORIGIN_NOT_ALLOWED',
      'evil Origin',
    );
    await refused(
      ticketRequest({ Authorization: `Bearer ${token}`, Origin: null }),
      403,
      'ORIGIN_NOT_ALLOWED',
      'no Origin',
    );
    await refused(ticketRequest({}), 401, 'UNAUTHENTICATED', 'no credential');
    await refused(
      ticketRequest({ Authorization: `Bearer ${token}` }, { route: '/chat' }),
      404,
      'ROUTE_NOT_FOUND',
      'route without tickets',
    );

    // The CORS preflight a browser sends first: the allowed origin echoed, never *, Vary: Origin.
    const preflight = await request(
      gw,
      ticketRequest(
        {
          'x-portcullis-ticket': null,
          'Access-Control-Request-Method': 'POST',
          'Access-Control-Request-Headers': 'authorization, x-portcullis-ticket',
        },
        { method: 'OPTIONS' },
      ),
    );
    assert.equal(preflight.status, 204, preflight.raw);
    assert.equal(preflight.headers['access-control-allow-origin'], 'https://app.test');
    assert.equal(preflight.headers.vary, 'Origin');
    assert.match(preflight.headers['access-control-allow-headers'] ?? '', /x-portcullis-ticket/);
    assert.ok(!preflight.raw.includes('*'), 'a wildcard in the preflight answer');
    const evilPreflight = await request(
      gw,
      ticketRequest({ Origin: 'https://evil.test', 'x-portcullis-ticket': null }, { method: 'OPTIONS' }),
    );
    assert.equal(evilPreflight.status, 403);
    assert.equal(evilPreflight.headers['access-control-allow-origin'], undefined);
    assertNotLogged(gw, [token, ticket, other]);
    await canary(gw);
  });

  it('A-07 closes an echo connection at exp with 4401 CREDENTIAL_EXPIRED within ~1 s and echoes nothing sent after exp', async () => {
    const exp = nowSec() + 2;
    const expMs = exp * 1000;
    const [quiet, chatty] = await Promise.all([
      openWithToken(gw, '/chat', await jwt(staff, 'uma', { exp })),
      openWithToken(gw, '/chat', await jwt(staff, 'uma', { exp, jti: 'uma-2' })),
    ]);
    const received: string[] = [];
    chatty.on('message', (data) => received.push(data.toString()));
    await echoes(quiet, 'before exp');
    await echoes(chatty, 'before exp');
    received.length = 0;
    const quietClosed = closed(quiet).then((c) => ({ ...c, at: Date.now() }));
    const chattyClosed = closed(chatty).then((c) => ({ ...c, at: Date.now() }));
    // Just after exp, before the deadline clock may have ticked: nothing may come back.
    const sender = setTimeout(
      () => {
        if (chatty.readyState === WebSocket.OPEN) chatty.send('after exp');
      },
      expMs + 30 - Date.now(),
    );
    try {
      const [q, c] = await within(Promise.all([quietClosed, chattyClosed]), 4_500, 'expiry close');
      for (const [label, result] of [
        ['quiet', q],
        ['chatty', c],
      ] as const) {
        assert.equal(result.code, 4401, label);
        assert.equal(result.reason, 'CREDENTIAL_EXPIRED', label);
        assert.ok(result.at >= expMs - 5, `${label}: closed ${expMs - result.at} ms before exp`);
        assert.ok(result.at - expMs <= 1_500, `${label}: closed ${result.at - expMs} ms after exp`);
      }
    } finally {
      clearTimeout(sender);
    }
    assert.deepEqual(received, [], 'a message sent after exp was echoed');
    const line = gw.logs.find(
      (l) => l.event === 'close' && l.code === 'CREDENTIAL_EXPIRED' && l.identity === 'uma',
    );
    assert.equal(line?.closeCode, 4401);
    await canary(gw);
  });

  it('A-07 in-band auth.refresh on a broker route: same subject extends the session to the new exp; another subject is FORBIDDEN', async () => {
    const exp = nowSec() + 2;
    const expMs = exp * 1000;
    const broker = { protocols: 'portcullis.v1' };
    const [kept, hijack] = await Promise.all([
      openWithToken(gw, '/broker', await jwt(staff, 'vera', { exp }), broker),
      openWithToken(gw, '/broker', await jwt(staff, 'walt', { exp }), broker),
    ]);
    assert.equal(kept.protocol, 'portcullis.v1');
    const refresh = async (ws: WebSocket, token: string) => {
      const reply = nextJson(ws);
      ws.send(JSON.stringify({ type: 'auth.refresh', id: 'r1', token }));
      return reply;
    };
    const newExp = exp + 2;
    assert.deepEqual(await refresh(kept, await jwt(staff, 'vera', { exp: newExp })), {
      type: 'ack',
      id: 'r1',
    });
    const denied = await refresh(hijack, await jwt(staff, 'mallory', { exp: exp + 60 }));
    assert.equal(denied.type, 'error');
    assert.equal(denied.id, 'r1');
    assert.equal(denied.code, 'FORBIDDEN');

    const keptClosed = closed(kept).then((c) => ({ ...c, at: Date.now() }));
    const hijackClosed = await within(closed(hijack), expMs - Date.now() + 1_500, 'cross-subject close');
    assert.equal(hijackClosed.code, 4401);
    assert.equal(hijackClosed.reason, 'CREDENTIAL_EXPIRED');
    assert.ok(Date.now() >= expMs - 5);

    // Past the old exp the refreshed connection still works.
    await sleep(Math.max(0, expMs + 300 - Date.now()));
    assert.equal(kept.readyState, WebSocket.OPEN);
    const sub = nextJson(kept);
    kept.send(JSON.stringify({ type: 'subscribe', id: 's1', channel: 'user:vera' }));
    const subscribed = await sub; // a subscribe ack carries the channel's epoch and latest seq (M-07)
    assert.deepEqual(subscribed, { type: 'ack', id: 's1', epoch: String(subscribed.epoch), seq: 0 });
    // And the new exp is enforced the same way.
    const k = await within(keptClosed, newExp * 1000 - Date.now() + 1_500, 'refreshed close');
    assert.equal(k.code, 4401);
    assert.equal(k.reason, 'CREDENTIAL_EXPIRED');
    assert.ok(
      k.at >= newExp * 1000 - 5 && k.at - newExp * 1000 <= 1_500,
      `closed ${k.at - newExp * 1000} ms after new exp`,
    );
    await canary(gw);
  });

  it('A-08 revoke({subject}) closes all three of alice’s connections with CREDENTIAL_REVOKED within 1 s; her token then gets 401', async () => {
    const token = await jwt(staff, 'alice', { jti: 'alice-1' });
    const sockets = await Promise.all([1, 2, 3].map(() => openWithToken(gw, '/chat', token)));
    const other = await openWithToken(gw, '/chat', await jwt(staff, 'xena'));
    const closes = sockets.map((ws) => closed(ws));
    const started = Date.now();
    assert.equal(await gw.gateway.revoke({ subject: 'alice' }), 3);
    const results = await within(Promise.all(closes), 1_000, 'revocation');
    assert.ok(Date.now() - started <= 1_000);
    for (const r of results) assert.deepEqual(r, { code: 4401, reason: 'CREDENTIAL_REVOKED' });
    await echoes(other, 'still here');
    await bye(other);
    const from = gw.logs.length;
    await expectRefused(
      gw,
      HS({ Authorization: `Bearer ${token}` }, { path: '/chat' }),
      401,
      'CREDENTIAL_REVOKED',
      'reconnect',
    );
    assertAudit(gw, from, { code: 'CREDENTIAL_REVOKED', status: 401, reason: 'revoked', identity: null });
    // A fresh token for the same subject is refused too: the subject is blocked, not one token.
    await expectRefused(
      gw,
      HS({ Authorization: `Bearer ${await jwt(staff, 'alice', { jti: 'alice-2' })}` }, { path: '/chat' }),
      401,
      'CREDENTIAL_REVOKED',
      'new token, same subject',
    );
    const audit = gw.logs.filter((l) => l.event === 'close' && l.identity === 'alice');
    assert.equal(audit.length, 3);
    for (const l of audit) assert.equal(l.code, 'CREDENTIAL_REVOKED');
    await canary(gw);
  });

  it('A-08 revoke({jti}) closes only that token’s connection; disconnect({subject}) closes with DISCONNECTED and reconnecting works', async () => {
    const first = await jwt(staff, 'bob', { jti: 'bob-1' });
    const second = await jwt(staff, 'bob', { jti: 'bob-2' });
    const [a, b] = await Promise.all([openWithToken(gw, '/chat', first), openWithToken(gw, '/chat', second)]);
    const aClosed = closed(a);
    assert.equal(await gw.gateway.revoke({ jti: 'bob-1' }), 1);
    assert.deepEqual(await within(aClosed, 1_000, 'jti revocation'), {
      code: 4401,
      reason: 'CREDENTIAL_REVOKED',
    });
    await echoes(b, 'bob-2 is fine');
    await expectRefused(
      gw,
      HS({ Authorization: `Bearer ${first}` }, { path: '/chat' }),
      401,
      'CREDENTIAL_REVOKED',
      'bob-1 again',
    );
    await expectAccepted(gw, HS({ Authorization: `Bearer ${second}` }, { path: '/chat' }), 'bob-2 again');
    await bye(b);

    const carol = await jwt(staff, 'carol');
    const sockets = await Promise.all([openWithToken(gw, '/chat', carol), openWithToken(gw, '/chat', carol)]);
    const closes = sockets.map((ws) => closed(ws));
    assert.equal(gw.gateway.disconnect({ subject: 'carol' }), 2);
    for (const r of await within(Promise.all(closes), 1_000, 'disconnect')) {
      assert.deepEqual(r, { code: 1008, reason: 'DISCONNECTED' });
    }
    const again = await openWithToken(gw, '/chat', carol);
    await echoes(again, 'back again');
    await bye(again);
    await canary(gw);
  });

  it('A-09 refuses a cookie session without MFA on a route that requires amr mfa: 403 MFA_REQUIRED before the 101', async () => {
    const pending = await cookie('mfa-user', { amr: ['pwd'] });
    let from = gw.logs.length;
    await expectRefused(
      gw,
      HS({ Cookie: `session=${pending}` }, { path: '/mfa' }),
      403,
      'MFA_REQUIRED',
      'amr [pwd]',
    );
    assertAudit(gw, from, {
      code: 'MFA_REQUIRED',
      status: 403,
      reason: 'claims',
      route: '/mfa',
      identity: null,
    });
    const noAmr = await cookie('mfa-user');
    await expectRefused(
      gw,
      HS({ Cookie: `session=${noAmr}` }, { path: '/mfa' }),
      403,
      'MFA_REQUIRED',
      'no amr',
    );
    const done = await cookie('mfa-user', { amr: ['pwd', 'mfa'] });
    from = gw.logs.length;
    await expectAccepted(gw, HS({ Cookie: `session=${done}` }, { path: '/mfa' }), 'amr [pwd, mfa]');
    assertAudit(gw, from, { outcome: 'accepted', route: '/mfa', identity: 'mfa-user' });
    assertNotLogged(gw, [pending, noAmr, done]);
    await canary(gw);
  });

  it('H-05 refuses Origin https://evil.test with a valid session cookie: 403 ORIGIN_NOT_ALLOWED, no Set-Cookie, audited without the cookie', async () => {
    const session = await cookie('victim', { amr: ['pwd', 'mfa'] });
    for (const path of ['/cookie', '/mfa']) {
      const from = gw.logs.length;
      await expectRefused(
        gw,
        HS({ Origin: 'https://evil.test', Cookie: `theme=dark; session=${session}` }, { path }),
        403,
        'ORIGIN_NOT_ALLOWED',
        path,
      );
      assertAudit(gw, from, {
        code: 'ORIGIN_NOT_ALLOWED',
        status: 403,
        route: path,
        origin: 'https://evil.test',
        identity: null,
      });
    }
    // The same cookie from the allowed origin works, so the refusal was the Origin alone.
    await expectAccepted(gw, HS({ Cookie: `session=${session}` }, { path: '/cookie' }), 'allowed origin');
    assertNotLogged(gw, [session]);
    await canary(gw);
  });

  it('H-06 refuses a valid cookie without Origin even where allowMissingOrigin is set; a bearer token without Origin gets 101', async () => {
    const session = await cookie('no-origin');
    let from = gw.logs.length;
    await expectRefused(
      gw,
      HS({ Origin: null, Cookie: `session=${session}` }, { path: '/cookie' }),
      403,
      'ORIGIN_NOT_ALLOWED',
      'cookie',
    );
    assertAudit(gw, from, {
      code: 'ORIGIN_NOT_ALLOWED',
      reason: 'ambient_credential_without_origin',
      origin: null,
    });
    from = gw.logs.length;
    await expectAccepted(
      gw,
      HS({ Origin: null, Authorization: `Bearer ${await jwt(staff, 'yuri')}` }, { path: '/chat' }),
      'bearer',
    );
    assertAudit(gw, from, { outcome: 'accepted', origin: null, identity: 'yuri' });
    assertNotLogged(gw, [session]);
    await canary(gw);
  });

  it('T-08 refuses a token bound (cnf x5t#S256) to another certificate with 403 FORBIDDEN; the matching certificate gets 101', async () => {
    const withDevice1 = { cert: device1.certPem, key: device1.keyPem };
    const boundTo2 = await jwt(staff, 'zoe', { cnf: { 'x5t#S256': x5t(device2) } });
    let from = gw.logs.length;
    await expectRefused(
      gw,
      HS({ Authorization: `Bearer ${boundTo2}` }, { path: '/chat' }),
      403,
      'FORBIDDEN',
      'other cert',
      withDevice1,
    );
    assertAudit(gw, from, {
      code: 'FORBIDDEN',
      status: 403,
      reason: 'cnf_mismatch',
      tls: { version: 'TLSv1.3', clientCert: device1.fingerprint256 },
    });
    const boundTo1 = await jwt(staff, 'zoe', { cnf: { 'x5t#S256': x5t(device1) } });
    await expectRefused(
      gw,
      HS({ Authorization: `Bearer ${boundTo1}` }, { path: '/chat' }),
      403,
      'FORBIDDEN',
      'no cert',
    );
    from = gw.logs.length;
    await expectAccepted(
      gw,
      HS({ Authorization: `Bearer ${boundTo1}` }, { path: '/chat' }),
      'matching cert',
      withDevice1,
    );
    assertAudit(gw, from, {
      outcome: 'accepted',
      identity: 'zoe',
      tls: { version: 'TLSv1.3', clientCert: device1.fingerprint256 },
    });
    assertNotLogged(gw, [boundTo1, boundTo2]);
    await canary(gw);
  });

  it('T-08 the mtls authenticator accepts CN device-1 under allow [device-*] and refuses a CN outside it with 403', async () => {
    let from = gw.logs.length;
    await expectAccepted(gw, HS({}, { path: '/devices' }), 'device-1', {
      cert: device1.certPem,
      key: device1.keyPem,
    });
    assertAudit(gw, from, { outcome: 'accepted', identity: 'device-1', route: '/devices' });
    from = gw.logs.length;
    await expectRefused(gw, HS({}, { path: '/devices' }), 403, 'FORBIDDEN', 'laptop-7', {
      cert: laptop.certPem,
      key: laptop.keyPem,
    });
    assertAudit(gw, from, {
      code: 'FORBIDDEN',
      reason: 'subject_not_allowed',
      identity: null,
      tls: { version: 'TLSv1.3', clientCert: laptop.fingerprint256 },
    });
    from = gw.logs.length;
    await expectRefused(gw, HS({}, { path: '/devices' }), 401, 'UNAUTHENTICATED', 'no certificate');
    assertAudit(gw, from, { code: 'UNAUTHENTICATED', reason: 'no_credential' });
    await canary(gw);
  });

  it('A-01 basic auth: the right password gets 101, a wrong one 401 with a Basic challenge; the password is never logged', async () => {
    const basic = (user: string, password: string) =>
      `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    let from = gw.logs.length;
    await expectAccepted(
      gw,
      HS({ Authorization: basic('ops', PASSWORD) }, { path: '/basic' }),
      'good password',
    );
    assertAudit(gw, from, { outcome: 'accepted', identity: 'ops', route: '/basic' });
    for (const [label, authorization] of [
      ['wrong password', basic('ops', `${PASSWORD}-wrong`)],
      ['unknown user', basic('root', PASSWORD)],
    ] as const) {
      from = gw.logs.length;
      const res = await expectRefused(
        gw,
        HS({ Authorization: authorization }, { path: '/basic' }),
        401,
        'UNAUTHENTICATED',
        label,
      );
      assert.equal(res.headers['www-authenticate'], 'Basic realm="portcullis", charset="UTF-8"', label);
      assertAudit(gw, from, { code: 'UNAUTHENTICATED', reason: 'bad_credentials', identity: null }, label);
    }
    const res = await expectRefused(gw, HS({}, { path: '/basic' }), 401, 'UNAUTHENTICATED', 'no credentials');
    assert.equal(res.headers['www-authenticate'], 'Basic realm="portcullis", charset="UTF-8"');
    assertNotLogged(gw, [PASSWORD, Buffer.from(`ops:${PASSWORD}`).toString('base64')]);
    await canary(gw);
  });

  it('A-08 maxConnectionsPerIdentity 2: the identity’s third connection gets 429 IDENTITY_CONNECTION_LIMIT', async () => {
    const token = await jwt(staff, 'gina');
    const from = gw.logs.length;
    const sockets = await Promise.all([
      openWithToken(gw, '/limited', token),
      openWithToken(gw, '/limited', token),
    ]);
    const accepted = handshakes(gw, from);
    assert.deepEqual(
      accepted.map((l) => [l.outcome, l.identity]),
      [
        ['accepted', 'gina'],
        ['accepted', 'gina'],
      ],
    );
    const at = gw.logs.length;
    const res = await expectRefused(
      gw,
      HS({ Authorization: `Bearer ${token}` }, { path: '/limited' }),
      429,
      'IDENTITY_CONNECTION_LIMIT',
      'third',
    );
    assert.ok(Number(res.headers['retry-after']) >= 1);
    assertAudit(gw, at, { code: 'IDENTITY_CONNECTION_LIMIT', status: 429, route: '/limited' });
    // Another identity is not affected.
    await expectAccepted(
      gw,
      HS({ Authorization: `Bearer ${await jwt(staff, 'hank')}` }, { path: '/limited' }),
      'other identity',
    );
    await Promise.all(sockets.map(bye));
    await canary(gw);
  });
});

describe('A-10 brute force and silent sockets', () => {
  let dir: string;
  let gw: TestGateway;
  let staff: Signer;
  let attacker: Signer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-a10-'));
    [staff, attacker] = await Promise.all([signer('staff-1'), signer('staff-1')]);
    const keyFile = join(dir, 'staff.pem');
    writeFileSync(keyFile, staff.spki);
    gw = await startGateway({
      limits: {
        handshakeTimeoutMs: 1_000,
        perIp: {
          handshakesPerSecond: 1_000,
          handshakeBurst: 1_000,
          authFailuresPerMinute: 5,
          authFailureBurst: 5,
        },
      },
      authenticators: { staff: staffConfig(keyFile) },
      routes: [echoRoute(), echoRoute({ path: '/chat', auth: ['staff'] })],
    });
  });
  after(async () => {
    await gw?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('A-10 after 5 failed tokens from one address the 6th handshake, even with a valid token, gets 429 AUTH_RATE_LIMITED + Retry-After', async () => {
    const bad = await Promise.all([1, 2, 3, 4, 5].map((i) => jwt(attacker, `guess-${i}`)));
    for (const [i, token] of bad.entries()) {
      const from = gw.logs.length;
      await expectRefused(
        gw,
        HS({ Authorization: `Bearer ${token}` }, { path: '/chat' }),
        401,
        'UNAUTHENTICATED',
        `guess ${i + 1}`,
      );
      assertAudit(gw, from, { code: 'UNAUTHENTICATED', reason: 'bad_signature' });
    }
    const valid = await jwt(staff, 'legit');
    for (const label of ['6th (valid token)', '7th (valid token)']) {
      const from = gw.logs.length;
      const res = await expectRefused(
        gw,
        HS({ Authorization: `Bearer ${valid}` }, { path: '/chat' }),
        429,
        'AUTH_RATE_LIMITED',
        label,
      );
      const retryAfter = Number(res.headers['retry-after']);
      assert.ok(
        Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 12,
        `Retry-After ${res.headers['retry-after']}`,
      );
      assertAudit(
        gw,
        from,
        { code: 'AUTH_RATE_LIMITED', status: 429, reason: 'failures', identity: null },
        label,
      );
    }
    assert.equal(gw.gateway.stats.handshakesAccepted, 0);
    assertNotLogged(gw, [valid, ...bad]);
    // Anonymous routes do not authenticate, so the budget does not lock them.
    await canary(gw);
  });

  it('A-10 closes a TLS connection that never sends a handshake at handshakeTimeoutMs (408 REQUEST_TIMEOUT)', async () => {
    const started = Date.now();
    const silent = await connect(gw);
    try {
      const res = await silent.readResponse(4_000);
      assert.equal(res.status, 408);
      assert.equal(JSON.parse(res.body).code, 'REQUEST_TIMEOUT');
      await silent.waitClosed(1_000);
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 900 && elapsed <= 2_500, `closed after ${elapsed} ms`);
    } finally {
      silent.destroy();
    }
    // A TCP connection that never starts TLS is dropped at the same deadline.
    const tcpStarted = Date.now();
    const tcp = net.connect(gw.port, '127.0.0.1');
    tcp.on('error', () => undefined);
    const received: Buffer[] = [];
    tcp.on('data', (d: Buffer) => received.push(d));
    await within(new Promise((resolve) => tcp.once('close', resolve)), 4_000, 'silent TCP socket');
    const tcpElapsed = Date.now() - tcpStarted;
    assert.ok(tcpElapsed >= 900 && tcpElapsed <= 2_500, `TCP closed after ${tcpElapsed} ms`);
    assert.equal(Buffer.concat(received).length, 0);
    await canary(gw);
  });
});
