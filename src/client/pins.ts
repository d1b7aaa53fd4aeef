// Certificate pinning for the Node build: SPKI SHA-256 pins (`sha256/<base64>`, the OkHttp and
// Android form) checked inside checkServerIdentity, after the default hostname check and after
// OpenSSL verified the chain, so a mismatch aborts before one application byte is written
// (threats.md C-03). The browser build has no file like this: browsers cannot pin.
import { createHash, X509Certificate } from 'node:crypto';
import { checkServerIdentity, type DetailedPeerCertificate, type PeerCertificate } from 'node:tls';
import type { PinMismatchInfo } from './classify.js';

/** Which certificates a pin may match: the server's own, or any certificate of the verified chain. */
export type PinScope = 'leaf' | 'chain';

/** A primary and a backup (RFC 7469 section 4.3; Android lint MissingBackupPin). */
export const MIN_PINS = 2;

const PIN = /^sha256\/[A-Za-z0-9+/]{43}=$/;

/** Checks a pin set: each `sha256/<44 base64 chars>`, no duplicates, at least MIN_PINS (throws TypeError). */
export function checkPinSet(pins: readonly string[]): string[] {
  if (!Array.isArray(pins)) throw new TypeError('pins must be an array of sha256/<base64> strings');
  for (const pin of pins) {
    if (typeof pin !== 'string' || !PIN.test(pin)) {
      throw new TypeError(`invalid pin ${JSON.stringify(pin)}: expected sha256/ and 44 base64 characters`);
    }
  }
  if (new Set(pins).size !== pins.length) throw new TypeError('pins must not repeat');
  if (pins.length < MIN_PINS) {
    throw new TypeError(
      `pins needs at least ${MIN_PINS} entries, the current key and a backup key outside the current chain, so a key rotation cannot lock clients out`,
    );
  }
  return [...pins];
}

/** The `sha256/<base64>` pin of a certificate's SubjectPublicKeyInfo. */
export function pinOf(cert: X509Certificate): string {
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return `sha256/${createHash('sha256').update(spki).digest('base64')}`;
}

/**
 * The certificates a pin is checked against, leaf first. For 'chain', an issuer is included only
 * when its signature on the previous certificate verifies: a server can append any certificate to
 * what it sends, including one that merely carries a pinned public key, and Node links issuers by
 * name. Following signatures keeps the walk on the chain OpenSSL verified.
 */
export function pinnedChain(peer: PeerCertificate, scope: PinScope): X509Certificate[] {
  const chain = [new X509Certificate(peer.raw)];
  if (scope === 'leaf') return chain;
  const seen = new Set([peer.fingerprint256]);
  let current = peer as DetailedPeerCertificate;
  for (;;) {
    const issuer = current.issuerCertificate as DetailedPeerCertificate | undefined;
    if (!issuer?.raw || seen.has(issuer.fingerprint256)) break;
    const child = chain[chain.length - 1] as X509Certificate;
    const candidate = new X509Certificate(issuer.raw);
    if (!child.checkIssued(candidate) || !child.verify(candidate.publicKey)) break;
    chain.push(candidate);
    seen.add(issuer.fingerprint256);
    current = issuer;
  }
  return chain;
}

/** The error checkServerIdentity returns on a mismatch; the transport reports it as PIN_MISMATCH. */
export class PinMismatchError extends Error {
  readonly code = 'PIN_MISMATCH';
  readonly info: PinMismatchInfo;
  constructor(info: PinMismatchInfo) {
    super(
      `PIN_MISMATCH: no certificate for ${info.host} matches a configured pin (saw ${info.seen.join(', ')})`,
    );
    this.name = 'PinMismatchError';
    this.info = info;
  }
}

/**
 * A checkServerIdentity that runs Node's hostname check, then the pins. Node calls it for every
 * full handshake; the client never offers a saved TLS session, so no connection skips it (C-04).
 */
export function pinningIdentityCheck(
  pins: readonly string[],
  scope: PinScope,
): (host: string, cert: PeerCertificate) => Error | undefined {
  const wanted = new Set(pins);
  return (host, cert) => {
    const hostnameError = checkServerIdentity(host, cert);
    if (hostnameError) return hostnameError;
    const seen = pinnedChain(cert, scope).map(pinOf);
    if (seen.some((pin) => wanted.has(pin))) return undefined;
    return new PinMismatchError({ host, scope, seen });
  };
}
