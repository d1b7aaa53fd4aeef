// The session cookie authenticator, in one of two modes: a cookie signed by the application (HS256
// compact JWS, see cookie-sign.ts; the first key file signs, the rest are still accepted during a
// rotation), or an introspection call to the application with a short cache of positive answers.
// Cookies ride along on cross-site requests, so this authenticator is ambient: its routes demand
// an allowed Origin (H-05, H-06). Session claims such as `amr` reach require.claims.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type JWTPayload, jwtVerify } from 'jose';
import type { CookieAuthenticatorConfig } from '../../config/schema.js';
import type { Principal } from '../../core/principal.js';
import { sessionKey } from './cookie-sign.js';
import { createJsonPoster, identityFromAnswer, isRecord, type JsonPoster } from './https-post.js';
import type { Authenticator, AuthResult } from './types.js';

/** Positive introspection answers kept at most; the oldest is dropped first. */
export const MAX_CACHED_SESSIONS = 10_000;

/** The longest cookie value read; browsers cap a whole cookie at 4096 bytes. */
export const MAX_COOKIE_VALUE_BYTES = 4096;

/** The named cookie in a Cookie header: missing, unusable (sent twice, bad octets), or its value. */
export type CookieLookup =
  | { readonly kind: 'absent' }
  | { readonly kind: 'malformed' }
  | { readonly kind: 'value'; readonly value: string };

// RFC 6265 section 4.1.1 cookie-octet: printable US-ASCII except space, DQUOTE, comma, semicolon, backslash.
const COOKIE_OCTETS = /^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*$/;

/**
 * Finds cookie `name` in a Cookie header (RFC 6265 section 5.4 pairs joined by `;`). Two cookies
 * with our name (one may have been planted by a sibling subdomain or a non-Secure page) make the
 * request malformed rather than letting the first or the last win. An empty value (a logged-out
 * cookie) counts as absent.
 */
export function findCookie(header: string | undefined, name: string): CookieLookup {
  if (header === undefined) return { kind: 'absent' };
  let found: string | undefined;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq === -1 || pair.slice(0, eq).trim() !== name) continue;
    if (found !== undefined) return { kind: 'malformed' };
    let value = pair.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    found = value;
  }
  if (found === undefined || found === '') return { kind: 'absent' };
  if (found.length > MAX_COOKIE_VALUE_BYTES || !COOKIE_OCTETS.test(found)) return { kind: 'malformed' };
  return { kind: 'value', value: found };
}

function fail(
  code: 'UNAUTHENTICATED' | 'CREDENTIAL_EXPIRED' | 'AUTH_UNAVAILABLE',
  reason: string,
): AuthResult {
  return { kind: 'fail', code, reason };
}

/** Verifies a signed session cookie against the current key, then each previous key. */
async function verifySigned(
  name: string,
  value: string,
  keys: readonly Uint8Array[],
  subjectClaim: string,
  now: number,
): Promise<AuthResult> {
  for (const key of keys) {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(value, key, {
        algorithms: ['HS256'],
        requiredClaims: ['exp'],
        currentDate: new Date(now),
      }));
    } catch (err) {
      // jose checks the signature before any claim, so `expired` is only ever said of a real cookie.
      switch ((err as { code?: unknown }).code) {
        case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
          continue;
        case 'ERR_JWT_EXPIRED':
          return fail('CREDENTIAL_EXPIRED', 'expired');
        case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
          return fail(
            'UNAUTHENTICATED',
            (err as { claim?: unknown }).claim === 'nbf' ? 'not_yet_valid' : 'bad_claims',
          );
        case 'ERR_JOSE_ALG_NOT_ALLOWED':
          return fail('UNAUTHENTICATED', 'alg_not_allowed');
        case 'ERR_JWS_INVALID':
        case 'ERR_JWT_INVALID':
        case 'ERR_JOSE_NOT_SUPPORTED':
          return fail('UNAUTHENTICATED', 'malformed');
        default:
          throw err;
      }
    }
    const subject = payload[subjectClaim];
    if (typeof subject !== 'string' || subject === '') return fail('UNAUTHENTICATED', 'no_subject');
    const principal: Principal = {
      subject,
      claims: payload,
      expiresAt: (payload.exp as number) * 1000,
      authenticator: name,
      jti: typeof payload.jti === 'string' ? payload.jti : undefined,
    };
    return { kind: 'ok', principal };
  }
  return fail('UNAUTHENTICATED', 'bad_signature');
}

/**
 * Reads an introspection answer: `{active: true, sub, exp?, claims?}` or `{active: false}`.
 * Anything else means the application is broken, which the client cannot fix: AUTH_UNAVAILABLE.
 */
function principalFromIntrospection(name: string, answer: unknown, now: number): AuthResult {
  if (!isRecord(answer)) return fail('AUTH_UNAVAILABLE', 'bad_answer');
  if (answer.active === false) return fail('UNAUTHENTICATED', 'inactive');
  if (answer.active !== true) return fail('AUTH_UNAVAILABLE', 'bad_answer');
  return identityFromAnswer(name, answer, now);
}

/** Creates a cookie authenticator; key files and the CA file are read now, so problems fail at start-up. */
export function createCookieAuthenticator(name: string, config: CookieAuthenticatorConfig): Authenticator {
  const keys = (config.keyFiles ?? []).map((file, i) => {
    try {
      return sessionKey(readFileSync(file));
    } catch (err) {
      throw new Error(`authenticators.${name}.keyFiles[${i}]: ${(err as Error).message}`);
    }
  });
  const introspectUrl = config.introspectUrl;
  let poster: JsonPoster | undefined;
  if (introspectUrl !== undefined) {
    if (new URL(introspectUrl).protocol !== 'https:')
      throw new Error(`authenticators.${name}.introspectUrl: must be https`);
    try {
      poster = createJsonPoster({ caFile: config.introspectCaFile, timeoutMs: config.timeoutMs });
    } catch (err) {
      throw new Error(`authenticators.${name}.introspectCaFile: ${(err as Error).message}`);
    }
  }
  // Keyed by a SHA-256 of the cookie, so a heap dump or a debugger never shows a live session id.
  const cache = new Map<string, { principal: Principal; until: number }>();

  async function introspect(value: string, now: number): Promise<AuthResult> {
    const key = createHash('sha256').update(value).digest('base64url');
    const hit = cache.get(key);
    if (hit !== undefined) {
      if (hit.until > now) return { kind: 'ok', principal: hit.principal };
      cache.delete(key);
    }
    const answer = await (poster as JsonPoster).post(introspectUrl as string, { cookie: value });
    if (!answer.ok) return fail('AUTH_UNAVAILABLE', answer.reason);
    const result = principalFromIntrospection(name, answer.body, now);
    if (result.kind === 'ok' && config.cacheMs > 0) {
      if (cache.size >= MAX_CACHED_SESSIONS) cache.delete(cache.keys().next().value as string);
      const until = Math.min(now + config.cacheMs, result.principal.expiresAt ?? Number.POSITIVE_INFINITY);
      cache.set(key, { principal: result.principal, until });
    }
    return result;
  }

  return {
    name,
    type: 'cookie',
    ambient: true,
    async authenticate(input): Promise<AuthResult> {
      const cookie = findCookie(input.headers.get('cookie'), config.name);
      if (cookie.kind === 'absent') return { kind: 'absent' };
      if (cookie.kind === 'malformed') return fail('UNAUTHENTICATED', 'malformed');
      if (poster !== undefined) return introspect(cookie.value, input.now);
      return verifySigned(name, cookie.value, keys, config.subjectClaim, input.now);
    },
    close() {
      poster?.close();
      cache.clear();
    },
  };
}
