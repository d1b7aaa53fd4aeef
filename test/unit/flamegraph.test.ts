// bench/flamegraph.ts: the SVG flame graph written next to each profile by `npm run bench -- --profile`.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type FlameProfile, renderFlameGraph } from '../../bench/flamegraph.js';

const frame = (functionName: string, url = '', lineNumber = 0) => ({ functionName, url, lineNumber });

// (root) -> a -> b, (root) -> c<&>, (root) -> (idle); samples 1 ms apart.
const profile: FlameProfile = {
  nodes: [
    { id: 1, callFrame: frame('(root)'), children: [2, 4, 5] },
    { id: 2, callFrame: frame('a', 'file:///app/src/a.ts', 9), children: [3] },
    { id: 3, callFrame: frame('b', 'file:///app/node_modules/x/b.js', 4) },
    { id: 4, callFrame: frame('c<&>', 'node:internal/c', 0) },
    { id: 5, callFrame: frame('(idle)') },
  ],
  // a self 2, b 4, c 2, idle 2 (busy 8).
  samples: [3, 3, 2, 4, 5, 3, 3, 2, 4, 5],
  timeDeltas: Array(10).fill(1000),
};

interface Drawn {
  title: string;
  x: number;
  y: number;
  width: number;
}

function frames(svg: string): Drawn[] {
  const re = /<g><title>([^<]*)<\/title><rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)"/g;
  return [...svg.matchAll(re)].map((m) => ({
    title: m[1] as string,
    x: Number(m[2]),
    y: Number(m[3]),
    width: Number(m[4]),
  }));
}

const named = (drawn: Drawn[], name: string): Drawn => {
  const found = drawn.find((d) => d.title.startsWith(`${name} `));
  assert.ok(found, `no frame for ${name}`);
  return found;
};

describe('renderFlameGraph', () => {
  const svg = renderFlameGraph(profile, undefined, { root: '/app' });
  const drawn = frames(svg);

  it('returns one SVG document', () => {
    assert.ok(svg.startsWith('<svg'));
    assert.ok(svg.trimEnd().endsWith('</svg>'));
    assert.equal(svg.match(/<svg\b/g)?.length, 1);
  });

  it('sizes each frame by its samples, callees included', () => {
    const root = named(drawn, 'all');
    assert.match(root.title, /— 8 samples, 100\.00%$/);
    const a = named(drawn, 'a');
    const b = named(drawn, 'b');
    assert.ok(Math.abs(b.width - root.width * (4 / 8)) < 0.02, `b width ${b.width} of ${root.width}`);
    assert.ok(Math.abs(a.width - root.width * (6 / 8)) < 0.02);
    assert.match(a.title, /^a \(src\/a\.ts:10\) — 6 samples, 75\.00%$/);
    assert.match(b.title, /^b \(node_modules\/x\/b\.js:5\) — 4 samples, 50\.00%$/);
  });

  it('stacks callees above callers, a and c at depth 1, siblings sorted by name', () => {
    const root = named(drawn, 'all');
    const a = named(drawn, 'a');
    const b = named(drawn, 'b');
    const c = named(drawn, 'c&lt;&amp;&gt;');
    assert.equal(a.y, root.y - 16);
    assert.equal(c.y, root.y - 16);
    assert.equal(b.y, root.y - 32);
    assert.ok(a.x < c.x, 'a before c');
    assert.equal(b.x, a.x);
    assert.equal(drawn.length, 4);
  });

  it('escapes XML in names and drops (idle)', () => {
    assert.ok(!svg.includes('c<&>'));
    assert.ok(svg.includes('c&lt;&amp;&gt; (node:internal/c:1)'));
    assert.ok(!svg.includes('(idle)'));
  });

  it('counts only the samples inside a slice', () => {
    // Samples at 1..10 ms: 2..5 ms holds 3, 2, 4, 5 (b 1, a 1, c 1, idle 1).
    const sliced = frames(renderFlameGraph(profile, { fromMs: 2, toMs: 5 }));
    assert.match(named(sliced, 'all').title, /— 3 samples, 100\.00%$/);
    assert.match(named(sliced, 'a').title, /— 2 samples, 66\.67%$/);
    assert.match(named(sliced, 'b').title, /— 1 samples, 33\.33%$/);
    const empty = renderFlameGraph(profile, { fromMs: 100, toMs: 200 });
    assert.equal(frames(empty).length, 0);
    assert.ok(empty.includes('no samples'));
  });
});
