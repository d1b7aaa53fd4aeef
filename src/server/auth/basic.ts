// HTTP Basic against an htpasswd file of bcrypt hashes, for internal tools. An unknown user costs
// the same bcrypt comparison as a wrong password, and failed attempts are limited per client
// address with a token bucket. Browsers replay cached Basic credentials on their own, so
// this authenticator is ambient (H-05).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import bcrypt from 'bcryptjs';
import type { BasicAuthenticatorConfig } from '../../config/schema.js';
import type { Principal } from '../../core/principal.js';
import { type Bucket, fullBucket, isFull, type RateRule, take } from '../../core/rate.js';
import type { Authenticator, AuthResult } from './types.js';

/** Client addresses whose failures are remembered at most; full buckets are swept first. */
export const MAX_TRACKED_ADDRESSES = 10_000;

/** bcrypt reads only the first 72 bytes of a password; longer ones are refused, not truncated. */
export const MAX_PASSWORD_BYTES = 72;

/** A basic authenticator with its challenge header and a count of bcrypt comparisons run. */
export interface BasicAuthenticator extends Authenticator {
  readonly type: 'basic';
  /** The `WWW-Authenticate` value for a 401 from this authenticator. */
  readonly challenge: string;
  /** bcrypt comparisons run so far (tests use it to prove an unknown user costs one too). */
  readonly compares: number;
  /** Client addresses with a failure bucket right now (at most MAX_TRACKED_ADDRESSES). */
  readonly trackedAddresses: number;
}

// $2a$, $2b$ and $2y$ (PHP / Apache htpasswd -B) are the same algorithm; 53 = 22 salt + 31 hash chars.
const BCRYPT = /^\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * Reads an htpasswd file (`user:hash` per line; blank lines and `#` comments skipped). Any hash
 * that is not bcrypt (MD5 `$apr1$`, SHA `{SHA}`, crypt, plain text) is refused with its line number.
 */
export function parseHtpasswd(text: string, file: string): Map<string, string> {
  const users = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    const user = colon === -1 ? '' : line.slice(0, colon);
    const hash = colon === -1 ? '' : line.slice(colon + 1);
    if (user === '') throw new Error(`${file}:${i + 1}: expected user:hash`);
    if (!BCRYPT.test(hash))
      throw new Error(`${file}:${i + 1}: only bcrypt hashes ($2a$, $2b$, $2y$) are supported`);
    if (users.has(user)) throw new Error(`${file}:${i + 1}: user "${user}" is listed twice`);
    users.set(user, hash);
  });
  return users;
}

/** The credentials of an `Authorization: Basic` header, or why there are none. */
export type BasicCredentials =
  | { readonly kind: 'absent' }
  | { readonly kind: 'malformed' }
  | { readonly kind: 'credentials'; readonly user: string; readonly password: string };

/** Reads `Authorization: Basic base64(user:password)`; another scheme (Bearer) is absent. */
export function basicCredentials(authorization: string | undefined): BasicCredentials {
  if (authorization === undefined) return { kind: 'absent' };
  const space = authorization.indexOf(' ');
  const scheme = space === -1 ? authorization : authorization.slice(0, space);
  if (scheme.toLowerCase() !== 'basic') return { kind: 'absent' };
  const encoded = authorization.slice(space + 1).trim();
  if (space === -1 || !BASE64.test(encoded) || encoded.length % 4 !== 0) return { kind: 'malformed' };
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0 || decoded.includes('\uFFFD')) return { kind: 'malformed' };
  return { kind: 'credentials', user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Creates a Basic authenticator; the htpasswd file is read and checked now. */
export function createBasicAuthenticator(name: string, config: BasicAuthenticatorConfig): BasicAuthenticator {
  const users = parseHtpasswd(readFileSync(config.htpasswdFile, 'utf8'), config.htpasswdFile);
  // Unknown users are compared against a hash of the file's highest cost, so they take as long.
  const cost = Math.max(4, ...[...users.values()].map((h) => bcrypt.getRounds(h)));
  const dummyHash = bcrypt.hashSync(randomBytes(16).toString('hex'), cost);
  const rule: RateRule = { perSecond: config.failuresPerMinute / 60, burst: config.failureBurst };
  const buckets = new Map<string, Bucket>();
  let compares = 0;
  let lastSweep = Number.NEGATIVE_INFINITY;

  function bucketFor(remote: string, now: number): Bucket {
    const existing = buckets.get(remote);
    if (existing !== undefined) return existing;
    if (buckets.size >= MAX_TRACKED_ADDRESSES) {
      // A full sweep at most once a second, so a flood of new addresses costs O(1) each.
      if (now - lastSweep >= 1000) {
        lastSweep = now;
        for (const [ip, b] of buckets) if (isFull(rule, b, now)) buckets.delete(ip);
      }
      // Still full: everyone tracked failed recently. Forget the oldest rather than refuse newcomers.
      if (buckets.size >= MAX_TRACKED_ADDRESSES) buckets.delete(buckets.keys().next().value as string);
    }
    const bucket = fullBucket(rule, now);
    buckets.set(remote, bucket);
    return bucket;
  }

  const authenticator: BasicAuthenticator = {
    name,
    type: 'basic',
    ambient: true,
    challenge: `Basic realm="${config.realm}", charset="UTF-8"`,
    get compares() {
      return compares;
    },
    get trackedAddresses() {
      return buckets.size;
    },
    async authenticate(input): Promise<AuthResult> {
      const credentials = basicCredentials(input.headers.get('authorization'));
      if (credentials.kind === 'absent') return { kind: 'absent' };
      // Every attempt reserves a failure token before the (slow, asynchronous) comparison, so a
      // burst of parallel guesses cannot all pass the check; a success gives its token back.
      const bucket = bucketFor(input.remote, input.now);
      const waitMs = take(rule, bucket, input.now);
      if (waitMs > 0)
        return { kind: 'fail', code: 'AUTH_RATE_LIMITED', reason: 'too_many_failures', retryAfterMs: waitMs };
      if (credentials.kind === 'malformed')
        return { kind: 'fail', code: 'UNAUTHENTICATED', reason: 'malformed' };
      const hash = users.get(credentials.user);
      const usable = hash !== undefined && Buffer.byteLength(credentials.password) <= MAX_PASSWORD_BYTES;
      compares++;
      const match = await bcrypt.compare(credentials.password, usable ? hash : dummyHash);
      if (!usable || !match) return { kind: 'fail', code: 'UNAUTHENTICATED', reason: 'bad_credentials' };
      bucket.tokens = Math.min(rule.burst, bucket.tokens + 1);
      const principal: Principal = {
        subject: credentials.user,
        claims: { sub: credentials.user },
        expiresAt: null,
        authenticator: name,
      };
      return { kind: 'ok', principal };
    },
    close() {
      buckets.clear();
    },
  };
  return authenticator;
}
