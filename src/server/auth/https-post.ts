// Asking the application for an identity (cookie introspection, webhook): POST a JSON body, accept
// only a 2xx JSON answer, fold every fault into one failure reason, and read the identity an answer
// carries. The transport (trust, socket pool, deadline, body cap, no redirects) is fetch.ts.
import type { Principal } from '../../core/principal.js';
import { createHttpsClient, HttpsFetchError, type HttpsResponse } from './fetch.js';
import type { AuthResult } from './types.js';

/** The largest response body read from the application (64 KiB). */
export const MAX_RESPONSE_BYTES = 64 * 1024;

/** How a poster is set up. */
export interface JsonPostOptions {
  /** A PEM file of extra trusted CAs (the system roots stay trusted). */
  readonly caFile?: string | undefined;
  /** Deadline for the whole exchange, from the call to the last body byte. */
  readonly timeoutMs: number;
  readonly maxResponseBytes?: number;
}

/** Why a call failed: every one of these means "the application could not answer". */
export type JsonPostFailure = 'timeout' | 'network' | 'tls' | 'http_status' | 'too_large' | 'not_json';

/** The outcome of one POST. `status` is present for `http_status`. */
export type JsonPostResult =
  | { readonly ok: true; readonly status: number; readonly body: unknown }
  | { readonly ok: false; readonly reason: JsonPostFailure; readonly status?: number };

/** A reusable client bound to one trust store. */
export interface JsonPoster {
  /** POSTs `body` as JSON to an https URL and reads a JSON answer. Never throws for network faults. */
  post(url: string, body: unknown): Promise<JsonPostResult>;
  /** Closes kept-alive sockets. */
  close(): void;
}

// application/json or any structured +json type (RFC 6839), with optional parameters.
const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

// Redirects are not followed: a 3xx is as much a failure as a 5xx.
const isSuccess = (status: number): boolean => status >= 200 && status <= 299;

/** Creates a poster; reads the CA file now, so a missing file or one without a certificate fails at start-up. */
export function createJsonPoster(options: JsonPostOptions): JsonPoster {
  // Kept alive (one POST per handshake), within the client's default socket cap.
  const client = createHttpsClient({ caFile: options.caFile, keepAlive: true });
  const maxBodyBytes = options.maxResponseBytes ?? MAX_RESPONSE_BYTES;

  return {
    async post(url, body) {
      let res: HttpsResponse;
      try {
        res = await client.request(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json' },
          body: JSON.stringify(body),
          timeoutMs: options.timeoutMs,
          maxBodyBytes,
          // Status and content type are judged before the body, so a refused answer is never read.
          wantBody: (status, headers) => isSuccess(status) && JSON_TYPE.test(headers['content-type'] ?? ''),
        });
      } catch (err) {
        return { ok: false, reason: failureOf(err) };
      }
      if (!isSuccess(res.status)) return { ok: false, reason: 'http_status', status: res.status };
      if (!JSON_TYPE.test(res.headers['content-type'] ?? '')) return { ok: false, reason: 'not_json' };
      try {
        return { ok: true, status: res.status, body: JSON.parse(res.body.toString('utf8')) };
      } catch {
        return { ok: false, reason: 'not_json' };
      }
    },
    close() {
      client.close();
    },
  };
}

/** Maps a transport failure to a poster failure; anything else (a non-https URL included) is a bug. */
function failureOf(err: unknown): JsonPostFailure {
  if (!(err instanceof HttpsFetchError)) throw err;
  switch (err.failure) {
    case 'timeout':
    case 'network':
    case 'tls':
    case 'too_large':
      return err.failure;
    case 'not_https':
      // Callers check their URL when they are created.
      throw err;
    default:
      return err.failure satisfies never;
  }
}

/** Whether a parsed JSON value is a plain object. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Reads the identity part of an application's positive answer, `{sub, exp?, claims?}` (`exp` in
 * seconds): anything ill-formed means the application is broken, which the client cannot fix, so
 * AUTH_UNAVAILABLE; an `exp` already past means CREDENTIAL_EXPIRED.
 */
export function identityFromAnswer(
  authenticator: string,
  answer: Record<string, unknown>,
  now: number,
): AuthResult {
  const { sub, exp, claims } = answer;
  const badAnswer: AuthResult = { kind: 'fail', code: 'AUTH_UNAVAILABLE', reason: 'bad_answer' };
  if (typeof sub !== 'string' || sub === '') return badAnswer;
  if (exp !== undefined && (typeof exp !== 'number' || !Number.isFinite(exp))) return badAnswer;
  if (claims !== undefined && !isRecord(claims)) return badAnswer;
  const expiresAt = exp === undefined ? null : exp * 1000;
  if (expiresAt !== null && expiresAt <= now)
    return { kind: 'fail', code: 'CREDENTIAL_EXPIRED', reason: 'expired' };
  const principal: Principal = {
    subject: sub,
    claims: { ...claims, sub, ...(exp === undefined ? {} : { exp }) },
    expiresAt,
    authenticator,
  };
  return { kind: 'ok', principal };
}
