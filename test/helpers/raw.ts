// Raw sockets writing exact bytes: the `HS{…}` handshake and `F(b0, payload)` frames of
// ../shared/threats.md, and a reader that parses what the server answers.
import { randomBytes } from 'node:crypto';
import tls from 'node:tls';

/** The harness handshake with header overrides; `null` removes a header, arrays repeat it. */
export function HS(
  overrides: Record<string, string | string[] | null> = {},
  options: { method?: string; path?: string; version?: string; host?: string } = {},
): string {
  const headers: Record<string, string | string[] | null> = {
    Host: options.host ?? 'localhost',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version': '13',
    Origin: 'https://app.test',
  };
  for (const [k, v] of Object.entries(overrides)) {
    const existing = Object.keys(headers).find((h) => h.toLowerCase() === k.toLowerCase());
    if (existing) delete headers[existing];
    headers[k] = v;
  }
  let out = `${options.method ?? 'GET'} ${options.path ?? '/echo'} HTTP/${options.version ?? '1.1'}\r\n`;
  for (const [k, v] of Object.entries(headers)) {
    if (v === null) continue;
    for (const value of Array.isArray(v) ? v : [v]) out += `${k}: ${value}\r\n`;
  }
  return `${out}\r\n`;
}

/** A client frame: first byte b0, masked with a fresh CSPRNG key (U() when mask is false). */
export function F(b0: number, payload: Buffer | string = Buffer.alloc(0), mask = true): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const len = data.length;
  const lenBytes =
    len < 126 ? Buffer.from([len]) : len < 65536 ? Buffer.from([126, len >> 8, len & 0xff]) : lengthOf64(len);
  if (mask) lenBytes[0] = (lenBytes[0] as number) | 0x80;
  const key = mask ? randomBytes(4) : Buffer.alloc(0);
  const body = Buffer.from(data);
  if (mask) for (let i = 0; i < body.length; i++) body[i] = (body[i] as number) ^ (key[i % 4] as number);
  return Buffer.concat([Buffer.from([b0]), lenBytes, key, body]);
}

function lengthOf64(len: number): Buffer {
  const b = Buffer.alloc(9);
  b[0] = 127;
  b.writeBigUInt64BE(BigInt(len), 1);
  return b;
}

/** An unmasked frame (U() in threats.md). */
export function U(b0: number, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  return F(b0, payload, false);
}

/** A close frame payload: u16 code + reason. */
export function closePayload(code: number, reason: Buffer | string = ''): Buffer {
  const r = typeof reason === 'string' ? Buffer.from(reason) : reason;
  const b = Buffer.alloc(2 + r.length);
  b.writeUInt16BE(code, 0);
  r.copy(b, 2);
  return b;
}

/** A server frame as parsed from the wire. */
export interface ServerFrame {
  fin: boolean;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

/** A raw TLS connection that records every byte the server sends. */
export class RawClient {
  readonly socket: tls.TLSSocket;
  private buffer = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  ended = false;
  closed = false;

  private constructor(socket: tls.TLSSocket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, d]);
      this.wake();
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  /** Connects with TLS (trusting `ca`) to 127.0.0.1:port. */
  static connect(port: number, ca: string, options: tls.ConnectionOptions = {}): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ...options });
      socket.once('secureConnect', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private async waitFor<T>(take: () => T | undefined, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = take();
      if (value !== undefined) return value;
      if (this.closed || this.ended) {
        const last = take();
        if (last !== undefined) return last;
        throw new Error('connection closed before the expected data');
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for data');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Reads one HTTP response head (and its Content-Length body). */
  readResponse(
    timeoutMs = 3_000,
  ): Promise<{ status: number; headers: Record<string, string>; body: string; raw: string }> {
    return this.waitFor(() => {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end === -1) return undefined;
      const head = this.buffer.subarray(0, end).toString('latin1');
      const [statusLine, ...lines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const i = line.indexOf(':');
        headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
      const length = Number(headers['content-length'] ?? 0);
      if (this.buffer.length < end + 4 + length) return undefined;
      const body = this.buffer.subarray(end + 4, end + 4 + length).toString();
      const raw = this.buffer.subarray(0, end + 4 + length).toString('latin1');
      this.buffer = this.buffer.subarray(end + 4 + length);
      return { status: Number(statusLine?.split(' ')[1]), headers, body, raw };
    }, timeoutMs);
  }

  /** Reads one server frame. */
  readFrame(timeoutMs = 3_000): Promise<ServerFrame> {
    return this.waitFor(() => {
      const b = this.buffer;
      if (b.length < 2) return undefined;
      const b0 = b[0] as number;
      const b1 = b[1] as number;
      let len = b1 & 0x7f;
      let offset = 2;
      if (len === 126) {
        if (b.length < 4) return undefined;
        len = b.readUInt16BE(2);
        offset = 4;
      } else if (len === 127) {
        if (b.length < 10) return undefined;
        len = Number(b.readBigUInt64BE(2));
        offset = 10;
      }
      const masked = (b1 & 0x80) !== 0;
      if (masked) offset += 4;
      if (b.length < offset + len) return undefined;
      const payload = Buffer.from(b.subarray(offset, offset + len));
      this.buffer = b.subarray(offset + len);
      return { fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, masked, payload };
    }, timeoutMs);
  }

  /** Reads frames until a close frame; returns its code (or 1005 when it has none). */
  async readClose(timeoutMs = 3_000): Promise<{ code: number; reason: string; before: ServerFrame[] }> {
    const before: ServerFrame[] = [];
    for (;;) {
      const frame = await this.readFrame(timeoutMs);
      if (frame.opcode === 8) {
        const code = frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1005;
        return { code, reason: frame.payload.subarray(2).toString(), before };
      }
      before.push(frame);
    }
  }

  /** Resolves when the server has closed the TCP connection. */
  waitClosed(timeoutMs = 3_000): Promise<void> {
    return this.waitFor(() => (this.closed || this.ended ? true : undefined), timeoutMs).then(
      () => undefined,
    );
  }

  /** Bytes received and not yet read. */
  pending(): Buffer {
    return this.buffer;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Opens a raw connection and completes a valid handshake; returns the client ready for frames. */
export async function upgraded(port: number, ca: string, path = '/echo'): Promise<RawClient> {
  const client = await RawClient.connect(port, ca);
  client.write(HS({}, { path }));
  const res = await client.readResponse();
  if (res.status !== 101) throw new Error(`expected 101, got ${res.status}: ${res.body}`);
  return client;
}
