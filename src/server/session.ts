// The runtime of one accepted connection: counts, rate admission (throttle/drop/close), control
// frames, the send-queue cap, deadlines from the shared ticker, and the close audit event.
// Handlers are shared functions bound through a symbol, not closures per connection.
import type { Duplex } from 'node:stream';
import type { RawData, WebSocket } from 'ws';
import type { HeaderMap } from '../core/handshake.js';
import type { Principal } from '../core/principal.js';
import {
  type Admission,
  admitControlFrame,
  admitMessage,
  onPong,
  onSent,
  type SessionRules,
  type SessionState,
  tick,
} from '../core/session.js';
import { ERRORS, type ErrorCode, isSendableCloseCode } from '../protocol.js';
import { BATCH_BELOW_BYTES, corkForTurn } from './cork.js';
import { coarseClock, type Ticking } from './ticker.js';

const kSession = Symbol('portcullis.session');

/** What a route's target does with an admitted message (echo, broker, upstream relay). */
export interface Target {
  onMessage(session: Session, data: Buffer, isBinary: boolean): void;
  /**
   * Called after every check has passed and before the 101: an upstream target connects here. A
   * refusal goes to the client as its HTTP status; `state` is handed to onOpen.
   */
  prepare?(context: PrepareContext): Promise<PrepareResult>;
  /** Called once the session is accepted and registered, with what prepare() returned. */
  onOpen?(session: Session, prepared?: unknown): void;
  /** Called once when the session has closed, for cleanup (subscriptions, upstream leg). */
  onClose?(session: Session): void;
}

/** What a target may use before the 101. */
export interface PrepareContext {
  readonly route: string;
  /** The normalised path and the raw query string of the client's request. */
  readonly path: string;
  readonly query: string;
  readonly host: string;
  readonly headers: HeaderMap;
  readonly principal: Principal | null;
  readonly remote: string;
  readonly encrypted: boolean;
}

/** The answer of prepare(): go ahead with a subprotocol (one the route lists) or refuse. */
export type PrepareResult =
  | { ok: true; subprotocol: string | undefined; state: unknown; abort?: () => void }
  | { ok: false; code: ErrorCode };

/** Who the connection belongs to, for accounting and the audit log. */
export interface SessionInfo {
  readonly id: number;
  /** The route's path (for the audit log) and its unique key (host pattern and path). */
  readonly route: string;
  readonly routeKey: string;
  readonly remote: string;
  readonly identity: string | null;
  readonly subprotocol: string | undefined;
  /** The verified principal, or null on an `auth: none` route; replaced by an in-band refresh. */
  principal: Principal | null;
  /** The serial (normalised hex) of the verified client certificate, for CRL updates. */
  readonly certSerial: string | null;
}

/** What the session reports back to the gateway. */
export interface SessionHost {
  readonly closeTimeoutMs: number;
  onClosed(session: Session, code: ErrorCode | null, closeCode: number, by: 'client' | 'server'): void;
  onError(session: Session, err: Error): void;
}

/** Counters, read by the close event and by metrics. */
export interface SessionCounters {
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  dropped: number;
}

// ws reports framing failures by code; each maps to one of ours (ws has already sent the close).
const WS_ERRORS: Record<string, ErrorCode> = {
  WS_ERR_INVALID_UTF8: 'INVALID_PAYLOAD',
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: 'MESSAGE_TOO_BIG',
  // A 64-bit frame length above 2^53 - 1 (F-07): ws closes with 1009 before reading the payload.
  WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH: 'MESSAGE_TOO_BIG',
  WS_ERR_TOO_MANY_BUFFERED_PARTS: 'TOO_MANY_FRAGMENTS',
};

// Messages held while a throttled connection waits for tokens: bounded, because a paused socket
// stops delivering new chunks, but ws may still emit what one chunk already held.
const HOLD_SLACK_BYTES = 256 * 1024;

/** One accepted WebSocket connection. */
export class Session implements Ticking {
  readonly counters: SessionCounters = { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, dropped: 0 };
  /** The ErrorCode this side closed with, once it has. */
  closedWith: ErrorCode | null = null;
  private held: { data: Buffer; isBinary: boolean }[] | null = null;
  private heldBytes = 0;
  private holdTimer: NodeJS.Timeout | undefined;
  private errorCode: ErrorCode | null = null;
  /** No extension transforms frames (extensions are fixed at the 101), so shared frames can be written as they are. */
  private readonly plainFrames: boolean;

  constructor(
    readonly ws: WebSocket,
    readonly info: SessionInfo,
    private readonly rules: SessionRules,
    readonly state: SessionState,
    private readonly target: Target,
    private readonly host: SessionHost,
  ) {
    (ws as unknown as Record<symbol, Session>)[kSession] = this;
    this.plainFrames = ws.extensions === '';
    ws.on('message', onWsMessage);
    ws.on('ping', onWsPing);
    ws.on('pong', onWsPong);
    ws.on('error', onWsError);
    ws.on('close', onWsClose);
  }

  /** The underlying socket (for TLS details such as the client certificate). */
  get socket(): Duplex {
    return (this.ws as unknown as { _socket: Duplex })._socket;
  }

  /** Sends a message, closing a slow consumer instead of buffering without bound. */
  send(data: Buffer | string, isBinary: boolean): boolean {
    const ws = this.ws;
    if (ws.readyState !== 1) return false;
    const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    if (ws.bufferedAmount + size > this.rules.limits.maxSendQueueBytes) {
      this.close('SLOW_CONSUMER');
      return false;
    }
    this.counters.messagesOut++;
    this.counters.bytesOut += size;
    onSent(this.state, coarseClock.now);
    // Small messages are batched per iteration; a large one fills TLS records by itself, so it is
    // written at once rather than holding its buffer until the check phase.
    if (size < BATCH_BELOW_BYTES) corkForTurn(this.socket);
    ws.send(data, { binary: isBinary });
    return true;
  }

  /**
   * Sends a text payload that many sessions share (a broker publication): the frame is built once
   * per payload and written straight to the socket, and writes to one socket within one event-loop
   * turn are corked into one TLS record batch. Falls back to send() when an extension (deflate)
   * must transform frames.
   */
  sendShared(payload: Buffer): boolean {
    const ws = this.ws;
    if (ws.readyState !== 1) return false;
    if (!this.plainFrames) return this.send(payload, false);
    const socket = this.socket;
    // ws.bufferedAmount without the getter: with no extension, ws's sender queues nothing itself.
    if (socket.writableLength + payload.length > this.rules.limits.maxSendQueueBytes) {
      this.close('SLOW_CONSUMER');
      return false;
    }
    this.counters.messagesOut++;
    this.counters.bytesOut += payload.length;
    onSent(this.state, coarseClock.now);
    corkForTurn(socket);
    socket.write(textFrame(payload));
    return true;
  }

  /** Starts the close handshake with an ErrorCode; the ticker terminates it if the peer stalls. */
  close(code: ErrorCode, now = Date.now()): void {
    if (this.state.closingSince >= 0) return;
    this.state.closingSince = now;
    this.closedWith = code;
    this.clearHold();
    const closeCode = ERRORS[code].close;
    try {
      this.ws.close(isSendableCloseCode(closeCode) ? closeCode : 1011, code);
    } catch {
      this.ws.terminate();
    }
  }

  onTick(now: number): void {
    const action = tick(this.rules, this.state, now, this.host.closeTimeoutMs);
    switch (action.type) {
      case 'none':
        return;
      case 'ping':
        this.ws.ping();
        return;
      case 'close':
        this.close(action.code, now);
        return;
      case 'terminate':
        this.ws.terminate();
        return;
      default:
        action satisfies never;
    }
  }

  /** @internal */
  receive(data: Buffer, isBinary: boolean): void {
    if (this.state.closingSince >= 0) return; // nothing after our close is delivered
    this.counters.messagesIn++;
    this.counters.bytesIn += data.length;
    if (this.held) {
      this.hold(data, isBinary);
      return;
    }
    const now = Date.now();
    coarseClock.now = now;
    this.act(admitMessage(this.rules, this.state, data.length, now), data, isBinary);
  }

  private act(admission: Admission, data: Buffer, isBinary: boolean): boolean {
    switch (admission.type) {
      case 'deliver':
        this.target.onMessage(this, data, isBinary);
        return true;
      case 'drop':
        this.counters.dropped++;
        return true;
      case 'close':
        this.close(admission.code);
        return false;
      case 'wait':
        // Throttle: stop reading the socket until the bucket refills (TCP pushes back on the client).
        this.held = [];
        this.hold(data, isBinary);
        this.ws.pause();
        this.holdTimer = setTimeout(releaseHeld, admission.ms, this);
        return false;
      default:
        return admission satisfies never;
    }
  }

  private hold(data: Buffer, isBinary: boolean): void {
    this.held?.push({ data, isBinary });
    this.heldBytes += data.length;
    if (this.heldBytes > this.rules.limits.maxMessageBytes + HOLD_SLACK_BYTES) this.close('RATE_LIMITED');
  }

  /** @internal Re-admits held messages in order once tokens are back. */
  release(): void {
    this.holdTimer = undefined;
    const held = this.held;
    if (!held) return;
    this.held = null;
    this.heldBytes = 0;
    while (held.length > 0) {
      const next = held.shift() as { data: Buffer; isBinary: boolean };
      if (this.state.closingSince >= 0) return;
      const admission = admitMessage(this.rules, this.state, next.data.length, Date.now());
      if (admission.type === 'wait') {
        this.held = [];
        this.heldBytes = 0;
        for (const m of [next, ...held]) this.hold(m.data, m.isBinary);
        this.holdTimer = setTimeout(releaseHeld, admission.ms, this);
        return;
      }
      if (!this.act(admission, next.data, next.isBinary)) return;
    }
    this.ws.resume();
  }

  private clearHold(): void {
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    this.held = null;
    this.heldBytes = 0;
  }

  /** @internal */
  control(isPing: boolean): void {
    const now = Date.now();
    if (!isPing) onPong(this.state);
    const code = admitControlFrame(this.rules, this.state, now);
    if (code) this.close(code, now);
  }

  /** @internal */
  failed(err: Error): void {
    const wsCode = (err as NodeJS.ErrnoException).code;
    // zlib codes (Z_DATA_ERROR, ...) mean a corrupt compressed message: ws has closed with 1007.
    this.errorCode =
      (wsCode && WS_ERRORS[wsCode]) ||
      (wsCode?.startsWith('WS_ERR_')
        ? 'PROTOCOL_ERROR'
        : wsCode?.startsWith('Z_')
          ? 'INVALID_PAYLOAD'
          : 'INTERNAL');
    if (this.errorCode === 'INTERNAL') this.host.onError(this, err);
  }

  /** @internal */
  closed(closeCode: number): void {
    this.clearHold();
    const code = this.closedWith ?? this.errorCode;
    this.target.onClose?.(this);
    // When this side closed, report the code it sent; otherwise the peer's (1006 when it vanished).
    if (code === null) this.host.onClosed(this, null, closeCode, 'client');
    else this.host.onClosed(this, code, ERRORS[code].close, 'server');
  }
}

// Frames built once per shared payload; the payload object is the key, so the cache empties itself.
const framed = new WeakMap<Buffer, Buffer>();

/** An unmasked, final text frame (RFC 6455 section 5.2) around `payload`. */
function textFrame(payload: Buffer): Buffer {
  let frame = framed.get(payload);
  if (frame) return frame;
  const n = payload.length;
  const header = n < 126 ? 2 : n < 65_536 ? 4 : 10;
  frame = Buffer.allocUnsafe(header + n);
  frame[0] = 0x81;
  if (n < 126) frame[1] = n;
  else if (n < 65_536) {
    frame[1] = 126;
    frame.writeUInt16BE(n, 2);
  } else {
    frame[1] = 127;
    frame.writeBigUInt64BE(BigInt(n), 2);
  }
  payload.copy(frame, header);
  framed.set(payload, frame);
  return frame;
}

function sessionOf(ws: WebSocket): Session {
  return (ws as unknown as Record<symbol, Session>)[kSession] as Session;
}

function releaseHeld(session: Session): void {
  session.release();
}

function onWsMessage(this: WebSocket, data: RawData, isBinary: boolean): void {
  sessionOf(this).receive(data as Buffer, isBinary);
}

function onWsPing(this: WebSocket): void {
  sessionOf(this).control(true);
}

function onWsPong(this: WebSocket): void {
  sessionOf(this).control(false);
}

function onWsError(this: WebSocket, err: Error): void {
  sessionOf(this).failed(err);
}

function onWsClose(this: WebSocket, code: number): void {
  sessionOf(this).closed(code);
}
