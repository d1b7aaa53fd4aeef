// SPKI pins in OkHttp CertificatePinner form, `sha256/<base64>`: a pin names a public key, not a
// certificate, so it survives re-issuing a certificate for the same key.
import { createHash, X509Certificate } from 'node:crypto';

/** One certificate of a chain with its pin and where it sits in the chain. */
export interface ChainPin {
  pin: string;
  subject: string;
  role: 'leaf' | 'intermediate' | 'root';
}

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function certificatesIn(pem: string): X509Certificate[] {
  const blocks = pem.match(CERT_BLOCK) ?? [];
  if (blocks.length === 0) throw new TypeError('no PEM certificate found');
  return blocks.map((block) => new X509Certificate(block));
}

function pinOf(cert: X509Certificate): string {
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return `sha256/${createHash('sha256').update(spki).digest('base64')}`;
}

/** `sha256/<base64>` of the SubjectPublicKeyInfo of the first certificate in a PEM. */
export function spkiPin(pem: string): string {
  const [first] = certificatesIn(pem);
  return pinOf(first!);
}

/** Pins of every certificate in a PEM chain (leaf first), each with its subject and role. */
export function spkiPinsOfChain(pem: string): ChainPin[] {
  return certificatesIn(pem).map((cert, index) => {
    // A root is a CA that signed itself; a lone self-signed non-CA certificate is still a leaf.
    const selfSigned = cert.checkIssued(cert) && cert.verify(cert.publicKey);
    const role = cert.ca && selfSigned ? 'root' : index === 0 ? 'leaf' : 'intermediate';
    return { pin: pinOf(cert), subject: cert.subject.split('\n').join(', '), role };
  });
}
