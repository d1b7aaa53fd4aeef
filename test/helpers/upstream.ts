// Upstreams for the gateway-mode tests, all on 127.0.0.1 port 0: a real Node `ws` app, the
// Python `websockets` example app (Debian's python3-websockets, run with /usr/bin/python3), and raw
// TCP stubs that record every byte they receive and answer whatever a test scripts (426 then a
// tunnel, a fake 101, RST, oversized frames, invalid close codes, silence).
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type WebSocket from 'ws';
import { WebSocketServer } from 'ws';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Sec-WebSocket-Accept for a key (RFC 6455 section 4.2.2). */
export function acceptFor(key: string): string {
  return createHash('sha1')
    .update(key + GUID)
    .digest('base64');
}

/** A Node `ws` upstream app that records each handshake. */
export interface WsUpstream {
  readonly url: string;
  readonly port: number;
  readonly server: WebSocketServer;
  /** The request of every accepted handshake, in order. */
  readonly requests: IncomingMessage[];
  /** Server-side sockets, in order. */
  readonly sockets: WebSocket[];
  /** The close code and reason each socket saw, once closed. */
  readonly closes: Map<WebSocket, [number, string]>;
  close(): Promise<void>;
}

/** Starts a ws app; `onConnection` decides what it does (default: echo). */
export async function startWsUpstream(
  options: {
    protocols?: string[];
    onConnection?: (ws: WebSocket, req: IncomingMessage) => void;
    maxPayload?: number;
  } = {},
): Promise<WsUpstream> {
  const requests: IncomingMessage[] = [];
  const sockets: WebSocket[] = [];
  const closes = new Map<WebSocket, [number, string]>();
  const server = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: false,
    maxPayload: options.maxPayload ?? 16 * 1024 * 1024,
    handleProtocols: (offered) => {
      const want = options.protocols ?? [];
      return want.find((p) => offered.has(p)) ?? false;
    },
  });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  server.on('connection', (ws, req) => {
    requests.push(req);
    sockets.push(ws);
    ws.on('error', () => undefined);
    ws.on('close', (code, reason) => closes.set(ws, [code, reason.toString()]));
    if (options.onConnection) options.onConnection(ws, req);
    else ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `ws://127.0.0.1:${port}`,
    port,
    server,
    requests,
    sockets,
    closes,
    close: () =>
      new Promise<void>((resolve) => {
        for (const ws of server.clients) ws.terminate();
        server.close(() => resolve());
      }),
  };
}

/** One connection to a raw stub: every byte it received, with helpers to script the answer. */
export interface StubConnection {
  readonly socket: net.Socket;
  /** Every byte received so far. */
  received: Buffer;
  /** Bytes received after the stub wrote its first answer byte (P-07). */
  afterAnswer: Buffer;
  answered: boolean;
  /** Resolves with the request head once it has arrived. */
  readonly head: Promise<{ head: string; headers: IncomingHttpHeaders; key: string }>;
  write(data: string | Buffer): void;
  closed: boolean;
}

/** A raw TCP upstream stub. */
export interface RawUpstream {
  readonly url: string;
  readonly port: number;
  readonly connections: StubConnection[];
  close(): Promise<void>;
}

/** Starts a raw stub; `handle` scripts each connection once its request head has arrived. */
export async function startRawUpstream(
  handle: (
    conn: StubConnection,
    request: { head: string; headers: IncomingHttpHeaders; key: string },
  ) => void,
): Promise<RawUpstream> {
  const connections: StubConnection[] = [];
  const server = net.createServer((socket) => {
    let resolveHead!: (v: { head: string; headers: IncomingHttpHeaders; key: string }) => void;
    const conn: StubConnection = {
      socket,
      received: Buffer.alloc(0),
      afterAnswer: Buffer.alloc(0),
      answered: false,
      closed: false,
      head: new Promise((resolve) => {
        resolveHead = resolve;
      }),
      write(data) {
        conn.answered = true;
        if (!socket.destroyed) socket.write(data);
      },
    };
    connections.push(conn);
    let headSeen = false;
    socket.on('data', (chunk: Buffer) => {
      conn.received = Buffer.concat([conn.received, chunk]);
      if (conn.answered) conn.afterAnswer = Buffer.concat([conn.afterAnswer, chunk]);
      if (headSeen) return;
      const end = conn.received.indexOf('\r\n\r\n');
      if (end === -1) return;
      headSeen = true;
      const head = conn.received.subarray(0, end).toString('latin1');
      const headers: IncomingHttpHeaders = {};
      for (const line of head.split('\r\n').slice(1)) {
        const i = line.indexOf(':');
        const name = line.slice(0, i).trim().toLowerCase();
        const value = line.slice(i + 1).trim();
        const prev = headers[name];
        headers[name] = prev === undefined ? value : `${prev}, ${value}`;
      }
      const request = { head, headers, key: String(headers['sec-websocket-key'] ?? '') };
      resolveHead(request);
      handle(conn, request);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      conn.closed = true;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `ws://127.0.0.1:${port}`,
    port,
    connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of connections) c.socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A valid 101 for a stub's request (optionally with a subprotocol or a wrong accept). */
export function switching(key: string, extra: string[] = [], accept = acceptFor(key)): string {
  return [
    'HTTP/1.1 101 Switching Protocols',
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Accept: ${accept}`,
    ...extra,
    '',
    '',
  ].join('\r\n');
}

/** A server frame (unmasked unless `mask`), with the minimal length encoding unless `length16`. */
export function frame(b0: number, payload: Buffer | string = Buffer.alloc(0), mask = false): Buffer {
  const data = Buffer.from(typeof payload === 'string' ? Buffer.from(payload) : payload);
  const len = data.length;
  const lenBytes =
    len < 126
      ? Buffer.from([len])
      : len < 65536
        ? Buffer.from([126, len >> 8, len & 0xff])
        : Buffer.concat([Buffer.from([127]), bigLength(len)]);
  if (!mask) return Buffer.concat([Buffer.from([b0]), lenBytes, data]);
  lenBytes[0] = (lenBytes[0] as number) | 0x80;
  const key = randomBytes(4);
  for (let i = 0; i < data.length; i++) data[i] = (data[i] as number) ^ (key[i % 4] as number);
  return Buffer.concat([Buffer.from([b0]), lenBytes, key, data]);
}

function bigLength(len: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(len));
  return b;
}

/** A frame parsed from what a stub received. */
export interface ClientFrame {
  readonly b0: number;
  readonly masked: boolean;
  /** The 4 mask bytes (empty when unmasked). */
  readonly mask: Buffer;
  /** The unmasked payload. */
  readonly payload: Buffer;
  /** Bytes used for the length (1, 3 or 9), to check minimal encoding (F-08). */
  readonly lengthBytes: number;
}

/** Parses the frames after the request head in `bytes` (incomplete trailing bytes are ignored). */
export function framesIn(bytes: Buffer): ClientFrame[] {
  const start = bytes.indexOf('\r\n\r\n');
  let b = start === -1 ? bytes : bytes.subarray(start + 4);
  const out: ClientFrame[] = [];
  for (;;) {
    if (b.length < 2) return out;
    const b0 = b[0] as number;
    const b1 = b[1] as number;
    let len = b1 & 0x7f;
    let offset = 2;
    if (len === 126) {
      if (b.length < 4) return out;
      len = b.readUInt16BE(2);
      offset = 4;
    } else if (len === 127) {
      if (b.length < 10) return out;
      len = Number(b.readBigUInt64BE(2));
      offset = 10;
    }
    const masked = (b1 & 0x80) !== 0;
    const mask = masked ? b.subarray(offset, offset + 4) : Buffer.alloc(0);
    if (masked) offset += 4;
    if (b.length < offset + len) return out;
    const payload = Buffer.from(b.subarray(offset, offset + len));
    if (masked)
      for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] as number) ^ (mask[i % 4] as number);
    out.push({
      b0,
      masked,
      mask: Buffer.from(mask),
      payload,
      lengthBytes: offset - 2 - (masked ? 4 : 0) + 1,
    });
    b = b.subarray(offset + len);
  }
}

/** A port that nothing listens on (bound, then closed). */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The Python example app (examples/upstream-python/app.py) under Debian's python3. */
export interface PythonUpstream {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Python with python3-websockets: Debian's interpreter, not whatever python3 is first on PATH. */
export const SYSTEM_PYTHON = '/usr/bin/python3';

/** Starts the Python echo app on port 0 and reads the port it prints. */
export function startPythonUpstream(): Promise<PythonUpstream> {
  const app = fileURLToPath(new URL('../../examples/upstream-python/app.py', import.meta.url));
  const child: ChildProcess = spawn(SYSTEM_PYTHON, [app, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`python app did not start: ${stderr}`));
    }, 10_000);
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const match = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
      if (!match) return;
      clearTimeout(timer);
      const port = Number(match[1]);
      resolve({
        url: `ws://127.0.0.1:${port}`,
        port,
        close: () =>
          new Promise<void>((done) => {
            if (child.exitCode !== null) return done();
            child.once('exit', () => done());
            child.kill('SIGTERM');
          }),
      });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`python app exited with ${code}: ${stderr}`));
    });
  });
}

/** Resolves when `ws` is open. */
export function opened(ws: WebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
}
