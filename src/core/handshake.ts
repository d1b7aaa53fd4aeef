// The opening-handshake decision (RFC 6455 section 4.2.1), made before ws ever sees the request.
// Pure: it takes the request line, raw headers and SNI name, and returns a verdict.
import type { Config, RouteConfig } from '../config/schema.js';
import type { ErrorCode } from '../protocol.js';
import { checkOrigin, compileOriginPolicy, type OriginPolicy } from './origin.js';
import { normaliseTarget } from './path.js';

/** What the adapter knows about the request before the upgrade. */
export interface HandshakeRequest {
  readonly method: string;
  readonly httpVersion: string;
  readonly url: string;
  readonly rawHeaders: readonly string[];
  /** The TLS SNI name, when the client sent one. */
  readonly servername: string | undefined;
}

/** One route, compiled for fast per-handshake checks. */
export interface RoutePolicy {
  /** Unique among routes: the host pattern (or `*`) and the path. */
  readonly key: string;
  readonly path: string;
  /** Lower-case host, `*.suffix` pattern, or undefined for any host. */
  readonly host: string | undefined;
  /** True when the route also serves every path below its own (`/api` serves `/api/x`). */
  readonly prefix: boolean;
  readonly config: RouteConfig;
  readonly origins: OriginPolicy;
  readonly subprotocols: readonly string[];
}

/** Everything checkHandshake needs, compiled once from the config. */
export interface HandshakePolicy {
  readonly hosts: ReadonlySet<string>;
  /** Routes by key. */
  readonly routes: ReadonlyMap<string, RoutePolicy>;
  /** Routes in matching order: most specific host first, then exact paths, then longer prefixes. */
  readonly table: readonly RoutePolicy[];
  readonly maxUrlBytes: number;
  readonly maxHeaderCount: number;
}

/** Request headers by lower-case name; repeated non-security headers are joined with ", ". */
export type HeaderMap = ReadonlyMap<string, string>;

/** The decision: a route and what to answer with, or the code that refuses the request. */
export type HandshakeVerdict =
  | {
      ok: true;
      route: RoutePolicy;
      path: string;
      query: string;
      host: string;
      origin: string | null;
      subprotocol: string | undefined;
      key: string;
      headers: HeaderMap;
    }
  | { ok: false; code: ErrorCode; route?: RoutePolicy; path?: string; origin?: string };

// Headers whose duplicates let a gateway and a backend disagree (Node keeps the first
// Authorization and Host, merges Origin with a comma; a backend may take the last).
const SINGLE = new Set([
  'host',
  'origin',
  'authorization',
  'cookie',
  'upgrade',
  'content-length',
  'transfer-encoding',
]);
const KEY = /^[+/0-9A-Za-z]{22}==$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const HOST =
  /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*|\[[0-9a-f:.]+\])(?::(\d{1,5}))?$/;
const MAX_SUBPROTOCOLS = 64;

/** Compiles the handshake policy from a validated config. */
export function compileHandshakePolicy(config: Config): HandshakePolicy {
  const routes = new Map<string, RoutePolicy>();
  for (const route of config.routes) {
    const host = route.host?.toLowerCase();
    const key = routeKey(route);
    routes.set(key, {
      key,
      path: route.path,
      host,
      prefix: route.pathMatch === 'prefix',
      config: route,
      origins: compileOriginPolicy(route.origins),
      subprotocols: route.subprotocols,
    });
  }
  const hostRank = (r: RoutePolicy) => (r.host === undefined ? 0 : r.host.startsWith('*.') ? 1 : 2);
  const table = [...routes.values()].sort(
    (a, b) =>
      hostRank(b) - hostRank(a) ||
      Number(a.prefix) - Number(b.prefix) ||
      b.path.length - a.path.length ||
      (b.host?.length ?? 0) - (a.host?.length ?? 0),
  );
  return {
    hosts: new Set(config.hosts.map((h) => h.toLowerCase())),
    routes,
    table,
    maxUrlBytes: config.limits.maxUrlBytes,
    maxHeaderCount: config.limits.maxHeaderCount,
  };
}

type HeaderScan = { ok: true; headers: Map<string, string> } | { ok: false; code: ErrorCode };

/** Reads raw headers once into a map, refusing duplicates of security-relevant headers. */
export function scanHeaders(rawHeaders: readonly string[], maxCount: number): HeaderScan {
  if (rawHeaders.length / 2 > maxCount) return { ok: false, code: 'HEADERS_TOO_LARGE' };
  const headers = new Map<string, string>();
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    const value = rawHeaders[i + 1] as string;
    const previous = headers.get(name);
    if (previous === undefined) {
      headers.set(name, value);
      continue;
    }
    if (SINGLE.has(name) || name.startsWith('sec-websocket-')) return { ok: false, code: 'DUPLICATE_HEADER' };
    headers.set(name, `${previous}, ${value}`);
  }
  return { ok: true, headers };
}

/** Checks the Host header against the allowlist and the SNI name; returns the host or a code. */
export function checkHost(
  hostHeader: string | undefined,
  policy: HandshakePolicy,
  servername: string | undefined,
): { ok: true; host: string } | { ok: false; code: ErrorCode } {
  if (hostHeader === undefined) return { ok: false, code: 'BAD_REQUEST' };
  const host = hostHeader.toLowerCase();
  const match = HOST.exec(host);
  if (!match) return { ok: false, code: 'BAD_REQUEST' };
  const port = match[1];
  if (port !== undefined && Number(port) > 65_535) return { ok: false, code: 'BAD_REQUEST' };
  const hostname = port === undefined ? host : host.slice(0, host.length - port.length - 1);
  if (policy.hosts.size > 0 && !policy.hosts.has(host) && !policy.hosts.has(hostname)) {
    return { ok: false, code: 'HOST_NOT_ALLOWED' };
  }
  // A connection set up for one name must not be used to reach another (RFC 9110 section 15.5.20).
  if (servername !== undefined && servername.toLowerCase() !== hostname)
    return { ok: false, code: 'SNI_MISMATCH' };
  return { ok: true, host: hostname };
}

/** Parses Sec-WebSocket-Protocol (1#token); undefined means malformed. */
export function parseSubprotocols(value: string): string[] | undefined {
  const out: string[] = [];
  for (const part of value.split(',')) {
    const name = part.trim();
    if (!TOKEN.test(name) || out.includes(name) || out.length >= MAX_SUBPROTOCOLS) return undefined;
    out.push(name);
  }
  return out;
}

/** Decides an upgrade request: every RFC 6455 rule, Host, route, Origin and subprotocol. */
export function checkHandshake(req: HandshakeRequest, policy: HandshakePolicy): HandshakeVerdict {
  const scan = scanHeaders(req.rawHeaders, policy.maxHeaderCount);
  if (!scan.ok) return scan;
  const headers = scan.headers;
  if (req.method !== 'GET') return { ok: false, code: 'METHOD_NOT_ALLOWED' };
  if (req.httpVersion !== '1.1') return { ok: false, code: 'HTTP_VERSION_NOT_SUPPORTED' };
  // A body on an upgrade request would be read as WebSocket frames (request smuggling).
  const length = headers.get('content-length');
  if ((length !== undefined && length.trim() !== '0') || headers.has('transfer-encoding')) {
    return { ok: false, code: 'BODY_NOT_ALLOWED' };
  }
  if (headers.get('upgrade')?.trim().toLowerCase() !== 'websocket') return { ok: false, code: 'BAD_UPGRADE' };
  const connection = headers.get('connection');
  if (!connection?.split(',').some((t) => t.trim().toLowerCase() === 'upgrade')) {
    return { ok: false, code: 'BAD_UPGRADE' };
  }
  // Exactly "13": ws coerces with Number(), so "0xd" or "1.3e1" would pass it.
  if (headers.get('sec-websocket-version') !== '13') return { ok: false, code: 'UNSUPPORTED_VERSION' };
  const key = headers.get('sec-websocket-key');
  if (key === undefined || !KEY.test(key)) return { ok: false, code: 'BAD_KEY' };
  const host = checkHost(headers.get('host'), policy, req.servername);
  if (!host.ok) return host;
  const target = normaliseTarget(req.url, policy.maxUrlBytes);
  if (!target.ok) return target;
  const route = findRoute(policy, host.host, target.path);
  if (!route) return { ok: false, code: 'ROUTE_NOT_FOUND', path: target.path };
  const originHeader = headers.get('origin');
  const origin = checkOrigin(route.origins, originHeader, { allowMissing: route.config.allowMissingOrigin });
  if (!origin.ok) {
    return {
      ok: false,
      code: origin.code,
      route,
      path: target.path,
      ...(originHeader ? { origin: originHeader } : {}),
    };
  }
  let subprotocol: string | undefined;
  const offered = headers.get('sec-websocket-protocol');
  if (offered !== undefined) {
    const names = parseSubprotocols(offered);
    if (!names) return { ok: false, code: 'BAD_SUBPROTOCOL', route, path: target.path };
    // Server preference order; only a name from the route's list is ever echoed.
    subprotocol = route.subprotocols.find((p) => names.includes(p));
  }
  if (route.subprotocols.length > 0 && subprotocol === undefined) {
    return { ok: false, code: 'SUBPROTOCOL_NOT_SUPPORTED', route, path: target.path };
  }
  return {
    ok: true,
    route,
    path: target.path,
    query: target.query,
    host: host.host,
    origin: origin.origin,
    subprotocol,
    key,
    headers,
  };
}

/** Decides a plain (non-upgrade) request: 426 on a WebSocket route, 404 elsewhere. */
export function checkPlainRequest(req: HandshakeRequest, policy: HandshakePolicy): ErrorCode {
  const scan = scanHeaders(req.rawHeaders, policy.maxHeaderCount);
  if (!scan.ok) return scan.code;
  const host = checkHost(scan.headers.get('host'), policy, req.servername);
  if (!host.ok) return host.code;
  const target = normaliseTarget(req.url, policy.maxUrlBytes);
  if (!target.ok) return target.code;
  return findRoute(policy, host.host, target.path) ? 'UPGRADE_REQUIRED' : 'ROUTE_NOT_FOUND';
}

/** The key that identifies a route: its host pattern (or `*`) and its path. */
export function routeKey(route: { readonly host?: string | undefined; readonly path: string }): string {
  return `${route.host?.toLowerCase() ?? '*'} ${route.path}`;
}

/**
 * The route for a normalised host name and path: a route for this host before a route for any
 * host (like a server block before the default), an exact path before a prefix, and the longest
 * prefix first. A prefix matches on segment boundaries only, so `/api` never serves `/apix`.
 */
export function findRoute(policy: HandshakePolicy, hostname: string, path: string): RoutePolicy | undefined {
  for (const route of policy.table) {
    if (route.host !== undefined) {
      if (route.host.startsWith('*.')) {
        if (!hostname.endsWith(route.host.slice(1)) || hostname.length <= route.host.length - 1) continue;
      } else if (route.host !== hostname) continue;
    }
    if (route.path === path) return route;
    if (route.prefix && (route.path === '/' || path.startsWith(`${route.path}/`))) return route;
  }
  return undefined;
}
