// X.509 v2 CRLs signed by a CA from createCa, in the PEM form node:tls takes as its `crl` option.
import type * as X509 from '@peculiar/x509';
import { BACKDATE_MS, DAY_MS, type Issued } from './issue.js';
import { importSigningKey, signingAlgorithm, toPem } from './keys.js';
import { normalizeSerial } from './serial.js';
import { x509 } from './x509.js';

export { normalizeSerial };

/** One revoked certificate: its serial (hex, any case, colons allowed) and when it was revoked. */
export interface RevokedEntry {
  serial: string;
  date?: Date;
}

/** When the CRL was issued and when the next one is due; a past nextUpdate makes a stale CRL. */
export interface CrlOptions {
  thisUpdate?: Date;
  nextUpdate?: Date;
}

/** How long a CRL stays fresh when nextUpdate is not given. */
export const DEFAULT_CRL_DAYS = 7;

const CRL_NUMBER_OID = '2.5.29.20';

// RFC 5280 5.2.3 requires a monotonically increasing cRLNumber. Deriving it from thisUpdate (in
// milliseconds) keeps it increasing across CRLs without storing a counter anywhere.
function crlNumberExtension(thisUpdate: Date): X509.Extension {
  let hex = BigInt(thisUpdate.getTime()).toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  // A leading byte >= 0x80 would read as negative in DER, so it gets a zero byte in front.
  if (Number.parseInt(hex.slice(0, 2), 16) >= 0x80) hex = `00${hex}`;
  const body = Buffer.from(hex, 'hex');
  const der = Buffer.concat([Buffer.from([0x02, body.length]), body]);
  return new x509.Extension(CRL_NUMBER_OID, false, der);
}

/** Creates a PEM CRL signed by `ca` listing the revoked serials (nextUpdate defaults to +7 days). */
export async function createCrl(ca: Issued, revoked: RevokedEntry[], opts: CrlOptions = {}): Promise<string> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const { key, keyType } = await importSigningKey(ca.keyPem);
  const thisUpdate = opts.thisUpdate ?? new Date(Date.now() - BACKDATE_MS);
  const nextUpdate = opts.nextUpdate ?? new Date(thisUpdate.getTime() + DEFAULT_CRL_DAYS * DAY_MS);
  const caKeyId = caCert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  const extensions: X509.Extension[] = [crlNumberExtension(thisUpdate)];
  // The AKI lets a verifier holding several CAs with one name pick the right key for the CRL.
  if (caKeyId !== undefined) extensions.push(new x509.AuthorityKeyIdentifierExtension(caKeyId, false));

  const crl = await x509.X509CrlGenerator.create({
    // The CA's own encoded name: OpenSSL matches a CRL to its issuer by exact name comparison.
    issuer: caCert.subjectName,
    thisUpdate,
    nextUpdate,
    signingKey: key,
    signingAlgorithm: signingAlgorithm(keyType),
    extensions,
    entries: revoked.map((entry) => ({
      serialNumber: normalizeSerial(entry.serial),
      revocationDate: entry.date ?? thisUpdate,
    })),
  });
  return toPem('X509 CRL', Buffer.from(crl.rawData));
}

/** The serial numbers (normalised hex) a PEM or DER CRL revokes; throws on a malformed CRL. */
export function revokedSerials(crl: string | Buffer): Set<string> {
  const parsed = new x509.X509Crl(typeof crl === 'string' ? crl : crl.toString('utf8'));
  return new Set(
    parsed.entries.map((entry) => normalizeSerial(entry.serialNumber).replace(/^(00)+(?=.)/, '')),
  );
}
