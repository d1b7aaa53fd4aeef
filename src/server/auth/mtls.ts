// The mTLS authenticator: the identity is a field of the client certificate the TLS layer already
// verified, checked against the authenticator's allowlist (T-08: a valid certificate whose subject
// is not listed gets 403).
import type { MtlsAuthenticatorConfig } from '../../config/schema.js';
import type { Principal } from '../../core/principal.js';
import type { Authenticator, AuthResult, ClientCertificate } from './types.js';

/** Where the identity comes from. */
export type IdentitySource = MtlsAuthenticatorConfig['identityFrom'];

// A `*` stands for one or more characters of a single label or segment: it never crosses `.`,
// `:`, `/` or `@`, so `*.devices.example` does not match `a.b.devices.example`, `device-*` does not
// match `device-1.evil.example`, and `spiffe://corp/ns/*` does not match deeper paths.
const STAR = '[^./:@]+';
// C0/C1 controls, DEL and Unicode line separators: no legitimate identity has them, and they would
// turn a subject into a log or channel-name injection.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/** Compiles one allow pattern; throws on `**`, which has no meaning here and is likely a mistake. */
export function compileIdentityPattern(pattern: string, caseInsensitive = false): RegExp {
  if (pattern.includes('**')) throw new Error(`"${pattern}": "**" is not supported; "*" matches one label`);
  const body = pattern
    .split('*')
    .map((part) => part.replace(/[\\^$.|?+()[\]{}]/g, '\\$&'))
    .join(STAR);
  return new RegExp(`^${body}$`, caseInsensitive ? 'iu' : 'u');
}

/** The identity a certificate carries for `source`: the CN, or the first SAN of that type. */
export function identityOf(cert: ClientCertificate, source: IdentitySource): string | undefined {
  switch (source) {
    case 'cn':
      return cert.subjectCN;
    case 'san-dns':
      return cert.dnsNames[0];
    case 'san-uri':
      return cert.uris[0];
    case 'san-email':
      return cert.emails[0];
    default:
      return source satisfies never;
  }
}

/** Creates an mTLS authenticator; `allow` patterns compile now, so a bad one fails at start-up. */
export function createMtlsAuthenticator(name: string, config: MtlsAuthenticatorConfig): Authenticator {
  // DNS names are case-insensitive (RFC 4343); CNs, URIs and emails are compared exactly.
  const dnsCase = config.identityFrom === 'san-dns';
  const allow = config.allow.map((pattern, i) => {
    try {
      return compileIdentityPattern(pattern, dnsCase);
    } catch (err) {
      throw new Error(`authenticators.${name}.allow[${i}]: ${(err as Error).message}`);
    }
  });

  return {
    name,
    type: 'mtls',
    ambient: false,
    async authenticate(input): Promise<AuthResult> {
      const cert = input.clientCert;
      if (cert === null) return { kind: 'absent' };
      const identity = identityOf(cert, config.identityFrom);
      if (identity === undefined || identity === '' || CONTROL.test(identity)) {
        return { kind: 'fail', code: 'FORBIDDEN', reason: 'no_identity' };
      }
      if (!allow.some((re) => re.test(identity))) {
        return { kind: 'fail', code: 'FORBIDDEN', reason: 'subject_not_allowed' };
      }
      if (cert.notAfter <= input.now) return { kind: 'fail', code: 'CREDENTIAL_EXPIRED', reason: 'expired' };
      const principal: Principal = {
        subject: dnsCase ? identity.toLowerCase() : identity,
        claims: {
          cn: cert.subjectCN ?? null,
          dns: cert.dnsNames,
          uri: cert.uris,
          email: cert.emails,
          fingerprint: cert.fingerprint256,
        },
        expiresAt: cert.notAfter,
        authenticator: name,
        certFingerprint: cert.fingerprint256,
      };
      return { kind: 'ok', principal };
    },
  };
}
