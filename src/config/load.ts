// Reads a YAML or JSON config, validates it once with the strict schema, resolves file paths
// relative to the config file, and freezes the result.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { type Config, type ConfigInput, ConfigSchema } from './schema.js';

/** A config that failed validation; `issues` are `path: message` lines. */
export class ConfigError extends Error {
  readonly issues: readonly string[];
  constructor(issues: string[]) {
    super(`invalid configuration:\n  ${issues.join('\n  ')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/** Renders a zod issue path as `routes[1].limits.maxMessageBytes`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out || '(root)';
}

function issuesOf(error: z.ZodError): string[] {
  return error.issues.flatMap((issue) =>
    // One line per unknown key, at the key's own path, so the line names exactly what to delete.
    issue.code === 'unrecognized_keys'
      ? issue.keys.map((key) => `${formatPath([...issue.path, key])}: unknown key`)
      : [`${formatPath(issue.path)}: ${issue.message}`],
  );
}

/** Validates a config object (already parsed) and returns it defaulted and frozen. */
export function parseConfig(input: unknown, baseDir = process.cwd()): Config {
  const result = ConfigSchema.safeParse(input);
  if (!result.success) throw new ConfigError(issuesOf(result.error));
  return deepFreeze(resolvePaths(result.data, baseDir));
}

/** Parses YAML or JSON text (JSON is YAML); a syntax error becomes a ConfigError. */
export function parseConfigText(text: string, baseDir = process.cwd()): Config {
  let raw: unknown;
  try {
    raw = parseYaml(text, { uniqueKeys: true, maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError([`(syntax): ${(err as Error).message.split('\n')[0]}`]);
  }
  return parseConfig(raw ?? {}, baseDir);
}

/** Loads a config: a file path, `-` for stdin, or an object (for the library API). */
export function loadConfig(source: string | ConfigInput): Config {
  if (typeof source !== 'string') return parseConfig(source);
  if (source === '-') return parseConfigText(readFileSync(0, 'utf8'));
  let text: string;
  try {
    text = readFileSync(source, 'utf8');
  } catch (err) {
    throw new ConfigError([
      `(file): cannot read ${source}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    ]);
  }
  return parseConfigText(text, dirname(resolve(source)));
}

function resolvePaths(config: Config, baseDir: string): Config {
  const abs = (p: string | undefined) => (p === undefined || isAbsolute(p) ? p : resolve(baseDir, p));
  const tls =
    config.tls === false
      ? false
      : {
          ...config.tls,
          ...optional('cert', abs(config.tls.cert)),
          ...optional('key', abs(config.tls.key)),
          ...optional('clientCa', abs(config.tls.clientCa)),
          ...optional('crl', abs(config.tls.crl)),
          devDir: resolve(baseDir, config.tls.devDir),
          sni: config.tls.sni.map((e) => ({ ...e, cert: abs(e.cert) as string, key: abs(e.key) as string })),
        };
  const routes = config.routes.map((route) => ({
    ...route,
    ...optional('schema', abs(route.schema)),
    ...(route.upstream
      ? {
          upstream: {
            ...route.upstream,
            ...optional('ca', abs(route.upstream.ca)),
            ...optional('cert', abs(route.upstream.cert)),
            ...optional('key', abs(route.upstream.key)),
            ...optional('identityKeyFile', abs(route.upstream.identityKeyFile)),
          },
        }
      : {}),
    ...(route.broker
      ? {
          broker: {
            ...route.broker,
            channels: route.broker.channels.map((c) => ({ ...c, ...optional('schema', abs(c.schema)) })),
          },
        }
      : {}),
  }));
  // Every authenticator key ending in File/Files is a path (keys, CA bundles, htpasswd).
  const authenticators = Object.fromEntries(
    Object.entries(config.authenticators).map(([name, a]) => [
      name,
      Object.fromEntries(
        Object.entries(a).map(([k, v]) => [
          k,
          k.endsWith('File') && typeof v === 'string'
            ? abs(v)
            : k.endsWith('Files') && Array.isArray(v)
              ? v.map((p: string) => abs(p))
              : v,
        ]),
      ),
    ]),
  ) as Config['authenticators'];
  const admin = config.admin
    ? { admin: { ...config.admin, tokenFile: abs(config.admin.tokenFile) as string } }
    : {};
  const publishApi = config.publishApi
    ? { publishApi: { keyFile: abs(config.publishApi.keyFile) as string } }
    : {};
  return { ...config, tls, routes, authenticators, ...admin, ...publishApi };
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
