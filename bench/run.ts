// `npm run bench`: the benchmark suite. Starts each server as its own process on one core and the
// load generator on the other, interleaves the servers in every repeat (the order alternates), and
// writes bench/results/<timestamp>.{json,md,svg}; a full run also redraws docs/performance.svg.
// Bounded: it stops by itself after --max-minutes, and it only ever signals the processes it
// started (SIGTERM, then SIGKILL), in a finally block.
//
//   npm run bench                       full: 3 repeats, 5,000 idle conns, 2,000 subscribers
//   npm run bench -- --quick            1 repeat, short windows, smaller counts (< 2 min)
//   npm run bench -- --profile          Portcullis alone under --cpu-prof (bench/results/prof/);
//                                       with --servers ws,portcullis: each of those
//   npm run bench -- --report bench/results/<timestamp>.json   re-renders that run's .md and .svg
//   options: --repeats N --scenarios echo-small,handshake --servers portcullis,socketio
//            --max-minutes M --no-docs
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, release } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  nginxBinary,
  nginxVersion,
  type RunningServer,
  SERVER_IDS,
  SERVERS,
  type ServerId,
  type ServerSpec,
  type StartContext,
  startServer,
} from './anchors.js';
import { Generator } from './generator.js';
import { hasTaskset, ProcessGroup, pinSelf } from './proc.js';
import { profileServers } from './profile.js';
import { type Meta, markdown, type Results, type RunRecord, summarise, svg } from './report.js';
import { FULL, measure, QUICK, SCENARIO_IDS, SCENARIOS, type ScenarioId } from './scenarios.js';
import { type Materials, makeMaterials } from './setup.js';

const root = dirname(dirname(fileURLToPath(import.meta.url)));

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    repeats: { type: 'string' },
    scenarios: { type: 'string' },
    servers: { type: 'string' },
    'max-minutes': { type: 'string' },
    'no-docs': { type: 'boolean', default: false },
    report: { type: 'string' },
  },
});

function list<T extends string>(value: string | undefined, all: readonly T[], what: string): T[] {
  if (value === undefined) return [...all];
  const picked = value.split(',').map((v) => v.trim());
  for (const v of picked)
    if (!all.includes(v as T)) throw new Error(`unknown ${what} ${v}: one of ${all.join(', ')}`);
  return all.filter((v) => picked.includes(v));
}

const quick = args.quick;
const sizes = quick ? QUICK : FULL;
const repeats = Number(args.repeats ?? (quick ? 1 : 3));
const scenarioIds = list<ScenarioId>(
  args.scenarios,
  args.profile ? ['echo-small', 'echo-large', 'handshake', 'fanout'] : SCENARIO_IDS,
  'scenario',
);
// Bare ws is the reference: every ratio is taken against it, so it is always measured.
const serverIds = list<ServerId>(args.servers, SERVER_IDS, 'server');
if (!serverIds.includes('ws') && !args.profile) serverIds.unshift('ws');
const filtered = args.scenarios !== undefined || args.servers !== undefined;
const maxMinutes = Number(args['max-minutes'] ?? (quick ? 4 : 20));
const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;

const procs = new ProcessGroup();
let materials: Materials | undefined;
let aborting = false;

async function abort(reason: string): Promise<void> {
  if (aborting) return;
  aborting = true;
  console.error(`\nbench: stopping (${reason}); ending the processes it started`);
  await procs.stopAll(1_000);
  materials?.remove();
  process.exit(2);
}

function cpuModel(): string {
  try {
    return /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function gitState(): Meta['git'] {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: root,
      encoding: 'utf8',
    }).trim();
    const dirtySrc = execFileSync('git', ['status', '--porcelain', '--', 'src'], {
      cwd: root,
      encoding: 'utf8',
    })
      .split('\n')
      .filter(Boolean)
      .map((line) => line.slice(3));
    return { commit, dirtySrc };
  } catch {
    return undefined;
  }
}

function versionOf(pkg: string): string {
  try {
    return (
      JSON.parse(readFileSync(join(root, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }
    ).version;
  } catch {
    return 'not installed';
  }
}

function describe(m: RunRecord['measurement'], unit: string, rateUnit: string): string {
  if (!m) return '';
  const lat = m.latencyMs
    ? `, p50 ${m.latencyMs.p50.toFixed(2)} ms, p99 ${m.latencyMs.p99.toFixed(2)} ms`
    : '';
  const cpu = Number.isFinite(m.serverCpuPct) ? `, server ${m.serverCpuPct.toFixed(0)}%` : '';
  const err = m.errors > 0 ? `, ${m.errors} errors${m.firstError ? ` (${m.firstError})` : ''}` : '';
  const others = Number.isFinite(m.othersCpuPct) ? `, others ${m.othersCpuPct.toFixed(0)}%` : '';
  return `${m.value.toFixed(2)} ${unit}, ${m.throughput.toFixed(0)} ${rateUnit}${lat}${cpu}, generator ${m.clientCpuPct.toFixed(0)}%${others}${err}`;
}

async function startAll(
  specs: readonly ServerSpec[],
  ctx: StartContext,
  records: RunRecord[],
  id: ScenarioId,
) {
  const running = new Map<ServerId, RunningServer>();
  for (const spec of specs) {
    try {
      running.set(spec.id, await startServer(spec, ctx));
    } catch (err) {
      const error = `did not start: ${(err as Error).message}`;
      console.log(`  ${spec.id}: ${error}`);
      for (let r = 1; r <= repeats; r++) records.push({ scenario: id, server: spec.id, repeat: r, error });
    }
  }
  return running;
}

async function one(
  id: ScenarioId,
  server: RunningServer,
  gen: Generator,
  repeat: number,
  records: RunRecord[],
  auth: string,
): Promise<void> {
  const s = SCENARIOS[id];
  try {
    const measurement = await measure(id, server, gen, sizes, auth);
    records.push({ scenario: id, server: server.spec.id, repeat, measurement });
    console.log(`  r${repeat} ${server.spec.id.padEnd(10)} ${describe(measurement, s.unit, s.rateUnit)}`);
  } catch (err) {
    const error = (err as Error).message;
    records.push({ scenario: id, server: server.spec.id, repeat, error });
    console.log(`  r${repeat} ${server.spec.id.padEnd(10)} failed: ${error}`);
    if (server.spec.id === 'portcullis' || server.spec.id === 'proxy') printGatewayErrors();
  }
}

// A failed Portcullis measurement: show the gateway's own error lines from its audit log.
function printGatewayErrors(): void {
  try {
    const lines = readFileSync(materials?.auditFile ?? '', 'utf8')
      .split('\n')
      .filter((l) => l.includes('"level":"error"') || l.includes('"event":"internal"'));
    for (const line of lines.slice(-3)) console.log(`    gateway log: ${line.slice(0, 400)}`);
  } catch {
    // no log to show
  }
}

async function compare(ctx: StartContext, gen: Generator, all: readonly ServerSpec[]): Promise<RunRecord[]> {
  const records: RunRecord[] = [];
  for (const id of scenarioIds) {
    const scenario = SCENARIOS[id];
    // The proxy route relays /echo only: it has no fan-out of its own to measure.
    const specs = id === 'fanout' ? all.filter((s) => s.fanout) : all;
    console.log(`\n== ${scenario.title}`);
    // A B C, then C B A: the order alternates so slow drift of a shared machine evens out.
    const order = (r: number) => (r % 2 === 1 ? specs : [...specs].reverse());
    if (scenario.freshServer) {
      for (let r = 1; r <= repeats; r++) {
        for (const spec of order(r)) {
          const running = await startAll([spec], ctx, [], id);
          const server = running.get(spec.id);
          if (!server) {
            records.push({ scenario: id, server: spec.id, repeat: r, error: 'did not start' });
            continue;
          }
          try {
            await one(id, server, gen, r, records, ctx.materials.authorization);
          } finally {
            await server.stop();
          }
        }
      }
      continue;
    }
    const running = await startAll(specs, ctx, records, id);
    try {
      for (let r = 1; r <= repeats; r++) {
        for (const spec of order(r)) {
          const server = running.get(spec.id);
          if (server) await one(id, server, gen, r, records, ctx.materials.authorization);
        }
      }
    } finally {
      await Promise.all([...running.values()].map((s) => s.stop()));
    }
  }
  return records;
}

/** Re-renders a results file's Markdown and SVG with the current report code. */
function rerender(file: string): void {
  const results = JSON.parse(readFileSync(file, 'utf8')) as Results;
  const summary = summarise(results.records);
  const md = markdown(results, summary);
  const base = file.replace(/\.json$/, '');
  writeFileSync(`${base}.md`, `${md}\n`);
  writeFileSync(`${base}.svg`, svg(summary, caption(results.meta)));
  console.log(md);
  console.log(`bench: wrote ${relative(root, base)}.{md,svg}`);
}

function caption(meta: Meta): string {
  const m = meta.machine;
  return `${m.nproc} cores ${m.cpuModel}, Node ${m.node}, ${meta.repeats} repeat(s), ${meta.startedAt.slice(0, 10)}`;
}

async function main(): Promise<void> {
  if (args.report) return rerender(args.report);
  const startedAt = new Date();
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const resultsDir = join(root, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  const notes: string[] = [];
  const pinning = hasTaskset() && availableParallelism() >= 2 ? { server: 0, generator: 1 } : null;
  if (pinning) pinSelf(pinning.generator);
  else notes.push('taskset or a second core is missing: servers and generator are not pinned');
  const nginx = nginxBinary();
  const specs = SERVERS.filter((s) => serverIds.includes(s.id) && (s.id !== 'nginx' || nginx));
  if (serverIds.includes('nginx') && !nginx) {
    const note = 'nginx is not installed: skipped (apt-get install -y nginx to include it)';
    console.log(`bench: ${note}`);
    notes.push(note);
  }
  // The gateway servers load the compiled build, as `npx portcullis serve` does: tsx's transform
  // wraps every function it defines in a naming helper, which shows in per-connection paths.
  console.log('bench: building dist/ (tsc -p tsconfig.build.json)');
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], {
    cwd: root,
    stdio: 'inherit',
  });
  const loadAtStart = loadavg();
  const git = gitState();
  if (!args.profile) {
    console.log(
      `bench: ${quick ? 'quick' : 'full'} run, ${repeats} repeat(s), scenarios ${scenarioIds.join(', ')}; servers ${specs
        .map((s) => s.id)
        .join(', ')}; bound ${maxMinutes} min`,
    );
  }
  materials = await makeMaterials();
  const gen = Generator.start(procs, pinning?.generator, root);
  const ctx: StartContext = { procs, core: pinning?.server, materials, root };

  if (args.profile) {
    const dir = join(resultsDir, 'prof', stamp);
    mkdirSync(dir, { recursive: true });
    const profSizes = { ...sizes, durationMs: quick ? 3_000 : 8_000 };
    const profiled: ServerId[] = args.servers === undefined ? ['portcullis'] : serverIds;
    console.log(`bench: profiling ${profiled.join(', ')} into ${relative(root, dir)}`);
    const text = await profileServers(ctx, gen, profSizes, profiled, scenarioIds, dir);
    console.log(`\n${text}`);
    console.log(`bench: wrote ${relative(root, join(dir, 'summary.md'))}`);
    return;
  }

  const records = await compare(ctx, gen, specs);
  const meta: Meta = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    command,
    quick,
    repeats,
    machine: {
      nproc: cpus().length,
      cpuModel: cpuModel(),
      node: process.version,
      kernel: release(),
      loadAverageAtStart: loadAtStart,
      pinning,
    },
    ...(git ? { git } : {}),
    versions: {
      ws: versionOf('ws'),
      bufferutil: versionOf('bufferutil'),
      'utf-8-validate': versionOf('utf-8-validate'),
      'socket.io': versionOf('socket.io'),
      fastify: versionOf('fastify'),
      '@fastify/websocket': versionOf('@fastify/websocket'),
      ...(nginx ? { nginx: (nginxVersion(nginx) ?? '').replace(/^nginx version: nginx\//, '') } : {}),
    },
    notes: [
      ...notes,
      'The generator does not verify server certificates (its CPU goes to load); it offers no TLS session, so every handshake is full.',
      'Portcullis: jwt (ES256 key file) on every route, Origin allowlist, rate and size limits on (ceilings above the load), audit log to a file.',
    ],
  };
  const summary = summarise(records);
  const md = markdown({ meta, sizes, records }, summary);
  const base = join(resultsDir, stamp);
  writeFileSync(`${base}.json`, `${JSON.stringify({ meta, sizes, records, summary }, null, 2)}\n`);
  writeFileSync(`${base}.md`, `${md}\n`);
  const chart = svg(summary, caption(meta));
  writeFileSync(`${base}.svg`, chart);
  console.log(`\n${md}`);
  console.log(`bench: wrote ${relative(root, base)}.{json,md,svg}`);
  if (!quick && !filtered && !args['no-docs']) {
    writeFileSync(join(root, 'docs', 'performance.svg'), chart);
    console.log('bench: wrote docs/performance.svg');
  }
}

process.on('SIGINT', () => void abort('interrupted'));
process.on('SIGTERM', () => void abort('terminated'));
const bound = setTimeout(() => void abort(`--max-minutes ${maxMinutes} reached`), maxMinutes * 60_000);
try {
  await main();
} catch (err) {
  console.error(`bench: ${(err as Error).stack ?? err}`);
  process.exitCode = 1;
} finally {
  clearTimeout(bound);
  await procs.stopAll();
  materials?.remove();
}
