// Channel authorization for the broker, sans-I/O: channel rules compiled once, then a decision per
// (principal, channel, operation). Identity comes only from the verified Principal, never from the
// channel name the client sent (M-03); names are literal, never patterns (M-04); deny by default.
import type { ErrorCode } from '../protocol.js';
import { type ClaimRequirement, checkClaims, type Principal } from './principal.js';

/** What a client may do with a channel. */
export type ChannelOp = 'subscribe' | 'publish';

/** One channel rule as the config gives it (routes[].broker.channels[]). */
export interface ChannelRuleInput {
  readonly pattern: string;
  readonly subscribe: boolean;
  readonly publish: boolean;
  readonly when?: { readonly claims: Readonly<Record<string, ClaimRequirement>> } | undefined;
  readonly schema?: string | undefined;
  readonly publishPerSecond: number;
  readonly publishBurst: number;
}

/** One segment of a compiled pattern. */
export type PatternSegment =
  | { readonly kind: 'literal'; readonly text: string }
  | { readonly kind: 'any' }
  | { readonly kind: 'sub' }
  | { readonly kind: 'claim'; readonly name: string };

/** A compiled rule; `index` is its position in the config (first match decides). */
export interface ChannelRule extends ChannelRuleInput {
  readonly index: number;
  readonly segments: readonly PatternSegment[];
}

/** The compiled, frozen rules of one broker route. */
export interface ChannelPolicy {
  readonly rules: readonly ChannelRule[];
  readonly maxNameBytes: number;
}

/** The decision: the rule that granted the operation, or the code to answer with. */
export type ChannelVerdict =
  | { readonly ok: true; readonly rule: ChannelRule }
  | { readonly ok: false; readonly code: ErrorCode };

// One segment: dot-separated words of [A-Za-z0-9_@-]. ASCII only, so every accepted name is already
// in NFC (and NFKC) form; no leading, trailing or doubled dot, so `.`, `..` and `.+` are refused.
const SEGMENT = '[A-Za-z0-9_@-]+(?:\\.[A-Za-z0-9_@-]+)*';
const SEGMENT_RE = new RegExp(`^${SEGMENT}$`);
const NAME_RE = new RegExp(`^${SEGMENT}(?::${SEGMENT})*$`);
const CLAIM_TEMPLATE_RE = /^\{claims\.([A-Za-z0-9_-]+)\}$/;

const FORBIDDEN: ChannelVerdict = Object.freeze({ ok: false, code: 'FORBIDDEN' });

/**
 * True for a literal channel name a client may use: segments split on ':', the charset above, at
 * most maxBytes. Wildcards (`*`, `#`, `>`), templates (`{}`), whitespace and non-ASCII look-alikes
 * (`user:Ａlice`) are never valid names, so they can only be refused, never interpreted.
 */
export function isValidChannelName(name: string, maxBytes: number): boolean {
  // Length first: the regex then never runs on an oversized string. ASCII-only, so length = bytes.
  return name.length > 0 && name.length <= maxBytes && NAME_RE.test(name);
}

function compileSegment(text: string, where: string): PatternSegment {
  if (text === '*') return { kind: 'any' };
  if (text === '{sub}') return { kind: 'sub' };
  const claim = CLAIM_TEMPLATE_RE.exec(text);
  if (claim) return { kind: 'claim', name: claim[1] as string };
  if (text.includes('{') || text.includes('}')) {
    throw new Error(
      `${where}: a template must be a whole segment, {sub} or {claims.NAME} (no nested claims)`,
    );
  }
  if (text.includes('*')) throw new Error(`${where}: * must be a whole segment`);
  if (!SEGMENT_RE.test(text)) throw new Error(`${where}: "${text}" is not a valid channel segment`);
  return { kind: 'literal', text };
}

/** Compiles the rules of one broker route; throws naming the rule when a pattern is invalid. */
export function compileChannelRules(rules: readonly ChannelRuleInput[], maxNameBytes: number): ChannelPolicy {
  const compiled = rules.map((rule, index): ChannelRule => {
    const where = `channels[${index}].pattern`;
    const segments = rule.pattern.split(':').map((s) => compileSegment(s, where));
    return Object.freeze({ ...rule, index, segments: Object.freeze(segments) });
  });
  return Object.freeze({ rules: Object.freeze(compiled), maxNameBytes });
}

/**
 * The value a template segment stands for, or undefined when it cannot match anything: no
 * principal, a missing claim, a claim that is not a string or finite number, or a value that is not
 * one valid segment (so `{sub}` = "a:b" or "*" never spans or widens segments).
 */
function templateValue(segment: PatternSegment, principal: Principal | null): string | undefined {
  if (principal === null) return undefined;
  let value: unknown;
  if (segment.kind === 'sub') value = principal.subject;
  else if (segment.kind === 'claim')
    value = Object.hasOwn(principal.claims, segment.name) ? principal.claims[segment.name] : undefined;
  else return undefined;
  const text =
    typeof value === 'string'
      ? value
      : typeof value === 'number' && Number.isFinite(value)
        ? String(value)
        : undefined;
  return text !== undefined && SEGMENT_RE.test(text) ? text : undefined;
}

function patternMatches(rule: ChannelRule, parts: readonly string[], principal: Principal | null): boolean {
  if (rule.segments.length !== parts.length) return false;
  for (let i = 0; i < parts.length; i++) {
    const segment = rule.segments[i] as PatternSegment;
    const part = parts[i] as string;
    switch (segment.kind) {
      case 'any':
        continue;
      case 'literal':
        if (segment.text !== part) return false;
        continue;
      case 'sub':
      case 'claim':
        if (templateValue(segment, principal) !== part) return false;
        continue;
      default:
        return segment satisfies never;
    }
  }
  return true;
}

/**
 * Decides one operation. A rule matches when its pattern matches the channel for this principal
 * and its `when` claims hold; the first matching rule decides (its subscribe/publish flag grants
 * or refuses). No matching rule: FORBIDDEN, or the claim code of the first rule whose pattern
 * matched but whose `when` failed (MFA_REQUIRED tells the client to step up).
 */
export function authorizeChannel(
  policy: ChannelPolicy,
  principal: Principal | null,
  channel: string,
  op: ChannelOp,
): ChannelVerdict {
  if (!isValidChannelName(channel, policy.maxNameBytes)) return FORBIDDEN;
  const parts = channel.split(':');
  const claims = principal?.claims ?? {};
  let claimCode: ErrorCode | undefined;
  for (const rule of policy.rules) {
    if (!patternMatches(rule, parts, principal)) continue;
    const failed = checkClaims(rule.when?.claims, claims);
    if (failed) {
      claimCode ??= failed;
      continue;
    }
    return rule[op] ? { ok: true, rule } : FORBIDDEN;
  }
  return claimCode ? { ok: false, code: claimCode } : FORBIDDEN;
}
