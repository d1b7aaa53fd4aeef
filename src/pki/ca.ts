// A self-signed root CA that signs the gateway's server and client certificates and its CRLs.
import type * as X509 from '@peculiar/x509';
import { type Issued, randomSerial, toIssued, validity } from './issue.js';
import { DEFAULT_KEY_TYPE, exportKeyPem, generateKeyPair, type KeyType, signingAlgorithm } from './keys.js';
import { x509 } from './x509.js';

/** How to make a CA: its name, key type and lifetime in days. */
export interface CaOptions {
  commonName?: string;
  keyType?: KeyType;
  days?: number;
}

/** Common name of a CA made without one. */
export const DEFAULT_CA_NAME = 'Portcullis CA';

/** CA lifetime when none is given: ten years, so a private CA outlives the leaves it signs. */
export const DEFAULT_CA_DAYS = 3650;

/** Creates a self-signed CA certificate and key (CA:true, keyCertSign + cRLSign, with an SKI). */
export async function createCa(opts: CaOptions = {}): Promise<Issued> {
  const keyType = opts.keyType ?? DEFAULT_KEY_TYPE;
  const keys = await generateKeyPair(keyType);
  const serial = randomSerial();
  const { KeyUsageFlags } = x509;
  const extensions: X509.Extension[] = [
    new x509.BasicConstraintsExtension(true, undefined, true),
    // cRLSign lets the same key sign CRLs, which OpenSSL checks before it trusts one.
    new x509.KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true),
    // Issued certificates copy this into their AKI, which is how verifiers pick the issuer key.
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false),
  ];
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial,
    name: [{ CN: [opts.commonName ?? DEFAULT_CA_NAME] }],
    keys,
    ...validity(opts, DEFAULT_CA_DAYS),
    signingAlgorithm: signingAlgorithm(keyType),
    extensions,
  });
  return toIssued(cert, await exportKeyPem(keys.privateKey), serial);
}
