// The decisions of the upstream relay, without sockets: what request target the upstream is asked
// for, which subprotocols it is offered, how a failed upstream handshake is reported, and how a close
// on one leg becomes a close on the other (P-04: 1005/1006/1015 and invalid codes never reach a wire;
// M-06: no upstream text reaches the client).
import { ERRORS, type ErrorCode, isSendableCloseCode } from '../protocol.js';
import { parseSubprotocols } from './handshake.js';

/**
 * The upstream request target. Like nginx `proxy_pass`: an upstream URL without a path passes the
 * client's path on; one with a path replaces it. The client's query string follows, minus the
 * credential parameters the gateway consumed (a query token or a ticket is never replayed upstream).
 */
export function upstreamTarget(
  upstream: { readonly path: string | undefined; readonly query: string },
  clientPath: string,
  clientQuery: string,
  credentialParams: readonly string[],
): string {
  const path = upstream.path ?? clientPath;
  const kept = clientQuery
    .split('&')
    .filter((pair) => pair !== '' && !credentialParams.includes(paramName(pair)));
  const query = [upstream.query, ...kept].filter((q) => q !== '').join('&');
  return query === '' ? path : `${path}?${query}`;
}

function paramName(pair: string): string {
  const name = pair.split('=', 1)[0] ?? '';
  try {
    return decodeURIComponent(name.replaceAll('+', ' '));
  } catch {
    return name;
  }
}

/**
 * The subprotocols offered upstream: exactly the client's offer that the route allows, in the
 * client's order. Never anything else: the `portcullis.bearer.<token>` entry cannot be listed, so it
 * never leaves the gateway.
 */
export function offeredUpstream(header: string | undefined, allowed: readonly string[]): string[] {
  if (header === undefined) return [];
  return (parseSubprotocols(header) ?? []).filter((p) => allowed.includes(p));
}

/** Why the upstream handshake failed, as the relay observed it. */
export type ConnectFailure =
  /** Nothing listening, no route to the host: no byte of the request reached an application. */
  | 'refused'
  /** Reset or closed during the handshake, TLS or pin failure, DNS failure. */
  | 'network'
  | 'timeout'
  /** An HTTP answer other than 101 (P-01). */
  | 'status'
  /** A 101 that fails RFC 6455 section 4.1 checks: accept, Upgrade, subprotocol, extensions (P-02). */
  | 'handshake';

/** What a failed upstream handshake means for the client and for the upstream's health. */
export interface ConnectVerdict {
  readonly code: ErrorCode;
  /** Safe to try another upstream: the request cannot have reached an application. */
  readonly retryable: boolean;
  /** Counts toward passive ejection of this upstream. */
  readonly unhealthy: boolean;
}

/** Maps a failed upstream handshake to the client's answer; `status` is the HTTP status, if any. */
export function connectVerdict(failure: ConnectFailure, status?: number): ConnectVerdict {
  switch (failure) {
    case 'refused':
      return { code: 'BAD_GATEWAY', retryable: true, unhealthy: true };
    case 'network':
    case 'handshake':
      return { code: 'BAD_GATEWAY', retryable: false, unhealthy: true };
    case 'timeout':
      return { code: 'UPSTREAM_TIMEOUT', retryable: false, unhealthy: true };
    case 'status':
      // A 4xx is the application refusing this client, not the upstream being sick; anything
      // else (5xx, a 101 without Connection: upgrade, a 200) says something is wrong upstream.
      return {
        code: 'BAD_GATEWAY',
        retryable: false,
        unhealthy: !(status !== undefined && status >= 400 && status < 500),
      };
    default:
      return failure satisfies never;
  }
}

/** How to close the client after the upstream leg ended. */
export type ClientClose =
  /** Close with one of our codes (its close code and its name as the reason). */
  | { readonly type: 'code'; readonly code: ErrorCode }
  /** Pass the upstream's close code through (an application code such as 4000), with no reason. */
  | { readonly type: 'pass'; readonly closeCode: number };

/**
 * The client's close for an upstream that closed with `closeCode` (1006 when no close frame came);
 * `failed` when the upstream broke the protocol (ws has already closed it with 1002/1007/1009).
 * A sendable code is passed through so applications keep their own codes; its reason never is.
 */
export function clientCloseFor(closeCode: number, failed: boolean): ClientClose {
  if (failed || closeCode === 1006) return { type: 'code', code: 'BAD_GATEWAY' };
  // 1005: a close frame without a code, which is a normal close.
  if (closeCode === 1000 || closeCode === 1005) return { type: 'code', code: 'NORMAL_CLOSURE' };
  if (isSendableCloseCode(closeCode)) return { type: 'pass', closeCode };
  return { type: 'code', code: 'BAD_GATEWAY' };
}

/** A close to send on the upstream leg. */
export interface UpstreamClose {
  readonly code: number;
  readonly reason: string;
}

/**
 * The upstream's close after the client leg ended. When the gateway closed the client (expiry,
 * revocation, a limit), the upstream hears 1001 and our ErrorCode as the reason; when the client
 * closed, its code goes on if it may be sent, else 1000 for a close without a code and 1001 for
 * a client that vanished. The client's reason is not relayed.
 */
export function upstreamCloseFor(clientCloseCode: number, closedWith: ErrorCode | null): UpstreamClose {
  if (closedWith !== null) return { code: 1001, reason: closedWith };
  if (clientCloseCode === 1005) return { code: 1000, reason: '' };
  if (isSendableCloseCode(clientCloseCode)) return { code: clientCloseCode, reason: '' };
  return { code: 1001, reason: '' };
}

/** The close code a `code` decision puts on the wire (for logs and tests). */
export function closeCodeOf(decision: ClientClose): number {
  return decision.type === 'code' ? ERRORS[decision.code].close : decision.closeCode;
}
