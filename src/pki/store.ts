// A PKI directory on disk: the CA, an index of the certificates it issued, their files, and the CRL.
// Every write is atomic (temporary file, then rename or link), keys are created 0600 inside a 0700
// directory, and nothing ever replaces the CA key or an issued file.
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { link, mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { createCa, DEFAULT_CA_NAME } from './ca.js';
import { createCrl, DEFAULT_CRL_DAYS, normalizeSerial } from './crl.js';
import {
  BACKDATE_MS,
  DAY_MS,
  DEFAULT_LEAF_DAYS,
  type Issued,
  issueCertificate,
  issuedFromPem,
} from './issue.js';
import { DEFAULT_KEY_TYPE, type KeyType } from './keys.js';
import { spkiPin } from './pin.js';

/** Where `portcullis pki` keeps its files when no --dir is given (relative to the working directory). */
export const DEFAULT_PKI_DIR = '.portcullis/pki';

/** Longest server certificate lifetime: 825 days, the most Apple platforms accept for TLS servers. */
export const MAX_SERVER_DAYS = 825;

/** Longest client certificate lifetime: devices are often provisioned once for years. */
export const MAX_CLIENT_DAYS = 3650;

/** Longest CA lifetime. */
export const MAX_CA_DAYS = 7300;

/** Longest CRL lifetime: a CRL is meant to be re-signed often, so a stale one is noticed. */
export const MAX_CRL_DAYS = 365;

/** Stable failure codes, so callers (the CLI, tests) branch on a code rather than on prose. */
export type PkiStoreErrorCode =
  | 'INVALID' // an input is malformed or out of range; `field` names it
  | 'CA_EXISTS' // init found a CA (or its index) already there
  | 'NO_CA' // the directory holds no CA
  | 'CA_MISMATCH' // ca.crt is not a CA certificate for ca.key
  | 'BAD_INDEX' // index.json is unreadable or not ours
  | 'FILE_EXISTS' // an issued file would replace an existing one
  | 'OUTLIVES_CA' // the requested validity ends after the CA's
  | 'NOT_FOUND' // no certificate with that serial in the index
  | 'NOT_OUR_CA' // a certificate file not signed by this CA
  | 'LOCKED'; // another process holds the index lock for too long

/** Inputs a caller can get wrong, named as the CLI options that carry them. */
export type PkiField = 'name' | 'dns' | 'ip' | 'uri' | 'email' | 'days' | 'key' | 'serial' | 'cert' | 'out';

/**
 * A store operation that did not happen, with a stable code. Thrown rather than returned because
 * every operation is file I/O that can also fail with an fs error; callers catch both in one place.
 */
export class PkiStoreError extends Error {
  readonly code: PkiStoreErrorCode;
  readonly field: PkiField | undefined;
  constructor(code: PkiStoreErrorCode, message: string, field?: PkiField) {
    super(message);
    this.name = 'PkiStoreError';
    this.code = code;
    this.field = field;
  }
}

/** The files of a PKI directory. */
export interface StorePaths {
  dir: string;
  caCert: string;
  caKey: string;
  index: string;
  issued: string;
  crl: string;
}

/** Kind of an issued certificate: TLS server (serverAuth) or mTLS client (clientAuth). */
export type CertKind = 'server' | 'client';

/** One certificate in index.json. File paths are relative to the PKI directory when inside it. */
export interface IndexEntry {
  /** Serial number, lowercase hex. */
  serial: string;
  kind: CertKind;
  /** Subject as `CN=...`. */
  subject: string;
  /** Subject alternative names, `DNS:`, `IP:`, `URI:` or `email:` prefixed, as openssl prints them. */
  sans: string[];
  notBefore: string;
  notAfter: string;
  status: 'valid' | 'revoked';
  revokedAt?: string;
  certFile: string;
  /** Absent for a certificate revoked by file that was signed outside this directory's index. */
  keyFile?: string;
}

/** The contents of index.json. */
export interface StoreIndex {
  version: 1;
  /** nextUpdate distance of the CRL that revoke regenerates; `pki crl --days N` sets it. */
  crlDays: number;
  certificates: IndexEntry[];
}

/** An index entry as listed: status also says `expired` for a valid certificate past notAfter. */
export interface ListedEntry extends Omit<IndexEntry, 'status'> {
  status: 'valid' | 'revoked' | 'expired';
}

/** What `initStore` created. */
export interface InitResult {
  paths: StorePaths;
  serial: string;
  subject: string;
  keyType: KeyType;
  notAfter: string;
  /** Non-fatal findings, such as a pre-existing directory others can read. */
  warnings: string[];
}

/** What to put in a CA made by `initStore`. */
export interface InitOptions {
  commonName?: string;
  keyType?: KeyType;
  days?: number;
  now?: Date;
}

/** What to issue into the store. `out` is a path prefix: `<out>.crt` and `<out>.key`. */
export interface IssueRequest {
  kind: CertKind;
  /** Subject CN; a server certificate defaults to its first DNS name or IP. */
  commonName?: string;
  dns?: string[];
  ip?: string[];
  uri?: string[];
  email?: string[];
  days?: number;
  out?: string;
  now?: Date;
}

/** An issued certificate: its index entry, absolute file paths and SPKI pin. */
export interface IssueResult {
  entry: IndexEntry;
  certPath: string;
  keyPath: string;
  pin: string;
}

/** Which certificate to revoke: by serial, or by its PEM (which must be signed by this CA). */
export type RevokeTarget = { serial: string } | { certPem: string; certFile: string };

/** What `revokeInStore` did. */
export interface RevokeResult {
  entry: IndexEntry;
  alreadyRevoked: boolean;
  crl: CrlResult;
}

/** A CRL written to disk. */
export interface CrlResult {
  path: string;
  thisUpdate: string;
  nextUpdate: string;
  revoked: number;
}

/** The file layout of a PKI directory. */
export function storePaths(dir: string): StorePaths {
  const root = resolve(dir);
  return {
    dir: root,
    caCert: join(root, 'ca.crt'),
    caKey: join(root, 'ca.key'),
    index: join(root, 'index.json'),
    issued: join(root, 'issued'),
    crl: join(root, 'crl.pem'),
  };
}

// --- input checks -----------------------------------------------------------------------------

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const CA_NAME = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/;
const CONTROL_OR_SPACE = /[\u0000-\u0020\u007f-\u009f\u2028\u2029]/;

/** Lowercases and checks a DNS name (a leading `*.` allowed with `wildcard`); throws INVALID. */
export function checkDnsName(name: string, wildcard = true): string {
  const lower = name.toLowerCase();
  const bad = (why: string) =>
    new PkiStoreError('INVALID', `"${name}" is not a valid DNS name: ${why}`, 'dns');
  if (isIP(lower) !== 0) throw bad('it is an IP address (use --ip)');
  if (lower.length === 0 || lower.length > 253) throw bad('it must be 1 to 253 characters');
  const labels = lower.split('.');
  const [first, ...rest] = labels;
  if (first === '*' && rest.length >= 2) {
    if (!wildcard) throw bad('wildcards are not allowed here');
    labels.shift();
  }
  for (const label of labels) {
    if (!LABEL.test(label))
      throw bad(`label "${label}" must be 1-63 of a-z, 0-9, "-", not starting or ending with "-"`);
  }
  if (/^[0-9]+$/.test(labels.at(-1) ?? '')) throw bad('the last label cannot be all digits');
  return lower;
}

/** Checks an IP address (brackets around IPv6 allowed); throws INVALID. */
export function checkIp(ip: string): string {
  const bare = ip.replace(/^\[(.*)\]$/, '$1');
  if (isIP(bare) === 0) throw new PkiStoreError('INVALID', `"${ip}" is not an IP address`, 'ip');
  return bare;
}

/** Checks a certificate name (CN and file name): 1-64 of A-Z a-z 0-9 . _ - starting alphanumeric. */
export function checkName(name: string): string {
  if (!NAME.test(name)) {
    throw new PkiStoreError(
      'INVALID',
      `"${name}" is not a valid name: use 1-64 of A-Z, a-z, 0-9, ".", "_", "-", starting with a letter or digit`,
      'name',
    );
  }
  return name;
}

/** Checks a CA common name: like checkName, and spaces are allowed. */
export function checkCaName(name: string): string {
  if (!CA_NAME.test(name) || name.endsWith(' ')) {
    throw new PkiStoreError(
      'INVALID',
      `"${name}" is not a valid CA name: use 1-64 of A-Z, a-z, 0-9, space, ".", "_", "-", starting with a letter or digit`,
      'name',
    );
  }
  return name;
}

/** Checks a URI SAN (e.g. spiffe://trust.example/device/42): absolute, no spaces or controls. */
export function checkUri(uri: string): string {
  let parsed: URL | undefined;
  try {
    parsed = new URL(uri);
  } catch {
    parsed = undefined;
  }
  if (!parsed || CONTROL_OR_SPACE.test(uri) || !/^[a-z][a-z0-9+.-]*:/i.test(uri)) {
    throw new PkiStoreError(
      'INVALID',
      `"${uri}" is not an absolute URI such as spiffe://example.org/device`,
      'uri',
    );
  }
  if (parsed.protocol === 'spiffe:' && (parsed.hostname === '' || parsed.search || parsed.hash)) {
    throw new PkiStoreError(
      'INVALID',
      `"${uri}" is not a SPIFFE ID: spiffe://<trust domain>/<path>, no query or fragment`,
      'uri',
    );
  }
  return uri;
}

/** Checks an email SAN: local@domain, with a valid DNS domain. */
export function checkEmail(email: string): string {
  const at = email.lastIndexOf('@');
  const local = email.slice(0, at);
  const domain = email.slice(at + 1);
  const ok = at > 0 && !CONTROL_OR_SPACE.test(local) && !/[@,<>()[\]\\;:"]/.test(local) && local.length <= 64;
  try {
    if (!ok) throw new Error();
    checkDnsName(domain, false);
  } catch {
    throw new PkiStoreError('INVALID', `"${email}" is not an email address`, 'email');
  }
  return email;
}

/** Checks a validity in whole days within 1..max; throws INVALID naming `what`. */
export function checkDays(days: number, max: number, what: string): number {
  if (!Number.isInteger(days) || days < 1 || days > max) {
    throw new PkiStoreError('INVALID', `${days} is out of range: ${what} take 1 to ${max} days`, 'days');
  }
  return days;
}

// --- files ------------------------------------------------------------------------------------

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

// The data goes to a temporary file created with its final mode and synced, then moves into place:
// readers never see half a file and a key is never readable by others, not even for an instant.
// With `exclusive` the move is a link(), which fails with EEXIST rather than replace the target.
async function writeFileAtomic(path: string, data: string, mode: number, exclusive = false): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(tmp, 'wx', mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    if (exclusive) await link(tmp, path);
    else await rename(tmp, path);
  } finally {
    await rm(tmp, { force: true });
  }
}

async function writeNew(path: string, data: string, mode: number, field: PkiField): Promise<void> {
  try {
    await writeFileAtomic(path, data, mode, true);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new PkiStoreError('FILE_EXISTS', `${path} already exists; it is never overwritten`, field);
    }
    throw err;
  }
}

const LOCK_WAIT_MS = 10_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// index.json is read, changed and written back; two `pki issue` runs at once (a provisioning loop
// in a shell) would otherwise lose one entry. The lock file names its holder so a crashed run's
// lock is taken over instead of blocking the directory forever.
async function withIndexLock<T>(paths: StorePaths, fn: () => Promise<T>): Promise<T> {
  const lock = `${paths.index}.lock`;
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      await writeFile(lock, String(process.pid), { flag: 'wx', mode: 0o600 });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number.parseInt(await readFile(lock, 'utf8').catch(() => ''), 10);
      if (Number.isInteger(holder) && holder > 0 && !alive(holder)) {
        await rm(lock, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new PkiStoreError('LOCKED', `${lock} is held by process ${holder}; remove it if that is stale`);
      }
      await new Promise((r) => setTimeout(r, 25 + Math.random() * 50));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { force: true });
  }
}

function isEntry(value: unknown): value is IndexEntry {
  const e = value as Partial<IndexEntry> | null;
  return (
    typeof e === 'object' &&
    e !== null &&
    typeof e.serial === 'string' &&
    (e.kind === 'server' || e.kind === 'client') &&
    typeof e.subject === 'string' &&
    Array.isArray(e.sans) &&
    typeof e.notBefore === 'string' &&
    typeof e.notAfter === 'string' &&
    (e.status === 'valid' || e.status === 'revoked') &&
    typeof e.certFile === 'string'
  );
}

/** Reads index.json; throws NO_CA when the directory has none and BAD_INDEX when it is not ours. */
export async function readIndex(dir: string): Promise<StoreIndex> {
  const paths = storePaths(dir);
  let text: string;
  try {
    text = await readFile(paths.index, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new PkiStoreError(
        'NO_CA',
        `no PKI in ${paths.dir} (missing index.json); run: portcullis pki init`,
      );
    }
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new PkiStoreError('BAD_INDEX', `${paths.index} is not valid JSON`);
  }
  const index = parsed as Partial<StoreIndex> | null;
  if (
    typeof index !== 'object' ||
    index === null ||
    index.version !== 1 ||
    !Array.isArray(index.certificates) ||
    !index.certificates.every(isEntry)
  ) {
    throw new PkiStoreError('BAD_INDEX', `${paths.index} is not a version 1 Portcullis PKI index`);
  }
  const crlDays =
    typeof index.crlDays === 'number' && Number.isInteger(index.crlDays) && index.crlDays >= 1
      ? index.crlDays
      : DEFAULT_CRL_DAYS;
  return { version: 1, crlDays, certificates: index.certificates };
}

async function writeIndex(paths: StorePaths, index: StoreIndex): Promise<void> {
  await writeFileAtomic(paths.index, `${JSON.stringify(index, null, 2)}\n`, 0o644);
}

/** Loads the CA certificate and key, checking that they belong together. */
export async function loadCa(dir: string): Promise<Issued> {
  const paths = storePaths(dir);
  let certPem: string;
  let keyPem: string;
  try {
    [certPem, keyPem] = await Promise.all([readFile(paths.caCert, 'utf8'), readFile(paths.caKey, 'utf8')]);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new PkiStoreError(
        'NO_CA',
        `no CA in ${paths.dir} (missing ca.crt or ca.key); run: portcullis pki init`,
      );
    }
    throw err;
  }
  let matches = false;
  try {
    const cert = new X509Certificate(certPem);
    matches = cert.ca && cert.checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    matches = false;
  }
  if (!matches)
    throw new PkiStoreError('CA_MISMATCH', `${paths.caCert} is not a CA certificate for ${paths.caKey}`);
  return issuedFromPem(certPem, keyPem);
}

// Inside the store a path is kept relative, so the directory can be moved or mounted elsewhere.
function storedPath(paths: StorePaths, file: string): string {
  const rel = relative(paths.dir, file);
  return rel.startsWith('..') || isAbsolute(rel) ? file : rel.split(sep).join('/');
}

/** The absolute path of a file named in an index entry. */
export function entryPath(dir: string, file: string): string {
  return isAbsolute(file) ? file : join(storePaths(dir).dir, file);
}

function subjectOf(cert: X509Certificate): string {
  return cert.subject.split('\n').join(', ');
}

// Node prints SANs as `DNS:a, IP Address:1.2.3.4, URI:x, email:y`; quoted when a value has a comma,
// which the input checks here never allow, so splitting on ", " is exact for our certificates.
function sansOf(cert: X509Certificate): string[] {
  if (!cert.subjectAltName) return [];
  return cert.subjectAltName.split(', ').map((san) => san.replace(/^IP Address:/, 'IP:'));
}

function iso(date: string | Date): string {
  return new Date(date).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// --- operations -------------------------------------------------------------------------------

/** Creates a CA, an empty index and an empty CRL in `dir`; refuses (CA_EXISTS) if any is there. */
export async function initStore(dir: string, opts: InitOptions = {}): Promise<InitResult> {
  const paths = storePaths(dir);
  const keyType = opts.keyType ?? DEFAULT_KEY_TYPE;
  const commonName = checkCaName(opts.commonName ?? DEFAULT_CA_NAME);
  const days = opts.days === undefined ? undefined : checkDays(opts.days, MAX_CA_DAYS, 'CAs');
  const now = opts.now ?? new Date();
  const warnings: string[] = [];

  const found: string[] = [];
  for (const path of [paths.caKey, paths.caCert, paths.index])
    if (await exists(path)) found.push(basename(path));
  if (found.length > 0) {
    throw new PkiStoreError(
      'CA_EXISTS',
      `a CA already exists in ${paths.dir} (${found.join(', ')}); it is never overwritten: use another --dir`,
    );
  }
  // An existing directory keeps its mode: tightening /tmp or a home directory is not ours to do.
  if (await exists(paths.dir)) {
    const mode = (await stat(paths.dir)).mode & 0o777;
    if (mode & 0o077) {
      warnings.push(
        `${paths.dir} is accessible to other users (mode ${mode.toString(8)}); consider chmod 700`,
      );
    }
  } else {
    await mkdir(paths.dir, { recursive: true, mode: 0o700 });
  }
  await mkdir(paths.issued, { recursive: true, mode: 0o700 });

  const ca = await createCa({
    commonName,
    keyType,
    ...(days === undefined ? {} : { days }),
  });
  // Key first and exclusively: if another init got there first, its CA wins and this one fails
  // instead of pairing its certificate with the other key.
  try {
    await writeFileAtomic(paths.caKey, ca.keyPem, 0o600, true);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new PkiStoreError(
        'CA_EXISTS',
        `${paths.caKey} appeared while creating the CA; it is never overwritten`,
      );
    }
    throw err;
  }
  await writeFileAtomic(paths.caCert, ca.certPem, 0o644);
  // An empty CRL from the start, so a gateway configured with tls.crl can start before any revocation.
  const index: StoreIndex = { version: 1, crlDays: DEFAULT_CRL_DAYS, certificates: [] };
  await writeCrlFile(ca, index, paths.crl, index.crlDays, now);
  await writeIndex(paths, index);
  const cert = new X509Certificate(ca.certPem);
  return {
    paths,
    serial: ca.serial,
    subject: subjectOf(cert),
    keyType,
    notAfter: iso(cert.validTo),
    warnings,
  };
}

/** Issues a server or client certificate from the store's CA, writes it and records it in the index. */
export async function issueToStore(dir: string, req: IssueRequest): Promise<IssueResult> {
  const paths = storePaths(dir);
  const now = req.now ?? new Date();
  const dns = (req.dns ?? []).map((d) => checkDnsName(d, req.kind === 'server'));
  const ip = (req.ip ?? []).map(checkIp);
  const uri = (req.uri ?? []).map(checkUri);
  const email = (req.email ?? []).map(checkEmail);
  if (req.kind === 'server' && dns.length + ip.length === 0) {
    throw new PkiStoreError('INVALID', 'a server certificate needs at least one --dns or --ip', 'dns');
  }
  if (req.kind === 'client' && req.commonName === undefined) {
    throw new PkiStoreError('INVALID', 'a client certificate needs a --name (its identity)', 'name');
  }
  // Without --name a server is named after its first DNS name or IP; the file name then swaps the
  // characters a file name should not hold (`*` of a wildcard, `:` of IPv6) for `_`.
  const commonName = req.commonName === undefined ? (dns[0] ?? ip[0] ?? '') : checkName(req.commonName);
  const fileName = commonName.replace(/[^A-Za-z0-9._-]/g, '_');
  const maxDays = req.kind === 'server' ? MAX_SERVER_DAYS : MAX_CLIENT_DAYS;
  const days = checkDays(req.days ?? DEFAULT_LEAF_DAYS, maxDays, `${req.kind} certificates`);
  const prefix = req.out === undefined ? join(paths.issued, fileName) : resolve(req.out);

  const ca = await loadCa(dir);
  const caNotAfter = new Date(new X509Certificate(ca.certPem).validTo);
  const notBefore = new Date(now.getTime() - BACKDATE_MS);
  const notAfter = new Date(now.getTime() + days * DAY_MS);
  if (notAfter > caNotAfter) {
    throw new PkiStoreError(
      'OUTLIVES_CA',
      `${days} days would outlive the CA, which expires ${iso(caNotAfter)}; choose fewer days`,
      'days',
    );
  }

  return withIndexLock(paths, async () => {
    const index = await readIndex(dir);
    const certPath = `${prefix}.crt`;
    const keyPath = `${prefix}.key`;
    for (const path of [certPath, keyPath]) {
      if (await exists(path)) {
        throw new PkiStoreError(
          'FILE_EXISTS',
          `${path} already exists; it is never overwritten (choose another --name or --out)`,
          req.out === undefined ? 'name' : 'out',
        );
      }
    }
    const issued = await issueCertificate(ca, {
      kind: req.kind,
      commonName,
      dns,
      ip,
      uri,
      email,
      notBefore,
      notAfter,
    });
    await mkdir(dirname(prefix), { recursive: true, mode: 0o700 });
    // Key before certificate, both exclusive: a certificate on disk always has its key next to it.
    await writeNew(keyPath, issued.keyPem, 0o600, req.out === undefined ? 'name' : 'out');
    try {
      await writeNew(certPath, issued.certPem, 0o644, req.out === undefined ? 'name' : 'out');
    } catch (err) {
      await rm(keyPath, { force: true });
      throw err;
    }
    const cert = new X509Certificate(issued.certPem);
    const entry: IndexEntry = {
      serial: issued.serial,
      kind: req.kind,
      subject: subjectOf(cert),
      sans: sansOf(cert),
      notBefore: iso(cert.validFrom),
      notAfter: iso(cert.validTo),
      status: 'valid',
      certFile: storedPath(paths, certPath),
      keyFile: storedPath(paths, keyPath),
    };
    index.certificates.push(entry);
    await writeIndex(paths, index);
    return { entry, certPath, keyPath, pin: spkiPin(issued.certPem) };
  });
}

function kindOf(cert: X509Certificate): CertKind {
  // Node's X509Certificate.keyUsage lists the extended key usage OIDs.
  return cert.keyUsage?.includes('1.3.6.1.5.5.7.3.1') ? 'server' : 'client';
}

/**
 * Marks a certificate revoked in the index and regenerates the store's CRL. Revoking twice is not
 * an error (alreadyRevoked), so a provisioning script can be re-run. A certificate given by file
 * that this CA signed but the index does not know is added as revoked.
 */
export async function revokeInStore(
  dir: string,
  target: RevokeTarget,
  now: Date = new Date(),
): Promise<RevokeResult> {
  const paths = storePaths(dir);
  const ca = await loadCa(dir);
  let serial: string;
  let cert: X509Certificate | undefined;
  if ('serial' in target) {
    try {
      serial = normalizeSerial(target.serial).replace(/^(00)+(?=.)/, '');
    } catch {
      throw new PkiStoreError('INVALID', `"${target.serial}" is not a hexadecimal serial number`, 'serial');
    }
  } else {
    try {
      cert = new X509Certificate(target.certPem);
    } catch {
      throw new PkiStoreError('INVALID', `${target.certFile} holds no PEM certificate`, 'cert');
    }
    const caCert = new X509Certificate(ca.certPem);
    if (!cert.checkIssued(caCert) || !cert.verify(caCert.publicKey)) {
      throw new PkiStoreError(
        'NOT_OUR_CA',
        `${target.certFile} was not issued by the CA in ${paths.dir}`,
        'cert',
      );
    }
    serial = normalizeSerial(cert.serialNumber).replace(/^(00)+(?=.)/, '');
  }

  return withIndexLock(paths, async () => {
    const index = await readIndex(dir);
    let entry = index.certificates.find((e) => e.serial.replace(/^(00)+(?=.)/, '') === serial);
    if (!entry && cert && !('serial' in target)) {
      entry = {
        serial,
        kind: kindOf(cert),
        subject: subjectOf(cert),
        sans: sansOf(cert),
        notBefore: iso(cert.validFrom),
        notAfter: iso(cert.validTo),
        status: 'valid',
        certFile: storedPath(paths, resolve(target.certFile)),
      };
      index.certificates.push(entry);
    }
    if (!entry) {
      throw new PkiStoreError(
        'NOT_FOUND',
        `no certificate with serial ${serial} in ${paths.index}; pass --cert FILE to revoke one this CA signed elsewhere`,
        'serial',
      );
    }
    const alreadyRevoked = entry.status === 'revoked';
    if (!alreadyRevoked) {
      entry.status = 'revoked';
      entry.revokedAt = iso(now);
    }
    // The CRL is written before the index: if interrupted, the revocation is already enforced and
    // re-running revoke (idempotent) brings the index in line.
    const crl = await writeCrlFile(ca, index, paths.crl, index.crlDays, now);
    await writeIndex(paths, index);
    return { entry, alreadyRevoked, crl };
  });
}

async function writeCrlFile(
  ca: Issued,
  index: StoreIndex,
  path: string,
  days: number,
  now: Date,
): Promise<CrlResult> {
  const revoked = index.certificates.filter((e) => e.status === 'revoked');
  const thisUpdate = new Date(now.getTime() - BACKDATE_MS);
  const nextUpdate = new Date(now.getTime() + days * DAY_MS);
  const pem = await createCrl(
    ca,
    // A revocation is dated no later than the CRL that first lists it (thisUpdate is backdated).
    revoked.map((e) => ({
      serial: e.serial,
      date: new Date(Math.min(new Date(e.revokedAt ?? e.notBefore).getTime(), thisUpdate.getTime())),
    })),
    { thisUpdate, nextUpdate },
  );
  await writeFileAtomic(path, pem, 0o644);
  return { path, thisUpdate: iso(thisUpdate), nextUpdate: iso(nextUpdate), revoked: revoked.length };
}

/**
 * Signs a fresh CRL of every revoked certificate, valid for `days` (default: the store's crlDays),
 * to crl.pem or `out`. A given `days` is remembered for the CRLs revoke writes.
 */
export async function writeStoreCrl(
  dir: string,
  opts: { days?: number; out?: string; now?: Date } = {},
): Promise<CrlResult> {
  const paths = storePaths(dir);
  const days = opts.days === undefined ? undefined : checkDays(opts.days, MAX_CRL_DAYS, 'CRLs');
  const ca = await loadCa(dir);
  return withIndexLock(paths, async () => {
    const index = await readIndex(dir);
    const result = await writeCrlFile(
      ca,
      index,
      opts.out === undefined ? paths.crl : resolve(opts.out),
      days ?? index.crlDays,
      opts.now ?? new Date(),
    );
    if (days !== undefined && days !== index.crlDays) await writeIndex(paths, { ...index, crlDays: days });
    return result;
  });
}

/** The issued certificates, oldest first, with `expired` for valid ones past notAfter at `now`. */
export async function listStore(dir: string, now: Date = new Date()): Promise<ListedEntry[]> {
  const index = await readIndex(dir);
  return index.certificates.map((entry) => ({
    ...entry,
    status: entry.status === 'valid' && new Date(entry.notAfter) <= now ? 'expired' : entry.status,
  }));
}
