// The built-in pub/sub broker (route target `broker`, subprotocol portcullis.v1): a channel index,
// subscribe/unsubscribe/publish with the channel ACL, per-channel schemas and publish rates, and
// fan-out that serialises each publication once and sends the same bytes to every subscriber.
import type { BrokerConfig } from '../config/schema.js';
import {
  ackFrame,
  type ClientOp,
  errorFrame,
  messageFrame,
  parseClientFrame,
  type RequestId,
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

interface Channel<S> {
  readonly subscribers: Map<S, Subscription>;
  /** Publications on this channel since it last had no subscriber. */
  seq: number;
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
  private readonly policy: ChannelPolicy;
  private readonly validators: ((value: unknown) => boolean)[] = [];
  private readonly index = new Map<string, Channel<S>>();
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
      case 'subscribe':
        this.answer(session, conn, op.id, this.subscribe(session, conn, op.channel, now), now);
        return;
      case 'unsubscribe':
        this.unsubscribe(session, conn, op.channel);
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

  /** Removes the session from every channel; channels left without subscribers are forgotten. */
  onClose(session: S): void {
    const conn = this.connections.get(session);
    if (!conn) return;
    this.connections.delete(session);
    for (const name of conn.channels) this.detach(session, name);
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
    for (const name of conn.channels) {
      const sub = this.index.get(name)?.subscribers.get(session);
      if (sub && sub.principal !== principal) this.regrant(session, conn, name, sub, principal);
    }
  }

  /** Number of sessions subscribed to a channel. */
  subscriberCount(channel: string): number {
    return this.index.get(channel)?.subscribers.size ?? 0;
  }

  /** Number of channels with at least one subscriber. */
  get channelCount(): number {
    return this.index.size;
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

  private subscribe(session: S, conn: Connection, channel: string, now: number): ErrorCode | undefined {
    const principal = session.info.principal;
    if (isExpired(principal, now)) return 'CREDENTIAL_EXPIRED';
    const verdict = authorizeChannel(this.policy, principal, channel, 'subscribe');
    if (!verdict.ok) return verdict.code;
    let entry = this.index.get(channel);
    const existing = entry?.subscribers.get(session);
    if (existing) {
      existing.principal = principal; // a repeated subscribe is acknowledged once more, not doubled (M-08)
    } else {
      if (conn.channels.size >= this.config.maxSubscriptions) return 'TOO_MANY_SUBSCRIPTIONS';
      if (!entry) {
        entry = { subscribers: new Map(), seq: 0 };
        this.index.set(channel, entry);
      }
      entry.subscribers.set(session, { principal });
      conn.channels.add(channel);
    }
    return undefined;
  }

  private unsubscribe(session: S, conn: Connection, channel: string): void {
    if (conn.channels.delete(channel)) this.detach(session, channel);
  }

  private detach(session: S, channel: string): void {
    const entry = this.index.get(channel);
    if (!entry) return;
    entry.subscribers.delete(session);
    if (entry.subscribers.size === 0) this.index.delete(channel);
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

  private deliver(channel: string, dataJson: string, now: number): number {
    const entry = this.index.get(channel);
    if (!entry) return 0;
    entry.seq++;
    // One string, one Buffer, the same bytes for every subscriber: ws then frames a Buffer without
    // re-encoding the string per socket.
    const bytes = Buffer.from(messageFrame(channel, entry.seq, dataJson));
    let delivered = 0;
    for (const [session, sub] of entry.subscribers) {
      const principal = session.info.principal;
      // The ACL again at delivery: rules are fixed and principals immutable, so the verdict only
      // changes when the session's principal object was replaced (refresh, privilege drop).
      if (sub.principal !== principal) {
        const conn = this.connections.get(session);
        if (!conn || !this.regrant(session, conn, channel, sub, principal)) continue;
      }
      if (isExpired(principal, now)) continue; // no delivery after exp; the gateway closes it
      if (session.send(bytes, false)) delivered++;
    }
    return delivered;
  }

  /** Re-authorizes one subscription for a new principal; drops it and tells the client when refused. */
  private regrant(
    session: S,
    conn: Connection,
    channel: string,
    sub: Subscription,
    principal: Principal | null,
  ): boolean {
    if (authorizeChannel(this.policy, principal, channel, 'subscribe').ok) {
      sub.principal = principal;
      return true;
    }
    conn.channels.delete(channel);
    this.detach(session, channel);
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
