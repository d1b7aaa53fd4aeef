// Compact JWS signature verification through node:crypto, for the jwt authenticator's common case.
// jose 6 verifies through WebCrypto, which costs about 180 µs of CPU per ES256 token here against
// about 70 µs for `crypto.verify` on a key object imported once: a third of the gateway's
// handshake overhead over bare ws. This module takes only tokens it can judge exactly as jose
// would (three base64url parts, a plain JSON header without `crit`/`b64`, an allowed `alg`, a key
// of the right type and size); for anything else it answers FALLBACK and the caller hands the token
// to jose's `jwtVerify`, so every unusual token still gets jose's checks and errors. Claims are
// never judged here: the caller runs jose's claim-set validation on the verified payload.
import { KeyObject, verify } from 'node:crypto';
import type { FlattenedJWSInput, JWTHeaderParameters } from 'jose';

/** Answer for a token this module does not judge: verify it with jose instead. */
export const FALLBACK = Symbol('jws-fallback');

/** A compact JWS whose signature checked out, split for the claim checks. */
export interface VerifiedJws {
  readonly header: JWTHeaderParameters;
  /** The payload part, still base64url-encoded. */
  readonly encodedPayload: string;
}

/** What the verifier gives back: the verified parts, `false` for a bad signature, or FALLBACK. */
export type JwsVerdict = VerifiedJws | false | typeof FALLBACK;

/** The part of a key source the verifier needs: resolve a key for a parsed header. */
export type KeyResolver = (header: JWTHeaderParameters, token: FlattenedJWSInput) => unknown;

interface AlgorithmSpec {
  readonly digest: string | null;
  readonly keyType: string;
  readonly curve?: string;
  /** What crypto.verify takes besides the key: signature encoding and RSA padding. */
  readonly options: {
    readonly dsaEncoding?: 'ieee-p1363';
    readonly padding?: number;
    readonly saltLength?: number;
  };
}

// node:crypto constants, inlined so this file needs no `constants` import at each call.
const RSA_PKCS1_PADDING = 1;
const RSA_PKCS1_PSS_PADDING = 6;
const P1363 = { dsaEncoding: 'ieee-p1363' } as const;
const PKCS1 = { padding: RSA_PKCS1_PADDING };

const SPECS: Readonly<Record<string, AlgorithmSpec>> = {
  ES256: { digest: 'sha256', keyType: 'ec', curve: 'prime256v1', options: P1363 },
  ES384: { digest: 'sha384', keyType: 'ec', curve: 'secp384r1', options: P1363 },
  ES512: { digest: 'sha512', keyType: 'ec', curve: 'secp521r1', options: P1363 },
  RS256: { digest: 'sha256', keyType: 'rsa', options: PKCS1 },
  RS384: { digest: 'sha384', keyType: 'rsa', options: PKCS1 },
  RS512: { digest: 'sha512', keyType: 'rsa', options: PKCS1 },
  PS256: { digest: 'sha256', keyType: 'rsa', options: { padding: RSA_PKCS1_PSS_PADDING, saltLength: 32 } },
  PS384: { digest: 'sha384', keyType: 'rsa', options: { padding: RSA_PKCS1_PSS_PADDING, saltLength: 48 } },
  PS512: { digest: 'sha512', keyType: 'rsa', options: { padding: RSA_PKCS1_PSS_PADDING, saltLength: 64 } },
  EdDSA: { digest: null, keyType: 'ed25519', options: {} },
  Ed25519: { digest: null, keyType: 'ed25519', options: {} },
};

// jose refuses RSA keys under this size for RS*/PS* (checkModulusLength).
const MIN_RSA_BITS = 2048;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

// Key objects converted from the CryptoKeys a resolver returns, or false where the key does not
// fit (jose then gives its own answer). Weak: keys dropped by a JWKS refresh are collected.
const converted = new WeakMap<object, KeyObject | false>();

/**
 * Verifies the signature of a compact JWS. `allowed` is the authenticator's algorithm allowlist;
 * `resolve` is the same key resolver jose would call (its errors propagate, as through jose).
 */
export async function verifyCompactJws(
  token: string,
  allowed: ReadonlySet<string>,
  resolve: KeyResolver,
): Promise<JwsVerdict> {
  const first = token.indexOf('.');
  const second = token.indexOf('.', first + 1);
  if (first <= 0 || second < 0 || token.indexOf('.', second + 1) !== -1) return FALLBACK;
  const encodedHeader = token.slice(0, first);
  const encodedPayload = token.slice(first + 1, second);
  const encodedSignature = token.slice(second + 1);
  if (
    !BASE64URL.test(encodedHeader) ||
    !BASE64URL.test(encodedPayload) ||
    !BASE64URL.test(encodedSignature) ||
    // A length jose's strict decoder refuses (a dangling 6 bits): let jose name it malformed.
    encodedHeader.length % 4 === 1 ||
    encodedPayload.length % 4 === 1 ||
    encodedSignature.length % 4 === 1
  ) {
    return FALLBACK;
  }
  const header = parseHeader(encodedHeader);
  if (header === undefined) return FALLBACK;
  const alg = header.alg;
  if (typeof alg !== 'string' || !allowed.has(alg) || !Object.hasOwn(SPECS, alg)) return FALLBACK;
  const spec = SPECS[alg] as AlgorithmSpec;

  const resolved = await resolve(header, {
    protected: encodedHeader,
    payload: encodedPayload,
    signature: encodedSignature,
  });
  const key = keyObjectFor(resolved, spec);
  if (key === false) return FALLBACK;

  const signingInput = Buffer.from(token.slice(0, second), 'latin1');
  const signature = Buffer.from(encodedSignature, 'base64url');
  let ok: boolean;
  try {
    ok = verify(spec.digest, signingInput, { key, ...spec.options }, signature);
  } catch {
    return FALLBACK;
  }
  return ok ? { header: header as JWTHeaderParameters, encodedPayload } : false;
}

// A header jose would accept without extensions: a plain JSON object with no `crit` and no `b64`
// (those go through jose's extension rules). Invalid UTF-8 also falls back: jose decodes strictly.
function parseHeader(encoded: string): (JWTHeaderParameters & Record<string, unknown>) | undefined {
  // An issuer sends the same few headers (alg, kid, typ) on every token: remember those, bounded.
  const known = HEADERS.get(encoded);
  if (known !== undefined) return known;
  const bytes = Buffer.from(encoded, 'base64url');
  let parsed: unknown;
  try {
    parsed = JSON.parse(STRICT_UTF8.decode(bytes));
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  if (Object.getPrototypeOf(parsed) !== Object.prototype) return undefined;
  if (Object.hasOwn(parsed, 'crit') || Object.hasOwn(parsed, 'b64')) return undefined;
  const header = Object.freeze(parsed) as JWTHeaderParameters & Record<string, unknown>;
  if (encoded.length <= MAX_REMEMBERED_HEADER && HEADERS.size < MAX_REMEMBERED_HEADERS) {
    HEADERS.set(encoded, header);
  }
  return header;
}

// Only headers that passed the checks above are remembered, and only this many: a client sending
// a new header per token fills the map once and is then parsed each time, as before.
const HEADERS = new Map<string, JWTHeaderParameters & Record<string, unknown>>();
const MAX_REMEMBERED_HEADERS = 64;
const MAX_REMEMBERED_HEADER = 512;

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

function keyObjectFor(resolved: unknown, spec: AlgorithmSpec): KeyObject | false {
  if (typeof resolved !== 'object' || resolved === null) return false;
  let key = converted.get(resolved);
  if (key === undefined) {
    key = toKeyObject(resolved);
    converted.set(resolved, key);
  }
  if (key === false || key.type !== 'public' || key.asymmetricKeyType !== spec.keyType) return false;
  const details = key.asymmetricKeyDetails;
  if (spec.curve !== undefined && details?.namedCurve !== spec.curve) return false;
  if (spec.keyType === 'rsa' && (details?.modulusLength ?? 0) < MIN_RSA_BITS) return false;
  return key;
}

function toKeyObject(resolved: object): KeyObject | false {
  if (resolved instanceof KeyObject) return resolved;
  try {
    // A WebCrypto CryptoKey, as jose's importJWK and its JWKS sets return.
    return KeyObject.from(resolved as Parameters<typeof KeyObject.from>[0]);
  } catch {
    return false;
  }
}
