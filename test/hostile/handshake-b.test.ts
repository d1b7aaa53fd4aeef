// Hostile handshakes, rows H-07 to H-12 of ../shared/threats.md: duplicate security headers,
// Host/SNI/path confusion, Sec-WebSocket-Protocol and -Extensions abuse, header floods, and bodies
// or early bytes on the upgrade request. Every case is a raw TLS socket writing exact bytes.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ConnectionOptions } from 'node:tls';
import {
  canary,
  closed,
  echoRoute,
  nextMessage,
  openClient,
  startGateway,
  type TestGateway,
} from '../helpers/gateway.js';
import { F, HS, RawClient } from '../helpers/raw.js';

type Response = Awaited<ReturnType<RawClient['readResponse']>>;
type LogLine = Record<string, unknown>;

/** Sends one raw request in a single write and reads the first response. */
async function send(gw: TestGateway, request: string | Buffer, tlsOptions: ConnectionOptions = {}) {
  const mark = gw.logs.length;
  const client = await RawClient.connect(gw.port, gw.ca, tlsOptions);
  client.write(request);
  const res = await client.readResponse();
  return { client, res, logsSince: () => gw.logs.slice(mark) };
}

/** Asserts a refusal in the gateway's format: status, JSON body code, Connection: close, HSTS. */
function assertRefusal(res: Response, status: number, code: string, label = ''): void {
  assert.equal(res.status, status, `${label} status`);
  assert.equal((JSON.parse(res.body) as { code: string }).code, code, `${label} code`);
  assert.equal(res.headers.connection, 'close', `${label} Connection`);
  assert.match(
    res.headers['strict-transport-security'] ?? '',
    /^max-age=\d+; includeSubDomains$/,
    `${label} HSTS`,
  );
}

/** Sends a request, expects exactly one refusal, then the server closing the socket with nothing more. */
async function refused(
  gw: TestGateway,
  request: string | Buffer,
  status: number,
  code: string,
  tlsOptions: ConnectionOptions = {},
): Promise<{ res: Response; logsSince: () => LogLine[] }> {
  const label = typeof request === 'string' ? JSON.stringify(request.slice(0, 60)) : 'request';
  const { client, res, logsSince } = await send(gw, request, tlsOptions);
  try {
    assertRefusal(res, status, code, label);
    await client.waitClosed();
    assert.equal(client.pending().length, 0, `${label}: nothing after the refusal`);
  } finally {
    client.destroy();
  }
  return { res, logsSince };
}

/** The one handshake audit line written since the request was sent. */
async function auditLine(logsSince: () => LogLine[]): Promise<LogLine> {
  const deadline = Date.now() + 1_000;
  let lines = logsSince().filter((l) => l.event === 'handshake');
  while (lines.length === 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
    lines = logsSince().filter((l) => l.event === 'handshake');
  }
  assert.equal(lines.length, 1, `one handshake audit line, got ${JSON.stringify(lines)}`);
  return lines[0] as LogLine;
}

/** Sends a handshake that must be accepted; returns the 101 and its audit line, then closes. */
async function accepted(gw: TestGateway, request: string): Promise<{ res: Response; audit: LogLine }> {
  const { client, res, logsSince } = await send(gw, request);
  try {
    assert.equal(res.status, 101, `expected 101 for ${JSON.stringify(request.slice(0, 60))}: ${res.body}`);
    const audit = await auditLine(logsSince);
    assert.equal(audit.outcome, 'accepted');
    client.write(F(0x88, Buffer.from([0x03, 0xe8])));
    assert.equal((await client.readClose()).code, 1000);
    await client.waitClosed();
    return { res, audit };
  } finally {
    client.destroy();
  }
}

/** Inserts raw header lines just before the blank line that ends a handshake. */
function withLines(request: string, ...lines: string[]): string {
  return `${request.slice(0, -2)}${lines.map((l) => `${l}\r\n`).join('')}\r\n`;
}

describe('hostile handshakes H-07..H-12', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({
      hosts: ['localhost'],
      limits: {
        maxHeaderBytes: 16_384,
        maxHeaderCount: 100,
        maxUrlBytes: 4_096,
        // Every case here is one handshake from 127.0.0.1; the per-IP handshake rate is not under test.
        perIp: { maxConnections: 50, handshakesPerSecond: 1_000, handshakeBurst: 1_000 },
      },
      routes: [
        echoRoute(),
        echoRoute({ path: '/chat', subprotocols: ['chat.v1', 'chat.v2'] }),
        echoRoute({ path: '/v1', subprotocols: ['v1'] }),
        echoRoute({ path: '/deflate', perMessageDeflate: true }),
      ],
    });
  });
  after(() => gw.close());

  describe('H-07 duplicate security headers', () => {
    it('H-07 refuses a second Origin, Host, Cookie, Upgrade or Sec-WebSocket-* header with 400 DUPLICATE_HEADER', async () => {
      const requests: string[] = [
        HS({ Origin: ['https://app.test', 'https://evil.test'] }),
        HS({ Host: ['localhost', 'evil.test'] }),
        HS({ Host: ['evil.test', 'localhost'] }),
        HS({ Cookie: ['sid=1', 'sid=2'] }),
        HS({ Upgrade: ['websocket', 'websocket'] }),
        HS({ 'Sec-WebSocket-Key': ['dGhlIHNhbXBsZSBub25jZQ==', 'AQIDBAUGBwgJCgsMDQ4PEA=='] }),
        HS({ 'Sec-WebSocket-Version': ['13', '13'] }),
        HS({ 'Sec-WebSocket-Protocol': ['chat.v1', 'chat.v2'] }, { path: '/chat' }),
        HS(
          {
            'Sec-WebSocket-Extensions': ['permessage-deflate; client_max_window_bits', 'permessage-deflate'],
          },
          { path: '/deflate' },
        ),
        // Header names are case-insensitive: a differently spelt second copy is still a duplicate.
        withLines(HS(), 'ORIGIN: https://evil.test'),
        withLines(HS(), 'host: evil.test'),
      ];
      for (const request of requests) {
        const { logsSince } = await refused(gw, request, 400, 'DUPLICATE_HEADER');
        const audit = await auditLine(logsSince);
        assert.equal(audit.code, 'DUPLICATE_HEADER');
        assert.equal(audit.status, 400);
        // Node would have merged the two Origins into one string; neither copy is logged as "the" origin.
        assert.equal(audit.origin, null);
      }
      await canary(gw);
    });

    it('H-07 refuses two Authorization headers with 400 DUPLICATE_HEADER and logs neither value', async () => {
      const { logsSince } = await refused(
        gw,
        HS({ Authorization: ['Bearer TOKEN-A-SECRET-7f3a', 'Bearer TOKEN-B-SECRET-9c1e'] }),
        400,
        'DUPLICATE_HEADER',
      );
      const audit = await auditLine(logsSince);
      assert.equal(audit.code, 'DUPLICATE_HEADER');
      assert.equal(audit.outcome, 'rejected');
      const log = gw.rawLog();
      assert.ok(!log.includes('TOKEN-A-SECRET'), 'first Authorization value logged');
      assert.ok(!log.includes('TOKEN-B-SECRET'), 'second Authorization value logged');
      assert.ok(!/bearer/i.test(log), 'an Authorization value reached the log');
      await canary(gw);
    });

    it('H-07 refuses a duplicate Host on a plain (non-upgrade) request too', async () => {
      await refused(
        gw,
        'GET /echo HTTP/1.1\r\nHost: localhost\r\nHost: evil.test\r\n\r\n',
        400,
        'DUPLICATE_HEADER',
      );
    });

    it('H-07 still accepts a repeated header that is not security-relevant', async () => {
      const { audit } = await accepted(gw, HS({ 'X-Trace': ['a', 'b'] }));
      assert.equal(audit.route, '/echo');
      await canary(gw);
    });
  });

  describe('H-08 Host, authority, SNI and path confusion', () => {
    it('H-08 answers a Host outside hosts: [localhost] with 421 HOST_NOT_ALLOWED', async () => {
      for (const host of [
        'evil.test',
        'rebind.attacker.test:443',
        '127.0.0.1',
        'localhost.evil.test',
        '[::1]',
      ]) {
        const { logsSince } = await refused(gw, HS({ Host: host }), 421, 'HOST_NOT_ALLOWED');
        assert.equal((await auditLine(logsSince)).code, 'HOST_NOT_ALLOWED');
      }
      // A Host that is not even a host name is malformed rather than misdirected.
      for (const host of ['localhost@evil.test', 'localhost/echo', 'local host', '']) {
        await refused(gw, HS({ Host: host }), 400, 'BAD_REQUEST');
      }
      // The allowlisted name passes with any port and in any case.
      assert.equal((await accepted(gw, HS({ Host: `localhost:${gw.port}` }))).audit.route, '/echo');
      assert.equal((await accepted(gw, HS({ Host: 'LOCALHOST' }))).audit.route, '/echo');
      await canary(gw);
    });

    it('H-08 refuses an absolute-form target with 400 BAD_REQUEST and never routes by its authority', async () => {
      // 10.0.0.5 is only text in the request line: the gateway opens no connection anywhere.
      for (const target of [
        'http://10.0.0.5:8080/admin',
        'https://localhost/echo',
        `https://localhost:${gw.port}/echo`,
        '*',
      ]) {
        const { logsSince } = await refused(gw, HS({}, { path: target }), 400, 'BAD_REQUEST');
        const audit = await auditLine(logsSince);
        assert.equal(audit.code, 'BAD_REQUEST');
        assert.equal(audit.route, null);
      }
      await refused(
        gw,
        'GET http://10.0.0.5:8080/admin HTTP/1.1\r\nHost: localhost\r\n\r\n',
        400,
        'BAD_REQUEST',
      );
      await canary(gw);
    });

    it('H-08 answers Host: localhost over a connection whose SNI is gw.test with 421 SNI_MISMATCH', async () => {
      // The test certificate names localhost; the client skips the name check to reach the HTTP layer.
      const sni = { servername: 'gw.test', checkServerIdentity: () => undefined };
      const { logsSince } = await refused(gw, HS({ Host: 'localhost' }), 421, 'SNI_MISMATCH', sni);
      assert.equal((await auditLine(logsSince)).code, 'SNI_MISMATCH');
      await refused(gw, 'GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n', 421, 'SNI_MISMATCH', sni);
      await canary(gw);
    });

    it('H-08 refuses path tricks that leave the route or smuggle a separator', async () => {
      const cases: [string, number, string][] = [
        ['/echo/../admin', 404, 'ROUTE_NOT_FOUND'],
        ['/echo;x', 404, 'ROUTE_NOT_FOUND'],
        ['/ECHO', 404, 'ROUTE_NOT_FOUND'],
        ['/echo/', 404, 'ROUTE_NOT_FOUND'],
        ['/%2e%2e/', 400, 'BAD_PATH'],
        ['/%2E%2E/echo', 400, 'BAD_PATH'],
        ['/../echo', 400, 'BAD_PATH'],
        ['/echo%2f', 400, 'BAD_PATH'],
        ['/%2fecho', 400, 'BAD_PATH'],
        ['/x%2F..%2Fecho', 400, 'BAD_PATH'],
        ['/echo%5c..', 400, 'BAD_PATH'],
        ['/echo%00', 400, 'BAD_PATH'],
      ];
      for (const [path, status, code] of cases) {
        const { logsSince } = await refused(gw, HS({}, { path }), status, code);
        const audit = await auditLine(logsSince);
        assert.equal(audit.code, code, path);
        assert.equal(audit.route, null, path);
      }
      await canary(gw);
    });

    it('H-08 routes //echo and /ec%68o to /echo, and the audit route is the route that was applied', async () => {
      // path.ts collapses empty segments and decodes escaped unreserved characters, so these are
      // the same resource as /echo; the audit line names the route actually used.
      for (const path of ['//echo', '/ec%68o', '/./echo', '/chat/../echo']) {
        const { audit } = await accepted(gw, HS({}, { path }));
        assert.equal(audit.route, '/echo', path);
      }
      const ws = await openClient(gw, '//echo');
      const reply = nextMessage(ws);
      ws.send('via //echo');
      assert.equal((await reply).data.toString(), 'via //echo');
      ws.close(1000);
      await closed(ws);
      await canary(gw);
    });

    it('H-08 applies the policy of the normalised route: /echo/../chat needs a /chat subprotocol', async () => {
      const { logsSince } = await refused(
        gw,
        HS({}, { path: '/echo/../chat' }),
        400,
        'SUBPROTOCOL_NOT_SUPPORTED',
      );
      assert.equal((await auditLine(logsSince)).route, '/chat');
      const { res, audit } = await accepted(
        gw,
        HS({ 'Sec-WebSocket-Protocol': 'chat.v2' }, { path: '/echo/../chat' }),
      );
      assert.equal(res.headers['sec-websocket-protocol'], 'chat.v2');
      assert.equal(audit.route, '/chat');
      await canary(gw);
    });
  });

  describe('H-09 Sec-WebSocket-Protocol abuse', () => {
    it('H-09 answers the ReDoS input b + 15,000 spaces + x quickly with 400 BAD_SUBPROTOCOL', async () => {
      const started = performance.now();
      const { logsSince } = await refused(
        gw,
        HS({ 'Sec-WebSocket-Protocol': `b${' '.repeat(15_000)}x` }),
        400,
        'BAD_SUBPROTOCOL',
      );
      const wallMs = performance.now() - started;
      assert.ok(wallMs < 500, `round trip took ${wallMs} ms`);
      const audit = await auditLine(logsSince);
      assert.equal(audit.code, 'BAD_SUBPROTOCOL');
      // `ms` is the server's own handling time for this handshake.
      assert.ok((audit.ms as number) < 50, `server handled it in ${audit.ms} ms`);
      await canary(gw);
    });

    it('H-09 refuses 1,000 entries, invalid token characters and duplicates with 400 BAD_SUBPROTOCOL', async () => {
      const offers = [
        Array.from({ length: 1_000 }, (_, i) => `p${i}`).join(', '),
        `${'chat.v1,'.repeat(999)}chat.v1`,
        'chat.v1, chat.v1',
        'chat.v1, chat v1',
        'chat.v1, "chat.v2"',
        'chat.v1; q=1',
        'chat.v1, ch@t',
        'chat.v1, chät',
        'chat.v1,,chat.v2',
        'chat/v1',
      ];
      for (const offer of offers) {
        const { logsSince } = await refused(
          gw,
          HS({ 'Sec-WebSocket-Protocol': offer }, { path: '/chat' }),
          400,
          'BAD_SUBPROTOCOL',
        );
        assert.equal((await auditLine(logsSince)).code, 'BAD_SUBPROTOCOL');
      }
      await canary(gw);
    });

    it('H-09 refuses a Sec-WebSocket-Protocol header over 16 KiB with 431 HEADERS_TOO_LARGE', async () => {
      await refused(
        gw,
        HS({ 'Sec-WebSocket-Protocol': 'a'.repeat(17_000) }, { path: '/chat' }),
        431,
        'HEADERS_TOO_LARGE',
      );
      await canary(gw);
    });

    it('H-09 selects by server preference: chat.v2, chat.v1 offered on [chat.v1, chat.v2] gets chat.v1', async () => {
      const { res, audit } = await accepted(
        gw,
        HS({ 'Sec-WebSocket-Protocol': 'chat.v2, chat.v1' }, { path: '/chat' }),
      );
      assert.equal(res.headers['sec-websocket-protocol'], 'chat.v1');
      assert.equal(audit.subprotocol, 'chat.v1');
      const ws = await openClient(gw, '/chat', { protocols: ['chat.v2', 'chat.v1'] });
      assert.equal(ws.protocol, 'chat.v1');
      ws.close(1000);
      await closed(ws);
      await canary(gw);
    });

    it('H-09 answers v1, SENTINEL123 with exactly v1 and never echoes or logs the other value', async () => {
      const { client, res, logsSince } = await send(
        gw,
        HS({ 'Sec-WebSocket-Protocol': 'v1, SENTINEL123' }, { path: '/v1' }),
      );
      assert.equal(res.status, 101);
      assert.equal(res.headers['sec-websocket-protocol'], 'v1');
      assert.ok(!res.raw.includes('SENTINEL123'), 'the offered value was echoed');
      const audit = await auditLine(logsSince);
      assert.equal(audit.subprotocol, 'v1');
      client.write(F(0x81, 'ping'));
      assert.equal((await client.readFrame()).payload.toString(), 'ping');
      client.write(F(0x88, Buffer.from([0x03, 0xe8])));
      assert.equal((await client.readClose()).code, 1000);
      await client.waitClosed();
      await canary(gw);
      assert.ok(!gw.rawLog().includes('SENTINEL123'), 'the offered value reached the log');
    });

    it('H-09 refuses an offer with none of the route subprotocols with 400 SUBPROTOCOL_NOT_SUPPORTED', async () => {
      for (const request of [
        HS({ 'Sec-WebSocket-Protocol': 'chat.v3, v1' }, { path: '/chat' }),
        HS({ 'Sec-WebSocket-Protocol': 'CHAT.V1' }, { path: '/chat' }),
        HS({}, { path: '/chat' }),
      ]) {
        const { logsSince } = await refused(gw, request, 400, 'SUBPROTOCOL_NOT_SUPPORTED');
        const audit = await auditLine(logsSince);
        assert.equal(audit.code, 'SUBPROTOCOL_NOT_SUPPORTED');
        assert.equal(audit.route, '/chat');
      }
      await canary(gw);
    });
  });

  describe('H-10 Sec-WebSocket-Extensions abuse', () => {
    // Offers naming only unknown extensions (prototype names included): nothing to negotiate.
    const unknownOnly = ['__proto__; polluted=1', 'constructor; prototype=1, hasOwnProperty; toString=1'];
    // permessage-deflate offers whose parameters are invalid, some with prototype names.
    const invalidDeflate = [
      '__proto__; constructor=1, permessage-deflate; hasOwnProperty',
      'permessage-deflate; __proto__=1',
      'permessage-deflate; constructor=1',
      'permessage-deflate; server_max_window_bits=7',
      'permessage-deflate; server_max_window_bits=16',
      'permessage-deflate; server_max_window_bits=abc',
      'permessage-deflate; client_max_window_bits=7',
      'permessage-deflate; server_no_context_takeover; server_no_context_takeover',
      'permessage-deflate; client_max_window_bits=10; client_max_window_bits=11',
      'permessage-deflate; server_no_context_takeover=1',
      'permessage-deflate; x-unknown=1',
      'permessage-deflate;;',
      'permessage-deflate; client_max_window_bits="1 0"',
    ];

    it('H-10 ignores every extension offer on a route without compression: 101 without the header', async () => {
      const before = Object.getOwnPropertyNames(Object.prototype).sort();
      for (const offer of [...unknownOnly, ...invalidDeflate]) {
        const { res, audit } = await accepted(gw, HS({ 'Sec-WebSocket-Extensions': offer }));
        assert.equal(res.headers['sec-websocket-extensions'], undefined, offer);
        assert.equal(audit.route, '/echo');
      }
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
      assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).sort(), before);
      assert.equal(typeof ({} as { hasOwnProperty: unknown }).hasOwnProperty, 'function');
      await canary(gw);
    });

    it('H-10 declines offers of unknown extensions only on a compression route: 101 without the header', async () => {
      const before = Object.getOwnPropertyNames(Object.prototype).sort();
      const many = Array.from({ length: 100 }, (_, i) => `x-ext${i}`).join(', ');
      for (const offer of [...unknownOnly, many]) {
        const { res, audit } = await accepted(
          gw,
          HS({ 'Sec-WebSocket-Extensions': offer }, { path: '/deflate' }),
        );
        assert.equal(res.headers['sec-websocket-extensions'], undefined, offer.slice(0, 60));
        assert.equal(audit.route, '/deflate');
      }
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
      assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).sort(), before);
      await canary(gw);
    });

    it('H-10 refuses invalid permessage-deflate parameters on a compression route with 400 BAD_EXTENSION', async () => {
      const before = Object.getOwnPropertyNames(Object.prototype).sort();
      const offers = invalidDeflate;
      for (const offer of offers) {
        // ws answers these itself (after our checks); the gateway maps its refusal to BAD_EXTENSION.
        const { logsSince } = await refused(
          gw,
          HS({ 'Sec-WebSocket-Extensions': offer }, { path: '/deflate' }),
          400,
          'BAD_EXTENSION',
        );
        const audit = await auditLine(logsSince);
        assert.equal(audit.code, 'BAD_EXTENSION', offer);
        assert.equal(audit.route, '/deflate', offer);
      }
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
      assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).sort(), before);
      await canary(gw);
    });

    it('H-10 negotiates a valid permessage-deflate offer with server_no_context_takeover', async () => {
      // The form browsers send; 100 copies of it are answered once, with one extension.
      for (const offer of [
        'permessage-deflate; client_max_window_bits',
        'x-unknown-ext, permessage-deflate; client_max_window_bits=12',
        Array.from({ length: 100 }, () => 'permessage-deflate; client_max_window_bits').join(', '),
      ]) {
        const { res } = await accepted(gw, HS({ 'Sec-WebSocket-Extensions': offer }, { path: '/deflate' }));
        const ext = res.headers['sec-websocket-extensions'] ?? '';
        const params = ext.split(';').map((p) => p.trim());
        assert.equal(params[0], 'permessage-deflate', offer.slice(0, 60));
        assert.ok(params.includes('server_no_context_takeover'), ext);
        assert.ok(!ext.includes(','), `one extension only: ${ext}`);
        assert.ok(!ext.includes('x-unknown-ext'), ext);
      }
      // Compressed messages round-trip with the real ws client.
      const ws = await openClient(gw, '/deflate', { perMessageDeflate: { threshold: 0 } });
      assert.match(ws.extensions, /^permessage-deflate/);
      const reply = nextMessage(ws);
      ws.send('x'.repeat(4_096));
      assert.equal((await reply).data.toString(), 'x'.repeat(4_096));
      ws.close(1000);
      await closed(ws);
      await canary(gw);
    });

    it('H-10 negotiates a bare permessage-deflate offer (as Firefox and Safari send it) without context takeover', async () => {
      const client = await RawClient.connect(gw.port, gw.ca);
      client.write(HS({ 'Sec-WebSocket-Extensions': 'permessage-deflate' }, { path: '/deflate' }));
      const res = await client.readResponse();
      assert.equal(res.status, 101);
      assert.match(res.headers['sec-websocket-extensions'] ?? '', /^permessage-deflate/);
      assert.match(res.headers['sec-websocket-extensions'] ?? '', /server_no_context_takeover/);
      assert.match(res.headers['sec-websocket-extensions'] ?? '', /client_no_context_takeover/);
      client.destroy();
      await canary(gw);
    });
  });

  describe('H-11 header flood and oversize', () => {
    const head = 'GET /echo HTTP/1.1\r\n';

    // threats.md asks for 400 here; the gateway deliberately answers every header-count or
    // header-size overflow with its one code for it, 431 HEADERS_TOO_LARGE (limits.maxHeaderCount).
    it('H-11 answers 2,001 headers before the upgrade headers with 431 HEADERS_TOO_LARGE', async () => {
      // `xN: 1` lines are ~20 KiB: Node's parser stops at maxHeaderBytes first.
      const named = Array.from({ length: 2_001 }, (_, i) => `x${i}: 1\r\n`).join('');
      await refused(gw, HS().replace(head, `${head}${named}`), 431, 'HEADERS_TOO_LARGE');
      // 2,001 short lines fit in 16 KiB, so the count limit (maxHeaderCount 100) answers.
      const short = 'x:1\r\n'.repeat(2_001);
      const { logsSince } = await refused(
        gw,
        HS().replace(head, `${head}${short}`),
        431,
        'HEADERS_TOO_LARGE',
      );
      assert.equal((await auditLine(logsSince)).code, 'HEADERS_TOO_LARGE');
      await canary(gw);
    });

    it('H-11 counts headers exactly: 100 pass, 101 get 431 HEADERS_TOO_LARGE', async () => {
      // HS() has 6 headers of its own.
      await accepted(gw, HS().replace(head, `${head}${'x:1\r\n'.repeat(94)}`));
      await refused(gw, HS().replace(head, `${head}${'x:1\r\n'.repeat(95)}`), 431, 'HEADERS_TOO_LARGE');
      await refused(
        gw,
        `GET /echo HTTP/1.1\r\nHost: localhost\r\n${'x:1\r\n'.repeat(100)}\r\n`,
        431,
        'HEADERS_TOO_LARGE',
      );
      await canary(gw);
    });

    it('H-11 answers a 20 KiB header with 431 HEADERS_TOO_LARGE', async () => {
      await refused(gw, HS({ 'X-Big': 'a'.repeat(20_480) }), 431, 'HEADERS_TOO_LARGE');
      await canary(gw);
    });

    it('H-11 answers a 100 KiB URL with 431, and a URL over maxUrlBytes with 414 URI_TOO_LONG', async () => {
      // The request line counts towards Node's 16 KiB header limit, so the parser answers 431 first.
      const { res } = await refused(
        gw,
        HS({}, { path: `/echo?q=${'a'.repeat(102_400)}` }),
        431,
        'HEADERS_TOO_LARGE',
      );
      assert.ok([414, 431].includes(res.status));
      const { logsSince } = await refused(
        gw,
        HS({}, { path: `/echo?q=${'a'.repeat(5_000)}` }),
        414,
        'URI_TOO_LONG',
      );
      assert.equal((await auditLine(logsSince)).code, 'URI_TOO_LONG');
      await refused(
        gw,
        `GET /echo?q=${'a'.repeat(5_000)} HTTP/1.1\r\nHost: localhost\r\n\r\n`,
        414,
        'URI_TOO_LONG',
      );
      await canary(gw);
    });
  });

  describe('H-12 body or early bytes on the upgrade request', () => {
    it('H-12 refuses Content-Length: 5 + hello with 400 BODY_NOT_ALLOWED and never reads hello as a frame', async () => {
      const { logsSince } = await refused(
        gw,
        `${HS({ 'Content-Length': '5' })}hello`,
        400,
        'BODY_NOT_ALLOWED',
      );
      assert.equal((await auditLine(logsSince)).code, 'BODY_NOT_ALLOWED');
      await canary(gw);
    });

    it('H-12 refuses Transfer-Encoding: chunked with 400 BODY_NOT_ALLOWED', async () => {
      const { logsSince } = await refused(
        gw,
        `${HS({ 'Transfer-Encoding': 'chunked' })}5\r\nhello\r\n0\r\n\r\n`,
        400,
        'BODY_NOT_ALLOWED',
      );
      assert.equal((await auditLine(logsSince)).code, 'BODY_NOT_ALLOWED');
      await canary(gw);
    });

    it('H-12 answers a rejected handshake with a frame in the same write once, then closes; nothing is echoed', async () => {
      const request = Buffer.concat([Buffer.from(HS({ Origin: 'https://evil.test' })), F(0x81, 'x')]);
      const { logsSince } = await refused(gw, request, 403, 'ORIGIN_NOT_ALLOWED');
      assert.equal((await auditLine(logsSince)).code, 'ORIGIN_NOT_ALLOWED');
      await canary(gw);
    });

    it('H-12 never parses a request pipelined behind a refused one: exactly one response', async () => {
      const pipelined = 'GET /admin HTTP/1.1\r\nHost: localhost\r\n\r\n';
      const rejectedBefore = gw.gateway.stats.handshakesRejected;
      const mark = gw.logs.length;
      const { logsSince } = await refused(
        gw,
        HS({ Origin: 'https://evil.test' }) + pipelined,
        403,
        'ORIGIN_NOT_ALLOWED',
      );
      assert.equal((await auditLine(logsSince)).code, 'ORIGIN_NOT_ALLOWED');
      // A second pipelined upgrade behind a refused one is not decided either.
      await refused(gw, HS({ Origin: 'https://evil.test' }) + HS(), 403, 'ORIGIN_NOT_ALLOWED');
      // Behind a refused plain request, too.
      await refused(gw, `GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n${pipelined}`, 426, 'UPGRADE_REQUIRED');
      assert.equal(gw.gateway.stats.handshakesRejected - rejectedBefore, 3);
      assert.ok(!JSON.stringify(gw.logs.slice(mark)).includes('/admin'), 'the pipelined request was parsed');
      await canary(gw);
    });

    it('H-12 processes a frame sent in the same write as an accepted handshake after the 101', async () => {
      const client = await RawClient.connect(gw.port, gw.ca);
      client.write(Buffer.concat([Buffer.from(HS()), F(0x81, 'early')]));
      const res = await client.readResponse();
      assert.equal(res.status, 101);
      const echo = await client.readFrame();
      assert.equal(echo.opcode, 1);
      assert.equal(echo.payload.toString(), 'early');
      client.write(F(0x88, Buffer.from([0x03, 0xe8])));
      assert.equal((await client.readClose()).code, 1000);
      await client.waitClosed();
      await canary(gw);
    });
  });
});
