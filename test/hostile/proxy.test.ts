// Gateway-mode rows P-01..P-07 of ../shared/threats.md, plus R-08 and F-08 on the upstream leg:
// a real TLS gateway in front of raw TCP stubs that record every byte they receive and misbehave
// on cue (426 then a tunnel, a fake 101, RST, oversized and masked frames, invalid close codes,
// silence), and a Node ws app that floods. Clients are raw sockets writing exact bytes, or ws.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import type { ConfigInput } from '../../src/config/schema.js';
import { type ErrorCode, errorBody } from '../../src/protocol.js';
import { canary, closed, echoRoute, openClient, startGateway, type TestGateway } from '../helpers/gateway.js';
import { closePayload, F, HS, RawClient, upgraded } from '../helpers/raw.js';
import {
  acceptFor,
  closedPort,
  frame,
  framesIn,
  type RawUpstream,
  type StubConnection,
  startRawUpstream,
  startWsUpstream,
  switching,
  type WsUpstream,
} from '../helpers/upstream.js';
import { sleep, until } from '../helpers/wait.js';

type RouteInput = ConfigInput['routes'][number];
type Response = Awaited<ReturnType<RawClient['readResponse']>>;

const KiB = 1024;
const MiB = 1024 * KiB;
const CONNECT_TIMEOUT_MS = 400;
const STALL_MS = 500;

function assertRefused(res: Response, code: ErrorCode): void {
  assert.equal(res.status, errorStatus(code), `${code}: ${res.raw}`);
  assert.deepEqual(JSON.parse(res.body), errorBody(code));
  assert.equal(res.headers.connection, 'close');
}

function errorStatus(code: ErrorCode): number {
  return { BAD_GATEWAY: 502, UPSTREAM_UNAVAILABLE: 503, UPSTREAM_TIMEOUT: 504 }[code as string] ?? 0;
}

/** Sends a raw handshake (plus anything after it in the same write) and reads the answer. */
async function handshake(
  gw: TestGateway,
  path: string,
  overrides: Parameters<typeof HS>[0] = {},
  trailing: Buffer | string = '',
): Promise<{ client: RawClient; res: Response }> {
  const client = await RawClient.connect(gw.port, gw.ca);
  client.write(Buffer.concat([Buffer.from(HS(overrides, { path })), Buffer.from(trailing)]));
  return { client, res: await client.readResponse(CONNECT_TIMEOUT_MS + 2_000) };
}

// What the raw stub does for each request path; every connection's bytes are recorded.
const BEHAVIOUR: Record<string, (conn: StubConnection, key: string) => void> = {
  '/p01-426': (conn) => {
    conn.write(
      'HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nX-Internal-Host: db-7.corp\r\nContent-Length: 21\r\n\r\nSECRET upstream body!',
    );
    // A backend that then behaves as if a tunnel were open (websocket-smuggle scenario 1).
    setTimeout(() => conn.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nflag'), 20);
  },
  '/p01-500': (conn) => conn.write('HTTP/1.1 500 Internal Server Error\r\nContent-Length: 9\r\n\r\nstack at'),
  '/p02-accept': (conn, key) => {
    conn.write(switching(key, [], acceptFor(`${key}x`)));
    conn.write(frame(0x81, 'tunnelled'));
  },
  '/p02-no-accept': (conn) =>
    conn.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'),
  '/p02-connection': (conn, key) =>
    conn.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`,
    ),
  '/p02-upgrade': (conn, key) =>
    conn.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`,
    ),
  '/p02-subprotocol': (conn, key) => conn.write(switching(key, ['Sec-WebSocket-Protocol: evil.v1'])),
  '/p02-extension': (conn, key) =>
    conn.write(switching(key, ['Sec-WebSocket-Extensions: permessage-deflate'])),
  '/p04-rst': (conn, key) => {
    conn.write(switching(key));
    conn.socket.once('data', () => conn.socket.resetAndDestroy());
  },
  '/p04-1005': (conn, key) =>
    conn.write(Buffer.concat([Buffer.from(switching(key)), frame(0x88, closePayload(1005))])),
  '/p04-1006': (conn, key) =>
    conn.write(Buffer.concat([Buffer.from(switching(key)), frame(0x88, closePayload(1006))])),
  '/p04-1015': (conn, key) =>
    conn.write(Buffer.concat([Buffer.from(switching(key)), frame(0x88, closePayload(1015))])),
  '/p04-2999': (conn, key) =>
    conn.write(Buffer.concat([Buffer.from(switching(key)), frame(0x88, closePayload(2999))])),
  '/p04-long-reason': (conn, key) =>
    conn.write(
      Buffer.concat([Buffer.from(switching(key)), frame(0x88, closePayload(4000, 'r'.repeat(198)))]),
    ),
  '/p04-app-code': (conn, key) =>
    conn.write(
      Buffer.concat([
        Buffer.from(switching(key)),
        frame(0x88, closePayload(4000, 'db-7.corp.example:5432 refused')),
      ]),
    ),
  '/p04-silent': () => undefined,
  '/p05-masked': (conn, key) =>
    conn.write(Buffer.concat([Buffer.from(switching(key)), frame(0x81, 'masked', true)])),
  '/p05-length': (conn, key) =>
    conn.write(
      Buffer.concat([
        Buffer.from(switching(key)),
        Buffer.from([0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
      ]),
    ),
  '/p05-oversize': (conn, key) =>
    conn.write(Buffer.concat([Buffer.from(switching(key)), frame(0x82, Buffer.alloc(64 * KiB + 1))])),
  '/p05-rsv1': (conn, key) => conn.write(Buffer.concat([Buffer.from(switching(key)), frame(0xc1, 'x')])),
  '/record': (conn, key) => conn.write(switching(key)),
  '/deflate': (conn, key) => conn.write(switching(key)),
  '/p07-403': (conn) => conn.write('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n'),
  '/p07-slow': (conn, key) => {
    setTimeout(() => {
      (conn as StubConnection & { beforeAnswer?: number }).beforeAnswer = conn.received.length;
      conn.write(switching(key));
    }, 150);
  },
  '/f08': (conn, key) =>
    conn.write(
      Buffer.concat([
        Buffer.from(switching(key)),
        Buffer.from([0x81, 0x7e, 0x00, 0x05]),
        Buffer.from('hello'),
      ]),
    ),
  '/p06-paused': (conn, key) => {
    conn.write(switching(key));
    conn.socket.pause();
  },
};

function pathOf(conn: StubConnection): string {
  return conn.received.toString('latin1').split(' ', 2)[1] ?? '';
}

describe('gateway mode against misbehaving upstreams (P-01..P-07, R-08, F-08)', () => {
  let stub: RawUpstream;
  let flood: WsUpstream;
  let gw: TestGateway;
  let floodSent = 0;
  let floodBlocked = false;
  const conns = (path: string) => stub.connections.filter((c) => pathOf(c) === path);

  before(async () => {
    stub = await startRawUpstream((conn, request) => {
      const path = request.head.split(' ', 2)[1] ?? '';
      BEHAVIOUR[path.split('?')[0] as string]?.(conn, request.key);
    });
    // A fast publisher: sends 64 KiB messages as long as its own send buffer stays under 1 MiB.
    flood = await startWsUpstream({
      onConnection: (ws) => {
        const chunk = Buffer.alloc(64 * KiB, 1);
        const pump = () => {
          if (ws.readyState !== WebSocket.OPEN) return;
          while (ws.bufferedAmount < MiB && floodSent < 256 * MiB) {
            ws.send(chunk);
            floodSent += chunk.length;
          }
          floodBlocked = ws.bufferedAmount >= MiB;
          setTimeout(pump, 5);
        };
        pump();
      },
    });
    const dead = `ws://127.0.0.1:${await closedPort()}`;
    const route = (path: string, upstream: Record<string, unknown> = {}, extra: Partial<RouteInput> = {}) =>
      ({
        path,
        auth: 'none',
        origins: ['https://app.test'],
        upstream: {
          url: stub.url,
          connectTimeoutMs: CONNECT_TIMEOUT_MS,
          stallTimeoutMs: STALL_MS,
          ...upstream,
        },
        ...extra,
      }) as RouteInput;
    const fast = { messagesPerSecond: 100_000, messageBurst: 100_000, bytesPerSecond: 1e9, bytesBurst: 1e9 };
    gw = await startGateway({
      limits: { closeTimeoutMs: 1_000, perIp: { handshakesPerSecond: 10_000, handshakeBurst: 10_000 } },
      routes: [
        echoRoute(),
        ...Object.keys(BEHAVIOUR)
          .filter((p) => !['/p02-subprotocol', '/deflate', '/p06-paused'].includes(p))
          .map((p) => route(p)),
        route('/p02-subprotocol', {}, { subprotocols: ['chat.v1'] }),
        route('/deflate', {}, { perMessageDeflate: true }),
        route('/p06-paused', {}, { limits: fast }),
        route('/p06-flood', { url: flood.url }),
        route('/dead', { url: dead, ejectAfterFailures: 1, ejectForMs: 60_000 }),
      ],
    });
  });
  after(async () => {
    await gw.close();
    await stub.close();
    await flood.close();
  });

  it('P-01 a request with Sec-WebSocket-Version 1337 is answered 426 by the gateway; nothing reaches the upstream', async () => {
    const smuggled = 'GET /internal/flag HTTP/1.1\r\nHost: localhost\r\n\r\n';
    const { client, res } = await handshake(gw, '/p01-426', { 'Sec-WebSocket-Version': '1337' }, smuggled);
    assert.equal(res.status, 426);
    assert.deepEqual(JSON.parse(res.body), errorBody('UNSUPPORTED_VERSION'));
    await client.waitClosed();
    await sleep(50);
    assert.equal(conns('/p01-426').length, 0, 'the upstream never saw the request');
  });

  it('P-01 an upstream answering 426 then tunnelling gets 502: nothing of its answer is relayed, no tunnel, its connection closed', async () => {
    const { client, res } = await handshake(gw, '/p01-426');
    assertRefused(res, 'BAD_GATEWAY');
    assert.doesNotMatch(res.raw, /SECRET|X-Internal|db-7|426/i);
    client.write('GET /internal/flag HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await client.waitClosed();
    assert.equal(client.pending().length, 0, 'nothing after the refusal');
    const conn = await until(() => conns('/p01-426')[0], 'the upstream connection');
    await until(() => conn.closed, 'the upstream connection to be closed');
    assert.equal(conn.afterAnswer.length, 0, 'no byte reached the upstream after its answer');
    assert.doesNotMatch(conn.received.toString('latin1'), /internal\/flag/);
    const { res: res500 } = await handshake(gw, '/p01-500');
    assertRefused(res500, 'BAD_GATEWAY');
    assert.doesNotMatch(res500.raw, /stack/);
  });

  it('P-02 a fake 101 (wrong or missing Sec-WebSocket-Accept, wrong Upgrade, no Connection: upgrade, an extension not offered) is 502 and nothing is tunnelled', async () => {
    for (const path of [
      '/p02-accept',
      '/p02-no-accept',
      '/p02-connection',
      '/p02-upgrade',
      '/p02-extension',
    ]) {
      const { client, res } = await handshake(gw, path);
      assertRefused(res, 'BAD_GATEWAY');
      assert.doesNotMatch(res.raw, /tunnelled/, path);
      await client.waitClosed();
      const conn = await until(() => conns(path)[0], `${path} connection`);
      await until(() => conn.closed, `${path} upstream closed`);
    }
  });

  it('P-02 a subprotocol the gateway did not offer is 502; a POST with Upgrade never reaches the upstream', async () => {
    const { res } = await handshake(gw, '/p02-subprotocol', { 'Sec-WebSocket-Protocol': 'chat.v1' });
    assertRefused(res, 'BAD_GATEWAY');
    const offered = (await (conns('/p02-subprotocol')[0] as StubConnection).head).headers[
      'sec-websocket-protocol'
    ];
    assert.equal(offered, 'chat.v1');
    const client = await RawClient.connect(gw.port, gw.ca);
    client.write(HS({}, { method: 'POST', path: '/record' }));
    assert.equal((await client.readResponse()).status, 405);
    await sleep(50);
    assert.equal(conns('/record').length, 0);
  });

  it('P-03 forged forwarding and identity headers are stripped, Connection nominations cannot remove what the gateway adds', async () => {
    const app = await startWsUpstream();
    const gw2 = await startGateway({
      routes: [
        {
          path: '/h',
          auth: 'none',
          origins: ['https://app.test'],
          upstream: { url: app.url, passHeaders: ['x-request-id', 'x-authenticated-user', 'cookie'] },
        } as RouteInput,
      ],
    });
    try {
      const { client, res } = await handshake(gw2, '/h', {
        Connection: 'Upgrade, close, X-Forwarded-For, X-Authenticated-User, Cookie',
        'X-Forwarded-For': '6.6.6.6',
        'X-Forwarded-Proto': 'http',
        'X-Forwarded-Host': 'evil.test',
        Forwarded: 'for=6.6.6.6;proto=http',
        'X-Real-IP': '6.6.6.6',
        'X-Client-Cert': 'forged',
        'X-User-Id': 'admin',
        'X-Authenticated-User': 'admin',
        'X-Portcullis-Identity': 'forged.jwt.value',
        'X-Portcullis-Subject': 'admin',
        X_Portcullis_Subject: 'admin',
        'X-Request-Id': 'req-1',
        Cookie: 'session=1',
      });
      assert.equal(res.status, 101);
      const headers = (await until(() => app.requests[0], 'the upstream request')).headers;
      assert.equal(headers['x-forwarded-for'], '127.0.0.1');
      assert.equal(headers['x-forwarded-proto'], 'https');
      assert.equal(headers['x-forwarded-host'], 'localhost');
      assert.equal(headers['x-request-id'], 'req-1', 'the allowlist passes');
      for (const name of [
        'forwarded',
        'x-real-ip',
        'x-client-cert',
        'x-user-id',
        'x-authenticated-user',
        'cookie',
        'x-portcullis-identity',
        'x-portcullis-subject',
        'x_portcullis_subject',
      ]) {
        assert.equal(headers[name], undefined, name);
      }
      client.destroy();
    } finally {
      await gw2.close();
      await app.close();
    }
  });

  it('P-04 an upstream reset mid-stream closes the client with 1014; the gateway stays up', async () => {
    const ws = await openClient(gw, '/p04-rst');
    const got = closed(ws);
    ws.send('trigger');
    assert.deepEqual(await got, { code: 1014, reason: 'BAD_GATEWAY' });
    await canary(gw);
  });

  it('P-04 1005, 1006, 1015, invalid codes and a 200-byte reason from the upstream never reach the client', async () => {
    for (const path of ['/p04-1005', '/p04-1006', '/p04-1015', '/p04-2999', '/p04-long-reason']) {
      const client = await upgraded(gw.port, gw.ca, path);
      const { code, reason } = await client.readClose();
      assert.deepEqual([code, reason], [1014, 'BAD_GATEWAY'], path);
      client.destroy();
      // The gateway answered the upstream's violation with a protocol error close.
      const conn = await until(() => conns(path)[0], path);
      await until(() => conn.closed, `${path} upstream closed`);
      const closes = framesIn(conn.received).filter((f) => f.b0 === 0x88);
      assert.equal(closes[0]?.payload.readUInt16BE(0), 1002, path);
    }
  });

  it('P-04 an application close code passes, its reason (hostnames, ports) does not (M-06)', async () => {
    const client = await upgraded(gw.port, gw.ca, '/p04-app-code');
    assert.deepEqual(await client.readClose(), { code: 4000, reason: '', before: [] });
    client.destroy();
  });

  it('P-04 before the 101: 504 for an upstream that never answers, 502 for a closed port, then 503 once ejected', async () => {
    const started = Date.now();
    const { res } = await handshake(gw, '/p04-silent');
    assertRefused(res, 'UPSTREAM_TIMEOUT');
    assert.ok(Date.now() - started < CONNECT_TIMEOUT_MS + 1_000, 'within the connect timeout');
    await until(() => conns('/p04-silent')[0]?.closed, 'the silent upstream connection to be closed');
    assertRefused((await handshake(gw, '/dead')).res, 'BAD_GATEWAY');
    assertRefused((await handshake(gw, '/dead')).res, 'UPSTREAM_UNAVAILABLE');
    await canary(gw);
  });

  it('P-05 frames to the upstream are masked with distinct fresh keys; deflate on the client leg is not passed on', async () => {
    const ws = await openClient(gw, '/record');
    for (let i = 0; i < 20; i++) ws.send(`message ${i}`);
    ws.send(Buffer.from([1, 2, 3]));
    const conn = await until(() => conns('/record')[0], 'the upstream connection');
    const frames = await until(() => {
      const f = framesIn(conn.received);
      return f.length >= 21 ? f : undefined;
    }, '21 frames');
    assert.ok(frames.every((f) => f.masked));
    assert.equal(
      new Set(frames.map((f) => f.mask.toString('hex'))).size,
      frames.length,
      'a fresh key per frame',
    );
    assert.deepEqual(
      frames.slice(0, 20).map((f) => f.payload.toString()),
      Array.from({ length: 20 }, (_, i) => `message ${i}`),
    );
    assert.equal(frames[20]?.b0, 0x82);
    ws.terminate();

    const deflated = await openClient(gw, '/deflate', { perMessageDeflate: { threshold: 0 } });
    assert.match(deflated.extensions, /permessage-deflate/);
    deflated.send('a'.repeat(2_000));
    const up = await until(() => conns('/deflate')[0], 'the upstream connection');
    const [f] = await until(() => {
      const all = framesIn(up.received);
      return all.length > 0 ? all : undefined;
    }, 'the relayed frame');
    assert.equal(f?.b0, 0x81, 'RSV1 clear: re-encoded for a leg without the extension');
    assert.equal(f?.payload.toString(), 'a'.repeat(2_000));
    deflated.terminate();
  });

  it('P-05 F-08 every size is relayed masked with a fresh key, minimally encoded and intact, across each length and copy boundary', async () => {
    const ws = await openClient(gw, '/record');
    const sizes = [0, 1, 125, 126, 3_999, 4_000, 4_001, 65_535, 65_536];
    const sent = sizes.map((n, i) => {
      const payload = Buffer.alloc(n);
      for (let j = 0; j < n; j++) payload[j] = (j * 31 + i) & 0xff;
      return payload;
    });
    // Text and binary alternate; text payloads stay ASCII so they pass UTF-8 validation.
    sent.forEach((payload, i) => {
      if (i % 2 === 0) ws.send(payload, { binary: true });
      else ws.send(payload.toString('latin1').replace(/[^\x20-\x7e]/g, 'a'));
    });
    const conn = await until(() => conns('/record').at(-1), 'the upstream connection');
    const frames = await until(() => {
      const f = framesIn(conn.received);
      return f.length >= sizes.length ? f : undefined;
    }, 'every frame');
    assert.equal(frames.length, sizes.length);
    frames.forEach((f, i) => {
      const n = sizes[i] as number;
      assert.equal(f.b0, i % 2 === 0 ? 0x82 : 0x81, `opcode of ${n}`);
      assert.equal(f.masked, true, `masked ${n}`);
      assert.equal(f.lengthBytes, n < 126 ? 1 : n < 65_536 ? 3 : 9, `minimal length of ${n}`);
      const expected =
        i % 2 === 0
          ? (sent[i] as Buffer)
          : Buffer.from((sent[i] as Buffer).toString('latin1').replace(/[^\x20-\x7e]/g, 'a'), 'latin1');
      assert.ok(f.payload.equals(expected), `payload of ${n}`);
    });
    assert.equal(
      new Set(frames.map((f) => f.mask.toString('hex'))).size,
      frames.length,
      'a fresh key per frame',
    );
    ws.terminate();
  });

  it('P-05 masked, oversized, 2^63-length and RSV1 frames from the upstream: 1002/1009 to it, 1014 to the client', async () => {
    const expected: Record<string, number> = {
      '/p05-masked': 1002,
      '/p05-length': 1009,
      '/p05-oversize': 1009,
      '/p05-rsv1': 1002,
    };
    for (const [path, toUpstream] of Object.entries(expected)) {
      const client = await upgraded(gw.port, gw.ca, path);
      const { code, before } = await client.readClose();
      assert.equal(code, 1014, path);
      assert.equal(before.length, 0, `${path}: nothing relayed`);
      client.destroy();
      const conn = await until(() => conns(path)[0], path);
      const close = await until(() => framesIn(conn.received).find((f) => f.b0 === 0x88), `${path} close`);
      assert.equal(close.payload.readUInt16BE(0), toUpstream, path);
    }
    await canary(gw);
  });

  it('P-06 a slow client pauses the upstream read; a stall closes the client 1013 and the upstream 1001', async () => {
    const client = await upgraded(gw.port, gw.ca, '/p06-flood');
    client.socket.pause();
    const upstream = await until(() => flood.sockets[0], 'the flooding app');
    const upstreamClosed = new Promise<[number, string]>((resolve) =>
      upstream.once('close', (code, reason) => resolve([code, reason.toString()])),
    );
    await until(() => floodBlocked, 'backpressure to reach the app', 3_000);
    const sentWhenBlocked = floodSent;
    assert.deepEqual(await upstreamClosed, [1001, 'SLOW_CONSUMER']);
    assert.ok(
      sentWhenBlocked < 64 * MiB,
      `the app got only ${sentWhenBlocked} bytes out before it was paused`,
    );
    const event = await until(
      () => gw.logs.find((l) => l.event === 'close' && l.route === '/p06-flood'),
      'the close audit',
    );
    assert.equal(event.code, 'SLOW_CONSUMER');
    client.destroy();
  });

  it('P-06 a slow upstream pauses the client; a stall closes the client 1013 and the upstream 1001', async () => {
    const ws = await openClient(gw, '/p06-paused');
    const got = closed(ws);
    const chunk = Buffer.alloc(64 * KiB, 2);
    let sent = 0;
    let blocked = false;
    while (!blocked && sent < 64 * MiB) {
      while (ws.bufferedAmount < MiB && sent < 64 * MiB) {
        ws.send(chunk);
        sent += chunk.length;
      }
      await sleep(10);
      blocked = ws.bufferedAmount >= MiB;
    }
    assert.ok(blocked, 'the client felt the backpressure');
    assert.ok(sent < 64 * MiB);
    const { code, reason } = await got;
    assert.deepEqual([code, reason], [1013, 'UPSTREAM_UNAVAILABLE']);
    const conn = await until(() => conns('/p06-paused')[0], 'the upstream connection');
    conn.socket.resume();
    const close = await until(
      () => framesIn(conn.received).find((f) => f.b0 === 0x88),
      'the upstream close',
      5_000,
    );
    assert.equal(close.payload.readUInt16BE(0), 1001);
    assert.equal(close.payload.subarray(2).toString(), 'UPSTREAM_UNAVAILABLE');
  });

  it('P-07 early client frames never reach an upstream that refuses; its connection is closed, not reused', async () => {
    const frames = Buffer.concat([F(0x81, 'early-1'), F(0x81, 'early-2')]);
    const { client, res } = await handshake(gw, '/p07-403', {}, frames);
    assertRefused(res, 'BAD_GATEWAY');
    client.destroy();
    const conn = await until(() => conns('/p07-403')[0], 'the upstream connection');
    await until(() => conn.closed, 'the upstream connection to be closed');
    const head = (await conn.head).head;
    assert.equal(conn.received.length, Buffer.byteLength(head) + 4, 'only the request head, no frame byte');
    assert.equal(conn.afterAnswer.length, 0);
  });

  it('P-07 frames written with the handshake reach the upstream only after its 101, in order', async () => {
    const frames = Buffer.concat([F(0x81, 'one'), F(0x81, 'two'), F(0x82, Buffer.from([3]))]);
    const { client, res } = await handshake(gw, '/p07-slow', {}, frames);
    assert.equal(res.status, 101);
    const conn = (await until(() => conns('/p07-slow')[0], 'upstream')) as StubConnection & {
      beforeAnswer?: number;
    };
    const received = await until(() => {
      const f = framesIn(conn.received);
      return f.length >= 3 ? f : undefined;
    }, 'three frames');
    assert.equal(conn.beforeAnswer, Buffer.byteLength((await conn.head).head) + 4, 'nothing before the 101');
    assert.deepEqual(
      received.map((f) => f.payload.toString('latin1')),
      ['one', 'two', '\u0003'],
    );
    client.destroy();
  });

  it('F-08 a non-minimal length is accepted and re-framed minimally, in both directions', async () => {
    const client = await upgraded(gw.port, gw.ca, '/record');
    // 81 FE 00 05 <mask> "hello": a 16-bit length for 5 bytes.
    const minimalFrame = F(0x81, 'hello');
    const mask = minimalFrame.subarray(2, 6);
    client.write(Buffer.concat([Buffer.from([0x81, 0xfe, 0x00, 0x05]), mask, minimalFrame.subarray(6)]));
    const conn = await until(() => conns('/record').at(-1), 'upstream');
    const [f] = await until(() => {
      const all = framesIn(conn.received);
      return all.length > 0 ? all : undefined;
    }, 'the relayed frame');
    assert.equal(f?.lengthBytes, 1, 'minimal length toward the upstream');
    assert.equal(f?.payload.toString(), 'hello');
    client.destroy();

    const down = await upgraded(gw.port, gw.ca, '/f08');
    await until(() => (down.pending().length >= 7 ? true : undefined), 'the relayed frame');
    assert.deepEqual([...down.pending().subarray(0, 2)], [0x81, 0x05], 'minimal length toward the client');
    assert.equal(down.pending().subarray(2, 7).toString(), 'hello');
    down.destroy();
  });

  it('R-08 a paused client behind a publishing upstream is closed 1013 within the stall timeout; its queue stays capped', async () => {
    const marker = gw.logs.length;
    floodSent = 0;
    floodBlocked = false;
    const client = await upgraded(gw.port, gw.ca, '/p06-flood');
    client.socket.pause();
    const started = Date.now();
    const event = await until(
      () => gw.logs.slice(marker).find((l) => l.event === 'close' && l.route === '/p06-flood'),
      'the close',
      STALL_MS + 4_000,
    );
    assert.equal(event.code, 'SLOW_CONSUMER');
    assert.equal(event.closeCode, 1013);
    assert.ok(Date.now() - started < STALL_MS + 3_000);
    // The gateway never held more than the send-queue cap for this client: what it sent is
    // what the client could take, not the 256 MiB the app wanted to publish.
    assert.ok(Number(event.bytesOut) < 64 * MiB, `bytesOut ${event.bytesOut}`);
    client.destroy();
  });
});
