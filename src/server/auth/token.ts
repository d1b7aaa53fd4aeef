// Finds a bearer token in an upgrade request: the Authorization header, the browser form in
// Sec-WebSocket-Protocol, or (only where the route opts in) the query string. Pure: no I/O, no clock.
import type { HeaderMap } from '../../core/handshake.js';

/**
 * The Sec-WebSocket-Protocol entry that carries a bearer token from a browser, which cannot set
 * Authorization on a WebSocket: `new WebSocket(url, ['chat.v1', 'portcullis.bearer.' + token])`.
 * It is never echoed: only names from the route's `subprotocols` list are, and this one cannot be listed.
 */
export const BEARER_PROTOCOL_PREFIX = 'portcullis.bearer.';

/** The query parameter a route with `allowQueryToken` reads (RFC 6750 section 2.3). */
export const QUERY_TOKEN_PARAM = 'access_token';

/** Where a token was found. */
export type TokenSource = 'header' | 'subprotocol' | 'query';

/**
 * The outcome: no bearer credential, one that is present but unusable, or the token. For the
 * subprotocol form, `entry` is the whole offered name, so the adapter can keep it out of any echo.
 */
export type BearerToken =
  | { readonly kind: 'absent' }
  | { readonly kind: 'malformed' }
  | { readonly kind: 'token'; readonly token: string; readonly source: TokenSource; readonly entry?: string };

const ABSENT: BearerToken = Object.freeze({ kind: 'absent' });
const MALFORMED: BearerToken = Object.freeze({ kind: 'malformed' });

// RFC 6750 section 2.1 b64token; a JWT (base64url segments joined by dots) always matches.
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * Extracts the bearer token, trying in order `Authorization: Bearer`, the subprotocol form and,
 * when `allowQueryToken`, `?access_token=`. Another Authorization scheme (Basic) is left to other
 * authenticators; a Bearer header that is not exactly `Bearer <b64token>` is malformed.
 */
export function extractBearerToken(headers: HeaderMap, query: string, allowQueryToken: boolean): BearerToken {
  const authorization = headers.get('authorization');
  if (authorization !== undefined) {
    const fromHeader = fromAuthorization(authorization);
    if (fromHeader !== ABSENT) return fromHeader;
  }
  const offered = headers.get('sec-websocket-protocol');
  if (offered?.includes(BEARER_PROTOCOL_PREFIX)) {
    const fromProtocol = fromSubprotocols(offered);
    if (fromProtocol !== ABSENT) return fromProtocol;
  }
  // A token in the URL ends up in access logs, proxies and browser history: read it only
  // where the route opted in; elsewhere it is ignored and the request counts as unauthenticated.
  if (allowQueryToken && query.includes(QUERY_TOKEN_PARAM)) return fromQuery(query);
  return ABSENT;
}

function fromAuthorization(value: string): BearerToken {
  const schemeEnd = value.search(/\s/);
  const scheme = schemeEnd === -1 ? value : value.slice(0, schemeEnd);
  if (scheme.toLowerCase() !== 'bearer') return ABSENT;
  // Exactly one space, then one b64token and nothing else (RFC 6750 section 2.1).
  if (value[schemeEnd] !== ' ') return MALFORMED;
  const token = value.slice(schemeEnd + 1);
  return B64TOKEN.test(token) ? { kind: 'token', token, source: 'header' } : MALFORMED;
}

function fromSubprotocols(offered: string): BearerToken {
  let found: BearerToken = ABSENT;
  for (const part of offered.split(',')) {
    const entry = part.trim();
    if (!entry.startsWith(BEARER_PROTOCOL_PREFIX)) continue;
    // Two credentials in one request are ambiguous: refuse rather than pick one.
    if (found !== ABSENT) return MALFORMED;
    const token = entry.slice(BEARER_PROTOCOL_PREFIX.length);
    if (!B64TOKEN.test(token)) return MALFORMED;
    found = { kind: 'token', token, source: 'subprotocol', entry };
  }
  return found;
}

function fromQuery(query: string): BearerToken {
  const values = new URLSearchParams(query).getAll(QUERY_TOKEN_PARAM);
  if (values.length === 0) return ABSENT;
  const token = values[0];
  if (values.length > 1 || token === undefined || !B64TOKEN.test(token)) return MALFORMED;
  return { kind: 'token', token, source: 'query' };
}
