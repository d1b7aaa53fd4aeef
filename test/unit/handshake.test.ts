// The opening-handshake decision without sockets: request line, raw headers and SNI in, a verdict
// out. One row per rule of checkHandshake, each asserting the ErrorCode.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import {
  checkHandshake,
  checkHost,
  checkPlainRequest,
  compileHandshakePolicy,
  type HandshakeRequest,
  parseSubprotocols,
  scanHeaders,
} from '../../src/core/handshake.js';
import type { ErrorCode } from '../../src/protocol.js';

const MAX_HEADERS = 20;
const MAX_URL = 256;

const policy = compileHandshakePolicy(
  parseConfig({
    listen: { host: '127.0.0.1', port: 0 },
    tls: false,
    hosts: ['localhost', 'gw.test:8443'],
    limits: { maxHeaderCount: MAX_HEADERS, maxUrlBytes: MAX_URL },
    routes: [
      { path: '/echo', auth: 'none', origins: ['https://app.test'], echo: {} },
      {
        path: '/chat',
        auth: 'none',
        origins: ['https://app.test'],
        subprotocols: ['chat.v1', 'chat.v2'],
        echo: {},
      },
      { path: '/open', auth: 'none', origins: ['https://app.test'], allowMissingOrigin: true, echo: {} },
    ],
  }),
);

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

type Overrides = Record<string, string | string[] | null>;
type Line = { method?: string; httpVersion?: string; url?: string; servername?: string };

/** The harness handshake as core sees it; `null` removes a header, an array repeats it. */
function req(overrides: Overrides = {}, line: Line = {}): HandshakeRequest {
  const headers: Overrides = {
    Host: 'localhost',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': KEY,
    'Sec-WebSocket-Version': '13',
    Origin: 'https://app.test',
  };
  for (const [name, value] of Object.entries(overrides)) {
    const existing = Object.keys(headers).find((h) => h.toLowerCase() === name.toLowerCase());
    if (existing) delete headers[existing];
    headers[name] = value;
  }
  const rawHeaders: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === null) continue;
    for (const v of Array.isArray(value) ? value : [value]) rawHeaders.push(name, v);
  }
  return {
    method: line.method ?? 'GET',
    httpVersion: line.httpVersion ?? '1.1',
    url: line.url ?? '/echo',
    rawHeaders,
    servername: line.servername,
  };
}

/** The same request with raw header pairs appended (for case-variant duplicates and floods). */
function withRaw(request: HandshakeRequest, ...pairs: string[]): HandshakeRequest {
  return { ...request, rawHeaders: [...request.rawHeaders, ...pairs] };
}

type Row = readonly [label: string, request: HandshakeRequest, code: ErrorCode];

function refuses(rows: readonly Row[]): void {
  for (const [label, request, code] of rows) {
    const verdict = checkHandshake(request, policy);
    assert.equal(verdict.ok, false, `${label} should be refused`);
    if (!verdict.ok) assert.equal(verdict.code, code, label);
  }
}

function accepts(rows: ReadonlyArray<readonly [string, HandshakeRequest]>): void {
  for (const [label, request] of rows) {
    const verdict = checkHandshake(request, policy);
    assert.equal(verdict.ok, true, `${label} should be accepted, got ${verdict.ok ? '' : verdict.code}`);
  }
}

describe('checkHandshake', () => {
  it('accepts the harness handshake and returns what the adapter needs', () => {
    const verdict = checkHandshake(
      req(
        {
          Host: 'LocalHost:8443',
          Origin: 'HTTPS://APP.TEST:443',
          'Sec-WebSocket-Protocol': 'chat.v2, chat.v1',
        },
        { url: '/chat?room=1' },
      ),
      policy,
    );
    assert.ok(verdict.ok);
    assert.equal(verdict.route.path, '/chat');
    assert.equal(verdict.path, '/chat');
    assert.equal(verdict.query, 'room=1');
    assert.equal(verdict.host, 'localhost');
    assert.equal(verdict.origin, 'https://app.test');
    assert.equal(verdict.subprotocol, 'chat.v1');
    assert.equal(verdict.key, KEY);
    assert.equal(verdict.headers.get('sec-websocket-version'), '13');
  });

  it('H-11 refuses more than limits.maxHeaderCount headers with HEADERS_TOO_LARGE', () => {
    const extra = (n: number) => Array.from({ length: n }, (_, i) => [`X-${i}`, '1']).flat();
    accepts([['exactly the limit', withRaw(req(), ...extra(MAX_HEADERS - 6))]]);
    refuses([
      ['limit + 1', withRaw(req(), ...extra(MAX_HEADERS - 5)), 'HEADERS_TOO_LARGE'],
      ['2,001 headers', withRaw(req(), ...extra(2_001)), 'HEADERS_TOO_LARGE'],
    ]);
  });

  it('H-07 refuses a duplicate of any security header with DUPLICATE_HEADER', () => {
    refuses([
      ['Host', req({ Host: ['localhost', 'evil.test'] }), 'DUPLICATE_HEADER'],
      ['Origin', req({ Origin: ['https://app.test', 'https://evil.test'] }), 'DUPLICATE_HEADER'],
      ['Authorization', req({ Authorization: ['Bearer A', 'Bearer B'] }), 'DUPLICATE_HEADER'],
      ['Cookie', req({ Cookie: ['a=1', 'b=2'] }), 'DUPLICATE_HEADER'],
      ['Upgrade', req({ Upgrade: ['websocket', 'websocket'] }), 'DUPLICATE_HEADER'],
      ['Content-Length', req({ 'Content-Length': ['0', '0'] }), 'DUPLICATE_HEADER'],
      ['Transfer-Encoding', req({ 'Transfer-Encoding': ['chunked', 'chunked'] }), 'DUPLICATE_HEADER'],
      ['Sec-WebSocket-Key', req({ 'Sec-WebSocket-Key': [KEY, KEY] }), 'DUPLICATE_HEADER'],
      ['Sec-WebSocket-Version', req({ 'Sec-WebSocket-Version': ['13', '13'] }), 'DUPLICATE_HEADER'],
      [
        'Sec-WebSocket-Protocol',
        req({ 'Sec-WebSocket-Protocol': ['chat.v1', 'chat.v2'] }),
        'DUPLICATE_HEADER',
      ],
      ['Sec-WebSocket-Extensions', req({ 'Sec-WebSocket-Extensions': ['a', 'b'] }), 'DUPLICATE_HEADER'],
      ['any Sec-WebSocket-*', req({ 'Sec-WebSocket-Future': ['a', 'b'] }), 'DUPLICATE_HEADER'],
      ['case variant', withRaw(req(), 'ORIGIN', 'https://evil.test'), 'DUPLICATE_HEADER'],
      ['case variant Host', withRaw(req(), 'host', 'localhost'), 'DUPLICATE_HEADER'],
    ]);
    accepts([['a repeated ordinary header', req({ 'X-Trace': ['a', 'b'] })]]);
  });

  it('H-01 refuses every method but GET with METHOD_NOT_ALLOWED', () => {
    refuses(
      ['POST', 'PUT', 'CONNECT', 'HEAD', 'OPTIONS', 'get'].map(
        (method) => [method, req({}, { method }), 'METHOD_NOT_ALLOWED'] as const,
      ),
    );
  });

  it('H-01 refuses any HTTP version but 1.1 with HTTP_VERSION_NOT_SUPPORTED', () => {
    refuses(
      ['1.0', '2.0', '0.9', '1.2'].map(
        (httpVersion) => [httpVersion, req({}, { httpVersion }), 'HTTP_VERSION_NOT_SUPPORTED'] as const,
      ),
    );
  });

  it('H-12 refuses a body on the upgrade request with BODY_NOT_ALLOWED', () => {
    refuses([
      ['Content-Length: 5', req({ 'Content-Length': '5' }), 'BODY_NOT_ALLOWED'],
      ['Content-Length: 1', req({ 'Content-Length': '1' }), 'BODY_NOT_ALLOWED'],
      ['Transfer-Encoding: chunked', req({ 'Transfer-Encoding': 'chunked' }), 'BODY_NOT_ALLOWED'],
      ['Transfer-Encoding: identity', req({ 'Transfer-Encoding': 'identity' }), 'BODY_NOT_ALLOWED'],
      ['both', req({ 'Content-Length': '0', 'Transfer-Encoding': 'chunked' }), 'BODY_NOT_ALLOWED'],
    ]);
    accepts([['Content-Length: 0', req({ 'Content-Length': '0' })]]);
  });

  it('H-02 refuses anything but Upgrade: websocket with Connection: Upgrade with BAD_UPGRADE', () => {
    refuses([
      ['Upgrade missing', req({ Upgrade: null }), 'BAD_UPGRADE'],
      ['Upgrade: h2c', req({ Upgrade: 'h2c' }), 'BAD_UPGRADE'],
      ['Upgrade: websocketx', req({ Upgrade: 'websocketx' }), 'BAD_UPGRADE'],
      ['Upgrade: websocket, h2c', req({ Upgrade: 'websocket, h2c' }), 'BAD_UPGRADE'],
      ['Upgrade empty', req({ Upgrade: '' }), 'BAD_UPGRADE'],
      ['Connection missing', req({ Connection: null }), 'BAD_UPGRADE'],
      ['Connection: keep-alive', req({ Connection: 'keep-alive' }), 'BAD_UPGRADE'],
      ['Connection: upgrades', req({ Connection: 'upgrades' }), 'BAD_UPGRADE'],
    ]);
    accepts([
      ['Upgrade: WebSocket', req({ Upgrade: 'WebSocket' })],
      ['Connection: keep-alive, Upgrade', req({ Connection: 'keep-alive, Upgrade' })],
      ['Connection: upgrade', req({ Connection: 'upgrade' })],
    ]);
  });

  it('H-04 refuses any Sec-WebSocket-Version but exactly 13 with UNSUPPORTED_VERSION', () => {
    refuses(
      [null, '8', '14', '0xd', '1.3e1', '013', ' 13', '13 ', '13, 13', '+13', ''].map(
        (v) =>
          [
            `version ${JSON.stringify(v)}`,
            req({ 'Sec-WebSocket-Version': v }),
            'UNSUPPORTED_VERSION',
          ] as const,
      ),
    );
  });

  it('H-03 refuses a missing or malformed Sec-WebSocket-Key with BAD_KEY', () => {
    refuses(
      [
        null,
        'abc',
        'AAAAAAAAAAAAAAAAAAAAAAA=', // 24 characters that decode to 17 bytes
        'dGhlIHNhbXBsZSBub25jZQ',
        ` ${KEY}`,
        `${KEY} `,
        'dGhlIHNhbXBsZSBub25jZQ-=',
        `${KEY}==`,
        '',
      ].map((v) => [`key ${JSON.stringify(v)}`, req({ 'Sec-WebSocket-Key': v }), 'BAD_KEY'] as const),
    );
  });

  it('H-08 refuses a missing or malformed Host with BAD_REQUEST, an unserved one with HOST_NOT_ALLOWED', () => {
    refuses([
      ['Host missing', req({ Host: null }), 'BAD_REQUEST'],
      ['Host empty', req({ Host: '' }), 'BAD_REQUEST'],
      ['Host with userinfo', req({ Host: 'localhost@evil.test' }), 'BAD_REQUEST'],
      ['Host with a path', req({ Host: 'localhost/echo' }), 'BAD_REQUEST'],
      ['Host with a space', req({ Host: 'local host' }), 'BAD_REQUEST'],
      ['unserved Host', req({ Host: 'evil.test' }), 'HOST_NOT_ALLOWED'],
      ['look-alike Host', req({ Host: 'localhost.evil.test' }), 'HOST_NOT_ALLOWED'],
      ['IP literal', req({ Host: '127.0.0.1' }), 'HOST_NOT_ALLOWED'],
      [
        'allowlisted only on another port',
        req({ Host: 'gw.test:9443' }, { servername: 'gw.test' }),
        'HOST_NOT_ALLOWED',
      ],
    ]);
  });

  it('H-08 refuses a Host that differs from the TLS server name with SNI_MISMATCH', () => {
    refuses([
      ['SNI gw.test, Host localhost', req({}, { servername: 'gw.test' }), 'SNI_MISMATCH'],
      [
        'SNI localhost, Host gw.test:8443',
        req({ Host: 'gw.test:8443' }, { servername: 'localhost' }),
        'SNI_MISMATCH',
      ],
    ]);
    accepts([
      ['SNI equal to Host', req({ Host: 'localhost:8443' }, { servername: 'localhost' })],
      ['SNI in another case', req({}, { servername: 'LOCALHOST' })],
      ['no SNI', req({}, {})],
    ]);
  });

  it('H-08 refuses a bad request target with URI_TOO_LONG, BAD_REQUEST or BAD_PATH', () => {
    refuses([
      ['too long', req({}, { url: `/echo?q=${'a'.repeat(MAX_URL)}` }), 'URI_TOO_LONG'],
      ['absolute-form', req({}, { url: 'http://10.0.0.5:8080/admin' }), 'BAD_REQUEST'],
      ['absolute-form to this host', req({}, { url: 'https://localhost/echo' }), 'BAD_REQUEST'],
      ['asterisk-form', req({}, { url: '*' }), 'BAD_REQUEST'],
      ['encoded dot-dot', req({}, { url: '/%2e%2e/' }), 'BAD_PATH'],
      ['encoded slash', req({}, { url: '/echo%2fx' }), 'BAD_PATH'],
    ]);
  });

  it('H-08 refuses a path with no route after normalisation with ROUTE_NOT_FOUND and reports that path', () => {
    for (const [url, path] of [
      ['/admin', '/admin'],
      ['/echo/../admin', '/admin'],
      ['/ECHO', '/ECHO'],
      ['/echo;x', '/echo;x'],
      ['/echo/', '/echo/'],
    ] as const) {
      const verdict = checkHandshake(req({}, { url }), policy);
      assert.deepEqual(verdict, { ok: false, code: 'ROUTE_NOT_FOUND', path }, url);
    }
    for (const url of ['//echo', '/ec%68o', '/./echo', '/chat/../echo']) {
      const verdict = checkHandshake(req({}, { url }), policy);
      assert.ok(verdict.ok, url);
      assert.equal(verdict.route.path, '/echo', url);
    }
  });

  it('H-05 H-06 refuses an Origin not on the route allowlist with ORIGIN_NOT_ALLOWED', () => {
    refuses([
      ['cross-site', req({ Origin: 'https://evil.test' }), 'ORIGIN_NOT_ALLOWED'],
      ['look-alike', req({ Origin: 'https://app.test.evil.io' }), 'ORIGIN_NOT_ALLOWED'],
      ['null', req({ Origin: 'null' }), 'ORIGIN_NOT_ALLOWED'],
      ['missing', req({ Origin: null }), 'ORIGIN_NOT_ALLOWED'],
    ]);
    const verdict = checkHandshake(req({ Origin: 'https://evil.test' }), policy);
    assert.ok(!verdict.ok);
    assert.equal(verdict.route?.path, '/echo');
    assert.equal(verdict.origin, 'https://evil.test');
    const open = checkHandshake(req({ Origin: null }, { url: '/open' }), policy);
    assert.ok(open.ok, 'allowMissingOrigin admits a request without Origin');
    assert.equal(open.origin, null);
  });

  it('H-09 refuses a malformed Sec-WebSocket-Protocol with BAD_SUBPROTOCOL', () => {
    refuses([
      ['ReDoS input', req({ 'Sec-WebSocket-Protocol': `b${' '.repeat(15_000)}x` }), 'BAD_SUBPROTOCOL'],
      ['space inside', req({ 'Sec-WebSocket-Protocol': 'chat v1' }, { url: '/chat' }), 'BAD_SUBPROTOCOL'],
      [
        'duplicate',
        req({ 'Sec-WebSocket-Protocol': 'chat.v1, chat.v1' }, { url: '/chat' }),
        'BAD_SUBPROTOCOL',
      ],
      [
        '1,000 entries',
        req({ 'Sec-WebSocket-Protocol': entries(1_000) }, { url: '/chat' }),
        'BAD_SUBPROTOCOL',
      ],
      ['on a route without subprotocols', req({ 'Sec-WebSocket-Protocol': 'a;b' }), 'BAD_SUBPROTOCOL'],
    ]);
  });

  it('H-09 refuses an offer with none of the route subprotocols with SUBPROTOCOL_NOT_SUPPORTED', () => {
    refuses([
      ['none offered', req({}, { url: '/chat' }), 'SUBPROTOCOL_NOT_SUPPORTED'],
      [
        'only unknown ones',
        req({ 'Sec-WebSocket-Protocol': 'chat.v3, v1' }, { url: '/chat' }),
        'SUBPROTOCOL_NOT_SUPPORTED',
      ],
      [
        'another case',
        req({ 'Sec-WebSocket-Protocol': 'CHAT.V1' }, { url: '/chat' }),
        'SUBPROTOCOL_NOT_SUPPORTED',
      ],
    ]);
    const verdict = checkHandshake(
      req({ 'Sec-WebSocket-Protocol': 'SENTINEL123, chat.v2' }, { url: '/chat' }),
      policy,
    );
    assert.ok(verdict.ok);
    assert.equal(verdict.subprotocol, 'chat.v2');
    const none = checkHandshake(req({ 'Sec-WebSocket-Protocol': 'chat.v1' }), policy);
    assert.ok(none.ok, 'an offer on a route without subprotocols is ignored');
    assert.equal(none.subprotocol, undefined);
  });

  it('applies the rules in a fixed order: headers, method, version, body, upgrade, key, host, path, origin, subprotocol', () => {
    refuses([
      ['duplicate before method', req({ Origin: ['a', 'b'] }, { method: 'POST' }), 'DUPLICATE_HEADER'],
      ['method before version', req({}, { method: 'POST', httpVersion: '1.0' }), 'METHOD_NOT_ALLOWED'],
      [
        'version before body',
        req({ 'Content-Length': '5' }, { httpVersion: '1.0' }),
        'HTTP_VERSION_NOT_SUPPORTED',
      ],
      ['body before upgrade', req({ 'Content-Length': '5', Upgrade: 'h2c' }), 'BODY_NOT_ALLOWED'],
      ['upgrade before version', req({ Upgrade: 'h2c', 'Sec-WebSocket-Version': '8' }), 'BAD_UPGRADE'],
      [
        'version before key',
        req({ 'Sec-WebSocket-Version': '8', 'Sec-WebSocket-Key': 'abc' }),
        'UNSUPPORTED_VERSION',
      ],
      ['key before host', req({ 'Sec-WebSocket-Key': 'abc', Host: 'evil.test' }), 'BAD_KEY'],
      ['host before path', req({ Host: 'evil.test' }, { url: '/%2e%2e/' }), 'HOST_NOT_ALLOWED'],
      ['path before origin', req({ Origin: 'https://evil.test' }, { url: '/nowhere' }), 'ROUTE_NOT_FOUND'],
      [
        'origin before subprotocol',
        req({ Origin: 'https://evil.test' }, { url: '/chat' }),
        'ORIGIN_NOT_ALLOWED',
      ],
    ]);
  });
});

function entries(n: number): string {
  return Array.from({ length: n }, (_, i) => `p${i}`).join(', ');
}

describe('scanHeaders', () => {
  it('reads raw headers into a lower-case map, joining repeated ordinary headers', () => {
    const scan = scanHeaders(['Host', 'a', 'X-Trace', '1', 'x-trace', '2', 'Accept', '*/*'], 10);
    assert.ok(scan.ok);
    assert.deepEqual(
      [...scan.headers],
      [
        ['host', 'a'],
        ['x-trace', '1, 2'],
        ['accept', '*/*'],
      ],
    );
  });

  it('H-07 refuses a second copy of a security header in any spelling', () => {
    for (const name of [
      'Host',
      'origin',
      'AUTHORIZATION',
      'Cookie',
      'Upgrade',
      'Content-Length',
      'Transfer-Encoding',
    ]) {
      assert.deepEqual(
        scanHeaders([name, 'a', name.toLowerCase(), 'b'], 10),
        { ok: false, code: 'DUPLICATE_HEADER' },
        name,
      );
    }
    assert.deepEqual(scanHeaders(['Sec-WebSocket-Anything', 'a', 'sec-websocket-anything', 'a'], 10), {
      ok: false,
      code: 'DUPLICATE_HEADER',
    });
  });

  it('H-11 counts header lines, not distinct names: maxCount passes, maxCount + 1 is HEADERS_TOO_LARGE', () => {
    const lines = (n: number) => Array.from({ length: n }, () => ['X', '1']).flat();
    assert.ok(scanHeaders(lines(16), 16).ok);
    assert.deepEqual(scanHeaders(lines(17), 16), { ok: false, code: 'HEADERS_TOO_LARGE' });
    assert.ok(scanHeaders([], 16).ok);
  });
});

describe('checkHost', () => {
  const open = compileHandshakePolicy(
    parseConfig({ tls: false, routes: [{ path: '/echo', auth: 'none', echo: {} }] }),
  );

  it('H-08 returns the lower-case host name without the port for a served Host', () => {
    for (const [header, host] of [
      ['localhost', 'localhost'],
      ['LOCALHOST', 'localhost'],
      ['localhost:8443', 'localhost'],
      ['gw.test:8443', 'gw.test'],
    ] as const) {
      assert.deepEqual(checkHost(header, policy, undefined), { ok: true, host }, header);
    }
  });

  it('H-08 refuses an unserved Host with HOST_NOT_ALLOWED and a malformed one with BAD_REQUEST', () => {
    const rows: [string | undefined, ErrorCode][] = [
      [undefined, 'BAD_REQUEST'],
      ['', 'BAD_REQUEST'],
      ['localhost:', 'BAD_REQUEST'],
      ['localhost:8443:1', 'BAD_REQUEST'],
      ['user@localhost', 'BAD_REQUEST'],
      ['-localhost', 'BAD_REQUEST'],
      ['local_host', 'BAD_REQUEST'],
      ['localhost.', 'BAD_REQUEST'],
      ['localhost\u0000', 'BAD_REQUEST'],
      ['[::1', 'BAD_REQUEST'],
      ['evil.test', 'HOST_NOT_ALLOWED'],
      ['gw.test', 'HOST_NOT_ALLOWED'],
      ['gw.test:443', 'HOST_NOT_ALLOWED'],
      ['[::1]:8443', 'HOST_NOT_ALLOWED'],
    ];
    for (const [header, code] of rows) {
      assert.deepEqual(checkHost(header, policy, undefined), { ok: false, code }, JSON.stringify(header));
    }
  });

  it('H-08 compares the host name with the SNI name: SNI_MISMATCH when they differ', () => {
    assert.deepEqual(checkHost('localhost', policy, 'gw.test'), { ok: false, code: 'SNI_MISMATCH' });
    assert.deepEqual(checkHost('gw.test:8443', policy, 'localhost'), { ok: false, code: 'SNI_MISMATCH' });
    assert.deepEqual(checkHost('localhost:8443', policy, 'LocalHost'), { ok: true, host: 'localhost' });
    // An empty hosts list serves any Host, but the SNI name still has to match.
    assert.deepEqual(checkHost('anything.test', open, undefined), { ok: true, host: 'anything.test' });
    assert.deepEqual(checkHost('[::1]:8443', open, undefined), { ok: true, host: '[::1]' });
    assert.deepEqual(checkHost('a.test', open, 'b.test'), { ok: false, code: 'SNI_MISMATCH' });
  });
});

describe('parseSubprotocols', () => {
  it('H-09 parses a comma-separated list of tokens, trimming optional whitespace', () => {
    const rows: [string, string[]][] = [
      ['chat.v1', ['chat.v1']],
      ['chat.v1, chat.v2', ['chat.v1', 'chat.v2']],
      [' chat.v1 ,\tchat.v2 ', ['chat.v1', 'chat.v2']],
      ['chat, Chat', ['chat', 'Chat']],
      ["!#$%&'*+-.^_`|~09AZaz", ["!#$%&'*+-.^_`|~09AZaz"]],
      [entries(64), entries(64).split(', ')],
    ];
    for (const [value, expected] of rows)
      assert.deepEqual(parseSubprotocols(value), expected, value.slice(0, 40));
  });

  it('H-09 returns undefined for malformed, duplicate or too many entries', () => {
    const rows = [
      '',
      ' ',
      ',',
      'chat.v1,',
      'chat.v1,,chat.v2',
      'chat v1',
      '"chat.v1"',
      'chat.v1; q=1',
      'chat/v1',
      'chat@v1',
      'chät',
      'chat\u0000',
      'chat.v1, chat.v1',
      entries(65),
      entries(1_000),
    ];
    for (const value of rows)
      assert.equal(parseSubprotocols(value), undefined, JSON.stringify(value.slice(0, 40)));
  });

  it('H-09 handles the ReDoS input (GHSA-6fc8-4gx4-v693) in well under 50 ms', () => {
    const rows: [string, string[] | undefined][] = [
      [`b${' '.repeat(15_000)}x`, undefined],
      // Leading and trailing whitespace is optional whitespace around one valid token.
      [`${' '.repeat(15_000)}x${' '.repeat(15_000)}`, ['x']],
      [','.repeat(15_000), undefined],
      [`a${', a'.repeat(5_000)}`, undefined],
      [`a${' ,'.repeat(7_500)}`, undefined],
    ];
    for (const [input, expected] of rows) {
      const started = performance.now();
      assert.deepEqual(parseSubprotocols(input), expected);
      const ms = performance.now() - started;
      assert.ok(ms < 50, `took ${ms} ms`);
    }
  });
});

describe('checkPlainRequest', () => {
  const plain = (overrides: Overrides = {}, line: Line = {}) =>
    req(
      {
        Upgrade: null,
        Connection: null,
        'Sec-WebSocket-Key': null,
        'Sec-WebSocket-Version': null,
        ...overrides,
      },
      line,
    );

  it('H-02 answers a plain request for a WebSocket route with UPGRADE_REQUIRED and others with ROUTE_NOT_FOUND', () => {
    const rows: [HandshakeRequest, ErrorCode][] = [
      [plain(), 'UPGRADE_REQUIRED'],
      [plain({}, { url: '//echo' }), 'UPGRADE_REQUIRED'],
      [plain({}, { url: '/chat?x=1' }), 'UPGRADE_REQUIRED'],
      [plain({}, { method: 'POST' }), 'UPGRADE_REQUIRED'],
      [plain({}, { url: '/admin' }), 'ROUTE_NOT_FOUND'],
      [plain({}, { url: '/echo/../admin' }), 'ROUTE_NOT_FOUND'],
      [plain({}, { url: '/' }), 'ROUTE_NOT_FOUND'],
    ];
    for (const [request, code] of rows) assert.equal(checkPlainRequest(request, policy), code, request.url);
  });

  it('H-07 H-08 H-11 applies the same header, Host and target rules as an upgrade', () => {
    const rows: [string, HandshakeRequest, ErrorCode][] = [
      [
        'header flood',
        withRaw(plain(), ...Array.from({ length: MAX_HEADERS }, () => ['X', '1']).flat()),
        'HEADERS_TOO_LARGE',
      ],
      ['duplicate Host', plain({ Host: ['localhost', 'evil.test'] }), 'DUPLICATE_HEADER'],
      ['missing Host', plain({ Host: null }), 'BAD_REQUEST'],
      ['unserved Host', plain({ Host: 'evil.test' }), 'HOST_NOT_ALLOWED'],
      ['SNI mismatch', plain({}, { servername: 'gw.test' }), 'SNI_MISMATCH'],
      ['long URL', plain({}, { url: `/${'a'.repeat(MAX_URL)}` }), 'URI_TOO_LONG'],
      ['absolute-form', plain({}, { url: 'http://10.0.0.5:8080/admin' }), 'BAD_REQUEST'],
      ['encoded dot-dot', plain({}, { url: '/%2e%2e/' }), 'BAD_PATH'],
    ];
    for (const [label, request, code] of rows) assert.equal(checkPlainRequest(request, policy), code, label);
  });
});

describe('core boundary', () => {
  it('src/core/*.ts imports nothing from node:net, node:http, node:https, node:tls or ws', () => {
    const dir = new URL('../../src/core/', import.meta.url);
    const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
    assert.ok(files.includes('handshake.ts') && files.includes('path.ts'), `core files: ${files.join(', ')}`);
    const forbidden = /^(?:node:)?(?:net|http|https|http2|tls|dgram)(?:\/.*)?$|^ws(?:\/.*)?$/;
    // Static imports and re-exports (type-only ones included), dynamic import() and require().
    const specifiers = /(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)['"]([^'"]+)['"]/g;
    for (const file of files) {
      const source = readFileSync(new URL(file, dir), 'utf8');
      const found = [...source.matchAll(specifiers)].map((m) => m[1] as string);
      const bad = found.filter((s) => forbidden.test(s));
      assert.deepEqual(bad, [], `src/core/${file} imports ${bad.join(', ')}`);
    }
    // The scanner itself must see imports, or the check above proves nothing.
    const own = readFileSync(new URL('handshake.ts', dir), 'utf8');
    assert.ok([...own.matchAll(specifiers)].some((m) => m[1] === './path.js'));
  });
});
