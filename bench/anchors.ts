// The servers compared, each started as its own process(es) on the server core: how to start it,
// how the generator reaches it, and which of its processes count.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import type { Dialect, FanoutKind, Target } from './frames.js';
import { type ProcessGroup, sleep, waitReady } from './proc.js';
import type { Materials } from './setup.js';

/** The servers, by id. `ws` is the reference every ratio is taken against. */
export const SERVER_IDS = ['ws', 'portcullis', 'socketio', 'fastify', 'raw', 'nginx', 'proxy'] as const;
export type ServerId = (typeof SERVER_IDS)[number];

/** How one server is run and reached. */
export interface ServerSpec {
  readonly id: ServerId;
  readonly label: string;
  readonly dialect: Dialect;
  readonly echoPath: string;
  /** Null where the server has no fan-out of its own (the proxy route relays /echo only). */
  readonly fanout: { readonly path: string; readonly kind: FanoutKind } | null;
}

/** Every server, in table order. */
export const SERVERS: readonly ServerSpec[] = [
  {
    id: 'ws',
    label: 'bare ws (TLS)',
    dialect: 'ws',
    echoPath: '/echo',
    fanout: { path: '/live', kind: 'broadcast' },
  },
  {
    id: 'portcullis',
    label: 'Portcullis (full policy)',
    dialect: 'ws',
    echoPath: '/echo',
    fanout: { path: '/live', kind: 'broker' },
  },
  {
    id: 'socketio',
    label: 'socket.io (TLS, websocket only)',
    dialect: 'socketio',
    echoPath: '/socket.io/',
    fanout: { path: '/socket.io/', kind: 'broadcast' },
  },
  {
    id: 'fastify',
    label: '@fastify/websocket (TLS)',
    dialect: 'ws',
    echoPath: '/echo',
    fanout: { path: '/live', kind: 'broadcast' },
  },
  {
    id: 'raw',
    label: 'raw Node TLS echo (ceiling)',
    dialect: 'raw',
    echoPath: '',
    fanout: { path: '', kind: 'broadcast' },
  },
  {
    id: 'nginx',
    label: 'nginx TLS -> plain ws',
    dialect: 'ws',
    echoPath: '/echo',
    fanout: { path: '/live', kind: 'broadcast' },
  },
  {
    id: 'proxy',
    label: 'Portcullis upstream route -> plain ws',
    dialect: 'ws',
    echoPath: '/echo',
    fanout: null,
  },
];

/** A started server. */
export interface RunningServer {
  readonly spec: ServerSpec;
  /** Root pids whose process trees are measured. */
  readonly roots: readonly number[];
  /** Node processes that run a full GC on SIGUSR2 before a memory reading. */
  readonly gcPids: readonly number[];
  readonly port: number;
  readonly fanoutPort: number;
  stop(): Promise<void>;
}

/** What starting a server needs. */
export interface StartContext {
  readonly procs: ProcessGroup;
  readonly core: number | undefined;
  readonly materials: Materials;
  readonly root: string;
  /** When set, Node servers run with --cpu-prof into this directory. */
  readonly profile?: { dir: string };
}

/** The nginx binary, or undefined when nginx is not installed. */
export function nginxBinary(): string | undefined {
  for (const candidate of ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/bin/nginx']) {
    try {
      execFileSync(candidate, ['-v'], { stdio: 'ignore' });
      return candidate;
    } catch {
      // try the next
    }
  }
  return undefined;
}

/** `nginx version: nginx/1.22.1`, or undefined. */
export function nginxVersion(bin: string): string | undefined {
  // nginx -v prints to stderr.
  const out = spawnSync(bin, ['-v'], { encoding: 'utf8' });
  return `${out.stdout ?? ''}${out.stderr ?? ''}`.trim() || undefined;
}

const SCRIPTS: Record<Exclude<ServerId, 'nginx' | 'proxy'>, string> = {
  ws: 'bench/servers/ws.ts',
  portcullis: 'bench/servers/portcullis.ts',
  socketio: 'bench/servers/socketio.ts',
  fastify: 'bench/servers/fastify.ts',
  raw: 'bench/servers/raw-tls.ts',
};

async function startNode(
  ctx: StartContext,
  name: string,
  script: string,
  extra: { plain?: boolean; upstream?: string } = {},
): Promise<{ pid: number; port: number; fanoutPort: number; stop: () => Promise<void> }> {
  const m = ctx.materials;
  const env = {
    ...process.env,
    BENCH_SERVER: JSON.stringify({
      cert: m.cert,
      key: m.key,
      jwtKeyFile: m.jwtKeyFile,
      auditFile: m.auditFile,
      ...extra,
    }),
  };
  // No --cpu-prof-name: tsx's loader thread writes a profile too, and one fixed name would let
  // it overwrite the main thread's. Node's own names carry the thread id (0 for the main thread).
  const prof = ctx.profile ? ['--cpu-prof', `--cpu-prof-dir=${ctx.profile.dir}`] : [];
  const child = ctx.procs.start(
    ctx.core,
    process.execPath,
    ['--expose-gc', ...prof, ...gatewayFlags(name), '--import', 'tsx', script],
    {
      env,
      cwd: ctx.root,
    },
  );
  try {
    const ports = await waitReady<{ port: number; fanoutPort?: number }>(child, name);
    return {
      pid: child.pid as number,
      port: ports.port,
      fanoutPort: ports.fanoutPort ?? ports.port,
      stop: () => ctx.procs.stop(child),
    };
  } catch (err) {
    await ctx.procs.stop(child);
    throw err;
  }
}

// BENCH_GATEWAY_NODE_FLAGS: extra node flags for the Portcullis servers only (for example
// `--trace-gc`, with BENCH_SERVER_STDOUT to keep what they print), for diagnosis.
function gatewayFlags(name: string): string[] {
  const flags = process.env.BENCH_GATEWAY_NODE_FLAGS;
  if (!flags || (name !== 'portcullis' && name !== 'proxy')) return [];
  return flags.split(' ').filter((f) => f !== '');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once a TLS handshake to the port succeeds (nginx prints no READY line). */
async function waitTls(port: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = tls.connect({
        host: '127.0.0.1',
        port,
        rejectUnauthorized: false,
        servername: 'localhost',
      });
      socket.once('secureConnect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`nginx: no TLS on port ${port} after ${timeoutMs} ms`);
}

function nginxConfig(dir: string, port: number, upstream: number, m: Materials): string {
  const tmp = join(dir, 'nginx-tmp');
  mkdirSync(tmp, { recursive: true });
  // One worker on the server core, TLS with the same ECDSA certificate, HTTP/1.1 upgrade to the
  // plain ws upstream, and an access log (nginx's default) in the run's directory.
  return `worker_processes 1;
worker_rlimit_nofile 40000;
error_log ${join(dir, 'nginx-error.log')} warn;
pid ${join(dir, 'nginx.pid')};
events { worker_connections 30000; }
http {
  access_log ${join(dir, 'nginx-access.log')};
  client_body_temp_path ${tmp}/body;
  proxy_temp_path ${tmp}/proxy;
  fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi;
  scgi_temp_path ${tmp}/scgi;
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${m.cert};
    ssl_certificate_key ${m.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://127.0.0.1:${upstream};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_read_timeout 600s;
      proxy_send_timeout 600s;
    }
  }
}
`;
}

/** Starts one server and waits until it accepts connections. */
export async function startServer(spec: ServerSpec, ctx: StartContext): Promise<RunningServer> {
  if (spec.id === 'nginx') return startNginx(spec, ctx);
  if (spec.id === 'proxy') return startProxy(spec, ctx);
  const node = await startNode(ctx, spec.id, SCRIPTS[spec.id]);
  return { spec, roots: [node.pid], gcPids: [node.pid], ...node };
}

/** Portcullis with an upstream route in front of the plain ws app (the one nginx fronts too). */
async function startProxy(spec: ServerSpec, ctx: StartContext): Promise<RunningServer> {
  const upstream = await startNode(ctx, 'ws upstream', SCRIPTS.ws, { plain: true });
  try {
    const gateway = await startNode(ctx, spec.id, SCRIPTS.portcullis, {
      upstream: `ws://127.0.0.1:${upstream.port}`,
    });
    return {
      spec,
      roots: [gateway.pid, upstream.pid],
      gcPids: [gateway.pid, upstream.pid],
      port: gateway.port,
      fanoutPort: gateway.port,
      stop: async () => {
        await gateway.stop();
        await upstream.stop();
      },
    };
  } catch (err) {
    await upstream.stop();
    throw err;
  }
}

async function startNginx(spec: ServerSpec, ctx: StartContext): Promise<RunningServer> {
  const bin = nginxBinary();
  if (!bin) throw new Error('nginx is not installed');
  const upstream = await startNode(ctx, 'ws upstream', SCRIPTS.ws, { plain: true });
  try {
    const port = await freePort();
    const dir = join(ctx.materials.dir, `nginx-${port}`);
    mkdirSync(dir, { recursive: true });
    const conf = join(dir, 'nginx.conf');
    writeFileSync(conf, nginxConfig(dir, port, upstream.port, ctx.materials));
    const master = ctx.procs.start(ctx.core, bin, ['-c', conf, '-p', dir, '-g', 'daemon off;']);
    master.stdout?.resume();
    try {
      await waitTls(port, 15_000);
    } catch (err) {
      await ctx.procs.stop(master);
      throw err;
    }
    return {
      spec,
      roots: [master.pid as number, upstream.pid],
      gcPids: [upstream.pid],
      port,
      fanoutPort: port,
      stop: async () => {
        await ctx.procs.stop(master);
        await upstream.stop();
      },
    };
  } catch (err) {
    await upstream.stop();
    throw err;
  }
}

/** The generator's target for a server: its echo route, or its fan-out route. */
export function targetOf(server: RunningServer, authorization: string, use: 'echo' | 'fanout'): Target {
  const spec = server.spec;
  const headers: Record<string, string> = { Origin: 'https://app.test', Authorization: authorization };
  if (use === 'fanout' && spec.dialect === 'ws') headers['Sec-WebSocket-Protocol'] = 'portcullis.v1';
  if (use === 'fanout' && !spec.fanout) throw new Error(`${spec.id} has no fan-out`);
  return {
    host: '127.0.0.1',
    port: use === 'fanout' ? server.fanoutPort : server.port,
    dialect: spec.dialect,
    path: use === 'fanout' ? (spec.fanout?.path ?? '') : spec.echoPath,
    headers,
  };
}
