// The signed session cookie format the cookie authenticator verifies, and the signer applications
// (and tests) use to mint one.
//
// Format: the cookie value is a compact JWS (RFC 7515), `base64url(header).base64url(payload).
// base64url(HMAC-SHA256)`, with header {"alg":"HS256","typ":"JWT"} and a JWT claims set as payload:
//   exp  required, seconds since the epoch; the connection is closed when it passes
//   sub  the identity (or the claim named by the authenticator's subjectClaim)
//   any other claim (amr, mfa, roles, org, ...) becomes a principal claim for require.claims
// The HMAC key is the key file's bytes with surrounding whitespace trimmed, at least 32 bytes
// (`openssl rand -base64 48 > session.key`). Every character of a compact JWS is a legal cookie
// octet, so the value needs no quoting: `Set-Cookie: session=<jws>; Secure; HttpOnly; SameSite=Lax`.
import { SignJWT } from 'jose';

/** The shortest HMAC key accepted: 256 bits, the HS256 output size (RFC 7518 section 3.2). */
export const MIN_SESSION_KEY_BYTES = 32;

/** A session's claims: `exp` (seconds) is required; `sub` or the configured subject claim names the user. */
export interface SessionPayload {
  readonly exp: number;
  readonly sub?: string;
  readonly [claim: string]: unknown;
}

function isSpace(byte: number | undefined): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;
}

/** The HMAC key from a key file's content: trimmed of surrounding whitespace, at least 32 bytes. */
export function sessionKey(material: string | Uint8Array): Uint8Array {
  const bytes = typeof material === 'string' ? Buffer.from(material, 'utf8') : material;
  let start = 0;
  let end = bytes.length;
  while (start < end && isSpace(bytes[start])) start++;
  while (end > start && isSpace(bytes[end - 1])) end--;
  if (end - start < MIN_SESSION_KEY_BYTES) {
    throw new Error(`a session key must be at least ${MIN_SESSION_KEY_BYTES} bytes`);
  }
  return new Uint8Array(bytes.subarray(start, end));
}

/** Signs a session cookie value (compact JWS, HS256) with a key file's content or raw key bytes. */
export async function signSessionCookie(payload: SessionPayload, key: string | Uint8Array): Promise<string> {
  if (!Number.isFinite(payload.exp)) throw new TypeError('a session payload needs a numeric exp (seconds)');
  return new SignJWT({ ...payload }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(sessionKey(key));
}
