// Which of the client's request headers reach an upstream, and what the gateway adds (P-03).
// Pure: it takes the client's header map and the route's allowlist and returns the headers to send.
// The order matters: strip first, then add, so a client can never remove or replace a header the
// gateway adds (a Connection nomination of X-Forwarded-For only ever strips the client's copy).
import type { HeaderMap } from './handshake.js';

/** The identity header the gateway adds: a JWT it signed (see server/identity-token.ts). */
export const IDENTITY_HEADER = 'x-portcullis-identity';
/** Plain identity headers, only where the route opts in (plainIdentityHeaders). */
export const SUBJECT_HEADER = 'x-portcullis-subject';
export const AUTHENTICATOR_HEADER = 'x-portcullis-authenticator';

// Hop-by-hop headers (RFC 9110 section 7.6.1) and message framing: they describe the client's
// connection, never the upstream's. The upstream leg's Host is the upstream URL's authority.
const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
  'expect',
  'http2-settings',
]);

// Headers through which a client could claim an address, a certificate or an identity: only the
// gateway speaks about these, so they are never taken from the client, whatever the allowlist says.
const CLIENT_CLAIMS: ReadonlySet<string> = new Set([
  'forwarded',
  'x-real-ip',
  'true-client-ip',
  'x-client-ip',
  'x-cluster-client-ip',
  'client-ip',
  'cf-connecting-ip',
  'x-client-cert',
  'x-ssl-client-cert',
  'x-original-forwarded-for',
]);

const HEADER_NAME = /^[!#$%&'*+\-.^`|~0-9a-z]+$/;

/**
 * Why a header name can never be passed through, or undefined when an allowlist may name it. The
 * config check uses this, so listing a header that would be dropped anyway is an error, not a surprise.
 */
export function unforwardable(name: string): string | undefined {
  const lower = name.toLowerCase();
  // Underscores: some servers read X_User as X-User, so a client could smuggle a look-alike of
  // a stripped header past a dash-only filter (Envoy headers_with_underscores_action).
  if (lower.includes('_')) return 'header names with underscores are never forwarded';
  if (!HEADER_NAME.test(lower)) return 'must be an HTTP header name';
  if (HOP_BY_HOP.has(lower)) return 'is a hop-by-hop header';
  if (lower.startsWith('sec-websocket-')) return 'belongs to the upstream handshake the gateway makes itself';
  if (lower.startsWith('x-forwarded-') || lower.startsWith('x-portcullis-') || CLIENT_CLAIMS.has(lower)) {
    return 'is set by the gateway only';
  }
  return undefined;
}

/** What the gateway knows about the client, to add after stripping. */
export interface ForwardContext {
  /** The client's headers, by lower-case name (from the handshake check). */
  readonly headers: HeaderMap;
  /** The route's passHeaders, lower-case. */
  readonly allow: ReadonlySet<string>;
  /** Add X-Forwarded-For/Proto/Host. */
  readonly forwarded: boolean;
  /** The client address as the gateway determined it (trusted proxies applied). */
  readonly remote: string;
  readonly encrypted: boolean;
  /** The Host the client asked for, as validated by the handshake check. */
  readonly host: string;
  /** Identity headers to add last: [lower-case name, value]. */
  readonly identity: readonly (readonly [string, string])[];
}

/** The headers to send upstream: the allowed client headers, then the gateway's own. */
export function forwardHeaders(context: ForwardContext): Record<string, string> {
  const nominated = connectionNominations(context.headers.get('connection'));
  const out: Record<string, string> = {};
  for (const [name, value] of context.headers) {
    // The allowlist decides; the rest is defence in depth should a forbidden name ever get in.
    if (!context.allow.has(name) || nominated.has(name) || unforwardable(name) !== undefined) continue;
    out[name] = value;
  }
  if (context.forwarded) {
    // One hop: the client as the gateway saw it (after trusted proxies), never a client-sent chain.
    out['x-forwarded-for'] = context.remote;
    out['x-forwarded-proto'] = context.encrypted ? 'https' : 'http';
    out['x-forwarded-host'] = context.host;
  }
  for (const [name, value] of context.identity) out[name] = value;
  return out;
}

/** Plain identity values as header-safe text: anything outside visible ASCII, and `%`, percent-encoded. */
export function headerSafe(value: string): string {
  // A lone surrogate cannot be UTF-8 encoded: it becomes U+FFFD first.
  const wellFormed = value.replace(LONE_SURROGATE, '\uFFFD');
  return wellFormed.replace(/[^\x21-\x24\x26-\x7e]/gu, (c) => encodeURIComponent(c));
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

function connectionNominations(value: string | undefined): Set<string> {
  const out = new Set<string>();
  if (value === undefined) return out;
  for (const token of value.split(',')) {
    const name = token.trim().toLowerCase();
    if (name) out.add(name);
  }
  return out;
}
