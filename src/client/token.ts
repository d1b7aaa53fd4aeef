// The bearer credential on the client side: where it goes on the wire (never the URL), when it
// expires, and how a provider is asked for it. No I/O and no Node imports: the browser build uses it.

/**
 * The Sec-WebSocket-Protocol entry a browser uses to carry a token, because it cannot set
 * Authorization. The same string as the gateway's BEARER_PROTOCOL_PREFIX (a test keeps them equal);
 * the SDK imports nothing from src/server.
 */
export const BEARER_PROTOCOL_PREFIX = 'portcullis.bearer.';

/** Why the provider is being asked: a (re)connect, a refresh the server demanded, or an expiry ahead. */
export type TokenReason = 'connect' | 'refresh' | 'expiring';

/** Returns a fresh bearer token; called before every connection attempt and before expiry. */
export type TokenProvider = (context: { readonly reason: TokenReason }) => string | Promise<string>;

// RFC 6750 section 2.1 b64token, as the gateway parses it. Also keeps CR/LF out of a header.
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** True for a string the gateway accepts as a bearer token. */
export function isBearerToken(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= 16_384 && B64TOKEN.test(value);
}

/**
 * The expiry (ms since the epoch) of a JWT, read without verifying it (the server verifies), or
 * undefined when the token is not a JWT or has no numeric `exp`. Used only to refresh in time.
 */
export function jwtExpiryMs(token: string): number | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || !parts[1]) return undefined;
  try {
    const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, '='));
    const payload = JSON.parse(json) as { exp?: unknown };
    return typeof payload.exp === 'number' && Number.isFinite(payload.exp) ? payload.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * When to refresh a token that expires at `expiresAt`: `leadMs` before it, but not before halfway
 * through the time left, so a token shorter-lived than the lead is not refreshed in a loop.
 */
export function refreshAt(expiresAt: number, now: number, leadMs: number): number | undefined {
  const left = expiresAt - now;
  if (left <= 0) return undefined;
  return now + Math.max(left - leadMs, left / 2);
}
