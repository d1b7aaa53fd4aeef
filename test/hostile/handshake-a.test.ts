// Threat rows H-01..H-06 (../shared/threats.md section 1.2): the opening handshake written byte
// for byte over real TLS, with the answer checked by status, ErrorCode, headers and audit line.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { domainToASCII } from 'node:url';
import { canary, echoRoute, startGateway, type TestGateway } from '../helpers/gateway.js';
import { HS, RawClient } from '../helpers/raw.js';

type Response = Awaited<ReturnType<RawClient['readResponse']>>;
type Overrides = NonNullable<Parameters<typeof HS>[0]>;
type RequestLine = Parameters<typeof HS>[1];

const COOKIE = 'sid=SECRET-COOKIE-7f3a9c';
const ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';

/** Sends one request and reads one response; the client is destroyed afterwards. */
async function exchange(gw: TestGateway, request: string | Buffer): Promise<Response> {
  const client = await RawClient.connect(gw.port, gw.ca);
  try {
    client.write(request);
    return await client.readResponse();
  } finally {
    client.destroy();
  }
}

/**
 * Sends a request that must be refused: exactly one response with the status, `{code}` body and
 * `Connection: close`, no 101, then the server closes and nothing else ever arrives (so bytes
 * pipelined after the request get no second answer).
 */
async function expectRefused(
  gw: TestGateway,
  request: string | Buffer,
  status: number,
  code: string,
  label: string,
): Promise<Response> {
  const client = await RawClient.connect(gw.port, gw.ca);
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
    assert.equal(
      client.pending().length,
      0,
      `${label}: bytes after the refusal: ${client.pending().toString('latin1')}`,
    );
    return res;
  } finally {
    client.destroy();
  }
}

/** Sends a handshake that must be accepted. */
async function expectAccepted(gw: TestGateway, request: string | Buffer, label: string): Promise<Response> {
  const res = await exchange(gw, request);
  assert.equal(res.status, 101, `${label}: ${res.raw}`);
  assert.equal(res.headers['sec-websocket-accept'], ACCEPT, label);
  assert.equal(res.headers['set-cookie'], undefined, label);
  return res;
}

function hs(overrides: Overrides, line: RequestLine = {}): string {
  return HS(overrides, line);
}

/** The handshake audit lines written since `from`. */
function handshakeLogs(gw: TestGateway, from: number): Record<string, unknown>[] {
  return gw.logs.slice(from).filter((l) => l.event === 'handshake');
}

describe('opening handshake (threats H-01..H-06)', () => {
  let gw: TestGateway;

  before(async () => {
    gw = await startGateway({
      limits: {
        handshakeTimeoutMs: 1_000,
        // These tests send a few hundred handshakes from one address on purpose.
        perIp: { maxConnections: 1_000, handshakesPerSecond: 10_000, handshakeBurst: 10_000 },
      },
      routes: [
        echoRoute(),
        echoRoute({ path: '/pattern', origins: ['https://*.app.test'] }),
        // No Origin is a non-browser client; this route stands for one whose credentials are not
        // ambient (bearer, mTLS). Authenticators are not in this version, so auth is none.
        echoRoute({ path: '/no-origin-ok', allowMissingOrigin: true }),
      ],
    });
  });
  after(() => gw.close());

  it('H-01 answers 405 + Allow: GET to non-GET upgrades and 400 to HTTP/1.0, each with Connection: close', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      const res = await expectRefused(
        gw,
        hs({ 'Content-Length': '0' }, { method }),
        405,
        'METHOD_NOT_ALLOWED',
        method,
      );
      assert.equal(res.headers.allow, 'GET', method);
    }
    // CONNECT takes Node's 'connect' path, not 'upgrade': refused the same way, and logged.
    const logged = gw.logs.length;
    const connect = await expectRefused(
      gw,
      'CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n',
      405,
      'METHOD_NOT_ALLOWED',
      'CONNECT',
    );
    assert.equal(connect.headers.allow, 'GET');
    assert.ok(
      gw.logs.slice(logged).some((l) => l.event === 'request' && l.code === 'METHOD_NOT_ALLOWED'),
      'the CONNECT refusal is logged',
    );
    // ws itself would answer this with 101; the gateway checks the version first.
    await expectRefused(gw, hs({}, { version: '1.0' }), 400, 'HTTP_VERSION_NOT_SUPPORTED', 'HTTP/1.0');
    // A valid handshake pipelined behind a refused POST is never parsed, let alone upgraded.
    await expectRefused(
      gw,
      hs({ 'Content-Length': '0' }, { method: 'POST' }) + hs({}),
      405,
      'METHOD_NOT_ALLOWED',
      'POST + pipelined GET',
    );
    await expectRefused(
      gw,
      hs({}, { version: '1.0' }) + hs({}),
      400,
      'HTTP_VERSION_NOT_SUPPORTED',
      'HTTP/1.0 + pipelined GET',
    );
    await canary(gw);
  });

  it('H-02 answers 400 to any Upgrade token but websocket, and 426 + Upgrade: websocket when Connection lacks upgrade', async () => {
    const badUpgrades: Overrides[] = [
      { Upgrade: 'h2c', Connection: 'Upgrade, HTTP2-Settings', 'HTTP2-Settings': 'AAMAAABkAARAAAAAAAIAAAAA' },
      { Upgrade: 'h2c' },
      { Upgrade: 'websocketx' },
      { Upgrade: 'websocket, h2c' },
      { Upgrade: 'h2c, websocket' },
      { Upgrade: 'websocket/13' },
      { Upgrade: 'TLS/1.2' },
    ];
    for (const overrides of badUpgrades) {
      await expectRefused(gw, hs(overrides), 400, 'BAD_UPGRADE', `Upgrade: ${overrides.Upgrade}`);
    }
    // h2c with the HTTP/2 preface pipelined: one 400, the preface is never answered.
    await expectRefused(
      gw,
      hs({ Upgrade: 'h2c' }) + 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
      400,
      'BAD_UPGRADE',
      'h2c + preface',
    );

    // Without an upgrade token Node hands the request to the plain request path, which must
    // answer (not hang, not 200) with 426 pointing at websocket.
    const noUpgradeToken: [string, Overrides][] = [
      ['Connection missing', { Connection: null }],
      ['Connection: keep-alive', { Connection: 'keep-alive' }],
      ['Connection: close', { Connection: 'close' }],
      ['Upgrade missing', { Upgrade: null }],
    ];
    for (const [label, overrides] of noUpgradeToken) {
      const res = await expectRefused(gw, hs(overrides), 426, 'UPGRADE_REQUIRED', label);
      assert.equal(res.headers.upgrade, 'websocket', label);
    }
    // A second request pipelined behind the 426 never gets an answer.
    const pipelined = hs({ Connection: null }) + 'GET /admin HTTP/1.1\r\nHost: localhost\r\n\r\n' + hs({});
    const res = await expectRefused(gw, pipelined, 426, 'UPGRADE_REQUIRED', 'Connection missing + pipelined');
    assert.equal(res.headers.upgrade, 'websocket');

    // Token matching is case-insensitive and Connection is a list (RFC 6455 section 4.2.1).
    await expectAccepted(gw, hs({ Upgrade: 'WebSocket' }), 'Upgrade: WebSocket');
    await expectAccepted(gw, hs({ Connection: 'keep-alive, Upgrade' }), 'Connection: keep-alive, Upgrade');
    await canary(gw);
  });

  it('H-03 answers 400 BAD_KEY to a missing or malformed Sec-WebSocket-Key, never 101', async () => {
    const keys: [string, string | null][] = [
      ['missing', null],
      ['abc', 'abc'],
      ['empty', ''],
      // 24 characters that decode to 17 bytes, not 16.
      ['17 bytes', 'AAAAAAAAAAAAAAAAAAAAAAA='],
      ['20 bytes', 'AAAAAAAAAAAAAAAAAAAAAAAAAAA='],
      ['no padding', 'dGhlIHNhbXBsZSBub25jZQ'],
      ['base64url alphabet', 'dGhlIHNhbXBsZSBub25jZQ-_'],
      ['inner space', 'dGhlIHNhbXBsZSBub25j ZQ=='],
      ['non-ASCII', 'dGhlIHNhbXBsZSBub25jZé=='],
    ];
    for (const [label, key] of keys) {
      await expectRefused(gw, hs({ 'Sec-WebSocket-Key': key }), 400, 'BAD_KEY', `key ${label}`);
    }
    await expectRefused(
      gw,
      hs({ 'Sec-WebSocket-Key': ['dGhlIHNhbXBsZSBub25jZQ==', 'AAAAAAAAAAAAAAAAAAAAAA=='] }),
      400,
      'DUPLICATE_HEADER',
      'key duplicated',
    );
    // Surrounding whitespace is optional whitespace (RFC 9110 section 5.5), not part of the value:
    // Node's parser strips it, so the gateway and any backend see the same valid key. Design choice
    // noted here because threats.md lists it among the 400 cases.
    await expectAccepted(gw, hs({ 'Sec-WebSocket-Key': ' \tdGhlIHNhbXBsZSBub25jZQ==\t ' }), 'key with OWS');
    await canary(gw);
  });

  it('H-04 answers 426 + Sec-WebSocket-Version: 13 to any version other than exactly 13', async () => {
    const versions: [string, string | null][] = [
      ['missing', null],
      ['8', '8'],
      ['14', '14'],
      ['0xd', '0xd'],
      ['1.3e1', '1.3e1'],
      ['013', '013'],
      ['13.0', '13.0'],
      ['+13', '+13'],
      ['13, 13', '13, 13'],
      ['13,8', '13,8'],
      ['empty', ''],
      ['Arabic-Indic digits', '\u0661\u0663'],
    ];
    for (const [label, version] of versions) {
      const res = await expectRefused(
        gw,
        hs({ 'Sec-WebSocket-Version': version }),
        426,
        'UNSUPPORTED_VERSION',
        `version ${label}`,
      );
      assert.equal(res.headers['sec-websocket-version'], '13', `version ${label}`);
    }
    // Two header lines are a duplicate security header (H-07), refused before the version check.
    await expectRefused(
      gw,
      hs({ 'Sec-WebSocket-Version': ['13', '13'] }),
      400,
      'DUPLICATE_HEADER',
      'version twice',
    );
    // ' 13' as listed in threats.md is "13" plus optional whitespace, which HTTP strips before any
    // reader sees the value; it is exactly 13 to the gateway and to any backend, so it upgrades.
    await expectAccepted(gw, hs({ 'Sec-WebSocket-Version': ' 13 ' }), 'version with OWS');
    await expectAccepted(gw, hs({}), 'version 13');
    await canary(gw);
  });

  it('H-05 refuses a cross-site handshake carrying an ambient cookie with 403 and audits it without the cookie', async () => {
    const from = gw.logs.length;
    await expectRefused(
      gw,
      hs({ Origin: 'https://evil.test', Cookie: COOKIE, Authorization: 'Bearer SECRET-TOKEN-42' }),
      403,
      'ORIGIN_NOT_ALLOWED',
      'evil origin with cookie',
    );
    const [line] = handshakeLogs(gw, from);
    assert.ok(line, 'no handshake audit line');
    assert.equal(line.outcome, 'rejected');
    assert.equal(line.code, 'ORIGIN_NOT_ALLOWED');
    assert.equal(line.status, 403);
    assert.equal(line.route, '/echo');
    assert.equal(line.origin, 'https://evil.test');

    // The logged origin is escaped: control characters cannot forge or split a log line.
    const hostile = Buffer.from(hs({ Origin: 'https://evil.test\t\x85"}\x9b[2J', Cookie: COOKIE }), 'latin1');
    const at = gw.logs.length;
    await expectRefused(gw, hostile, 403, 'ORIGIN_NOT_ALLOWED', 'origin with control characters');
    const [escaped] = handshakeLogs(gw, at);
    assert.equal(escaped?.code, 'ORIGIN_NOT_ALLOWED');
    assert.equal(escaped?.origin, 'https://evil.test\\u0009\\u0085"}\\u009b[2J');
    const longOrigin = `https://${'a'.repeat(400)}.evil.test`;
    const at2 = gw.logs.length;
    await expectRefused(
      gw,
      hs({ Origin: longOrigin, Cookie: COOKIE }),
      403,
      'ORIGIN_NOT_ALLOWED',
      'long origin',
    );
    assert.equal(handshakeLogs(gw, at2)[0]?.origin, `${longOrigin.slice(0, 256)}...`);

    const log = gw.rawLog();
    for (const secret of ['SECRET-COOKIE', 'SECRET-TOKEN', '\x85', '\x9b', '\t']) {
      assert.ok(!log.includes(secret), `log contains ${JSON.stringify(secret)}`);
    }
    await canary(gw);
  });

  it('H-06 allows only exact (or pattern-matched) origins after RFC 6454 normalisation; look-alikes get 403', async () => {
    const cyrillicA = '\u0430'; // looks like Latin 'a'
    const exactRoute: [string, string | null, 101 | 403][] = [
      ['exact', 'https://app.test', 101],
      // RFC 6454 serialisation: scheme and host compare lowercase, the default port is dropped.
      ['upper case', 'HTTPS://APP.TEST', 101],
      ['default port', 'https://app.test:443', 101],
      ['other port', 'https://app.test:8443', 403],
      ['port with leading zero', 'https://app.test:0443', 403],
      ['http scheme', 'http://app.test', 403],
      ['ws scheme', 'wss://app.test', 403],
      ['suffix look-alike', 'https://app.test.evil.io', 403],
      ['prefix look-alike', 'https://evilapp.test', 403],
      ['same-site subdomain', 'https://x.app.test', 403],
      ['trailing dot', 'https://app.test.', 403],
      ['trailing slash', 'https://app.test/', 403],
      ['path', 'https://app.test/evil', 403],
      ['userinfo', 'https://evil.test@app.test', 403],
      ['Cyrillic a', `https://${cyrillicA}pp.test`, 403],
      ['Cyrillic a as punycode', `https://${domainToASCII(`${cyrillicA}pp.test`)}`, 403],
      ['fullwidth a', 'https://\uff41pp.test', 403],
      ['null', 'null', 403],
      ['Null', 'Null', 403],
      ['empty', '', 403],
      ['two origins', 'https://app.test, https://evil.test', 403],
      ['missing (allowMissingOrigin false)', null, 403],
    ];
    const patternRoute: [string, string | null, 101 | 403][] = [
      ['one label', 'https://x.app.test', 101],
      ['two labels', 'https://a.b.app.test', 101],
      ['upper case', 'HTTPS://X.APP.TEST', 101],
      ['bare parent', 'https://app.test', 403],
      ['empty label', 'https://.app.test', 403],
      ['suffix look-alike', 'https://x.app.test.evil.io', 403],
      ['prefix look-alike', 'https://xapp.test', 403],
      ['http scheme', 'http://x.app.test', 403],
      ['other port', 'https://x.app.test:8443', 403],
      ['trailing dot', 'https://x.app.test.', 403],
      ['Cyrillic a', `https://x.${cyrillicA}pp.test`, 403],
      ['null', 'null', 403],
      ['missing', null, 403],
    ];
    const missingAllowed: [string, string | null, 101 | 403][] = [
      ['missing (allowMissingOrigin true)', null, 101],
      ['listed origin', 'https://app.test', 101],
      ['foreign origin is still checked', 'https://evil.test', 403],
      ['null is still refused', 'null', 403],
    ];
    const table: [string, [string, string | null, 101 | 403][]][] = [
      ['/echo', exactRoute],
      ['/pattern', patternRoute],
      ['/no-origin-ok', missingAllowed],
    ];
    // An ambient cookie must not change any answer.
    for (const cookie of [null, COOKIE]) {
      for (const [path, rows] of table) {
        for (const [label, origin, expected] of rows) {
          const name = `${path} ${label}${cookie ? ' + cookie' : ''}`;
          const request = hs({ Origin: origin, Cookie: cookie }, { path });
          if (expected === 101) {
            await expectAccepted(gw, request, name);
            continue;
          }
          const from = gw.logs.length;
          await expectRefused(gw, request, 403, 'ORIGIN_NOT_ALLOWED', name);
          const line = handshakeLogs(gw, from)[0];
          assert.equal(line?.code, 'ORIGIN_NOT_ALLOWED', name);
          assert.equal(line?.route, path, name);
        }
      }
    }
    assert.ok(!gw.rawLog().includes('SECRET-COOKIE'), 'the cookie reached the log');
    await canary(gw);
  });
});
