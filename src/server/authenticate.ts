// Runs a route's authenticators for one request and applies what every credential type shares:
// the ambient-credential Origin rule, required claims and revocation. Used by the upgrade path,
// the ticket endpoint and in-band refresh alike, so they cannot drift apart.

import type { RouteConfig } from '../config/schema.js';
import type { HeaderMap } from '../core/handshake.js';
import { checkClaims, type Principal } from '../core/principal.js';
import type { Engine } from '../engine/types.js';
import type { ErrorCode } from '../protocol.js';
import type { Authenticator, AuthInput } from './auth/types.js';

/** The outcome of authenticating one request for one route. */
export type AuthOutcome =
  | { ok: true; principal: Principal }
  | { ok: false; code: ErrorCode; reason: string; retryAfterMs?: number | undefined };

/** Revocation keys a principal is checked against. */
export function revocationKeys(principal: Principal): string[] {
  const keys = [`sub:${principal.subject}`];
  if (principal.jti) keys.push(`jti:${principal.jti}`);
  return keys;
}

/**
 * Authenticates with the first of `authenticators` that finds its kind of credential; a present
 * but bad credential is refused without trying the others (no silent fall-through to a cookie).
 */
export async function authenticate(
  authenticators: readonly Authenticator[],
  input: AuthInput,
  route: RouteConfig,
  engine: Engine,
): Promise<AuthOutcome> {
  for (const authenticator of authenticators) {
    const result = await authenticator.authenticate(input);
    if (result.kind === 'absent') continue;
    if (result.kind === 'fail') {
      return { ok: false, code: result.code, reason: result.reason, retryAfterMs: result.retryAfterMs };
    }
    // Browsers attach cookies and Basic credentials by themselves: such a credential is honoured
    // only with an Origin the route allows, even where allowMissingOrigin lets bearer clients in.
    if (authenticator.ambient && !hasOrigin(input.headers)) {
      return { ok: false, code: 'ORIGIN_NOT_ALLOWED', reason: 'ambient_credential_without_origin' };
    }
    const principal = result.principal;
    const claims = checkClaims(route.require?.claims, principal.claims);
    if (claims) return { ok: false, code: claims, reason: 'claims' };
    if (principal.expiresAt !== null && principal.expiresAt <= input.now) {
      return { ok: false, code: 'CREDENTIAL_EXPIRED', reason: 'expired' };
    }
    if (await engine.isRevoked(revocationKeys(principal), input.now)) {
      return { ok: false, code: 'CREDENTIAL_REVOKED', reason: 'revoked' };
    }
    return { ok: true, principal };
  }
  return { ok: false, code: 'UNAUTHENTICATED', reason: 'no_credential' };
}

function hasOrigin(headers: HeaderMap): boolean {
  return headers.has('origin');
}
