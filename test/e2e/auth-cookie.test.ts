import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { CookieAuthenticatorSchema } from '../../src/config/schema.js';
import { checkClaims } from '../../src/core/principal.js';
import { createCookieAuthenticator, findCookie } from '../../src/server/auth/cookie.js';
import { sessionKey, signSessionCookie } from '../../src/server/auth/cookie-sign.js';
import type { AuthInput, AuthResult } from '../../src/server/auth/types.js';
import { testPki } from '../helpers/pki.js';

const NOW = Date.now();
const SEC = Math.floor(NOW / 1000);

function input(cookie: string | undefined, now = NOW): AuthInput {
  const headers = new Map<string, string>();
  if (cookie !== undefined) headers.set('cookie', cookie);
  return {
    headers,
    query: '',
    routePath: '/chat',
    routeKey: '* /chat',
    allowQueryToken: false,
    clientCert: null,
    remote: '127.0.0.1',
    now,
  };
}

function failure(result: AuthResult): [string, string, string] | AuthResult {
  return result.kind === 'fail' ? [result.kind, result.code, result.reason] : result;
}

describe('findCookie', () => {
  const table: [header: string | undefined, expected: ReturnType<typeof findCookie>][] = [
    [undefined, { kind: 'absent' }],
    ['', { kind: 'absent' }],
    ['other=1; sessionx=2; xsession=3', { kind: 'absent' }],
    ['session=abc', { kind: 'value', value: 'abc' }],
    ['a=1;session=abc;b=2', { kind: 'value', value: 'abc' }],
    ['a=1;   session = abc  ; b', { kind: 'value', value: 'abc' }],
    ['session="abc"', { kind: 'value', value: 'abc' }],
    ['session=a=b', { kind: 'value', value: 'a=b' }],
    ['session=', { kind: 'absent' }],
    ['Session=abc', { kind: 'absent' }],
    ['session=abc; session=def', { kind: 'malformed' }],
    ['session=abc; session=abc', { kind: 'malformed' }],
    ['session=a b', { kind: 'malformed' }],
    ['session=a\\b', { kind: 'malformed' }],
    [`session=${'a'.repeat(4097)}`, { kind: 'malformed' }],
  ];
  for (const [header, expected] of table) {
    it(`${JSON.stringify(header)?.slice(0, 60)} -> ${expected.kind}`, () => {
      assert.deepEqual(findCookie(header, 'session'), expected);
    });
  }
});

describe('cookie authenticator, signed mode', () => {
  let dir: string;
  let current: string;
  let previous: string;
  const unknown = randomBytes(48).toString('base64');
  let files: { current: string; previous: string; short: string };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-cookie-'));
    current = randomBytes(48).toString('base64');
    previous = randomBytes(48).toString('base64');
    files = {
      current: join(dir, 'current.key'),
      previous: join(dir, 'previous.key'),
      short: join(dir, 'short.key'),
    };
    // Trailing newlines, as `openssl rand -base64 48 > file` writes them: trimmed off the key.
    writeFileSync(files.current, `${current}\n`);
    writeFileSync(files.previous, `  ${previous}\r\n`);
    writeFileSync(files.short, 'too-short\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function signed(extra: { subjectClaim?: string } = {}) {
    return createCookieAuthenticator(
      'web',
      CookieAuthenticatorSchema.parse({
        type: 'cookie',
        keyFiles: [files.current, files.previous],
        ...extra,
      }),
    );
  }

  it('is ambient and absent without its cookie', async () => {
    const auth = signed();
    assert.equal(auth.ambient, true);
    assert.deepEqual(await auth.authenticate(input(undefined)), { kind: 'absent' });
    assert.deepEqual(await auth.authenticate(input('other=1')), { kind: 'absent' });
  });

  it('accepts a cookie signed with the current key, claims and all', async () => {
    const value = await signSessionCookie(
      { sub: 'alice', exp: SEC + 600, amr: ['pwd', 'mfa'], jti: 's-1' },
      current,
    );
    assert.match(value, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    const result = await signed().authenticate(input(`theme=dark; session=${value}`));
    assert.ok(result.kind === 'ok', JSON.stringify(result));
    assert.equal(result.principal.subject, 'alice');
    assert.equal(result.principal.authenticator, 'web');
    assert.equal(result.principal.expiresAt, (SEC + 600) * 1000);
    assert.equal(result.principal.jti, 's-1');
    assert.deepEqual(result.principal.claims.amr, ['pwd', 'mfa']);
    assert.equal(checkClaims({ amr: 'mfa' }, result.principal.claims), undefined);
  });

  it('accepts a cookie signed with the previous key during a rotation', async () => {
    const value = await signSessionCookie({ sub: 'alice', exp: SEC + 600 }, previous);
    const result = await signed().authenticate(input(`session=${value}`));
    assert.equal(result.kind === 'ok' && result.principal.subject, 'alice');
  });

  it('refuses a cookie signed with a key it does not know', async () => {
    const value = await signSessionCookie({ sub: 'alice', exp: SEC + 600 }, unknown);
    assert.deepEqual(failure(await signed().authenticate(input(`session=${value}`))), [
      'fail',
      'UNAUTHENTICATED',
      'bad_signature',
    ]);
  });

  it('says CREDENTIAL_EXPIRED for an expired cookie, but only when its signature is good', async () => {
    const expired = await signSessionCookie({ sub: 'alice', exp: SEC - 1 }, current);
    assert.deepEqual(failure(await signed().authenticate(input(`session=${expired}`))), [
      'fail',
      'CREDENTIAL_EXPIRED',
      'expired',
    ]);
    const forged = await signSessionCookie({ sub: 'alice', exp: SEC - 1 }, unknown);
    assert.deepEqual(failure(await signed().authenticate(input(`session=${forged}`))), [
      'fail',
      'UNAUTHENTICATED',
      'bad_signature',
    ]);
  });

  it('A-09 lets an mfa_pending session through with its claims, so require.claims refuses it', async () => {
    const value = await signSessionCookie(
      { sub: 'bob', exp: SEC + 600, amr: ['pwd'], state: 'mfa_pending' },
      current,
    );
    const result = await signed().authenticate(input(`session=${value}`));
    assert.ok(result.kind === 'ok');
    assert.equal(result.principal.claims.state, 'mfa_pending');
    assert.equal(checkClaims({ amr: 'mfa' }, result.principal.claims), 'MFA_REQUIRED');
  });

  it('refuses a cookie without exp, without a subject, or with another algorithm', async () => {
    const key = sessionKey(current);
    const noExp = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'HS256' }).sign(key);
    const noSub = await signSessionCookie({ exp: SEC + 600 }, current);
    const hs512 = await new SignJWT({ sub: 'alice', exp: SEC + 600 })
      .setProtectedHeader({ alg: 'HS512' })
      .sign(key);
    const header = Buffer.from('{"alg":"none"}').toString('base64url');
    const payload = Buffer.from(JSON.stringify({ sub: 'alice', exp: SEC + 600 })).toString('base64url');
    const table: [string, string][] = [
      [noExp, 'bad_claims'],
      [noSub, 'no_subject'],
      [hs512, 'alg_not_allowed'],
      [`${header}.${payload}.`, 'alg_not_allowed'],
      ['not-a-jws', 'malformed'],
    ];
    for (const [value, reason] of table) {
      assert.deepEqual(failure(await signed().authenticate(input(`session=${value}`))), [
        'fail',
        'UNAUTHENTICATED',
        reason,
      ]);
    }
  });

  it('refuses two cookies with its name, even when one is valid', async () => {
    const value = await signSessionCookie({ sub: 'alice', exp: SEC + 600 }, current);
    assert.deepEqual(failure(await signed().authenticate(input(`session=${value}; session=x`))), [
      'fail',
      'UNAUTHENTICATED',
      'malformed',
    ]);
  });

  it('takes the subject from subjectClaim', async () => {
    const value = await signSessionCookie({ sub: 'ignored', uid: 'u-77', exp: SEC + 600 }, current);
    const result = await signed({ subjectClaim: 'uid' }).authenticate(input(`session=${value}`));
    assert.equal(result.kind === 'ok' && result.principal.subject, 'u-77');
  });

  it('refuses a key file shorter than 32 bytes at creation, naming the path', async () => {
    assert.throws(
      () =>
        createCookieAuthenticator(
          'web',
          CookieAuthenticatorSchema.parse({ type: 'cookie', keyFiles: [files.short] }),
        ),
      /authenticators\.web\.keyFiles\[0\]: .*32 bytes/,
    );
    await assert.rejects(signSessionCookie({ exp: SEC }, 'short'), /32 bytes/);
  });
});

/**
 * Answers POSTs the way `handler` says; 'hang' never answers; an array body is written in pieces
 * (chunked, no Content-Length). Records every request body.
 */
async function startStub(
  handler: (body: unknown) => { status: number; type?: string; body: string | string[] } | 'hang',
) {
  const pki = await testPki();
  const received: { contentType: string | undefined; body: unknown }[] = [];
  const server: Server = createServer({ cert: pki.server.certPem, key: pki.server.keyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      received.push({ contentType: req.headers['content-type'], body });
      const answer = handler(body);
      if (answer === 'hang') return;
      res.writeHead(answer.status, { 'content-type': answer.type ?? 'application/json' });
      if (typeof answer.body === 'string') return res.end(answer.body);
      for (const piece of answer.body) res.write(piece);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}/introspect`,
    received,
    ca: pki.ca.certPem,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('cookie authenticator, introspection mode over real HTTPS', () => {
  let stub: Awaited<ReturnType<typeof startStub>>;
  let dir: string;
  let caFile: string;

  const sessions: Record<string, unknown> = {
    good: { active: true, sub: 'alice', exp: SEC + 600, claims: { amr: ['pwd', 'mfa'], org: 'acme' } },
    pending: { active: true, sub: 'bob', claims: { amr: ['pwd'] } },
    gone: { active: false },
    stale: { active: true, sub: 'carol', exp: SEC - 5 },
    weird: { active: 'yes', sub: 'mallory' },
    nosub: { active: true },
  };

  before(async () => {
    stub = await startStub((body) => {
      const cookie = (body as { cookie: string }).cookie;
      if (cookie === 'slow') return 'hang';
      if (cookie === 'boom') return { status: 500, body: '{}' };
      if (cookie === 'junk') return { status: 200, body: '{"active": tru' };
      if (cookie === 'html') return { status: 200, type: 'text/html', body: '{"active":true,"sub":"x"}' };
      if (cookie === 'huge')
        return { status: 200, body: JSON.stringify({ active: false, pad: 'x'.repeat(70_000) }) };
      if (cookie === 'stream')
        return { status: 200, body: ['{"active":false,"pad":"', 'x'.repeat(70_000), '"}'] };
      return { status: 200, body: JSON.stringify(sessions[cookie] ?? { active: false }) };
    });
    dir = mkdtempSync(join(tmpdir(), 'portcullis-introspect-'));
    caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, stub.ca);
  });
  after(async () => {
    await stub.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function introspecting(extra: Record<string, unknown> = {}) {
    return createCookieAuthenticator(
      'app',
      CookieAuthenticatorSchema.parse({
        type: 'cookie',
        name: 'sid',
        introspectUrl: stub.url,
        introspectCaFile: caFile,
        timeoutMs: 300,
        cacheMs: 0,
        ...extra,
      }),
    );
  }

  it('POSTs {cookie} as JSON and builds the principal from an active answer', async () => {
    const auth = introspecting();
    const result = await auth.authenticate(input('sid=good'));
    auth.close?.();
    assert.ok(result.kind === 'ok', JSON.stringify(result));
    assert.deepEqual(result.principal, {
      subject: 'alice',
      claims: { amr: ['pwd', 'mfa'], org: 'acme', sub: 'alice', exp: SEC + 600 },
      expiresAt: (SEC + 600) * 1000,
      authenticator: 'app',
    });
    assert.deepEqual(stub.received.at(-1), { contentType: 'application/json', body: { cookie: 'good' } });
  });

  it('A-09 carries an mfa_pending session claims through, so require.claims refuses it', async () => {
    const auth = introspecting();
    const result = await auth.authenticate(input('sid=pending'));
    auth.close?.();
    assert.ok(result.kind === 'ok');
    assert.equal(result.principal.expiresAt, null);
    assert.equal(checkClaims({ amr: 'mfa' }, result.principal.claims), 'MFA_REQUIRED');
  });

  it('maps each answer to a code', async () => {
    const auth = introspecting();
    const table: [cookie: string, code: string, reason: string][] = [
      ['gone', 'UNAUTHENTICATED', 'inactive'],
      ['stale', 'CREDENTIAL_EXPIRED', 'expired'],
      ['weird', 'AUTH_UNAVAILABLE', 'bad_answer'],
      ['nosub', 'AUTH_UNAVAILABLE', 'bad_answer'],
      ['boom', 'AUTH_UNAVAILABLE', 'http_status'],
      ['junk', 'AUTH_UNAVAILABLE', 'not_json'],
      ['html', 'AUTH_UNAVAILABLE', 'not_json'],
      ['huge', 'AUTH_UNAVAILABLE', 'too_large'],
      ['stream', 'AUTH_UNAVAILABLE', 'too_large'],
      ['slow', 'AUTH_UNAVAILABLE', 'timeout'],
    ];
    for (const [cookie, code, reason] of table) {
      assert.deepEqual(
        failure(await auth.authenticate(input(`sid=${cookie}`))),
        ['fail', code, reason],
        cookie,
      );
    }
    auth.close?.();
  });

  it('times out within its deadline', async () => {
    const auth = introspecting({ timeoutMs: 150 });
    const started = performance.now();
    const result = await auth.authenticate(input('sid=slow'));
    const elapsed = performance.now() - started;
    auth.close?.();
    assert.deepEqual(failure(result), ['fail', 'AUTH_UNAVAILABLE', 'timeout']);
    assert.ok(elapsed >= 140 && elapsed < 1000, `took ${elapsed} ms`);
  });

  it('does not trust the application server without its CA file', async () => {
    const auth = createCookieAuthenticator(
      'app',
      CookieAuthenticatorSchema.parse({ type: 'cookie', introspectUrl: stub.url, timeoutMs: 1000 }),
    );
    const result = await auth.authenticate(input('session=good'));
    auth.close?.();
    assert.deepEqual(failure(result), ['fail', 'AUTH_UNAVAILABLE', 'tls']);
  });

  it('refuses a missing CA file at creation, naming the path', () => {
    const config = { type: 'cookie', introspectUrl: stub.url, introspectCaFile: join(dir, 'missing.pem') };
    assert.throws(
      () => createCookieAuthenticator('app', CookieAuthenticatorSchema.parse(config)),
      /authenticators\.app\.introspectCaFile: .*ENOENT/,
    );
  });

  it('caches positive answers for cacheMs only, and never negative ones', async () => {
    const auth = introspecting({ cacheMs: 1000 });
    const calls = () => stub.received.length;
    const start = calls();
    assert.equal((await auth.authenticate(input('sid=good'))).kind, 'ok');
    assert.equal((await auth.authenticate(input('sid=good', NOW + 999))).kind, 'ok');
    assert.equal(calls(), start + 1, 'second answer came from the cache');
    assert.equal((await auth.authenticate(input('sid=good', NOW + 1000))).kind, 'ok');
    assert.equal(calls(), start + 2, 'asked again once cacheMs passed');
    await auth.authenticate(input('sid=gone'));
    await auth.authenticate(input('sid=gone'));
    assert.equal(calls(), start + 4, 'an inactive answer is asked every time');
    auth.close?.();
  });

  it('never keeps a cached session past its exp', async () => {
    const auth = introspecting({ cacheMs: 300_000 });
    const start = stub.received.length;
    assert.equal((await auth.authenticate(input('sid=good'))).kind, 'ok');
    const later = await auth.authenticate(input('sid=good', (SEC + 600) * 1000));
    assert.equal(stub.received.length, start + 2, 'the cache entry ended at exp');
    assert.deepEqual(failure(later), ['fail', 'CREDENTIAL_EXPIRED', 'expired']);
    auth.close?.();
  });
});
