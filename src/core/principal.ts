// Who a connection belongs to, as established by an authenticator, and the route's required
// claims. Identity always comes from here, never from a message field.
import type { ErrorCode } from '../protocol.js';

/** A verified identity. */
export interface Principal {
  /** The identity used for accounting, channel templates ({sub}) and the audit log. */
  readonly subject: string;
  /** Verified claims (JWT payload, cookie session, webhook answer, certificate fields). */
  readonly claims: Readonly<Record<string, unknown>>;
  /** When the credential stops being valid (ms since epoch), or null when it does not expire. */
  readonly expiresAt: number | null;
  /** The authenticator (config name) that verified it. */
  readonly authenticator: string;
  /** The token id, when the credential has one (for revocation). */
  readonly jti?: string | undefined;
  /** SHA-256 of the client certificate (lowercase hex), when one was presented. */
  readonly certFingerprint?: string | undefined;
}

/** A required claim: an exact value (or contained in an array claim), or one of several. */
export type ClaimRequirement = string | number | boolean | { oneOf: readonly (string | number | boolean)[] };

function matches(actual: unknown, expected: string | number | boolean): boolean {
  if (Array.isArray(actual)) return actual.includes(expected);
  return actual === expected;
}

/** Checks `require.claims`; `amr` failures say MFA_REQUIRED so clients can send users to step-up. */
export function checkClaims(
  required: Readonly<Record<string, ClaimRequirement>> | undefined,
  claims: Readonly<Record<string, unknown>>,
): ErrorCode | undefined {
  if (!required) return undefined;
  for (const [name, want] of Object.entries(required)) {
    const actual = Object.hasOwn(claims, name) ? claims[name] : undefined;
    const ok = typeof want === 'object' ? want.oneOf.some((v) => matches(actual, v)) : matches(actual, want);
    if (!ok) return name === 'amr' || name === 'acr' ? 'MFA_REQUIRED' : 'CLAIMS_NOT_SATISFIED';
  }
  return undefined;
}
