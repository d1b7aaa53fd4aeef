// Server certificates at run time: reloading them (on file change or reload()) without dropping the
// listener, closing connections a new CRL revokes, and warning before they expire.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { TlsConfig } from '../config/schema.js';
import type { ErrorCode } from '../protocol.js';
import type { AuditLogger } from './audit.js';
import { type SniContexts, secureContextOptions, type TlsFiles } from './listen.js';
import type { Session } from './session.js';

/** The gateway's certificate state as these checks see it; the gateway builds one for each call. */
export interface CertificateHost {
  readonly tls: TlsConfig | false;
  /** The listener's certificate files, once listening with TLS. */
  readonly files: TlsFiles | undefined;
  readonly server: Server | undefined;
  readonly sni: SniContexts;
  readonly log: AuditLogger;
  readonly stats: { serverCertificateNotAfter: number };
  /** Closes the open connections that match with `code`; returns how many. */
  closeSessions(match: (s: Session) => boolean, code: ErrorCode): number;
}

/** Re-reads the server certificates (and CRL) into the listener, keeping the old ones on failure. */
export function reloadCertificates(gateway: CertificateHost, reason: string): void {
  const tls = gateway.tls;
  if (!gateway.files || !gateway.server || tls === false || !('setSecureContext' in gateway.server)) return;
  try {
    const context = secureContextOptions(tls, gateway.files);
    gateway.sni.load(tls, context);
    (gateway.server as unknown as { setSecureContext(o: object): void }).setSecureContext(context);
    checkCertificateExpiry(gateway);
    gateway.log.info({ event: 'certificates', outcome: 'reloaded', reason }, 'certificates reloaded');
    if (context.crl) {
      // New handshakes see the new CRL through the secure context; open connections are checked here.
      const crl = context.crl as Buffer;
      void import('../pki/crl.js')
        .then(({ revokedSerials }) => {
          const revoked = revokedSerials(crl);

          const closed = gateway.closeSessions(
            (s) => s.info.certSerial !== null && revoked.has(s.info.certSerial),
            'CERTIFICATE_REVOKED',
          );
          if (closed > 0)
            gateway.log.info(
              { event: 'certificates', outcome: 'revoked', closed },
              'closed connections with revoked certificates',
            );
        })
        .catch((err: Error) =>
          gateway.log.warn({ event: 'certificates', outcome: 'crl_unreadable', err: err.message }),
        );
    }
  } catch (err) {
    // A half-written file (mid-rotation) must not take the listener down: keep the old context.
    gateway.log.warn(
      { event: 'certificates', outcome: 'failed', reason, err: (err as Error).message },
      'certificate reload failed; keeping the previous certificates',
    );
  }
}

/** Records the earliest server-certificate expiry and warns when it is near. */
export function checkCertificateExpiry(gateway: CertificateHost): void {
  const tls = gateway.tls;
  if (!gateway.files || tls === false) return;
  const files = [gateway.files.cert, ...tls.sni.map((e) => e.cert)];
  let earliestNotAfter = Number.POSITIVE_INFINITY;
  for (const file of files) {
    try {
      const notAfter = Date.parse(new X509Certificate(readFileSync(file)).validTo);
      const daysLeft = Math.floor((notAfter - Date.now()) / 86_400_000);
      earliestNotAfter = Math.min(earliestNotAfter, notAfter);
      if (daysLeft <= tls.expiryWarningDays) {
        gateway.log.warn(
          { event: 'certificates', outcome: 'expiring', file, daysLeft },
          'server certificate expires soon',
        );
      }
    } catch (err) {
      gateway.log.warn({ event: 'certificates', outcome: 'unreadable', file, err: (err as Error).message });
    }
  }
  if (Number.isFinite(earliestNotAfter)) gateway.stats.serverCertificateNotAfter = earliestNotAfter;
}
