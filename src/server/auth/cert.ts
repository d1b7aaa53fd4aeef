// Turns the TLS layer's view of a client certificate into the ClientCertificate authenticators
// use: subject CN, SANs, SHA-256 fingerprints (hex, and base64url for RFC 8705 `x5t#S256`), notAfter.
import { createHash } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import type { ClientCertificate } from './types.js';

/** Subject alternative names by type, in certificate order. */
export interface SubjectAltNames {
  readonly dns: readonly string[];
  readonly uris: readonly string[];
  readonly emails: readonly string[];
  readonly ips: readonly string[];
}

const NO_NAMES: SubjectAltNames = Object.freeze({ dns: [], uris: [], emails: [], ips: [] });
// Node's names for GeneralName types: DNS, URI, email, IP Address, DirName, Registered ID, othername, ...
const TYPE = /^[A-Za-z][A-Za-z0-9 ]*$/;
// Node never leaves these unquoted (IsSafeAltName), so finding one in a bare value means the
// string is not in the format we parse.
const UNSAFE_BARE = /[,"\\']/;

/**
 * Parses Node's `subjectaltname` string (`DNS:a, URI:spiffe://x, email:e, IP Address:1.2.3.4`).
 * Since Node 17.3.1 a value containing `,`, `"`, `\`, `'` or control characters is written as a
 * JSON string (`DNS:"a,b"`), so a comma inside a name cannot forge a second entry. Returns null
 * when the text does not follow that grammar: callers then trust no SAN at all rather than guess.
 */
export function parseSubjectAltName(text: string | undefined): SubjectAltNames | null {
  if (text === undefined || text === '') return NO_NAMES;
  const dns: string[] = [];
  const uris: string[] = [];
  const emails: string[] = [];
  const ips: string[] = [];
  let at = 0;
  for (;;) {
    const colon = text.indexOf(':', at);
    if (colon === -1) return null;
    const type = text.slice(at, colon);
    if (!TYPE.test(type)) return null;
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      let j = colon + 2;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (j >= text.length) return null;
      try {
        value = JSON.parse(text.slice(colon + 1, j + 1)) as string;
      } catch {
        return null;
      }
      end = j + 1;
    } else {
      const sep = text.indexOf(', ', colon + 1);
      end = sep === -1 ? text.length : sep;
      value = text.slice(colon + 1, end);
      if (UNSAFE_BARE.test(value)) return null;
    }
    if (type === 'DNS') dns.push(value);
    else if (type === 'URI') uris.push(value);
    else if (type === 'email') emails.push(value);
    else if (type === 'IP Address') ips.push(value);
    if (end === text.length) return { dns, uris, emails, ips };
    if (text.slice(end, end + 2) !== ', ') return null;
    at = end + 2;
  }
}

/**
 * The certificate the gateway hands to authenticators as AuthInput.clientCert: null unless the
 * TLS layer verified it (`authorized`) and it carries its DER. Called with
 * `socket.getPeerCertificate()`, which is `{}` when the client sent none.
 */
export function clientCertificateOf(
  peer: PeerCertificate | undefined,
  authorized: boolean,
): ClientCertificate | null {
  if (!authorized || peer === undefined) return null;
  const raw: unknown = peer.raw;
  if (!Buffer.isBuffer(raw) || raw.length === 0) return null;
  const digest = createHash('sha256').update(raw).digest();
  // Node gives an array when the subject repeats CN; an ambiguous name is no name.
  const cn: unknown = peer.subject?.CN;
  const names = parseSubjectAltName(peer.subjectaltname) ?? NO_NAMES;
  const notAfter = Date.parse(peer.valid_to);
  return Object.freeze({
    subjectCN: typeof cn === 'string' ? cn : undefined,
    dnsNames: names.dns,
    uris: names.uris,
    emails: names.emails,
    fingerprint256: digest.toString('hex'),
    x5tS256: digest.toString('base64url'),
    // A date Node printed but we cannot read counts as already past: fail closed.
    notAfter: Number.isFinite(notAfter) ? notAfter : 0,
  });
}
