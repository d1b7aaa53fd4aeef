import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  checkOrigin,
  compileOriginPolicy,
  normaliseOrigin,
  type OriginRefusal,
  parseOriginPattern,
} from '../../src/core/origin.js';

const policy = compileOriginPolicy(['https://app.test', 'https://*.example.com', 'http://localhost:3000']);
const strict = { allowMissing: false };

// Expected result: the normalised origin that passes, or the refusal reason.
type Expect = { pass: string | null } | OriginRefusal;

function expectVerdict(origin: string | undefined, expected: Expect, allowMissing = false): void {
  const verdict = checkOrigin(policy, origin, { allowMissing });
  const label = JSON.stringify(origin)?.slice(0, 80);
  if (typeof expected === 'string') {
    assert.equal(verdict.ok, false, `${label} should be refused`);
    if (verdict.ok) return;
    assert.equal(verdict.code, 'ORIGIN_NOT_ALLOWED', label);
    assert.equal(verdict.reason, expected, label);
  } else {
    assert.deepEqual(verdict, { ok: true, origin: expected.pass }, label);
  }
}

function table(rows: ReadonlyArray<readonly [string, Expect]>): void {
  for (const [origin, expected] of rows) expectVerdict(origin, expected);
}

describe('checkOrigin', () => {
  it('H-05 refuses a cross-site origin that is not allowlisted', () => {
    table([
      ['https://evil.test', 'not-allowed'],
      ['http://evil.test', 'not-allowed'],
    ]);
  });

  it('H-06 allows only the exact allowlisted tuple after RFC 6454 normalisation', () => {
    table([
      ['https://app.test', { pass: 'https://app.test' }],
      ['HTTPS://APP.TEST', { pass: 'https://app.test' }],
      ['https://app.test:443', { pass: 'https://app.test' }],
      ['Https://App.Test:443', { pass: 'https://app.test' }],
      ['http://localhost:3000', { pass: 'http://localhost:3000' }],
      ['HTTP://LOCALHOST:3000', { pass: 'http://localhost:3000' }],
    ]);
  });

  it('H-06 rejects look-alike hosts, other schemes and other ports', () => {
    table([
      ['https://app.test.evil.io', 'not-allowed'],
      ['https://evilapp.test', 'not-allowed'],
      ['https://x.app.test', 'not-allowed'],
      ['http://app.test', 'not-allowed'],
      ['https://app.test:8443', 'not-allowed'],
      ['http://app.test:443', 'not-allowed'],
      ['https://app.test:80', 'not-allowed'],
      ['http://localhost', 'not-allowed'],
      ['http://localhost:3001', 'not-allowed'],
      ['https://localhost:3000', 'not-allowed'],
      ['http://127.0.0.1:3000', 'not-allowed'],
    ]);
  });

  it('H-06 rejects a trailing slash or any path, query or fragment as malformed', () => {
    table([
      ['https://app.test/', 'malformed'],
      ['https://app.test/path', 'malformed'],
      ['https://app.test?x=1', 'malformed'],
      ['https://app.test#x', 'malformed'],
      ['https://app.test\\', 'malformed'],
    ]);
  });

  it('H-06 refuses the null origin unless listed', () => {
    table([['null', 'null']]);
    const withNull = compileOriginPolicy(['null', 'https://app.test']);
    assert.deepEqual(checkOrigin(withNull, 'null', strict), { ok: true, origin: 'null' });
    assert.deepEqual(checkOrigin(withNull, 'https://app.test', strict), {
      ok: true,
      origin: 'https://app.test',
    });
  });

  it('H-06 treats only the exact lowercase literal as the null origin', () => {
    const withNull = compileOriginPolicy(['null']);
    for (const value of ['NULL', 'Null', ' null', 'null ', 'null,null']) {
      const verdict = checkOrigin(withNull, value, strict);
      assert.equal(verdict.ok, false, value);
      if (!verdict.ok) assert.equal(verdict.reason, 'malformed', value);
    }
  });

  it('H-06 rejects a trailing dot in the host', () => {
    table([
      ['https://app.test.', 'malformed'],
      ['https://app.test.:443', 'malformed'],
      ['https://a.example.com.', 'malformed'],
    ]);
  });

  it('H-06 rejects a look-alike origin (Cyrillic, fullwidth, punycode)', () => {
    table([
      ['https://\u0430pp.test', 'malformed'], // Cyrillic а (U+0430): browsers send A-labels only
      ['https://\uff41\uff50\uff50.test', 'malformed'], // fullwidth ａｐｐ: never folded to ASCII
      ['https://app\u3002test', 'malformed'], // ideographic full stop
      ['https://app.test\u00ad', 'malformed'], // soft hyphen
      ['https://xn--pp-6kc.test', 'not-allowed'], // the A-label of the Cyrillic look-alike
      ['https://xn--pp-8cd.test', 'not-allowed'],
      ['https://\u0430.example.com', 'malformed'],
    ]);
  });

  it('H-06 matches a wildcard on subdomains only, never the parent or a look-alike', () => {
    table([
      ['https://a.example.com', { pass: 'https://a.example.com' }],
      ['https://a.b.example.com', { pass: 'https://a.b.example.com' }],
      ['HTTPS://A.Example.COM:443', { pass: 'https://a.example.com' }],
      ['https://example.com', 'not-allowed'],
      ['https://evilexample.com', 'not-allowed'],
      ['https://a.evilexample.com', 'not-allowed'],
      ['https://example.com.evil.io', 'not-allowed'],
      ['https://a.example.com.evil.io', 'not-allowed'],
      ['https://a.example.com:8443', 'not-allowed'],
      ['http://a.example.com', 'not-allowed'],
      ['https://example.co', 'not-allowed'],
      ['https://.example.com', 'malformed'],
      ['https://*.example.com', 'malformed'],
      ['https://a..example.com', 'malformed'],
    ]);
  });

  it('H-06 rejects merged duplicate Origin headers', () => {
    table([
      ['https://app.test, https://evil.test', 'malformed'],
      ['https://app.test,https://app.test', 'malformed'],
      ['https://evil.test, https://app.test', 'malformed'],
    ]);
  });

  it('H-06 rejects whitespace and control characters', () => {
    table([
      [' https://app.test', 'malformed'],
      ['https://app.test ', 'malformed'],
      ['https://app .test', 'malformed'],
      ['https://app.test\r\n', 'malformed'],
      ['https://app.test\r\nSet-Cookie: x=1', 'malformed'],
      ['https://app\t.test', 'malformed'],
      ['https://app.test\u0000', 'malformed'],
      ['https://app.test\u007f', 'malformed'],
      ['https://app.test\u00a0', 'malformed'],
      ['https://app.test\u2028', 'malformed'],
    ]);
  });

  it('H-06 rejects oversized origins', () => {
    table([
      [`https://${'a'.repeat(10 * 1024)}.test`, 'malformed'],
      [`https://${'a.'.repeat(5 * 1024)}example.com`, 'malformed'],
      [`https://${'a'.repeat(64)}.example.com`, 'malformed'],
      [`https://${'a.'.repeat(122)}example.com`, 'malformed'],
    ]);
    // Within DNS limits (63-char label, 253-char host) a long subdomain still matches.
    const longest = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(49)}.example.com`;
    assert.equal(longest.length, 253);
    expectVerdict(`https://${longest}`, { pass: `https://${longest}` });
  });

  it('H-06 rejects userinfo', () => {
    table([
      ['https://user@app.test', 'malformed'],
      ['https://user:pass@app.test', 'malformed'],
      ['https://app.test@evil.test', 'malformed'],
      ['https://@app.test', 'malformed'],
    ]);
  });

  it('H-06 allows a missing Origin only with allowMissing', () => {
    expectVerdict(undefined, 'missing');
    expectVerdict(undefined, { pass: null }, true);
  });

  it('allowMissing does not relax checks on a present Origin', () => {
    const lax = { allowMissing: true };
    assert.equal(checkOrigin(policy, '', lax).ok, false);
    assert.equal(checkOrigin(policy, 'null', lax).ok, false);
    assert.equal(checkOrigin(policy, 'https://evil.test', lax).ok, false);
  });

  it('rejects values that are not scheme://host[:port]', () => {
    table([
      ['', 'malformed'],
      ['app.test', 'malformed'],
      ['//app.test', 'malformed'],
      ['https:/app.test', 'malformed'],
      ['https:app.test', 'malformed'],
      ['https://', 'malformed'],
      ['https://:443', 'malformed'],
      ['ws://app.test', 'malformed'],
      ['wss://app.test', 'malformed'],
      ['file://', 'malformed'],
      ['chrome-extension://abcdef', 'malformed'],
      ['https://%61pp.test', 'malformed'],
      ['https://app.test:', 'malformed'],
      ['https://app.test:0', 'malformed'],
      ['https://app.test:0443', 'malformed'],
      ['https://app.test:+443', 'malformed'],
      ['https://app.test:65536', 'malformed'],
      ['https://app.test:99999', 'malformed'],
      ['https://app.test:443:443', 'malformed'],
      ['http://[::1', 'malformed'],
      ['http://[zz::1]', 'malformed'],
    ]);
  });

  it('refuses every present Origin when the allowlist is empty', () => {
    const empty = compileOriginPolicy([]);
    for (const value of ['https://app.test', 'null', 'http://localhost']) {
      assert.equal(checkOrigin(empty, value, { allowMissing: true }).ok, false, value);
    }
    assert.deepEqual(checkOrigin(empty, undefined, { allowMissing: true }), { ok: true, origin: null });
    assert.deepEqual(checkOrigin(empty, undefined, strict), {
      ok: false,
      code: 'ORIGIN_NOT_ALLOWED',
      reason: 'missing',
    });
  });

  it('compares IDN entries as A-labels', () => {
    const idn = compileOriginPolicy(['https://b\u00fccher.example', 'https://\u0430pp.test']);
    assert.deepEqual(checkOrigin(idn, 'https://xn--bcher-kva.example', strict), {
      ok: true,
      origin: 'https://xn--bcher-kva.example',
    });
    assert.deepEqual(checkOrigin(idn, 'https://xn--pp-6kc.test', strict), {
      ok: true,
      origin: 'https://xn--pp-6kc.test',
    });
    const ascii = checkOrigin(idn, 'https://app.test', strict);
    assert.equal(ascii.ok, false);
    if (!ascii.ok) assert.equal(ascii.reason, 'not-allowed');
    const unicode = checkOrigin(idn, 'https://b\u00fccher.example', strict);
    assert.equal(unicode.ok, false);
    if (!unicode.ok) assert.equal(unicode.reason, 'malformed');
  });

  it('matches IP literals in canonical form', () => {
    const ips = compileOriginPolicy(['http://127.0.0.1:8080', 'http://[::1]:3000']);
    assert.deepEqual(checkOrigin(ips, 'http://127.0.0.1:8080', strict), {
      ok: true,
      origin: 'http://127.0.0.1:8080',
    });
    assert.deepEqual(checkOrigin(ips, 'http://[::1]:3000', strict), {
      ok: true,
      origin: 'http://[::1]:3000',
    });
    assert.deepEqual(checkOrigin(ips, 'http://[0:0::1]:3000', strict), {
      ok: true,
      origin: 'http://[::1]:3000',
    });
    assert.equal(checkOrigin(ips, 'http://127.0.0.1', strict).ok, false);
  });

  it('matches a wildcard with an explicit port on that port only', () => {
    const ported = compileOriginPolicy(['https://*.example.com:8443']);
    assert.deepEqual(checkOrigin(ported, 'https://a.example.com:8443', strict), {
      ok: true,
      origin: 'https://a.example.com:8443',
    });
    assert.equal(checkOrigin(ported, 'https://a.example.com', strict).ok, false);
    assert.equal(checkOrigin(ported, 'https://example.com:8443', strict).ok, false);
  });
});

describe('normaliseOrigin', () => {
  it('returns the RFC 6454 serialisation', () => {
    const rows: ReadonlyArray<readonly [string, string | null]> = [
      ['HTTPS://APP.TEST:443', 'https://app.test'],
      ['http://App.Test:80', 'http://app.test'],
      ['http://app.test:443', 'http://app.test:443'],
      ['https://app.test:8443', 'https://app.test:8443'],
      ['http://[0:0:0:0:0:0:0:1]:80', 'http://[::1]'],
      ['null', 'null'],
      ['https://app.test/', null],
      ['https://app.test.', null],
      ['https://user@app.test', null],
      ['https://\u0430pp.test', null],
      ['ftp://app.test', null],
      ['https://app.test:65535', 'https://app.test:65535'],
      ['https://app.test:65536', null],
      ['', null],
    ];
    for (const [input, expected] of rows) assert.equal(normaliseOrigin(input), expected, input);
  });
});

describe('parseOriginPattern', () => {
  it('normalises valid entries', () => {
    const rows: ReadonlyArray<readonly [string, unknown]> = [
      ['null', { kind: 'null' }],
      ['HTTPS://APP.TEST:443', { kind: 'exact', origin: 'https://app.test' }],
      ['http://app.test:80', { kind: 'exact', origin: 'http://app.test' }],
      ['http://app.test:443', { kind: 'exact', origin: 'http://app.test:443' }],
      ['http://localhost:3000', { kind: 'exact', origin: 'http://localhost:3000' }],
      ['https://b\u00fccher.example', { kind: 'exact', origin: 'https://xn--bcher-kva.example' }],
      ['http://[0:0::1]:3000', { kind: 'exact', origin: 'http://[::1]:3000' }],
      [
        'https://*.Example.COM',
        {
          kind: 'wildcard',
          pattern: 'https://*.example.com',
          scheme: 'https',
          suffix: '.example.com',
          port: '',
        },
      ],
      [
        'https://*.example.com:443',
        {
          kind: 'wildcard',
          pattern: 'https://*.example.com',
          scheme: 'https',
          suffix: '.example.com',
          port: '',
        },
      ],
      [
        'https://*.example.com:8443',
        {
          kind: 'wildcard',
          pattern: 'https://*.example.com:8443',
          scheme: 'https',
          suffix: '.example.com',
          port: '8443',
        },
      ],
      [
        'http://*.b\u00fccher.example',
        {
          kind: 'wildcard',
          pattern: 'http://*.xn--bcher-kva.example',
          scheme: 'http',
          suffix: '.xn--bcher-kva.example',
          port: '',
        },
      ],
    ];
    for (const [entry, expected] of rows) assert.deepEqual(parseOriginPattern(entry), expected, entry);
  });

  it('rejects invalid entries with an error', () => {
    const bad = [
      '',
      '*',
      'https://*',
      'http://*',
      'https://*:443',
      '*.example.com',
      'https://*.com',
      'https://*.localhost',
      'https://*.*.example.com',
      'https://a.*.example.com',
      'https://*a.example.com',
      'https://a*.example.com',
      'https://app.*',
      'https://*.0.0.1',
      'https://*.127.0.0.1',
      'https://app.test/',
      'https://app.test/path',
      'https://app.test?q=1',
      'https://app.test#f',
      'https://user@app.test',
      'https://user:pass@app.test',
      'https://app.test\\',
      'ftp://app.test',
      'ws://app.test',
      'wss://app.test',
      'file:///etc/passwd',
      'chrome-extension://abcdef',
      'app.test',
      'https:app.test',
      'https://',
      'https://:443',
      'https://app.test.',
      'https://*.example.com.',
      'https://app..test',
      'https://app.test\u3002',
      'https://app.test:',
      'https://app.test:0',
      'https://app.test:08443',
      'https://app.test:65536',
      'https://app.test:https',
      'https://a:1:2',
      ' https://app.test',
      'https://app.test ',
      'https://app\t.test',
      'https://app.test\n',
      'https://%61pp.test',
      'https://app<.test',
      `https://${'a'.repeat(64)}.test`,
      'http://[::1',
      'http://[zz::1]',
      'http://[::1]x',
      'NULL',
    ];
    for (const entry of bad) {
      const result = parseOriginPattern(entry);
      assert.ok(
        'error' in result,
        `${JSON.stringify(entry)} should be rejected, got ${JSON.stringify(result)}`,
      );
      assert.equal(typeof result.error, 'string');
    }
  });
});

describe('compileOriginPolicy', () => {
  it('throws naming the invalid entry and its index', () => {
    assert.throws(
      () => compileOriginPolicy(['https://app.test', 'https://*.com']),
      (err: unknown) =>
        err instanceof Error && err.message.includes('origins[1]') && err.message.includes('*.com'),
    );
  });

  it('returns a frozen policy with exact origins pre-normalised', () => {
    const compiled = compileOriginPolicy([
      'HTTPS://APP.TEST:443',
      'https://app.test',
      'https://*.example.com',
    ]);
    assert.ok(Object.isFrozen(compiled));
    assert.deepEqual([...compiled.exact], ['https://app.test']);
    assert.deepEqual([...compiled.wildcards], ['https://*.example.com']);
    assert.equal(compiled.allowNull, false);
  });
});

describe('core/origin.ts', () => {
  it('imports nothing from node:net, node:http, node:tls or ws', () => {
    const source = readFileSync(new URL('../../src/core/origin.ts', import.meta.url), 'utf8');
    const imports = [...source.matchAll(/from\s+['"]([^'"]+)['"]/g)].map((m) => m[1]);
    for (const name of imports) {
      assert.doesNotMatch(name ?? '', /^(?:node:)?(?:net|http|https|http2|tls|dgram)$|^ws$/, name);
    }
  });
});
