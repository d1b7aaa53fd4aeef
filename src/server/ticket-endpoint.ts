// The ticket endpoint: a browser trades a credential its route accepts for a single-use ticket to
// open the WebSocket with, behind the route's Origin rule and a custom header (CSRF).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import {
  checkHost,
  findRoute,
  type HandshakeRequest,
  type HeaderMap,
  type RoutePolicy,
  scanHeaders,
} from '../core/handshake.js';
import { checkOrigin } from '../core/origin.js';
import type { Admit } from '../engine/types.js';
import type { ErrorCode } from '../protocol.js';
import { logSafe } from './audit.js';
import type { TicketAuthenticator } from './auth/ticket.js';
import type { Authenticator } from './auth/types.js';
import type { AuthOutcome } from './authenticate.js';
import { clientIp, type TrustedProxies } from './client-ip.js';
import type { EndpointHost } from './endpoint-host.js';
import { sendJson, sendRefusal } from './http.js';

/** The ticket endpoint, and the custom header that makes a cross-site request need a preflight. */
export const TICKET_PATH = '/.portcullis/ticket';
export const TICKET_HEADER = 'x-portcullis-ticket';

/** The part of a compiled route the ticket endpoint reads. */
export interface TicketRoute {
  readonly policy: RoutePolicy;
  /** The ticket authenticator, when the route accepts tickets. */
  readonly ticket: TicketAuthenticator | undefined;
}

/** What the ticket endpoint needs beyond every endpoint's share of the gateway. */
export interface TicketHost<R extends TicketRoute> extends EndpointHost {
  /** The proxies whose X-Forwarded-For is believed. */
  readonly proxies: TrustedProxies;
  /** The compiled route with this key, if any. */
  route(key: string): R | undefined;
  /** A configured authenticator by name. */
  authenticator(name: string): Authenticator | undefined;
  /** Takes one handshake from the address's per-IP budget (a ticket costs what a handshake does). */
  takeHandshake(remote: string, now: number): Promise<Admit>;
  /** Runs the route's authenticators, with the per-IP failure budget in front of them. */
  authenticateRequest(
    route: R,
    headers: HeaderMap,
    query: string,
    socket: Duplex,
    remote: string,
    only?: (a: Authenticator) => boolean,
    candidates?: readonly Authenticator[],
  ): Promise<AuthOutcome>;
}

/**
 * POST /.portcullis/ticket?route=/chat: a browser trades a credential the route accepts for a
 * single-use ticket. CSRF-safe: the Origin must be one the route allows and a custom header is
 * required, which a cross-site form or simple fetch cannot send without a CORS preflight.
 */
export async function onTicketRequest<R extends TicketRoute>(
  gateway: TicketHost<R>,
  req: IncomingMessage,
  res: ServerResponse,
  request: HandshakeRequest,
  query: string,
): Promise<void> {
  const forwarded = gateway.proxies.empty ? undefined : req.headers['x-forwarded-for'];
  const remote = clientIp(
    req.socket.remoteAddress,
    typeof forwarded === 'string' ? forwarded : undefined,
    gateway.proxies,
  );
  const answer = (code: ErrorCode, route: string | null, reason?: string, retryAfterMs?: number) => {
    gateway.countRejection(code);
    gateway.log.info({
      event: 'ticket',
      outcome: 'rejected',
      code,
      route,
      remote,
      ...(reason ? { reason } : {}),
    });
    sendRefusal(res, code, gateway.refusal(retryAfterMs));
  };
  const scan = scanHeaders(request.rawHeaders, gateway.policy.maxHeaderCount);
  if (!scan.ok) return answer(scan.code, null);
  const host = checkHost(scan.headers.get('host'), gateway.policy, request.servername);
  if (!host.ok) return answer(host.code, null);
  const routePath = new URLSearchParams(query).get('route') ?? '';
  const found = routePath.startsWith('/') ? findRoute(gateway.policy, host.host, routePath) : undefined;
  const route = found && gateway.route(found.key);
  if (!route?.ticket) return answer('ROUTE_NOT_FOUND', null);
  const origin = scan.headers.get('origin');
  const verdict = checkOrigin(route.policy.origins, origin, { allowMissing: false });
  if (!verdict.ok) return answer('ORIGIN_NOT_ALLOWED', routePath);
  const cors: [string, string][] = [
    ['Access-Control-Allow-Origin', verdict.origin as string],
    ['Access-Control-Allow-Credentials', 'true'],
    ['Vary', 'Origin'],
  ];
  if (request.method === 'OPTIONS') {
    const headers = [
      ...cors,
      ['Access-Control-Allow-Methods', 'POST'],
      ['Access-Control-Allow-Headers', `authorization, ${TICKET_HEADER}`],
      ['Access-Control-Max-Age', '600'],
    ] as [string, string][];
    sendJson(res, 204, undefined, headers, gateway.hsts);
    return;
  }
  if (request.method !== 'POST') {
    gateway.countRejection('METHOD_NOT_ALLOWED');
    sendRefusal(res, 'METHOD_NOT_ALLOWED', { ...gateway.refusal(), allow: 'POST, OPTIONS' });
    return;
  }
  if (scan.headers.get(TICKET_HEADER) !== '1') return answer('FORBIDDEN', routePath, 'csrf_header_missing');
  const rate = await gateway.takeHandshake(remote, Date.now());
  if (!rate.ok) return answer(rate.code, routePath, undefined, rate.retryAfterMs);
  // issueWith lets a route accept only tickets on the WebSocket itself while a cookie (say) may
  // mint them here, behind the Origin and custom-header checks.
  const issuers = route.ticket.issueWith;
  const outcome = await gateway.authenticateRequest(
    route,
    scan.headers,
    '',
    req.socket,
    remote,
    (a) => a.type !== 'ticket',
    issuers.length > 0 ? issuers.map((n) => gateway.authenticator(n) as Authenticator) : undefined,
  );
  if (!outcome.ok) return answer(outcome.code, routePath, outcome.reason, outcome.retryAfterMs);
  const issued = await route.ticket.issue(outcome.principal, route.policy.key, Date.now());
  if (!issued) return answer('SERVER_BUSY', routePath, 'ticket_store_full', 1000);
  gateway.log.info({
    event: 'ticket',
    outcome: 'issued',
    route: routePath,
    remote,
    identity: logSafe(outcome.principal.subject),
  });
  sendJson(
    res,
    200,
    { ticket: issued.ticket, expiresAt: issued.expiresAt, route: routePath },
    cors,
    gateway.hsts,
  );
}
