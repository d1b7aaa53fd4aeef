import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MtlsAuthenticatorSchema } from '../../src/config/schema.js';
import { compileIdentityPattern, createMtlsAuthenticator } from '../../src/server/auth/mtls.js';
import type { AuthInput, ClientCertificate } from '../../src/server/auth/types.js';

const NOW = Date.UTC(2026, 0, 1);

function cert(over: Partial<ClientCertificate> = {}): ClientCertificate {
  return {
    subjectCN: 'device-42',
    dnsNames: ['d42.devices.example', 'alt.example'],
    uris: ['spiffe://corp.example/ns/prod/sa/web'],
    emails: ['ops@corp.example'],
    fingerprint256: 'ab'.repeat(32),
    x5tS256: 'q'.repeat(43),
    notAfter: NOW + 86_400_000,
    ...over,
  };
}

function input(clientCert: ClientCertificate | null): AuthInput {
  return {
    headers: new Map(),
    query: '',
    routePath: '/devices',
    routeKey: '* /devices',
    allowQueryToken: false,
    clientCert,
    remote: '127.0.0.1',
    now: NOW,
  };
}

function mtls(identityFrom: 'cn' | 'san-dns' | 'san-uri' | 'san-email', allow: string[]) {
  return createMtlsAuthenticator(
    'devices',
    MtlsAuthenticatorSchema.parse({ type: 'mtls', identityFrom, allow }),
  );
}

describe('mTLS identity patterns', () => {
  const table: [pattern: string, identity: string, matches: boolean][] = [
    ['device-*', 'device-42', true],
    ['device-*', 'device-', false],
    ['device-*', 'device-1.evil.example', false],
    ['device-*', 'device-1:x', false],
    ['device-*', 'device-1/x', false],
    ['device-*', 'xdevice-1', false],
    ['*.devices.example', 'd42.devices.example', true],
    ['*.devices.example', 'a.b.devices.example', false],
    ['*.devices.example', 'd42.devicesXexample', false],
    ['spiffe://corp.example/ns/prod/sa/*', 'spiffe://corp.example/ns/prod/sa/web', true],
    ['spiffe://corp.example/ns/prod/sa/*', 'spiffe://corp.example/ns/prod/sa/web/extra', false],
    ['*@corp.example', 'ops@corp.example', true],
    ['*@corp.example', 'a@b@corp.example', false],
    ['device-(1)', 'device-(1)', true],
    ['device-1', 'device-10', false],
  ];
  for (const [pattern, identity, matches] of table) {
    it(`${pattern} ${matches ? 'matches' : 'does not match'} ${identity}`, () => {
      assert.equal(compileIdentityPattern(pattern).test(identity), matches);
    });
  }

  it('refuses ** at creation, naming the config path', () => {
    assert.throws(() => mtls('cn', ['ok', 'device-**']), /authenticators\.devices\.allow\[1\]: .*\*\*/);
  });
});

describe('mTLS authenticator', () => {
  it('is not ambient and is absent without a verified certificate', async () => {
    const auth = mtls('cn', ['device-*']);
    assert.equal(auth.ambient, false);
    assert.deepEqual(await auth.authenticate(input(null)), { kind: 'absent' });
  });

  it('builds the principal from the CN, with the certificate claims and fingerprint', async () => {
    const result = await mtls('cn', ['device-*']).authenticate(input(cert()));
    assert.equal(result.kind, 'ok');
    assert.ok(result.kind === 'ok');
    assert.deepEqual(result.principal, {
      subject: 'device-42',
      claims: {
        cn: 'device-42',
        dns: ['d42.devices.example', 'alt.example'],
        uri: ['spiffe://corp.example/ns/prod/sa/web'],
        email: ['ops@corp.example'],
        fingerprint: 'ab'.repeat(32),
      },
      expiresAt: NOW + 86_400_000,
      authenticator: 'devices',
      certFingerprint: 'ab'.repeat(32),
    });
  });

  const sources: [source: 'san-dns' | 'san-uri' | 'san-email', allow: string, subject: string][] = [
    ['san-dns', '*.DEVICES.example', 'd42.devices.example'],
    ['san-uri', 'spiffe://corp.example/ns/prod/sa/*', 'spiffe://corp.example/ns/prod/sa/web'],
    ['san-email', '*@corp.example', 'ops@corp.example'],
  ];
  for (const [source, allow, subject] of sources) {
    it(`takes the first ${source} entry as the identity`, async () => {
      const result = await mtls(source, [allow]).authenticate(input(cert()));
      assert.equal(result.kind === 'ok' && result.principal.subject, subject);
    });
  }

  it('uses only the first SAN of the configured type', async () => {
    const result = await mtls('san-dns', ['alt.example']).authenticate(input(cert()));
    assert.deepEqual(result, { kind: 'fail', code: 'FORBIDDEN', reason: 'subject_not_allowed' });
  });

  it('T-08 refuses a valid certificate whose subject is not allowed', async () => {
    const result = await mtls('cn', ['device-*']).authenticate(input(cert({ subjectCN: 'laptop-7' })));
    assert.deepEqual(result, { kind: 'fail', code: 'FORBIDDEN', reason: 'subject_not_allowed' });
  });

  it('refuses a certificate without the configured identity, or with control characters in it', async () => {
    const none = await mtls('san-uri', ['*']).authenticate(input(cert({ uris: [] })));
    assert.deepEqual(none, { kind: 'fail', code: 'FORBIDDEN', reason: 'no_identity' });
    const noCn = await mtls('cn', ['*']).authenticate(input(cert({ subjectCN: undefined })));
    assert.deepEqual(noCn, { kind: 'fail', code: 'FORBIDDEN', reason: 'no_identity' });
    const control = await mtls('cn', ['*']).authenticate(input(cert({ subjectCN: 'device\n1' })));
    assert.deepEqual(control, { kind: 'fail', code: 'FORBIDDEN', reason: 'no_identity' });
  });

  it('says CREDENTIAL_EXPIRED for a certificate past its notAfter', async () => {
    const result = await mtls('cn', ['device-*']).authenticate(input(cert({ notAfter: NOW })));
    assert.deepEqual(result, { kind: 'fail', code: 'CREDENTIAL_EXPIRED', reason: 'expired' });
  });
});
