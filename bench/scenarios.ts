// The scenarios, their sizes (full and --quick) and how one measurement of one server is taken.
import { type RunningServer, targetOf } from './anchors.js';
import type { Generator } from './generator.js';
import type { LoadResult } from './load.js';
import { quiesce, rssBytes, sleep, treePids } from './proc.js';

/** Scenario ids, in report order. */
export const SCENARIO_IDS = ['echo-small', 'echo-large', 'handshake', 'fanout', 'memory', 'latency'] as const;
export type ScenarioId = (typeof SCENARIO_IDS)[number];

/** What a scenario measures and the target for Portcullis (ratio to bare ws, lower is better). */
export interface Scenario {
  readonly id: ScenarioId;
  readonly title: string;
  /** Unit of `value`. */
  readonly unit: string;
  /** Unit of `throughput`. */
  readonly rateUnit: string;
  readonly target?: number;
  /** Memory readings need a process that has served nothing else. */
  readonly freshServer: boolean;
}

/** Every scenario. */
export const SCENARIOS: Readonly<Record<ScenarioId, Scenario>> = {
  'echo-small': {
    id: 'echo-small',
    title: 'echo, 64 B text',
    unit: 'µs CPU/msg',
    rateUnit: 'msg/s',
    target: 1.0,
    freshServer: false,
  },
  'echo-large': {
    id: 'echo-large',
    title: 'echo, 64 KiB binary',
    unit: 'µs CPU/msg',
    rateUnit: 'msg/s',
    target: 1.0,
    freshServer: false,
  },
  handshake: {
    id: 'handshake',
    title: 'new TLS handshake + upgrade',
    unit: 'µs CPU/conn',
    rateUnit: 'conn/s',
    target: 1.2,
    freshServer: false,
  },
  fanout: {
    id: 'fanout',
    title: 'fan-out, per delivery',
    unit: 'µs CPU/delivery',
    rateUnit: 'deliveries/s',
    target: 0.5,
    freshServer: false,
  },
  memory: {
    id: 'memory',
    title: 'idle memory per connection',
    unit: 'KiB RSS/conn',
    rateUnit: 'conn/s opened',
    target: 1.15,
    freshServer: true,
  },
  latency: {
    id: 'latency',
    title: 'fixed offered load, 64 B (latency run)',
    unit: 'µs CPU/msg',
    rateUnit: 'msg/s',
    freshServer: false,
  },
};

/** Sizes and durations of a run. */
export interface Sizes {
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly echoConns: number;
  readonly echoInflight: number;
  readonly largeConns: number;
  readonly largeInflight: number;
  readonly handshakeConcurrency: number;
  readonly memoryConns: number;
  readonly fanoutSubscribers: number;
  readonly fanoutInflight: number;
  readonly latencyConns: number;
  readonly latencyRate: number;
}

/** `npm run bench`. */
export const FULL: Sizes = {
  warmupMs: 500,
  durationMs: 2_000,
  echoConns: 64,
  echoInflight: 16,
  largeConns: 32,
  largeInflight: 4,
  handshakeConcurrency: 16,
  memoryConns: 5_000,
  fanoutSubscribers: 2_000,
  fanoutInflight: 4,
  latencyConns: 64,
  latencyRate: 10_000,
};

/** `npm run bench -- --quick`: one repeat, shorter windows, smaller counts. */
export const QUICK: Sizes = {
  ...FULL,
  warmupMs: 200,
  durationMs: 800,
  memoryConns: 800,
  fanoutSubscribers: 400,
};

/** One measurement of one server. */
export interface Measurement {
  /** In the scenario's unit; lower is better. */
  readonly value: number;
  readonly throughput: number;
  /** Server and generator CPU as a share of one core over the window, in percent. */
  readonly serverCpuPct: number;
  readonly clientCpuPct: number;
  /** CPU used by everything else on the machine over the window, as a share of one core. */
  readonly othersCpuPct: number;
  readonly ops: number;
  readonly errors: number;
  readonly firstError?: string;
  readonly tls?: string;
  readonly latencyMs?: LoadResult['latencyMs'];
  /** The measured window (epoch ms). */
  readonly window?: [number, number];
}

function fromWindow(r: LoadResult): Measurement {
  return {
    value: r.ops > 0 ? (r.serverCpuMs * 1000) / r.ops : Number.NaN,
    throughput: (r.ops * 1000) / r.ms,
    serverCpuPct: (100 * r.serverCpuMs) / r.ms,
    clientCpuPct: (100 * r.clientCpuMs) / r.ms,
    othersCpuPct: (100 * r.othersCpuMs) / r.ms,
    ops: r.ops,
    errors: r.errors,
    ...(r.firstError ? { firstError: r.firstError } : {}),
    ...(r.tls ? { tls: r.tls } : {}),
    ...(r.latencyMs ? { latencyMs: r.latencyMs } : {}),
    ...(r.window ? { window: r.window } : {}),
  };
}

// Generous per-command deadlines: a stuck server fails its measurement, never the whole run's bound.
const COMMAND_SLACK_MS = 60_000;

function gc(server: RunningServer): void {
  for (const pid of server.gcPids) {
    try {
      process.kill(pid, 'SIGUSR2');
    } catch {
      // gone
    }
  }
}

async function memory(
  server: RunningServer,
  gen: Generator,
  sizes: Sizes,
  authorization: string,
): Promise<Measurement> {
  const target = targetOf(server, authorization, 'echo');
  // Warm up first (code paths compiled, key material imported, pools allocated), then read.
  await gen.run({ kind: 'open', target, conns: 100, concurrency: 16, timeoutMs: 30_000 }, COMMAND_SLACK_MS);
  await gen.run({ kind: 'closeAll' }, COMMAND_SLACK_MS);
  const pids = treePids(server.roots);
  await quiesce(pids);
  gc(server);
  await sleep(500);
  const before = rssBytes(pids);
  const opened = await gen.run(
    { kind: 'open', target, conns: sizes.memoryConns, concurrency: 32, timeoutMs: 180_000 },
    240_000,
  );
  await sleep(500);
  await quiesce(pids);
  gc(server);
  await sleep(500);
  const after = rssBytes(treePids(server.roots));
  await gen.run({ kind: 'closeAll' }, COMMAND_SLACK_MS);
  const n = opened.opened ?? 0;
  return {
    value: n > 0 ? (after - before) / n / 1024 : Number.NaN,
    throughput: (n * 1000) / opened.ms,
    serverCpuPct: Number.NaN,
    clientCpuPct: (100 * opened.clientCpuMs) / opened.ms,
    othersCpuPct: Number.NaN,
    ops: n,
    errors: opened.errors,
    ...(opened.firstError ? { firstError: opened.firstError } : {}),
  };
}

/** Takes one measurement of `scenario` against a running server. */
export async function measure(
  id: ScenarioId,
  server: RunningServer,
  gen: Generator,
  sizes: Sizes,
  authorization: string,
): Promise<Measurement> {
  const window = { warmupMs: sizes.warmupMs, durationMs: sizes.durationMs, pids: server.roots };
  const limit = sizes.warmupMs + sizes.durationMs + COMMAND_SLACK_MS;
  const echoTarget = targetOf(server, authorization, 'echo');
  await quiesce(treePids(server.roots));
  switch (id) {
    case 'echo-small':
      return fromWindow(
        await gen.run(
          {
            kind: 'echo',
            target: echoTarget,
            conns: sizes.echoConns,
            inflight: sizes.echoInflight,
            size: 64,
            binary: false,
            ...window,
          },
          limit,
        ),
      );
    case 'echo-large':
      return fromWindow(
        await gen.run(
          {
            kind: 'echo',
            target: echoTarget,
            conns: sizes.largeConns,
            inflight: sizes.largeInflight,
            size: 65_536,
            binary: true,
            ...window,
          },
          limit,
        ),
      );
    case 'handshake':
      return fromWindow(
        await gen.run(
          { kind: 'handshake', target: echoTarget, concurrency: sizes.handshakeConcurrency, ...window },
          limit,
        ),
      );
    case 'fanout':
      return fromWindow(
        await gen.run(
          {
            kind: 'fanout',
            target: targetOf(server, authorization, 'fanout'),
            fanout: server.spec.fanout?.kind ?? 'broadcast',
            subscribers: sizes.fanoutSubscribers,
            inflight: sizes.fanoutInflight,
            size: 64,
            ...window,
          },
          limit + 60_000,
        ),
      );
    case 'latency':
      return fromWindow(
        await gen.run(
          {
            kind: 'latency',
            target: echoTarget,
            conns: sizes.latencyConns,
            rate: sizes.latencyRate,
            size: 64,
            ...window,
          },
          limit,
        ),
      );
    case 'memory':
      return memory(server, gen, sizes, authorization);
    default:
      return id satisfies never;
  }
}
