// `portcullis config check FILE` and `portcullis config defaults`: argv in, lines out, exit code back.
import { checkConfigFile } from '../config/check.js';
import { renderDefaults } from '../config/defaults.js';

/** Where a command writes; each call is one line or block, without its trailing newline. */
export interface CommandIo {
  out: (s: string) => void;
  err: (s: string) => void;
}

const USAGE = `usage: portcullis config check FILE    validate a config file (FILE may be - for stdin)
       portcullis config defaults      print the full config with every default, commented`;

/** Runs `portcullis config ...` (args after `config`); returns 0 ok, 1 invalid config, 2 usage error. */
export function configCommand(args: string[], io: CommandIo): number {
  const [sub, ...rest] = args;
  if (sub === 'help' || sub === '--help' || sub === '-h') {
    io.out(USAGE);
    return 0;
  }
  const file = rest.length === 1 ? rest[0] : undefined;
  if (sub === 'check' && file !== undefined && (file === '-' || !file.startsWith('-'))) {
    const result = checkConfigFile(file);
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
