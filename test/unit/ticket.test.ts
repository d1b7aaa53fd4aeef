// One-time tickets: single use, bound to a route, and worthless after their time-to-live.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { Principal } from '../../src/core/principal.js';
import { MemoryEngine } from '../../src/engine/memory.js';
import { createTicketAuthenticator } from '../../src/server/auth/ticket.js';
import type { AuthInput } from '../../src/server/auth/types.js';

const engine = new MemoryEngine();
const tickets = createTicketAuthenticator(
  'tix',
  { type: 'ticket', ttlMs: 30_000, maxOutstanding: 3, issueWith: [] },
  engine,
);
const alice: Principal = { subject: 'alice', claims: {}, expiresAt: null, authenticator: 'session' };
const T0 = 1_000_000;

function input(ticket: string, now: number, routeKey = '* /live'): AuthInput {
  return {
    headers: new Map(),
    query: `ticket=${ticket}`,
    routePath: '/live',
    routeKey,
    allowQueryToken: false,
    clientCert: null,
    remote: '127.0.0.1',
    now,
  };
}

describe('ticket authenticator', () => {
  after(() => engine.close());

  it('accepts a ticket once, within its ttl, on its own route', async () => {
    const issued = await tickets.issue(alice, '* /live', T0);
    assert.ok(issued);
    assert.equal(issued.expiresAt, T0 + 30_000);
    const first = await tickets.authenticate(input(issued.ticket, T0 + 29_999));
    assert.equal(first.kind, 'ok');
    const replay = await tickets.authenticate(input(issued.ticket, T0 + 29_999));
    assert.deepEqual(replay, { kind: 'fail', code: 'UNAUTHENTICATED', reason: 'ticket_invalid' });
  });

  it('refuses a ticket after its ttl', async () => {
    const issued = await tickets.issue(alice, '* /live', T0);
    assert.ok(issued);
    const late = await tickets.authenticate(input(issued.ticket, T0 + 30_000));
    assert.deepEqual(late, { kind: 'fail', code: 'UNAUTHENTICATED', reason: 'ticket_invalid' });
  });

  it('refuses a ticket on another route, and spends it doing so', async () => {
    const issued = await tickets.issue(alice, '* /live', T0);
    assert.ok(issued);
    const wrong = await tickets.authenticate(input(issued.ticket, T0 + 1, '* /admin'));
    assert.deepEqual(wrong, { kind: 'fail', code: 'UNAUTHENTICATED', reason: 'ticket_wrong_route' });
    const retry = await tickets.authenticate(input(issued.ticket, T0 + 2));
    assert.equal(retry.kind, 'fail');
  });

  it('is absent without a ticket and refuses a malformed one without a lookup', async () => {
    assert.deepEqual(await tickets.authenticate({ ...input('x', T0), query: 'a=1' }), { kind: 'absent' });
    assert.deepEqual(await tickets.authenticate(input('../../etc', T0)), {
      kind: 'fail',
      code: 'UNAUTHENTICATED',
      reason: 'ticket_malformed',
    });
  });

  it('bounds the outstanding tickets', async () => {
    const bounded = new MemoryEngine();
    const small = createTicketAuthenticator(
      't',
      { type: 'ticket', ttlMs: 30_000, maxOutstanding: 2, issueWith: [] },
      bounded,
    );
    const now = Date.now();
    assert.ok(await small.issue(alice, '* /live', now));
    assert.ok(await small.issue(alice, '* /live', now));
    assert.equal(await small.issue(alice, '* /live', now), undefined);
    await bounded.close();
  });
});
