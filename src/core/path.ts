// The request target, normalised once. Routing and authorization both use this one result, so
// `/ws/../admin`, `/%2e%2e/`, `//ws` and friends cannot mean one thing to the router and another
// to the policy.
import type { ErrorCode } from '../protocol.js';

/** A normalised origin-form target, or the code that refuses it. */
export type TargetVerdict = { ok: true; path: string; query: string } | { ok: false; code: ErrorCode };

const UNRESERVED = /[A-Za-z0-9\-._~]/;
// Control characters, space, backslash and the characters RFC 3986 never allows in a path.
const FORBIDDEN = /[\x00-\x20\x7f\\"<>^`{|}#]/;

/** Normalises a request target; only origin-form (`/path?query`) is accepted. */
export function normaliseTarget(target: string, maxBytes: number): TargetVerdict {
  if (target.length > maxBytes) return { ok: false, code: 'URI_TOO_LONG' };
  // Absolute-form (`GET http://10.0.0.5/admin`) and asterisk-form would let the client choose the
  // authority; a gateway routes by Host only.
  if (target[0] !== '/') return { ok: false, code: 'BAD_REQUEST' };
  const q = target.indexOf('?');
  const rawPath = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? '' : target.slice(q + 1);
  if (FORBIDDEN.test(rawPath) || /[\x00-\x20\x7f#]/.test(query)) return { ok: false, code: 'BAD_PATH' };
  const decoded = decodeUnreserved(rawPath);
  if (decoded === undefined) return { ok: false, code: 'BAD_PATH' };
  const segments: string[] = [];
  for (const segment of decoded.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      // Climbing above the root is never a legitimate request.
      if (segments.pop() === undefined) return { ok: false, code: 'BAD_PATH' };
      continue;
    }
    segments.push(segment);
  }
  let path = `/${segments.join('/')}`;
  if (decoded.endsWith('/') && segments.length > 0) path += '/';
  return { ok: true, path, query };
}

// Decodes %XX only where XX is an unreserved character (RFC 3986 section 6.2.2.2); other escapes
// are kept, upper-cased. An encoded slash, backslash or NUL could smuggle a separator past the
// router, so it is refused outright.
function decodeUnreserved(path: string): string | undefined {
  if (!path.includes('%')) return path;
  let out = '';
  for (let i = 0; i < path.length; i++) {
    const ch = path[i] as string;
    if (ch !== '%') {
      out += ch;
      continue;
    }
    const hex = path.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
    const byte = Number.parseInt(hex, 16);
    if (byte === 0x2f || byte === 0x5c || byte < 0x20 || byte === 0x7f) return undefined;
    const decoded = String.fromCharCode(byte);
    out += UNRESERVED.test(decoded) ? decoded : `%${hex.toUpperCase()}`;
    i += 2;
  }
  return out;
}
