// The two legs of one relayed connection after the client's 101: every message both ways, with
// backpressure across the legs (a slow client pauses the upstream read and a slow upstream pauses
// the client; a stall past stallTimeoutMs closes both, P-06) and closes mapped safely (P-04, M-06).
import type { Duplex } from 'node:stream';
import WebSocket, * as wsModule from 'ws';
import type { UpstreamConfig } from '../config/schema.js';
import { clientCloseFor, type UpstreamClose, upstreamCloseFor } from '../core/relay.js';
import type { ErrorCode } from '../protocol.js';
import { BATCH_BELOW_BYTES, corkForTurn } from './cork.js';
import type { Session } from './session.js';
import type { Upstream } from './upstream-pool.js';

/** ws's frame builder (exported by ws, not typed by @types/ws). */
interface FrameBuilder {
  frame(
    data: Buffer,
    options: { fin: boolean; mask: boolean; opcode: number; readOnly: boolean; rsv1: boolean },
  ): Buffer[];
}
const Sender = (wsModule as unknown as { Sender: FrameBuilder }).Sender;
if (typeof Sender?.frame !== 'function') throw new Error('ws: Sender.frame is missing');

// Payloads below this are framed into one fresh buffer (header, key and masked payload: one write
// chunk, from Node's buffer pool); larger ones are masked in place behind a separate header, so a
// large message is never copied.
const MERGE_BELOW = 4_000;

/**
 * Writes one final data frame to the upstream socket, masked with a fresh key from ws's CSPRNG
 * pool (P-05) and with the minimal length encoding (F-08): what ws.send() would write, without its
 * per-message option objects and with one chunk instead of two for small payloads. Valid only
 * while ws's sender holds nothing back, which is always the case on the upstream leg: no extension
 * is negotiated there (perMessageDeflate is off and ws refuses a 101 with an unrequested one).
 */
function writeMasked(socket: Duplex, data: Buffer, isBinary: boolean): void {
  const list = Sender.frame(data, {
    fin: true,
    mask: true,
    opcode: isBinary ? 2 : 1,
    readOnly: data.length < MERGE_BELOW,
    rsv1: false,
  });
  if (list.length === 1) {
    socket.write(list[0] as Buffer);
    return;
  }
  // Header and payload leave in one writev even when the socket is not corked for the turn.
  socket.cork();
  socket.write(list[0] as Buffer);
  socket.write(list[1] as Buffer);
  socket.uncork();
}

/** What a leg needs from the relay that opened it. */
export interface LegOwner {
  readonly config: UpstreamConfig;
  /** Logs an upstream that broke the protocol after its 101 (operator log only). */
  logBroken(leg: Leg, err: Error): void;
}

/** The two legs of one relayed connection. */
export class Leg {
  private session: Session | undefined;
  private early: { data: Buffer; isBinary: boolean }[] = [];
  private earlyBytes = 0;
  private overflowed = false;
  /** This side has started closing the upstream leg. */
  private ending = false;
  /** The upstream broke the protocol (ws has closed it with 1002/1007/1009). */
  private failed = false;
  private upstreamCloseCode: number | undefined;
  private clientCloseCode = 1006;
  /** Reading the upstream is paused because the client is slow. */
  private upstreamPaused = false;
  /** Reading the client is paused because the upstream is slow. */
  private clientPaused = false;
  private stallClient: NodeJS.Timeout | undefined;
  private stallUpstream: NodeJS.Timeout | undefined;
  private recheck: NodeJS.Timeout | undefined;
  private upstreamSocket: Duplex | undefined;
  private readonly onClientDrain = () => this.drained();
  private readonly onUpstreamDrain = () => this.drained();

  private readonly config: UpstreamConfig;

  constructor(
    private readonly relay: LegOwner,
    readonly ws: WebSocket,
    readonly upstream: Upstream,
  ) {
    this.config = relay.config;
  }

  /** The client has its 101: start relaying, beginning with what the upstream sent meanwhile. */
  attach(session: Session): void {
    this.session = session;
    // Runs before the session's own close handler, so onClose knows the client's close code.
    session.ws.prependListener('close', (code: number) => {
      this.clientCloseCode = code;
    });
    if (this.upstreamCloseCode !== undefined || this.overflowed) {
      this.closeClient();
      return;
    }
    session.socket.on('drain', this.onClientDrain);
    this.upstreamSocket = (this.ws as unknown as { _socket: Duplex })._socket;
    this.upstreamSocket.on('drain', this.onUpstreamDrain);
    const early = this.early;
    this.early = [];
    this.earlyBytes = 0;
    for (const m of early) this.toClient(m.data, m.isBinary);
    if (!this.upstreamPaused) this.ws.resume();
  }

  /** The gateway did not upgrade the client after all: release the upstream. */
  abort(): void {
    this.closeUpstream({ code: 1001, reason: '' });
  }

  /** A client message that passed the route's admission (size, rate, schema). */
  fromClient(data: Buffer, isBinary: boolean): void {
    // Set once the client has its 101 and the upstream leg was still open then.
    const socket = this.upstreamSocket;
    if (!socket || this.ws.readyState !== WebSocket.OPEN) return; // the upstream leg is ending
    const config = this.config;
    // What waits for the upstream: ws's bufferedAmount, as its sender never holds bytes back here.
    // Bounded: the client is paused above the high-water mark, so only what one read held can
    // arrive beyond it; past maxQueueBytes the upstream is not keeping up at all.
    if (socket.writableLength + data.length > config.maxQueueBytes) {
      this.stalled('UPSTREAM_UNAVAILABLE');
      return;
    }
    if (data.length < BATCH_BELOW_BYTES) corkForTurn(socket);
    writeMasked(socket, data, isBinary);
    if (socket.writableLength <= config.highWaterMarkBytes) return;
    const session = this.session as Session;
    // Pause again even when already marked: the session resumes the socket itself at the end of
    // a rate-limit wait, and that must not lift this pause.
    if (!session.ws.isPaused) session.ws.pause();
    if (!this.clientPaused) {
      this.clientPaused = true;
      this.stallUpstream = this.stallTimer('UPSTREAM_UNAVAILABLE');
    }
  }

  /** An upstream message (size already bounded by maxPayload). */
  fromUpstream(data: Buffer, isBinary: boolean): void {
    if (this.ending) return;
    if (!this.session) {
      // Only what arrived with the 101 can land here (the socket is paused until attach).
      this.earlyBytes += data.length;
      if (this.earlyBytes > this.config.maxQueueBytes) {
        this.overflowed = true;
        this.early = [];
        this.ws.terminate();
        return;
      }
      this.early.push({ data, isBinary });
      return;
    }
    this.toClient(data, isBinary);
  }

  private toClient(data: Buffer, isBinary: boolean): void {
    const session = this.session as Session;
    if (session.state.closingSince >= 0) {
      // The gateway is closing the client (expiry, revocation, a limit): end the upstream leg now
      // rather than after the client's close handshake.
      this.closeUpstream(upstreamCloseFor(1006, session.closedWith));
      return;
    }
    // send() enforces the route's send-queue cap (SLOW_CONSUMER) and counts the message.
    if (!session.send(data, isBinary)) return;
    if (!this.upstreamPaused && session.ws.bufferedAmount > this.config.highWaterMarkBytes) {
      this.upstreamPaused = true;
      this.ws.pause();
      this.stallClient = this.stallTimer('SLOW_CONSUMER');
    }
  }

  private stallTimer(code: ErrorCode): NodeJS.Timeout {
    const timer = setTimeout(() => this.stalled(code), this.config.stallTimeoutMs);
    timer.unref();
    return timer;
  }

  /** One side stopped reading for too long (P-06): close the client with `code`, the upstream with 1001. */
  private stalled(code: ErrorCode): void {
    // Read the client again so its close reply is seen (what else it sends is dropped from now on).
    if (this.clientPaused) this.session?.ws.resume();
    this.session?.close(code);
    this.closeUpstream({ code: 1001, reason: code });
  }

  /** A sink drained: resume the source it had paused once the sink is under the high-water mark. */
  private drained(): void {
    const session = this.session;
    if (!session) return;
    const hwm = this.config.highWaterMarkBytes;
    if (this.upstreamPaused && session.ws.bufferedAmount <= hwm) {
      this.upstreamPaused = false;
      clearTimeout(this.stallClient);
      this.ws.resume();
    }
    if (this.clientPaused && this.ws.bufferedAmount <= hwm) {
      this.clientPaused = false;
      clearTimeout(this.stallUpstream);
      // If the session is also waiting out a rate limit, what arrives now joins its bounded hold.
      session.ws.resume();
    }
    // A sender still compressing holds bytes the socket has not seen yet, and no further drain
    // may come for them: look again shortly.
    if ((this.upstreamPaused || this.clientPaused) && !this.recheck) {
      this.recheck = setTimeout(() => {
        this.recheck = undefined;
        this.drained();
      }, 10);
      this.recheck.unref();
    }
  }

  /** @internal ws reports a protocol violation by the upstream (it closes it with 1002/1007/1009). */
  onError(err: Error): void {
    this.failed = true;
    this.relay.logBroken(this, err);
  }

  /** @internal */
  onUpstreamClose(code: number): void {
    this.upstreamCloseCode = code;
    this.clearTimers();
    this.upstreamSocket?.off('drain', this.onUpstreamDrain);
    if (this.session) this.closeClient();
  }

  /** The client leg has closed: close the upstream leg with the mapped code. */
  clientEnded(): void {
    this.clearTimers();
    this.session?.socket.off('drain', this.onClientDrain);
    this.closeUpstream(upstreamCloseFor(this.clientCloseCode, this.session?.closedWith ?? null));
  }

  private closeClient(): void {
    const session = this.session as Session;
    if (session.state.closingSince >= 0 || session.ws.readyState !== WebSocket.OPEN) return;
    // Read again, so the client's close reply is seen; anything else it sends is now dropped.
    if (this.clientPaused) session.ws.resume();
    const decision = this.overflowed
      ? ({ type: 'code', code: 'BAD_GATEWAY' } as const)
      : clientCloseFor(this.upstreamCloseCode ?? 1006, this.failed);
    if (decision.type === 'code') {
      session.close(decision.code);
      return;
    }
    // An application close code passes through; the upstream's reason never does (M-06).
    session.state.closingSince = Date.now();
    try {
      session.ws.close(decision.closeCode);
    } catch {
      session.ws.terminate();
    }
  }

  private closeUpstream(close: UpstreamClose): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.ending = true;
    // Read again (the socket may be paused for backpressure or since the 101), so the upstream's
    // close reply is seen; its messages are dropped from now on.
    this.ws.resume();
    try {
      this.ws.close(close.code, close.reason);
    } catch {
      this.ws.terminate();
    }
  }

  private clearTimers(): void {
    clearTimeout(this.stallClient);
    clearTimeout(this.stallUpstream);
    clearTimeout(this.recheck);
    this.recheck = undefined;
  }
}
