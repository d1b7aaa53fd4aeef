// `portcullis serve`: load the config, start the gateway, print where it listens, and wire the
// signals: SIGTERM/SIGINT drain and exit, SIGHUP reloads config and certificates.
import { ConfigError, loadConfig } from '../config/load.js';
import { createGateway } from '../server/gateway.js';
import type { Io } from './io.js';

/** Runs the gateway until a terminating signal; resolves with the exit code. */
export async function serveCommand(args: string[], io: Io): Promise<number> {
  const file = optionValue(args, '--config') ?? 'portcullis.yaml';
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const issue of err.issues) io.err(`${file}: ${issue}`);
      return 1;
    }
    throw err;
  }
  let gateway: ReturnType<typeof createGateway>;
  try {
    gateway = createGateway(config);
  } catch (err) {
    io.err(`${file}: ${(err as Error).message}`);
    return 1;
  }
  if (config.tls === false) {
    io.err('WARNING: tls is false. Plaintext ws:// is for loopback development only; never expose it.');
  }
  let info: Awaited<ReturnType<typeof gateway.listen>>;
  try {
    info = await gateway.listen();
  } catch (err) {
    io.err(
      `cannot listen on ${config.listen.host}:${config.listen.port}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
    return 1;
  }
  io.err(`Portcullis listening on ${info.url}`);
  for (const route of config.routes) io.err(`  route ${info.url}${route.path}`);
  if (info.devCaPath) {
    io.err(
      `Development certificate ${info.devCreated ? 'created' : 'reused'}; its local CA is ${info.devCaPath}`,
    );
    io.err(`  trust it in Node clients:  NODE_EXTRA_CA_CERTS=${info.devCaPath}`);
    io.err(`  or per tool:               curl --cacert ${info.devCaPath} / wscat --ca ${info.devCaPath}`);
  }
  return await new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        io.err(`${signal} again: exiting now`);
        resolve(1);
        return;
      }
      stopping = true;
      io.err(`${signal}: draining connections`);
      gateway.close().then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    const reload = () => {
      try {
        const next = file === '-' ? undefined : loadConfig(file);
        gateway.reload(next).catch((err: Error) => io.err(`reload failed: ${err.message}`));
        io.err('SIGHUP: configuration and certificates reloaded');
      } catch (err) {
        const lines = err instanceof ConfigError ? err.issues : [(err as Error).message];
        for (const line of lines) io.err(`reload refused, keeping the running config: ${line}`);
      }
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', reload);
  });
}

/** The value after `--name` or in `--name=value`. */
export function optionValue(args: readonly string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === name) return args[i + 1];
    if (arg.startsWith(`${name}=`)) return arg.slice(name.length + 1);
  }
  return undefined;
}
