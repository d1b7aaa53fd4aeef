// `portcullis pki ...`: parse argv, call src/pki (the store, pins), print a table or JSON, return
// 0 ok / 1 failure / 2 usage error.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { isAbsolute, relative } from 'node:path';
import tls from 'node:tls';
import { parseArgs } from 'node:util';
import { type KeyType, spkiPinsOfChain } from '../pki/index.js';
import {
  DEFAULT_PKI_DIR,
  entryPath,
  initStore,
  issueToStore,
  listStore,
  MAX_CA_DAYS,
  MAX_CLIENT_DAYS,
  MAX_CRL_DAYS,
  MAX_SERVER_DAYS,
  type PkiField,
  PkiStoreError,
  revokeInStore,
  writeStoreCrl,
} from '../pki/store.js';
import type { Io } from './io.js';

const USAGE = `usage: portcullis pki <command> [--dir DIR]      DIR defaults to ${DEFAULT_PKI_DIR}
  init [--key p256|rsa3072|ed25519] [--name CN] [--days N]
        create a CA (ca.crt, ca.key 0600, index.json, crl.pem); never replaces one (N <= ${MAX_CA_DAYS})
  issue server (--dns NAME,... | --ip ADDR,...) [--name CN] [--days N] [--out PREFIX] [--json]
        a serverAuth certificate (N <= ${MAX_SERVER_DAYS}, default 365); writes PREFIX.crt and PREFIX.key
  issue client --name NAME [--uri URI,...] [--email ADDR,...] [--days N] [--out PREFIX] [--json]
        a clientAuth certificate for mutual TLS (N <= ${MAX_CLIENT_DAYS}, default 365)
  revoke (--serial HEX | --cert FILE)
        mark a certificate revoked and re-sign crl.pem
  crl [--days N] [--out FILE]
        re-sign the CRL, valid N days (default 7, or the last N given; N <= ${MAX_CRL_DAYS})
  pin FILE [--json]
  pin wss://HOST[:PORT] [--ca FILE] [--servername NAME] [--json]
        SPKI SHA-256 pins (sha256/<base64>) of every certificate in a PEM file or a live chain
  list [--json]
        issued certificates with serial, kind, subject, expiry and status`;

/** A mistake in the command line: printed with the usage hint, exit code 2. */
class UsageError extends Error {}

/** A failure the user can act on (bad host, unreadable file): printed, exit code 1. */
class CommandError extends Error {}

const KEY_TYPES: readonly KeyType[] = ['p256', 'rsa3072', 'ed25519'];

type OptionSpec = Record<string, { type: 'string' | 'boolean'; multiple?: boolean }>;
type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

const DIR_OPTION: OptionSpec = { dir: { type: 'string' } };
const JSON_OPTION: OptionSpec = { json: { type: 'boolean' } };

function parse(
  args: string[],
  options: OptionSpec,
  positionals = 0,
): { values: Values; positionals: string[] } {
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: true }) as typeof parsed;
  } catch (err) {
    const { code, message } = err as NodeJS.ErrnoException;
    // parseArgs explains at length; the option it names is what the user needs.
    const option = /'(-[^' ]+)/.exec(message)?.[1];
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option) throw new UsageError(`unknown option ${option}`);
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && option) {
      if (/ambiguous/.test(message)) {
        throw new UsageError(
          `${option}: a value is required (write ${option}=-VALUE for one starting with "-")`,
        );
      }
      throw new UsageError(
        `${option}: ${/argument missing/.test(message) ? 'a value is required' : 'takes no value'}`,
      );
    }
    throw new UsageError(message);
  }
  if (parsed.positionals.length > positionals) {
    throw new UsageError(`unexpected argument: ${parsed.positionals[positionals]}`);
  }
  return parsed;
}

function str(values: Values, name: string): string | undefined {
  const value = values[name];
  if (value === undefined) return undefined;
  const last = Array.isArray(value) ? value.at(-1) : value;
  if (typeof last !== 'string' || last === '') throw new UsageError(`--${name}: a value is required`);
  return last;
}

/** Repeated and comma-separated values: `--dns a,b --dns c` is [a, b, c]. */
function list(values: Values, name: string): string[] {
  const value = values[name];
  const raw = value === undefined ? [] : Array.isArray(value) ? value : [value];
  const items = raw.flatMap((v) => String(v).split(',')).map((v) => v.trim());
  if (items.some((v) => v === '')) throw new UsageError(`--${name}: empty value in "${raw.join(',')}"`);
  return items;
}

function int(values: Values, name: string): number | undefined {
  const value = str(values, name);
  if (value === undefined) return undefined;
  if (!/^[0-9]{1,9}$/.test(value)) throw new UsageError(`--${name}: "${value}" is not a whole number`);
  return Number(value);
}

function dirOf(values: Values): string {
  return str(values, 'dir') ?? DEFAULT_PKI_DIR;
}

/** A path as the user will type it: relative to the working directory when below it. */
function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel === '' || rel.startsWith('..') || isAbsolute(rel) ? path : rel;
}

function table(rows: string[][]): string[] {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd(),
  );
}

async function readText(path: string, option: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new CommandError(
      `${option}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
}

// --- commands ---------------------------------------------------------------------------------

async function init(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, {
    ...DIR_OPTION,
    key: { type: 'string' },
    name: { type: 'string' },
    days: { type: 'string' },
  });
  const key = str(values, 'key');
  if (key !== undefined && !KEY_TYPES.includes(key as KeyType)) {
    throw new UsageError(`--key: "${key}" is not one of ${KEY_TYPES.join(', ')}`);
  }
  const name = str(values, 'name');
  const days = int(values, 'days');
  const result = await initStore(dirOf(values), {
    ...(key === undefined ? {} : { keyType: key as KeyType }),
    ...(name === undefined ? {} : { commonName: name }),
    ...(days === undefined ? {} : { days }),
  });
  for (const warning of result.warnings) io.err(`warning: ${warning}`);
  const { paths } = result;
  io.out(
    `Created CA ${result.subject} (${result.keyType}) in ${shown(paths.dir)}, valid until ${result.notAfter}`,
  );
  const rows = [
    [shown(paths.caCert), 'certificate: trust it in clients, and as tls.clientCa'],
    [shown(paths.caKey), 'private key (0600): keep it secret, keep an offline backup'],
    [shown(paths.index), 'the certificates issued'],
    [shown(paths.crl), 'revocation list (empty), for tls.crl'],
  ];
  for (const line of table(rows)) io.out(`  ${line}`);
  return 0;
}

async function issue(kind: 'server' | 'client', args: string[], io: Io): Promise<number> {
  const common: OptionSpec = {
    ...DIR_OPTION,
    ...JSON_OPTION,
    name: { type: 'string' },
    days: { type: 'string' },
    out: { type: 'string' },
  };
  const spec: OptionSpec =
    kind === 'server'
      ? { ...common, dns: { type: 'string', multiple: true }, ip: { type: 'string', multiple: true } }
      : { ...common, uri: { type: 'string', multiple: true }, email: { type: 'string', multiple: true } };
  const { values } = parse(args, spec);
  const name = str(values, 'name');
  const days = int(values, 'days');
  const out = str(values, 'out');
  const result = await issueToStore(dirOf(values), {
    kind,
    ...(name === undefined ? {} : { commonName: name }),
    ...(kind === 'server' ? { dns: list(values, 'dns'), ip: list(values, 'ip') } : {}),
    ...(kind === 'client' ? { uri: list(values, 'uri'), email: list(values, 'email') } : {}),
    ...(days === undefined ? {} : { days }),
    ...(out === undefined ? {} : { out }),
  });
  const { entry } = result;
  if (values.json === true) {
    io.out(
      JSON.stringify(
        { ...entry, certPath: result.certPath, keyPath: result.keyPath, pin: result.pin },
        null,
        2,
      ),
    );
    return 0;
  }
  io.out(`Issued ${kind} certificate ${entry.subject}`);
  io.out(`  serial  ${entry.serial}`);
  io.out(`  names   ${entry.sans.length > 0 ? entry.sans.join(', ') : '(none)'}`);
  io.out(`  valid   ${entry.notBefore} to ${entry.notAfter}`);
  io.out(`  cert    ${shown(result.certPath)}`);
  io.out(`  key     ${shown(result.keyPath)} (0600)`);
  io.out(`  pin     ${result.pin}`);
  return 0;
}

async function revoke(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, { ...DIR_OPTION, serial: { type: 'string' }, cert: { type: 'string' } });
  const serial = str(values, 'serial');
  const certFile = str(values, 'cert');
  if ((serial === undefined) === (certFile === undefined)) {
    throw new UsageError('give exactly one of --serial HEX or --cert FILE');
  }
  const target =
    serial !== undefined ? { serial } : { certFile: certFile!, certPem: await readText(certFile!, '--cert') };
  const result = await revokeInStore(dirOf(values), target);
  const { entry, crl } = result;
  io.out(
    result.alreadyRevoked
      ? `${entry.subject} (serial ${entry.serial}) was already revoked at ${entry.revokedAt}`
      : `Revoked ${entry.subject} (serial ${entry.serial}) at ${entry.revokedAt}`,
  );
  io.out(`Wrote ${shown(crl.path)}: ${crl.revoked} revoked, next update ${crl.nextUpdate}`);
  io.out('A gateway whose tls.crl is this file reloads it on change (or on SIGHUP).');
  return 0;
}

async function crl(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, { ...DIR_OPTION, days: { type: 'string' }, out: { type: 'string' } });
  const days = int(values, 'days');
  const out = str(values, 'out');
  const result = await writeStoreCrl(dirOf(values), {
    ...(days === undefined ? {} : { days }),
    ...(out === undefined ? {} : { out }),
  });
  io.out(`Wrote ${shown(result.path)}: ${result.revoked} revoked, next update ${result.nextUpdate}`);
  io.out('Re-sign it before then: TLS refuses every client certificate once the CRL is past nextUpdate.');
  return 0;
}

async function list_(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, { ...DIR_OPTION, ...JSON_OPTION });
  const dir = dirOf(values);
  const entries = await listStore(dir);
  if (values.json === true) {
    io.out(
      JSON.stringify(
        entries.map((e) => ({
          ...e,
          certPath: entryPath(dir, e.certFile),
          ...(e.keyFile === undefined ? {} : { keyPath: entryPath(dir, e.keyFile) }),
        })),
        null,
        2,
      ),
    );
    return 0;
  }
  if (entries.length === 0) {
    io.out(`No certificates issued yet in ${dir}.`);
    return 0;
  }
  const rows = [['SERIAL', 'KIND', 'SUBJECT', 'EXPIRES', 'STATUS']];
  for (const e of entries) rows.push([e.serial, e.kind, e.subject, e.notAfter, e.status]);
  for (const line of table(rows)) io.out(line);
  return 0;
}

/** How to reach a live TLS endpoint for its chain. */
export interface PeerChainOptions {
  /** Extra trusted CA PEM, added to the system roots. */
  caPem?: string;
  /** SNI and the name the certificate must match; defaults to the URL's host unless it is an IP. */
  servername?: string;
  timeoutMs?: number;
}

/**
 * Connects to a wss:// or https:// URL with full verification (system roots plus `caPem`, host name
 * checked) and returns the verified chain, leaf first, as PEM. Pins of an unverified chain would
 * pin whoever answered, so nothing is returned unless verification passes.
 */
export function fetchPeerChainPem(url: URL, opts: PeerChainOptions = {}): Promise<string> {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = url.port === '' ? 443 : Number(url.port);
  // SNI carries host names only (RFC 6066); an IP is checked against the certificate's IP SANs.
  const servername = opts.servername ?? (isIP(host) === 0 ? host : undefined);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      ...(servername === undefined ? {} : { servername }),
      ca: opts.caPem === undefined ? [...tls.rootCertificates] : [...tls.rootCertificates, opts.caPem],
      rejectUnauthorized: true,
      ALPNProtocols: ['http/1.1'],
    });
    socket.setTimeout(opts.timeoutMs ?? 10_000, () =>
      socket.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })),
    );
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      const pems: string[] = [];
      const seen = new Set<string>();
      // getPeerCertificate(true) links each certificate to its issuer, completing the chain from
      // the trust store when the server leaves the root out; a root links to itself.
      let cert: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
      while (cert?.raw && !seen.has(cert.fingerprint256)) {
        seen.add(cert.fingerprint256);
        pems.push(new X509Certificate(cert.raw).toString());
        cert = cert.issuerCertificate;
      }
      socket.end();
      resolve(pems.join(''));
    });
  });
}

async function pin(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(
    args,
    { ...JSON_OPTION, ca: { type: 'string' }, servername: { type: 'string' } },
    1,
  );
  const [target] = positionals;
  if (target === undefined) throw new UsageError('give a PEM FILE or a wss://HOST:PORT URL');
  const ca = str(values, 'ca');
  const servername = str(values, 'servername');
  let pem: string;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) {
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      throw new UsageError(`"${target}" is not a URL`);
    }
    if (url.protocol !== 'wss:' && url.protocol !== 'https:') {
      throw new UsageError(`"${target}": pins come from a TLS chain, so the URL must be wss:// or https://`);
    }
    if (servername !== undefined && isIP(servername) !== 0) {
      throw new UsageError(`--servername: "${servername}" is an IP address; SNI carries host names only`);
    }
    const caPem = ca === undefined ? undefined : await readText(ca, '--ca');
    try {
      pem = await fetchPeerChainPem(url, {
        ...(caPem === undefined ? {} : { caPem }),
        ...(servername === undefined ? {} : { servername }),
      });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const hint = ca === undefined ? '; for a private CA pass --ca FILE' : '';
      throw new CommandError(`${url.host}: ${e.code ?? 'error'}: ${e.message}${hint}`);
    }
  } else {
    if (ca !== undefined || servername !== undefined) {
      throw new UsageError(`--${ca !== undefined ? 'ca' : 'servername'} applies to a wss:// URL, not a file`);
    }
    pem = await readText(target, 'FILE');
  }
  let pins: ReturnType<typeof spkiPinsOfChain>;
  try {
    pins = spkiPinsOfChain(pem);
  } catch (err) {
    throw new CommandError(`${target}: ${(err as Error).message}`);
  }
  if (values.json === true) {
    io.out(JSON.stringify(pins, null, 2));
    return 0;
  }
  for (const line of table([['ROLE', 'PIN', 'SUBJECT'], ...pins.map((p) => [p.role, p.pin, p.subject])])) {
    io.out(line);
  }
  return 0;
}

const FIELD_OPTION: Record<PkiField, string> = {
  name: '--name',
  dns: '--dns',
  ip: '--ip',
  uri: '--uri',
  email: '--email',
  days: '--days',
  key: '--key',
  serial: '--serial',
  cert: '--cert',
  out: '--out',
};

/** Runs `portcullis pki ...` (args after `pki`); returns 0 ok, 1 failure, 2 usage error. */
export async function pkiCommand(args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  let label = `portcullis pki${sub === undefined ? '' : ` ${sub}`}`;
  try {
    switch (sub) {
      case 'init':
        return await init(rest, io);
      case 'issue': {
        const [kind, ...more] = rest;
        if (kind !== 'server' && kind !== 'client') throw new UsageError('issue server or issue client?');
        label += ` ${kind}`;
        return await issue(kind, more, io);
      }
      case 'revoke':
        return await revoke(rest, io);
      case 'crl':
        return await crl(rest, io);
      case 'pin':
        return await pin(rest, io);
      case 'list':
        return await list_(rest, io);
      case 'help':
      case '--help':
      case '-h':
        io.out(USAGE);
        return 0;
      case undefined:
        io.err(USAGE);
        return 2;
      default:
        throw new UsageError(`unknown command: ${sub}`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`${label}: ${err.message}`);
      io.err("run 'portcullis pki help' for usage");
      return 2;
    }
    if (err instanceof PkiStoreError && err.code === 'INVALID') {
      io.err(`${label}: ${err.field ? `${FIELD_OPTION[err.field]}: ` : ''}${err.message}`);
      return 2;
    }
    if (err instanceof PkiStoreError || err instanceof CommandError) {
      io.err(`${label}: ${err.message}`);
      return 1;
    }
    // File system failures (EACCES, ENOSPC, ...) are the environment's, not a bug: report and fail.
    if (typeof (err as NodeJS.ErrnoException).code === 'string' && (err as NodeJS.ErrnoException).syscall) {
      io.err(`${label}: ${(err as Error).message}`);
      return 1;
    }
    throw err;
  }
}
