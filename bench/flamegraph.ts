// Renders a V8 .cpuprofile as a static SVG flame graph: the root at the bottom, one row per stack
// depth, each frame as wide as its samples (its own and its callees'), frames merged by identical
// call path and siblings sorted by name. Hover a frame for its location, samples and share.

export interface FlameCallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
export interface FlameProfile {
  nodes: { id: number; callFrame: FlameCallFrame; children?: number[]; hitCount?: number }[];
  samples?: number[];
  timeDeltas?: number[];
}
export interface FlameOptions {
  /** Shown at the top of the graph. */
  readonly title?: string;
  /** Absolute directory that file:// locations are shown relative to. */
  readonly root?: string;
  /** Total width in px (default 1200). */
  readonly width?: number;
}

interface Frame {
  readonly name: string;
  readonly call: FlameCallFrame;
  count: number;
  readonly children: Map<string, Frame>;
}

const ROW = 16;
const TOP = 34;
const SIDE = 10;
const CHAR_PX = 7; // approximate width of one character at font-size 12
const MIN_LABEL_PX = 30;

const escapeXml = (s: string): string =>
  s.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  );

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return (h >>> 0) / 4294967296;
}

/** Hue by area: our code warm, node_modules yellow-green, node: internals blue, native grey. */
function colour(f: Frame): string {
  const { url } = f.call;
  const v = hash(f.name);
  if (!url) return `hsl(0,0%,${Math.round(62 + 16 * v)}%)`;
  if ((url.includes('/src/') || url.includes('/dist/')) && !url.includes('/node_modules/')) {
    return `hsl(${Math.round(8 + 22 * v)},85%,60%)`;
  }
  if (url.includes('/node_modules/')) return `hsl(${Math.round(55 + 30 * v)},65%,50%)`;
  if (url.startsWith('node:')) return `hsl(${Math.round(195 + 25 * v)},60%,62%)`;
  return `hsl(${Math.round(270 + 25 * v)},45%,68%)`;
}

function location(call: FlameCallFrame, root: string | undefined): string {
  let url = call.url;
  if (!url) return '';
  if (url.startsWith('file://')) {
    url = decodeURIComponent(url.slice('file://'.length));
    const nm = url.lastIndexOf('/node_modules/');
    if (nm !== -1) url = url.slice(nm + 1);
    else if (root && url.startsWith(`${root.replace(/\/$/, '')}/`))
      url = url.slice(root.replace(/\/$/, '').length + 1);
  }
  return `${url}:${call.lineNumber + 1}`;
}

/**
 * Builds the SVG. With `slice`, only samples taken between fromMs and toMs after the profile started
 * count (as in profile.ts's summariseProfile). (idle) samples are dropped.
 */
export function renderFlameGraph(
  profile: FlameProfile,
  slice?: { fromMs: number; toMs: number },
  options: FlameOptions = {},
): string {
  const width = options.width ?? 1200;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  // Samples per node in the window.
  const hits = new Map<number, number>();
  const samples = profile.samples ?? [];
  if (samples.length > 0) {
    let atMs = 0;
    samples.forEach((id, i) => {
      atMs += (profile.timeDeltas?.[i] ?? 0) / 1000;
      if (slice && (atMs < slice.fromMs || atMs > slice.toMs)) return;
      hits.set(id, (hits.get(id) ?? 0) + 1);
    });
  } else if (!slice) {
    for (const n of profile.nodes) if (n.hitCount) hits.set(n.id, n.hitCount);
  }

  // Merge by call path; the profile's own root ("(root)") becomes the single bottom frame.
  const all: Frame = {
    name: 'all',
    call: { functionName: 'all', url: '', lineNumber: -1 },
    count: 0,
    children: new Map(),
  };
  for (const [id, count] of hits) {
    const path: FlameCallFrame[] = [];
    for (let at: number | undefined = id; at !== undefined && parent.has(at); at = parent.get(at)) {
      const call = byId.get(at)?.callFrame;
      if (call) path.push(call);
    }
    if (path.some((c) => c.functionName === '(idle)')) continue;
    all.count += count;
    let frame = all;
    for (const call of path.reverse()) {
      const key = `${call.functionName}|${call.url}|${call.lineNumber}`;
      let next = frame.children.get(key);
      if (!next) {
        next = { name: call.functionName || '(anonymous)', call, count: 0, children: new Map() };
        frame.children.set(key, next);
      }
      next.count += count;
      frame = next;
    }
  }

  const total = all.count;
  const scale = total > 0 ? (width - 2 * SIDE) / total : 0;
  const depthOf = (f: Frame): number => 1 + Math.max(-1, ...[...f.children.values()].map(depthOf));
  const rows = depthOf(all) + 1;
  const height = TOP + rows * ROW + SIDE;
  const out: string[] = [];

  const draw = (f: Frame, depth: number, x: number): void => {
    const w = f.count * scale;
    if (w < 0.1) return;
    const y = height - SIDE - (depth + 1) * ROW;
    const where = location(f.call, options.root);
    const pct = ((100 * f.count) / total).toFixed(2);
    const tip = `${f.name}${where ? ` (${where})` : ''} — ${f.count} samples, ${pct}%`;
    let label = '';
    if (w >= MIN_LABEL_PX) {
      const fit = Math.floor((w - 6) / CHAR_PX);
      label = f.name.length <= fit ? f.name : `${f.name.slice(0, Math.max(0, fit - 2))}..`;
    }
    out.push(
      `<g><title>${escapeXml(tip)}</title><rect x="${x.toFixed(2)}" y="${y}" width="${w.toFixed(2)}" height="${ROW - 1}" fill="${colour(f)}" rx="2"/>` +
        (label ? `<text x="${(x + 3).toFixed(2)}" y="${y + ROW - 4}">${escapeXml(label)}</text>` : '') +
        '</g>',
    );
    let cx = x;
    const kids = [...f.children.entries()].sort(([ka, a], [kb, b]) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : ka < kb ? -1 : ka > kb ? 1 : 0,
    );
    for (const [, child] of kids) {
      draw(child, depth + 1, cx);
      cx += child.count * scale;
    }
  };
  if (total > 0) draw(all, 0, SIDE);

  const heading = `${options.title ?? 'CPU flame graph'} — ${total} samples${slice ? ` (${slice.fromMs.toFixed(0)}–${slice.toMs.toFixed(0)} ms)` : ''}`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    '<style>text{font:12px monospace;fill:#000;pointer-events:none}rect:hover{stroke:#000;stroke-width:1}</style>',
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#fdfdf8"/>`,
    `<text x="${SIDE}" y="20" style="font-size:14px">${escapeXml(heading)}</text>`,
    ...(total > 0 ? out : [`<text x="${SIDE}" y="${TOP + ROW}">no samples in the window</text>`]),
    '</svg>',
  ].join('\n');
}
