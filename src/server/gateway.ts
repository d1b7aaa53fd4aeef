// The gateway: owns the listener, the compiled policy, the sessions and the engine, and turns each
// upgrade request into exactly one audited decision. Decisions are made in core/; this file only
// translates requests, calls core, and writes the answer.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { DestinationStream } from 'pino';
import { WebSocketServer } from 'ws';
import { ConfigError, parseConfig } from '../config/load.js';
import type { Config, ConfigInput, RouteConfig } from '../config/schema.js';
import {
  checkHandshake,
  checkPlainRequest,
  compileHandshakePolicy,
  type HandshakePolicy,
  type HandshakeRequest,
  type HeaderMap,
  type RoutePolicy,
  routeKey,
} from '../core/handshake.js';
import { normaliseTarget } from '../core/path.js';
import type { Principal } from '../core/principal.js';
import type { RateRule } from '../core/rate.js';
import { openSession, type SessionRules, sessionRules } from '../core/session.js';
import { MemoryEngine } from '../engine/memory.js';
import type { Admit, Engine } from '../engine/types.js';
// src/pki (and @peculiar/x509 behind it) is loaded only when tls.dev or a CRL needs it: it is a
// large heap that every message would otherwise pay for in garbage collection.
import { normalizeSerial } from '../pki/serial.js';
import { ERRORS, type ErrorCode } from '../protocol.js';
import {
  type AuditLogger,
  type CloseEvent,
  createAuditLogger,
  createLogDestination,
  createLogger,
  type HandshakeEvent,
  logSafe,
  type TlsSummary,
} from './audit.js';
import type { BasicAuthenticator } from './auth/basic.js';
import { clientCertificateOf } from './auth/cert.js';
import { createAuthenticator } from './auth/index.js';
import type { TicketAuthenticator } from './auth/ticket.js';
import type { Authenticator, AuthInput } from './auth/types.js';
import { type AuthOutcome, authenticate } from './authenticate.js';
import { type Broker, createBroker } from './broker.js';
import { type CertificateHost, checkCertificateExpiry, reloadCertificates } from './certificates.js';
import { clientIp, compileTrustedProxies, type TrustedProxies } from './client-ip.js';
import { type RefusalOptions, sendRefusal, writeRefusal } from './http.js';
import { IdentityKeys, JWKS_PATH, serveJwks } from './identity-token.js';
import {
  clientCertProblem,
  createListener,
  peerCertificateOf,
  SniContexts,
  secureContextOptions,
  type TlsFiles,
  tlsSocketOf,
  watchFiles,
} from './listen.js';
import { onPublishRequest, PUBLISH_PATH, type PublishHost, readPublishKey } from './publish-endpoint.js';
import { bindRelay, createRelay, type Relay } from './relay.js';
import { compileSchemaFile, schemaTarget } from './schema.js';
import { Session, type SessionHost, type Target } from './session.js';
import { resolutionFor, Ticker } from './ticker.js';
import { onTicketRequest, TICKET_PATH, type TicketHost } from './ticket-endpoint.js';

/** Options for embedding the gateway as a library. */
export interface GatewayOptions {
  /**
   * Where audit and operational log lines go (default: stdout, buffered as config `log` says).
   * The gateway flushes it every `log.flushIntervalMs` and on close when it has a `flush` method.
   */
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
  /** The earliest notAfter (ms) of the server certificates, for the expiry metric; 0 before listen. */
  serverCertificateNotAfter: number;
  /** Log lines dropped because the log destination stalled past log.maxPendingBytes. */
  logLinesDropped: number;
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
  /**
   * Revokes a token id and/or blocks a subject (for ttlMs, default 24 h): open connections that
   * match are closed at once with CREDENTIAL_REVOKED and new handshakes are refused. Resolves with
   * the number of connections closed.
   */
  revoke(target: { jti?: string; subject?: string; ttlMs?: number }): Promise<number>;
  /** Closes every connection of a subject with DISCONNECTED (they may reconnect). */
  disconnect(target: { subject: string }): number;
  /**
   * Publishes server-side to a channel on every broker route (or only `route`), trusted: no channel
   * rule applies. `ok` is false for an invalid channel name or unserialisable data, or no broker route.
   */
  publish(channel: string, data: unknown, options?: { route?: string }): { ok: boolean; delivered: number };
}

interface CompiledRoute {
  readonly policy: RoutePolicy;
  readonly rules: SessionRules;
  readonly wss: WebSocketServer;
  readonly target: Target;
  /** The route's authenticators in config order; empty for `auth: none`. */
  readonly authenticators: readonly Authenticator[];
  /** The ticket authenticator, when the route accepts tickets. */
  readonly ticket: TicketAuthenticator | undefined;
  /** What a 401 on this route challenges with (undefined: the default, Bearer). */
  readonly challenges: readonly string[] | undefined;
}

const ECHO: Target = {
  onMessage(session, data, isBinary) {
    session.send(data, isBinary);
  },
};

const kChosenProtocol = Symbol('portcullis.subprotocol');
const kRefusedByWs = Symbol('portcullis.refusedByWs');
type TaggedRequest = IncomingMessage & { [kChosenProtocol]?: string | false; [kRefusedByWs]?: ErrorCode };

/** Creates a gateway from a config object (validated here) or an already validated Config. */
export function createGateway(config: Config | ConfigInput, options: GatewayOptions = {}): Gateway {
  return new PortcullisGateway(parseConfig(config), options);
}

class PortcullisGateway implements Gateway, SessionHost, TicketHost<CompiledRoute>, PublishHost {
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
    serverCertificateNotAfter: 0,
    logLinesDropped: 0,
  };
  readonly log: AuditLogger;
  /** Handshake and close events only (typed fields; see createAuditLogger). */
  private readonly auditLog: AuditLogger;
  private readonly engine: Engine;
  private server: Server | undefined;
  private files: TlsFiles | undefined;
  private currentPolicy!: HandshakePolicy;
  private routes = new Map<string, CompiledRoute>();
  private currentProxies!: TrustedProxies;
  private handshakeRule!: RateRule;
  private currentHsts: string | undefined;
  private readonly ticker = new Ticker<Session>(1_000);
  private pending = 0;
  private nextId = 1;
  private draining = false;
  private unwatch: (() => void) | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly refusedSockets = new WeakSet<Duplex>();
  private authenticators = new Map<string, Authenticator>();
  private readonly sni = new SniContexts();
  private brokers = new Map<string, Broker<Session> & Target>();
  private currentPublishKey: Buffer | undefined;
  private authFailureRule!: RateRule;
  /** The key that signs identities for upstreams; kept across reloads so the JWKS stays valid. */
  private readonly identityKeys = new IdentityKeys();

  constructor(config: Config, options: GatewayOptions) {
    this.config = config;
    if (options.logger) {
      this.log = options.logger;
      this.auditLog = options.logger;
    } else {
      const destination =
        options.logDestination ?? createLogDestination(config.log, () => this.stats.logLinesDropped++);
      this.log = createLogger(config.log.level, destination);
      this.auditLog = createAuditLogger(config.log.level, destination);
    }
    this.engine = options.engine ?? new MemoryEngine();
    this.compile(config);
  }

  get closeTimeoutMs(): number {
    return this.config.limits.closeTimeoutMs;
  }

  // Read-only views of the compiled state for the ticket and publish endpoints (EndpointHost).
  get policy(): HandshakePolicy {
    return this.currentPolicy;
  }

  get proxies(): TrustedProxies {
    return this.currentProxies;
  }

  get hsts(): string | undefined {
    return this.currentHsts;
  }

  get publishKey(): Buffer | undefined {
    return this.currentPublishKey;
  }

  route(key: string): CompiledRoute | undefined {
    return this.routes.get(key);
  }

  authenticator(name: string): Authenticator | undefined {
    return this.authenticators.get(name);
  }

  takeHandshake(remote: string, now: number): Promise<Admit> {
    return this.engine.takeHandshake(remote, this.handshakeRule, now);
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
        const { ensureDevCertificates } = await import('../pki/dev.js');
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
    if (config.tls !== false && this.files) {
      this.sni.load(config.tls, secureContextOptions(config.tls, this.files));
    }
    const server = createListener(config, this.files, this.sni);
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
    // Buffered log lines (log.bufferBytes) are written at least this often; exit and close flush too.
    this.flushTimer = setInterval(() => this.log.flush(), config.log.flushIntervalMs);
    this.flushTimer.unref();
    if (this.files) {
      const files = this.files;
      const sniFiles = config.tls === false ? [] : config.tls.sni.flatMap((e) => [e.cert, e.key]);
      const paths = [files.cert, files.key, files.clientCa, files.crl, ...sniFiles].filter(
        (p): p is string => !!p,
      );
      const unwatch = watchFiles(paths, () => reloadCertificates(this.certificates(), 'watch'));
      // Certificates close to expiry are reported at start and then daily (and exposed in stats).
      checkCertificateExpiry(this.certificates());
      const daily = setInterval(() => checkCertificateExpiry(this.certificates()), 24 * 60 * 60 * 1000);
      daily.unref();
      this.unwatch = () => {
        unwatch();
        clearInterval(daily);
      };
    }
    const address = this.address() as AddressInfo;
    const scheme = config.tls === false ? 'ws' : 'wss';
    const hostForUrl = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const url = `${scheme}://${hostForUrl}:${address.port}`;
    this.log.info({ event: 'listening', url }, 'listening');
    this.log.flush(); // the line a supervisor waits for is not held in the buffer
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
    // A terminated socket reports its close a tick later; wait for it (bounded), so close() resolves
    // with no connection left and every close audit line is written before 'stopped'.
    const cutAt = Date.now();
    while (this.ticker.members.size > 0 && Date.now() - cutAt < 1_000) {
      await new Promise((r) => setTimeout(r, 5));
    }
    server?.closeAllConnections();
    await stopped;
    this.unwatch?.();
    for (const route of this.routes.values()) route.wss.close();
    for (const authenticator of this.authenticators.values()) authenticator.close?.();
    await this.engine.close();
    this.log.info({ event: 'stopped' }, 'stopped');
    clearInterval(this.flushTimer);
    await new Promise<void>((resolve) => this.log.flush(() => resolve()));
  }

  async reload(config?: Config | ConfigInput): Promise<void> {
    if (config) {
      const next = parseConfig(config);
      // The logger and its destination are made once, at construction: log.* needs a restart too.
      const unchangeable = ['listen', 'tls', 'engine', 'log'] as const;
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
        log: this.config.log,
      });
      const old = this.routes;
      this.compile(merged);
      this.config = merged;
      // Open connections keep the policy they were admitted under; only idle route servers go.
      for (const route of old.values()) route.wss.close();
      this.log.info({ event: 'reload', routes: merged.routes.length }, 'configuration reloaded');
    }
    reloadCertificates(this.certificates(), 'reload');
  }

  // Builds everything first and swaps it in at the end, so a config that fails to compile (a bad
  // schema file, say) leaves the running policy untouched.
  private compile(config: Config): void {
    // Fail closed on configuration this version cannot honour, naming the path like config check.
    const issues: string[] = [];
    if (config.engine.type !== 'memory')
      issues.push('engine.type: only the memory engine is available in this version');
    if (config.admin) issues.push('admin: the admin API is not available in this version');
    const authenticators = new Map<string, Authenticator>();
    for (const [name, auth] of Object.entries(config.authenticators)) {
      try {
        authenticators.set(
          name,
          createAuthenticator(name, auth, { engine: this.engine, debug: (f, m) => this.log.debug(f, m) }),
        );
      } catch (err) {
        const message = (err as Error).message;
        issues.push(message.startsWith('authenticators.') ? message : `authenticators.${name}: ${message}`);
      }
    }
    config.routes.forEach((route, i) => {
      if (route.auth === 'none') return;
      route.auth.forEach((name, j) => {
        // A certificate authenticator on a listener that never asks for certificates would always be absent.
        if (
          config.authenticators[name]?.type === 'mtls' &&
          (config.tls === false || config.tls.clientAuth === 'off')
        ) {
          issues.push(`routes[${i}].auth[${j}]: ${name} is an mtls authenticator but tls.clientAuth is off`);
        }
      });
    });
    if (issues.length > 0) {
      for (const a of authenticators.values()) a.close?.();
      throw new ConfigError(issues);
    }
    const policy = compileHandshakePolicy(config);
    const publishKey = config.publishApi ? readPublishKey(config.publishApi.keyFile) : undefined;
    const targets = new Map<string, Target>();
    const brokers = new Map<string, Broker<Session> & Target>();
    const relays = new Map<string, Relay>();
    config.routes.forEach((route, i) => {
      const { schema, limits } = route;
      if (route.broker) {
        try {
          const broker = createBroker(route.broker, {
            maxJsonDepth: limits.maxJsonDepth,
            refresh: (session, token) => this.refreshSession(session, token),
            onError: (session, err) => this.onError(session, err as Error),
          });
          brokers.set(routeKey(route), broker);
          targets.set(routeKey(route), broker);
        } catch (err) {
          throw new ConfigError([`routes[${i}].broker.${(err as Error).message}`]);
        }
        return;
      }
      if (route.upstream) {
        let relay: Relay;
        try {
          relay = createRelay(route, {
            keys: this.identityKeys,
            closeTimeoutMs: config.limits.closeTimeoutMs,
            log: (fields, message) => this.log.warn(fields, message),
          });
        } catch (err) {
          throw new ConfigError([`routes[${i}].upstream.${(err as Error).message}`]);
        }
        relays.set(routeKey(route), relay);
        // The schema applies to client-to-upstream messages; the relay keeps its lifecycle hooks.
        targets.set(
          routeKey(route),
          schema ? schemaTarget(relay, compileSchemaFile(schema), limits.maxJsonDepth) : relay,
        );
        return;
      }
      targets.set(
        routeKey(route),
        schema ? schemaTarget(ECHO, compileSchemaFile(schema), limits.maxJsonDepth) : ECHO,
      );
    });
    const routes = new Map<string, CompiledRoute>();
    for (const route of policy.routes.values()) {
      const auth =
        route.config.auth === 'none'
          ? []
          : route.config.auth.map((n) => authenticators.get(n) as Authenticator);
      routes.set(route.key, {
        policy: route,
        rules: sessionRules(route.config.limits),
        wss: bindRelay(this.routeServer(route.config, config), relays.get(route.key)),
        target: targets.get(route.key) as Target,
        authenticators: auth,
        ticket: auth.find((a): a is TicketAuthenticator => a.type === 'ticket'),
        challenges: challengesOf(auth),
      });
    }
    for (const old of this.authenticators.values()) old.close?.();
    this.authenticators = authenticators;
    this.brokers = brokers;
    this.currentPublishKey = publishKey;
    this.authFailureRule = {
      perSecond: config.limits.perIp.authFailuresPerMinute / 60,
      burst: config.limits.perIp.authFailureBurst,
    };
    this.currentPolicy = policy;
    this.routes = routes;
    this.currentProxies = compileTrustedProxies(config.trustedProxies);
    this.handshakeRule = {
      perSecond: config.limits.perIp.handshakesPerSecond,
      burst: config.limits.perIp.handshakeBurst,
    };
    this.currentHsts =
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
            // No client_max_window_bits demand: browsers that offer a bare permessage-deflate would
            // be refused. Inflation stays bounded by maxPayload and no context takeover.
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
    wss.on('wsClientError', (err, socket, req) => {
      const code: ErrorCode = /Extensions/.test(err.message) ? 'BAD_EXTENSION' : 'BAD_REQUEST';
      // Tagged so onUpgrade writes the audit line for this refusal too (one line per decision).
      (req as TaggedRequest)[kRefusedByWs] = code;
      this.refuse(socket, code);
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
        const subject = peerCertificateOf(socket)?.subject?.CN;
        this.log.info(
          {
            event: 'tls',
            outcome: 'rejected',
            reason: problem,
            remote: socket.remoteAddress,
            subject: logSafe(typeof subject === 'string' ? subject : null),
          },
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
        this.log.info({ event: 'request', outcome: 'rejected', code, remote: socketRemote(socket) });
        this.refuse(socket, code);
      } else {
        socket.destroy();
      }
    });
    server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
      this.countRejection('METHOD_NOT_ALLOWED');
      this.log.info({
        event: 'request',
        outcome: 'rejected',
        code: 'METHOD_NOT_ALLOWED',
        remote: socketRemote(socket),
      });
      this.refuse(socket, 'METHOD_NOT_ALLOWED');
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.onUpgrade(req, socket, head).catch((err: unknown) => {
        // The cause stays in the server log; the client and the audit line get only the code.
        this.log.error({ event: 'internal', err: (err as Error).message }, 'upgrade failed');
        this.countRejection('INTERNAL');
        this.audit({
          event: 'handshake',
          outcome: 'rejected',
          code: 'INTERNAL',
          status: ERRORS.INTERNAL.status,
          route: null,
          remote: socketRemote(socket) ?? 'unknown',
          origin: null,
          identity: null,
          subprotocol: null,
          tls: null,
          ms: 0,
        });
        this.refuse(socket, 'INTERNAL');
      });
    });
  }

  refusal(retryAfterMs?: number): RefusalOptions {
    return { hsts: this.hsts, retryAfterMs };
  }

  private refuse(
    socket: Duplex,
    code: ErrorCode,
    retryAfterMs?: number,
    challenges?: readonly string[],
  ): void {
    writeRefusal(socket, code, { ...this.refusal(retryAfterMs), challenges });
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    // A request pipelined behind a refused one is never answered.
    if (this.refusedSockets.has(req.socket)) {
      req.socket.destroy();
      return;
    }
    this.refusedSockets.add(req.socket);
    const request = this.requestOf(req);
    const target = normaliseTarget(request.url, this.policy.maxUrlBytes);
    if (target.ok && target.path === PUBLISH_PATH) {
      onPublishRequest(this, req, res, request).catch((err: unknown) => {
        this.log.error({ event: 'internal', err: (err as Error).message }, 'publish request failed');
        if (!res.headersSent) sendRefusal(res, 'INTERNAL', this.refusal());
      });
      return;
    }
    if (target.ok && target.path === TICKET_PATH) {
      onTicketRequest(this, req, res, request, target.query).catch((err: unknown) => {
        this.log.error({ event: 'internal', err: (err as Error).message }, 'ticket request failed');
        if (!res.headersSent) sendRefusal(res, 'INTERNAL', this.refusal());
      });
      return;
    }
    // The identity keys are public; the Host rules still apply (a bad Host falls through to its refusal).
    if (target.ok && target.path === JWKS_PATH && this.identityKeys.active) {
      // A gateway-owned path like the ticket and publish endpoints: served before route lookup, so
      // a prefix route on / cannot hide it; a bad Host still gets its refusal.
      const code = checkPlainRequest(request, this.policy);
      if (code === 'ROUTE_NOT_FOUND' || code === 'UPGRADE_REQUIRED') {
        serveJwks(req, res, this.identityKeys, this.hsts);
        return;
      }
    }
    const code = checkPlainRequest(request, this.policy);
    this.countRejection(code);
    this.log.info({ event: 'request', outcome: 'rejected', code, remote: socketRemote(req.socket) });
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
    const record = (code: ErrorCode, extra: Partial<HandshakeEvent> = {}) => {
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
    };
    // Set once the route is known, so its 401s name the schemes it accepts (Basic realm, Bearer).
    let challenges: readonly string[] | undefined;
    const reject = (code: ErrorCode, extra: Partial<HandshakeEvent> = {}, retryAfterMs?: number) => {
      record(code, extra);
      this.refuse(socket, code, retryAfterMs, challenges);
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
      const route = this.routes.get(verdict.route.key) as CompiledRoute;
      challenges = route.challenges;
      const base = { route: route.policy.path, origin: logSafe(verdict.origin) };
      // Identity before any slot is taken and before any byte is sent.
      let principal: Principal | null = null;
      if (route.authenticators.length > 0) {
        const outcome = await this.authenticateRequest(route, verdict.headers, verdict.query, socket, remote);
        if (!outcome.ok) {
          return reject(outcome.code, { ...base, reason: outcome.reason }, outcome.retryAfterMs);
        }
        principal = outcome.principal;
      }
      const subject = principal?.subject ?? null;
      // The audit log gets the subject escaped like any client-influenced value.
      const identity = logSafe(subject);
      // maxConnectionsPerIdentity is a per-route limit, so the count is kept per route too.
      const key = { ip: remote, identity: subject === null ? undefined : `${route.policy.key} ${subject}` };
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
      // Targets that need something before the 101 (an upstream connection) get it here, after
      // every check has passed, so the upstream never sees a request the gateway would refuse.
      let subprotocol = verdict.subprotocol;
      let prepared: unknown;
      let abortPrepared: (() => void) | undefined;
      if (route.target.prepare) {
        const result = await route.target.prepare({
          route: route.policy.path,
          path: verdict.path,
          query: verdict.query,
          host: verdict.host,
          headers: verdict.headers,
          principal,
          remote,
          encrypted: tls !== null,
        });
        if (!result.ok || socket.destroyed || this.draining) {
          if (result.ok) result.abort?.();
          await this.engine.release(key);
          if (!result.ok) return reject(result.code, base);
          if (!socket.destroyed) return reject('SHUTTING_DOWN', base, 1000);
          return;
        }
        subprotocol = result.subprotocol;
        prepared = result.state;
        abortPrepared = result.abort;
        if (subprotocol !== undefined && !route.policy.subprotocols.includes(subprotocol)) {
          result.abort?.();
          await this.engine.release(key);
          return reject('BAD_GATEWAY', { ...base, reason: 'upstream_subprotocol' });
        }
      }
      (req as TaggedRequest)[kChosenProtocol] = subprotocol ?? false;
      // A verified client certificate bounds the connection's life like any credential, and its
      // serial lets a CRL update close the connection (issue 4).
      const cert = verifiedCert(socket);
      let upgraded = false;
      route.wss.handleUpgrade(req, socket, head, (ws) => {
        upgraded = true;
        const now = Date.now();
        const session = new Session(
          ws,
          {
            id: this.nextId++,
            route: route.policy.path,
            routeKey: route.policy.key,
            remote,
            identity,
            subprotocol,
            principal,
            certSerial: cert?.serial ?? null,
          },
          route.rules,
          openSession(route.rules, now, earliest(principal?.expiresAt ?? null, cert?.notAfter ?? null)),
          route.target,
          this,
        );
        (session as Session & { key?: typeof key }).key = key;
        this.ticker.add(session);
        route.target.onOpen?.(session, prepared);
        this.stats.handshakesAccepted++;
        this.audit({
          event: 'handshake',
          outcome: 'accepted',
          code: null,
          status: 101,
          ...base,
          remote,
          identity,
          subprotocol: subprotocol ?? null,
          tls,
          ms: round(performance.now() - started),
        });
      });
      if (!upgraded) {
        // ws refused after our checks (an extension offer it cannot accept) and has answered already.
        const refusedBy = (req as TaggedRequest)[kRefusedByWs];
        if (refusedBy) record(refusedBy, base);
        // What prepare() opened (an upstream connection) would otherwise wait for a client that never comes.
        abortPrepared?.();
        await this.engine.release(key);
      }
    } finally {
      this.pending--;
    }
  }

  /** Runs the route's authenticators, with the per-IP failure budget in front of them. */
  async authenticateRequest(
    route: CompiledRoute,
    headers: HeaderMap,
    query: string,
    socket: Duplex,
    remote: string,
    only?: (a: Authenticator) => boolean,
    candidates: readonly Authenticator[] = route.authenticators,
  ): Promise<AuthOutcome> {
    const now = Date.now();
    const penaltyKey = `auth:${remote}`;
    const budget = await this.engine.checkPenalty(penaltyKey, this.authFailureRule, now);
    if (!budget.ok)
      return { ok: false, code: 'AUTH_RATE_LIMITED', reason: 'failures', retryAfterMs: budget.retryAfterMs };
    const tlsSocket = tlsSocketOf(socket);
    const input: AuthInput = {
      headers,
      query,
      routePath: route.policy.path,
      routeKey: route.policy.key,
      allowQueryToken: route.policy.config.allowQueryToken,
      clientCert: tlsSocket ? clientCertificateOf(peerCertificateOf(tlsSocket), tlsSocket.authorized) : null,
      remote,
      now,
    };
    const authenticators = only ? candidates.filter(only) : candidates;
    const outcome = await authenticate(authenticators, input, route.policy.config, this.engine);
    if (!outcome.ok && PENALISED.has(outcome.code))
      await this.engine.addPenalty(penaltyKey, this.authFailureRule, now);
    return outcome;
  }

  async revoke(target: { jti?: string; subject?: string; ttlMs?: number }): Promise<number> {
    const until = Date.now() + (target.ttlMs ?? DEFAULT_REVOCATION_MS);
    if (target.jti) await this.engine.addRevocation(`jti:${target.jti}`, until);
    if (target.subject) await this.engine.addRevocation(`sub:${target.subject}`, until);
    return this.closeWhere(
      (p) =>
        (target.jti !== undefined && p.jti === target.jti) ||
        (target.subject !== undefined && p.subject === target.subject),
      'CREDENTIAL_REVOKED',
    );
  }

  publish(
    channel: string,
    data: unknown,
    options: { route?: string } = {},
  ): { ok: boolean; delivered: number } {
    let delivered = 0;
    let ok = false;
    // All or nothing: routes may cap names differently (maxChannelNameBytes), and a publication
    // reported as refused must not have reached a subscriber on an earlier route. The data fails
    // to serialise on the first route or on none, so only the name needs checking first.
    const selected = [...this.brokers].filter(
      ([key]) => options.route === undefined || this.routes.get(key)?.policy.path === options.route,
    );
    for (const [, broker] of selected) {
      if (!broker.acceptsChannel(channel)) return { ok: false, delivered: 0 };
    }
    for (const [, broker] of selected) {
      const result = broker.publish(channel, data);
      if (!result.ok) return { ok: false, delivered: 0 };
      ok = true;
      delivered += result.delivered;
    }
    return { ok, delivered };
  }

  disconnect(target: { subject: string }): number {
    return this.closeWhere((p) => p.subject === target.subject, 'DISCONNECTED');
  }

  private closeWhere(match: (p: Principal) => boolean, code: ErrorCode): number {
    return this.closeSessions((s) => s.info.principal !== null && match(s.info.principal), code);
  }

  private closeSessions(match: (s: Session) => boolean, code: ErrorCode): number {
    let closed = 0;
    for (const session of this.ticker.members) {
      if (match(session)) {
        session.close(code);
        closed++;
      }
    }
    return closed;
  }

  /** In-band credential refresh (broker `auth.refresh`): same subject, new expiry. */
  async refreshSession(session: Session, token: string): Promise<ErrorCode | undefined> {
    const current = session.info.principal;
    const route = this.routes.get(session.info.routeKey);
    if (!current || !route) return 'FORBIDDEN';
    const authenticator = route.authenticators.find((a) => a.name === current.authenticator);
    if (authenticator?.type !== 'jwt') return 'FORBIDDEN';
    const headers = new Map([['authorization', `Bearer ${token}`]]);
    const outcome = await this.authenticateRequest(
      route,
      headers,
      '',
      session.socket,
      session.info.remote,
      (a) => a === authenticator,
    );
    if (!outcome.ok) return outcome.code;
    // A refresh may extend a session, never hand it to someone else (cross-subject refresh).
    if (outcome.principal.subject !== current.subject) return 'FORBIDDEN';
    session.info.principal = outcome.principal;
    session.state.expiresAt = outcome.principal.expiresAt ?? -1;
    return undefined;
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
    this.auditLog.info(event);
  }

  onError(session: Session, err: Error): void {
    this.log.error({ event: 'internal', route: session.info.route, err: err.message }, 'connection error');
  }

  // Certificate reload and expiry checks (certificates.ts) see only this slice of the state.
  private certificates(): CertificateHost {
    return {
      tls: this.config.tls,
      files: this.files,
      server: this.server,
      sni: this.sni,
      log: this.log,
      stats: this.stats,
      closeSessions: (match, code) => this.closeSessions(match, code),
    };
  }

  private tlsSummary(socket: Duplex): TlsSummary | null {
    const tls = tlsSocketOf(socket);
    if (!tls) return null;
    const cert = peerCertificateOf(tls);
    const fingerprint = cert?.fingerprint256 ? cert.fingerprint256.replaceAll(':', '').toLowerCase() : null;
    return { version: tls.getProtocol(), clientCert: fingerprint };
  }

  countRejection(code: ErrorCode): void {
    this.stats.handshakesRejected++;
    this.stats.rejectedByCode[code] = (this.stats.rejectedByCode[code] ?? 0) + 1;
  }

  private audit(event: HandshakeEvent): void {
    this.auditLog.info(event);
  }
}

// Failures that spend the per-IP authentication budget: wrong or missing credentials, not outages.
const PENALISED: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'UNAUTHENTICATED',
  'CREDENTIAL_EXPIRED',
  'CREDENTIAL_REVOKED',
  'FORBIDDEN',
]);
// How long a revocation is remembered when the caller gives no TTL: longer than any sane token life.
const DEFAULT_REVOCATION_MS = 24 * 60 * 60 * 1000;

/** The verified client certificate's serial and expiry, or null when none was presented. */
function verifiedCert(socket: Duplex): { serial: string; notAfter: number } | null {
  const tls = tlsSocketOf(socket);
  if (!tls?.authorized) return null;
  const peer = peerCertificateOf(tls);
  if (!peer?.serialNumber) return null;
  const notAfter = Date.parse(peer.valid_to);
  return {
    serial: normalizeSerial(peer.serialNumber).replace(/^(00)+(?=.)/, ''),
    notAfter: Number.isFinite(notAfter) ? notAfter : 0,
  };
}

/** The earlier of two optional instants, as a session deadline (-1 for none). */
function earliest(a: number | null, b: number | null): number {
  if (a === null) return b ?? -1;
  return b === null ? a : Math.min(a, b);
}

// RFC 9110 section 11.6.1: a 401 names the schemes the resource accepts: Basic with its realm,
// Bearer for jwt. Cookies, tickets, certificates and webhooks have no scheme to challenge with,
// so a route with only those keeps the default.
function challengesOf(authenticators: readonly Authenticator[]): string[] | undefined {
  const challenges = new Set<string>();
  for (const a of authenticators) {
    if (a.type === 'jwt') challenges.add('Bearer');
    else if (a.type === 'basic') challenges.add((a as BasicAuthenticator).challenge);
  }
  return challenges.size > 0 ? [...challenges] : undefined;
}

function socketRemote(socket: Duplex): string | null {
  return (socket as Duplex & { remoteAddress?: string }).remoteAddress ?? null;
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
