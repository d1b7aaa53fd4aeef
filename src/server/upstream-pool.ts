// The upstreams of one route: which one a new connection goes to (round-robin or least
// connections), passive ejection after consecutive failures, and active health checks on a timer
// (an HTTP GET or a WebSocket handshake). The clock comes in as an argument; only the health-check
// loop reads it itself.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import WebSocket from 'ws';

/** One upstream and what the pool knows about it. */
export interface Upstream {
  readonly url: URL;
  /** Connections open or opening to it. */
  active: number;
  /** Consecutive failed connection attempts (passive). */
  failures: number;
  /** Ejected until this time (ms), after ejectAfterFailures failures in a row. */
  ejectedUntil: number;
  /** The active health check's view; true until a check says otherwise. */
  healthy: boolean;
  /** Consecutive health-check results in the current direction (+ passes, - failures). */
  streak: number;
}

/** How the pool picks and ejects. */
export interface PoolOptions {
  readonly balance: 'round-robin' | 'least-connections';
  readonly ejectAfterFailures: number;
  readonly ejectForMs: number;
  readonly healthCheck?:
    | {
        readonly intervalMs: number;
        readonly healthyAfter: number;
        readonly unhealthyAfter: number;
        /** Resolves true when the upstream answered the check in time. */
        readonly probe: (upstream: Upstream) => Promise<boolean>;
      }
    | undefined;
}

/** The upstreams of one route. */
export class UpstreamPool {
  readonly upstreams: readonly Upstream[];
  private next = 0;
  private timer: NodeJS.Timeout | undefined;
  private checking = false;

  constructor(
    urls: readonly URL[],
    private readonly options: PoolOptions,
  ) {
    this.upstreams = urls.map((url) => ({
      url,
      active: 0,
      failures: 0,
      ejectedUntil: 0,
      healthy: true,
      streak: 0,
    }));
  }

  /** Whether an upstream may take new connections at `now`. */
  available(upstream: Upstream, now: number): boolean {
    return upstream.healthy && now >= upstream.ejectedUntil;
  }

  /** The upstream for a new connection, skipping `exclude`; undefined when none is available. */
  pick(now: number, exclude: ReadonlySet<Upstream> = new Set()): Upstream | undefined {
    const n = this.upstreams.length;
    let chosen: Upstream | undefined;
    let chosenAt = 0;
    // Scan from the round-robin cursor, so least-connections ties rotate too.
    for (let i = 0; i < n; i++) {
      const at = (this.next + i) % n;
      const candidate = this.upstreams[at] as Upstream;
      if (exclude.has(candidate) || !this.available(candidate, now)) continue;
      if (
        chosen === undefined ||
        (this.options.balance === 'least-connections' && candidate.active < chosen.active)
      ) {
        chosen = candidate;
        chosenAt = at;
      }
      if (this.options.balance === 'round-robin') break;
    }
    if (chosen !== undefined) this.next = (chosenAt + 1) % n;
    return chosen;
  }

  /** Records the outcome of a connection attempt; `counts` false for failures that are not the upstream's. */
  report(upstream: Upstream, ok: boolean, now: number, counts = true): void {
    if (ok) {
      upstream.failures = 0;
      return;
    }
    if (!counts) return;
    upstream.failures++;
    if (upstream.failures >= this.options.ejectAfterFailures) {
      upstream.failures = 0;
      upstream.ejectedUntil = now + this.options.ejectForMs;
    }
  }

  /** Starts the health-check loop (when configured): a first round now, then every intervalMs. */
  start(): void {
    const check = this.options.healthCheck;
    if (!check || this.timer) return;
    this.timer = setInterval(() => void this.checkAll(), check.intervalMs);
    this.timer.unref();
    void this.checkAll();
  }

  /** One round of health checks; a round still running when the next is due is not doubled. */
  async checkAll(): Promise<void> {
    const check = this.options.healthCheck;
    if (!check || this.checking) return;
    this.checking = true;
    try {
      await Promise.all(
        this.upstreams.map(async (upstream) => {
          const ok = await check.probe(upstream).catch(() => false);
          this.recordCheck(upstream, ok, check.healthyAfter, check.unhealthyAfter);
        }),
      );
    } finally {
      this.checking = false;
    }
  }

  private recordCheck(upstream: Upstream, ok: boolean, healthyAfter: number, unhealthyAfter: number): void {
    upstream.streak = ok ? Math.max(upstream.streak, 0) + 1 : Math.min(upstream.streak, 0) - 1;
    if (ok && !upstream.healthy && upstream.streak >= healthyAfter) {
      upstream.healthy = true;
      // A passing check also ends a passive ejection: the upstream has shown it is back.
      upstream.ejectedUntil = 0;
    } else if (!ok && upstream.healthy && -upstream.streak >= unhealthyAfter) {
      upstream.healthy = false;
    }
  }

  /** Stops the health checks (on reload or shutdown; open connections are not touched). */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** What one health check asks of an upstream. */
export interface ProbeOptions {
  readonly path: string;
  readonly timeoutMs: number;
  /** TLS options for wss:// upstreams (see upstream-tls.ts). */
  readonly tls: Readonly<Record<string, unknown>>;
}

/** `type: http`: GET path on the upstream's host must answer 2xx within timeoutMs. */
export function httpProbe(upstream: Upstream, options: ProbeOptions): Promise<boolean> {
  const secure = upstream.url.protocol === 'wss:';
  const url = new URL(`${secure ? 'https' : 'http'}://${upstream.url.host}${options.path}`);
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish(false), options.timeoutMs);
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      req.destroy();
      resolve(ok);
    };
    const send = secure ? httpsRequest : httpRequest;
    const headers = { 'user-agent': 'portcullis-health' };
    const req = send(url, { method: 'GET', agent: false, headers, ...options.tls }, (res) => {
      const status = res.statusCode ?? 0;
      res.destroy();
      finish(status >= 200 && status < 300);
    });
    req.on('error', () => finish(false));
    req.end();
  });
}

/**
 * `type: websocket`: a WebSocket handshake to path (offering the route's subprotocols) must
 * succeed within timeoutMs; the connection is then closed with 1000. For apps with no HTTP endpoint.
 */
export function websocketProbe(
  upstream: Upstream,
  options: ProbeOptions,
  protocols: readonly string[],
): Promise<boolean> {
  return new Promise((resolve) => {
    const ws = new WebSocket(
      `${upstream.url.protocol}//${upstream.url.host}${options.path}`,
      [...protocols],
      {
        ...options.tls,
        handshakeTimeout: options.timeoutMs,
        followRedirects: false,
        perMessageDeflate: false,
        closeTimeout: options.timeoutMs,
      } as WebSocket.ClientOptions,
    );
    const timer = setTimeout(() => finish(false), options.timeoutMs);
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      if (ok) ws.close(1000);
      else ws.terminate();
      resolve(ok);
    };
    ws.on('error', () => finish(false));
    ws.once('unexpected-response', () => finish(false));
    ws.once('open', () => finish(true));
  });
}
