// The bytes the load generator writes, built once before a measurement: masked client frames
// (RFC 6455 section 5.2, as test/helpers/raw.ts builds them), the upgrade request of each dialect,
// and each scenario's request for each dialect.

/** How a server is spoken to: plain WebSocket, socket.io over a WebSocket, or raw TLS bytes. */
export type Dialect = 'ws' | 'socketio' | 'raw';

/** Where and how the generator connects. */
export interface Target {
  readonly host: string;
  readonly port: number;
  readonly dialect: Dialect;
  /** Request path of the upgrade (ignored for raw). */
  readonly path: string;
  /** Extra request headers: Origin, Authorization, Sec-WebSocket-Protocol. */
  readonly headers: Readonly<Record<string, string>>;
}

// One fixed non-zero key: the server unmasks every byte either way, and building frames once keeps
// the generator cheap. A real client draws a fresh key per frame; the server's cost is the same.
const MASK = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

/** A masked client frame with FIN set. */
export function clientFrame(opcode: number, payload: Buffer | string): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const len = data.length;
  const head =
    len < 126
      ? Buffer.from([0x80 | opcode, 0x80 | len])
      : len < 65_536
        ? Buffer.from([0x80 | opcode, 0x80 | 126, len >> 8, len & 0xff])
        : Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | 127]), u64(len)]);
  const body = Buffer.alloc(len);
  for (let i = 0; i < len; i++) body[i] = (data[i] as number) ^ (MASK[i & 3] as number);
  return Buffer.concat([head, MASK, body]);
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

/** A text payload of exactly `size` ASCII bytes. */
export function textPayload(size: number): string {
  return 'x'.repeat(size);
}

/** The HTTP upgrade request (the socket.io dialect adds its engine.io query). */
export function upgradeRequest(target: Target): Buffer {
  const path =
    target.dialect === 'socketio' ? `${target.path}?EIO=4&transport=websocket` : target.path || '/';
  let head =
    `GET ${path} HTTP/1.1\r\nHost: localhost:${target.port}\r\nUpgrade: websocket\r\n` +
    'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';
  for (const [name, value] of Object.entries(target.headers)) head += `${name}: ${value}\r\n`;
  return Buffer.from(`${head}\r\n`);
}

/** One step after the 101: bytes to send (optional), then how many data messages to wait for. */
export interface SetupStep {
  readonly send?: Buffer;
  readonly expect: number;
}

/** What must happen after the 101 before a connection is ready (socket.io's namespace connect). */
export function setupSteps(dialect: Dialect): SetupStep[] {
  // engine.io sends its open packet `0{...}`; the client joins the default namespace with `40`.
  return dialect === 'socketio' ? [{ expect: 1 }, { send: clientFrame(1, '40'), expect: 1 }] : [];
}

/** The socket.io dialect's pong (engine.io packet type 3), answering a server ping `2`. */
export const SOCKETIO_PONG = clientFrame(1, '3');
/** An empty masked pong, answering a WebSocket ping. */
export const WS_PONG = clientFrame(10, '');

/** An echo request of `size` bytes in each dialect, and which server frames count as its answer. */
export interface EchoRequest {
  readonly bytes: Buffer;
  /** Opcode whose messages count as answers (1 text, 2 binary); for raw, the echoed byte count. */
  readonly answerOpcode: number;
  readonly answerBytes: number;
}

/** The echo request: text of `size` bytes, or binary. */
export function echoRequest(dialect: Dialect, size: number, binary: boolean): EchoRequest {
  if (dialect === 'socketio') {
    if (!binary) {
      return {
        bytes: clientFrame(1, `42["e","${textPayload(size)}"]`),
        answerOpcode: 1,
        answerBytes: 0,
      };
    }
    // A binary event is a placeholder packet followed by the attachment in its own frame.
    const bytes = Buffer.concat([
      clientFrame(1, '451-["e",{"_placeholder":true,"num":0}]'),
      clientFrame(2, Buffer.alloc(size, 0xa5)),
    ]);
    return { bytes, answerOpcode: 2, answerBytes: 0 };
  }
  const bytes = binary ? clientFrame(2, Buffer.alloc(size, 0xa5)) : clientFrame(1, textPayload(size));
  return { bytes, answerOpcode: binary ? 2 : 1, answerBytes: bytes.length };
}

/** How subscribers join and what one publication is, per kind of fan-out server. */
export interface FanoutPlan {
  readonly subscriberSteps: SetupStep[];
  readonly publisherSteps: SetupStep[];
  readonly publication: Buffer;
  /** Raw dialect: bytes each subscriber receives per publication. */
  readonly deliveryBytes: number;
}

/** `broker`: the Portcullis portcullis.v1 broker; `broadcast`: the server relays every message. */
export type FanoutKind = 'broker' | 'broadcast';

/** The channel the broker scenario subscribes to and publishes on. */
export const BENCH_CHANNEL = 'bench';

/** The fan-out plan for a dialect and kind, with a text payload of `size` bytes. */
export function fanoutPlan(dialect: Dialect, kind: FanoutKind, size: number): FanoutPlan {
  const data = textPayload(size);
  if (dialect === 'socketio') {
    const steps = setupSteps('socketio');
    return {
      subscriberSteps: steps,
      publisherSteps: steps,
      publication: clientFrame(1, `42["p","${data}"]`),
      deliveryBytes: 0,
    };
  }
  if (kind === 'broker') {
    const subscribe = clientFrame(1, JSON.stringify({ type: 'subscribe', id: 1, channel: BENCH_CHANNEL }));
    return {
      subscriberSteps: [{ send: subscribe, expect: 1 }],
      publisherSteps: [],
      publication: clientFrame(1, JSON.stringify({ type: 'publish', id: 1, channel: BENCH_CHANNEL, data })),
      deliveryBytes: 0,
    };
  }
  const publication = clientFrame(1, JSON.stringify({ channel: BENCH_CHANNEL, data }));
  return { subscriberSteps: [], publisherSteps: [], publication, deliveryBytes: publication.length };
}

/** `n` copies of `frame` back to back, for k = 0..n (index k holds k copies). */
export function batches(frame: Buffer, n: number): Buffer[] {
  const out: Buffer[] = [Buffer.alloc(0)];
  for (let k = 1; k <= n; k++) out.push(Buffer.concat(Array.from({ length: k }, () => frame)));
  return out;
}
