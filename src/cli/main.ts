// The `portcullis` command: parse the first words, call a module, return an exit code.
// Each command is imported when it runs: `pki` and `connect` should not pay for loading the gateway.
import { type Io, processIo } from './io.js';

const USAGE = `usage: portcullis <command>
  serve [--config FILE]     run the gateway (default portcullis.yaml; - reads stdin)
  config check FILE         validate a config file; exit 0 when valid, 1 otherwise
  config defaults           print the full config with every default, commented
  connect URL [options]     interactive or pipe client (--origin --protocol --token-file --pin --ca --cert --key)
  pki <command>             local CA, certificates, CRL and SPKI pins (portcullis pki help)
  help                      this text`;

/** Runs the CLI with argv (without node and the script); resolves with the exit code. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return (await import('./serve.js')).serveCommand(rest, io);
    case 'config':
      return (await import('./config.js')).configCommand(rest, io);
    case 'connect':
      return (await import('./connect.js')).connectCommand(rest, io);
    case 'pki':
      return (await import('./pki.js')).pkiCommand(rest, io);
    case 'help':
    case '--help':
    case '-h':
      io.out(USAGE);
      return 0;
    case undefined:
      io.err(USAGE);
      return 2;
    default:
      io.err(`unknown command: ${command}\n${USAGE}`);
      return 2;
  }
}
