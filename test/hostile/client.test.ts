// Client rows C-01..C-09 of ../shared/threats.md: the SDK against hostile or broken servers. Fake
// servers on loopback (raw net/tls sockets, or ws) answer with each bad variant; the real gateway
// stands in where its own stats and logs are the evidence. Certificates come from src/pki.
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  createServer as createTlsServer,
  type DetailedPeerCertificate,
  type TLSSocket,
  connect as tlsConnect,
} from 'node:tls';
import { WebSocketServer } from 'ws';
import { type BrowserWebSocketConstructor, connect as browserConnect } from '../../src/client/browser.js';
import type { Client, CloseEvent } from '../../src/client/client.js';
import { type ConnectOptions, connect } from '../../src/client/connect.js';
import { CLIENT_DEFAULTS } from '../../src/client/options.js';
import { pinOf } from '../../src/client/pins.js';
import { type Issued, issueCertificate, spkiPin, x509 } from '../../src/pki/index.js';
import { generateKeyPair, signingAlgorithm } from '../../src/pki/keys.js';
import { echoRoute, startGateway, type TestGateway } from '../helpers/gateway.js';
import { type TestPki, testPki } from '../helpers/pki.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const SENTINEL = 'SENTINEL0token0C07';
const UNKNOWN_PIN_1 = `sha256/${Buffer.alloc(32, 1).toString('base64')}`;
const UNKNOWN_PIN_2 = `sha256/${Buffer.alloc(32, 2).toString('base64')}`;
/** Reconnect settings that would loop fast if the SDK retried something it must not. */
const EAGER = { initialDelayMs: 20, maxDelayMs: 40 };

let pki: TestPki;
before(async () => {
  pki = await testPki();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const acceptFor = (key: string) =>
  createHash('sha1')
    .update(key + GUID)
    .digest('base64');

/** One request a fake server received: its head, the key, and every byte the client sent after it. */
interface Received {
  readonly head: string;
  readonly key: string;
  readonly socket: Socket;
  after: Buffer;
  readonly at: number;
}

/** A loopback server that reads one HTTP request per connection and lets the test answer it. */
interface Fake {
  readonly port: number;
  readonly requests: Received[];
  connections: number;
  close(): Promise<void>;
}

async function fakeServer(
  answer: (req: Received) => void,
  tls?: { certPem: string; keyPem: string },
  onConnection?: (socket: Socket) => void,
): Promise<Fake> {
  const sockets = new Set<Socket>();
  const fake = { port: 0, requests: [] as Received[], connections: 0 } as Fake & { connections: number };
  const handle = (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    if (onConnection) return onConnection(socket);
    let buffered = Buffer.alloc(0);
    let received: Received | undefined;
    socket.on('data', (chunk: Buffer) => {
      if (received) {
        received.after = Buffer.concat([received.after, chunk]);
        // Answer a client's close frame with 1000, as a server completing the closing handshake.
        if (chunk[0] === 0x88 && !socket.writableEnded) socket.end(Buffer.from([0x88, 0x02, 0x03, 0xe8]));
        return;
      }
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = buffered.subarray(0, end).toString('latin1');
      const key = /^sec-websocket-key:\s*(\S+)/im.exec(head)?.[1] ?? '';
      received = { head, key, socket, after: buffered.subarray(end + 4), at: Date.now() };
      fake.requests.push(received);
      answer(received);
    });
  };
  const server: NetServer = tls
    ? createTlsServer({ cert: tls.certPem, key: tls.keyPem }, (s: TLSSocket) => handle(s))
    : createNetServer(handle);
  // TCP connections, counted before any TLS handshake (a client that aborts it still counts).
  server.on('connection', (socket: Socket) => {
    fake.connections++;
    sockets.add(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  (fake as { port: number }).port = (server.address() as { port: number }).port;
  fake.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  };
  return fake;
}

/** The final close event (no reconnect follows). */
function finalClose(client: Client): Promise<CloseEvent> {
  return new Promise((resolve) => {
    client.on('close', (event) => {
      if (!event.reconnecting) resolve(event);
    });
  });
}

/** The close code of the close frame a client sent (masked), or undefined when it sent none. */
function clientCloseCode(bytes: Buffer): number | undefined {
  if (bytes.length < 8 || bytes[0] !== 0x88) return undefined;
  const mask = bytes.subarray(2, 6);
  return (((bytes[6] as number) ^ (mask[0] as number)) << 8) | ((bytes[7] as number) ^ (mask[1] as number));
}

function switching(key: string, extra = ''): string {
  return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n${extra}\r\n`;
}

describe('C-01 bad server handshakes', () => {
  const variants: [string, (key: string) => string, string[]?][] = [
    [
      'missing Sec-WebSocket-Accept',
      () => 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
    ],
    [
      'wrong Sec-WebSocket-Accept',
      () =>
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor('AAAAAAAAAAAAAAAAAAAAAA==')}\r\n\r\n`,
    ],
    [
      'missing Upgrade',
      (key) =>
        `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`,
    ],
    [
      'missing Connection',
      (key) =>
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`,
    ],
    ['200 instead of 101', () => 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok'],
    ['a subprotocol that was not offered', (key) => switching(key, 'Sec-WebSocket-Protocol: evil\r\n')],
    [
      'a subprotocol other than the one offered',
      (key) => switching(key, 'Sec-WebSocket-Protocol: chat.v2\r\n'),
      ['chat.v1'],
    ],
    [
      'an extension that was not offered',
      (key) => switching(key, 'Sec-WebSocket-Extensions: permessage-deflate\r\n'),
    ],
  ];
  for (const [name, response, protocols] of variants) {
    it(`C-01 ${name}: HANDSHAKE_FAILED, no frame sent, retried with backoff`, async () => {
      const fake = await fakeServer((req) => req.socket.write(response(req.key)));
      try {
        const client = connect(`ws://127.0.0.1:${fake.port}/x`, {
          ...(protocols ? { protocols } : {}),
          // random 0.999: each delay near its cap (~20 ms, then ~40 ms), so retries are visibly spaced.
          reconnect: { ...EAGER, maxAttempts: 2 },
          random: () => 0.999,
        });
        let opened = false;
        client.on('open', () => {
          opened = true;
          client.send('must never be sent');
        });
        const closes: CloseEvent[] = [];
        client.on('close', (e) => closes.push(e));
        const last = await finalClose(client);
        assert.equal(opened, false);
        assert.equal(last.errorCode, 'HANDSHAKE_FAILED');
        assert.equal(last.retry, 'backoff');
        assert.equal(fake.requests.length, 3, 'the first attempt and two retries');
        for (const req of fake.requests) assert.equal(req.after.length, 0, 'no byte after the request');
        const gaps = fake.requests.slice(1).map((r, i) => r.at - (fake.requests[i] as Received).at);
        assert.ok(
          gaps.every((gap) => gap >= 15),
          `retries are spaced: ${gaps}`,
        );
      } finally {
        await fake.close();
      }
    });
  }
});

describe('C-02 hostile frames from the server', () => {
  const frames: [string, () => Buffer, string, number][] = [
    [
      'a masked text frame',
      () => Buffer.from([0x81, 0x85, 1, 2, 3, 4, 0x69, 0x67, 0x6f, 0x68, 0x6e]),
      'PROTOCOL_ERROR',
      1002,
    ],
    [
      'a 2^63-1 length',
      () => Buffer.from([0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
      'MESSAGE_TOO_BIG',
      1009,
    ],
    [
      'a length over maxPayload (explicit 1 MiB default, not ws 100 MiB)',
      () => {
        const header = Buffer.alloc(10);
        header[0] = 0x82;
        header[1] = 0x7f;
        header.writeBigUInt64BE(BigInt(CLIENT_DEFAULTS.maxPayload + 1), 2);
        return header;
      },
      'MESSAGE_TOO_BIG',
      1009,
    ],
    ['invalid UTF-8 in a text message', () => Buffer.from([0x81, 0x02, 0xc3, 0x28]), 'INVALID_PAYLOAD', 1007],
    ['a close frame with code 1005', () => Buffer.from([0x88, 0x02, 0x03, 0xed]), 'PROTOCOL_ERROR', 1002],
    ['a close frame with code 999', () => Buffer.from([0x88, 0x02, 0x03, 0xe7]), 'PROTOCOL_ERROR', 1002],
    [
      'a close reason that is not UTF-8',
      () => Buffer.from([0x88, 0x04, 0x03, 0xe8, 0xc3, 0x28]),
      'INVALID_PAYLOAD',
      1007,
    ],
    [
      'a compressed frame (deflate was not negotiated)',
      () => Buffer.from([0xc1, 0x01, 0x00]),
      'PROTOCOL_ERROR',
      1002,
    ],
    [
      'a fragment flood',
      () => {
        const parts = [Buffer.from([0x01, 0x01, 0x61])];
        for (let i = 0; i < CLIENT_DEFAULTS.maxFragments + 1; i++)
          parts.push(Buffer.from([0x00, 0x01, 0x61]));
        return Buffer.concat(parts);
      },
      'TOO_MANY_FRAGMENTS',
      1008,
    ],
  ];
  for (const [name, bytes, code, closeCode] of frames) {
    it(`C-02 ${name}: ${code}, close ${closeCode}, the application sees nothing`, async () => {
      const fake = await fakeServer((req) =>
        req.socket.write(Buffer.concat([Buffer.from(switching(req.key)), bytes()])),
      );
      try {
        const client = connect(`ws://127.0.0.1:${fake.port}/x`, { reconnect: EAGER });
        const seen: unknown[] = [];
        client.on('message', (m) => seen.push(m));
        const iterated: unknown[] = [];
        const iteration = (async () => {
          for await (const m of client) iterated.push(m);
        })();
        const last = await finalClose(client);
        await iteration;
        assert.deepEqual(seen, []);
        assert.deepEqual(iterated, []);
        assert.equal(last.errorCode, code);
        assert.equal(last.reconnecting, false, 'ERRORS marks framing violations as never');
        await sleep(50);
        assert.equal(fake.requests.length, 1);
        assert.equal(clientCloseCode((fake.requests[0] as Received).after), closeCode);
      } finally {
        await fake.close();
      }
    });
  }

  it('C-02 a valid message before the violation is delivered; nothing after it', async () => {
    const fake = await fakeServer((req) =>
      req.socket.write(
        Buffer.concat([
          Buffer.from(switching(req.key)),
          Buffer.from([0x81, 0x02, 0x6f, 0x6b]),
          Buffer.from([0x81, 0x02, 0xc3, 0x28]),
          Buffer.from([0x81, 0x02, 0x6e, 0x6f]),
        ]),
      ),
    );
    try {
      const client = connect(`ws://127.0.0.1:${fake.port}/x`, { reconnect: false });
      const seen: unknown[] = [];
      client.on('message', (m) => seen.push(m));
      assert.equal((await finalClose(client)).errorCode, 'INVALID_PAYLOAD');
      assert.deepEqual(seen, ['ok']);
    } finally {
      await fake.close();
    }
  });
});

describe('C-03 certificate pinning against a trusted but unpinned certificate', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway();
  });
  after(() => gw.close());

  it('C-03 the real gateway: PIN_MISMATCH, not retried, and the gateway saw no handshake and no token', async () => {
    const debug: string[] = [];
    const client = connect(`wss://localhost:${gw.port}/echo`, {
      ca: gw.ca,
      origin: 'https://app.test',
      pins: [UNKNOWN_PIN_1, UNKNOWN_PIN_2],
      token: SENTINEL,
      reconnect: EAGER,
      debug: (line) => debug.push(line),
    });
    const pinEvents: unknown[] = [];
    client.on('pinMismatch', (info) => pinEvents.push(info));
    const last = await finalClose(client);
    assert.equal(last.errorCode, 'PIN_MISMATCH');
    assert.equal(last.reconnecting, false);
    await sleep(300);
    assert.equal(gw.gateway.stats.handshakesAccepted, 0);
    assert.equal(gw.gateway.stats.handshakesRejected, 0);
    assert.equal(gw.gateway.stats.tlsRejected, 1, 'exactly one TLS connection: no retry');
    assert.ok(!gw.logs.some((l) => l.event === 'handshake' || l.event === 'request'));
    assert.ok(!gw.rawLog().includes(SENTINEL));
    assert.ok(!debug.join('\n').includes(SENTINEL));
    assert.deepEqual(pinEvents, [
      { host: 'localhost', scope: 'chain', seen: [spkiPin(pki.server.certPem), spkiPin(pki.ca.certPem)] },
    ]);
  });

  it('C-03 a raw TLS server receives 0 bytes after the handshake', async () => {
    let bytes = 0;
    let connections = 0;
    const server = createTlsServer({ cert: pki.server.certPem, key: pki.server.keyPem }, (socket) => {
      socket.on('data', (d: Buffer) => {
        bytes += d.length;
      });
      socket.on('error', () => {});
    });
    server.on('connection', () => connections++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    try {
      for (const minVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
        server.setSecureContext({
          cert: pki.server.certPem,
          key: pki.server.keyPem,
          minVersion,
          maxVersion: minVersion,
        });
        const client = connect(`wss://localhost:${port}/x`, {
          ca: pki.ca.certPem,
          pins: [UNKNOWN_PIN_1, UNKNOWN_PIN_2],
          token: SENTINEL,
          reconnect: false,
        });
        assert.equal((await finalClose(client)).errorCode, 'PIN_MISMATCH');
      }
      await sleep(100);
      assert.equal(connections, 2, 'one connection per TLS version, no retry');
      assert.equal(bytes, 0, 'no HTTP request, no Authorization header');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('C-03 a certificate appended to the chain that merely carries a pinned key does not satisfy the pin', async () => {
    // The attacker holds a certificate from a CA the client trusts (the compromised-CA case) and
    // appends a self-made "issuer" with the pinned CA's public key and the real issuer's name and
    // key id, so Node links it into the chain it reports. Only a signature check tells it apart.
    const caCert = new x509.X509Certificate(pki.ca.certPem);
    const ski = caCert.getExtension(x509.SubjectKeyIdentifierExtension);
    assert.ok(ski);
    const attacker = await generateKeyPair('p256');
    const decoy = await x509.X509CertificateGenerator.create({
      serialNumber: '01',
      subject: caCert.subject,
      issuer: caCert.subject,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
      publicKey: new x509.X509Certificate(pki.otherCa.certPem).publicKey,
      signingKey: attacker.privateKey,
      signingAlgorithm: signingAlgorithm('p256'),
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.SubjectKeyIdentifierExtension(ski.keyId),
      ],
    });
    const fake = await fakeServer((req) => req.socket.write(switching(req.key)), {
      certPem: `${pki.server.certPem}\n${decoy.toString('pem')}`,
      keyPem: pki.server.keyPem,
    });
    try {
      const pinnedCa = spkiPin(pki.otherCa.certPem);
      // The attack is real: the chain Node reports links the decoy, pinned key included.
      const reported = await new Promise<string[]>((resolve, reject) => {
        const socket = tlsConnect({
          host: 'localhost',
          port: fake.port,
          ca: pki.ca.certPem,
          checkServerIdentity: (_host, cert) => {
            const pins: string[] = [];
            const seen = new Set<string>();
            for (let c = cert as DetailedPeerCertificate | undefined; c && !seen.has(c.fingerprint256); ) {
              seen.add(c.fingerprint256);
              pins.push(pinOf(new X509Certificate(c.raw)));
              c = c.issuerCertificate;
            }
            resolve(pins);
            return undefined;
          },
        });
        socket.once('secureConnect', () => socket.destroy());
        socket.once('error', reject);
      });
      assert.ok(reported.includes(pinnedCa), 'Node links the decoy into the chain it reports');
      const client = connect(`wss://localhost:${fake.port}/x`, {
        ca: pki.ca.certPem,
        pins: [pinnedCa, UNKNOWN_PIN_1],
        reconnect: false,
      });
      const seen: { seen: readonly string[] }[] = [];
      client.on('pinMismatch', (info) => seen.push(info));
      assert.equal((await finalClose(client)).errorCode, 'PIN_MISMATCH');
      assert.ok(!seen[0]?.seen.includes(pinnedCa));
      assert.equal(fake.requests.length, 0);
    } finally {
      await fake.close();
    }
  });
});

/** A wss echo server whose certificate the test can swap between connections. */
async function swappableServer(initial: Issued): Promise<{
  port: number;
  use(cert: Issued): void;
  /** Terminates every open WebSocket (the client sees 1006). */
  dropAll(): void;
  resumed: boolean[];
  close(): Promise<void>;
}> {
  const https: HttpsServer = createHttpsServer({ cert: initial.certPem, key: initial.keyPem });
  const resumed: boolean[] = [];
  https.on('secureConnection', (socket: TLSSocket) => resumed.push(socket.isSessionReused()));
  const wss = new WebSocketServer({ server: https });
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
  return {
    port: (https.address() as { port: number }).port,
    use: (cert) => https.setSecureContext({ cert: cert.certPem, key: cert.keyPem }),
    dropAll: () => {
      for (const ws of wss.clients) ws.terminate();
    },
    resumed,
    close: async () => {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      https.closeAllConnections();
      await new Promise((resolve) => https.close(resolve));
    },
  };
}

function serverCert(extra: { dns?: string[]; notBefore?: Date; notAfter?: Date } = {}): Promise<Issued> {
  return issueCertificate(pki.ca, {
    kind: 'server',
    commonName: 'localhost',
    dns: extra.dns ?? ['localhost'],
    ip: ['127.0.0.1'],
    ...(extra.notBefore ? { notBefore: extra.notBefore } : {}),
    ...(extra.notAfter ? { notAfter: extra.notAfter } : {}),
  });
}

describe('C-04 verification bypass paths', () => {
  it('C-04 rejectUnauthorized: false is refused with pins, and in production mode', () => {
    assert.throws(
      () =>
        connect('wss://localhost:1/x', { pins: [UNKNOWN_PIN_1, UNKNOWN_PIN_2], rejectUnauthorized: false }),
      /rejectUnauthorized/,
    );
    assert.throws(
      () => connect('wss://localhost:1/x', { production: true, rejectUnauthorized: false }),
      /production/,
    );
  });

  it('C-04 NODE_TLS_REJECT_UNAUTHORIZED=0: refused in production, and cannot disable verification otherwise', async () => {
    const untrusted = await issueCertificate(pki.otherCa, {
      kind: 'server',
      commonName: 'localhost',
      dns: ['localhost'],
    });
    const fake = await fakeServer((req) => req.socket.write(switching(req.key)), untrusted);
    const saved = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
    try {
      assert.throws(
        () => connect(`wss://localhost:${fake.port}/x`, { production: true }),
        /NODE_TLS_REJECT_UNAUTHORIZED/,
      );
      const client = connect(`wss://localhost:${fake.port}/x`, { production: false, reconnect: false });
      const last = await finalClose(client);
      assert.equal(last.errorCode, 'TLS_ERROR');
      assert.equal(fake.requests.length, 0);
    } finally {
      if (saved === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
      else process.env.NODE_TLS_REJECT_UNAUTHORIZED = saved;
      await fake.close();
    }
  });

  it('C-04 every reconnect makes a full handshake and checks the pins again', async () => {
    const other = await serverCert();
    const server = await swappableServer(pki.server);
    try {
      const client = connect(`wss://localhost:${server.port}/x`, {
        ca: pki.ca.certPem,
        pins: [spkiPin(pki.server.certPem), UNKNOWN_PIN_1],
        pinScope: 'leaf',
        reconnect: { ...EAGER, maxAttempts: 3 },
      });
      await client.ready();
      server.use(other);
      const last = finalClose(client);
      let reopened = false;
      client.on('open', () => {
        reopened = true;
      });
      // Drop the connection: the client reconnects to a server whose key is no longer pinned.
      server.dropAll();
      const end = await last;
      assert.equal(reopened, false);
      assert.equal(end.errorCode, 'PIN_MISMATCH');
      assert.ok(server.resumed.length >= 1);
      assert.ok(
        server.resumed.every((reused) => !reused),
        'no TLS session was resumed',
      );
    } finally {
      await server.close();
    }
  });

  it('C-04 HTTPS_PROXY and a custom agent are not used: no path around the pinned socket', async () => {
    let proxied = 0;
    const proxy = createNetServer((socket) => {
      proxied++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const gw = await startGateway();
    const saved = { https: process.env.HTTPS_PROXY, all: process.env.ALL_PROXY };
    process.env.HTTPS_PROXY = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
    process.env.ALL_PROXY = process.env.HTTPS_PROXY;
    try {
      const client = connect(`wss://localhost:${gw.port}/echo`, {
        ca: gw.ca,
        origin: 'https://app.test',
        pins: [spkiPin(pki.server.certPem), UNKNOWN_PIN_1],
        reconnect: false,
        agent: { bogus: true },
      } as ConnectOptions);
      await client.ready();
      client.close();
      await finalClose(client);
      assert.equal(proxied, 0);
    } finally {
      if (saved.https === undefined) delete process.env.HTTPS_PROXY;
      else process.env.HTTPS_PROXY = saved.https;
      if (saved.all === undefined) delete process.env.ALL_PROXY;
      else process.env.ALL_PROXY = saved.all;
      await gw.close();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it('C-04 an expired server certificate is TLS_ERROR, retried with backoff, never in a tight loop', async () => {
    const expired = await serverCert({
      notBefore: new Date(Date.now() - 30 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    const fake = await fakeServer((req) => req.socket.write(switching(req.key)), expired);
    try {
      let tlsAttempts = 0;
      const client = connect(`wss://localhost:${fake.port}/x`, {
        ca: pki.ca.certPem,
        reconnect: { initialDelayMs: 200, maxDelayMs: 400 },
        // The middle of the jitter (delays 100, 200, 200 ms...): with Math.random a run of short
        // draws could exceed any fixed bound, and the bound is what this test is about.
        random: () => 0.5,
      });
      client.on('reconnecting', () => tlsAttempts++);
      const errors: string[] = [];
      client.on('error', (e) => errors.push(e.code));
      await sleep(1_000);
      client.close();
      assert.equal(errors[0], 'TLS_ERROR');
      assert.ok(fake.connections >= 2 && fake.connections <= 8, `${fake.connections} connections in 1 s`);
      assert.equal(fake.requests.length, 0);
    } finally {
      await fake.close();
    }
  });

  it('C-04 a certificate for another host name is TLS_ERROR and sends nothing', async () => {
    const wrongHost = await issueCertificate(pki.ca, {
      kind: 'server',
      commonName: 'other.test',
      dns: ['other.test'],
    });
    const fake = await fakeServer((req) => req.socket.write(switching(req.key)), wrongHost);
    try {
      const client = connect(`wss://localhost:${fake.port}/x`, {
        ca: pki.ca.certPem,
        reconnect: false,
        token: SENTINEL,
      });
      const errors: Error[] = [];
      client.on('error', (e) => errors.push(e));
      assert.equal((await finalClose(client)).errorCode, 'TLS_ERROR');
      assert.match(errors[0]?.message ?? '', /ERR_TLS_CERT_ALTNAME_INVALID/);
      assert.equal(fake.requests.length, 0);
    } finally {
      await fake.close();
    }
  });
});

describe('C-05 backup pins and rotation', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway();
  });
  after(() => gw.close());

  it('C-05 a backup pin is accepted: pins [unknown, actual] connect', async () => {
    const client = connect(`wss://localhost:${gw.port}/echo`, {
      ca: gw.ca,
      origin: 'https://app.test',
      pins: [UNKNOWN_PIN_1, spkiPin(pki.server.certPem)],
      reconnect: false,
    });
    await client.ready();
    const reply = new Promise((resolve) => client.once('message', resolve));
    client.send('pinned');
    assert.equal(await reply, 'pinned');
    client.close();
    await finalClose(client);
  });

  it('C-05 the server rotates to the backup key: connects; then to an unknown key: PIN_MISMATCH', async () => {
    const backup = await serverCert();
    const unknown = await serverCert();
    const pins = [spkiPin(pki.server.certPem), spkiPin(backup.certPem)];
    const server = await swappableServer(pki.server);
    try {
      const once = async () => {
        const client = connect(`wss://localhost:${server.port}/x`, {
          ca: pki.ca.certPem,
          pins,
          pinScope: 'leaf',
          reconnect: false,
        });
        const end = finalClose(client);
        const opened = await client.ready().then(
          () => true,
          () => false,
        );
        if (opened) client.close();
        return { opened, end: await end };
      };
      assert.equal((await once()).opened, true, 'current key');
      server.use(backup);
      assert.equal((await once()).opened, true, 'backup key');
      server.use(unknown);
      const rotatedAway = await once();
      assert.equal(rotatedAway.opened, false);
      assert.equal(rotatedAway.end.errorCode, 'PIN_MISMATCH');
    } finally {
      await server.close();
    }
  });

  it("C-05 pinScope 'chain' accepts a pinned CA key; 'leaf' does not", async () => {
    const pins = [spkiPin(pki.ca.certPem), UNKNOWN_PIN_1];
    const base = { ca: gw.ca, origin: 'https://app.test', pins, reconnect: false as const };
    const chain = connect(`wss://localhost:${gw.port}/echo`, { ...base, pinScope: 'chain' });
    await chain.ready();
    chain.close();
    const leaf = connect(`wss://localhost:${gw.port}/echo`, { ...base, pinScope: 'leaf' });
    assert.equal((await finalClose(leaf)).errorCode, 'PIN_MISMATCH');
  });
});

describe('C-06 redirects', () => {
  it('C-06 a 301/302/307 is not followed: no request reaches the target, Authorization goes nowhere new', async () => {
    const target = await fakeServer((req) => req.socket.write(switching(req.key)));
    const targetTls = await fakeServer((req) => req.socket.write(switching(req.key)), pki.server);
    try {
      for (const [status, location] of [
        [301, `ws://localhost:${targetTls.port}/x`],
        [302, `ws://127.0.0.1:${target.port}/x`],
        [307, `wss://localhost:${targetTls.port}/other`],
        [302, 'ws+unix:///tmp/portcullis.sock:/x'],
      ] as const) {
        const redirector = await fakeServer(
          (req) =>
            req.socket.end(
              `HTTP/1.1 ${status} Moved\r\nLocation: ${location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
            ),
          pki.server,
        );
        try {
          const client = connect(`wss://localhost:${redirector.port}/x`, {
            ca: pki.ca.certPem,
            token: SENTINEL,
            reconnect: EAGER,
          });
          const last = await finalClose(client);
          assert.equal(last.errorCode, 'REDIRECT_NOT_FOLLOWED', `${status} ${location}`);
          assert.equal(last.reconnecting, false);
          await sleep(50);
          assert.equal(redirector.requests.length, 1, 'not retried');
        } finally {
          await redirector.close();
        }
      }
      assert.equal(target.requests.length, 0);
      assert.equal(targetTls.requests.length, 0);
    } finally {
      await target.close();
      await targetTls.close();
    }
  });
});

describe('C-07 token handling', () => {
  it('C-07 the token goes in Authorization, never in the request line; debug output never shows it', async () => {
    const fake = await fakeServer((req) => req.socket.write(switching(req.key)), pki.server);
    try {
      const debug: string[] = [];
      const client = connect(`wss://localhost:${fake.port}/chat?room=1`, {
        ca: pki.ca.certPem,
        token: async () => SENTINEL,
        reconnect: false,
        debug: (line) => debug.push(line),
      });
      await client.ready();
      client.close();
      await finalClose(client);
      const head = (fake.requests[0] as Received).head;
      const [requestLine] = head.split('\r\n');
      assert.equal(requestLine, 'GET /chat?room=1 HTTP/1.1');
      assert.match(head, new RegExp(`\\r\\nAuthorization: Bearer ${SENTINEL}(\\r\\n|$)`));
      assert.ok(debug.length > 0);
      assert.ok(!debug.join('\n').includes(SENTINEL));
      assert.ok(!debug.join('\n').includes('room=1'), 'the query string is not logged either');
    } finally {
      await fake.close();
    }
  });

  it('C-07 the browser build sends the token as a subprotocol entry, not in the URL', async () => {
    const fake = await fakeServer((req) => req.socket.write(switching(req.key)));
    try {
      const { default: WebSocket } = await import('ws');
      const client = browserConnect(`ws://127.0.0.1:${fake.port}/chat`, {
        token: SENTINEL,
        reconnect: false,
        WebSocket: WebSocket as unknown as BrowserWebSocketConstructor,
      });
      // ws (standing in for a browser here) insists on a chosen subprotocol, browsers do not; the
      // outcome of the handshake does not matter for where the token went.
      await finalClose(client);
      const head = (fake.requests[0] as Received).head;
      assert.ok(!head.split('\r\n')[0]?.includes(SENTINEL));
      assert.match(head, new RegExp(`Sec-WebSocket-Protocol: portcullis\\.bearer\\.${SENTINEL}`));
      assert.doesNotMatch(head, /Authorization/i);
    } finally {
      await fake.close();
    }
  });

  it('C-07 reconnect per close code: 1008, 4001 and terminal codes stop; CREDENTIAL_EXPIRED refreshes', async () => {
    const scripts: [number, string, number][] = [
      [1008, '', 1],
      [4001, '', 1],
      [4401, 'UNAUTHENTICATED', 1],
      [4403, 'FORBIDDEN', 1],
      [4401, 'CREDENTIAL_REVOKED', 1],
    ];
    for (const [code, reason, expectedConnections] of scripts) {
      const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
      await new Promise((resolve) => wss.once('listening', resolve));
      let connections = 0;
      wss.on('connection', (ws) => {
        connections++;
        ws.close(code, reason);
      });
      try {
        let provided = 0;
        const client = connect(`ws://127.0.0.1:${(wss.address() as { port: number }).port}/x`, {
          token: () => `tok${++provided}`,
          reconnect: EAGER,
        });
        const last = await finalClose(client);
        await sleep(100);
        assert.equal(connections, expectedConnections, `${code} ${reason}`);
        assert.equal(last.code, code);
        assert.equal(last.errorCode, reason || null);
        assert.equal(provided, 1);
      } finally {
        wss.close();
      }
    }
    // CREDENTIAL_EXPIRED: the provider is asked again, and the new token is what the server sees.
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise((resolve) => wss.once('listening', resolve));
    const seen: string[] = [];
    wss.on('connection', (ws, req) => {
      seen.push(req.headers.authorization ?? '');
      if (seen.length === 1) ws.close(4401, 'CREDENTIAL_EXPIRED');
    });
    try {
      const reasons: string[] = [];
      const client = connect(`ws://127.0.0.1:${(wss.address() as { port: number }).port}/x`, {
        token: ({ reason }) => {
          reasons.push(reason);
          return `tok${reasons.length}`;
        },
        reconnect: EAGER,
      });
      await new Promise<void>((resolve) => {
        client.on('open', ({ attempt }) => {
          if (attempt === 2) resolve();
        });
      });
      client.close();
      assert.deepEqual(seen, ['Bearer tok1', 'Bearer tok2']);
      assert.deepEqual(reasons, ['connect', 'refresh']);
    } finally {
      wss.close();
    }
  });
});

describe('C-08 scheme downgrade', () => {
  it('C-08 ws:// to a host that is not loopback throws; production refuses ws:// everywhere', () => {
    assert.throws(() => connect('ws://gw.example/chat'), /ws:\/\/ is refused/);
    assert.throws(() => connect('ws://10.1.2.3/chat'), /ws:\/\/ is refused/);
    assert.throws(() => connect('ws://localhost:8080/chat', { production: true }), /production/);
    assert.throws(() => connect('http://gw.example/chat'), /wss/);
  });

  it('C-08 the browser build on an https page never opens ws://', () => {
    const g = globalThis as { location?: unknown };
    g.location = { protocol: 'https:' };
    try {
      const ws = (() => {
        throw new Error('must not construct');
      }) as unknown as BrowserWebSocketConstructor;
      assert.throws(() => browserConnect('ws://localhost:8080/x', { WebSocket: ws }), /production/);
      assert.throws(
        () => browserConnect('ws://gw.example/x', { WebSocket: ws, production: false }),
        /refused/,
      );
    } finally {
      delete g.location;
    }
  });
});

describe('C-09 reconnect behaviour and failure classification', () => {
  it('C-09 a TLS 1.3 client-certificate refusal ("connected, then EOF") is not retried until credentials change', async () => {
    const { certFiles } = await import('../helpers/gateway.js');
    const files = await certFiles();
    const gw = await startGateway({
      tls: {
        cert: files.cert,
        key: files.key,
        clientAuth: 'required',
        clientCa: files.ca,
        minVersion: 'TLSv1.3',
      },
      routes: [echoRoute()],
    });
    try {
      const client = connect(`wss://localhost:${gw.port}/echo`, {
        ca: gw.ca,
        origin: 'https://app.test',
        cert: pki.clientFromOtherCa.certPem,
        key: pki.clientFromOtherCa.keyPem,
        reconnect: EAGER,
      });
      const closes: CloseEvent[] = [];
      client.on('close', (e) => closes.push(e));
      await assert.rejects(client.ready(), (err: { code: string }) => err.code === 'CLIENT_CERT_REJECTED');
      await sleep(300);
      assert.equal(closes.length, 1, 'one attempt, no retry');
      assert.equal(gw.gateway.stats.tlsRejected, 1);
      client.setCredentials({ cert: pki.client.certPem, key: pki.client.keyPem });
      await client.ready();
      client.close();
    } finally {
      await gw.close();
    }
  });

  it('C-09 503 + Retry-After is honoured', async () => {
    const body = '{"code":"SERVER_BUSY","message":"Too many handshakes in progress"}';
    const fake = await fakeServer((req) => {
      if (fake.requests.length === 1) {
        req.socket.end(
          `HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
        );
      } else {
        req.socket.write(switching(req.key));
      }
    });
    try {
      const client = connect(`ws://127.0.0.1:${fake.port}/x`, {
        reconnect: { initialDelayMs: 100, maxDelayMs: 100 },
      });
      const errors: string[] = [];
      client.on('error', (e) => errors.push(e.code));
      await client.ready();
      client.close();
      const [first, second] = fake.requests as [Received, Received];
      const waited = second.at - first.at;
      assert.deepEqual(errors, ['SERVER_BUSY']);
      assert.ok(waited >= 1_000 && waited < 1_600, `waited ${waited} ms`);
    } finally {
      await fake.close();
    }
  });

  it('C-09 1013 (try again later) waits at least initialDelayMs', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise((resolve) => wss.once('listening', resolve));
    const at: number[] = [];
    wss.on('connection', (ws) => {
      at.push(Date.now());
      if (at.length === 1) ws.close(1013, '');
    });
    try {
      const client = connect(`ws://127.0.0.1:${(wss.address() as { port: number }).port}/x`, {
        reconnect: { initialDelayMs: 300, maxDelayMs: 300 },
        random: () => 0,
      });
      await new Promise<void>((resolve) => client.on('open', ({ attempt }) => attempt === 2 && resolve()));
      client.close();
      const waited = (at[1] as number) - (at[0] as number);
      assert.ok(waited >= 290 && waited < 800, `waited ${waited} ms`);
    } finally {
      wss.close();
    }
  });

  it('C-09 a server that kills every socket (ECONNRESET / 1006) gets backoff, not a tight loop', async () => {
    const fake = await fakeServer(
      () => {},
      undefined,
      (socket) => socket.resetAndDestroy(),
    );
    try {
      const client = connect(`ws://127.0.0.1:${fake.port}/x`, {
        reconnect: { initialDelayMs: 100, maxDelayMs: 800 },
      });
      const delays: number[] = [];
      client.on('reconnecting', ({ delayMs }) => delays.push(delayMs));
      await sleep(1_500);
      client.close();
      assert.ok(fake.connections >= 2, `retried: ${fake.connections}`);
      assert.ok(fake.connections <= 12, `not a tight loop: ${fake.connections} connections in 1.5 s`);
      assert.ok(delays.every((d) => d <= 800));
    } finally {
      await fake.close();
    }
  });

  it('C-09 a connection that opens and is dropped each time keeps backing off', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise((resolve) => wss.once('listening', resolve));
    let connections = 0;
    wss.on('connection', (ws) => {
      connections++;
      ws.terminate();
    });
    try {
      const client = connect(`ws://127.0.0.1:${(wss.address() as { port: number }).port}/x`, {
        reconnect: { initialDelayMs: 100, maxDelayMs: 800 },
      });
      const attempts: number[] = [];
      client.on('reconnecting', ({ attempt }) => attempts.push(attempt));
      await sleep(1_500);
      client.close();
      assert.ok(connections <= 12, `${connections} connections in 1.5 s`);
      assert.deepEqual(
        attempts,
        attempts.map((_, i) => i + 1),
        'the attempt count is not reset by a short-lived open',
      );
    } finally {
      wss.close();
    }
  });
});
