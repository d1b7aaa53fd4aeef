// The client both builds share: one logical connection kept open across reconnects, its events,
// async iteration and broker helpers. It drives a Transport (ws in Node, WebSocket in a browser)
// through a Dial function and never touches a socket itself.
import type { Retry } from '../protocol.js';
import { decideReconnect } from './backoff.js';
import { BROKER_PROTOCOL, BrokerSession, type ChannelHandler } from './broker.js';
import { classifyClose, type Failure, type PinMismatchInfo } from './classify.js';
import { Emitter } from './emitter.js';
import { ClientError, type ClientErrorCode, retryOf } from './errors.js';
import { type ResolvedOptions, safeUrl } from './options.js';
import { isBearerToken, jwtExpiryMs, refreshAt, type TokenProvider, type TokenReason } from './token.js';

/** A message: text arrives as a string, binary as bytes. */
export type Message = string | Uint8Array;

/** readyState: connecting, or waiting to reconnect (values as in the WebSocket API). */
export const CONNECTING = 0;
/** readyState: open; send() works. */
export const OPEN = 1;
/** readyState: close() was called and the server's close frame is awaited. */
export const CLOSING = 2;
/** readyState: closed for good; no reconnect follows. */
export const CLOSED = 3;
/** One of the four readyState values. */
export type ReadyState = typeof CONNECTING | typeof OPEN | typeof CLOSING | typeof CLOSED;

/** A connection opened. `attempt` counts connection attempts since connect(), from 1. */
export interface OpenEvent {
  readonly protocol: string;
  readonly attempt: number;
}

/** A connection (or an attempt) ended. `reconnecting` tells whether another attempt follows. */
export interface CloseEvent {
  readonly code: number;
  readonly reason: string;
  readonly errorCode: ClientErrorCode | null;
  readonly retry: Retry;
  readonly wasOpen: boolean;
  readonly reconnecting: boolean;
}

/** Another attempt is scheduled after `delayMs`; `attempt` counts failures in a row, from 1. */
export interface ReconnectingEvent {
  readonly attempt: number;
  readonly delayMs: number;
  readonly errorCode: ClientErrorCode | null;
}

/** Every event a client emits. */
export interface ClientEvents extends Record<string, unknown> {
  open: OpenEvent;
  message: Message;
  close: CloseEvent;
  error: ClientError;
  reconnecting: ReconnectingEvent;
  pinMismatch: PinMismatchInfo;
}

/** Callbacks a transport calls; each at most in this order: open, message*, close (exactly once). */
export interface TransportHandlers {
  open(protocol: string): void;
  message(data: Message): void;
  /** `failure` when the transport itself classified what went wrong; else the close frame decides. */
  close(code: number, reason: string, failure: Failure | undefined): void;
}

/** One WebSocket connection, as the client core sees it. */
export interface Transport {
  readonly bufferedAmount: number;
  send(data: Message): void;
  close(code: number, reason: string): void;
  /** Stops reading from the socket (backpressure); absent where the platform cannot. */
  pause?(): void;
  resume?(): void;
}

/** What a transport needs for one attempt. */
export interface DialRequest {
  readonly url: URL;
  readonly protocols: readonly string[];
  readonly token: string | undefined;
  readonly attempt: number;
}

/** Opens one connection; reports through the handlers, never throws for a network failure. */
export type Dial = (request: DialRequest, handlers: TransportHandlers) => Transport;

/** Credentials that may change while the client runs. */
export interface CredentialUpdate {
  token?: string | TokenProvider;
}

interface Queue {
  readonly items: Message[];
  waiter: ((result: IteratorResult<Message>) => void) | undefined;
}

/** A Portcullis client: one logical connection, reconnected as the server's retry flags allow. */
export class Client extends Emitter<ClientEvents> {
  static readonly CONNECTING = CONNECTING;
  static readonly OPEN = OPEN;
  static readonly CLOSING = CLOSING;
  static readonly CLOSED = CLOSED;

  private state: ReadyState = CONNECTING;
  private negotiated = '';
  private transport: Transport | undefined;
  private generation = 0;
  private attempts = 0;
  private failures = 0;
  private streakStartedAt = 0;
  private openedAt: number | undefined;
  private token: string | TokenProvider | undefined;
  private currentToken: string | undefined;
  private retryTimer: unknown;
  private refreshTimer: unknown;
  private closeRequested: { code: number; reason: string } | undefined;
  private localFailure: Failure | undefined;
  private stopped = false;
  private lastError: ClientError | undefined;
  private paused = false;
  private readonly queues = new Set<Queue>();
  private readonly broker: BrokerSession;

  constructor(
    private readonly options: ResolvedOptions,
    private readonly dial: Dial,
  ) {
    super();
    this.token = options.token;
    this.broker = new BrokerSession({
      isOpen: () => this.state === OPEN && this.negotiated === BROKER_PROTOCOL,
      sendText: (text) => this.send(text),
      timers: options.timers,
      requestTimeoutMs: options.requestTimeoutMs,
      maxPendingRequests: options.maxPendingRequests,
      onError: (error) => this.emit('error', error),
    });
    // Deferred so listeners attached right after connect() see every event.
    queueMicrotask(() => void this.attempt('connect'));
  }

  /** CONNECTING (also while waiting to reconnect), OPEN, CLOSING or CLOSED (for good). */
  get readyState(): ReadyState {
    return this.state;
  }

  /** The subprotocol the server chose ('' for none). */
  get protocol(): string {
    return this.negotiated;
  }

  /** Bytes queued for sending on the current connection. */
  get bufferedAmount(): number {
    return this.transport?.bufferedAmount ?? 0;
  }

  /** The URL given to connect(). */
  get url(): string {
    return this.options.url.href;
  }

  /** Sends one message (a string as text, bytes as binary). Throws NOT_OPEN unless open. */
  send(data: Message): void {
    if (this.state !== OPEN || !this.transport) throw new ClientError('NOT_OPEN');
    this.transport.send(data);
  }

  /** Closes for good (no reconnect). `code` is 1000 or 3000..4999, as in the WebSocket API. */
  close(code = 1000, reason = ''): void {
    if (code !== 1000 && (code < 3000 || code > 4999 || !Number.isInteger(code))) {
      throw new TypeError('close code must be 1000 or in 3000..4999');
    }
    if (new TextEncoder().encode(reason).length > 123)
      throw new TypeError('close reason must be <= 123 bytes');
    if (this.stopped || this.closeRequested) return;
    this.closeRequested = { code, reason };
    this.options.timers.clearTimeout(this.retryTimer);
    if (this.transport) {
      this.state = CLOSING;
      this.transport.close(code, reason);
      return;
    }
    // Between attempts (or waiting for a token): nothing to close on the wire.
    this.generation++;
    this.finish({ code, reason, failure: { code: null, retry: 'never' }, wasOpen: false });
  }

  /** Resolves when the connection is open; rejects when the client stops for good first. */
  ready(): Promise<void> {
    if (this.state === OPEN) return Promise.resolve();
    if (this.stopped) return Promise.reject(this.lastError ?? new ClientError('NOT_OPEN'));
    return new Promise((resolve, reject) => {
      const offOpen = this.on('open', () => {
        offOpen();
        offClose();
        resolve();
      });
      const offClose = this.on('close', (event) => {
        if (event.reconnecting) return;
        offOpen();
        offClose();
        reject(this.lastError ?? new ClientError('NOT_OPEN'));
      });
    });
  }

  /**
   * Replaces credentials for the next attempt. A client that stopped on a failure (such as
   * CLIENT_CERT_REJECTED or UNAUTHENTICATED) starts connecting again at once.
   */
  setCredentials(update: CredentialUpdate): void {
    if (update.token !== undefined) {
      if (typeof update.token === 'string' && !isBearerToken(update.token)) {
        throw new TypeError('token must be a non-empty RFC 6750 b64token');
      }
      this.token = update.token;
    }
    if (this.stopped && !this.closeRequested) {
      this.stopped = false;
      this.failures = 0;
      this.lastError = undefined;
      this.broker.revive();
      this.state = CONNECTING;
      void this.attempt('connect');
    }
  }

  /** Subscribes to a broker channel; resolves on the ack. Restored after every reconnect. */
  subscribe(channel: string, handler: ChannelHandler): Promise<void> {
    this.requireBroker();
    return this.broker.subscribe(channel, handler);
  }

  /** Removes a handler (or all); the last one unsubscribes on the server. */
  unsubscribe(channel: string, handler?: ChannelHandler): Promise<void> {
    this.requireBroker();
    return this.broker.unsubscribe(channel, handler);
  }

  /** Publishes to a broker channel; resolves on the ack, rejects with the error frame's code. */
  publish(channel: string, data: unknown): Promise<void> {
    this.requireBroker();
    return this.broker.publish(channel, data);
  }

  /** Asks the token provider for a fresh token and sends it in-band (`auth.refresh`). */
  async refreshToken(reason: TokenReason = 'refresh'): Promise<void> {
    this.requireBroker();
    if (typeof this.token !== 'function') throw new TypeError('refreshToken needs a token provider function');
    const token = await this.tokenFor(reason);
    if (token === undefined) return;
    await this.broker.refresh(token);
    this.currentToken = token;
    this.scheduleRefresh();
  }

  /** Iterates over messages until the client closes for good. */
  [Symbol.asyncIterator](): AsyncIterableIterator<Message> {
    const queue: Queue = { items: [], waiter: undefined };
    if (!this.stopped) this.queues.add(queue);
    const client = this;
    return {
      next(): Promise<IteratorResult<Message>> {
        const item = queue.items.shift();
        if (item !== undefined) {
          client.maybeResume();
          return Promise.resolve({ value: item, done: false });
        }
        if (!client.queues.has(queue)) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          queue.waiter = resolve;
        });
      },
      return(): Promise<IteratorResult<Message>> {
        client.queues.delete(queue);
        queue.items.length = 0;
        client.maybeResume();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  private requireBroker(): void {
    if (!this.options.protocols.includes(BROKER_PROTOCOL)) {
      throw new TypeError(`broker helpers need protocols: ['${BROKER_PROTOCOL}']`);
    }
  }

  private debug(line: string): void {
    this.options.debug?.(`portcullis/client: ${line}`);
  }

  private async tokenFor(reason: TokenReason): Promise<string | undefined> {
    const source = this.token;
    if (source === undefined || typeof source === 'string') return source;
    let token: unknown;
    try {
      token = await source({ reason });
    } catch {
      // The provider's own error may quote a credential: report only that it failed.
      throw new ClientError('AUTH_UNAVAILABLE', 'the token provider failed');
    }
    if (!isBearerToken(token))
      throw new ClientError('UNAUTHENTICATED', 'the token provider returned no valid token');
    return token;
  }

  private async attempt(reason: TokenReason): Promise<void> {
    if (this.stopped || this.closeRequested) return;
    const generation = ++this.generation;
    const attempt = ++this.attempts;
    this.state = CONNECTING;
    this.localFailure = undefined;
    let token: string | undefined;
    try {
      token = await this.tokenFor(reason);
    } catch (err) {
      if (generation !== this.generation) return;
      const error = err as ClientError;
      this.ended(1006, '', { code: error.code, retry: error.retry, detail: 'token provider' }, false);
      return;
    }
    if (generation !== this.generation || this.stopped || this.closeRequested) return;
    this.currentToken = token;
    this.debug(
      `connecting to ${safeUrl(this.options.url)} (attempt ${attempt}${token ? ', bearer token set' : ''})`,
    );
    let opened = false;
    const current = () => generation === this.generation;
    const request = { url: this.options.url, protocols: this.options.protocols, token, attempt };
    const handlers: TransportHandlers = {
      open: (protocol) => {
        if (!current()) return;
        opened = true;
        this.onOpen(protocol, attempt);
      },
      message: (data) => {
        if (current()) this.onMessage(data);
      },
      close: (code, closeReason, failure) => {
        if (!current()) return;
        this.transport = undefined;
        this.ended(
          code,
          closeReason,
          failure ?? this.localFailure ?? classifyClose(code, closeReason),
          opened,
        );
      },
    };
    try {
      this.transport = this.dial(request, handlers);
    } catch (err) {
      // A transport that cannot even start (a platform without WebSocket, a rejected header):
      // reported like any failed attempt rather than as an unhandled rejection.
      this.ended(
        1006,
        '',
        { code: 'CONNECTION_FAILED', retry: 'backoff', detail: (err as Error).message },
        false,
      );
    }
  }

  private onOpen(protocol: string, attempt: number): void {
    if (this.closeRequested) return;
    this.state = OPEN;
    this.negotiated = protocol;
    this.openedAt = this.options.timers.now();
    this.debug(`open${protocol ? ` (subprotocol ${protocol})` : ''}`);
    this.emit('open', { protocol, attempt });
    if (protocol === BROKER_PROTOCOL) this.broker.onOpen();
    this.scheduleRefresh();
  }

  private onMessage(data: Message): void {
    if (this.negotiated === BROKER_PROTOCOL && typeof data === 'string') this.broker.handleText(data);
    this.emit('message', data);
    let full = false;
    for (const queue of this.queues) {
      if (queue.waiter) {
        const waiter = queue.waiter;
        queue.waiter = undefined;
        waiter({ value: data, done: false });
        continue;
      }
      queue.items.push(data);
      if (queue.items.length >= this.options.maxQueuedMessages) full = true;
      if (queue.items.length > 2 * this.options.maxQueuedMessages) {
        this.overflow();
        return;
      }
    }
    if (full && !this.paused) {
      // Backpressure: stop reading so TCP pushes back to the server; the reader resumes it.
      if (!this.transport?.pause) {
        this.overflow();
        return;
      }
      this.paused = true;
      this.transport.pause();
    }
  }

  private maybeResume(): void {
    if (!this.paused) return;
    const low = Math.floor(this.options.maxQueuedMessages / 2);
    for (const queue of this.queues) if (queue.items.length > low) return;
    this.paused = false;
    this.transport?.resume?.();
  }

  private overflow(): void {
    if (this.localFailure || !this.transport) return;
    this.localFailure = { code: 'QUEUE_OVERFLOW', retry: retryOf('QUEUE_OVERFLOW') };
    this.transport.close(1008, 'QUEUE_OVERFLOW');
  }

  private scheduleRefresh(): void {
    this.options.timers.clearTimeout(this.refreshTimer);
    if (typeof this.token !== 'function' || !this.currentToken || this.negotiated !== BROKER_PROTOCOL) return;
    const expiresAt = jwtExpiryMs(this.currentToken);
    if (expiresAt === undefined) return;
    const now = this.options.timers.now();
    const at = refreshAt(expiresAt, now, this.options.refreshBeforeExpiryMs);
    if (at === undefined) return;
    this.refreshTimer = this.options.timers.setTimeout(() => {
      if (this.state !== OPEN) return;
      this.refreshToken('expiring').catch((err: unknown) => {
        this.emit('error', err instanceof ClientError ? err : new ClientError('AUTH_UNAVAILABLE'));
      });
    }, at - now);
  }

  /** One connection or attempt ended: report it, then reconnect or stop. */
  private ended(code: number, reason: string, failure: Failure, wasOpen: boolean): void {
    const { timers, reconnect } = this.options;
    timers.clearTimeout(this.refreshTimer);
    this.paused = false;
    const now = timers.now();
    if (wasOpen && this.openedAt !== undefined && now - this.openedAt >= reconnect.stableAfterMs)
      this.failures = 0;
    this.broker.onClose(failure.code ?? 'CONNECTION_LOST');
    this.debug(
      `closed ${code}${failure.code ? ` ${failure.code}` : ''}${failure.detail ? ` (${failure.detail})` : ''}`,
    );
    if (this.closeRequested) {
      this.lastError = new ClientError('NOT_OPEN', 'closed by the application');
      // Closed before the open: what the transport saw (an aborted handshake) is not a failure.
      const end = wasOpen
        ? { code, reason, failure, wasOpen }
        : { ...this.closeRequested, failure: { code: null, retry: 'never' } as Failure, wasOpen };
      this.finish(end);
      return;
    }
    if (failure.code === 'PIN_MISMATCH' && failure.pinMismatch) this.emit('pinMismatch', failure.pinMismatch);
    if (failure.code && failure.code !== 'NORMAL_CLOSURE') {
      this.lastError = new ClientError(
        failure.code,
        failure.detail,
        failure.status === undefined ? {} : { status: failure.status },
      );
      this.emit('error', this.lastError);
    }
    if (this.failures === 0) this.streakStartedAt = now;
    this.failures++;
    const decision = decideReconnect(
      reconnect,
      failure,
      {
        attempt: this.failures,
        streakStartedAt: this.streakStartedAt,
        now,
        canRefresh: typeof this.token === 'function',
      },
      this.options.random,
    );
    if (decision.action === 'stop') {
      this.debug(`not reconnecting (${decision.reason})`);
      this.finish({ code, reason, failure, wasOpen });
      return;
    }
    this.state = CONNECTING;
    this.emit('close', {
      code,
      reason,
      errorCode: failure.code,
      retry: failure.retry,
      wasOpen,
      reconnecting: true,
    });
    this.debug(`reconnecting in ${decision.delayMs} ms (attempt ${this.failures})`);
    this.emit('reconnecting', { attempt: this.failures, delayMs: decision.delayMs, errorCode: failure.code });
    if (this.stopped || this.closeRequested) return;
    this.retryTimer = timers.setTimeout(
      () => void this.attempt(decision.refresh ? 'refresh' : 'connect'),
      decision.delayMs,
    );
  }

  /** Stops for good: final close event, iterators end, waiting broker requests fail. */
  private finish(end: { code: number; reason: string; failure: Failure; wasOpen: boolean }): void {
    this.state = CLOSED;
    this.stopped = true;
    this.transport = undefined;
    this.options.timers.clearTimeout(this.refreshTimer);
    this.broker.dispose(this.lastError ?? new ClientError('NOT_OPEN', 'the client is closed'));
    for (const queue of this.queues) {
      queue.waiter?.({ value: undefined, done: true });
      queue.waiter = undefined;
    }
    this.queues.clear();
    this.emit('close', {
      code: end.code,
      reason: end.reason,
      errorCode: end.failure.code,
      retry: end.failure.retry,
      wasOpen: end.wasOpen,
      reconnecting: false,
    });
  }
}
