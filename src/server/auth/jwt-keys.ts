// Reading a jwt authenticator's keyFile: a PEM public key or certificate, a JWK or a JWKS, checked
// to be public and strong enough, and the configured algorithms narrowed to those the keys can
// verify; also the shape check for a JWKS fetched from jwksUrl.
import { createPublicKey, type JsonWebKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { JWK } from 'jose';
import type { JwtAuthenticatorConfig } from '../../config/schema.js';

/** A JWS algorithm the jwt authenticator may be configured with. */
export type Algorithm = JwtAuthenticatorConfig['algorithms'][number];

/** The public keys of a keyFile and the configured algorithms they can verify (never empty). */
export interface FileKeys {
  readonly keys: JWK[];
  readonly algorithms: Algorithm[];
}

/** Reads keyFile once: a PEM public key (SPKI) or certificate, a JWK, or a JWKS. Throws naming the file. */
export function readKeyFile(path: string, allowed: readonly Algorithm[]): FileKeys {
  let keys: JWK[];
  try {
    keys = parseKeyFile(readFileSync(path, 'utf8'));
  } catch (err) {
    const detail = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new Error(`keyFile ${path}: ${detail}`);
  }
  const usable = new Set(keys.flatMap(algorithmsOf));
  const algorithms = allowed.filter((a) => usable.has(a));
  if (algorithms.length === 0) throw new Error(`keyFile ${path}: no key usable with ${allowed.join(', ')}`);
  return { keys, algorithms };
}

/** Whether a JWKS endpoint answered something shaped like a key set; jose judges each key. */
export function isKeySet(value: unknown): boolean {
  return isObject(value) && Array.isArray(value.keys) && value.keys.every(isObject);
}

const RSA_ALGORITHMS: readonly Algorithm[] = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
const EC_ALGORITHMS: Readonly<Record<string, Algorithm>> = {
  'P-256': 'ES256',
  'P-384': 'ES384',
  'P-521': 'ES512',
};

/** The algorithms a public JWK can verify. */
function algorithmsOf(jwk: JWK): readonly Algorithm[] {
  if (jwk.use !== undefined && jwk.use !== 'sig') return [];
  let algs: readonly Algorithm[] = [];
  if (jwk.kty === 'RSA') algs = RSA_ALGORITHMS;
  else if (jwk.kty === 'EC' && jwk.crv !== undefined && Object.hasOwn(EC_ALGORITHMS, jwk.crv)) {
    algs = [EC_ALGORITHMS[jwk.crv] as Algorithm];
  } else if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') algs = ['EdDSA'];
  return jwk.alg === undefined ? algs : algs.filter((a) => a === jwk.alg);
}

function parseKeyFile(text: string): JWK[] {
  const trimmed = text.trim();
  if (trimmed.startsWith('-----BEGIN')) return [pemKey(trimmed)];
  let json: unknown;
  try {
    json = JSON.parse(trimmed);
  } catch {
    throw new Error('not a PEM public key, certificate, JWK or JWKS');
  }
  if (isObject(json) && Array.isArray(json.keys)) {
    if (json.keys.length === 0) throw new Error('the JWKS has no keys');
    return json.keys.map((k, i) => publicJwk(k, `keys[${i}]`));
  }
  return [publicJwk(json, 'the JWK')];
}

function pemKey(pem: string): JWK {
  const labels = [...pem.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----/g)].map((m) => m[1]);
  if (labels.length !== 1) throw new Error('expected exactly one PEM block (a public key or a certificate)');
  const label = labels[0];
  let key: KeyObject;
  if (label === 'CERTIFICATE') key = new X509Certificate(pem).publicKey;
  else if (label === 'PUBLIC KEY' || label === 'RSA PUBLIC KEY') key = createPublicKey(pem);
  else throw new Error(`a ${label} block is not a public key: keyFile takes a public key or a certificate`);
  checkStrength(key, 'the key');
  return key.export({ format: 'jwk' }) as JWK;
}

function publicJwk(value: unknown, where: string): JWK {
  if (!isObject(value) || typeof value.kty !== 'string') throw new Error(`${where} is not a JWK`);
  if (value.kty === 'oct') throw new Error(`${where} is a symmetric key: only public keys are accepted`);
  if ('d' in value || 'priv' in value) {
    throw new Error(`${where} is a private key: keyFile takes public keys`);
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: value as JsonWebKey, format: 'jwk' });
  } catch {
    throw new Error(`${where} is not a valid public key`);
  }
  checkStrength(key, where);
  return value as JWK;
}

// jose refuses RSA keys under 2048 bits per token; refuse them here, once, with the file named.
function checkStrength(key: KeyObject, where: string): void {
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (key.asymmetricKeyType === 'rsa' && (bits === undefined || bits < 2048)) {
    throw new Error(`${where} is an RSA key under 2048 bits`);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
