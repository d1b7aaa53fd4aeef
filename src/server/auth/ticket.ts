// One-time connection tickets for browsers: the page POSTs to /.portcullis/ticket with a credential
// the route accepts (bearer token, cookie, ...), gets a random single-use ticket bound to that
// identity and route, and opens the WebSocket with ?ticket=... . Nothing long-lived travels in the
// URL, and a replayed or expired ticket is refused.
import { randomBytes } from 'node:crypto';
import type { TicketAuthenticatorConfig } from '../../config/schema.js';
import type { Principal } from '../../core/principal.js';
import type { Engine } from '../../engine/types.js';
import type { Authenticator, AuthInput, AuthResult } from './types.js';

/** A ticket authenticator can also mint tickets. */
export interface TicketAuthenticator extends Authenticator {
  readonly type: 'ticket';
  /** Authenticators that may mint tickets; empty means the route's other authenticators. */
  readonly issueWith: readonly string[];
  /** Stores a ticket for `principal` on `route`; undefined when the store is full. */
  issue(
    principal: Principal,
    route: string,
    now: number,
  ): Promise<{ ticket: string; expiresAt: number } | undefined>;
}

const TICKET = /^[A-Za-z0-9_-]{43}$/;

/** Reads `ticket` from a raw query string without decoding anything else in it. */
export function ticketFromQuery(query: string): string | undefined {
  for (const pair of query.split('&')) {
    if (pair.startsWith('ticket=')) return pair.slice(7);
  }
  return undefined;
}

/** Creates the ticket authenticator over the engine's single-use ticket store. */
export function createTicketAuthenticator(
  name: string,
  config: TicketAuthenticatorConfig,
  engine: Engine,
): TicketAuthenticator {
  return {
    name,
    type: 'ticket',
    ambient: false,
    issueWith: config.issueWith,
    async issue(principal, route, now) {
      const ticket = randomBytes(32).toString('base64url');
      const expiresAt = now + config.ttlMs;
      const stored = await engine.putTicket(ticket, { route, expiresAt, principal }, config.maxOutstanding);
      return stored ? { ticket, expiresAt } : undefined;
    },
    async authenticate(input: AuthInput): Promise<AuthResult> {
      const ticket = ticketFromQuery(input.query);
      if (ticket === undefined) return { kind: 'absent' };
      if (!TICKET.test(ticket)) return { kind: 'fail', code: 'UNAUTHENTICATED', reason: 'ticket_malformed' };
      // Taken (deleted) before any other check, so a ticket is spent even by a failed attempt.
      const stored = await engine.takeTicket(ticket, input.now);
      if (!stored) return { kind: 'fail', code: 'UNAUTHENTICATED', reason: 'ticket_invalid' };
      if (stored.route !== input.routeKey)
        return { kind: 'fail', code: 'UNAUTHENTICATED', reason: 'ticket_wrong_route' };
      return { kind: 'ok', principal: stored.principal };
    },
  };
}
