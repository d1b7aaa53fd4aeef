// Turns a run's records into the summary (medians, ratios to bare ws per repeat, spread), the
// Markdown tables and the SVG chart of the ratios.
import { SERVERS, type ServerId } from './anchors.js';
import { type Measurement, SCENARIO_IDS, SCENARIOS, type ScenarioId, type Sizes } from './scenarios.js';

/** One measurement (or its failure) of one server in one repeat. */
export interface RunRecord {
  readonly scenario: ScenarioId;
  readonly server: ServerId;
  readonly repeat: number;
  readonly measurement?: Measurement;
  readonly error?: string;
}

/** Where and how the run was taken. */
export interface Meta {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly command: string;
  readonly quick: boolean;
  readonly repeats: number;
  readonly machine: {
    readonly nproc: number;
    readonly cpuModel: string;
    readonly node: string;
    readonly kernel: string;
    readonly loadAverageAtStart: readonly number[];
    /** Cores the servers and the generator were pinned to, or null without taskset. */
    readonly pinning: { readonly server: number; readonly generator: number } | null;
  };
  readonly versions: Readonly<Record<string, string>>;
  /** The commit measured, and the src/ files that differed from it when the run started. */
  readonly git?: { readonly commit: string; readonly dirtySrc: readonly string[] };
  readonly notes: readonly string[];
}

/** Everything written to bench/results/<timestamp>.json. */
export interface Results {
  readonly meta: Meta;
  readonly sizes: Sizes;
  readonly records: readonly RunRecord[];
  readonly summary: Summary;
}

/** One server's figures in one scenario. */
export interface Cell {
  readonly server: ServerId;
  readonly n: number;
  readonly value: number;
  readonly throughput: number;
  /** Median over repeats of value / bare ws's value in the same repeat. */
  readonly ratio: number;
  /** Median over repeats of throughput / bare ws's throughput in the same repeat. */
  readonly throughputRatio: number;
  readonly ratioMin: number;
  readonly ratioMax: number;
  readonly serverCpuPct: number;
  readonly clientCpuPct: number;
  readonly othersCpuPct: number;
  readonly errors: number;
  readonly failures: readonly string[];
  readonly tls?: string;
  readonly p50Ms?: number;
  readonly p99Ms?: number;
}

/** Cells per scenario, in table order. */
export type Summary = Partial<Record<ScenarioId, Cell[]>>;

function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}

/** Medians and paired ratios from the records. */
export function summarise(records: readonly RunRecord[]): Summary {
  const out: Summary = {};
  for (const scenario of SCENARIO_IDS) {
    const rows = records.filter((r) => r.scenario === scenario);
    if (rows.length === 0) continue;
    const reference = new Map<number, number>();
    const referenceRate = new Map<number, number>();
    for (const r of rows) {
      if (r.server !== 'ws' || !r.measurement) continue;
      reference.set(r.repeat, r.measurement.value);
      referenceRate.set(r.repeat, r.measurement.throughput);
    }
    const cells: Cell[] = [];
    for (const spec of SERVERS) {
      const mine = rows.filter((r) => r.server === spec.id);
      if (mine.length === 0) continue;
      const ok = mine.flatMap((r) => (r.measurement ? [r.measurement] : []));
      const ratios = mine.flatMap((r) => {
        const ref = reference.get(r.repeat);
        return r.measurement && ref ? [r.measurement.value / ref] : [];
      });
      const finite = ratios.filter((x) => Number.isFinite(x));
      const rateRatios = mine.flatMap((r) => {
        const ref = referenceRate.get(r.repeat);
        return r.measurement && ref ? [r.measurement.throughput / ref] : [];
      });
      const tls = ok.find((m) => m.tls)?.tls;
      const p50 = median(ok.flatMap((m) => (m.latencyMs ? [m.latencyMs.p50] : [])));
      const p99 = median(ok.flatMap((m) => (m.latencyMs ? [m.latencyMs.p99] : [])));
      cells.push({
        server: spec.id,
        n: ok.length,
        value: median(ok.map((m) => m.value)),
        throughput: median(ok.map((m) => m.throughput)),
        ratio: median(ratios),
        throughputRatio: median(rateRatios),
        ratioMin: finite.length > 0 ? Math.min(...finite) : Number.NaN,
        ratioMax: finite.length > 0 ? Math.max(...finite) : Number.NaN,
        serverCpuPct: median(ok.map((m) => m.serverCpuPct)),
        clientCpuPct: median(ok.map((m) => m.clientCpuPct)),
        othersCpuPct: median(ok.map((m) => m.othersCpuPct)),
        errors: ok.reduce((sum, m) => sum + m.errors, 0),
        failures: mine.flatMap((r) => (r.error ? [r.error] : [])),
        ...(tls ? { tls } : {}),
        ...(Number.isFinite(p50) ? { p50Ms: p50, p99Ms: p99 } : {}),
      });
    }
    out[scenario] = cells;
  }
  return out;
}

const LABEL: Readonly<Record<ServerId, string>> = Object.fromEntries(
  SERVERS.map((s) => [s.id, s.label]),
) as Record<ServerId, string>;
const SHORT: Readonly<Record<ServerId, string>> = {
  ws: 'bare ws',
  portcullis: 'Portcullis',
  socketio: 'socket.io',
  fastify: '@fastify/websocket',
  raw: 'raw TLS (ceiling)',
  nginx: 'nginx -> ws',
  proxy: 'Portcullis -> ws',
};

function fmt(x: number, digits = 2): string {
  if (!Number.isFinite(x)) return 'n/a';
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString('en-US');
  return x.toFixed(Math.abs(x) >= 100 ? 0 : digits);
}

function verdict(cell: Cell | undefined, target: number | undefined): string {
  if (!cell || target === undefined || !Number.isFinite(cell.ratio)) return '';
  return cell.ratio <= target ? `meets (<= ${target.toFixed(2)})` : `misses (<= ${target.toFixed(2)})`;
}

/** The headline table: ratios to bare ws, with bare ws's absolute figure. */
function headline(summary: Summary): string {
  const servers = SERVERS.filter((s) =>
    Object.values(summary).some((cells) => cells?.some((c) => c.server === s.id)),
  );
  const lines = [
    `| ratio to bare ws (lower is better) | ${servers.map((s) => SHORT[s.id]).join(' | ')} | Portcullis target |`,
    `|---|${servers.map(() => '---|').join('')}---|`,
  ];
  for (const id of SCENARIO_IDS) {
    const cells = summary[id];
    if (!cells) continue;
    const scenario = SCENARIOS[id];
    const row = servers.map((s) => {
      const cell = cells.find((c) => c.server === s.id);
      if (!cell) return '-';
      if (s.id === 'ws') return `1.00 (${fmt(cell.value)} ${scenario.unit})`;
      const ratio = fmt(cell.ratio);
      return s.id === 'portcullis' ? `**${ratio}**` : ratio;
    });
    const portcullis = cells.find((c) => c.server === 'portcullis');
    lines.push(`| ${scenario.title} | ${row.join(' | ')} | ${verdict(portcullis, scenario.target)} |`);
  }
  return lines.join('\n');
}

function detail(id: ScenarioId, cells: readonly Cell[]): string {
  const scenario = SCENARIOS[id];
  const latency = id === 'latency';
  const memory = id === 'memory';
  const head = [
    'server',
    scenario.unit,
    'ratio [min-max]',
    scenario.rateUnit,
    ...(latency ? ['p50 ms', 'p99 ms'] : []),
    ...(memory ? [] : ['server CPU %']),
    'generator CPU %',
    ...(memory ? [] : ['others CPU %']),
    'errors',
    ...(id === 'echo-small' || id === 'handshake' ? ['TLS'] : []),
  ];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---|').join('')}`];
  for (const c of cells) {
    const errors = c.failures.length > 0 ? `${c.errors}; failed: ${c.failures[0]}` : String(c.errors);
    const row = [
      LABEL[c.server],
      fmt(c.value),
      `${fmt(c.ratio)} [${fmt(c.ratioMin)}-${fmt(c.ratioMax)}]`,
      fmt(c.throughput, 0),
      ...(latency ? [fmt(c.p50Ms ?? Number.NaN), fmt(c.p99Ms ?? Number.NaN)] : []),
      ...(memory ? [] : [fmt(c.serverCpuPct, 0)]),
      fmt(c.clientCpuPct, 0),
      ...(memory ? [] : [fmt(c.othersCpuPct, 0)]),
      errors,
      ...(id === 'echo-small' || id === 'handshake' ? [c.tls ?? ''] : []),
    ];
    lines.push(`| ${row.join(' | ')} |`);
  }
  return `#### ${scenario.title} (${scenario.unit})\n\n${lines.join('\n')}`;
}

/** The proxy comparison: a TLS-terminating proxy in front of the plain ws app, against bare ws. */
function proxyTable(summary: Summary): string | undefined {
  const rows: string[] = [];
  for (const id of ['echo-small', 'echo-large', 'handshake', 'memory'] as const) {
    const cells = summary[id];
    if (!cells) continue;
    for (const server of ['nginx', 'proxy'] as const) {
      const c = cells.find((x) => x.server === server);
      if (!c) continue;
      const rate = id === 'memory' ? '-' : fmt(c.throughputRatio);
      rows.push(`| ${SCENARIOS[id].title} | ${LABEL[server]} | ${rate} | ${fmt(c.ratio)} |`);
    }
  }
  if (rows.length === 0) return undefined;
  return [
    '#### Proxy route (target: throughput >= 0.6 of the app reached directly)',
    '',
    'Both proxies terminate TLS and relay to the same plain ws app; "directly" is bare ws over TLS. Throughput is',
    'bounded by the server core, so it is the inverse of the CPU ratio unless the generator or the machine limits it.',
    '',
    '| scenario | proxy | throughput vs direct | CPU (memory) per op vs direct |',
    '|---|---|---|---|',
    ...rows,
  ].join('\n');
}

/** The Markdown report of a run. */
export function markdown(results: Omit<Results, 'summary'>, summary: Summary): string {
  const { meta, sizes } = results;
  const m = meta.machine;
  const pin = m.pinning
    ? `servers on core ${m.pinning.server}, generator on core ${m.pinning.generator} (taskset)`
    : 'not pinned (no taskset)';
  const parts = [
    `### Run of ${meta.startedAt}`,
    '',
    `- Command: \`${meta.command}\`${meta.quick ? ' (quick)' : ''}, ${meta.repeats} repeat(s), servers interleaved, medians`,
    ...(meta.git
      ? [
          `- Source: commit ${meta.git.commit}${meta.git.dirtySrc.length > 0 ? ` with uncommitted changes in ${meta.git.dirtySrc.join(', ')}` : ''} (the gateway servers run dist/, built from it at the start of the run)`,
        ]
      : []),
    `- Machine: ${m.nproc} cores, ${m.cpuModel}, Node ${m.node}, Linux ${m.kernel}, load average at start ${m.loadAverageAtStart.map((x) => x.toFixed(2)).join(' ')}; ${pin}`,
    `- Versions: ${Object.entries(meta.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
    `- Sizes: echo ${sizes.echoConns} conns x ${sizes.echoInflight} in flight (64 KiB: ${sizes.largeConns} x ${sizes.largeInflight}), handshakes ${sizes.handshakeConcurrency} at a time, ${sizes.memoryConns} idle conns, ${sizes.fanoutSubscribers} subscribers x ${sizes.fanoutInflight} publications in flight, latency at ${sizes.latencyRate} msg/s over ${sizes.latencyConns} conns; windows ${sizes.warmupMs} ms warm-up + ${sizes.durationMs} ms measured`,
    ...meta.notes.map((n) => `- ${n}`),
    '',
    headline(summary),
    '',
    ...(proxyTable(summary) ? [proxyTable(summary) as string, ''] : []),
    ...SCENARIO_IDS.flatMap((id) => {
      const cells = summary[id];
      return cells ? [detail(id, cells), ''] : [];
    }),
  ];
  return parts.join('\n');
}

const COLORS: Readonly<Record<ServerId, string>> = {
  ws: '#6b7280',
  portcullis: '#b91c1c',
  socketio: '#2563eb',
  fastify: '#059669',
  raw: '#d97706',
  nginx: '#7c3aed',
  proxy: '#f472b6',
};

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A grouped horizontal bar chart of the ratios to bare ws, with Portcullis's targets marked. */
export function svg(summary: Summary, caption: string): string {
  const scenarios = SCENARIO_IDS.filter((id) => summary[id]);
  const servers = SERVERS.filter((s) => scenarios.some((id) => summary[id]?.some((c) => c.server === s.id)));
  const barH = 12;
  const gap = 14;
  const left = 280;
  const width = 960;
  const plotW = width - left - 90;
  const maxRatio = 3;
  const x = (r: number) => left + (Math.min(r, maxRatio) / maxRatio) * plotW;
  const groupH = servers.length * barH + gap;
  const top = 48;
  const height = top + scenarios.length * groupH + 78;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="20" y="18" font-size="13" font-weight="bold">Server CPU per operation (memory: RSS per connection), as a ratio to bare ws over TLS; lower is better</text>`,
    `<text x="20" y="34" fill="#555">${esc(caption)}</text>`,
  ];
  for (let t = 0; t <= maxRatio; t += 0.5) {
    out.push(
      `<line x1="${x(t)}" y1="${top - 4}" x2="${x(t)}" y2="${top + scenarios.length * groupH - gap + 4}" stroke="${t === 1 ? '#111' : '#e5e7eb'}" stroke-width="${t === 1 ? 1.5 : 1}"/>`,
      `<text x="${x(t)}" y="${top + scenarios.length * groupH + 8}" text-anchor="middle" fill="#555">${t.toFixed(1)}</text>`,
    );
  }
  scenarios.forEach((id, g) => {
    const y0 = top + g * groupH;
    const scenario = SCENARIOS[id];
    out.push(
      `<text x="${left - 8}" y="${y0 + (servers.length * barH) / 2 + 4}" text-anchor="end" font-weight="bold">${esc(scenario.title)}</text>`,
    );
    servers.forEach((s, i) => {
      const cell = summary[id]?.find((c) => c.server === s.id);
      const y = y0 + i * barH;
      if (!cell || !Number.isFinite(cell.ratio)) return;
      out.push(
        `<rect x="${left}" y="${y + 1}" width="${Math.max(1, x(cell.ratio) - left)}" height="${barH - 2}" fill="${COLORS[s.id]}"/>`,
        `<text x="${x(cell.ratio) + 4}" y="${y + barH - 2}" fill="#111">${cell.ratio > maxRatio ? `${fmt(cell.ratio)} >` : fmt(cell.ratio)}</text>`,
      );
    });
    if (scenario.target !== undefined && servers.some((s) => s.id === 'portcullis')) {
      const i = servers.findIndex((s) => s.id === 'portcullis');
      const y = y0 + i * barH;
      out.push(
        `<line x1="${x(scenario.target)}" y1="${y - 3}" x2="${x(scenario.target)}" y2="${y + barH + 3}" stroke="#111" stroke-width="3" stroke-dasharray="3,2"/>`,
      );
    }
  });
  let ly = top + scenarios.length * groupH + 26;
  let lx = left;
  for (const s of servers) {
    const w = 24 + SHORT[s.id].length * 6.2;
    if (lx + w > width - 10) {
      lx = left;
      ly += 16;
    }
    out.push(
      `<rect x="${lx}" y="${ly}" width="10" height="10" fill="${COLORS[s.id]}"/>`,
      `<text x="${lx + 14}" y="${ly + 9}">${esc(SHORT[s.id])}</text>`,
    );
    lx += w;
  }
  out.push(
    `<text x="${left}" y="${ly + 26}" fill="#555">Dashed tick across the Portcullis bar: the issue's target (echo targets sit on the 1.0 line). Bars are clipped at ${maxRatio.toFixed(1)}.</text>`,
    '</svg>',
  );
  return `${out.join('\n')}\n`;
}
