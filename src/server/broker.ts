// The built-in pub/sub broker (route target `broker`, subprotocol portcullis.v1): a channel index,
// subscribe/unsubscribe/publish with the channel ACL, per-channel schemas and publish rates, fan-out
// that serialises each publication once and sends the same bytes to every subscriber, and bounded
// per-channel history so a reconnecting subscriber resumes without loss or an explicit gap (M-07).
import { randomBytes } from 'node:crypto';
import type { BrokerConfig } from '../config/schema.js';
import {
  ackFrame,
  type ClientOp,
  errorFrame,
  gapFrame,
  messageFrame,
  parseClientFrame,
  planResume,
  type RequestId,
  resetFrame,
  type StreamPosition,
  subscribeAckFrame,
} from '../core/broker-protocol.js';
import {
  authorizeChannel,
  type ChannelPolicy,
  type ChannelRule,
  compileChannelRules,
  isValidChannelName,
} from '../core/channels.js';
import type { Principal } from '../core/principal.js';
import { type Bucket, fullBucket, isFull, type RateRule, take } from '../core/rate.js';
import type { ErrorCode } from '../protocol.js';
import { compileSchemaFile } from './schema.js';
import type { Session, Target } from './session.js';

/** The parts of a Session the broker uses (a real Session satisfies it). */
export interface BrokerSession {
  send(data: Buffer | string, isBinary: boolean): boolean;
  /** Sends a text payload shared by many sessions, framed once (a real Session has it). */
  sendShared?(payload: Buffer): boolean;
  close(code: ErrorCode): void;
  /**
   * Read at every operation and delivery. A changed identity (refresh, privilege drop) must be a new
   * Principal object, never a mutation: the broker re-runs the ACL when the object changes.
   */
  readonly info: { readonly principal: Principal | null };
}

/**
 * Verifies an in-band `auth.refresh` token and, on success, installs the new principal on the
 * session (same subject required). Resolves to undefined on success or the code to answer with.
 */
export type RefreshHook<S> = (session: S, token: string) => Promise<ErrorCode | undefined>;

/** Everything the broker needs besides its config slice. */
export interface BrokerOptions<S> {
  /** The route's limits.maxJsonDepth. */
  readonly maxJsonDepth: number;
  readonly refresh: RefreshHook<S>;
  /** The clock (ms); tests pass their own. */
  readonly now?: () => number;
  /** Compiles a rule's `schema` file; defaults to compileSchemaFile. */
  readonly compileSchema?: (path: string) => (value: unknown) => boolean;
  /** Told when the refresh hook throws (the client gets INTERNAL). */
  readonly onError?: (session: S, err: unknown) => void;
}

/** The result of a server-side publication. */
export type PublishResult =
  | { readonly ok: true; readonly delivered: number }
  | { readonly ok: false; readonly code: 'BAD_REQUEST' };

/** One session's subscription to one channel: the principal the ACL last granted it to. */
interface Subscription {
  principal: Principal | null;
}

/** Bytes charged per retained publication on top of its frame, against maxHistoryBytes. */
export const RETAINED_OVERHEAD_BYTES = 64;

/** One retained publication: the frame exactly as it was sent live. */
interface Retained {
  readonly seq: number;
  readonly at: number;
  readonly bytes: Buffer;
}

const costOf = (item: Retained): number => item.bytes.length + RETAINED_OVERHEAD_BYTES;

/**
 * A channel's retained publications, oldest first. Items only leave from the oldest end, so they
 * are always the contiguous seqs that end at the channel's latest one.
 */
class History {
  private items: (Retained | undefined)[] = [];
  private head = 0;
  /** Bytes charged against maxHistoryBytes. */
  bytes = 0;

  get size(): number {
    return this.items.length - this.head;
  }

  get oldest(): Retained | undefined {
    return this.items[this.head];
  }

  push(item: Retained): void {
    this.items.push(item);
    this.bytes += costOf(item);
  }

  /** Drops the oldest item; returns the bytes freed. */
  shift(): number {
    const item = this.items[this.head];
    if (!item) return 0;
    this.items[this.head++] = undefined;
    // Compact once the dropped prefix is half the array: amortised O(1) per item.
    if (this.head >= 32 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    this.bytes -= costOf(item);
    return costOf(item);
  }

  /** Drops everything; returns the bytes freed. */
  clear(): number {
    const freed = this.bytes;
    this.items = [];
    this.head = 0;
    this.bytes = 0;
    return freed;
  }

  /** A copy of the items with a seq above `seq`, oldest first. */
  after(seq: number): Retained[] {
    const oldest = this.oldest;
    if (!oldest) return [];
    return this.items.slice(this.head + Math.max(0, seq + 1 - oldest.seq)) as Retained[];
  }
}

interface Channel<S> {
  readonly name: string;
  readonly subscribers: Map<S, Subscription>;
  /**
   * Names this channel's seq space: the broker's epoch plus a random part drawn whenever the broker
   * (re)creates the channel, so a seq from a forgotten incarnation can never be taken for a current one.
   */
  readonly epoch: string;
  /** Publications since the channel was created; never restarts while the channel exists. */
  seq: number;
  readonly history: History;
  /** The last publication, or the last subscriber leaving: orders `retained`, starts the TTL. */
  activeAt: number;
}

interface Connection {
  readonly channels: Set<string>;
  /** Publish buckets per channel; full ones are swept when the map reaches maxSubscriptions. */
  readonly publishBuckets: Map<string, Bucket>;
  readonly errors: Bucket;
  refreshing: boolean;
  closing: boolean;
}

/** The broker of one route, over real sessions, as the route's target. */
export function createBroker(
  config: BrokerConfig,
  options: BrokerOptions<Session>,
): Broker<Session> & Target {
  return new Broker<Session>(config, options);
}

function isExpired(principal: Principal | null, now: number): boolean {
  return principal !== null && principal.expiresAt !== null && now >= principal.expiresAt;
}

/**
 * The broker of one route. Generic over the session so unit tests can drive it with fakes; the
 * gateway uses createBroker, whose return type proves a Broker over real sessions is a Target.
 */
export class Broker<S extends BrokerSession = Session> {
  /** Random per broker instance, i.e. per gateway start: a `since` from another instance gets a reset. */
  readonly epoch = randomBytes(8).toString('base64url');
  private readonly policy: ChannelPolicy;
  private readonly validators: ((value: unknown) => boolean)[] = [];
  /** Every channel that exists: it has subscribers, or it is kept in `retained`. */
  private readonly index = new Map<string, Channel<S>>();
  /**
   * Channels kept for resumption, least recently active first: the ones with retained history and
   * the ones without subscribers. Bounded by maxRetainedChannels; the head goes first.
   */
  private readonly retained = new Map<string, Channel<S>>();
  private historyBytes = 0;
  private readonly connections = new Map<S, Connection>();
  private readonly errorRule: RateRule;
  private readonly now: () => number;

  /** Compiles the channel rules and their schemas; throws naming the rule when one is invalid. */
  constructor(
    private readonly config: BrokerConfig,
    private readonly options: BrokerOptions<S>,
  ) {
    this.policy = compileChannelRules(config.channels, config.maxChannelNameBytes);
    const compile = options.compileSchema ?? compileSchemaFile;
    for (const rule of this.policy.rules) {
      if (rule.schema !== undefined) this.validators[rule.index] = compile(rule.schema);
    }
    // maxErrors error frames in a burst, refilled at maxErrors per minute (M-01).
    this.errorRule = { perSecond: config.maxErrors / 60, burst: config.maxErrors };
    this.now = options.now ?? Date.now;
  }

  /** Registers a new session (Target.onOpen). */
  onOpen(session: S): void {
    this.connectionOf(session);
  }

  /** Handles one client frame (Target.onMessage); binary frames close the connection (1003). */
  onMessage(session: S, data: Buffer, isBinary: boolean): void {
    if (isBinary) {
      session.close('UNSUPPORTED_DATA');
      return;
    }
    const conn = this.connectionOf(session);
    if (conn.closing) return;
    const now = this.now();
    const parsed = parseClientFrame(data, this.options.maxJsonDepth);
    if (!parsed.ok) {
      this.refuse(session, conn, parsed.code, parsed.id, now);
      return;
    }
    const op = parsed.op;
    switch (op.type) {
      case 'subscribe': {
        const result = this.subscribe(session, conn, op.channel, now);
        if (typeof result === 'string') this.refuse(session, conn, result, op.id, now);
        else if (session.send(subscribeAckFrame(op.id, result.epoch, result.seq), false) && op.since)
          this.resume(session, result, op.since, now);
        return;
      }
      case 'unsubscribe':
        this.unsubscribe(session, conn, op.channel, now);
        this.answer(session, conn, op.id, undefined, now);
        return;
      case 'publish':
        this.answer(session, conn, op.id, this.publishFrom(session, conn, op, now), now);
        return;
      case 'auth.refresh':
        this.refresh(session, conn, op.id, op.token);
        return;
      default:
        op satisfies never;
    }
  }

  /**
   * Removes the session from every channel. A channel left without subscribers is kept for
   * historyTtlMs when history is on (its subscribers may resume), and forgotten at once otherwise.
   */
  onClose(session: S): void {
    const conn = this.connections.get(session);
    if (!conn) return;
    this.connections.delete(session);
    const now = this.now();
    for (const name of conn.channels) this.detach(session, name, now);
  }

  /**
   * Server-side publication (gateway.publish and the publish endpoint): trusted, so no ACL, rate
   * or schema check. Refused only for an invalid channel name or data JSON cannot represent.
   */
  publish(channel: string, data: unknown, now = this.now()): PublishResult {
    if (!isValidChannelName(channel, this.config.maxChannelNameBytes))
      return { ok: false, code: 'BAD_REQUEST' };
    let json: string | undefined;
    try {
      json = JSON.stringify(data);
    } catch {
      return { ok: false, code: 'BAD_REQUEST' }; // a cycle or a BigInt
    }
    if (json === undefined) return { ok: false, code: 'BAD_REQUEST' };
    return { ok: true, delivered: this.deliver(channel, json, now) };
  }

  /** True when publish() would accept this channel name on this route; delivers nothing. */
  acceptsChannel(channel: string): boolean {
    return isValidChannelName(channel, this.config.maxChannelNameBytes);
  }

  /**
   * Re-runs the ACL for each of the session's subscriptions now, dropping the ones its principal
   * no longer grants (with an error frame naming the channel). Call after the principal changed.
   */
  recheck(session: S): void {
    const conn = this.connections.get(session);
    if (!conn) return;
    const principal = session.info.principal;
    const now = this.now();
    for (const name of conn.channels) {
      const sub = this.index.get(name)?.subscribers.get(session);
      if (sub && sub.principal !== principal) this.regrant(session, conn, name, sub, principal, now);
    }
  }

  /** Number of sessions subscribed to a channel. */
  subscriberCount(channel: string): number {
    return this.index.get(channel)?.subscribers.size ?? 0;
  }

  /** Number of channels with at least one subscriber. */
  get channelCount(): number {
    let n = 0;
    for (const channel of this.index.values()) if (channel.subscribers.size > 0) n++;
    return n;
  }

  /** Number of channels kept for resumption (with retained history, or without subscribers). */
  get retainedChannelCount(): number {
    return this.retained.size;
  }

  /** Bytes of retained publications, as charged against maxHistoryBytes. */
  get retainedBytes(): number {
    return this.historyBytes;
  }

  /** Number of sessions the broker holds state for. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** The channels a session is subscribed to. */
  subscriptionsOf(session: S): string[] {
    return [...(this.connections.get(session)?.channels ?? [])];
  }

  private connectionOf(session: S): Connection {
    let conn = this.connections.get(session);
    if (!conn) {
      conn = {
        channels: new Set(),
        publishBuckets: new Map(),
        errors: fullBucket(this.errorRule, this.now()),
        refreshing: false,
        closing: false,
      };
      this.connections.set(session, conn);
    }
    return conn;
  }

  /** Answers a client's request with an error; past maxErrors the connection is closed instead. */
  private refuse(
    session: S,
    conn: Connection,
    code: ErrorCode,
    id: RequestId | undefined,
    now: number,
  ): void {
    if (take(this.errorRule, conn.errors, now) !== 0) {
      conn.closing = true;
      session.close('TOO_MANY_ERRORS');
      return;
    }
    session.send(errorFrame(code, id), false);
  }

  /** Acknowledges a request, or refuses it with its code. */
  private answer(
    session: S,
    conn: Connection,
    id: RequestId,
    code: ErrorCode | undefined,
    now: number,
  ): void {
    if (code) this.refuse(session, conn, code, id, now);
    else session.send(ackFrame(id), false);
  }

  /** Subscribes the session; returns the channel (for the ack and a resume) or the refusal code. */
  private subscribe(session: S, conn: Connection, name: string, now: number): ErrorCode | Channel<S> {
    const principal = session.info.principal;
    if (isExpired(principal, now)) return 'CREDENTIAL_EXPIRED';
    const verdict = authorizeChannel(this.policy, principal, name, 'subscribe');
    if (!verdict.ok) return verdict.code;
    this.sweep(now); // a channel idle past its TTL is forgotten before it could answer a resume
    let channel = this.index.get(name);
    const existing = channel?.subscribers.get(session);
    if (channel && existing) {
      existing.principal = principal; // a repeated subscribe is acknowledged once more, not doubled (M-08)
      return channel;
    }
    if (conn.channels.size >= this.config.maxSubscriptions) return 'TOO_MANY_SUBSCRIPTIONS';
    if (!channel) {
      channel = {
        name,
        subscribers: new Map(),
        epoch: `${this.epoch}.${randomBytes(6).toString('base64url')}`,
        seq: 0,
        history: new History(),
        activeAt: now,
      };
      this.index.set(name, channel);
    }
    channel.subscribers.set(session, { principal });
    conn.channels.add(name);
    return channel;
  }

  /**
   * After the ack of a subscribe with `since`: the gap or reset signal, then the retained
   * publications the client missed, in order. All synchronous, so no live publication can come
   * between the ack and the end of the replay, and live ones continue at the ack's seq + 1.
   */
  private resume(session: S, channel: Channel<S>, since: StreamPosition, now: number): void {
    this.expire(channel, now);
    const oldest = channel.history.oldest?.seq ?? channel.seq + 1;
    const plan = planResume(since, channel.epoch, channel.seq, oldest);
    let after: number;
    switch (plan.kind) {
      case 'current':
        return;
      case 'reset':
        session.send(resetFrame(channel.name), false);
        return;
      case 'gap':
        if (!session.send(gapFrame(channel.name, plan.from, plan.to), false)) return;
        after = plan.to;
        break;
      case 'replay':
        after = plan.after;
        break;
      default:
        plan satisfies never;
        return;
    }
    const sub = channel.subscribers.get(session);
    if (!sub) return;
    // Through the same gate as live delivery (ACL, expiry, send-queue cap); stop at the first refusal,
    // because skipping one would be a silent loss.
    for (const item of channel.history.after(after)) {
      if (!this.sendTo(session, channel.name, sub, item.bytes, now)) return;
    }
  }

  private unsubscribe(session: S, conn: Connection, channel: string, now: number): void {
    if (conn.channels.delete(channel)) this.detach(session, channel, now);
  }

  private detach(session: S, name: string, now: number): void {
    const channel = this.index.get(name);
    if (!channel) return;
    channel.subscribers.delete(session);
    if (channel.subscribers.size > 0) return;
    // Kept so the subscriber that just left can resume against the same seq space (M-07).
    if (this.config.historySize > 0) this.touch(channel, now);
    else this.index.delete(name);
  }

  /** Marks a channel active now: it moves to the end of `retained`, and the least recent go over the cap. */
  private touch(channel: Channel<S>, now: number): void {
    channel.activeAt = now;
    this.retained.delete(channel.name);
    this.retained.set(channel.name, channel);
    for (const lru of this.retained.values()) {
      if (this.retained.size <= this.config.maxRetainedChannels || lru === channel) break;
      this.forget(lru);
    }
  }

  /** Drops a channel's history; a channel without subscribers is forgotten (it returns with a new epoch). */
  private forget(channel: Channel<S>): void {
    this.historyBytes -= channel.history.clear();
    this.retained.delete(channel.name);
    if (channel.subscribers.size === 0 && this.index.get(channel.name) === channel)
      this.index.delete(channel.name);
  }

  /** Drops the channel's publications older than historyTtlMs. */
  private expire(channel: Channel<S>, now: number): void {
    const ttl = this.config.historyTtlMs;
    for (let item = channel.history.oldest; item && item.at + ttl <= now; item = channel.history.oldest)
      this.historyBytes -= channel.history.shift();
  }

  /** Forgets the channels idle for historyTtlMs; `retained` is in activity order, so only its head is read. */
  private sweep(now: number): void {
    for (const channel of this.retained.values()) {
      if (channel.activeAt + this.config.historyTtlMs > now) return;
      this.forget(channel);
    }
  }

  /** Keeps a publication for resumption, then enforces historySize, the TTL and both route-wide caps. */
  private retain(channel: Channel<S>, bytes: Buffer, now: number): void {
    channel.history.push({ seq: channel.seq, at: now, bytes });
    this.historyBytes += bytes.length + RETAINED_OVERHEAD_BYTES;
    while (channel.history.size > this.config.historySize) this.historyBytes -= channel.history.shift();
    this.expire(channel, now);
    this.touch(channel, now);
    this.sweep(now);
    // Over the byte budget: trim the least recently published channels first, oldest publications
    // first; this channel is the most recent, so it is trimmed only when it alone is over.
    for (const lru of this.retained.values()) {
      if (this.historyBytes <= this.config.maxHistoryBytes) return;
      while (lru.history.size > 0 && this.historyBytes > this.config.maxHistoryBytes)
        this.historyBytes -= lru.history.shift();
      if (lru.history.size === 0) this.forget(lru);
    }
  }

  private publishFrom(
    session: S,
    conn: Connection,
    op: ClientOp & { type: 'publish' },
    now: number,
  ): ErrorCode | undefined {
    const principal = session.info.principal;
    if (isExpired(principal, now)) return 'CREDENTIAL_EXPIRED';
    const verdict = authorizeChannel(this.policy, principal, op.channel, 'publish');
    if (!verdict.ok) return verdict.code;
    // Rate before schema: a flood is turned away before it costs a validation.
    if (!this.takePublishToken(conn, verdict.rule, op.channel, now)) return 'RATE_LIMITED';
    const validate = this.validators[verdict.rule.index];
    if (validate && !validate(op.data)) return 'SCHEMA_VIOLATION';
    // Parsed from JSON, so it serialises; once, for every subscriber.
    this.deliver(op.channel, JSON.stringify(op.data), now);
    return undefined;
  }

  private takePublishToken(conn: Connection, rule: ChannelRule, channel: string, now: number): boolean {
    const rate: RateRule = { perSecond: rule.publishPerSecond, burst: rule.publishBurst };
    let bucket = conn.publishBuckets.get(channel);
    if (!bucket) {
      // Bounded per connection: full buckets carry no state worth keeping, so sweep them first.
      if (conn.publishBuckets.size >= this.config.maxSubscriptions) {
        for (const [name, b] of conn.publishBuckets)
          if (isFull(rate, b, now)) conn.publishBuckets.delete(name);
        if (conn.publishBuckets.size >= this.config.maxSubscriptions) return false;
      }
      bucket = fullBucket(rate, now);
      conn.publishBuckets.set(channel, bucket);
    }
    return take(rate, bucket, now) === 0;
  }

  private deliver(name: string, dataJson: string, now: number): number {
    const channel = this.index.get(name);
    if (!channel) return 0; // nobody subscribed and nothing kept for resumption
    channel.seq++;
    // One string, one Buffer, the same bytes for every subscriber (and for a replay): ws then frames
    // a Buffer without re-encoding the string per socket.
    const bytes = Buffer.from(messageFrame(name, channel.seq, dataJson));
    if (this.config.historySize > 0) this.retain(channel, bytes, now);
    let delivered = 0;
    for (const [session, sub] of channel.subscribers) {
      if (this.sendTo(session, name, sub, bytes, now)) delivered++;
    }
    return delivered;
  }

  /** Sends one publication to one subscriber, live or replayed; false when it was not sent. */
  private sendTo(session: S, channel: string, sub: Subscription, bytes: Buffer, now: number): boolean {
    const principal = session.info.principal;
    // The ACL again at delivery: rules are fixed and principals immutable, so the verdict only
    // changes when the session's principal object was replaced (refresh, privilege drop).
    if (sub.principal !== principal) {
      const conn = this.connections.get(session);
      if (!conn || !this.regrant(session, conn, channel, sub, principal, now)) return false;
    }
    if (isExpired(principal, now)) return false; // no delivery after exp; the gateway closes it
    return session.sendShared ? session.sendShared(bytes) : session.send(bytes, false);
  }

  /** Re-authorizes one subscription for a new principal; drops it and tells the client when refused. */
  private regrant(
    session: S,
    conn: Connection,
    channel: string,
    sub: Subscription,
    principal: Principal | null,
    now: number,
  ): boolean {
    if (authorizeChannel(this.policy, principal, channel, 'subscribe').ok) {
      sub.principal = principal;
      return true;
    }
    conn.channels.delete(channel);
    this.detach(session, channel, now);
    // Not counted against maxErrors: the client did nothing wrong.
    session.send(errorFrame('FORBIDDEN', undefined, channel), false);
    return false;
  }

  private refresh(session: S, conn: Connection, id: RequestId, token: string): void {
    if (conn.refreshing) {
      this.refuse(session, conn, 'RATE_LIMITED', id, this.now());
      return;
    }
    conn.refreshing = true;
    let outcome: Promise<ErrorCode | undefined>;
    try {
      outcome = this.options.refresh(session, token);
    } catch (err) {
      outcome = Promise.reject(err);
    }
    outcome.then(
      (code) => this.refreshed(session, conn, id, code),
      (err: unknown) => {
        this.options.onError?.(session, err);
        this.refreshed(session, conn, id, 'INTERNAL');
      },
    );
  }

  private refreshed(session: S, conn: Connection, id: RequestId, code: ErrorCode | undefined): void {
    conn.refreshing = false;
    if (this.connections.get(session) !== conn || conn.closing) return; // closed meanwhile
    this.answer(session, conn, id, code, this.now());
    if (!code) this.recheck(session);
  }
}
