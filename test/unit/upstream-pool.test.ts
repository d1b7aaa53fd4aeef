// UpstreamPool: round-robin and least-connections, passive ejection and active health checks, with
// the clock passed in and a scripted probe.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type PoolOptions, type Upstream, UpstreamPool } from '../../src/server/upstream-pool.js';

const urls = ['ws://a:1', 'ws://b:1', 'ws://c:1'].map((u) => new URL(u));
const host = (u: Upstream | undefined) => u?.url.hostname;

function pool(overrides: Partial<PoolOptions> = {}): UpstreamPool {
  return new UpstreamPool(urls, {
    balance: 'round-robin',
    ejectAfterFailures: 2,
    ejectForMs: 1_000,
    ...overrides,
  });
}

describe('UpstreamPool', () => {
  it('round-robin rotates and skips excluded upstreams', () => {
    const p = pool();
    assert.deepEqual(
      [1, 2, 3, 4].map(() => host(p.pick(0))),
      ['a', 'b', 'c', 'a'],
    );
    const a = p.upstreams[0] as Upstream;
    assert.equal(host(p.pick(0, new Set([p.upstreams[1] as Upstream]))), 'c');
    assert.equal(host(p.pick(0, new Set(p.upstreams))), undefined);
    assert.equal(a.active, 0);
  });

  it('least-connections picks the fewest, ties in rotation', () => {
    const p = pool({ balance: 'least-connections' });
    const [a, b, c] = p.upstreams as [Upstream, Upstream, Upstream];
    a.active = 2;
    b.active = 1;
    c.active = 1;
    assert.equal(host(p.pick(0)), 'b');
    b.active = 2;
    assert.equal(host(p.pick(0)), 'c');
    c.active = 5;
    a.active = 0;
    assert.equal(host(p.pick(0)), 'a');
  });

  it('ejects after ejectAfterFailures counted failures in a row, for ejectForMs', () => {
    const p = pool();
    const a = p.upstreams[0] as Upstream;
    p.report(a, false, 0);
    p.report(a, true, 0);
    p.report(a, false, 0);
    assert.ok(p.available(a, 0), 'a success resets the count');
    p.report(a, false, 0, false);
    assert.ok(p.available(a, 0), 'a failure that is not the upstream does not count');
    p.report(a, false, 10);
    assert.ok(!p.available(a, 10));
    assert.ok(!p.available(a, 1_009));
    assert.ok(p.available(a, 1_010));
    const all = new Set<string | undefined>();
    for (let i = 0; i < 6; i++) all.add(host(p.pick(500)));
    assert.deepEqual([...all].sort(), ['b', 'c']);
  });

  it('health checks mark an upstream down after unhealthyAfter and up after healthyAfter', async () => {
    const answers = new Map<string, boolean>([
      ['a', false],
      ['b', true],
      ['c', true],
    ]);
    const p = pool({
      healthCheck: {
        intervalMs: 1_000,
        healthyAfter: 2,
        unhealthyAfter: 2,
        probe: async (u) => answers.get(u.url.hostname) ?? false,
      },
    });
    const a = p.upstreams[0] as Upstream;
    await p.checkAll();
    assert.ok(a.healthy, 'one failure is not enough');
    await p.checkAll();
    assert.ok(!a.healthy);
    assert.equal(host(p.pick(0)), 'b');
    answers.set('a', true);
    a.ejectedUntil = 10_000;
    await p.checkAll();
    assert.ok(!a.healthy);
    await p.checkAll();
    assert.ok(a.healthy);
    assert.ok(p.available(a, 0), 'a passing check ends a passive ejection');
    p.close();
  });

  it('a probe that throws counts as a failed check', async () => {
    const p = pool({
      healthCheck: {
        intervalMs: 1_000,
        healthyAfter: 1,
        unhealthyAfter: 1,
        probe: async () => {
          throw new Error('boom');
        },
      },
    });
    await p.checkAll();
    assert.ok(p.upstreams.every((u) => !u.healthy));
    assert.equal(p.pick(0), undefined);
  });
});
