import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import { BasicAuthenticatorSchema, WebhookAuthenticatorSchema } from '../../src/config/schema.js';
import {
  type BasicAuthenticator,
  basicCredentials,
  createBasicAuthenticator,
  MAX_TRACKED_ADDRESSES,
  parseHtpasswd,
} from '../../src/server/auth/basic.js';
import type { AuthInput, AuthResult } from '../../src/server/auth/types.js';
import { createWebhookAuthenticator } from '../../src/server/auth/webhook.js';
import { testPki } from '../helpers/pki.js';

const NOW = Date.now();
const SEC = Math.floor(NOW / 1000);

function input(headers: Record<string, string>, over: { remote?: string; now?: number } = {}): AuthInput {
  return {
    headers: new Map(Object.entries(headers)),
    query: '',
    routePath: '/tools',
    routeKey: '* /tools',
    allowQueryToken: false,
    clientCert: null,
    remote: over.remote ?? '203.0.113.7',
    now: over.now ?? NOW,
  };
}

function failure(result: AuthResult): unknown[] | AuthResult {
  if (result.kind !== 'fail') return result;
  return result.retryAfterMs === undefined
    ? [result.code, result.reason]
    : [result.code, result.reason, result.retryAfterMs];
}

const basic = (user: string, password: string) => ({
  authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
});

describe('htpasswd and the Authorization header', () => {
  const hash = bcrypt.hashSync('pw', 4);

  it('reads bcrypt lines of every prefix, skipping blanks and comments', () => {
    const text = `# tools\n\nalice:${hash}\r\nbob:${hash.replace('$2b$', '$2y$')}\ncarol:${hash.replace('$2b$', '$2a$')}\n`;
    assert.deepEqual([...parseHtpasswd(text, 'users.htpasswd').keys()], ['alice', 'bob', 'carol']);
  });

  const refused: [string, RegExp][] = [
    ['alice:$apr1$abcdefgh$0123456789abcdefghijkl', /users:2: only bcrypt/],
    ['alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=', /users:2: only bcrypt/],
    ['alice:plaintext', /users:2: only bcrypt/],
    ['alice:abJnggxhB/yWI', /users:2: only bcrypt/],
    ['no-colon-here', /users:2: expected user:hash/],
    [`:${hash}`, /users:2: expected user:hash/],
    [`ok:${hash}\nok:${hash}`, /users:3: .*twice/],
  ];
  for (const [line, message] of refused) {
    it(`refuses ${line.slice(0, 24)} at load with its line number`, () => {
      assert.throws(() => parseHtpasswd(`# header\n${line}`, 'users'), message);
    });
  }

  const headers: [string | undefined, ReturnType<typeof basicCredentials>][] = [
    [undefined, { kind: 'absent' }],
    ['Bearer abc.def.ghi', { kind: 'absent' }],
    ['Digest x', { kind: 'absent' }],
    ['Basic', { kind: 'malformed' }],
    ['Basic !!!', { kind: 'malformed' }],
    ['Basic YWxpY2U', { kind: 'malformed' }],
    [`Basic ${Buffer.from('nocolon').toString('base64')}`, { kind: 'malformed' }],
    [`Basic ${Buffer.from(':pw').toString('base64')}`, { kind: 'malformed' }],
    [
      `basic ${Buffer.from('alice:p:w').toString('base64')}`,
      { kind: 'credentials', user: 'alice', password: 'p:w' },
    ],
    [
      `Basic ${Buffer.from('élodie:pä').toString('base64')}`,
      { kind: 'credentials', user: 'élodie', password: 'pä' },
    ],
  ];
  for (const [header, expected] of headers) {
    it(`${header ?? 'no header'} -> ${expected.kind}`, () => {
      assert.deepEqual(basicCredentials(header), expected);
    });
  }
});

describe('basic authenticator', () => {
  let dir: string;
  let file: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-basic-'));
    file = join(dir, 'users.htpasswd');
    const long = 'L'.repeat(72);
    writeFileSync(
      file,
      [
        `alice:${bcrypt.hashSync('correct horse', 4).replace('$2b$', '$2y$')}`,
        `bob:${bcrypt.hashSync('hunter2', 4)}`,
        `longpw:${bcrypt.hashSync(long, 4)}`,
      ].join('\n'),
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function create(extra: Record<string, unknown> = {}): BasicAuthenticator {
    return createBasicAuthenticator(
      'tools',
      BasicAuthenticatorSchema.parse({
        type: 'basic',
        htpasswdFile: file,
        failuresPerMinute: 6,
        failureBurst: 3,
        ...extra,
      }),
    );
  }

  it('is ambient, carries its challenge, and leaves Bearer and no header to others', async () => {
    const auth = create({ realm: 'ops tools' });
    assert.equal(auth.ambient, true);
    assert.equal(auth.challenge, 'Basic realm="ops tools", charset="UTF-8"');
    assert.deepEqual(await auth.authenticate(input({})), { kind: 'absent' });
    assert.deepEqual(await auth.authenticate(input({ authorization: 'Bearer x.y.z' })), { kind: 'absent' });
    assert.equal(auth.compares, 0);
  });

  it('accepts the right password ($2y$ and $2b$ hashes)', async () => {
    const auth = create();
    const alice = await auth.authenticate(input(basic('alice', 'correct horse')));
    assert.ok(alice.kind === 'ok');
    assert.deepEqual(alice.principal, {
      subject: 'alice',
      claims: { sub: 'alice' },
      expiresAt: null,
      authenticator: 'tools',
    });
    const bob = await auth.authenticate(input(basic('bob', 'hunter2')));
    assert.equal(bob.kind === 'ok' && bob.principal.subject, 'bob');
  });

  it('answers a wrong password and an unknown user alike, each after a bcrypt comparison', async () => {
    const auth = create();
    const wrong = await auth.authenticate(input(basic('alice', 'Correct horse')));
    assert.equal(auth.compares, 1);
    const started = performance.now();
    const unknown = await auth.authenticate(
      input(basic('mallory', 'correct horse'), { remote: '198.51.100.1' }),
    );
    const elapsed = performance.now() - started;
    assert.equal(auth.compares, 2, 'the unknown user ran a comparison too');
    assert.ok(elapsed > 1, `cost-4 bcrypt takes over 1 ms (took ${elapsed.toFixed(2)})`);
    assert.deepEqual(failure(wrong), ['UNAUTHENTICATED', 'bad_credentials']);
    assert.deepEqual(failure(unknown), ['UNAUTHENTICATED', 'bad_credentials']);
  });

  it('refuses a password longer than bcrypt reads instead of truncating it', async () => {
    const auth = create();
    const exact = await auth.authenticate(input(basic('longpw', 'L'.repeat(72))));
    assert.equal(exact.kind, 'ok');
    const longer = await auth.authenticate(input(basic('longpw', `${'L'.repeat(72)}anything`)));
    assert.deepEqual(failure(longer), ['UNAUTHENTICATED', 'bad_credentials']);
    assert.equal(auth.compares, 2);
  });

  it('A-10 limits failures per address: 429 with retryAfterMs after the burst, even for the right password', async () => {
    const auth = create();
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(failure(await auth.authenticate(input(basic('alice', `guess-${i}`)))), [
        'UNAUTHENTICATED',
        'bad_credentials',
      ]);
    }
    const compares = auth.compares;
    // 6 failures a minute: one token every 10 s.
    assert.deepEqual(failure(await auth.authenticate(input(basic('alice', 'correct horse')))), [
      'AUTH_RATE_LIMITED',
      'too_many_failures',
      10_000,
    ]);
    assert.equal(auth.compares, compares, 'no bcrypt work while limited');
    const elsewhere = await auth.authenticate(
      input(basic('alice', 'correct horse'), { remote: '198.51.100.9' }),
    );
    assert.equal(elsewhere.kind, 'ok', 'another address is not affected');
    assert.deepEqual(failure(await auth.authenticate(input(basic('alice', 'x'), { now: NOW + 4_000 }))), [
      'AUTH_RATE_LIMITED',
      'too_many_failures',
      6_000,
    ]);
    const later = await auth.authenticate(input(basic('alice', 'correct horse'), { now: NOW + 10_000 }));
    assert.equal(later.kind, 'ok');
  });

  it('counts malformed credentials as failures, and does not count successes', async () => {
    const auth = create();
    for (let i = 0; i < 10; i++) {
      assert.equal((await auth.authenticate(input(basic('bob', 'hunter2')))).kind, 'ok');
    }
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(failure(await auth.authenticate(input({ authorization: 'Basic !!!' }))), [
        'UNAUTHENTICATED',
        'malformed',
      ]);
    }
    const limited = await auth.authenticate(input(basic('bob', 'hunter2')));
    assert.equal(limited.kind === 'fail' && limited.code, 'AUTH_RATE_LIMITED');
  });

  it('bounds the addresses it remembers, sweeping full buckets first', async () => {
    const auth = create();
    const bad = { authorization: 'Basic !!!' };
    for (let i = 0; i < MAX_TRACKED_ADDRESSES + 50; i++) {
      await auth.authenticate(input(bad, { remote: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` }));
    }
    assert.equal(auth.trackedAddresses, MAX_TRACKED_ADDRESSES);
    // A minute later every bucket has refilled: the next newcomer sweeps them all.
    await auth.authenticate(input(bad, { remote: '192.0.2.1', now: NOW + 60_000 }));
    assert.equal(auth.trackedAddresses, 1);
    auth.close?.();
  });
});

interface Received {
  headers: IncomingHttpHeaders;
  body: { headers: Record<string, string>; route: string; remote: string };
}

/** The application's auth endpoint: answers by the forwarded `x-scenario` header (or allows). */
async function startWebhook() {
  const pki = await testPki();
  const received: Received[] = [];
  const server: Server = createServer({ cert: pki.server.certPem, key: pki.server.keyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Received['body'];
      received.push({ headers: req.headers, body });
      const json = (status: number, value: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
        res.end(JSON.stringify(value));
      };
      switch (body.headers['x-scenario']) {
        case 'deny':
          return json(200, { allow: false, reason: 'SECRET-REASON account locked\nforged line' });
        case 'slow':
          return;
        case '5xx':
          return json(503, { error: 'down' });
        case 'junk':
          res.writeHead(200, { 'content-type': 'application/json' });
          return res.end('{"allow":');
        case 'expired':
          return json(200, { allow: true, sub: 'alice', exp: SEC - 1 });
        case 'nosub':
          return json(200, { allow: true, claims: {} });
        default:
          return json(200, { allow: true, sub: 'alice', claims: { roles: ['admin'] }, exp: SEC + 300 });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}/auth`,
    received,
    ca: pki.ca.certPem,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('webhook authenticator over real HTTPS', () => {
  let hook: Awaited<ReturnType<typeof startWebhook>>;
  let dir: string;
  let caFile: string;

  before(async () => {
    hook = await startWebhook();
    dir = mkdtempSync(join(tmpdir(), 'portcullis-webhook-'));
    caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, hook.ca);
  });
  after(async () => {
    await hook.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function create(extra: Record<string, unknown> = {}, debug?: (fields: Record<string, unknown>) => void) {
    return createWebhookAuthenticator(
      'app',
      WebhookAuthenticatorSchema.parse({
        type: 'webhook',
        url: hook.url,
        caFile,
        timeoutMs: 300,
        forwardHeaders: ['cookie', 'X-Scenario'],
        ...extra,
      }),
      debug ? { debug } : {},
    );
  }

  const request = {
    cookie: 'sid=abc',
    authorization: 'Bearer SECRET-TOKEN',
    'x-internal-secret': 'do-not-forward',
  };

  it('forwards only the allowlisted headers present, with route and remote, and takes the identity', async () => {
    const auth = create();
    const result = await auth.authenticate(input(request));
    auth.close?.();
    assert.ok(result.kind === 'ok', JSON.stringify(result));
    assert.deepEqual(result.principal, {
      subject: 'alice',
      claims: { roles: ['admin'], sub: 'alice', exp: SEC + 300 },
      expiresAt: (SEC + 300) * 1000,
      authenticator: 'app',
    });
    const last = hook.received.at(-1);
    assert.deepEqual(last?.body, { headers: { cookie: 'sid=abc' }, route: '/tools', remote: '203.0.113.7' });
    assert.equal(last?.headers['content-type'], 'application/json');
    assert.equal(
      last?.headers.authorization,
      undefined,
      'nothing of the client request rides on the POST itself',
    );
  });

  it('forwards Authorization only when it is listed', async () => {
    const auth = create({ forwardHeaders: ['authorization'] });
    assert.equal(auth.ambient, false, 'no cookie forwarded: not ambient');
    await auth.authenticate(input(request));
    auth.close?.();
    assert.deepEqual(hook.received.at(-1)?.body.headers, { authorization: 'Bearer SECRET-TOKEN' });
    assert.equal(create().ambient, true, 'a forwarded cookie is ambient');
  });

  it('is absent, without a call, when none of the listed headers is present', async () => {
    const auth = create();
    const calls = hook.received.length;
    assert.deepEqual(await auth.authenticate(input({ authorization: 'Bearer x' })), { kind: 'absent' });
    assert.equal(hook.received.length, calls);
    auth.close?.();
  });

  it('turns a deny into FORBIDDEN webhook_denied; the app reason goes only to the debug log', async () => {
    const logged: Record<string, unknown>[] = [];
    const auth = create({}, (fields) => logged.push(fields));
    const result = await auth.authenticate(input({ ...request, 'x-scenario': 'deny' }));
    auth.close?.();
    assert.deepEqual(result, { kind: 'fail', code: 'FORBIDDEN', reason: 'webhook_denied' });
    assert.ok(!JSON.stringify(result).includes('SECRET-REASON'));
    assert.equal(logged.length, 1);
    assert.equal(logged[0]?.appReason, 'SECRET-REASON account locked\\u000aforged line');
  });

  it('maps timeouts, 5xx, invalid JSON and bad answers to AUTH_UNAVAILABLE', async () => {
    const auth = create();
    const table: [scenario: string, code: string, reason: string][] = [
      ['slow', 'AUTH_UNAVAILABLE', 'timeout'],
      ['5xx', 'AUTH_UNAVAILABLE', 'http_status'],
      ['junk', 'AUTH_UNAVAILABLE', 'not_json'],
      ['nosub', 'AUTH_UNAVAILABLE', 'bad_answer'],
      ['expired', 'CREDENTIAL_EXPIRED', 'expired'],
    ];
    for (const [scenario, code, reason] of table) {
      const result = await auth.authenticate(input({ ...request, 'x-scenario': scenario }));
      assert.deepEqual(failure(result), [code, reason], scenario);
    }
    auth.close?.();
  });

  it('refuses a missing CA file at creation, naming the path', () => {
    assert.throws(
      () => create({ caFile: join(dir, 'missing.pem') }),
      /authenticators\.app\.caFile: .*ENOENT/,
    );
  });

  it('caches allow answers for cacheMs, keyed by what was forwarded; denies are asked again', async () => {
    const auth = create({ cacheMs: 1_000 });
    const calls = () => hook.received.length;
    const start = calls();
    assert.equal((await auth.authenticate(input(request))).kind, 'ok');
    assert.equal((await auth.authenticate(input(request, { now: NOW + 999 }))).kind, 'ok');
    assert.equal(calls(), start + 1);
    assert.equal((await auth.authenticate(input({ ...request, cookie: 'sid=other' }))).kind, 'ok');
    assert.equal(calls(), start + 2, 'another cookie is another key');
    assert.equal((await auth.authenticate(input(request, { now: NOW + 1_000 }))).kind, 'ok');
    assert.equal(calls(), start + 3, 'expired entry');
    const deny = { ...request, 'x-scenario': 'deny' };
    await auth.authenticate(input(deny));
    await auth.authenticate(input(deny));
    assert.equal(calls(), start + 5);
    auth.close?.();
  });
});
