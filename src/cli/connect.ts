// `portcullis connect URL`: a wscat-like client over the SDK. Interactive on a terminal (prompt,
// incoming messages marked `<`), pipe mode otherwise (each stdin line is one text message, each
// message one stdout line; at end of input it closes with 1000 and exits when the server agrees).
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { type ConnectOptions, connect } from '../client/connect.js';
import { ClientError } from '../client/errors.js';
import type { Io } from './io.js';

const USAGE = `usage: portcullis connect URL [options]
  --origin ORIGIN        send this Origin header
  --protocol NAME        offer a subprotocol (repeatable)
  --token-file FILE      send the token in FILE as Authorization: Bearer (never on the command line)
  --pin sha256/BASE64    pin the server's public key (repeatable; at least two: current and backup)
  --ca FILE              trust this CA (PEM) instead of the system bundle
  --cert FILE --key FILE client certificate for mutual TLS
  --reconnect            reconnect with backoff when the server's retry flag allows it
exit status: 0 after a 1000 close, 1 on any other close or failure, 2 on a usage error`;

/** Input the command reads lines from. */
export type LineInput = NodeJS.ReadableStream & { isTTY?: boolean };

interface Parsed {
  url: string;
  options: ConnectOptions;
}

const VALUE_FLAGS = new Set(['--origin', '--protocol', '--token-file', '--pin', '--ca', '--cert', '--key']);

function parse(args: readonly string[]): Parsed | string {
  const values = new Map<string, string[]>();
  let url: string | undefined;
  let reconnect = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const eq = arg.indexOf('=');
    const name = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    if (VALUE_FLAGS.has(name)) {
      const value = eq > 0 && name !== arg ? arg.slice(eq + 1) : args[++i];
      if (value === undefined) return `${name} needs a value`;
      values.set(name, [...(values.get(name) ?? []), value]);
    } else if (arg === '--reconnect') {
      reconnect = true;
    } else if (arg.startsWith('-')) {
      return `unknown option: ${arg}`;
    } else if (url === undefined) {
      url = arg;
    } else {
      return `unexpected argument: ${arg}`;
    }
  }
  if (url === undefined) return 'URL is required';
  const one = (name: string) => values.get(name)?.at(-1);
  const options: ConnectOptions = { reconnect };
  const origin = one('--origin');
  if (origin !== undefined) options.origin = origin;
  const protocols = values.get('--protocol');
  if (protocols) options.protocols = protocols;
  const pins = values.get('--pin');
  if (pins) options.pins = pins;
  const tokenFile = one('--token-file');
  if (tokenFile !== undefined) options.token = readFileSync(tokenFile, 'utf8').trim();
  const ca = one('--ca');
  if (ca !== undefined) options.ca = readFileSync(ca);
  const cert = one('--cert');
  if (cert !== undefined) options.cert = readFileSync(cert);
  const key = one('--key');
  if (key !== undefined) options.key = readFileSync(key);
  return { url, options };
}

// Terminal control characters in a server's message or close reason must not drive the terminal.
function printable(text: string): string {
  return text.replace(
    /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** Runs the client until the connection closes for good; resolves with the exit code. */
export async function connectCommand(
  args: string[],
  io: Io,
  input: LineInput = process.stdin,
): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    io.out(USAGE);
    return 0;
  }
  let parsed: Parsed | string;
  try {
    parsed = parse(args);
  } catch (err) {
    io.err(
      `cannot read ${(err as NodeJS.ErrnoException).path ?? 'file'}: ${(err as NodeJS.ErrnoException).code}`,
    );
    return 1;
  }
  if (typeof parsed === 'string') {
    io.err(`${parsed}\n${USAGE}`);
    return 2;
  }
  const interactive = input.isTTY === true;
  let client: ReturnType<typeof connect>;
  try {
    client = connect(parsed.url, parsed.options);
  } catch (err) {
    io.err(`error: ${(err as Error).message}`);
    return 2;
  }
  const show = (data: string | Uint8Array): string =>
    typeof data === 'string'
      ? data
      : `[binary ${data.byteLength} bytes] ${Buffer.from(data).toString('base64')}`;
  client.on('message', (data) => io.out(interactive ? `< ${printable(show(data))}` : show(data)));
  client.on('open', ({ protocol }) => io.err(`connected${protocol ? ` (subprotocol ${protocol})` : ''}`));
  client.on('error', (err) => io.err(`error: ${err.message}`));
  client.on('pinMismatch', (info) => io.err(`  pins seen for ${info.host}: ${info.seen.join(' ')}`));
  client.on('reconnecting', ({ attempt, delayMs }) =>
    io.err(`reconnecting in ${delayMs} ms (attempt ${attempt})`),
  );
  const finished = new Promise<number>((resolve) => {
    client.on('close', (event) => {
      if (event.reconnecting) return;
      io.err(`closed ${event.code}${event.reason ? ` ${printable(event.reason)}` : ''}`);
      resolve(
        event.code === 1000 && (event.errorCode === null || event.errorCode === 'NORMAL_CLOSURE') ? 0 : 1,
      );
    });
  });
  const opened = await client.ready().then(
    () => true,
    () => false,
  );
  if (!opened) {
    const code = await finished;
    return code === 0 ? 1 : code;
  }
  const lines = createInterface({ input, terminal: interactive, ...(interactive ? { prompt: '> ' } : {}) });
  lines.on('line', (line) => {
    try {
      client.send(line);
    } catch (err) {
      io.err(`not sent: ${err instanceof ClientError ? err.code : (err as Error).message}`);
    }
    if (interactive) lines.prompt();
  });
  // End of input (or Ctrl-D / Ctrl-C on a terminal): close with 1000 and wait for the server's answer,
  // which comes after the answers to every line sent before it.
  lines.once('close', () => client.close(1000));
  lines.on('SIGINT', () => lines.close());
  if (interactive) lines.prompt();
  const code = await finished;
  lines.close();
  return code;
}
