// The `portcullis` binary as a user runs it: the README quickstart through npx, `config check` and
// `config defaults`, `serve --config -`, plaintext loopback, and the SIGTERM / SIGHUP contract.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { closed, nextMessage } from '../helpers/gateway.js';
import { testPki } from '../helpers/pki.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'portcullis.js');
const QUICKSTART_PORT = 8443;
/** limits.drainTimeoutMs at its default: how long SIGTERM may take with cooperating clients. */
const DEFAULT_DRAIN_MS = 10_000;

/** A CLI process and what it has written so far. */
interface Cli {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first match of `pattern` in stderr; rejects on timeout or exit. */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Resolves with the exit code and signal; rejects after `timeoutMs`. */
  exit(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const started: { child: ChildProcess; group: boolean }[] = [];

after(() => {
  // Only what this file started: a detached npx run is killed as its process group, so the gateway
  // npm runs through `sh -c` goes too.
  for (const { child, group } of started) {
    if (child.pid === undefined) continue;
    try {
      if (group) process.kill(-child.pid, 'SIGKILL');
      else if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }
});

function start(command: string, args: string[], options: { stdin?: string; group?: boolean } = {}): Cli {
  const child = spawn(command, args, {
    cwd: ROOT,
    detached: options.group ?? false,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1' },
  });
  started.push({ child, group: options.group ?? false });
  let out = '';
  let err = '';
  const wakers = new Set<() => void>();
  const wake = () => {
    for (const w of wakers) w();
  };
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
    wake();
  });
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
    wake();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
      wake();
    });
  });
  if (options.stdin !== undefined) child.stdin?.end(options.stdin);
  else child.stdin?.end();
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    waitForStderr(pattern, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = err.match(pattern);
          if (match) return done(() => resolve(match));
          if (child.exitCode !== null || child.signalCode !== null) {
            return done(() =>
              reject(
                new Error(
                  `exited (${child.exitCode ?? child.signalCode}) before ${pattern}; stderr:\n${err}`,
                ),
              ),
            );
          }
        };
        const timer = setTimeout(
          () => done(() => reject(new Error(`timed out waiting for ${pattern}; stderr:\n${err}`))),
          timeoutMs,
        );
        const done = (settle: () => void) => {
          clearTimeout(timer);
          wakers.delete(check);
          settle();
        };
        wakers.add(check);
        check();
      });
    },
    exit(timeoutMs = 10_000) {
      return within(exited, timeoutMs, `${command} ${args.join(' ')} did not exit; stderr:\n${err}`);
    },
  };
}

/** Runs the built binary to completion. */
async function run(
  args: string[],
  stdin?: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cli = start(process.execPath, [BIN, ...args], stdin === undefined ? {} : { stdin });
  const { code } = await cli.exit();
  return { code, stdout: cli.stdout(), stderr: cli.stderr() };
}

function within<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The outcome of a WebSocket handshake: open, or refused with the status and ErrorCode of the body. */
type Attempt =
  | { ok: true; ws: WebSocket; peer: TLSSocket | undefined }
  | { ok: false; status: number; code: string };

function attempt(url: string, options: WebSocket.ClientOptions = {}): Promise<Attempt> {
  const ws = new WebSocket(url, options);
  let peer: TLSSocket | undefined;
  ws.once('upgrade', (res) => {
    peer = 'encrypted' in res.socket ? (res.socket as TLSSocket) : undefined;
  });
  return within(
    new Promise<Attempt>((resolve, reject) => {
      ws.once('open', () => resolve({ ok: true, ws, peer }));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () => {
          ws.terminate();
          let code = '(no JSON body)';
          try {
            code = (JSON.parse(body) as { code: string }).code;
          } catch {
            // Reported as is: the assertion on `code` then fails with this text.
          }
          resolve({ ok: false, status: res.statusCode ?? 0, code });
        });
      });
    }),
    5_000,
    `no handshake answer from ${url}`,
  );
}

async function open(
  url: string,
  options: WebSocket.ClientOptions = {},
): Promise<{ ws: WebSocket; peer: TLSSocket | undefined }> {
  const result = await attempt(url, options);
  if (!result.ok) throw new Error(`${url}: ${result.status} ${result.code}`);
  return result;
}

async function echo(ws: WebSocket, text: string): Promise<string> {
  const reply = nextMessage(ws);
  ws.send(text);
  return (await within(reply, 3_000, 'no echo')).data.toString();
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function connectRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

/**
 * The gateway process under an `npx` run. npm forwards SIGTERM only to its `sh -c` child, which
 * dies without passing it on, so the gateway itself is signalled (as systemd or a terminal would
 * signal the whole group). Linux: walks /proc.
 */
function gatewayPid(root: number): number {
  const parent = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // The command name may hold spaces and parentheses; ppid is the second field after the last ')'.
      parent.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // Exited while listing.
    }
  }
  for (const pid of parent.keys()) {
    let p = pid;
    while (p > 1 && p !== root) p = parent.get(p) ?? 0;
    if (p !== root || pid === root) continue;
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (/[/\\]portcullis(\.js)?$/.test(argv[1] ?? '') && argv[2] === 'serve') return pid;
    } catch {
      // Exited while listing.
    }
  }
  throw new Error(`no gateway process under npx (pid ${root})`);
}

/** A temp dir holding the test server certificate and key (issued by src/pki at test start). */
async function tlsDir(): Promise<{ dir: string; ca: string }> {
  const pki = await testPki();
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-cli-'));
  writeFileSync(join(dir, 'server.crt'), pki.server.certPem);
  writeFileSync(join(dir, 'server.key'), pki.server.keyPem, { mode: 0o600 });
  return { dir, ca: pki.ca.certPem };
}

const LISTENING = /^Portcullis listening on (wss?:\/\/\S+)$/m;

describe('portcullis serve: the README quickstart', () => {
  it('npx portcullis serve --config examples/quickstart.yaml echoes over wss and drains on SIGTERM', async () => {
    assert.ok(
      await portIsFree(QUICKSTART_PORT),
      `port ${QUICKSTART_PORT} is in use; examples/quickstart.yaml fixes it. Stop whatever listens there (ss -ltnp | grep ${QUICKSTART_PORT}) and rerun.`,
    );
    const cli = start('npx', ['portcullis', 'serve', '--config', 'examples/quickstart.yaml'], {
      group: true,
    });
    const [, url] = await cli.waitForStderr(LISTENING, 20_000);
    assert.equal(url, `wss://127.0.0.1:${QUICKSTART_PORT}`);
    const [, caPath] = await cli.waitForStderr(/its local CA is (\S+)$/m);
    const devDir = join(ROOT, '.portcullis');
    assert.equal(caPath, join(devDir, 'ca.crt'));
    for (const key of ['ca.key', 'server.key']) {
      assert.equal(statSync(join(devDir, key)).mode & 0o777, 0o600, `${key} mode`);
    }

    const { ws, peer } = await open(`wss://localhost:${QUICKSTART_PORT}/echo`, {
      ca: readFileSync(caPath as string),
    });
    const served = new X509Certificate(readFileSync(join(devDir, 'server.crt')));
    assert.equal(peer?.getPeerCertificate().fingerprint256, served.fingerprint256);
    assert.equal(await echo(ws, 'hello quickstart'), 'hello quickstart');

    const closing = closed(ws);
    const signalledAt = Date.now();
    process.kill(gatewayPid(cli.child.pid as number), 'SIGTERM');
    assert.deepEqual(await within(closing, 5_000, 'no close after SIGTERM'), {
      code: 1001,
      reason: 'SHUTTING_DOWN',
    });
    assert.deepEqual(await cli.exit(DEFAULT_DRAIN_MS + 2_000), { code: 0, signal: null });
    assert.ok(Date.now() - signalledAt < DEFAULT_DRAIN_MS, `exit took ${Date.now() - signalledAt} ms`);
    assert.ok(await portIsFree(QUICKSTART_PORT), 'port still bound after exit');
  });
});

describe('portcullis config', () => {
  it('check: exit 0 for examples/quickstart.yaml', async () => {
    const { code, stderr } = await run(['config', 'check', 'examples/quickstart.yaml']);
    assert.equal(code, 0, stderr);
    assert.equal(stderr, '');
  });

  it('check: exit 1 for an unknown key and a bad limit, each named by its path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-cli-'));
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      [
        'listen: { host: 127.0.0.1, port: 0, prot: 8443 }',
        'tls: false',
        'routes:',
        '  - path: /echo',
        '    auth: none',
        '    echo: {}',
        '    limits: { maxMessageBytes: 0 }',
        '',
      ].join('\n'),
    );
    const { code, stdout, stderr } = await run(['config', 'check', file]);
    assert.equal(code, 1);
    assert.equal(stdout, '');
    const lines = stderr.trimEnd().split('\n');
    assert.ok(
      lines.some((l) => l.startsWith('listen.prot:')),
      stderr,
    );
    assert.ok(
      lines.some((l) => l.startsWith('routes[0].limits.maxMessageBytes:')),
      stderr,
    );
  });

  it('defaults: exit 0, and the output written to a file passes config check', async () => {
    const defaults = await run(['config', 'defaults']);
    assert.equal(defaults.code, 0, defaults.stderr);
    // The starter names certs/server.crt and certs/server.key next to the file; check reads them.
    const pki = await testPki();
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-cli-'));
    mkdirSync(join(dir, 'certs'));
    writeFileSync(join(dir, 'certs', 'server.crt'), pki.server.certPem);
    writeFileSync(join(dir, 'certs', 'server.key'), pki.server.keyPem, { mode: 0o600 });
    writeFileSync(join(dir, 'portcullis.yaml'), defaults.stdout);
    const check = await run(['config', 'check', join(dir, 'portcullis.yaml')]);
    assert.equal(check.code, 0, check.stderr);
  });
});

describe('portcullis serve: config sources and refusals', () => {
  it('--config - reads the config from stdin', async () => {
    const { dir, ca } = await tlsDir();
    const config = {
      listen: { host: '127.0.0.1', port: 0 },
      tls: { cert: join(dir, 'server.crt'), key: join(dir, 'server.key') },
      routes: [{ path: '/echo', auth: 'none', allowMissingOrigin: true, echo: {} }],
    };
    const cli = start(process.execPath, [BIN, 'serve', '--config', '-'], { stdin: JSON.stringify(config) });
    const [, url] = await cli.waitForStderr(LISTENING);
    assert.match(url as string, /^wss:\/\/127\.0\.0\.1:\d+$/);
    const { ws } = await open(`${url}/echo`, { ca });
    assert.equal(await echo(ws, 'from stdin'), 'from stdin');
    const closing = closed(ws);
    cli.child.kill('SIGTERM');
    assert.deepEqual(await within(closing, 5_000, 'no close'), { code: 1001, reason: 'SHUTTING_DOWN' });
    assert.deepEqual(await cli.exit(), { code: 0, signal: null });
  });

  it('an invalid config exits 1 with path-named errors and never listens', async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-cli-'));
    const file = join(dir, 'invalid.yaml');
    writeFileSync(
      file,
      `listen: { host: 127.0.0.1, port: ${port} }\ntls: false\nroutes:\n  - { path: /echo, auth: none, echo: {}, limits: { maxMessageBytes: -1 } }\n`,
    );
    const cli = start(process.execPath, [BIN, 'serve', '--config', file]);
    assert.deepEqual(await cli.exit(), { code: 1, signal: null });
    const lines = cli.stderr().trimEnd().split('\n');
    assert.ok(
      lines.some((l) => l.startsWith(`${file}: routes[0].limits.maxMessageBytes:`)),
      cli.stderr(),
    );
    assert.doesNotMatch(cli.stderr(), LISTENING);
    assert.doesNotMatch(cli.stdout(), /"event":"listening"/);
    assert.ok(await connectRefused(port), `something accepted on ${port}`);
  });

  it('tls: false on loopback warns on stderr and serves ws://', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-cli-'));
    const file = join(dir, 'plain.yaml');
    writeFileSync(
      file,
      'listen: { host: 127.0.0.1, port: 0 }\ntls: false\nroutes:\n  - { path: /echo, auth: none, allowMissingOrigin: true, echo: {} }\n',
    );
    const cli = start(process.execPath, [BIN, 'serve', '--config', file]);
    const [, url] = await cli.waitForStderr(LISTENING);
    assert.match(url as string, /^ws:\/\/127\.0\.0\.1:\d+$/);
    assert.match(cli.stderr(), /^WARNING: /m);
    const { ws, peer } = await open(`${url}/echo`);
    assert.equal(peer, undefined);
    assert.equal(await echo(ws, 'plain'), 'plain');
    ws.close(1000);
    await closed(ws);
    cli.child.kill('SIGTERM');
    assert.deepEqual(await cli.exit(), { code: 0, signal: null });
  });
});

describe('portcullis serve: SIGHUP', () => {
  it('reloads routes without dropping connections, and refuses an invalid config', async () => {
    const { dir, ca } = await tlsDir();
    const file = join(dir, 'portcullis.yaml');
    // cert and key are relative: resolved against the config file's directory, on start and on reload.
    const head =
      'listen: { host: 127.0.0.1, port: 0 }\ntls: { cert: server.crt, key: server.key }\nroutes:\n';
    const route = (path: string, extra = '') =>
      `  - { path: ${path}, auth: none, allowMissingOrigin: true, echo: {}${extra} }\n`;
    writeFileSync(file, head + route('/echo'));
    const cli = start(process.execPath, [BIN, 'serve', '--config', file]);
    const [, url] = await cli.waitForStderr(LISTENING);
    const { ws } = await open(`${url}/echo`, { ca });
    assert.equal(await echo(ws, 'before'), 'before');
    const missing = await attempt(`${url}/echo2`, { ca });
    assert.deepEqual(missing.ok ? 'open' : [missing.status, missing.code], [404, 'ROUTE_NOT_FOUND']);

    writeFileSync(file, head + route('/echo') + route('/echo2'));
    cli.child.kill('SIGHUP');
    let added: Attempt | undefined;
    for (const deadline = Date.now() + 3_000; Date.now() < deadline; ) {
      added = await attempt(`${url}/echo2`, { ca });
      if (added.ok) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(added?.ok, `/echo2 after SIGHUP: ${JSON.stringify(added)}`);
    assert.equal(await echo(added.ws, 'new route'), 'new route');
    assert.equal(await echo(ws, 'still open'), 'still open');

    // Drops /echo2 and breaks a limit: refused as a whole, so /echo2 keeps being served.
    writeFileSync(file, head + route('/echo', ', limits: { maxMessageBytes: 0 }'));
    cli.child.kill('SIGHUP');
    await cli.waitForStderr(/routes\[0\]\.limits\.maxMessageBytes/, 3_000);
    const kept = await attempt(`${url}/echo2`, { ca });
    assert.ok(kept.ok, `/echo2 after a refused reload: ${JSON.stringify(kept)}`);
    assert.equal(await echo(kept.ws, 'kept'), 'kept');
    assert.equal(await echo(ws, 'still open'), 'still open');
    assert.equal(cli.child.exitCode, null);

    const closing = [ws, added.ws, kept.ws].map((c) => closed(c));
    cli.child.kill('SIGTERM');
    for (const c of await within(Promise.all(closing), 5_000, 'no close')) {
      assert.deepEqual(c, { code: 1001, reason: 'SHUTTING_DOWN' });
    }
    assert.deepEqual(await cli.exit(), { code: 0, signal: null });
  });
});
