// End-entity certificates (TLS servers and mTLS clients) signed by a CA from createCa.
import { createHash, X509Certificate as NodeX509Certificate, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import type * as X509 from '@peculiar/x509';
import {
  DEFAULT_KEY_TYPE,
  exportKeyPem,
  generateKeyPair,
  importSigningKey,
  type KeyType,
  signingAlgorithm,
  toPem,
} from './keys.js';
import { x509 } from './x509.js';

/** A certificate with its private key, as PEM, plus the identifiers tests and configs pin to. */
export interface Issued {
  certPem: string;
  keyPem: string;
  /** Serial number, lowercase hex. */
  serial: string;
  /** SHA-256 of the certificate DER, lowercase hex without colons. */
  fingerprint256: string;
}

/** Extended key usages a certificate can be issued for. */
export type Purpose = 'serverAuth' | 'clientAuth';

/** What to put in an end-entity certificate; notBefore/notAfter override days. */
export interface IssueOptions {
  kind: 'server' | 'client';
  commonName: string;
  dns?: string[];
  ip?: string[];
  uri?: string[];
  email?: string[];
  days?: number;
  notBefore?: Date;
  notAfter?: Date;
  keyType?: KeyType;
  /** Replaces the EKU implied by `kind`; exists to make wrong-purpose certificates for tests. */
  extendedKeyUsage?: Purpose[];
}

/** Validity used when neither days nor notAfter is given: the CA/Browser Forum's 397-day ceiling, rounded down. */
export const DEFAULT_LEAF_DAYS = 365;

/** Milliseconds in a day, for validity arithmetic. */
export const DAY_MS = 24 * 60 * 60 * 1000;

/** How far back fresh certificates and CRLs are dated, so a peer whose clock lags still accepts them. */
export const BACKDATE_MS = 60 * 1000;

/** A random 16-byte serial as lowercase hex, positive and exactly 16 bytes long when DER-encoded. */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  // Clear the sign bit so the INTEGER is positive, and set the next one so no leading zero byte
  // is ever needed or stripped: the hex returned is then byte-for-byte what is in the certificate.
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x40;
  return bytes.toString('hex');
}

/** Start and end of validity from the options, defaulting to [now - 1 min, now + days]. */
export function validity(
  opts: { days?: number; notBefore?: Date; notAfter?: Date },
  defaultDays: number,
  now: Date = new Date(),
): { notBefore: Date; notAfter: Date } {
  const notBefore = opts.notBefore ?? new Date(now.getTime() - BACKDATE_MS);
  const notAfter = opts.notAfter ?? new Date(now.getTime() + (opts.days ?? defaultDays) * DAY_MS);
  if (notAfter <= notBefore) throw new RangeError('notAfter must be later than notBefore');
  return { notBefore, notAfter };
}

/** Bundles a generated certificate and its key PEM into an Issued. */
export function toIssued(cert: X509.X509Certificate, keyPem: string, serial: string): Issued {
  const der = Buffer.from(cert.rawData);
  return {
    certPem: toPem('CERTIFICATE', der),
    keyPem,
    serial,
    fingerprint256: createHash('sha256').update(der).digest('hex'),
  };
}

/** Rebuilds an Issued from PEM files (for example a CA loaded from disk); the key is not checked here. */
export function issuedFromPem(certPem: string, keyPem: string): Issued {
  const cert = new NodeX509Certificate(certPem);
  return {
    certPem,
    keyPem,
    serial: cert.serialNumber.toLowerCase(),
    fingerprint256: cert.fingerprint256.replace(/:/g, '').toLowerCase(),
  };
}

function subjectAltNames(opts: IssueOptions): X509.JsonGeneralNames {
  for (const ip of opts.ip ?? []) {
    if (isIP(ip) === 0) throw new TypeError(`not an IP address: ${ip}`);
  }
  return [
    ...(opts.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(opts.ip ?? []).map((value) => ({ type: 'ip' as const, value })),
    ...(opts.uri ?? []).map((value) => ({ type: 'url' as const, value })),
    ...(opts.email ?? []).map((value) => ({ type: 'email' as const, value })),
  ];
}

function keyUsages(keyType: KeyType, kind: IssueOptions['kind']): X509.KeyUsageFlags {
  const { KeyUsageFlags } = x509;
  // RSA key transport (TLS 1.2 RSA key exchange) encrypts to the server's key, so some peers
  // insist on keyEncipherment there; EC and Ed25519 keys only ever sign.
  if (kind === 'server' && keyType === 'rsa3072') {
    return KeyUsageFlags.digitalSignature | KeyUsageFlags.keyEncipherment;
  }
  return KeyUsageFlags.digitalSignature;
}

/** Issues a server or client certificate signed by `ca`, with a fresh key pair. */
export async function issueCertificate(ca: Issued, opts: IssueOptions): Promise<Issued> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const { key: caKey, keyType: caKeyType } = await importSigningKey(ca.keyPem);
  const keyType = opts.keyType ?? DEFAULT_KEY_TYPE;
  const keys = await generateKeyPair(keyType);
  const serial = randomSerial();
  const purposes = opts.extendedKeyUsage ?? [opts.kind === 'server' ? 'serverAuth' : 'clientAuth'];
  const caKeyId = caCert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  const sans = subjectAltNames(opts);

  const extensions: X509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(keyUsages(keyType, opts.kind), true),
    new x509.ExtendedKeyUsageExtension(
      purposes.map((p) => x509.ExtendedKeyUsage[p]),
      false,
    ),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false),
    // The AKI must equal the CA's SKI byte for byte, so it is copied rather than recomputed.
    caKeyId !== undefined
      ? new x509.AuthorityKeyIdentifierExtension(caKeyId, false)
      : await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey, false),
  ];
  // An empty SAN extension is malformed (RFC 5280 4.2.1.6), so it is left out when there are no names.
  if (sans.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(sans, false));

  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: [{ CN: [opts.commonName] }],
    // The CA's own encoded name, so issuer and subject match byte for byte when chains are built.
    issuer: caCert.subjectName,
    ...validity(opts, DEFAULT_LEAF_DAYS),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: signingAlgorithm(caKeyType),
    extensions,
  });
  return toIssued(cert, await exportKeyPem(keys.privateKey), serial);
}
