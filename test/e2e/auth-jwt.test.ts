// The jwt authenticator against real tokens (ES256, RS256, EdDSA keys made here), key files on
// disk, and a JWKS served over real HTTPS on 127.0.0.1 with a certificate from src/pki.
import assert from 'node:assert/strict';
import { createHash, createHmac, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type CryptoKey, exportJWK, exportSPKI, generateKeyPair, importPKCS8, type JWK, SignJWT } from 'jose';
import { JwtAuthenticatorSchema } from '../../src/config/schema.js';
import type { Issued } from '../../src/pki/index.js';
import {
  createJwtAuthenticator,
  FAILURE_CODES,
  type JwtAuthenticatorOptions,
} from '../../src/server/auth/jwt.js';
import { BEARER_PROTOCOL_PREFIX } from '../../src/server/auth/token.js';
import type { Authenticator, AuthInput, AuthResult, ClientCertificate } from '../../src/server/auth/types.js';
import { testPki } from '../helpers/pki.js';

const ISS = 'https://idp.test/';
const AUD = 'chat';

interface Signer {
  readonly alg: 'ES256' | 'RS256' | 'EdDSA';
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly jwk: JWK;
  readonly spki: string;
}

async function signer(alg: Signer['alg'], kid: string): Promise<Signer> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { alg, kid, privateKey, jwk, spki: await exportSPKI(publicKey) };
}

const nowSec = () => Math.floor(Date.now() / 1000);

/** Signs `claims` on top of a valid default claim set; `undefined` values remove a claim. */
async function token(
  s: Signer,
  claims: Record<string, unknown> = {},
  header: Record<string, unknown> = {},
): Promise<string> {
  const now = nowSec();
  const merged: Record<string, unknown> = {
    iss: ISS,
    aud: AUD,
    sub: 'alice',
    iat: now,
    exp: now + 300,
    ...claims,
  };
  for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
  return new SignJWT(merged).setProtectedHeader({ alg: s.alg, kid: s.kid, ...header }).sign(s.privateKey);
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

function claimsPart(): string {
  const now = nowSec();
  return b64({ iss: ISS, aud: AUD, sub: 'mallory', iat: now, exp: now + 300 });
}

function input(
  overrides: Partial<AuthInput> & { authorization?: string; protocols?: string } = {},
): AuthInput {
  const headers = new Map<string, string>();
  if (overrides.authorization !== undefined) headers.set('authorization', overrides.authorization);
  if (overrides.protocols !== undefined) headers.set('sec-websocket-protocol', overrides.protocols);
  return {
    headers: overrides.headers ?? headers,
    query: overrides.query ?? '',
    routePath: '/chat',
    routeKey: '* /chat',
    allowQueryToken: overrides.allowQueryToken ?? false,
    clientCert: overrides.clientCert ?? null,
    remote: '127.0.0.1',
    now: overrides.now ?? Date.now(),
  };
}

const bearer = (jwt: string, more: Parameters<typeof input>[0] = {}) =>
  input({ authorization: `Bearer ${jwt}`, ...more });

function assertFail(result: AuthResult, reason: keyof typeof FAILURE_CODES): void {
  assert.equal(result.kind, 'fail', `expected fail ${reason}, got ${JSON.stringify(result)}`);
  assert.equal(result.kind === 'fail' && result.reason, reason);
  assert.equal(result.kind === 'fail' && result.code, FAILURE_CODES[reason]);
}

function assertOk(result: AuthResult): asserts result is AuthResult & { kind: 'ok' } {
  assert.equal(result.kind, 'ok', `expected ok, got ${JSON.stringify(result)}`);
}

function clientCertOf(issued: Issued): ClientCertificate {
  const cert = new X509Certificate(issued.certPem);
  return {
    subjectCN: 'device-1',
    dnsNames: [],
    uris: [],
    emails: [],
    fingerprint256: issued.fingerprint256,
    x5tS256: createHash('sha256').update(cert.raw).digest('base64url'),
    notAfter: Date.parse(cert.validTo),
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('jwt authenticator', () => {
  let dir: string;
  let caFile: string;
  let es: Signer;
  let rs: Signer;
  let ed: Signer;
  let attacker: Signer;
  let rotatedOld: Signer;
  let rotatedNew: Signer;
  let jwksServer: HttpsServer;
  let jwksBase: string;
  let spy: HttpServer;
  let spyUrl: string;
  let spyRequests = 0;
  let spyConnections = 0;
  let rotating: { keys: JWK[] };
  const hits = new Map<string, number>();
  const authenticators: Authenticator[] = [];
  const hitsOf = (path: string) => hits.get(path) ?? 0;

  function make(config: Record<string, unknown>, options?: JwtAuthenticatorOptions): Authenticator {
    const parsed = JwtAuthenticatorSchema.parse({ type: 'jwt', issuer: ISS, audience: AUD, ...config });
    const auth = createJwtAuthenticator('staff', parsed, options);
    authenticators.push(auth);
    return auth;
  }

  const remote = (path: string, config: Record<string, unknown> = {}, options?: JwtAuthenticatorOptions) =>
    make(
      {
        jwksUrl: `${jwksBase}${path}`,
        jwksCaFile: caFile,
        algorithms: ['ES256', 'RS256', 'EdDSA'],
        ...config,
      },
      options,
    );

  function keyFile(name: string, content: string): string {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  }

  before(async () => {
    const pki = await testPki();
    dir = mkdtempSync(join(tmpdir(), 'portcullis-jwt-'));
    caFile = keyFile('ca.crt', pki.ca.certPem);
    [es, rs, ed, attacker, rotatedOld, rotatedNew] = await Promise.all([
      signer('ES256', 'es-1'),
      signer('RS256', 'rs-1'),
      signer('EdDSA', 'ed-1'),
      signer('ES256', 'es-1'),
      signer('ES256', 'rot-old'),
      signer('ES256', 'rot-new'),
    ]);
    rotating = { keys: [rotatedOld.jwk] };
    const main = { keys: [es.jwk, rs.jwk, ed.jwk] };

    jwksServer = createHttpsServer({ cert: pki.server.certPem, key: pki.server.keyPem }, (req, res) => {
      const path = req.url ?? '';
      hits.set(path, hitsOf(path) + 1);
      const json = (body: unknown) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (path === '/jwks.json' || path === '/flood.json' || path === '/kids.json') json(main);
      else if (path === '/rotating.json') json(rotating);
      else if (path === '/error.json') res.writeHead(500).end();
      else if (path === '/redirect.json') res.writeHead(302, { location: '/jwks.json' }).end();
      else if (path === '/not-a-jwks.json') json({ hello: 'world' });
      else if (path === '/huge.json') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(`{"keys":[],"pad":"${'x'.repeat(1_100_000)}"}`);
      } else if (path === '/slow.json') {
        // Never answers: the client's deadline must end the exchange.
      } else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
    jwksBase = `https://127.0.0.1:${(jwksServer.address() as AddressInfo).port}`;

    spy = createHttpServer((_req, res) => {
      spyRequests += 1;
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ keys: [attacker.jwk] }));
    });
    spy.on('connection', () => {
      spyConnections += 1;
    });
    await new Promise<void>((resolve) => spy.listen(0, '127.0.0.1', resolve));
    spyUrl = `http://127.0.0.1:${(spy.address() as AddressInfo).port}`;
  });

  after(async () => {
    for (const auth of authenticators) auth.close?.();
    jwksServer.closeAllConnections();
    spy.closeAllConnections();
    await Promise.all([
      new Promise((resolve) => jwksServer.close(resolve)),
      new Promise((resolve) => spy.close(resolve)),
    ]);
    rmSync(dir, { recursive: true, force: true });
  });

  describe('keys and algorithms', () => {
    it('accepts ES256, RS256 and EdDSA tokens whose kid is in the JWKS, and builds the principal', async () => {
      const auth = remote('/jwks.json');
      assert.equal(auth.type, 'jwt');
      assert.equal(auth.ambient, false);
      for (const s of [es, rs, ed]) {
        const jwt = await token(s, { jti: `id-${s.alg}`, roles: ['admin'] });
        const result = await auth.authenticate(bearer(jwt));
        assertOk(result);
        const { principal } = result;
        assert.equal(principal.subject, 'alice');
        assert.equal(principal.authenticator, 'staff');
        assert.equal(principal.jti, `id-${s.alg}`);
        // Valid until exp plus the default 30 s clock tolerance, the instant jose would refuse it.
        assert.equal(principal.expiresAt, ((principal.claims.exp as number) + 30) * 1000);
        assert.deepEqual(principal.claims.roles, ['admin']);
        assert.equal(principal.certFingerprint, undefined);
        assert.equal(result.subprotocolCredential, undefined);
      }
      assert.equal(hitsOf('/jwks.json'), 1, 'the JWKS is fetched once and cached');
    });

    it('reads a PEM public key, a certificate, a JWK and a JWKS from keyFile', async () => {
      const pki = await testPki();
      const certKey = await importPKCS8(pki.server.keyPem, 'ES256');
      const certSigner: Signer = { ...es, kid: 'whatever', privateKey: certKey };
      const cases: [string, Signer, string[]][] = [
        [keyFile('es.pem', es.spki), es, ['ES256']],
        [keyFile('server.crt', pki.server.certPem), certSigner, ['ES256']],
        [keyFile('ed.jwk.json', JSON.stringify(ed.jwk)), ed, ['EdDSA']],
        [keyFile('set.jwks.json', JSON.stringify({ keys: [rs.jwk, es.jwk] })), rs, ['RS256', 'ES256']],
      ];
      for (const [path, s, algorithms] of cases) {
        const auth = make({ keyFile: path, algorithms });
        assertOk(await auth.authenticate(bearer(await token(s))));
      }
    });

    it('lets a lone kid-less key verify whatever kid the token names', async () => {
      const auth = make({ keyFile: keyFile('lone.pem', es.spki), algorithms: ['ES256'] });
      assertOk(await auth.authenticate(bearer(await token(es, {}, { kid: 'rotated-label' }))));
      assertOk(await auth.authenticate(bearer(await token(es, {}, { kid: undefined }))));
    });

    it('refuses unusable key files at creation, naming the file', () => {
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
      const files: [string, RegExp][] = [
        [join(dir, 'missing.pem'), /ENOENT/],
        [
          keyFile('private.pem', privateKey.export({ type: 'pkcs8', format: 'pem' }) as string),
          /not a public key/,
        ],
        [keyFile('garbage.txt', 'hello'), /not a PEM public key, certificate, JWK or JWKS/],
        [keyFile('oct.json', JSON.stringify({ kty: 'oct', k: 'c2VjcmV0' })), /symmetric/],
        [keyFile('private.json', JSON.stringify(privateKey.export({ format: 'jwk' }))), /private key/],
        [keyFile('weak.pem', weak.export({ type: 'spki', format: 'pem' }) as string), /2048/],
        [keyFile('empty.json', '{"keys":[]}'), /no keys/],
        [keyFile('two.pem', es.spki + rs.spki), /exactly one PEM block/],
      ];
      for (const [path, message] of files) {
        assert.throws(
          () => make({ keyFile: path, algorithms: ['ES256', 'RS256'] }),
          (err: Error) => err.message.includes(path) && message.test(err.message),
          path,
        );
      }
      const edFile = keyFile('only-ed.json', JSON.stringify(ed.jwk));
      assert.throws(
        () => make({ keyFile: edFile, algorithms: ['ES256'] }),
        /only-ed\.json: no key usable with ES256/,
      );
    });

    it('A-02 refuses alg none and an empty signature', async () => {
      const auth = remote('/jwks.json');
      const file = make({ keyFile: keyFile('none.pem', es.spki), algorithms: ['ES256'] });
      for (const alg of ['none', 'None', 'NONE', '']) {
        const header = b64({ alg, typ: 'JWT' });
        for (const verifier of [auth, file]) {
          const result = await verifier.authenticate(bearer(`${header}.${claimsPart()}.`));
          assertFail(result, alg === '' ? 'malformed' : 'alg_not_allowed');
        }
      }
      const emptySig = `${b64({ alg: 'ES256', kid: es.kid })}.${claimsPart()}.`;
      assertFail(await auth.authenticate(input({ authorization: `Bearer ${emptySig}` })), 'bad_signature');
    });

    it('A-03 refuses an HS256 token whose HMAC secret is the public key PEM', async () => {
      for (const auth of [
        remote('/jwks.json'),
        make({ keyFile: keyFile('confusion.pem', es.spki), algorithms: ['ES256'] }),
        make({ keyFile: keyFile('confusion-rsa.pem', rs.spki), algorithms: ['RS256'] }),
      ]) {
        for (const pem of [es.spki, rs.spki]) {
          const signingInput = `${b64({ alg: 'HS256', typ: 'JWT' })}.${claimsPart()}`;
          const mac = createHmac('sha256', pem).update(signingInput).digest('base64url');
          assertFail(await auth.authenticate(bearer(`${signingInput}.${mac}`)), 'alg_not_allowed');
        }
      }
    });

    it('A-02 refuses an algorithm outside the allowlist even when the key would verify it', async () => {
      const esOnly = remote('/jwks.json', { algorithms: ['ES256'] });
      assertFail(await esOnly.authenticate(bearer(await token(rs))), 'alg_not_allowed');
      assertFail(await esOnly.authenticate(bearer(await token(ed))), 'alg_not_allowed');
      // A PEM RSA key narrowed to RS256: a PS256 token is refused before any key is tried.
      const rsFile = make({ keyFile: keyFile('rs.pem', rs.spki), algorithms: ['RS256'] });
      const { privateKey } = await generateKeyPair('PS256');
      const ps = await new SignJWT({ sub: 'a' }).setProtectedHeader({ alg: 'PS256' }).sign(privateKey);
      assertFail(await rsFile.authenticate(bearer(ps)), 'alg_not_allowed');
      // An allowed algorithm the file's keys cannot verify is dropped from the allowlist at creation.
      const esFile = make({ keyFile: keyFile('es-narrow.pem', es.spki), algorithms: ['ES256', 'RS256'] });
      assertFail(await esFile.authenticate(bearer(await token(rs))), 'alg_not_allowed');
    });

    it('refuses a token signed by another key under a known kid', async () => {
      const auth = remote('/jwks.json');
      assertFail(await auth.authenticate(bearer(await token(attacker))), 'bad_signature');
      const file = make({ keyFile: keyFile('es-sig.pem', es.spki), algorithms: ['ES256'] });
      assertFail(await file.authenticate(bearer(await token(attacker))), 'bad_signature');
    });
  });

  describe('claims (A-04)', () => {
    it('refuses a token expired beyond the clock tolerance with CREDENTIAL_EXPIRED, accepts one within it', async () => {
      const auth = remote('/jwks.json', { clockToleranceSec: 30 });
      const now = nowSec();
      assertOk(await auth.authenticate(bearer(await token(es, { exp: now - 20 }))));
      assertFail(await auth.authenticate(bearer(await token(es, { exp: now - 31 }))), 'expired');
      // Time comes from the input: the same token, checked an hour later.
      const fresh = await token(es, { exp: now + 60 });
      assertOk(await auth.authenticate(bearer(fresh)));
      assertFail(await auth.authenticate(bearer(fresh, { now: Date.now() + 3_600_000 })), 'expired');
    });

    it('requires exp', async () => {
      const auth = remote('/jwks.json');
      assertFail(await auth.authenticate(bearer(await token(es, { exp: undefined }))), 'missing_exp');
      assertFail(await auth.authenticate(bearer(await token(es, { exp: 'tomorrow' }))), 'malformed');
    });

    it('honours nbf with the tolerance', async () => {
      const auth = remote('/jwks.json', { clockToleranceSec: 10 });
      const now = nowSec();
      assertFail(await auth.authenticate(bearer(await token(es, { nbf: now + 60 }))), 'not_yet_valid');
      assertOk(await auth.authenticate(bearer(await token(es, { nbf: now + 5 }))));
    });

    it('refuses a wrong or missing issuer and audience', async () => {
      const auth = remote('/jwks.json');
      assertFail(
        await auth.authenticate(bearer(await token(es, { iss: 'https://evil.test/' }))),
        'wrong_issuer',
      );
      assertFail(await auth.authenticate(bearer(await token(es, { iss: undefined }))), 'wrong_issuer');
      assertFail(await auth.authenticate(bearer(await token(es, { aud: 'billing' }))), 'wrong_audience');
      assertFail(await auth.authenticate(bearer(await token(es, { aud: undefined }))), 'wrong_audience');
      assertOk(await auth.authenticate(bearer(await token(es, { aud: ['billing', AUD] }))));
      const multi = remote('/jwks.json', { audience: ['chat', 'feed'] });
      assertOk(await multi.authenticate(bearer(await token(es, { aud: 'feed' }))));
    });

    it('refuses a token of another type when typ is configured (an ID token used as an access token)', async () => {
      const auth = remote('/jwks.json', { typ: 'at+jwt' });
      assertFail(await auth.authenticate(bearer(await token(es, {}, { typ: 'JWT' }))), 'wrong_typ');
      assertFail(await auth.authenticate(bearer(await token(es))), 'wrong_typ');
      assertOk(await auth.authenticate(bearer(await token(es, {}, { typ: 'at+jwt' }))));
      assertOk(await auth.authenticate(bearer(await token(es, {}, { typ: 'application/at+JWT' }))));
    });

    it('enforces maxTokenAge, which requires iat', async () => {
      const auth = remote('/jwks.json', { maxTokenAgeSec: 300, clockToleranceSec: 0 });
      const now = nowSec();
      assertOk(await auth.authenticate(bearer(await token(es, { iat: now - 200 }))));
      assertFail(await auth.authenticate(bearer(await token(es, { iat: now - 400 }))), 'too_old');
      assertFail(await auth.authenticate(bearer(await token(es, { iat: undefined }))), 'too_old');
      assertFail(await auth.authenticate(bearer(await token(es, { iat: now + 120 }))), 'not_yet_valid');
    });

    it('takes the subject from subjectClaim, which must be a non-empty string', async () => {
      const auth = remote('/jwks.json');
      for (const sub of [undefined, '', 42, ['alice'], { id: 'alice' }]) {
        assertFail(await auth.authenticate(bearer(await token(es, { sub }))), 'missing_subject');
      }
      const byEmail = remote('/jwks.json', { subjectClaim: 'email' });
      const result = await byEmail.authenticate(bearer(await token(es, { email: 'alice@example.test' })));
      assertOk(result);
      assert.equal(result.principal.subject, 'alice@example.test');
      const proto = remote('/jwks.json', { subjectClaim: '__proto__' });
      assertFail(await proto.authenticate(bearer(await token(es))), 'missing_subject');
    });

    it('freezes the verified claims', async () => {
      const result = await remote('/jwks.json').authenticate(bearer(await token(es)));
      assertOk(result);
      assert.ok(Object.isFrozen(result.principal.claims));
    });
  });

  describe('header injection (A-05)', () => {
    it('treats injected kid strings as lookup misses, with no file or network access', async () => {
      const auth = remote('/kids.json');
      assertOk(await auth.authenticate(bearer(await token(es))));
      const fetched = hitsOf('/kids.json');
      for (const kid of ['../../../../dev/null', "' OR '1'='1", '/etc/passwd', 'http://127.0.0.1/']) {
        assertFail(await auth.authenticate(bearer(await token(attacker, {}, { kid }))), 'unknown_kid');
      }
      assert.equal(hitsOf('/kids.json'), fetched, 'unknown kids within the cooldown cause no fetch');
    });

    it('refuses a 10 KB, non-printable or non-string kid before any lookup', async () => {
      const auth = remote('/kids.json');
      const fetched = hitsOf('/kids.json');
      const header = (kid: unknown) => `${b64({ alg: 'ES256', kid })}.${claimsPart()}.c2ln`;
      for (const kid of [
        'k'.repeat(10_240),
        'k'.repeat(257),
        'a\u0000b',
        'line\nbreak',
        'caf\u00e9',
        7,
        { $ne: 1 },
        '',
      ]) {
        assertFail(await auth.authenticate(bearer(header(kid))), 'bad_kid');
      }
      assert.equal(hitsOf('/kids.json'), fetched, 'a refused kid is never looked up');
      assertOk(await auth.authenticate(bearer(await token(es))));
      const file = make({ keyFile: keyFile('kid.pem', es.spki), algorithms: ['ES256'] });
      assertFail(await file.authenticate(bearer(header('k'.repeat(10_240)))), 'bad_kid');
    });

    it('never follows jku or x5u, and ignores an embedded jwk', async () => {
      const auth = remote('/jwks.json');
      const file = make({ keyFile: keyFile('jku.pem', es.spki), algorithms: ['ES256'] });
      const headers = [
        { jku: `${spyUrl}/jwks.json`, kid: 'spy-1' },
        { jku: `${spyUrl}/jwks.json`, kid: es.kid },
        { x5u: `${spyUrl}/cert.pem`, kid: 'spy-2' },
        { x5u: `${spyUrl}/cert.pem` },
        { jwk: { kty: attacker.jwk.kty, crv: attacker.jwk.crv, x: attacker.jwk.x, y: attacker.jwk.y } },
        {
          jwk: { kty: attacker.jwk.kty, crv: attacker.jwk.crv, x: attacker.jwk.x, y: attacker.jwk.y },
          kid: undefined,
        },
      ];
      for (const header of headers) {
        for (const verifier of [auth, file]) {
          const result = await verifier.authenticate(bearer(await token(attacker, {}, header)));
          assert.equal(result.kind, 'fail', JSON.stringify(header));
          assert.ok(
            result.kind === 'fail' && ['unknown_kid', 'bad_signature'].includes(result.reason),
            JSON.stringify(result),
          );
        }
      }
      await sleep(50);
      assert.equal(spyRequests, 0, 'the jku/x5u listener was called');
      assert.equal(spyConnections, 0, 'the jku/x5u listener was connected to');
    });
  });

  describe('certificate binding (T-08, RFC 8705)', () => {
    it('accepts a token bound to the presented client certificate and records its fingerprint', async () => {
      const pki = await testPki();
      const cert = clientCertOf(pki.client);
      const auth = remote('/jwks.json');
      const result = await auth.authenticate(
        bearer(await token(es, { cnf: { 'x5t#S256': cert.x5tS256 } }), { clientCert: cert }),
      );
      assertOk(result);
      assert.equal(result.principal.certFingerprint, pki.client.fingerprint256);
    });

    it('refuses it over another certificate or none with FORBIDDEN', async () => {
      const pki = await testPki();
      const cert = clientCertOf(pki.client);
      const other = clientCertOf(pki.revokedClient);
      const auth = remote('/jwks.json');
      const bound = await token(es, { cnf: { 'x5t#S256': cert.x5tS256 } });
      assertFail(await auth.authenticate(bearer(bound, { clientCert: other })), 'cnf_mismatch');
      assertFail(await auth.authenticate(bearer(bound)), 'cnf_mismatch');
      const hexThumb = await token(es, { cnf: { 'x5t#S256': cert.fingerprint256 } });
      assertFail(await auth.authenticate(bearer(hexThumb, { clientCert: cert })), 'cnf_mismatch');
    });

    it('refuses a proof-of-possession method it cannot check, and a malformed cnf', async () => {
      const auth = remote('/jwks.json');
      for (const cnf of [{ jkt: 'abc' }, 'x5t', ['x5t#S256'], null, { 'x5t#S256': 5 }]) {
        assertFail(await auth.authenticate(bearer(await token(es, { cnf }))), 'cnf_mismatch');
      }
      assertOk(await auth.authenticate(bearer(await token(es, { cnf: {} }))));
    });
  });

  describe('transport', () => {
    it('finds no credential in a request without one, or with another scheme', async () => {
      const auth = remote('/jwks.json');
      assert.deepEqual(await auth.authenticate(input()), { kind: 'absent' });
      assert.deepEqual(await auth.authenticate(input({ authorization: 'Basic YWxpY2U6cw==' })), {
        kind: 'absent',
      });
    });

    it('refuses a malformed Bearer header without trying the other forms', async () => {
      const auth = remote('/jwks.json');
      const jwt = await token(es);
      for (const authorization of [
        'Bearer',
        `Bearer  ${jwt}`,
        `Bearer ${jwt} ${jwt}`,
        'Bearer not a token',
        'bearer "x"',
      ]) {
        const result = await auth.authenticate(
          input({ authorization, protocols: `${BEARER_PROTOCOL_PREFIX}${jwt}` }),
        );
        assertFail(result, 'malformed');
      }
      assertFail(await auth.authenticate(bearer('a.b')), 'malformed');
      assertFail(await auth.authenticate(bearer('not-a-jwt')), 'malformed');
      assertOk(await auth.authenticate(input({ authorization: `bEARER ${jwt}` })));
    });

    it('accepts the browser subprotocol form and names the entry so it is never echoed', async () => {
      const auth = remote('/jwks.json');
      const jwt = await token(es);
      const entry = `${BEARER_PROTOCOL_PREFIX}${jwt}`;
      const result = await auth.authenticate(input({ protocols: `chat.v1, ${entry}` }));
      assertOk(result);
      assert.equal(result.subprotocolCredential, entry);
    });

    it('A-06 reads ?access_token= only where the route allows it', async () => {
      const auth = remote('/jwks.json');
      const jwt = await token(es);
      assert.deepEqual(await auth.authenticate(input({ query: `access_token=${jwt}` })), { kind: 'absent' });
      const result = await auth.authenticate(
        input({ query: `x=1&access_token=${jwt}`, allowQueryToken: true }),
      );
      assertOk(result);
      assert.equal(result.subprotocolCredential, undefined);
    });
  });

  describe('JWKS over HTTPS', () => {
    // Tokens are signed before the clock-sensitive part, and the cooldowns leave a loaded machine
    // half a second of slack between steps.
    it('verifies a token with a rotated kid after one refetch', async () => {
      const [oldToken, newToken] = await Promise.all([token(rotatedOld), token(rotatedNew)]);
      const auth = remote('/rotating.json', { jwksCooldownMs: 600 });
      assertOk(await auth.authenticate(bearer(oldToken)));
      assert.equal(hitsOf('/rotating.json'), 1);
      rotating = { keys: [rotatedNew.jwk] };
      assertFail(await auth.authenticate(bearer(newToken)), 'unknown_kid');
      assert.equal(hitsOf('/rotating.json'), 1, 'no refetch within the cooldown');
      await sleep(650);
      assertOk(await auth.authenticate(bearer(newToken)));
      assert.equal(hitsOf('/rotating.json'), 2, 'one refetch for the new kid');
      assertOk(await auth.authenticate(bearer(newToken)));
      // The retired key is gone, and asking for it again within the cooldown fetches nothing.
      assertFail(await auth.authenticate(bearer(oldToken)), 'unknown_kid');
      assert.equal(hitsOf('/rotating.json'), 2);
    });

    it('fetches at most once per cooldown under a flood of unknown kids', async () => {
      const valid = await token(es);
      const flood = await Promise.all(
        Array.from({ length: 50 }, (_, i) => token(attacker, {}, { kid: `unknown-${i}` })),
      );
      const auth = remote('/flood.json', { jwksCooldownMs: 600 });
      assertOk(await auth.authenticate(bearer(valid)));
      assert.equal(hitsOf('/flood.json'), 1);
      const first = await Promise.all(flood.map((jwt) => auth.authenticate(bearer(jwt))));
      for (const result of first) assertFail(result, 'unknown_kid');
      assert.equal(hitsOf('/flood.json'), 1, 'no fetch within the cooldown of the last one');
      await sleep(650);
      const second = await Promise.all(flood.map((jwt) => auth.authenticate(bearer(jwt))));
      for (const result of second) assertFail(result, 'unknown_kid');
      assert.equal(hitsOf('/flood.json'), 2, 'one fetch for the whole flood after the cooldown');
    });

    it('answers AUTH_UNAVAILABLE when the JWKS server is down, without a fetch per token', async () => {
      const closed = createHttpServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
      const port = (closed.address() as AddressInfo).port;
      await new Promise((resolve) => closed.close(resolve));
      const seen: Error[] = [];
      const auth = make(
        { jwksUrl: `https://127.0.0.1:${port}/jwks.json`, jwksCaFile: caFile, algorithms: ['ES256'] },
        { onJwksError: (err) => seen.push(err) },
      );
      const jwt = await token(es);
      assertFail(await auth.authenticate(bearer(jwt)), 'jwks_unavailable');
      assertFail(await auth.authenticate(bearer(jwt)), 'jwks_unavailable');
      assert.equal(seen.length, 1, 'the second token found the fetch backing off');
      assert.match(String((seen[0]?.cause as NodeJS.ErrnoException | undefined)?.code), /ECONNREFUSED/);
    });

    it('answers AUTH_UNAVAILABLE for an error status, a redirect, a non-JWKS body and an oversized body', async () => {
      const mainHits = hitsOf('/jwks.json');
      for (const path of ['/error.json', '/redirect.json', '/not-a-jwks.json', '/huge.json']) {
        const seen: Error[] = [];
        const auth = remote(path, {}, { onJwksError: (err) => seen.push(err) });
        assertFail(await auth.authenticate(bearer(await token(es))), 'jwks_unavailable');
        assertFail(await auth.authenticate(bearer(await token(es))), 'jwks_unavailable');
        assert.equal(hitsOf(path), 1, `${path} fetched once per cooldown`);
        assert.equal(seen.length, 1);
      }
      assert.equal(hitsOf('/jwks.json'), mainHits, 'the redirect was not followed');
    });

    it('answers AUTH_UNAVAILABLE within jwksTimeoutMs when the server never answers', async () => {
      const auth = remote('/slow.json', { jwksTimeoutMs: 200 });
      const started = Date.now();
      assertFail(await auth.authenticate(bearer(await token(es))), 'jwks_unavailable');
      assert.ok(Date.now() - started < 2_000);
    });

    it('refuses a JWKS server whose certificate is not trusted', async () => {
      const seen: Error[] = [];
      const auth = make(
        { jwksUrl: `${jwksBase}/jwks.json`, algorithms: ['ES256'] },
        { onJwksError: (err) => seen.push(err) },
      );
      assertFail(await auth.authenticate(bearer(await token(es))), 'jwks_unavailable');
      assert.match(
        String((seen[0]?.cause as NodeJS.ErrnoException | undefined)?.code),
        /CERT|SIGNATURE|ISSUER/,
      );
    });

    it('refuses a CA file that holds no certificate, naming it', () => {
      const bad = keyFile('bad-ca.pem', 'not a certificate');
      assert.throws(() => remote('/jwks.json', { jwksCaFile: bad }), /bad-ca\.pem: no PEM certificate/);
    });
  });
});
