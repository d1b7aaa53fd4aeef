// How the gateway trusts a wss:// upstream: its CA (only it, when given), SPKI pins checked after
// the normal verification, a client certificate for mutual TLS, and the SNI name. The files are
// read once, when the route is built.
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { checkServerIdentity, type DetailedPeerCertificate as PeerCertificate } from 'node:tls';
import type { UpstreamConfig } from '../config/schema.js';

/**
 * TLS options for wss:// upstreams (spread into ws and https requests). Throws `key: detail` when a
 * file cannot be read.
 */
export function tlsOptions(config: UpstreamConfig): Record<string, unknown> {
  const out: Record<string, unknown> = { rejectUnauthorized: true, minVersion: 'TLSv1.2' };
  const read = (key: 'ca' | 'cert' | 'key') => {
    const path = config[key];
    if (path === undefined) return;
    try {
      out[key] = readFileSync(path, 'utf8');
    } catch (err) {
      throw new Error(`${key}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  };
  read('ca');
  read('cert');
  read('key');
  if (config.servername !== undefined) out.servername = config.servername;
  if (config.pins) out.checkServerIdentity = pinnedIdentity(new Set(config.pins));
  return out;
}

/** Hostname verification first, then an SPKI pin of some certificate in the chain (like OkHttp). */
function pinnedIdentity(
  pins: ReadonlySet<string>,
): (host: string, cert: PeerCertificate) => Error | undefined {
  return (host, cert) => {
    const err = checkServerIdentity(host, cert);
    if (err) return err;
    const seen = new Set<PeerCertificate>();
    for (let c: PeerCertificate | undefined = cert; c && !seen.has(c); c = c.issuerCertificate) {
      seen.add(c);
      if (c.raw && pins.has(spkiPin(c.raw))) return undefined;
    }
    return Object.assign(new Error('upstream certificate matches no configured pin'), {
      code: 'PIN_MISMATCH',
    });
  };
}

function spkiPin(der: Buffer): string {
  const spki = new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
  return `sha256/${createHash('sha256').update(spki).digest('base64')}`;
}
