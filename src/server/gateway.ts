// The gateway: owns the listener, the compiled policy, the sessions and the engine, and turns each
// upgrade request into exactly one audited decision. Decisions are made in core/; this file only
// translates requests, calls core, and writes the answer.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { DestinationStream } from 'pino';
import { WebSocketServer } from 'ws';
import { parseConfig } from '../config/load.js';
import type { Config, ConfigInput, RouteConfig } from '../config/schema.js';
import {
  checkHandshake,
  checkPlainRequest,
  compileHandshakePolicy,
  type HandshakePolicy,
  type HandshakeRequest,
  type RoutePolicy,
} from '../core/handshake.js';
import type { RateRule } from '../core/rate.js';
import { openSession, type SessionRules, sessionRules } from '../core/session.js';
import { MemoryEngine } from '../engine/memory.js';
import type { Engine } from '../engine/types.js';
import { ensureDevCertificates } from '../pki/dev.js';
import { ERRORS, type ErrorCode } from '../protocol.js';
import {
  type AuditLogger,
  type CloseEvent,
  createLogger,
  type HandshakeEvent,
  logSafe,
  type TlsSummary,
} from './audit.js';
import { clientIp, compileTrustedProxies, type TrustedProxies } from './client-ip.js';
import { type RefusalOptions, sendRefusal, writeRefusal } from './http.js';
import {
  clientCertProblem,
  createListener,
  secureContextOptions,
  type TlsFiles,
  tlsSocketOf,
  watchFiles,
} from './listen.js';
import { compileSchemaFile, schemaTarget } from './schema.js';
import { Session, type SessionHost, type Target } from './session.js';
import { resolutionFor, Ticker } from './ticker.js';

/** Options for embedding the gateway as a library. */
export interface GatewayOptions {
  /** Where audit and operational log lines go (default: stdout). */
  readonly logDestination?: DestinationStream;
  /** A ready logger; overrides logDestination. */
  readonly logger?: AuditLogger;
  /** Shared state backend (default: in memory). */
  readonly engine?: Engine;
}

/** What listen() reports. */
export interface ListenInfo {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Set in tls.dev mode: the local CA a client must trust. */
  readonly devCaPath?: string;
  readonly devCreated?: boolean;
}

/** Counters that metrics and the admin API read. */
export interface GatewayStats {
  handshakesAccepted: number;
  handshakesRejected: number;
  rejectedByCode: Partial<Record<ErrorCode, number>>;
  closedByCode: Partial<Record<ErrorCode, number>>;
  tlsRejected: number;
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
}

/** A running gateway. */
export interface Gateway {
  /** Starts listening; resolves with the bound URL. */
  listen(): Promise<ListenInfo>;
  /** Stops accepting, closes every connection with 1001 and resolves when drained (or at the deadline). */
  close(options?: { drainTimeoutMs?: number }): Promise<void>;
  /** Re-reads certificates and, when given, applies a new config to new connections. */
  reload(config?: Config | ConfigInput): Promise<void>;
  /** The bound address, once listening. */
  address(): AddressInfo | null;
  /** The current (frozen) configuration. */
  readonly config: Config;
  readonly stats: GatewayStats;
  /** Open WebSocket connections. */
  connectionCount(): number;
}

interface CompiledRoute {
  readonly policy: RoutePolicy;
  readonly rules: SessionRules;
  readonly wss: WebSocketServer;
  readonly target: Target;
}

const ECHO: Target = {
  onMessage(session, data, isBinary) {
    session.send(data, isBinary);
  },
};

const kChosenProtocol = Symbol('portcullis.subprotocol');
type TaggedRequest = IncomingMessage & { [kChosenProtocol]?: string | false };

/** Creates a gateway from a config object (validated here) or an already validated Config. */
export function createGateway(config: Config | ConfigInput, options: GatewayOptions = {}): Gateway {
  return new PortcullisGateway(parseConfig(config), options);
}

class PortcullisGateway implements Gateway, SessionHost {
  config: Config;
  readonly stats: GatewayStats = {
    handshakesAccepted: 0,
    handshakesRejected: 0,
    rejectedByCode: {},
    closedByCode: {},
    tlsRejected: 0,
    messagesIn: 0,
    messagesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
  };
  private readonly log: AuditLogger;
  private readonly engine: Engine;
  private server: Server | undefined;
  private files: TlsFiles | undefined;
  private policy!: HandshakePolicy;
  private routes = new Map<string, CompiledRoute>();
  private proxies!: TrustedProxies;
  private handshakeRule!: RateRule;
  private hsts: string | undefined;
  private readonly ticker = new Ticker<Session>(1_000);
  private pending = 0;
  private nextId = 1;
  private draining = false;
  private unwatch: (() => void) | undefined;
  private readonly refusedSockets = new WeakSet<Duplex>();

  constructor(config: Config, options: GatewayOptions) {
    this.config = config;
    this.log = options.logger ?? createLogger(config.log.level, options.logDestination);
    this.engine = options.engine ?? new MemoryEngine();
    this.compile(config);
  }

  get closeTimeoutMs(): number {
    return this.config.limits.closeTimeoutMs;
  }

  address(): AddressInfo | null {
    const address = this.server?.address();
    return address && typeof address === 'object' ? address : null;
  }

  connectionCount(): number {
    return this.ticker.members.size;
  }

  async listen(): Promise<ListenInfo> {
    if (this.server) throw new Error('already listening');
    const config = this.config;
    let dev: { caCertPath: string; created: boolean } | undefined;
    if (config.tls !== false) {
      let { cert, key } = config.tls;
      if ((!cert || !key) && config.tls.dev) {
        const made = await ensureDevCertificates(config.tls.devDir);
        cert = made.certPath;
        key = made.keyPath;
        dev = { caCertPath: made.caCertPath, created: made.created };
      }
      this.files = {
        cert: cert as string,
        key: key as string,
        clientCa: config.tls.clientCa,
        crl: config.tls.crl,
      };
    }
    const server = createListener(config, this.files);
    this.server = server;
    this.attach(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.listen.port, config.listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) =>
      this.log.error({ event: 'server_error', err: err.message }, 'listener error'),
    );
    if (this.files) {
      const files = this.files;
      const paths = [files.cert, files.key, files.clientCa, files.crl].filter((p): p is string => !!p);
      this.unwatch = watchFiles(paths, () => this.reloadCertificates('watch'));
    }
    const address = this.address() as AddressInfo;
    const scheme = config.tls === false ? 'ws' : 'wss';
    const hostForUrl = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const url = `${scheme}://${hostForUrl}:${address.port}`;
    this.log.info({ event: 'listening', url }, 'listening');
    return {
      url,
      host: address.address,
      port: address.port,
      ...(dev ? { devCaPath: dev.caCertPath, devCreated: dev.created } : {}),
    };
  }

  async close(options: { drainTimeoutMs?: number } = {}): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    const deadline = options.drainTimeoutMs ?? this.config.limits.drainTimeoutMs;
    const server = this.server;
    const stopped = server
      ? new Promise<void>((resolve) => server.close(() => resolve()))
      : Promise.resolve();
    server?.closeIdleConnections();
    for (const session of this.ticker.members) session.close('SHUTTING_DOWN');
    const started = Date.now();
    while (this.ticker.members.size > 0 && Date.now() - started < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const session of this.ticker.members) session.ws.terminate();
    server?.closeAllConnections();
    await stopped;
    this.unwatch?.();
    for (const route of this.routes.values()) route.wss.close();
    await this.engine.close();
    this.log.info({ event: 'stopped' }, 'stopped');
    await new Promise<void>((resolve) => this.log.flush(() => resolve()));
  }

  async reload(config?: Config | ConfigInput): Promise<void> {
    if (config) {
      const next = parseConfig(config);
      const unchangeable = ['listen', 'tls', 'engine'] as const;
      for (const key of unchangeable) {
        if (JSON.stringify(next[key]) !== JSON.stringify(this.config[key])) {
          this.log.warn({ event: 'reload', key }, `${key} changes need a restart; keeping the running value`);
        }
      }
      const merged = parseConfig({
        ...next,
        listen: this.config.listen,
        tls: this.config.tls,
        engine: this.config.engine,
      });
      const old = this.routes;
      this.compile(merged);
      this.config = merged;
      // Open connections keep the policy they were admitted under; only idle route servers go.
      for (const route of old.values()) route.wss.close();
      this.log.info({ event: 'reload', routes: merged.routes.length }, 'configuration reloaded');
    }
    this.reloadCertificates('reload');
  }

  // Builds everything first and swaps it in at the end, so a config that fails to compile (a bad
  // schema file, say) leaves the running policy untouched.
  private compile(config: Config): void {
    for (const route of config.routes) {
      if (route.auth !== 'none') {
        const names = route.auth.join(', ');
        throw new Error(`routes ${route.path}: authenticators (${names}) are not available in this version`);
      }
      if (route.upstream || route.broker) {
        throw new Error(`routes ${route.path}: only the echo target is available in this version`);
      }
    }
    const policy = compileHandshakePolicy(config);
    const targets = new Map<string, Target>();
    for (const { path, config: route } of policy.routes.values()) {
      const { schema, limits } = route;
      targets.set(path, schema ? schemaTarget(ECHO, compileSchemaFile(schema), limits.maxJsonDepth) : ECHO);
    }
    const routes = new Map<string, CompiledRoute>();
    for (const route of policy.routes.values()) {
      routes.set(route.path, {
        policy: route,
        rules: sessionRules(route.config.limits),
        wss: this.routeServer(route.config, config),
        target: targets.get(route.path) as Target,
      });
    }
    this.policy = policy;
    this.routes = routes;
    this.proxies = compileTrustedProxies(config.trustedProxies);
    this.handshakeRule = {
      perSecond: config.limits.perIp.handshakesPerSecond,
      burst: config.limits.perIp.handshakeBurst,
    };
    this.hsts =
      config.tls === false ? undefined : `max-age=${config.tls.hstsMaxAgeSeconds}; includeSubDomains`;
    const shortest = Math.min(
      config.limits.closeTimeoutMs,
      ...config.routes.map((r) =>
        Math.min(r.limits.idleTimeoutMs, r.limits.pingIntervalMs, r.limits.pongTimeoutMs),
      ),
    );
    this.ticker.setResolution(resolutionFor(shortest));
  }

  private routeServer(route: RouteConfig, config: Config): WebSocketServer {
    const { limits } = route;
    const wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: limits.maxMessageBytes,
      maxFragments: limits.maxFragments,
      maxBufferedChunks: limits.maxBufferedChunks,
      maxPendingAutoPongs: 60,
      closeTimeout: config.limits.closeTimeoutMs,
      skipUTF8Validation: false,
      autoPong: true,
      allowSynchronousEvents: true,
      // Compression only when the route asks, with small windows and no context takeover.
      perMessageDeflate: route.perMessageDeflate
        ? {
            serverNoContextTakeover: true,
            clientNoContextTakeover: true,
            serverMaxWindowBits: 10,
            clientMaxWindowBits: 10,
            concurrencyLimit: 10,
            threshold: 1024,
          }
        : false,
      handleProtocols: (_offered, req) => (req as TaggedRequest)[kChosenProtocol] ?? false,
    } as ConstructorParameters<typeof WebSocketServer>[0]);
    wss.on('headers', (headers) => {
      if (this.hsts) headers.push(`Strict-Transport-Security: ${this.hsts}`);
    });
    // ws re-validates after us; if it ever disagrees, answer in our format rather than its own.
    wss.on('wsClientError', (err, socket) => {
      this.refuse(socket, /Extensions/.test(err.message) ? 'BAD_EXTENSION' : 'BAD_REQUEST');
    });
    return wss;
  }

  private attach(server: Server): void {
    // Mutual TLS is checked before the HTTP parser sees one byte, on every path (T-07).
    server.prependListener('secureConnection', (socket: TLSSocket) => {
      if (this.config.tls === false) return;
      const problem = clientCertProblem(socket, this.config.tls.clientAuth);
      if (problem) {
        this.stats.tlsRejected++;
        this.log.info(
          { event: 'tls', outcome: 'rejected', reason: problem, remote: socket.remoteAddress },
          'client certificate refused',
        );
        socket.destroy();
      }
    });
    // Every TLS failure destroys its socket; a listener that only logs would leak them (T-03).
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
      this.stats.tlsRejected++;
      this.log.debug({
        event: 'tls',
        outcome: 'rejected',
        reason: err.code ?? 'TLS_ERROR',
        remote: socket.remoteAddress,
      });
      socket.destroy();
    });
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      const code: ErrorCode | undefined =
        err.code === 'HPE_HEADER_OVERFLOW'
          ? 'HEADERS_TOO_LARGE'
          : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? 'REQUEST_TIMEOUT'
            : err.code?.startsWith('HPE_')
              ? 'BAD_REQUEST'
              : undefined;
      if (code && socket.writable && !(socket as Duplex & { _httpMessage?: unknown })._httpMessage) {
        this.countRejection(code);
        this.refuse(socket, code);
      } else {
        socket.destroy();
      }
    });
    server.on('connect', (_req: IncomingMessage, socket: Duplex) =>
      this.refuse(socket, 'METHOD_NOT_ALLOWED'),
    );
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.onUpgrade(req, socket, head).catch((err: unknown) => {
        this.log.error({ event: 'internal', err: (err as Error).message }, 'upgrade failed');
        this.refuse(socket, 'INTERNAL');
      });
    });
  }

  private refusal(retryAfterMs?: number): RefusalOptions {
    return { hsts: this.hsts, retryAfterMs };
  }

  private refuse(socket: Duplex, code: ErrorCode, retryAfterMs?: number): void {
    writeRefusal(socket, code, this.refusal(retryAfterMs));
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    // A request pipelined behind a refused one is never answered.
    if (this.refusedSockets.has(req.socket)) {
      req.socket.destroy();
      return;
    }
    this.refusedSockets.add(req.socket);
    const code = checkPlainRequest(this.requestOf(req), this.policy);
    this.countRejection(code);
    sendRefusal(res, code, this.refusal());
  }

  private requestOf(req: IncomingMessage): HandshakeRequest {
    const servername = tlsSocketOf(req.socket)?.servername;
    return {
      method: req.method ?? '',
      httpVersion: req.httpVersion,
      url: req.url ?? '',
      rawHeaders: req.rawHeaders,
      servername: typeof servername === 'string' && servername ? servername : undefined,
    };
  }

  private async onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const started = performance.now();
    const forwarded = this.proxies.empty ? undefined : req.headers['x-forwarded-for'];
    const remote = clientIp(
      (socket as Duplex & { remoteAddress?: string }).remoteAddress,
      typeof forwarded === 'string' ? forwarded : undefined,
      this.proxies,
    );
    const tls = this.tlsSummary(socket);
    const reject = (code: ErrorCode, extra: Partial<HandshakeEvent> = {}, retryAfterMs?: number) => {
      this.countRejection(code);
      this.audit({
        event: 'handshake',
        outcome: 'rejected',
        code,
        status: ERRORS[code].status,
        route: null,
        remote,
        origin: null,
        identity: null,
        subprotocol: null,
        tls,
        ms: round(performance.now() - started),
        ...extra,
      });
      this.refuse(socket, code, retryAfterMs);
    };
    if (this.draining) return reject('SHUTTING_DOWN', {}, 1000);
    if (this.pending >= this.config.limits.maxPendingHandshakes) return reject('SERVER_BUSY', {}, 1000);
    this.pending++;
    try {
      const rate = await this.engine.takeHandshake(remote, this.handshakeRule, Date.now());
      if (!rate.ok) return reject(rate.code, {}, rate.retryAfterMs);
      const verdict = checkHandshake(this.requestOf(req), this.policy);
      if (!verdict.ok) {
        return reject(verdict.code, {
          route: verdict.route?.path ?? null,
          origin: logSafe(verdict.origin),
        });
      }
      const route = this.routes.get(verdict.route.path) as CompiledRoute;
      const base = { route: route.policy.path, origin: logSafe(verdict.origin) };
      // Authentication (issue 3) slots in here: a principal, or a refusal, before any slot is taken.
      const identity: string | null = null;
      const key = { ip: remote, identity: identity ?? undefined };
      const admitted = await this.engine.acquire(key, {
        maxConnections: this.config.limits.maxConnections,
        perIpConnections: this.config.limits.perIp.maxConnections,
        perIdentityConnections: route.policy.config.limits.maxConnectionsPerIdentity,
      });
      if (!admitted.ok) return reject(admitted.code, base, admitted.retryAfterMs);
      if (this.draining || socket.destroyed || !socket.writable) {
        await this.engine.release(key);
        if (!socket.destroyed) return reject('SHUTTING_DOWN', base, 1000);
        return;
      }
      (req as TaggedRequest)[kChosenProtocol] = verdict.subprotocol ?? false;
      let upgraded = false;
      route.wss.handleUpgrade(req, socket, head, (ws) => {
        upgraded = true;
        const now = Date.now();
        const session = new Session(
          ws,
          { id: this.nextId++, route: route.policy.path, remote, identity, subprotocol: verdict.subprotocol, principal: null },
          route.rules,
          openSession(route.rules, now),
          route.target,
          this,
        );
        (session as Session & { key?: typeof key }).key = key;
        this.ticker.add(session);
        route.target.onOpen?.(session);
        this.stats.handshakesAccepted++;
        this.audit({
          event: 'handshake',
          outcome: 'accepted',
          code: null,
          status: 101,
          ...base,
          remote,
          identity,
          subprotocol: verdict.subprotocol ?? null,
          tls,
          ms: round(performance.now() - started),
        });
      });
      if (!upgraded) await this.engine.release(key);
    } finally {
      this.pending--;
    }
  }

  onClosed(session: Session, code: ErrorCode | null, closeCode: number, by: 'client' | 'server'): void {
    this.ticker.delete(session);
    const key = (session as Session & { key?: { ip: string; identity?: string | undefined } }).key;
    if (key) void this.engine.release(key);
    const c = session.counters;
    this.stats.messagesIn += c.messagesIn;
    this.stats.messagesOut += c.messagesOut;
    this.stats.bytesIn += c.bytesIn;
    this.stats.bytesOut += c.bytesOut;
    if (code) this.stats.closedByCode[code] = (this.stats.closedByCode[code] ?? 0) + 1;
    const event: CloseEvent = {
      event: 'close',
      code,
      closeCode,
      by,
      route: session.info.route,
      remote: session.info.remote,
      identity: session.info.identity,
      durationMs: Date.now() - session.state.openedAt,
      messagesIn: c.messagesIn,
      messagesOut: c.messagesOut,
      bytesIn: c.bytesIn,
      bytesOut: c.bytesOut,
      dropped: c.dropped,
    };
    this.log.info(event);
  }

  onError(session: Session, err: Error): void {
    this.log.error({ event: 'internal', route: session.info.route, err: err.message }, 'connection error');
  }

  private reloadCertificates(reason: string): void {
    const tls = this.config.tls;
    if (!this.files || !this.server || tls === false || !('setSecureContext' in this.server)) return;
    try {
      const context = secureContextOptions(tls, this.files);
      (this.server as unknown as { setSecureContext(o: object): void }).setSecureContext(context);
      this.log.info({ event: 'certificates', outcome: 'reloaded', reason }, 'certificates reloaded');
    } catch (err) {
      // A half-written file (mid-rotation) must not take the listener down: keep the old context.
      this.log.warn(
        { event: 'certificates', outcome: 'failed', reason, err: (err as Error).message },
        'certificate reload failed; keeping the previous certificates',
      );
    }
  }

  private tlsSummary(socket: Duplex): TlsSummary | null {
    const tls = tlsSocketOf(socket);
    if (!tls) return null;
    const cert = tls.getPeerCertificate();
    const fingerprint = cert?.fingerprint256 ? cert.fingerprint256.replaceAll(':', '').toLowerCase() : null;
    return { version: tls.getProtocol(), clientCert: fingerprint };
  }

  private countRejection(code: ErrorCode): void {
    this.stats.handshakesRejected++;
    this.stats.rejectedByCode[code] = (this.stats.rejectedByCode[code] ?? 0) + 1;
  }

  private audit(event: HandshakeEvent): void {
    this.log.info(event);
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
