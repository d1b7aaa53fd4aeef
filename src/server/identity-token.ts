// The gateway's identity signing key and the token it hands to upstreams: an ES256 key generated at
// start (or read from a PEM file, so several gateway instances share one), a short-lived JWT of the
// verified principal for `X-Portcullis-Identity`, and the public keys as a JWKS at JWKS_PATH so the
// application can verify the token with any JOSE library.
import {
  createHash,
  createPrivateKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { JWK } from 'jose';
import type { Principal } from '../core/principal.js';
import { sendRefusal } from './http.js';

/** Where the gateway publishes its identity keys. */
export const JWKS_PATH = '/.well-known/portcullis/jwks.json';
/** The `iss` of every identity token. */
export const IDENTITY_ISSUER = 'portcullis';
/** The JWS `typ` of identity tokens (RFC 8725 section 3.11: explicit typing). */
export const IDENTITY_TYP = 'portcullis-identity+jwt';

// Keys stay published after a reload replaced them, so tokens signed just before still verify.
const MAX_PUBLISHED_KEYS = 8;
// How long a verifier may cache the JWKS; a new key file needs about this long to be seen.
const JWKS_MAX_AGE_SEC = 300;

/** A private signing key and its key id (the RFC 7638 thumbprint of the public key). */
export interface SigningKey {
  readonly kid: string;
  readonly privateKey: KeyObject;
}

/** The gateway's identity keys: one generated per process, plus any read from files. */
export class IdentityKeys {
  private generated: SigningKey | undefined;
  private readonly files = new Map<string, SigningKey>();
  private readonly published = new Map<string, JWK>();

  /** The key generated for this process (on first use), for routes without identityKeyFile. */
  generatedKey(): SigningKey {
    if (!this.generated) {
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      this.generated = this.publish(privateKey);
    }
    this.publish(this.generated.privateKey);
    return this.generated;
  }

  /** A key from a PEM file (PKCS#8 or SEC1, P-256); throws naming the file. Read again on reload. */
  fromFile(path: string): SigningKey {
    let key: KeyObject;
    try {
      key = createPrivateKey(readFileSync(path));
    } catch (err) {
      const detail = (err as NodeJS.ErrnoException).code ?? 'not a PEM private key';
      throw new Error(`${path}: ${detail}`);
    }
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new Error(`${path}: must be an EC P-256 private key (ES256)`);
    }
    const signing = this.publish(key);
    this.files.set(path, signing);
    return signing;
  }

  /** The public keys, newest last: the body of JWKS_PATH. */
  jwks(): { keys: JWK[] } {
    return { keys: [...this.published.values()] };
  }

  /** True once any route signs identities, so the JWKS is worth serving. */
  get active(): boolean {
    return this.published.size > 0;
  }

  private publish(privateKey: KeyObject): SigningKey {
    const { kty, crv, x, y } = privateKey.export({ format: 'jwk' });
    const kid = thumbprint({ crv: crv as string, kty: kty as string, x: x as string, y: y as string });
    // Re-inserting moves the key to the end, so the oldest unused key is the one dropped.
    this.published.delete(kid);
    this.published.set(kid, { kty, crv, x, y, kid, alg: 'ES256', use: 'sig' } as JWK);
    while (this.published.size > MAX_PUBLISHED_KEYS) {
      const oldest = this.published.keys().next().value as string;
      this.published.delete(oldest);
    }
    return { kid, privateKey };
  }
}

/** RFC 7638 JWK thumbprint of an EC public key (members in lexicographic order). */
function thumbprint(jwk: { crv: string; kty: string; x: string; y: string }): string {
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return createHash('sha256').update(canonical).digest('base64url');
}

/** What goes into one identity token. */
export interface IdentityInput {
  readonly principal: Principal;
  readonly audience: string;
  readonly ttlSec: number;
  /** Verified claims copied from the principal, by name (identityClaims). */
  readonly claims: readonly string[];
  readonly now: number;
}

/**
 * Signs the identity token: iss, aud, sub, iat, exp (never past the credential's own expiry), a
 * fresh jti, `auth` (the authenticator's name) and the listed claims the credential carried.
 */
export function signIdentity(key: SigningKey, input: IdentityInput): string {
  const { principal, now } = input;
  const iat = Math.floor(now / 1000);
  let exp = iat + input.ttlSec;
  if (principal.expiresAt !== null)
    exp = Math.max(iat + 1, Math.min(exp, Math.floor(principal.expiresAt / 1000)));
  const copied: Record<string, unknown> = {};
  for (const name of input.claims) {
    if (Object.hasOwn(principal.claims, name)) copied[name] = principal.claims[name];
  }
  const header = encodeJson({ alg: 'ES256', kid: key.kid, typ: IDENTITY_TYP });
  const payload = encodeJson({
    ...copied,
    auth: principal.authenticator,
    iss: IDENTITY_ISSUER,
    aud: input.audience,
    sub: principal.subject,
    iat,
    exp,
    jti: randomBytes(16).toString('base64url'),
  });
  // Signed with node:crypto directly (JWS compact serialisation, RFC 7515 section 7.1): jose's
  // SignJWT goes through WebCrypto, about three times the CPU per token, on every proxied handshake.
  const signingInput = `${header}.${payload}`;
  const signature = sign('sha256', Buffer.from(signingInput), {
    key: key.privateKey,
    dsaEncoding: 'ieee-p1363',
  });
  return `${signingInput}.${signature.toString('base64url')}`;
}

function encodeJson(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** Answers GET/HEAD JWKS_PATH with the public keys; any other method is refused like elsewhere. */
export function serveJwks(
  req: IncomingMessage,
  res: ServerResponse,
  keys: IdentityKeys,
  hsts: string | undefined,
): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    sendRefusal(res, 'METHOD_NOT_ALLOWED', { hsts });
    return;
  }
  const body = JSON.stringify(keys.jwks());
  const headers: [string, string][] = [
    ['Content-Type', 'application/jwk-set+json'],
    ['Content-Length', String(Buffer.byteLength(body))],
    ['Cache-Control', `public, max-age=${JWKS_MAX_AGE_SEC}`],
    ['X-Content-Type-Options', 'nosniff'],
    ['Connection', 'close'],
  ];
  if (hsts) headers.push(['Strict-Transport-Security', hsts]);
  res.shouldKeepAlive = false;
  res.writeHead(200, headers.flat());
  res.end(req.method === 'HEAD' ? undefined : body, () => res.socket?.destroySoon?.());
}
