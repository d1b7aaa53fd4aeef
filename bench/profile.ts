// `npm run bench -- --profile`: runs Portcullis alone (or the servers named with --servers) under
// `node --cpu-prof` on the echo, handshake and fan-out paths, one fresh process per scenario, and
// lists the functions with the most self time in the measured window, overall and in src/.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { SERVERS, type ServerId, type ServerSpec, type StartContext, startServer } from './anchors.js';
import { type FlameProfile, renderFlameGraph } from './flamegraph.js';
import type { Generator } from './generator.js';
import { measure, type ScenarioId, type Sizes } from './scenarios.js';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface CpuProfile {
  nodes: { id: number; callFrame: CallFrame }[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time of one function. */
export interface HotSpot {
  readonly name: string;
  readonly where: string;
  readonly ms: number;
  /** Share of the busy (non-idle) samples, in percent. */
  readonly pct: number;
}

/** A profile's busy time, where it went by area, and its top functions. */
export interface ProfileSummary {
  readonly busyMs: number;
  readonly areas: readonly { area: string; ms: number; pct: number }[];
  readonly top: readonly HotSpot[];
  readonly topSrc: readonly HotSpot[];
}

const sources = new Map<string, string[]>();

// Frames are reported at the declaration in src/ (found by name), not at the line of the build.
function declarationLine(file: string, name: string): number | undefined {
  let lines = sources.get(file);
  if (!lines) {
    try {
      lines = readFileSync(file, 'utf8').split('\n');
    } catch {
      lines = [];
    }
    sources.set(file, lines);
  }
  if (!/^[A-Za-z_$][\w$]*$/.test(name)) return undefined;
  const decl = new RegExp(
    `^\\s*(?:export\\s+)?(?:(?:async|static|private|protected|public|readonly|get|set|function)\\s+)*\\*?${name}\\s*(?:<[^(]*>)?\\(|^\\s*(?:export\\s+)?(?:class|const|let)\\s+${name}\\b`,
  );
  // An implementation (a line that opens a body) wins over an interface member of the same name.
  let first = -1;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    if (!decl.test(line)) continue;
    if (line.trimEnd().endsWith('{')) return i + 1;
    if (first === -1) first = i;
  }
  return first === -1 ? undefined : first + 1;
}

function where(frame: CallFrame, root: string): string {
  const url = frame.url;
  if (!url) return '';
  if (!url.startsWith('file://')) return `${url}:${frame.lineNumber + 1}`;
  let file = new URL(url).pathname;
  let path = relative(root, file);
  // The gateway runs the build: name the source file it came from (dist/x/y.js is src/x/y.ts).
  if (path.startsWith('dist/') && path.endsWith('.js')) {
    path = `src/${path.slice(5, -3)}.ts`;
    file = join(root, path);
  }
  if (!path.startsWith('src/')) return `${path}:${frame.lineNumber + 1}`;
  const line = declarationLine(file, frame.functionName);
  return line === undefined ? path : `${path}:${line}`;
}

function areaOf(frame: CallFrame): string {
  const url = frame.url;
  if (!url) return frame.functionName.startsWith('(') ? frame.functionName : '(native)';
  if (url.includes('/src/') || (url.includes('/dist/') && !url.includes('/node_modules/'))) return 'src/';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return `node_modules/${pkg[1]}`;
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/');
  return 'other';
}

/**
 * Reads a .cpuprofile and ranks functions by self time. With `slice`, only samples taken between
 * fromMs and toMs after the profile started count (the measured window, not start-up).
 */
export function summariseProfile(
  file: string,
  root: string,
  top = 15,
  slice?: { fromMs: number; toMs: number },
): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const self = new Map<number, number>();
  let atMs = 0;
  profile.samples.forEach((id, i) => {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    atMs += ms;
    if (slice && (atMs < slice.fromMs || atMs > slice.toMs)) return;
    self.set(id, (self.get(id) ?? 0) + ms);
  });
  const byFunction = new Map<string, { name: string; where: string; ms: number }>();
  const byArea = new Map<string, number>();
  let busy = 0;
  for (const [id, ms] of self) {
    const frame = frames.get(id);
    if (!frame || frame.functionName === '(idle)') continue;
    busy += ms;
    const area = areaOf(frame);
    byArea.set(area, (byArea.get(area) ?? 0) + ms);
    const key = `${frame.functionName}|${frame.url}|${frame.lineNumber}`;
    const entry = byFunction.get(key) ?? {
      name: frame.functionName || '(anonymous)',
      where: where(frame, root),
      ms: 0,
    };
    entry.ms += ms;
    byFunction.set(key, entry);
  }
  const ranked = [...byFunction.values()]
    .sort((a, b) => b.ms - a.ms)
    .map((e) => ({ ...e, pct: (100 * e.ms) / busy }));
  return {
    busyMs: busy,
    areas: [...byArea.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([area, ms]) => ({ area, ms, pct: (100 * ms) / busy })),
    top: ranked.slice(0, top),
    topSrc: ranked.filter((e) => e.where.startsWith('src/')).slice(0, top),
  };
}

function table(spots: readonly HotSpot[]): string {
  const rows = spots.map((s) => `| ${s.pct.toFixed(1)}% | ${s.ms.toFixed(0)} | \`${s.name}\` | ${s.where} |`);
  return ['| self % of busy | self ms | function | where |', '|---|---|---|---|', ...rows].join('\n');
}

/** Markdown for one scenario's profile. */
export function profileMarkdown(title: string, file: string, p: ProfileSummary, svg?: string): string {
  const areas = p.areas
    .slice(0, 10)
    .map((a) => `${a.area} ${a.pct.toFixed(1)}%`)
    .join(', ');
  return [
    `### ${title}`,
    '',
    `Profile: \`${file}\`; busy ${p.busyMs.toFixed(0)} ms. By area: ${areas}.`,
    ...(svg ? [`Flame graph: \`${svg}\``] : []),
    '',
    'Top self time, src/ only:',
    '',
    table(p.topSrc),
    '',
    'Top self time, everything:',
    '',
    table(p.top),
    '',
  ].join('\n');
}

/** Profiles each Node server on each scenario; returns the Markdown written next to the profiles. */
export async function profileServers(
  ctx: Omit<StartContext, 'profile'>,
  gen: Generator,
  sizes: Sizes,
  servers: readonly ServerId[],
  scenarios: readonly ScenarioId[],
  dir: string,
): Promise<string> {
  const parts: string[] = [`## CPU profiles (${new Date().toISOString()})`, ''];
  for (const spec of SERVERS.filter((s) => servers.includes(s.id))) {
    if (spec.id === 'nginx') continue; // not a Node process
    parts.push(...(await profileOne(ctx, gen, sizes, spec, scenarios, dir)));
  }
  const text = parts.join('\n');
  writeFileSync(join(dir, 'summary.md'), text);
  return text;
}

async function profileOne(
  ctx: Omit<StartContext, 'profile'>,
  gen: Generator,
  sizes: Sizes,
  spec: ServerSpec,
  scenarios: readonly ScenarioId[],
  dir: string,
): Promise<string[]> {
  const parts: string[] = [];
  for (const id of scenarios) {
    if (id === 'fanout' && !spec.fanout) continue;
    const scenarioDir = join(dir, spec.id, id);
    mkdirSync(scenarioDir, { recursive: true });
    const startedAt = Date.now();
    const server = await startServer(spec, { ...ctx, profile: { dir: scenarioDir } });
    let line: string;
    let slice: { fromMs: number; toMs: number } | undefined;
    try {
      const m = await measure(id, server, gen, sizes, ctx.materials.authorization);
      line = `${spec.id} ${id}: ${m.value.toFixed(2)} µs CPU/op under the profiler, ${m.throughput.toFixed(0)} op/s, ${m.errors} errors`;
      // The profile starts with the process (a few ms after startedAt): keep the measured window.
      if (m.window) slice = { fromMs: m.window[0] - startedAt, toMs: m.window[1] - startedAt };
    } finally {
      await server.stop();
    }
    console.log(`  ${line}`);
    // CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile: the main thread (0) of the first root
    // (the gateway; a proxy's upstream app is profiled too, and left aside).
    const pid = String(server.roots[0]);
    const name = readdirSync(scenarioDir).find((f) => {
      const parts = f.split('.');
      return f.endsWith('.cpuprofile') && parts[3] === pid && parts[4] === '0';
    });
    if (!name) throw new Error(`no main-thread profile written in ${scenarioDir}`);
    const file = join(scenarioDir, name);
    const svg = file.replace(/\.cpuprofile$/, '.svg');
    const profile = JSON.parse(readFileSync(file, 'utf8')) as FlameProfile;
    writeFileSync(svg, renderFlameGraph(profile, slice, { title: line, root: ctx.root }));
    const summary = summariseProfile(file, ctx.root, 15, slice);
    parts.push(profileMarkdown(line, relative(ctx.root, file), summary, relative(ctx.root, svg)));
  }
  return parts;
}
