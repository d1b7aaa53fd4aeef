// `portcullis config check FILE`: the schema errors of a config file, then what the schema cannot
// know: that every referenced file exists and holds what its key says, and that the key matches
// the certificate.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { compileSchemaFile } from './json-schema.js';
import { ConfigError, loadConfig } from './load.js';
import { type Config, isLoopback } from './schema.js';

/** The outcome of a check: `lines` are `path: message` errors, or the summary and warnings. */
export interface CheckResult {
  ok: boolean;
  lines: string[];
  /** The validated config, when ok (so a caller can go on to build a gateway from it). */
  config?: Config;
}

type Read = { ok: true; text: string } | { ok: false; line: string };

/** Validates a config file (`-` for stdin) and the files it refers to; never throws for a bad config. */
export function checkConfigFile(path: string, now: Date = new Date()): CheckResult {
  let config: Config;
  try {
    config = loadConfig(path);
  } catch (err) {
    if (err instanceof ConfigError) return { ok: false, lines: [...err.issues] };
    throw err;
  }
  const errors = [
    ...checkTls(config, now),
    ...checkRoutes(config),
    ...checkAuthenticators(config),
    ...checkAdmin(config),
  ];
  if (errors.length > 0) return { ok: false, lines: errors };
  return { ok: true, lines: [summary(config), ...warnings(config)], config };
}

function summary(config: Config): string {
  const n = config.routes.length;
  const { host, port } = config.listen;
  const authority = host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
  return `ok: ${n} route${n === 1 ? '' : 's'}, listening on ${config.tls === false ? 'ws' : 'wss'}://${authority}`;
}

function warnings(config: Config): string[] {
  const { tls, listen } = config;
  if (tls === false) return ['WARNING: tls is false: plaintext ws:// is for loopback development only'];
  if (!tls.dev || (tls.cert && tls.key)) return [];
  const out = [
    `WARNING: tls.dev: a local development CA and certificate will be created under ${tls.devDir}`,
  ];
  if (!isLoopback(listen.host))
    out.push(`WARNING: tls.dev on ${listen.host}: development certificates on a network interface`);
  return out;
}

function read(key: string, file: string): Read {
  try {
    return { ok: true, text: readFileSync(file, 'utf8') };
  } catch (err) {
    return {
      ok: false,
      line: `${key}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    };
  }
}

function checkTls(config: Config, now: Date): string[] {
  if (config.tls === false) return [];
  const tls = config.tls;
  const errors: string[] = [];
  let cert: X509Certificate | undefined;
  if (tls.cert) {
    const file = read('tls.cert', tls.cert);
    if (!file.ok) errors.push(file.line);
    else {
      try {
        cert = new X509Certificate(file.text);
      } catch {
        errors.push(`tls.cert: ${tls.cert} is not a PEM certificate`);
      }
    }
    if (cert && Date.parse(cert.validTo) < now.getTime()) {
      errors.push(`tls.cert: ${tls.cert} expired on ${new Date(cert.validTo).toISOString()}`);
    }
  }
  if (tls.key) {
    const file = read('tls.key', tls.key);
    if (!file.ok) errors.push(file.line);
    else {
      try {
        const key = createPrivateKey(file.text);
        if (cert && !cert.checkPrivateKey(key)) errors.push(`tls.key: ${tls.key} does not match tls.cert`);
      } catch {
        errors.push(`tls.key: ${tls.key} is not an unencrypted PEM private key`);
      }
    }
  }
  if (tls.clientCa) {
    const file = read('tls.clientCa', tls.clientCa);
    if (!file.ok) errors.push(file.line);
    else if (!file.text.includes('-----BEGIN CERTIFICATE-----')) {
      errors.push(`tls.clientCa: ${tls.clientCa} holds no PEM certificate`);
    }
  }
  if (tls.crl) {
    const file = read('tls.crl', tls.crl);
    if (!file.ok) errors.push(file.line);
    else if (!file.text.includes('-----BEGIN X509 CRL-----'))
      errors.push(`tls.crl: ${tls.crl} holds no PEM CRL`);
  }
  return errors;
}

function checkRoutes(config: Config): string[] {
  const errors: string[] = [];
  config.routes.forEach((route, i) => {
    if (route.schema) errors.push(...checkSchema(`routes[${i}].schema`, route.schema));
    route.broker?.channels.forEach((channel, j) => {
      if (channel.schema)
        errors.push(...checkSchema(`routes[${i}].broker.channels[${j}].schema`, channel.schema));
    });
  });
  return errors;
}

function checkSchema(key: string, path: string): string[] {
  const file = read(key, path);
  if (!file.ok) return [file.line];
  // The gateway's own compiler, so check accepts exactly the schemas serve accepts.
  try {
    compileSchemaFile(path);
    return [];
  } catch (err) {
    return [`${key}: ${(err as Error).message}`];
  }
}

function checkAuthenticators(config: Config): string[] {
  const errors: string[] = [];
  for (const [name, auth] of Object.entries(config.authenticators)) {
    // As in load.ts: every authenticator key ending in File or Files is a path.
    for (const [key, value] of Object.entries(auth)) {
      const paths =
        key.endsWith('File') && typeof value === 'string'
          ? [value]
          : key.endsWith('Files') && Array.isArray(value)
            ? value
            : [];
      paths.forEach((path: string, i) => {
        const at = key.endsWith('Files')
          ? `authenticators.${name}.${key}[${i}]`
          : `authenticators.${name}.${key}`;
        const file = read(at, path);
        // Key contents (PEM, JWK or JWKS) are checked by building the authenticator, as serve does.
        if (!file.ok) errors.push(file.line);
      });
    }
  }
  return errors;
}

function checkAdmin(config: Config): string[] {
  const errors: string[] = [];
  if (config.admin) {
    const file = read('admin.tokenFile', config.admin.tokenFile);
    if (!file.ok) errors.push(file.line);
    else if (file.text.trim() === '') errors.push(`admin.tokenFile: ${config.admin.tokenFile} is empty`);
  }
  if (config.publishApi) {
    const file = read('publishApi.keyFile', config.publishApi.keyFile);
    if (!file.ok) errors.push(file.line);
  }
  return errors;
}
