// The webhook authenticator: forwards an allowlisted set of request headers to the application's
// auth endpoint (like a connect proxy) and takes its answer, allow + identity + claims or deny.
// Only the listed headers leave the gateway; the application's deny reason is logged at debug
// level and never reaches the client.
import { createHash } from 'node:crypto';
import type { WebhookAuthenticatorConfig } from '../../config/schema.js';
import type { Principal } from '../../core/principal.js';
import { logSafe } from '../audit.js';
import { createJsonPoster, identityFromAnswer, isRecord, type JsonPoster } from './https-post.js';
import type { Authenticator, AuthResult } from './types.js';

/** Positive answers kept at most when cacheMs > 0; the oldest is dropped first. */
export const MAX_CACHED_ANSWERS = 10_000;

/** Where the authenticator may write diagnostics (the gateway passes its logger's debug). */
export interface WebhookOptions {
  readonly debug?: (fields: Record<string, unknown>, message: string) => void;
}

/** The JSON body POSTed to the application. */
export interface WebhookRequest {
  /** Only the allowlisted headers the request carried, by lower-case name. */
  readonly headers: Record<string, string>;
  readonly route: string;
  readonly remote: string;
}

function unavailable(reason: string): AuthResult {
  return { kind: 'fail', code: 'AUTH_UNAVAILABLE', reason };
}

/** Creates a webhook authenticator; the CA file is read now. */
export function createWebhookAuthenticator(
  name: string,
  config: WebhookAuthenticatorConfig,
  options: WebhookOptions = {},
): Authenticator {
  const forward = [...new Set(config.forwardHeaders.map((h) => h.toLowerCase()))];
  if (new URL(config.url).protocol !== 'https:') throw new Error(`authenticators.${name}.url: must be https`);
  let poster: JsonPoster;
  try {
    poster = createJsonPoster({ caFile: config.caFile, timeoutMs: config.timeoutMs });
  } catch (err) {
    throw new Error(`authenticators.${name}.caFile: ${(err as Error).message}`);
  }
  // Keyed by a SHA-256 of what was forwarded (and the route and address the answer was for), so
  // no credential is held as a map key.
  const cache = new Map<string, { principal: Principal; until: number }>();

  /** Reads `{allow: true, sub, claims?, exp?}` or `{allow: false, reason?}`; anything else is the app's fault. */
  function verdictOf(answer: unknown, now: number): AuthResult {
    if (!isRecord(answer)) return unavailable('bad_answer');
    if (answer.allow === false) {
      const appReason = typeof answer.reason === 'string' ? logSafe(answer.reason) : null;
      options.debug?.({ event: 'auth', authenticator: name, outcome: 'denied', appReason }, 'webhook denied');
      return { kind: 'fail', code: 'FORBIDDEN', reason: 'webhook_denied' };
    }
    if (answer.allow !== true) return unavailable('bad_answer');
    return identityFromAnswer(name, answer, now);
  }

  return {
    name,
    type: 'webhook',
    // A forwarded cookie is a credential the browser attaches by itself (H-05).
    ambient: forward.includes('cookie'),
    async authenticate(input): Promise<AuthResult> {
      const headers: Record<string, string> = {};
      for (const header of forward) {
        const value = input.headers.get(header);
        if (value !== undefined) headers[header] = value;
      }
      // Nothing to vouch for: leave the request to the route's other authenticators.
      if (Object.keys(headers).length === 0) return { kind: 'absent' };
      const body: WebhookRequest = { headers, route: input.routePath, remote: input.remote };
      const key =
        config.cacheMs > 0
          ? createHash('sha256').update(JSON.stringify(body)).digest('base64url')
          : undefined;
      if (key !== undefined) {
        const hit = cache.get(key);
        if (hit !== undefined && hit.until > input.now) return { kind: 'ok', principal: hit.principal };
        if (hit !== undefined) cache.delete(key);
      }
      const answer = await poster.post(config.url, body);
      if (!answer.ok) return unavailable(answer.reason);
      const result = verdictOf(answer.body, input.now);
      if (key !== undefined && result.kind === 'ok') {
        if (cache.size >= MAX_CACHED_ANSWERS) cache.delete(cache.keys().next().value as string);
        const until = Math.min(
          input.now + config.cacheMs,
          result.principal.expiresAt ?? Number.POSITIVE_INFINITY,
        );
        cache.set(key, { principal: result.principal, until });
      }
      return result;
    },
    close() {
      poster.close();
      cache.clear();
    },
  };
}
