// One generator connection: TLS to the server, the upgrade, the dialect's setup steps, then a
// streaming frame reader that never copies a payload (it only reads headers and the first two
// payload bytes) and reports whole messages to a sink.
import tls from 'node:tls';
import { type SetupStep, SOCKETIO_PONG, type Target, upgradeRequest, WS_PONG } from './frames.js';

/** What a scenario does with a ready connection's traffic. */
export interface Sink {
  /** A whole data message (opcode 1 or 2) arrived. */
  message(conn: Conn, opcode: number): void;
  /** Raw dialect: `n` more bytes arrived. */
  bytes(conn: Conn, n: number): void;
  /** After each chunk, when the scenario may write. */
  flush(conn: Conn): void;
}

const NO_SINK: Sink = { message() {}, bytes() {}, flush() {} };

/** Connection options: TLS without verification (the generator's CPU is for load, not trust). */
function tlsOptions(target: Target): tls.ConnectionOptions {
  return { host: target.host, port: target.port, servername: 'localhost', rejectUnauthorized: false };
}

const HEAD_END = Buffer.from('\r\n\r\n');

/** A generator connection; `open()` resolves once it is ready for the scenario. */
export class Conn {
  readonly socket: tls.TLSSocket;
  sink: Sink = NO_SINK;
  /** Scenario bookkeeping: answers owed, bytes seen, and a FIFO of send times. */
  owed = 0;
  rxBytes = 0;
  sendTimes: number[] = [];
  closed = false;
  private phase: 'tls' | 'http' | 'setup' | 'ready' = 'tls';
  private head: Buffer | null = null;
  private steps: SetupStep[] = [];
  private awaiting = 0;
  private readyCb: ((err?: Error) => void) | null = null;
  // Frame reader state.
  private readonly hdr = Buffer.alloc(14);
  private hlen = 0;
  private need = 2;
  private skip = 0;
  private opcode = 0;
  private fin = false;
  private first = -1;
  private captured = 0;
  private messageOpcode = 0;
  private payloadLength = 0;

  private constructor(
    readonly target: Target,
    private readonly raw: boolean,
  ) {
    this.socket = tls.connect(tlsOptions(target));
    this.socket.setNoDelay(true);
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err) => this.fail(err));
    this.socket.on('close', () => {
      this.closed = true;
      this.fail(new Error('closed'));
    });
    this.socket.once('secureConnect', () => {
      if (this.raw) {
        this.phase = 'ready';
        this.done();
      } else {
        this.phase = 'http';
        this.socket.write(upgradeRequest(target));
      }
    });
  }

  /** Connects, upgrades and runs `steps`; rejects after `timeoutMs`. */
  static open(target: Target, steps: SetupStep[], timeoutMs = 15_000): Promise<Conn> {
    const conn = new Conn(target, target.dialect === 'raw');
    conn.steps = [...steps];
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => conn.fail(new Error('timed out opening')), timeoutMs);
      conn.readyCb = (err) => {
        clearTimeout(timer);
        if (err) {
          conn.socket.destroy();
          reject(err);
        } else resolve(conn);
      };
    });
  }

  /** Writes bytes (skipped once the socket is gone). */
  write(bytes: Buffer): void {
    if (!this.closed && bytes.length > 0) this.socket.write(bytes);
  }

  destroy(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private done(err?: Error): void {
    const cb = this.readyCb;
    this.readyCb = null;
    cb?.(err);
  }

  private fail(err: Error): void {
    if (this.readyCb) this.done(err);
  }

  private onData(chunk: Buffer): void {
    if (this.phase === 'ready' && this.raw) {
      this.sink.bytes(this, chunk.length);
      this.sink.flush(this);
      return;
    }
    if (this.phase === 'http') {
      const head = this.head ? Buffer.concat([this.head, chunk]) : chunk;
      const end = head.indexOf(HEAD_END);
      if (end === -1) {
        this.head = head;
        return;
      }
      this.head = null;
      const status = head.subarray(9, 12).toString('latin1');
      if (status !== '101') {
        this.fail(new Error(`status ${status}`));
        this.socket.destroy();
        return;
      }
      this.phase = 'setup';
      this.nextStep();
      chunk = head.subarray(end + 4);
    }
    this.read(chunk);
    if (this.phase === 'ready') this.sink.flush(this);
  }

  private nextStep(): void {
    while (this.awaiting === 0) {
      const step = this.steps.shift();
      if (!step) {
        this.phase = 'ready';
        this.done();
        return;
      }
      if (step.send) this.socket.write(step.send);
      this.awaiting = step.expect;
    }
  }

  private read(buf: Buffer): void {
    const n = buf.length;
    let i = 0;
    while (i < n) {
      if (this.skip > 0) {
        const take = Math.min(this.skip, n - i);
        if (this.captured === 0) {
          this.first = buf[i] as number;
          this.captured = 1;
        }
        this.skip -= take;
        i += take;
        if (this.skip === 0) this.frameDone();
        continue;
      }
      const hdr = this.hdr;
      hdr[this.hlen++] = buf[i++] as number;
      if (this.hlen === 2) {
        const len7 = (hdr[1] as number) & 0x7f;
        this.need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + ((hdr[1] as number) & 0x80 ? 4 : 0);
      }
      if (this.hlen >= 2 && this.hlen === this.need) {
        const len7 = (hdr[1] as number) & 0x7f;
        const len = len7 === 126 ? hdr.readUInt16BE(2) : len7 === 127 ? Number(hdr.readBigUInt64BE(2)) : len7;
        this.fin = ((hdr[0] as number) & 0x80) !== 0;
        this.opcode = (hdr[0] as number) & 0x0f;
        this.hlen = 0;
        this.need = 2;
        this.payloadLength = len;
        this.captured = 0;
        this.first = -1;
        if (len === 0) this.frameDone();
        else this.skip = len;
      }
    }
  }

  private frameDone(): void {
    const opcode = this.opcode;
    if (opcode >= 8) {
      if (opcode === 9) this.write(WS_PONG);
      else if (opcode === 8) this.closed = true;
      return;
    }
    if (opcode !== 0) this.messageOpcode = opcode;
    if (!this.fin) return;
    // engine.io ping `2` (one byte): answer `3`, as a socket.io client does; it is no answer.
    if (
      this.target.dialect === 'socketio' &&
      this.messageOpcode === 1 &&
      this.payloadLength === 1 &&
      this.first === 0x32
    ) {
      this.write(SOCKETIO_PONG);
      return;
    }
    if (this.phase === 'setup') {
      this.awaiting--;
      this.nextStep();
      return;
    }
    this.sink.message(this, this.messageOpcode);
  }
}

/** Opens `count` connections, `concurrency` at a time; failures are counted, not thrown. */
export async function openMany(
  target: Target,
  steps: SetupStep[],
  count: number,
  concurrency: number,
  deadline: number,
): Promise<{ conns: Conn[]; failed: number; firstError: string | undefined }> {
  const conns: Conn[] = [];
  let failed = 0;
  let firstError: string | undefined;
  let next = 0;
  const worker = async () => {
    while (next < count && Date.now() < deadline) {
      next++;
      try {
        conns.push(await Conn.open(target, steps));
      } catch (err) {
        failed++;
        firstError ??= (err as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { conns, failed, firstError };
}
