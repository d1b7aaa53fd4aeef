// The client half of the broker protocol portcullis.v1 (docs/protocol.md): request ids, answers
// matched to requests, channel handlers, and the subscriptions to restore after a reconnect. No
// socket here: the client hands in a way to send text and is told when the connection opens,
// closes or delivers a frame.
import { isErrorCode } from '../protocol.js';
import { ClientError, type ClientErrorCode } from './errors.js';
import type { Timers } from './options.js';

/** The subprotocol of broker routes. */
export const BROKER_PROTOCOL = 'portcullis.v1';

/** Where a broker message came from. */
export interface ChannelMessage {
  readonly channel: string;
  /** Publication number on the channel (docs/protocol.md, "Frames"). */
  readonly seq: number;
}

/** Receives the `data` of every publication on a subscribed channel. */
export type ChannelHandler = (data: unknown, meta: ChannelMessage) => void;

/** What the broker helper needs from the client. */
export interface BrokerHost {
  /** True while a connection that negotiated portcullis.v1 is open. */
  isOpen(): boolean;
  sendText(text: string): void;
  readonly timers: Timers;
  readonly requestTimeoutMs: number;
  readonly maxPendingRequests: number;
  /** An error nobody awaits: a subscription the server dropped or a resubscribe it refused. */
  onError(error: ClientError): void;
}

interface Pending {
  resolve(): void;
  reject(error: ClientError): void;
  timer: unknown;
  /** Subscribe requests survive a dropped connection: they are sent again on the next open. */
  readonly keepOnClose: boolean;
}

interface Subscription {
  readonly handlers: Set<ChannelHandler>;
  active: boolean;
  waiters: { resolve(): void; reject(error: ClientError): void }[];
}

type Frame = Record<string, unknown>;

/** Broker helpers over one client, across reconnects. */
export class BrokerSession {
  private readonly pending = new Map<number, Pending>();
  private readonly subscriptions = new Map<string, Subscription>();
  private nextId = 1;
  private finalError: ClientError | undefined;

  constructor(private readonly host: BrokerHost) {}

  /** Subscribes `handler` to `channel`; resolves on the server's ack (at once if already subscribed). */
  subscribe(channel: string, handler: ChannelHandler): Promise<void> {
    if (this.finalError) return Promise.reject(this.finalError);
    checkChannel(channel);
    let sub = this.subscriptions.get(channel);
    if (sub) {
      sub.handlers.add(handler);
      if (sub.active) return Promise.resolve();
    } else {
      sub = { handlers: new Set([handler]), active: false, waiters: [] };
      this.subscriptions.set(channel, sub);
      if (this.host.isOpen()) this.sendSubscribe(channel, sub);
    }
    const target = sub;
    return new Promise((resolve, reject) => target.waiters.push({ resolve, reject }));
  }

  /** Removes `handler` (or every handler); the last one removed unsubscribes on the server. */
  unsubscribe(channel: string, handler?: ChannelHandler): Promise<void> {
    const sub = this.subscriptions.get(channel);
    if (!sub) return Promise.resolve();
    if (handler) sub.handlers.delete(handler);
    else sub.handlers.clear();
    if (sub.handlers.size > 0) return Promise.resolve();
    this.subscriptions.delete(channel);
    for (const waiter of sub.waiters) waiter.resolve();
    sub.waiters = [];
    if (!this.host.isOpen()) return Promise.resolve();
    return this.request({ type: 'unsubscribe', channel }, false);
  }

  /** Publishes `data` (any JSON value) to `channel`; resolves on the ack. Not retried: at most once. */
  publish(channel: string, data: unknown): Promise<void> {
    if (this.finalError) return Promise.reject(this.finalError);
    checkChannel(channel);
    if (!this.host.isOpen()) return Promise.reject(new ClientError('NOT_OPEN'));
    if (data === undefined) throw new TypeError('data must be a JSON value');
    return this.request({ type: 'publish', channel, data }, false);
  }

  /** Sends `auth.refresh` with a fresh token; resolves on the ack. */
  refresh(token: string): Promise<void> {
    if (this.finalError) return Promise.reject(this.finalError);
    if (!this.host.isOpen()) return Promise.reject(new ClientError('NOT_OPEN'));
    return this.request({ type: 'auth.refresh', token }, false);
  }

  /** Channels with at least one handler. */
  channels(): string[] {
    return [...this.subscriptions.keys()];
  }

  /** A connection opened: restore every subscription. */
  onOpen(): void {
    for (const [channel, sub] of this.subscriptions) {
      sub.active = false;
      this.sendSubscribe(channel, sub);
    }
  }

  /** The connection closed: requests in flight fail with `code`; subscriptions wait for the next open. */
  onClose(code: ClientErrorCode): void {
    for (const [id, pending] of this.pending) {
      this.host.timers.clearTimeout(pending.timer);
      this.pending.delete(id);
      if (!pending.keepOnClose)
        pending.reject(new ClientError(code, 'the connection closed before the answer'));
    }
    for (const sub of this.subscriptions.values()) sub.active = false;
  }

  /** The client stopped for good: everything still waiting fails with `error`. */
  dispose(error: ClientError): void {
    this.finalError = error;
    this.onClose(error.code);
    for (const sub of this.subscriptions.values()) {
      for (const waiter of sub.waiters) waiter.reject(error);
      sub.waiters = [];
    }
  }

  /** The client starts again after a stop (new credentials): requests are accepted again. */
  revive(): void {
    this.finalError = undefined;
  }

  /** Handles one text frame from the server; false when it is not a broker frame. */
  handleText(text: string): boolean {
    let frame: unknown;
    try {
      frame = JSON.parse(text);
    } catch {
      return false;
    }
    if (typeof frame !== 'object' || frame === null || Array.isArray(frame)) return false;
    const f = frame as Frame;
    switch (f.type) {
      case 'ack':
        this.answer(f.id, undefined);
        return true;
      case 'error':
        return this.onErrorFrame(f);
      case 'message':
        return this.deliver(f);
      default:
        return false;
    }
  }

  private onErrorFrame(f: Frame): boolean {
    const code: ClientErrorCode = isErrorCode(f.code) ? f.code : 'PROTOCOL_ERROR';
    if (typeof f.id === 'number' && this.pending.has(f.id)) {
      const channel = typeof f.channel === 'string' ? f.channel : undefined;
      this.answer(f.id, new ClientError(code, undefined, channel === undefined ? {} : { channel }));
      return true;
    }
    if (typeof f.channel === 'string' && f.id === undefined) {
      // The server dropped this subscription on its own (delivery-time authorization).
      this.subscriptions.delete(f.channel);
      this.host.onError(
        new ClientError(code, `subscription to ${f.channel} dropped`, { channel: f.channel }),
      );
      return true;
    }
    if (f.id === undefined) this.host.onError(new ClientError(code, 'the server refused a frame'));
    return true;
  }

  private deliver(f: Frame): boolean {
    if (typeof f.channel !== 'string' || typeof f.seq !== 'number') return false;
    const sub = this.subscriptions.get(f.channel);
    if (!sub) return true;
    const meta: ChannelMessage = { channel: f.channel, seq: f.seq };
    for (const handler of [...sub.handlers]) handler(f.data, meta);
    return true;
  }

  private answer(id: unknown, error: ClientError | undefined): void {
    if (typeof id !== 'number') return;
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    this.host.timers.clearTimeout(pending.timer);
    if (error) pending.reject(error);
    else pending.resolve();
  }

  private sendSubscribe(channel: string, sub: Subscription): void {
    this.request({ type: 'subscribe', channel }, true).then(
      () => {
        if (this.subscriptions.get(channel) !== sub) return;
        sub.active = true;
        for (const waiter of sub.waiters) waiter.resolve();
        sub.waiters = [];
      },
      (error: ClientError) => {
        if (this.subscriptions.get(channel) !== sub) return;
        this.subscriptions.delete(channel);
        if (sub.waiters.length === 0) this.host.onError(error);
        for (const waiter of sub.waiters) waiter.reject(error);
        sub.waiters = [];
      },
    );
  }

  private request(fields: Frame, keepOnClose: boolean): Promise<void> {
    if (this.pending.size >= this.host.maxPendingRequests) {
      return Promise.reject(new ClientError('TOO_MANY_PENDING'));
    }
    const id = this.nextId++;
    // `type` and `id` first, as docs/protocol.md writes every frame. Unserialisable data throws here.
    const text = JSON.stringify({ type: fields.type, id, ...fields });
    return new Promise<void>((resolve, reject) => {
      const timer = this.host.timers.setTimeout(() => {
        if (!this.pending.delete(id)) return;
        reject(new ClientError('ACK_TIMEOUT', `no answer to request ${id} (${String(fields.type)})`));
      }, this.host.requestTimeoutMs);
      this.pending.set(id, { resolve, reject, timer, keepOnClose });
      try {
        this.host.sendText(text);
      } catch (err) {
        this.pending.delete(id);
        this.host.timers.clearTimeout(timer);
        reject(err instanceof ClientError ? err : new ClientError('NOT_OPEN'));
      }
    });
  }
}

function checkChannel(channel: unknown): asserts channel is string {
  if (typeof channel !== 'string' || channel.length === 0)
    throw new TypeError('channel must be a non-empty string');
}
