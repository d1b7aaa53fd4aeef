import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  authorizeChannel,
  type ChannelOp,
  type ChannelPolicy,
  type ChannelRuleInput,
  compileChannelRules,
  isValidChannelName,
} from '../../src/core/channels.js';
import type { Principal } from '../../src/core/principal.js';

function principal(subject: string, claims: Record<string, unknown> = {}): Principal {
  return { subject, claims, expiresAt: null, authenticator: 'test' };
}

function rule(pattern: string, extra: Partial<ChannelRuleInput> = {}): ChannelRuleInput {
  return { pattern, subscribe: true, publish: false, publishPerSecond: 10, publishBurst: 20, ...extra };
}

function policy(rules: ChannelRuleInput[], maxNameBytes = 200): ChannelPolicy {
  return compileChannelRules(rules, maxNameBytes);
}

/** The code, or 'ok' with the index of the deciding rule. */
function decide(
  p: ChannelPolicy,
  who: Principal | null,
  channel: string,
  op: ChannelOp = 'subscribe',
): string {
  const verdict = authorizeChannel(p, who, channel, op);
  return verdict.ok ? `ok:${verdict.rule.index}` : verdict.code;
}

const alice = principal('alice', { org: 'acme', team: 7, roles: ['reader'], amr: ['pwd', 'mfa'] });
const bob = principal('bob', { org: 'globex', roles: ['reader', 'admin'], amr: ['pwd'] });

describe('channel ACL: identity templates', () => {
  const p = policy([
    rule('user:{sub}', { publish: true }),
    rule('org:{claims.org}:*'),
    rule('team:{claims.team}'),
  ]);

  it('fills {sub} from the verified principal only', () => {
    assert.equal(decide(p, alice, 'user:alice'), 'ok:0');
    assert.equal(decide(p, alice, 'user:alice', 'publish'), 'ok:0');
    assert.equal(decide(p, bob, 'user:bob'), 'ok:0');
  });

  it('M-03 user:alice is unreadable by bob whatever he sends', () => {
    const attempts = [
      'user:alice',
      'user:Alice',
      'user:alice ',
      ' user:alice',
      'user:alice:',
      'user::alice',
      'user:alice\u0000',
      'user:{sub}',
      'user:*',
      'user:bob:alice',
      'user:al*',
      'user:\uff41lice', // fullwidth a
      'user:a\u0301lice',
      'USER:alice',
    ];
    for (const channel of attempts) {
      assert.equal(decide(p, bob, channel), 'FORBIDDEN', channel);
      assert.equal(decide(p, bob, channel, 'publish'), 'FORBIDDEN', channel);
    }
  });

  it('fills {claims.x} from string and number claims', () => {
    assert.equal(decide(p, alice, 'org:acme:news'), 'ok:1');
    assert.equal(decide(p, alice, 'org:acme:anything-else'), 'ok:1');
    assert.equal(decide(p, bob, 'org:acme:news'), 'FORBIDDEN');
    assert.equal(decide(p, bob, 'org:globex:news'), 'ok:1');
    assert.equal(decide(p, alice, 'team:7'), 'ok:2');
    assert.equal(decide(p, alice, 'team:07'), 'FORBIDDEN');
  });

  it('never matches a template whose claim is missing, of the wrong type or not one segment', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{}, 'org:undefined:x'],
      [{ org: null }, 'org:null:x'],
      [{ org: true }, 'org:true:x'],
      [{ org: ['acme'] }, 'org:acme:x'],
      [{ org: { toString: 'acme' } }, 'org:[object Object]:x'],
      [{ org: Number.NaN }, 'org:NaN:x'],
      [{ org: Number.POSITIVE_INFINITY }, 'org:Infinity:x'],
      [{ org: '' }, 'org::x'],
      [{ org: 'a:b' }, 'org:a:b:x'],
      [{ org: '*' }, 'org:*:x'],
      [{ org: 'acme corp' }, 'org:acme corp:x'],
    ];
    for (const [claims, channel] of cases) {
      assert.equal(decide(p, principal('carol', claims), channel), 'FORBIDDEN', JSON.stringify(claims));
    }
    // A claim inherited from the prototype is not a claim.
    const inherited = principal('carol', Object.create({ org: 'acme' }) as Record<string, unknown>);
    assert.equal(decide(p, inherited, 'org:acme:x'), 'FORBIDDEN');
  });

  it('never lets a subject span or widen segments', () => {
    assert.equal(decide(p, principal('alice:admin'), 'user:alice:admin'), 'FORBIDDEN');
    assert.equal(decide(p, principal('*'), 'user:*'), 'FORBIDDEN');
    assert.equal(decide(p, principal('auth0|123'), 'user:auth0|123'), 'FORBIDDEN');
    assert.equal(decide(p, principal('alice@example.com'), 'user:alice@example.com'), 'ok:0');
  });

  it('matches no template for an anonymous connection', () => {
    assert.equal(decide(p, null, 'user:alice'), 'FORBIDDEN');
    assert.equal(decide(p, null, 'org:acme:x'), 'FORBIDDEN');
    assert.equal(decide(policy([rule('public:news')]), null, 'public:news'), 'ok:0');
  });
});

describe('channel ACL: wildcard segments', () => {
  const p = policy([rule('room:*'), rule('feed:*:live')]);

  it('* matches exactly one whole segment', () => {
    assert.equal(decide(p, alice, 'room:lobby'), 'ok:0');
    assert.equal(decide(p, alice, 'room:a.b-c_d@e'), 'ok:0');
    assert.equal(decide(p, alice, 'room'), 'FORBIDDEN');
    assert.equal(decide(p, alice, 'room:'), 'FORBIDDEN');
    assert.equal(decide(p, alice, 'room:lobby:sub'), 'FORBIDDEN');
    assert.equal(decide(p, alice, 'feed:x:live'), 'ok:1');
    assert.equal(decide(p, alice, 'feed:x:y:live'), 'FORBIDDEN');
    assert.equal(decide(p, alice, 'feed::live'), 'FORBIDDEN');
  });

  it('refuses patterns that are not whole-segment wildcards or templates', () => {
    const bad = [
      'room:lob*',
      'room:**',
      'user-{sub}',
      '{sub}.inbox',
      'org:{claims.a.b}',
      'org:{claims.}',
      'x:{nope}',
      'x::y',
      ':x',
      'x:',
      'x:.y',
      'x:a..b',
      'x:{sub',
    ];
    for (const pattern of bad)
      assert.throws(() => policy([rule(pattern)]), /channels\[0\]\.pattern/, pattern);
  });
});

describe('channel names are literal (M-04)', () => {
  it('refuses wildcard and pattern names, whatever the rules', () => {
    const p = policy([rule('*'), rule('*:*'), rule('user:*'), rule('*:*:*')]);
    const names = [
      '*',
      '#',
      '>',
      'user.>',
      'user:*',
      'user:#',
      '..',
      '.+',
      'user:..',
      'user:.',
      'a.',
      '.a',
      'a..b',
      '{sub}',
      'user:{sub}',
      '',
      ':',
      'a b',
      'a\tb',
      'a/b',
      'a\\b',
    ];
    for (const name of names) {
      assert.equal(isValidChannelName(name, 200), false, name);
      assert.equal(decide(p, alice, name), 'FORBIDDEN', name);
    }
    assert.equal(decide(p, alice, 'user:alice'), 'ok:1');
  });

  it('refuses Unicode look-alikes and non-NFC names rather than normalising them', () => {
    const p = policy([rule('user:{sub}')]);
    const lookalikes = [
      'user:\uff21lice',
      'user:\u0430lice',
      'user:a\u0301lice',
      'user:\u00e9',
      'user:e\u0301',
      'user:alice\u200b',
      'user:ali\u00adce',
    ];
    for (const name of lookalikes) {
      assert.equal(isValidChannelName(name, 200), false, name);
      assert.equal(decide(p, principal(name.slice(5)), name), 'FORBIDDEN', name);
    }
  });

  it('caps names at maxNameBytes', () => {
    const p = policy([rule('room:*')], 64);
    const fits = `room:${'a'.repeat(59)}`;
    assert.equal(fits.length, 64);
    assert.equal(decide(p, alice, fits), 'ok:0');
    assert.equal(decide(p, alice, `${fits}a`), 'FORBIDDEN');
    const started = performance.now();
    assert.equal(decide(p, alice, `room:${'a'.repeat(10_000_000)}`), 'FORBIDDEN');
    assert.ok(performance.now() - started < 50, 'refused by length before any pattern work');
  });

  it('is case-sensitive: a different case is a different channel', () => {
    const p = policy([rule('user:{sub}')]);
    assert.equal(decide(p, alice, 'user:alice'), 'ok:0');
    assert.equal(decide(p, alice, 'user:ALICE'), 'FORBIDDEN');
  });
});

describe('channel ACL: conditions, order and defaults', () => {
  it('applies `when` with checkClaims, MFA_REQUIRED for amr', () => {
    const p = policy([
      rule('admin:*', { publish: true, when: { claims: { roles: 'admin' } } }),
      rule('vault:*', { when: { claims: { amr: 'mfa' } } }),
      rule('region:*', { when: { claims: { org: { oneOf: ['acme', 'initech'] } } } }),
    ]);
    assert.equal(decide(p, bob, 'admin:ops', 'publish'), 'ok:0');
    assert.equal(decide(p, alice, 'admin:ops'), 'CLAIMS_NOT_SATISFIED');
    assert.equal(decide(p, alice, 'vault:keys'), 'ok:1');
    assert.equal(decide(p, bob, 'vault:keys'), 'MFA_REQUIRED');
    assert.equal(decide(p, alice, 'region:eu'), 'ok:2');
    assert.equal(decide(p, bob, 'region:eu'), 'CLAIMS_NOT_SATISFIED');
    assert.equal(decide(p, null, 'admin:ops'), 'CLAIMS_NOT_SATISFIED');
  });

  it('lets the first matching rule decide, including a refusal', () => {
    const p = policy([
      rule('news:internal', { subscribe: true, publish: false }),
      rule('news:*', { subscribe: true, publish: true }),
    ]);
    assert.equal(decide(p, alice, 'news:internal', 'publish'), 'FORBIDDEN', 'rule 0 decides, not rule 1');
    assert.equal(decide(p, alice, 'news:public', 'publish'), 'ok:1');
  });

  it('falls through a rule whose `when` fails to the next matching one', () => {
    const p = policy([
      rule('docs:*', { publish: true, when: { claims: { roles: 'admin' } } }),
      rule('docs:*', { subscribe: true }),
    ]);
    assert.equal(decide(p, bob, 'docs:a', 'publish'), 'ok:0');
    assert.equal(decide(p, alice, 'docs:a', 'publish'), 'FORBIDDEN');
    assert.equal(decide(p, alice, 'docs:a'), 'ok:1');
  });

  it('denies by default: no rule, no permission', () => {
    const p = policy([rule('a:b', { subscribe: false, publish: false })]);
    assert.equal(decide(p, alice, 'a:b'), 'FORBIDDEN');
    assert.equal(decide(p, alice, 'a:b', 'publish'), 'FORBIDDEN');
    assert.equal(decide(p, alice, 'a:c'), 'FORBIDDEN');
    assert.equal(decide(policy([]), alice, 'anything'), 'FORBIDDEN');
  });

  it('freezes the compiled rules', () => {
    const p = policy([rule('a:*')]);
    assert.ok(Object.isFrozen(p) && Object.isFrozen(p.rules) && Object.isFrozen(p.rules[0]));
  });
});
