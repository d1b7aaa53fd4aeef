// The options both builds share, with their defaults, and the checks that make connect() throw
// before any socket exists: the scheme (C-08), credentials in the URL (C-07), subprotocol names.
// No Node imports: the browser build uses this file.
import { type ReconnectOptions, type ReconnectPolicy, reconnectPolicy } from './backoff.js';
import { BEARER_PROTOCOL_PREFIX, isBearerToken, type TokenProvider } from './token.js';

/** Limits and defaults, each a named option with one default (docs/client.md lists them). */
export const CLIENT_DEFAULTS = Object.freeze({
  /** Largest message accepted from the server (ws' own default is 100 MiB: threats.md C-02). */
  maxPayload: 1024 * 1024,
  /** Fragments in one message before the connection is failed with 1008. */
  maxFragments: 1024,
  handshakeTimeoutMs: 10_000,
  /** How long close() waits for the server's close frame (Node; a browser decides itself). */
  closeTimeoutMs: 5_000,
  /** How long a broker request waits for its ack. */
  requestTimeoutMs: 10_000,
  maxPendingRequests: 1_000,
  /** Messages an async iterator holds before the socket is paused (Node) or failed (browser). */
  maxQueuedMessages: 1_000,
  /** Refresh a JWT this long before its `exp` (broker routes, in-band auth.refresh). */
  refreshBeforeExpiryMs: 30_000,
});

/** Clock and timers, injectable so tests need no sleeps. */
export interface Timers {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The real clock. */
export const REAL_TIMERS: Timers = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** Options of `connect` in both builds. */
export interface BaseConnectOptions {
  /** Subprotocols to offer, e.g. `['portcullis.v1']` for broker routes. */
  protocols?: string | readonly string[];
  /**
   * Bearer token, or a provider called before every connection attempt. Node sends it as
   * `Authorization: Bearer`, the browser in the `portcullis.bearer.` subprotocol; never in the URL.
   */
  token?: string | TokenProvider;
  /** Allow `ws://` to a host that is not loopback (never in production code paths you ship). */
  allowInsecure?: boolean;
  /** Production mode refuses `ws://` even on loopback and any disabled certificate check. */
  production?: boolean;
  /** Largest message accepted, in bytes (default 1 MiB). */
  maxPayload?: number;
  handshakeTimeoutMs?: number;
  reconnect?: ReconnectOptions;
  requestTimeoutMs?: number;
  maxPendingRequests?: number;
  maxQueuedMessages?: number;
  refreshBeforeExpiryMs?: number;
  /** Receives SDK debug lines. Tokens, Authorization and query strings never appear in them. */
  debug?: (line: string) => void;
  /** For tests: the random source of the jitter (default Math.random). */
  random?: () => number;
  /** For tests: the clock and timers. */
  timers?: Timers;
}

/** Options after defaults and checks: what the client core runs on. */
export interface ResolvedOptions {
  readonly url: URL;
  readonly protocols: readonly string[];
  readonly token: string | TokenProvider | undefined;
  readonly maxPayload: number;
  readonly handshakeTimeoutMs: number;
  readonly reconnect: ReconnectPolicy;
  readonly requestTimeoutMs: number;
  readonly maxPendingRequests: number;
  readonly maxQueuedMessages: number;
  readonly refreshBeforeExpiryMs: number;
  readonly debug: ((line: string) => void) | undefined;
  readonly random: () => number;
  readonly timers: Timers;
}

/** True for a host name that always means this machine. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[|\]$/g, '');
  if (host === 'localhost' || host === '::1' || host === '0:0:0:0:0:0:0:1') return true;
  const v4 = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  return v4?.slice(1).every((octet) => Number(octet) <= 255) ?? false;
}

// RFC 6455 section 4.1: a subprotocol is an HTTP token.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Parses and checks the URL: wss, or ws only on loopback (or with allowInsecure) outside production. */
export function checkUrl(input: string | URL, options: { allowInsecure: boolean; production: boolean }): URL {
  let url: URL;
  try {
    url = new URL(String(input));
  } catch {
    throw new TypeError('url must be an absolute ws:// or wss:// URL');
  }
  if (url.protocol !== 'wss:' && url.protocol !== 'ws:') {
    throw new TypeError(`url must use wss:// (got ${url.protocol}//)`);
  }
  if (url.hash) throw new TypeError('url must not have a fragment');
  if (url.username || url.password) {
    throw new TypeError('url must not carry credentials; use the token option');
  }
  // A token in the URL ends up in proxy and access logs and browser history (threats.md C-07).
  if (url.searchParams.has('access_token')) {
    throw new TypeError('url must not carry access_token; use the token option');
  }
  if (url.protocol === 'ws:') {
    if (options.production && !options.allowInsecure) {
      throw new TypeError('ws:// is refused in production mode; use wss://');
    }
    if (!options.allowInsecure && !isLoopbackHost(url.hostname)) {
      throw new TypeError(
        `ws:// is refused for ${url.hostname}: use wss://, or allowInsecure for a trusted network`,
      );
    }
  }
  return url;
}

/** Checks the offered subprotocols: tokens, no duplicates, no bearer entry (use `token`). */
export function checkProtocols(input: string | readonly string[] | undefined): string[] {
  const list = input === undefined ? [] : typeof input === 'string' ? [input] : [...input];
  const seen = new Set<string>();
  for (const protocol of list) {
    if (typeof protocol !== 'string' || !TOKEN.test(protocol)) {
      throw new TypeError(`invalid subprotocol: ${JSON.stringify(protocol)}`);
    }
    if (protocol.startsWith(BEARER_PROTOCOL_PREFIX)) {
      throw new TypeError('pass the token in the token option, not as a subprotocol');
    }
    if (seen.has(protocol)) throw new TypeError(`duplicate subprotocol: ${protocol}`);
    seen.add(protocol);
  }
  return list;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0) throw new TypeError(`${name} must be a positive integer`);
  return value;
}

/** Applies defaults and every check shared by both builds; throws a TypeError on a bad option. */
export function resolveBaseOptions(
  input: string | URL,
  options: BaseConnectOptions,
  production: boolean,
): ResolvedOptions {
  const url = checkUrl(input, { allowInsecure: options.allowInsecure === true, production });
  if (typeof options.token === 'string' && !isBearerToken(options.token)) {
    throw new TypeError('token must be a non-empty RFC 6750 b64token');
  }
  if (
    options.token !== undefined &&
    typeof options.token !== 'string' &&
    typeof options.token !== 'function'
  ) {
    throw new TypeError('token must be a string or a function');
  }
  return {
    url,
    protocols: checkProtocols(options.protocols),
    token: options.token,
    maxPayload: positive('maxPayload', options.maxPayload, CLIENT_DEFAULTS.maxPayload),
    handshakeTimeoutMs: positive(
      'handshakeTimeoutMs',
      options.handshakeTimeoutMs,
      CLIENT_DEFAULTS.handshakeTimeoutMs,
    ),
    reconnect: reconnectPolicy(options.reconnect),
    requestTimeoutMs: positive(
      'requestTimeoutMs',
      options.requestTimeoutMs,
      CLIENT_DEFAULTS.requestTimeoutMs,
    ),
    maxPendingRequests: positive(
      'maxPendingRequests',
      options.maxPendingRequests,
      CLIENT_DEFAULTS.maxPendingRequests,
    ),
    maxQueuedMessages: positive(
      'maxQueuedMessages',
      options.maxQueuedMessages,
      CLIENT_DEFAULTS.maxQueuedMessages,
    ),
    refreshBeforeExpiryMs: positive(
      'refreshBeforeExpiryMs',
      options.refreshBeforeExpiryMs,
      CLIENT_DEFAULTS.refreshBeforeExpiryMs,
    ),
    debug: options.debug,
    random: options.random ?? Math.random,
    timers: options.timers ?? REAL_TIMERS,
  };
}

/** The URL as debug lines show it: scheme, host and path, never the query (it may hold secrets). */
export function safeUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}${url.search ? '?…' : ''}`;
}
