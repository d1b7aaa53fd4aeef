// Local development certificates for `tls.dev: true`: a private CA the developer can trust once,
// and a localhost server certificate re-issued from it whenever it nears expiry.
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { link, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { createCa } from './ca.js';
import { BACKDATE_MS, DAY_MS, type Issued, issueCertificate, issuedFromPem } from './issue.js';

/** Where the dev certificates are, and whether this call had to (re)issue the server certificate. */
export interface DevCertificates {
  caCertPath: string;
  certPath: string;
  keyPath: string;
  created: boolean;
}

/** Extra names for the server certificate, and the clock (tests pass one in). */
export interface DevOptions {
  hosts?: string[];
  now?: Date;
}

/** Common name of the dev CA, so a developer can find it in a trust store. */
export const DEV_CA_NAME = 'Portcullis Dev CA';

/** Dev CA lifetime: ten years, so the developer trusts it once. */
export const DEV_CA_DAYS = 3650;

/** Dev server certificate lifetime: 825 days, the most Apple platforms accept for TLS servers. */
export const DEV_SERVER_DAYS = 825;

/** A server certificate with less validity left than this is re-issued. */
export const DEV_RENEW_BEFORE_DAYS = 7;

/** Names every dev server certificate covers. */
export const DEV_BASE_HOSTS: readonly string[] = ['localhost', '127.0.0.1', '::1'];

interface DevPaths {
  caCert: string;
  caKey: string;
  cert: string;
  key: string;
}

type Existing = { [K in keyof DevPaths]: string | undefined };

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

// Written to a temporary file created with its final mode, then moved into place: readers never see
// a half-written file, and a key is never world-readable, not even for an instant. With `exclusive`
// the move is a link(), which fails if the target exists, so an existing file is never replaced.
async function writeFileAtomic(path: string, data: string, mode: number, exclusive = false): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, data, { mode, flag: 'wx' });
  try {
    if (exclusive) await link(tmp, path);
    else await rename(tmp, path);
  } finally {
    await rm(tmp, { force: true });
  }
}

function covers(cert: X509Certificate, host: string): boolean {
  return isIP(host) === 0 ? cert.checkHost(host) !== undefined : cert.checkIP(host) !== undefined;
}

function reusable(existing: Existing, hosts: string[], now: Date): boolean {
  if (existing.caCert === undefined || existing.cert === undefined || existing.key === undefined)
    return false;
  try {
    const ca = new X509Certificate(existing.caCert);
    const cert = new X509Certificate(existing.cert);
    const renewAt = new Date(cert.validTo).getTime() - DEV_RENEW_BEFORE_DAYS * DAY_MS;
    return (
      cert.checkIssued(ca) &&
      cert.verify(ca.publicKey) &&
      cert.checkPrivateKey(createPrivateKey(existing.key)) &&
      new Date(cert.validFrom).getTime() <= now.getTime() &&
      now.getTime() <= renewAt &&
      hosts.every((host) => covers(cert, host))
    );
  } catch {
    // Unparseable files are re-issued, like expired ones; the CA key is checked separately.
    return false;
  }
}

async function loadOrCreateCa(existing: Existing, paths: DevPaths, now: Date): Promise<Issued> {
  if (existing.caKey === undefined) {
    const ca = await createCa({ commonName: DEV_CA_NAME, keyType: 'p256', days: DEV_CA_DAYS });
    // Key first and exclusively: if another process got there first, its CA wins and this call fails
    // instead of pairing its certificate with the other key.
    await writeFileAtomic(paths.caKey, ca.keyPem, 0o600, true);
    await writeFileAtomic(paths.caCert, ca.certPem, 0o644);
    return ca;
  }
  // A CA key may already be trusted by the developer's browser: it is never replaced silently.
  const fix = `delete ${paths.caKey} and ${paths.caCert} to make a new dev CA`;
  if (existing.caCert === undefined)
    throw new Error(`${paths.caKey} exists but ${paths.caCert} is missing: ${fix}`);
  const caCert = new X509Certificate(existing.caCert);
  if (!caCert.ca || !caCert.checkPrivateKey(createPrivateKey(existing.caKey))) {
    throw new Error(`${paths.caCert} is not a CA certificate for ${paths.caKey}: ${fix}`);
  }
  if (new Date(caCert.validTo).getTime() - DEV_RENEW_BEFORE_DAYS * DAY_MS < now.getTime()) {
    throw new Error(`the dev CA in ${paths.caCert} has expired or is about to: ${fix}`);
  }
  return issuedFromPem(existing.caCert, existing.caKey);
}

/** Makes (or reuses) a dev CA and a localhost server certificate in `dir`; keys are written 0600. */
export async function ensureDevCertificates(dir: string, opts: DevOptions = {}): Promise<DevCertificates> {
  const now = opts.now ?? new Date();
  const paths: DevPaths = {
    caCert: join(dir, 'ca.crt'),
    caKey: join(dir, 'ca.key'),
    cert: join(dir, 'server.crt'),
    key: join(dir, 'server.key'),
  };
  const result = { caCertPath: paths.caCert, certPath: paths.cert, keyPath: paths.key };
  const hosts = [
    ...new Set([...DEV_BASE_HOSTS, ...(opts.hosts ?? [])].map((h) => h.replace(/^\[(.*)\]$/, '$1'))),
  ];

  await mkdir(dir, { recursive: true, mode: 0o700 });
  const existing: Existing = {
    caCert: await readIfExists(paths.caCert),
    caKey: await readIfExists(paths.caKey),
    cert: await readIfExists(paths.cert),
    key: await readIfExists(paths.key),
  };
  if (reusable(existing, hosts, now)) return { ...result, created: false };

  const ca = await loadOrCreateCa(existing, paths, now);
  const caNotAfter = new Date(new X509Certificate(ca.certPem).validTo).getTime();
  const server = await issueCertificate(ca, {
    kind: 'server',
    commonName: 'localhost',
    dns: hosts.filter((h) => isIP(h) === 0),
    ip: hosts.filter((h) => isIP(h) !== 0),
    keyType: 'p256',
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    // A leaf must not outlive the CA that signed it.
    notAfter: new Date(Math.min(now.getTime() + DEV_SERVER_DAYS * DAY_MS, caNotAfter)),
  });
  // Key before certificate: if interrupted in between, the pair does not match and the next call
  // re-issues both, rather than serving a certificate whose key is gone.
  await writeFileAtomic(paths.key, server.keyPem, 0o600);
  await writeFileAtomic(paths.cert, server.certPem, 0o644);
  return { ...result, created: true };
}
