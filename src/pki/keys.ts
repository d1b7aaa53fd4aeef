// Key pairs for the PKI: generated with WebCrypto (what @peculiar/x509 signs with), stored as
// PKCS#8 PEM (what node:tls loads), and imported back for signing.
import { createPrivateKey, webcrypto } from 'node:crypto';

/** Key algorithms the PKI can issue: ECDSA P-256 (default, fast), RSA 3072, Ed25519. */
export type KeyType = 'p256' | 'rsa3072' | 'ed25519';

/** The key type used when none is asked for: ECDSA P-256 is fast to make and accepted everywhere. */
export const DEFAULT_KEY_TYPE: KeyType = 'p256';

/** A WebCrypto key, as node:crypto types it (the DOM lib is not loaded). */
export type CryptoKey = webcrypto.CryptoKey;

/** A WebCrypto key pair, as node:crypto types it. */
export type CryptoKeyPair = webcrypto.CryptoKeyPair;

interface KeySpec {
  readonly generate: webcrypto.EcKeyGenParams | webcrypto.RsaHashedKeyGenParams | webcrypto.Algorithm;
  readonly import: webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams | webcrypto.Algorithm;
  readonly sign: webcrypto.EcdsaParams | webcrypto.Algorithm;
}

// SHA-256 throughout: every TLS stack verifies it, and nothing here needs a longer hash.
const SPECS: Record<KeyType, KeySpec> = {
  p256: {
    generate: { name: 'ECDSA', namedCurve: 'P-256' },
    import: { name: 'ECDSA', namedCurve: 'P-256' },
    sign: { name: 'ECDSA', hash: 'SHA-256' },
  },
  rsa3072: {
    generate: {
      name: 'RSASSA-PKCS1-v1_5',
      modulusLength: 3072,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: 'SHA-256',
    },
    import: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
    sign: { name: 'RSASSA-PKCS1-v1_5' },
  },
  ed25519: {
    generate: { name: 'Ed25519' },
    import: { name: 'Ed25519' },
    sign: { name: 'Ed25519' },
  },
};

/** Makes a new extractable key pair of the given type. */
export async function generateKeyPair(keyType: KeyType = DEFAULT_KEY_TYPE): Promise<CryptoKeyPair> {
  const pair = await webcrypto.subtle.generateKey(SPECS[keyType].generate, true, ['sign', 'verify']);
  if (!('privateKey' in pair)) throw new TypeError(`key type ${keyType} did not yield a key pair`);
  return pair;
}

/** The signature algorithm parameters @peculiar/x509 needs for a key type. */
export function signingAlgorithm(keyType: KeyType): webcrypto.EcdsaParams | webcrypto.Algorithm {
  return SPECS[keyType].sign;
}

/** Exports a private key as PKCS#8 PEM ("PRIVATE KEY"), the form node:tls and openssl both read. */
export async function exportKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return toPem('PRIVATE KEY', der);
}

/** Wraps DER bytes in a PEM block with 64-character lines. */
export function toPem(label: string, der: Uint8Array): string {
  const lines =
    Buffer.from(der)
      .toString('base64')
      .match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** Names the KeyType of a private key PEM (PKCS#8, SEC1 or PKCS#1); throws for unsupported keys. */
export function keyTypeOfPem(pem: string): KeyType {
  const key = createPrivateKey(pem);
  const kind = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails;
  if (kind === 'ec' && details?.namedCurve === 'prime256v1') return 'p256';
  if (kind === 'rsa' && details?.modulusLength === 3072) return 'rsa3072';
  if (kind === 'ed25519') return 'ed25519';
  throw new TypeError(`unsupported private key: ${kind ?? 'unknown'} ${details?.namedCurve ?? ''}`.trim());
}

/** Imports a private key PEM as a non-extractable WebCrypto signing key, with its KeyType. */
export async function importSigningKey(pem: string): Promise<{ key: CryptoKey; keyType: KeyType }> {
  const keyType = keyTypeOfPem(pem);
  // createPrivateKey accepts the older SEC1/PKCS#1 encodings too; WebCrypto wants PKCS#8.
  const der = createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });
  const key = await webcrypto.subtle.importKey('pkcs8', der, SPECS[keyType].import, false, ['sign']);
  return { key, keyType };
}
