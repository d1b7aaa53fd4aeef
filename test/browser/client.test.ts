// The browser build of the SDK in a real browser: Debian's Chromium, driven by playwright-core, loads
// dist/client/browser.js as plain ES modules (no bundler) into an https page and talks to a real
// gateway. The Origin header, the bearer subprotocol entry and the mixed-content rules are then the
// browser's own, not a test's imitation of them. Chromium trusts the test certificate's key only
// (--ignore-certificate-errors-spki-list), never every certificate.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { RequestListener } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, resolve, sep } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type CryptoKey, exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { type Browser, type CDPSession, chromium, type Page } from 'playwright-core';
import type * as Sdk from '../../src/client/browser.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { issueCertificate, spkiPin } from '../../src/pki/index.js';
import { echoRoute, startGateway, type TestGateway } from '../helpers/gateway.js';
import { testPki } from '../helpers/pki.js';

const CHROMIUM = '/usr/bin/chromium';
const DIST = resolve('dist');
const ISS = 'https://idp.test/';
const AUD = 'chat';
const BEARER = 'portcullis.bearer.';
const LIMIT = { timeout: 20_000 };

type RouteInput = ConfigInput['routes'][number];

/** What the page's module script puts on globalThis. */
interface PageGlobals {
  portcullis: typeof Sdk;
}

/** One WebSocket as Chromium's network layer saw it (DevTools protocol events). */
interface SeenSocket {
  url: string;
  requestHeaders: Record<string, string>;
  status?: number;
  responseHeaders?: Record<string, string>;
  /** Why Chromium failed the socket, e.g. the status of a refused handshake. */
  error?: string;
}

// The page imports the SDK exactly as an application without a bundler would.
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>portcullis browser test</title>
<link rel="icon" href="data:,">
<script type="module">
  import * as portcullis from '/dist/client/browser.js';
  globalThis.portcullis = portcullis;
</script>
`;

/** A header's value by case-insensitive name. */
function header(headers: Record<string, string> | undefined, name: string): string | undefined {
  const key = Object.keys(headers ?? {}).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : headers?.[key];
}

/** Handshake audit lines written since log index `from`. */
function handshakes(gw: TestGateway, from: number): Record<string, unknown>[] {
  return gw.logs.slice(from).filter((l) => l.event === 'handshake');
}

/** Resolves when the gateway has no open connection left (its close audit lines are written). */
async function closedOnGateway(gw: TestGateway): Promise<void> {
  const deadline = Date.now() + 3_000;
  while (gw.gateway.connectionCount() > 0 && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
  assert.equal(gw.gateway.connectionCount(), 0, 'connections left open on the gateway');
}

/** Serves the test page at / and built .js files under /dist/, nothing else. */
function pageHandler(requested: string[]): RequestListener {
  return (req, res) => {
    requested.push(req.url ?? '');
    const { pathname } = new URL(req.url ?? '/', 'https://localhost');
    if (pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
      return;
    }
    const file = resolve(DIST, `.${pathname.slice('/dist'.length)}`);
    if (pathname.startsWith('/dist/') && file.startsWith(DIST + sep) && extname(file) === '.js') {
      try {
        const body = readFileSync(file);
        res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(body);
        return;
      } catch {
        // falls through to 404
      }
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
  };
}

function listen(server: Server): Promise<number> {
  return new Promise((done) =>
    server.listen(0, '127.0.0.1', () => done((server.address() as AddressInfo).port)),
  );
}

function closeServer(server: Server | undefined): Promise<void> {
  if (!server) return Promise.resolve();
  server.closeAllConnections();
  return new Promise((done) => server.close(() => done()));
}

describe('browser SDK in Chromium against a real gateway', {
  // Skipped only on a developer machine without Chromium; in CI (.ci/run installs it) a missing
  // browser fails instead of hiding.
  skip:
    !process.env.CI &&
    !existsSync(CHROMIUM) &&
    `${CHROMIUM} not installed (.ci/run installs Debian chromium)`,
}, () => {
  let dir: string;
  let gw: TestGateway;
  let pageServer: Server;
  let strangerServer: Server;
  let strangerPort: number;
  let pageOrigin: string;
  let browser: Browser;
  let page: Page;
  let cdp: CDPSession;
  let privateKey: CryptoKey;
  const requested: string[] = [];
  const pageErrors: string[] = [];
  let loadErrors: string[] = [];
  const sockets = new Map<string, SeenSocket>();

  const wss = (path: string) => `wss://localhost:${gw.port}${path}`;
  const jwt = (sub: string) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ iss: ISS, aud: AUD, sub, iat: now, exp: now + 300 })
      .setProtectedHeader({ alg: 'ES256' })
      .sign(privateKey);
  };
  const socketsTo = (path: string) => [...sockets.values()].filter((s) => s.url === wss(path));

  before(async () => {
    const pki = await testPki();
    dir = mkdtempSync(join(tmpdir(), 'portcullis-browser-'));
    const keys = await generateKeyPair('ES256');
    privateKey = keys.privateKey;
    const keyFile = join(dir, 'staff.pem');
    writeFileSync(keyFile, await exportSPKI(keys.publicKey));

    const tls = { cert: pki.server.certPem, key: pki.server.keyPem };
    pageServer = createServer(tls, pageHandler(requested));
    pageOrigin = `https://localhost:${await listen(pageServer)}`;
    // A server whose key Chromium was not told to trust: it must fail TLS.
    const stranger = await issueCertificate(pki.otherCa, {
      kind: 'server',
      commonName: 'localhost',
      dns: ['localhost'],
      ip: ['127.0.0.1'],
    });
    strangerServer = createServer({ cert: stranger.certPem, key: stranger.keyPem }, pageHandler([]));
    strangerPort = await listen(strangerServer);

    const origins = [pageOrigin];
    gw = await startGateway({
      authenticators: {
        staff: { type: 'jwt', keyFile, issuer: ISS, audience: AUD, algorithms: ['ES256'] },
      },
      routes: [
        echoRoute({ origins }),
        echoRoute({ path: '/other-app', origins: ['https://app.test'] }),
        echoRoute({ path: '/chat', origins, auth: ['staff'], subprotocols: ['chat.v1'] }),
        {
          path: '/live',
          origins,
          auth: ['staff'],
          subprotocols: ['portcullis.v1'],
          broker: { historySize: 0, channels: [{ pattern: 'user:{sub}', subscribe: true, publish: true }] },
        } as RouteInput,
      ],
    });

    // Both servers present the same test certificate, so one key is trusted; nothing else is.
    const spki = spkiPin(pki.server.certPem).slice('sha256/'.length);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 15_000,
      // playwright-core gives every launch a fresh --user-data-dir of its own and removes it on close.
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--ignore-certificate-errors-spki-list=${spki}`,
      ],
    });
    page = await browser.newPage();
    // tsx compiles this file with esbuild's keepNames, which wraps named functions in __name();
    // page.evaluate ships a function's source into the page, where __name must exist.
    await page.addInitScript('globalThis.__name = (fn) => fn;');
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(msg.text());
    });
    cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    cdp.on('Network.webSocketCreated', (e) => {
      sockets.set(e.requestId, { url: e.url, requestHeaders: {} });
    });
    cdp.on('Network.webSocketWillSendHandshakeRequest', (e) => {
      const seen = sockets.get(e.requestId);
      if (seen) seen.requestHeaders = e.request.headers as Record<string, string>;
    });
    cdp.on('Network.webSocketFrameError', (e) => {
      const seen = sockets.get(e.requestId);
      if (seen) seen.error = e.errorMessage;
    });
    cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
      const seen = sockets.get(e.requestId);
      if (!seen) return;
      seen.status = e.response.status;
      seen.responseHeaders = e.response.headers as Record<string, string>;
    });
    await page.goto(`${pageOrigin}/`);
    await page
      .waitForFunction(() => 'portcullis' in globalThis, undefined, { timeout: 5_000 })
      .catch((err: Error) => {
        throw new Error(`the SDK did not load as plain ESM: ${pageErrors.join('; ') || err.message}`);
      });
    loadErrors = [...pageErrors];
  });

  after(async () => {
    await browser?.close();
    await Promise.all([gw?.close(), closeServer(pageServer), closeServer(strangerServer)]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('trusts the test certificate key only: a server with another key fails TLS', LIMIT, async () => {
    const other = await browser.newPage();
    try {
      await assert.rejects(other.goto(`https://localhost:${strangerPort}/`), /ERR_CERT_AUTHORITY_INVALID/);
    } finally {
      await other.close();
    }
  });

  it('loads the browser build as plain ES modules with the right content type', LIMIT, async () => {
    assert.deepEqual(loadErrors, []);
    const loaded = requested.filter((u) => u.startsWith('/dist/')).sort();
    assert.ok(loaded.includes('/dist/client/browser.js'), loaded.join(', '));
    assert.ok(loaded.includes('/dist/protocol.js'), loaded.join(', '));
    const exported = await page.evaluate(() =>
      Object.keys((globalThis as unknown as PageGlobals).portcullis).sort(),
    );
    for (const name of ['connect', 'ERRORS', 'ClientError', 'BEARER_PROTOCOL_PREFIX']) {
      assert.ok(exported.includes(name), name);
    }
  });

  it('echoes over wss:// with the page origin as Origin', LIMIT, async () => {
    const from = gw.logs.length;
    const result = await page.evaluate(async (url) => {
      const client = (globalThis as unknown as PageGlobals).portcullis.connect(url, { reconnect: false });
      await client.ready();
      const reply = new Promise((done) => client.once('message', done));
      client.send('hello');
      const message = await reply;
      client.close();
      await new Promise((done) => client.once('close', done));
      return { message, protocol: client.protocol };
    }, wss('/echo'));
    assert.deepEqual(result, { message: 'hello', protocol: '' });
    const [line, ...more] = handshakes(gw, from);
    assert.equal(more.length, 0);
    assert.equal(line?.outcome, 'accepted');
    assert.equal(line?.route, '/echo');
    assert.equal(line?.origin, pageOrigin);
    await closedOnGateway(gw);
  });

  it(
    'C-08 an https page refuses ws:// in the SDK (TypeError, production mode) and nothing connects',
    LIMIT,
    async () => {
      const from = gw.logs.length;
      const socketsBefore = sockets.size;
      const urls = [`ws://localhost:${gw.port}/echo`, `ws://127.0.0.1:${gw.port}/echo`, 'ws://gw.test/echo'];
      const outcomes = await page.evaluate(
        (list) =>
          list.map((url) => {
            try {
              (globalThis as unknown as PageGlobals).portcullis.connect(url);
              return { url, thrown: null };
            } catch (err) {
              return { url, thrown: { name: (err as Error).name, message: (err as Error).message } };
            }
          }),
        urls,
      );
      // TypeError from the SDK, not the browser's SecurityError for mixed content: the SDK refused first.
      for (const { url, thrown } of outcomes) {
        assert.deepEqual(
          thrown,
          { name: 'TypeError', message: 'ws:// is refused in production mode; use wss://' },
          url,
        );
      }
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(sockets.size, socketsBefore, 'the browser opened a WebSocket');
      assert.deepEqual(
        gw.logs.slice(from).filter((l) => l.event !== 'close'),
        [],
        'the gateway saw a request',
      );
      assert.equal(gw.gateway.connectionCount(), 0);
    },
  );

  it(
    'A-06 C-07 a bearer token travels in the subprotocol entry only: identity audited, 101 answers chat.v1, never in a URL or the log',
    LIMIT,
    async () => {
      const token = await jwt('alice');
      const from = gw.logs.length;
      const result = await page.evaluate(
        async ({ url, token }) => {
          const debug: string[] = [];
          const client = (globalThis as unknown as PageGlobals).portcullis.connect(url, {
            protocols: ['chat.v1'],
            token,
            reconnect: false,
            debug: (line) => debug.push(line),
          });
          await client.ready();
          const reply = new Promise((done) => client.once('message', done));
          client.send('ping');
          const message = await reply;
          const protocol = client.protocol;
          client.close();
          await new Promise((done) => client.once('close', done));
          return { message, protocol, debug, href: String((globalThis as { location?: unknown }).location) };
        },
        { url: wss('/chat'), token },
      );
      assert.equal(result.message, 'ping');
      assert.equal(result.protocol, 'chat.v1');
      // What went over the wire, as Chromium's network layer saw it.
      const [seen, ...others] = socketsTo('/chat');
      assert.equal(others.length, 0);
      assert.ok(seen);
      assert.equal(seen.url, wss('/chat'));
      assert.equal(header(seen.requestHeaders, 'sec-websocket-protocol'), `chat.v1, ${BEARER}${token}`);
      assert.equal(header(seen.requestHeaders, 'authorization'), undefined);
      assert.equal(header(seen.requestHeaders, 'origin'), pageOrigin);
      assert.equal(seen.status, 101);
      assert.equal(header(seen.responseHeaders, 'sec-websocket-protocol'), 'chat.v1');
      assert.ok(!JSON.stringify(seen.responseHeaders).includes(token), 'the token came back in the 101');
      // The gateway: one accepted handshake for alice, and the token nowhere in its log.
      const [line, ...more] = handshakes(gw, from);
      assert.equal(more.length, 0);
      assert.equal(line?.outcome, 'accepted');
      assert.equal(line?.route, '/chat');
      assert.equal(line?.identity, 'alice');
      assert.equal(line?.subprotocol, 'chat.v1');
      assert.equal(line?.origin, pageOrigin);
      const log = gw.rawLog();
      assert.ok(!log.includes(token), 'the gateway log contains the token');
      assert.ok(!log.includes(BEARER), 'the gateway log contains the bearer entry');
      // No URL carries it: the page, the socket, any request the page made, the SDK's debug lines.
      assert.ok(!page.url().includes(token) && !result.href.includes(token));
      assert.ok(![...sockets.values()].some((s) => s.url.includes(token)));
      assert.ok(!requested.some((u) => u.includes(token)));
      assert.ok(result.debug.length > 0, 'the SDK wrote no debug lines');
      assert.ok(!result.debug.some((l) => l.includes(token)), result.debug.join('\n'));
      await closedOnGateway(gw);
    },
  );

  it(
    'H-05 the gateway checks the Origin the browser sets: a route not listing the page refuses with 403 ORIGIN_NOT_ALLOWED before any 101 (the SDK, blind to the status in a browser, reports CONNECTION_FAILED)',
    LIMIT,
    async () => {
      const from = gw.logs.length;
      const closes = await page.evaluate(async (url) => {
        const client = (globalThis as unknown as PageGlobals).portcullis.connect(url, {
          reconnect: { initialDelayMs: 100, maxDelayMs: 100 },
        });
        const events: unknown[] = [];
        await new Promise<void>((done) => {
          const off = client.on('close', (event) => {
            events.push(event);
            if (events.length < 2) return;
            off();
            done();
          });
        });
        client.close();
        const stopped = await client.ready().then(
          () => null,
          (err: { code?: unknown }) => err.code,
        );
        return { events, stopped, readyState: client.readyState };
      }, wss('/other-app'));
      // Each attempt: refused before the open. A browser's WebSocket API hides the 403 and its body,
      // so the SDK cannot read ORIGIN_NOT_ALLOWED (retry never) and reports the browser's failure.
      assert.equal(closes.events.length, 2);
      for (const event of closes.events) {
        assert.deepEqual(event, {
          code: 1006,
          reason: '',
          errorCode: 'CONNECTION_FAILED',
          retry: 'backoff',
          wasOpen: false,
          reconnecting: true,
        });
      }
      assert.equal(closes.readyState, 3);
      assert.equal(closes.stopped, 'CONNECTION_FAILED');
      // The gateway refused every attempt on the Origin the browser set, before any 101.
      const lines = handshakes(gw, from);
      assert.equal(lines.length, 2, JSON.stringify(lines));
      for (const line of lines) {
        assert.equal(line.outcome, 'rejected');
        assert.equal(line.code, 'ORIGIN_NOT_ALLOWED');
        assert.equal(line.status, 403);
        assert.equal(line.route, '/other-app');
        assert.equal(line.origin, pageOrigin);
      }
      const seen = socketsTo('/other-app');
      assert.equal(seen.length, 2);
      // Chromium itself saw the 403 (DevTools reports it); the page's script never does.
      for (const s of seen) {
        assert.equal(header(s.requestHeaders, 'origin'), pageOrigin);
        assert.equal(s.status, undefined);
        assert.equal(s.error, 'Error during WebSocket handshake: Unexpected response code: 403');
      }
    },
  );

  it(
    'broker helpers round trip: subscribe acks, publish acks after the subscriber got it, a foreign channel is FORBIDDEN',
    LIMIT,
    async () => {
      const token = await jwt('bob');
      const from = gw.logs.length;
      const result = await page.evaluate(
        async ({ url, token }) => {
          const asked: string[] = [];
          const client = (globalThis as unknown as PageGlobals).portcullis.connect(url, {
            protocols: ['portcullis.v1'],
            token: ({ reason }) => {
              asked.push(reason);
              return token;
            },
            reconnect: false,
          });
          await client.ready();
          const received: unknown[] = [];
          await client.subscribe('user:bob', (data, meta) => received.push({ data, channel: meta.channel }));
          await client.publish('user:bob', { text: 'hi' });
          const seenAtAck = received.length;
          const forbidden = await client
            .subscribe('user:carol', () => {})
            .then(
              () => null,
              (err: { code?: unknown }) => err.code,
            );
          await client.unsubscribe('user:bob');
          const protocol = client.protocol;
          client.close();
          return { asked, received, seenAtAck, forbidden, protocol };
        },
        { url: wss('/live'), token },
      );
      assert.equal(result.protocol, 'portcullis.v1');
      assert.deepEqual(result.asked, ['connect']);
      assert.equal(result.seenAtAck, 1, 'the publish ack came before the delivery');
      assert.deepEqual(result.received, [{ data: { text: 'hi' }, channel: 'user:bob' }]);
      assert.equal(result.forbidden, 'FORBIDDEN');
      const [line] = handshakes(gw, from);
      assert.equal(line?.identity, 'bob');
      assert.equal(line?.subprotocol, 'portcullis.v1');
      await closedOnGateway(gw);
      assert.ok(!gw.rawLog().includes(token));
    },
  );
});
