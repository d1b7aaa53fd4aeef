// The jwt authenticator: a bearer JWT verified with jose against keys from a file or a JWKS URL,
// with the claim checks of RFC 8725 and the certificate binding of RFC 8705. Keys are imported
// once; a handshake costs one signature verification. Header-supplied key locations (`jku`, `x5u`,
// an embedded `jwk`) are never followed: jose only consults them when asked to, and it is not.
import {
  type CryptoKey,
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  errors,
  type FetchImplementation,
  importJWK,
  type JWK,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
  jwtVerify,
  UnsecuredJWT,
} from 'jose';
import { JWS_ALGORITHMS, type JwtAuthenticatorConfig } from '../../config/schema.js';
import type { Principal } from '../../core/principal.js';
import type { ErrorCode } from '../../protocol.js';
import { createHttpsClient, type HttpsClient } from './fetch.js';
import { FALLBACK, type VerifiedJws, verifyCompactJws } from './jws-verify.js';
import { type Algorithm, isKeySet, readKeyFile } from './jwt-keys.js';
import { type BearerToken, extractBearerToken } from './token.js';
import type { Authenticator, AuthInput, AuthResult, ClientCertificate } from './types.js';

/** Longest `kid` looked up; a longer one is refused before any lookup. */
export const MAX_KID_LENGTH = 256;
/** Cap on a JWKS response body. */
export const MAX_JWKS_BYTES = 1_048_576;

/** Why a token was refused: a short fixed token for the log, never the token itself. */
export type JwtFailureReason = keyof typeof FAILURE_CODES;

/** Every failure reason and the ErrorCode it is answered with. */
export const FAILURE_CODES = {
  malformed: 'UNAUTHENTICATED',
  bad_signature: 'UNAUTHENTICATED',
  alg_not_allowed: 'UNAUTHENTICATED',
  // Expiry says CREDENTIAL_EXPIRED so the SDK refreshes its token and reconnects; a token past
  // maxTokenAge is the same situation for the client.
  expired: 'CREDENTIAL_EXPIRED',
  too_old: 'CREDENTIAL_EXPIRED',
  not_yet_valid: 'UNAUTHENTICATED',
  wrong_issuer: 'UNAUTHENTICATED',
  wrong_audience: 'UNAUTHENTICATED',
  missing_exp: 'UNAUTHENTICATED',
  wrong_typ: 'UNAUTHENTICATED',
  unknown_kid: 'UNAUTHENTICATED',
  bad_kid: 'UNAUTHENTICATED',
  missing_subject: 'UNAUTHENTICATED',
  // A valid token presented over the wrong (or no) client certificate: the identity is known but
  // not allowed on this connection (T-08).
  cnf_mismatch: 'FORBIDDEN',
  // The identity provider could not be reached: retry later, not "your token is bad".
  jwks_unavailable: 'AUTH_UNAVAILABLE',
} as const satisfies Record<string, ErrorCode>;

/** Hooks for the operator's log. */
export interface JwtAuthenticatorOptions {
  /** Called with the cause each time a JWKS fetch fails (TLS, DNS, status, timeout, bad JSON). */
  readonly onJwksError?: (error: Error) => void;
}

const ABSENT: AuthResult = Object.freeze({ kind: 'absent' });
const FAILURES = Object.fromEntries(
  Object.entries(FAILURE_CODES).map(([reason, code]) => [
    reason,
    Object.freeze({ kind: 'fail', code, reason }),
  ]),
) as Record<JwtFailureReason, AuthResult>;

// Thrown from the key resolver so that jose stops before any key lookup or signature check.
class BadKid extends Error {}
class JwksUnavailable extends Error {}
const BAD_KID = new BadKid('kid refused');
const JWKS_BACKING_OFF = new Error('JWKS fetch skipped: the last one failed within jwksCooldownMs');

// Printable ASCII only: a kid is a lookup key, never a path, a query or a log line (RFC 8725 section 3.10).
const KID = /^[\x20-\x7e]+$/;

/** Creates the `jwt` authenticator named `name`. Reads keyFile / jwksCaFile now; throws naming the file. */
export function createJwtAuthenticator(
  name: string,
  config: JwtAuthenticatorConfig,
  options: JwtAuthenticatorOptions = {},
): Authenticator {
  if (config.algorithms.some((a) => !ASYMMETRIC.has(a))) {
    throw new Error(`authenticators.${name}.algorithms: only asymmetric algorithms are allowed`);
  }
  if ((config.keyFile === undefined) === (config.jwksUrl === undefined)) {
    throw new Error(`authenticators.${name}: exactly one of jwksUrl or keyFile is required`);
  }
  const keys: KeySource =
    config.keyFile !== undefined ? fileKeys(config.keyFile, config.algorithms) : remoteKeys(config, options);

  const base: JWTVerifyOptions = {
    algorithms: keys.algorithms,
    issuer: config.issuer,
    audience: config.audience,
    clockTolerance: config.clockToleranceSec,
    requiredClaims: ['exp'],
    ...(config.maxTokenAgeSec === undefined ? {} : { maxTokenAge: config.maxTokenAgeSec }),
    ...(config.typ === undefined ? {} : { typ: config.typ }),
  };
  const subjectClaim = config.subjectClaim;
  const allowed: ReadonlySet<string> = new Set(keys.algorithms);
  const { algorithms: _algorithms, ...claimChecks } = base;

  const accept = (
    payload: JWTPayload,
    input: AuthInput,
    found: BearerToken & { kind: 'token' },
  ): AuthResult => {
    // jose checks iat only when maxTokenAge is set; a token issued in the future is not yet valid
    // with or without it. jose has already refused an iat that is not a number.
    if (
      typeof payload.iat === 'number' &&
      payload.iat > Math.floor(input.now / 1000) + config.clockToleranceSec
    ) {
      return FAILURES.not_yet_valid;
    }
    const subject = Object.hasOwn(payload, subjectClaim) ? payload[subjectClaim] : undefined;
    if (typeof subject !== 'string' || subject === '') return FAILURES.missing_subject;
    if (!bindingHolds(payload.cnf, input.clientCert)) return FAILURES.cnf_mismatch;
    const principal: Principal = {
      subject,
      claims: Object.freeze(payload),
      // requiredClaims made jose check that exp is present and a number.
      // Valid until exp plus the configured tolerance: the same instant jose stops accepting it, so
      // the open connection is closed exactly when a new handshake with this token would fail.
      expiresAt: ((payload.exp as number) + config.clockToleranceSec) * 1000,
      authenticator: name,
      jti: typeof payload.jti === 'string' ? payload.jti : undefined,
      certFingerprint: input.clientCert?.fingerprint256,
    };
    return found.entry === undefined
      ? { kind: 'ok', principal }
      : { kind: 'ok', principal, subprotocolCredential: found.entry };
  };

  return {
    name,
    type: 'jwt',
    ambient: false,
    async authenticate(input: AuthInput): Promise<AuthResult> {
      const found = extractBearerToken(input.headers, input.query, input.allowQueryToken);
      if (found.kind === 'absent') return ABSENT;
      if (found.kind === 'malformed') return FAILURES.malformed;
      let payload: JWTPayload;
      const currentDate = new Date(input.now);
      try {
        // node:crypto verifies the common shapes (see jws-verify.ts); jose judges every other
        // token in full, and the claims of every token.
        const verified = await verifyCompactJws(found.token, allowed, keys.getKey);
        if (verified === false) return FAILURES.bad_signature;
        if (verified === FALLBACK) {
          ({ payload } = await jwtVerify(found.token, keys.getKey, { ...base, currentDate }));
        } else {
          ({ payload } = UnsecuredJWT.decode(claimsOnly(verified), { ...claimChecks, currentDate }));
        }
      } catch (err) {
        return FAILURES[failureReason(err)];
      }
      return accept(payload, input, found);
    },
    close() {
      keys.close();
    },
  };
}

const NONE_HEADER = Buffer.from('{"alg":"none"}').toString('base64url');

// The verified payload under an unsecured header carrying the token's own `typ`, so that jose's
// UnsecuredJWT.decode runs the same claim-set validation jwtVerify would (exp, nbf, iat, iss, aud,
// typ, maxTokenAge, requiredClaims) without a second signature check.
function claimsOnly({ header, encodedPayload }: VerifiedJws): string {
  if (!Object.hasOwn(header, 'typ')) return `${NONE_HEADER}.${encodedPayload}.`;
  const typ = header.typ;
  // Issuers use one or two typ strings; only those are remembered (a bounded map).
  let encoded = typeof typ === 'string' ? TYP_HEADERS.get(typ) : undefined;
  if (encoded === undefined) {
    encoded = Buffer.from(JSON.stringify({ alg: 'none', typ })).toString('base64url');
    if (typeof typ === 'string' && typ.length <= 64 && TYP_HEADERS.size < 16) TYP_HEADERS.set(typ, encoded);
  }
  return `${encoded}.${encodedPayload}.`;
}

const TYP_HEADERS = new Map<string, string>();

/** Maps a jose (or resolver) error to a failure reason; anything else is a bug and is rethrown. */
function failureReason(err: unknown): JwtFailureReason {
  if (err instanceof BadKid) return 'bad_kid';
  if (err instanceof JwksUnavailable) return 'jwks_unavailable';
  if (err instanceof errors.JWTExpired) return err.claim === 'iat' ? 'too_old' : 'expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'iss':
        return 'wrong_issuer';
      case 'aud':
        return 'wrong_audience';
      case 'typ':
        return 'wrong_typ';
      case 'exp':
        return err.reason === 'missing' ? 'missing_exp' : 'malformed';
      case 'nbf':
        return err.reason === 'check_failed' ? 'not_yet_valid' : 'malformed';
      case 'iat':
        // Issued in the future is not yet valid; without iat the token's age cannot be shown.
        if (err.reason === 'check_failed') return 'not_yet_valid';
        return err.reason === 'missing' ? 'too_old' : 'malformed';
      default:
        return 'malformed';
    }
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return 'alg_not_allowed';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'bad_signature';
  // Several keys fit a token without a kid: refuse rather than try each (kids are what IdPs send).
  if (err instanceof errors.JWKSMultipleMatchingKeys) return 'unknown_kid';
  if (err instanceof errors.JWKSNoMatchingKey) return 'unknown_kid';
  if (err instanceof errors.JWKSTimeout) return 'jwks_unavailable';
  if (err instanceof errors.JOSEError) return 'malformed';
  throw err;
}

/** RFC 8705 section 3: a token bound to a certificate is usable only over that certificate. */
function bindingHolds(cnf: unknown, cert: ClientCertificate | null): boolean {
  if (cnf === undefined) return true;
  if (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf)) return false;
  if (!Object.hasOwn(cnf, 'x5t#S256')) {
    // Another proof-of-possession method (DPoP `jkt`, `jwk`): the gateway cannot check it, and
    // accepting such a token as a plain bearer token would defeat the binding.
    return Object.keys(cnf).length === 0;
  }
  const thumbprint = (cnf as Record<string, unknown>)['x5t#S256'];
  return cert !== null && typeof thumbprint === 'string' && thumbprint === cert.x5tS256;
}

function checkKid(kid: unknown): void {
  if (kid === undefined) return;
  if (typeof kid !== 'string' || kid.length > MAX_KID_LENGTH || !KID.test(kid)) throw BAD_KID;
}

/** Where keys come from: the resolver jose calls, the algorithms it may use, and cleanup. */
interface KeySource {
  readonly getKey: JWTVerifyGetKey;
  readonly algorithms: Algorithm[];
  close(): void;
}

// The schema already admits only these; the check here guards library callers too.
const ASYMMETRIC: ReadonlySet<string> = new Set<Algorithm>(JWS_ALGORITHMS);
/** Keys from keyFile, read and imported once. */
function fileKeys(path: string, allowed: readonly Algorithm[]): KeySource {
  const { keys, algorithms } = readKeyFile(path, allowed);
  const single = keys.length === 1 ? keys[0] : undefined;
  const getKey = single ? singleKey(single, algorithms) : keySet(keys);
  return { getKey, algorithms, close: () => {} };
}

// The common case (one PEM key or certificate): the key is imported once per algorithm, here,
// and each handshake gets it from a map. A kid only selects among keys: a lone key without one
// verifies whatever kid the token names; a lone key with one requires a match when the token names one.
function singleKey(jwk: JWK, algorithms: readonly Algorithm[]): JWTVerifyGetKey {
  const imported = new Map<string, Promise<CryptoKey>>();
  for (const alg of algorithms) {
    const key = importJWK(jwk, alg) as Promise<CryptoKey>;
    key.catch(() => {}); // awaited (and so reported) by the first handshake that needs it
    imported.set(alg, key);
  }
  return (header) => {
    checkKid(header.kid);
    if (jwk.kid !== undefined && header.kid !== undefined && header.kid !== jwk.kid) {
      throw new errors.JWKSNoMatchingKey();
    }
    // jose has already refused an alg outside `algorithms`, so the key is always there.
    return imported.get(header.alg) as Promise<CryptoKey>;
  };
}

function keySet(keys: JWK[]): JWTVerifyGetKey {
  const local = createLocalJWKSet({ keys });
  return (header, token) => {
    checkKid(header.kid);
    return local(header, token);
  };
}

/** Keys from jwksUrl through jose's cached remote set, fetched by our HTTPS client. */
function remoteKeys(config: JwtAuthenticatorConfig, options: JwtAuthenticatorOptions): KeySource {
  const url = new URL(config.jwksUrl as string);
  if (url.protocol !== 'https:') throw new Error('jwksUrl must be an https:// URL');
  const client: HttpsClient = createHttpsClient({ caFile: config.jwksCaFile });
  let failedAt = Number.NEGATIVE_INFINITY;

  // jose refetches on a cache miss, on an unknown kid (at most once per cooldown after a success)
  // and on every call while it holds no keys. After a failure, wait out the same cooldown, so a
  // flood of tokens against a dead or broken JWKS endpoint cannot become a flood of fetches.
  const fetchJwks: FetchImplementation = async (href, init) => {
    if (Date.now() - failedAt < config.jwksCooldownMs) throw JWKS_BACKING_OFF;
    try {
      const res = await client.request(href, {
        headers: Object.fromEntries(init.headers),
        timeoutMs: config.jwksTimeoutMs,
        maxBodyBytes: MAX_JWKS_BYTES,
        signal: init.signal,
      });
      if (res.status !== 200) throw new Error(`JWKS endpoint answered HTTP ${res.status}`);
      const json: unknown = JSON.parse(res.body.toString('utf8'));
      if (!isKeySet(json)) {
        throw new Error('JWKS endpoint answered something other than a JSON Web Key Set');
      }
      return new Response(res.body, { status: 200, headers: { 'content-type': 'application/json' } });
    } catch (err) {
      failedAt = Date.now();
      options.onJwksError?.(err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
  };

  const remote = createRemoteJWKSet(url, {
    cacheMaxAge: config.jwksCacheMs,
    cooldownDuration: config.jwksCooldownMs,
    timeoutDuration: config.jwksTimeoutMs,
    [customFetch]: fetchJwks,
  });

  const getKey: JWTVerifyGetKey = async (header, token) => {
    checkKid(header.kid);
    try {
      return await remote(header, token);
    } catch (err) {
      // A lookup miss is the token's problem; anything else means the key set could not be had.
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
        throw err;
      }
      throw new JwksUnavailable('JWKS unavailable', { cause: err });
    }
  };
  return { getKey, algorithms: [...config.algorithms], close: () => client.close() };
}
