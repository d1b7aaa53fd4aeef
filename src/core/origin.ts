// Origin policy: the Cross-Site WebSocket Hijacking defence (threats H-05, H-06, P-08).
// Config entries compile once into a frozen policy; checkOrigin decides per handshake without I/O.
// Everything is compared as an RFC 6454 ASCII serialisation: lowercase scheme and host, IDN hosts
// as punycode A-labels, default port dropped.
import { domainToASCII } from 'node:url';
import type { ErrorCode } from '../protocol.js';

type Scheme = 'http' | 'https';

/** One compiled allowlist entry: the literal `null`, an exact origin, or a leftmost-label wildcard. */
export type OriginPattern =
  | { readonly kind: 'null' }
  | { readonly kind: 'exact'; readonly origin: string }
  | {
      readonly kind: 'wildcard';
      /** Normalised form, e.g. `https://*.example.com:8443`; also the policy's lookup key. */
      readonly pattern: string;
      readonly scheme: Scheme;
      /** The parent with its leading dot, e.g. `.example.com`. */
      readonly suffix: string;
      /** Decimal port, or '' for the scheme's default. */
      readonly port: string;
    };

/** A compiled, frozen Origin allowlist. */
export interface OriginPolicy {
  /** Serialised origins allowed exactly. */
  readonly exact: ReadonlySet<string>;
  /** Normalised wildcard patterns (`scheme://*.parent[:port]`). */
  readonly wildcards: ReadonlySet<string>;
  /** True only when the literal `null` is listed. */
  readonly allowNull: boolean;
}

/** Why an Origin was refused. */
export type OriginRefusal = 'missing' | 'malformed' | 'not-allowed' | 'null';

/** The decision for one handshake; `origin` is the normalised value, safe to echo, or null when absent. */
export type OriginVerdict =
  | { ok: true; origin: string | null }
  | { ok: false; code: Extract<ErrorCode, 'ORIGIN_NOT_ALLOWED'>; reason: OriginRefusal };

/** Options for checkOrigin. */
export interface OriginCheckOptions {
  /**
   * No Origin means a non-browser client: allow it only when the route's credentials are not ambient
   * (bearer, mTLS), since a cookie would otherwise ride along (RFC 6455 section 10.1).
   */
  readonly allowMissing: boolean;
}

const DEFAULT_PORT: Readonly<Record<Scheme, string>> = { http: '80', https: '443' };

// DNS limits (RFC 1035): a longer host cannot be a real site, so it cannot be an allowed origin.
const MAX_HOST_CHARS = 253;
const MAX_LABEL_CHARS = 63;
// The longest serialisation a browser can send; anything longer is refused before the regex runs.
const MAX_ORIGIN_CHARS = 'https://'.length + MAX_HOST_CHARS + ':65535'.length;

// A received Origin is exactly scheme://host[:port]. Browsers send hosts as ASCII A-labels, so a
// non-ASCII host is malformed: folding it (UTS 46 maps fullwidth 'ａ' to 'a') would let look-alikes in.
// A port has no leading zero and is never 0. Labels exclude '.', so matching stays linear.
const ORIGIN_SYNTAX =
  /^(https?):\/\/(\[[0-9a-f:.]+\]|[a-z0-9_-]+(?:\.[a-z0-9_-]+)*)(?::([1-9][0-9]{0,4}))?$/i;
const HOST_SYNTAX = /^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/;
const IPV6_SYNTAX = /^\[[0-9a-f:.]+\]$/i;
const PORT_SYNTAX = /^[1-9][0-9]{0,4}$/;
// domainToASCII silently drops tabs and decodes %XX, so such entries would not mean what they say.
const ENTRY_FORBIDDEN = /[\s\u0000-\u001f\u007f%]/u;
const ENTRY_NOT_ORIGIN = /[/?#@\\]/;
// WHATWG URL parses a host whose last label is numeric as IPv4; a wildcard needs a domain.
const NUMERIC_LABEL = /(?:^|\.)(?:[0-9]+|0x[0-9a-f]*)$/i;

interface OriginTuple {
  readonly scheme: Scheme;
  readonly host: string;
  readonly port: string;
}

const NULL_PATTERN: OriginPattern = Object.freeze({ kind: 'null' });
const ALLOWED_MISSING: OriginVerdict = Object.freeze({ ok: true, origin: null });
const ALLOWED_NULL: OriginVerdict = Object.freeze({ ok: true, origin: 'null' });

function refusal(reason: OriginRefusal): OriginVerdict {
  return Object.freeze({ ok: false, code: 'ORIGIN_NOT_ALLOWED', reason });
}

const REFUSED_MISSING = refusal('missing');
const REFUSED_MALFORMED = refusal('malformed');
const REFUSED_NOT_ALLOWED = refusal('not-allowed');
const REFUSED_NULL = refusal('null');

function fitsDns(host: string): boolean {
  if (host.length > MAX_HOST_CHARS) return false;
  let start = 0;
  for (let dot = host.indexOf('.'); dot !== -1; dot = host.indexOf('.', start)) {
    if (dot - start > MAX_LABEL_CHARS) return false;
    start = dot + 1;
  }
  return host.length - start <= MAX_LABEL_CHARS;
}

function canonicalIpv6(host: string): string | null {
  if (!IPV6_SYNTAX.test(host)) return null;
  try {
    return new URL(`http://${host}`).hostname;
  } catch {
    return null;
  }
}

/** The port as serialised: '' for the scheme's default, null when out of range or not canonical decimal. */
function serialisePort(scheme: Scheme, digits: string): string | null {
  if (!PORT_SYNTAX.test(digits) || Number(digits) > 65535) return null;
  return digits === DEFAULT_PORT[scheme] ? '' : digits;
}

function serialise(scheme: Scheme, host: string, port: string): string {
  return port === '' ? `${scheme}://${host}` : `${scheme}://${host}:${port}`;
}

function parseReceived(value: string): OriginTuple | null {
  if (value.length > MAX_ORIGIN_CHARS) return null;
  const match = ORIGIN_SYNTAX.exec(value);
  if (match === null) return null;
  const scheme = match[1]!.toLowerCase() as Scheme;
  let host = match[2]!.toLowerCase();
  if (host.startsWith('[')) {
    const ip = canonicalIpv6(host);
    if (ip === null) return null;
    host = ip;
  } else if (!fitsDns(host)) {
    return null;
  }
  const port = match[3] === undefined ? '' : serialisePort(scheme, match[3]);
  if (port === null) return null;
  return { scheme, host, port };
}

/** IDN to A-labels, lowercased; null when the result is not a host a browser could send back. */
function asciiHost(host: string): string | null {
  const ascii = domainToASCII(host);
  return HOST_SYNTAX.test(ascii) && fitsDns(ascii) ? ascii : null;
}

/**
 * Parses one allowlist entry: `https://app.example.com`, `http://localhost:3000`, `null`, or
 * `https://*.example.com[:port]`. Entries with a path (even a lone `/`), query, fragment or userinfo
 * are errors, because a browser's Origin never has them.
 */
export function parseOriginPattern(entry: string): OriginPattern | { error: string } {
  if (entry === 'null') return NULL_PATTERN;
  if (entry === '*') return { error: "'*' would allow every origin; list each origin instead" };
  if (ENTRY_FORBIDDEN.test(entry)) return { error: 'must not contain whitespace, control characters or %' };
  const sep = entry.indexOf('://');
  if (sep === -1) return { error: 'expected scheme://host[:port], https://*.domain or the literal null' };
  const scheme = entry.slice(0, sep).toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') return { error: 'scheme must be http or https' };
  const rest = entry.slice(sep + 3);
  if (ENTRY_NOT_ORIGIN.test(rest)) {
    return { error: 'an origin has no path (not even a trailing /), query, fragment or userinfo' };
  }

  let host: string;
  let portDigits: string | undefined;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close === -1) return { error: 'unterminated IPv6 address' };
    host = rest.slice(0, close + 1);
    const after = rest.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) return { error: 'unexpected text after the IPv6 address' };
      portDigits = after.slice(1);
    }
  } else {
    const colon = rest.indexOf(':');
    if (colon !== -1 && rest.indexOf(':', colon + 1) !== -1) return { error: 'invalid host' };
    host = colon === -1 ? rest : rest.slice(0, colon);
    if (colon !== -1) portDigits = rest.slice(colon + 1);
  }
  if (host === '') return { error: 'empty host' };
  if (host.endsWith('.')) return { error: 'the host must not end with a dot' };
  const port = portDigits === undefined ? '' : serialisePort(scheme, portDigits);
  if (port === null) return { error: 'the port must be a decimal 1-65535 without leading zeros' };

  if (host.includes('*')) {
    if (host === '*') return { error: `'${scheme}://*' would allow every ${scheme} origin` };
    if (!host.startsWith('*.') || host.includes('*', 1)) {
      return { error: 'a wildcard must be the whole leftmost label, as in https://*.example.com' };
    }
    const parent = asciiHost(host.slice(2));
    if (parent === null) return { error: 'invalid host' };
    if (!parent.includes('.')) {
      return { error: 'a wildcard needs at least two labels after "*." (https://*.example.com, not *.com)' };
    }
    if (NUMERIC_LABEL.test(parent)) return { error: 'a wildcard needs a domain name, not an IP address' };
    const suffix = `.${parent}`;
    return Object.freeze({
      kind: 'wildcard',
      pattern: serialise(scheme, `*${suffix}`, port),
      scheme,
      suffix,
      port,
    });
  }

  const ascii = host.startsWith('[') ? canonicalIpv6(host) : asciiHost(host);
  if (ascii === null) return { error: 'invalid host' };
  return Object.freeze({ kind: 'exact', origin: serialise(scheme, ascii, port) });
}

/** Compiles config entries into a frozen policy; throws an Error naming the first invalid entry. */
export function compileOriginPolicy(entries: readonly string[]): OriginPolicy {
  const exact = new Set<string>();
  const wildcards = new Set<string>();
  let allowNull = false;
  entries.forEach((entry, i) => {
    const pattern = parseOriginPattern(entry);
    if ('error' in pattern) throw new Error(`origins[${i}] ${JSON.stringify(entry)}: ${pattern.error}`);
    switch (pattern.kind) {
      case 'null':
        allowNull = true;
        break;
      case 'exact':
        exact.add(pattern.origin);
        break;
      case 'wildcard':
        wildcards.add(pattern.pattern);
        break;
      default:
        pattern satisfies never;
    }
  });
  return Object.freeze({ exact, wildcards, allowNull });
}

/**
 * The RFC 6454 serialisation of a received Origin header value; the literal `null` stays 'null';
 * null when the value is not exactly an ASCII http(s)://host[:port].
 */
export function normaliseOrigin(value: string): string | null {
  if (value === 'null') return 'null';
  const tuple = parseReceived(value);
  return tuple === null ? null : serialise(tuple.scheme, tuple.host, tuple.port);
}

// Walks the host's parent domains and looks each up, so the cost does not grow with the number of
// patterns. The first label is never empty, so a pattern never matches its bare parent.
function matchesWildcard(wildcards: ReadonlySet<string>, { scheme, host, port }: OriginTuple): boolean {
  if (wildcards.size === 0 || host.startsWith('[')) return false;
  for (let dot = host.indexOf('.'); dot !== -1; dot = host.indexOf('.', dot + 1)) {
    if (wildcards.has(serialise(scheme, `*${host.slice(dot)}`, port))) return true;
  }
  return false;
}

/** Decides whether a handshake's Origin header value (undefined when absent) is allowed. */
export function checkOrigin(
  policy: OriginPolicy,
  origin: string | undefined,
  opts: OriginCheckOptions,
): OriginVerdict {
  if (origin === undefined) return opts.allowMissing ? ALLOWED_MISSING : REFUSED_MISSING;
  // Sandboxed iframes, file: pages and some redirects send `null`; any site can produce it, so it is
  // refused unless listed explicitly, and never matched by a pattern.
  if (origin === 'null') return policy.allowNull ? ALLOWED_NULL : REFUSED_NULL;
  const tuple = parseReceived(origin);
  if (tuple === null) return REFUSED_MALFORMED;
  const serialised = serialise(tuple.scheme, tuple.host, tuple.port);
  if (policy.exact.has(serialised) || matchesWildcard(policy.wildcards, tuple)) {
    return { ok: true, origin: serialised };
  }
  return REFUSED_NOT_ALLOWED;
}
