// The authenticator interface every credential type implements. The gateway calls a route's
// authenticators in order; the first that finds its kind of credential decides.
import type { HeaderMap } from '../../core/handshake.js';
import type { Principal } from '../../core/principal.js';
import type { ErrorCode } from '../../protocol.js';

/** What an authenticator may look at. Never logged as a whole. */
export interface AuthInput {
  readonly headers: HeaderMap;
  /** The raw query string (without `?`); tokens here are accepted only where the route opts in. */
  readonly query: string;
  readonly routePath: string;
  /** The route's unique key (host pattern and path); tickets are bound to it. */
  readonly routeKey: string;
  /** Whether the route accepts a bearer token in the query string (`allowQueryToken`). */
  readonly allowQueryToken: boolean;
  /** The client certificate, when the connection presented one that the TLS layer verified. */
  readonly clientCert: ClientCertificate | null;
  readonly remote: string;
  readonly now: number;
}

/** The parts of a verified client certificate authenticators use. */
export interface ClientCertificate {
  readonly subjectCN: string | undefined;
  readonly dnsNames: readonly string[];
  readonly uris: readonly string[];
  readonly emails: readonly string[];
  /** SHA-256 of the DER, lowercase hex without colons. */
  readonly fingerprint256: string;
  /** base64url SHA-256 of the DER, as RFC 8705 `cnf["x5t#S256"]` carries it. */
  readonly x5tS256: string;
  readonly notAfter: number;
}

/**
 * The verdict: `absent` when this authenticator's kind of credential is not in the request (try
 * the next one); otherwise accepted or refused. `reason` is for the log only: a short fixed token
 * such as `expired`, never the credential.
 */
export type AuthResult =
  | { readonly kind: 'absent' }
  | { readonly kind: 'ok'; readonly principal: Principal; readonly subprotocolCredential?: string }
  | {
      readonly kind: 'fail';
      readonly code: ErrorCode;
      readonly reason: string;
      readonly retryAfterMs?: number;
    };

/** One configured authenticator. */
export interface Authenticator {
  readonly name: string;
  readonly type: string;
  /**
   * True when the browser attaches the credential by itself (cookies, Basic): such routes demand an
   * allowed Origin even when allowMissingOrigin is set (CSWSH, A-01/H-06).
   */
  readonly ambient: boolean;
  authenticate(input: AuthInput): Promise<AuthResult>;
  /** Releases timers and caches. */
  close?(): void;
}
