// The upstream target (gateway mode): before the client's 101, open a real WebSocket to an upstream
// with the ws client (which checks the upstream's 101: status, Upgrade, Sec-WebSocket-Accept, a
// subprotocol among those offered; P-02); after it, relay every admitted message both ways with
// backpressure across the legs (P-06) and map closes safely (P-04). Frames to the upstream are
// masked with fresh CSPRNG keys by ws (P-05); client frames are only read once the upstream has
// answered, because the gateway answers the client after prepare() (P-07). The legs after the
// 101 are relay-leg.ts; TLS trust is upstream-tls.ts; choosing and checking upstreams is upstream-pool.ts.
import WebSocket, { type WebSocketServer } from 'ws';
import type { RouteConfig, UpstreamConfig } from '../config/schema.js';
import {
  AUTHENTICATOR_HEADER,
  forwardHeaders,
  headerSafe,
  IDENTITY_HEADER,
  SUBJECT_HEADER,
} from '../core/forward-headers.js';
import type { Principal } from '../core/principal.js';
import { type ConnectFailure, connectVerdict, offeredUpstream, upstreamTarget } from '../core/relay.js';
import type { ErrorCode } from '../protocol.js';
import { QUERY_TOKEN_PARAM } from './auth/token.js';
import { type IdentityKeys, type SigningKey, signIdentity } from './identity-token.js';
import { Leg, type LegOwner } from './relay-leg.js';
import type { PrepareContext, PrepareResult, Session, Target } from './session.js';
import { httpProbe, type Upstream, UpstreamPool, websocketProbe } from './upstream-pool.js';
import { tlsOptions } from './upstream-tls.js';

// Query parameters that carry a credential the gateway consumed; never replayed upstream.
const CREDENTIAL_PARAMS = [QUERY_TOKEN_PARAM, 'ticket'];
// Errors that prove no byte reached an application, so another upstream may be tried.
const REFUSED = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

/** What the relay needs besides its route. */
export interface RelayOptions {
  /** The gateway's identity keys (one per gateway, shared by every upstream route). */
  readonly keys: IdentityKeys;
  /** limits.closeTimeoutMs: how long an upstream close handshake may take. */
  readonly closeTimeoutMs: number;
  /** Operator log of upstream failures; never sent to a client. */
  readonly log?: (fields: Record<string, unknown>, message: string) => void;
}

/**
 * Builds the relay of a route with an `upstream`. Reads the CA, client certificate and identity key
 * files now; throws `key: detail` naming the upstream key at fault.
 */
export function createRelay(route: RouteConfig, options: RelayOptions): Relay {
  const config = route.upstream;
  if (!config) throw new Error('upstream: missing');
  if (config.maxQueueBytes < route.limits.maxMessageBytes) {
    throw new Error(
      'maxQueueBytes: must be at least limits.maxMessageBytes, or a maximal message could never pass',
    );
  }
  return new Relay(route, config, options);
}

type Attempt =
  | { ok: true; leg: Leg }
  | { ok: false; failure: ConnectFailure; status?: number; detail: string };

/** The upstream target of one route. */
export class Relay implements Target, LegOwner {
  readonly pool: UpstreamPool;
  private readonly legs = new Map<Session, Leg>();
  private readonly targets = new Map<Upstream, { path: string | undefined; query: string }>();
  private readonly tls: Record<string, unknown>;
  private readonly signingKey: SigningKey | undefined;
  private readonly allow: ReadonlySet<string>;

  constructor(
    readonly route: RouteConfig,
    readonly config: UpstreamConfig,
    private readonly options: RelayOptions,
  ) {
    this.tls = tlsOptions(config);
    this.allow = new Set(config.passHeaders.map((h) => h.toLowerCase()));
    if (config.identityHeader) {
      try {
        this.signingKey =
          config.identityKeyFile === undefined
            ? options.keys.generatedKey()
            : options.keys.fromFile(config.identityKeyFile);
      } catch (err) {
        throw new Error(`identityKeyFile: ${(err as Error).message}`);
      }
    }
    const raw = typeof config.url === 'string' ? [config.url] : config.url;
    const urls = raw.map((u) => new URL(u));
    const check = config.healthCheck;
    this.pool = new UpstreamPool(urls, {
      balance: config.balance,
      ejectAfterFailures: config.ejectAfterFailures,
      ejectForMs: config.ejectForMs,
      healthCheck: check && {
        intervalMs: check.intervalMs,
        healthyAfter: check.healthyAfter,
        unhealthyAfter: check.unhealthyAfter,
        probe: (u) => {
          const probe = { path: check.path, timeoutMs: check.timeoutMs, tls: this.tls };
          return check.type === 'http' ? httpProbe(u, probe) : websocketProbe(u, probe, route.subprotocols);
        },
      },
    });
    this.pool.upstreams.forEach((u, i) => {
      // Like nginx proxy_pass: no path in the URL passes the client's path; any path replaces it.
      const explicitPath = /^wss?:\/\/[^/?#]*[/]/i.test(raw[i] as string);
      this.targets.set(u, { path: explicitPath ? u.url.pathname : undefined, query: u.url.search.slice(1) });
    });
  }

  /** Opens the upstream leg; see Target.prepare. */
  async prepare(context: PrepareContext): Promise<PrepareResult> {
    const offered = offeredUpstream(context.headers.get('sec-websocket-protocol'), this.route.subprotocols);
    const headers = forwardHeaders({
      headers: context.headers,
      allow: this.allow,
      forwarded: this.config.forwardedHeaders,
      remote: context.remote,
      encrypted: context.encrypted,
      host: context.host,
      identity: this.identityHeaders(context.principal),
    });
    const tried = new Set<Upstream>();
    let code: ErrorCode = 'UPSTREAM_UNAVAILABLE';
    for (let attempt = 0; attempt <= this.config.retries; attempt++) {
      const upstream = this.pool.pick(Date.now(), tried);
      if (!upstream) break;
      tried.add(upstream);
      const at = this.targets.get(upstream) as { path: string | undefined; query: string };
      const target = upstreamTarget(
        at,
        context.path,
        this.config.passQuery ? context.query : '',
        CREDENTIAL_PARAMS,
      );
      const result = await this.connect(upstream, target, offered, headers);
      if (result.ok) {
        this.pool.report(upstream, true, Date.now());
        const leg = result.leg;
        return { ok: true, subprotocol: leg.ws.protocol || undefined, state: leg, abort: () => leg.abort() };
      }
      const verdict = connectVerdict(result.failure, result.status);
      this.pool.report(upstream, false, Date.now(), verdict.unhealthy);
      this.options.log?.(
        {
          event: 'upstream',
          outcome: 'failed',
          route: this.route.path,
          upstream: upstream.url.host,
          failure: result.failure,
          ...(result.status === undefined ? {} : { status: result.status }),
          detail: result.detail,
        },
        'upstream handshake failed',
      );
      code = verdict.code;
      if (!verdict.retryable) break;
    }
    return { ok: false, code };
  }

  onOpen(session: Session, prepared?: unknown): void {
    const leg = prepared as Leg;
    this.legs.set(session, leg);
    leg.attach(session);
  }

  onMessage(session: Session, data: Buffer, isBinary: boolean): void {
    this.legs.get(session)?.fromClient(data, isBinary);
  }

  onClose(session: Session): void {
    const leg = this.legs.get(session);
    if (!leg) return;
    this.legs.delete(session);
    leg.clientEnded();
  }

  /** Starts the health checks (when configured). */
  start(): void {
    this.pool.start();
  }

  /** Stops the health checks (the route was replaced or the gateway stopped); open legs stay. */
  close(): void {
    this.pool.close();
  }

  /** @internal */
  logBroken(leg: Leg, err: Error): void {
    this.options.log?.(
      {
        event: 'upstream',
        outcome: 'broken',
        route: this.route.path,
        upstream: leg.upstream.url.host,
        err: (err as NodeJS.ErrnoException).code ?? err.message,
      },
      'upstream leg failed',
    );
  }

  private identityHeaders(principal: Principal | null): [string, string][] {
    // Anonymous routes forward no identity: the absence of the header is the statement.
    if (principal === null) return [];
    const out: [string, string][] = [];
    if (this.signingKey) {
      const token = signIdentity(this.signingKey, {
        principal,
        audience: this.config.identityAudience ?? this.route.path,
        ttlSec: this.config.identityTtlSec,
        claims: this.config.identityClaims,
        now: Date.now(),
      });
      out.push([IDENTITY_HEADER, token]);
    }
    if (this.config.plainIdentityHeaders) {
      out.push([SUBJECT_HEADER, headerSafe(principal.subject)]);
      out.push([AUTHENTICATOR_HEADER, headerSafe(principal.authenticator)]);
    }
    return out;
  }

  private connect(
    upstream: Upstream,
    target: string,
    offered: string[],
    headers: Record<string, string>,
  ): Promise<Attempt> {
    return new Promise<Attempt>((resolve) => {
      const timeoutMs = this.config.connectTimeoutMs;
      let settled = false;
      let leg: Leg | undefined;
      const settle = (attempt: Attempt) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(attempt);
      };
      let ws: WebSocket;
      try {
        ws = new WebSocket(`${upstream.url.protocol}//${upstream.url.host}${target}`, offered, {
          ...this.tls,
          headers,
          handshakeTimeout: timeoutMs,
          maxPayload: this.route.limits.maxMessageBytes,
          maxFragments: this.route.limits.maxFragments,
          maxBufferedChunks: this.route.limits.maxBufferedChunks,
          followRedirects: false,
          perMessageDeflate: false,
          skipUTF8Validation: false,
          autoPong: true,
          allowSynchronousEvents: true,
          closeTimeout: this.options.closeTimeoutMs,
          maxPendingAutoPongs: 60,
        } as WebSocket.ClientOptions);
      } catch (err) {
        // A request Node refuses to write (a header value it rejects): nothing was sent.
        resolve({ ok: false, failure: 'network', detail: (err as Error).message });
        return;
      }
      upstream.active++;
      // ws's handshakeTimeout restarts on every byte; this one bounds the whole handshake.
      const timer = setTimeout(() => {
        settle({ ok: false, failure: 'timeout', detail: `no 101 within ${timeoutMs} ms` });
        ws.terminate();
      }, timeoutMs);
      ws.on('error', (err: NodeJS.ErrnoException) => {
        if (leg) leg.onError(err);
        else settle({ ok: false, failure: failureOf(err), detail: err.code ?? err.message });
      });
      // Any answer but a 101: nothing of it is read or relayed, and its connection is closed rather
      // than reused, so bytes behind it cannot be taken for a tunnel (P-01, P-07).
      ws.once('unexpected-response', (req, res) => {
        settle({
          ok: false,
          failure: 'status',
          status: res.statusCode ?? 0,
          detail: `HTTP ${res.statusCode}`,
        });
        res.destroy();
        req.destroy();
        ws.terminate();
      });
      ws.once('open', () => {
        // Hold the upstream until the client's 101 is written: what it sends meanwhile waits in TCP.
        ws.pause();
        leg = new Leg(this, ws, upstream);
        settle({ ok: true, leg });
      });
      ws.on('message', (data, isBinary) => leg?.fromUpstream(data as Buffer, isBinary));
      ws.on('close', (code) => {
        upstream.active--;
        if (leg) leg.onUpstreamClose(code);
        else settle({ ok: false, failure: 'network', detail: 'closed during the handshake' });
      });
    });
  }
}

/**
 * Ties a relay's health checks to its route server: started now, stopped when the server closes
 * (a reload replaced the route, or the gateway stopped). Returns the server.
 */
export function bindRelay(wss: WebSocketServer, relay: Relay | undefined): WebSocketServer {
  if (relay) {
    relay.start();
    wss.once('close', () => relay.close());
  }
  return wss;
}

function failureOf(err: NodeJS.ErrnoException): ConnectFailure {
  if (err.code !== undefined && REFUSED.has(err.code)) return 'refused';
  if (/timed out/i.test(err.message)) return 'timeout';
  // ws's own checks of the 101 (RFC 6455 section 4.1): accept, Upgrade, subprotocol, extensions.
  if (/^(Invalid|Server sent)/.test(err.message)) return 'handshake';
  return 'network';
}
