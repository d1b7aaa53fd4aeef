// `portcullis config check FILE` and `portcullis config defaults`: argv in, lines out, exit code back.
import { pino } from 'pino';
import { checkConfigFile } from '../config/check.js';
import { renderDefaults } from '../config/defaults.js';
import { ConfigError } from '../config/load.js';
import { createGateway } from '../server/gateway.js';
import type { Io } from './io.js';

const USAGE = `usage: portcullis config check FILE    validate a config file (FILE may be - for stdin)
       portcullis config defaults      print the full config with every default, commented`;

/** Runs `portcullis config ...` (args after `config`); returns 0 ok, 1 invalid config, 2 usage error. */
export async function configCommand(args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'help' || sub === '--help' || sub === '-h') {
    io.out(USAGE);
    return 0;
  }
  const file = rest.length === 1 ? rest[0] : undefined;
  if (sub === 'check' && file !== undefined && (file === '-' || !file.startsWith('-'))) {
    const result = checkConfigFile(file);
    const problems = result.config ? await gatewayProblems(result.config) : [];
    if (problems.length > 0) {
      for (const line of problems) io.err(line);
      return 1;
    }
    for (const line of result.lines) (result.ok ? io.out : io.err)(line);
    return result.ok ? 0 : 1;
  }
  if (sub === 'defaults' && rest.length === 0) {
    io.out(renderDefaults().trimEnd());
    return 0;
  }
  io.err(sub === undefined ? USAGE : `portcullis config: unexpected arguments: ${args.join(' ')}\n${USAGE}`);
  return 2;
}

/**
 * Builds (without listening) the gateway `serve` would build, so `check` refuses exactly what
 * `serve` refuses: schema files, key files, authenticators, targets this version lacks.
 */
async function gatewayProblems(
  config: NonNullable<ReturnType<typeof checkConfigFile>['config']>,
): Promise<string[]> {
  try {
    const gateway = createGateway(config, { logger: pino({ level: 'silent' }) });
    await gateway.close();
    return [];
  } catch (err) {
    return err instanceof ConfigError ? [...err.issues] : [`(gateway): ${(err as Error).message}`];
  }
}
