// The gateway's identity keys and tokens (src/server/identity-token.ts): RFC 7638 key ids, the
// claims of a token, expiry never past the credential's, and a bounded set of published keys.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import type { Principal } from '../../src/core/principal.js';
import {
  IDENTITY_ISSUER,
  IDENTITY_TYP,
  IdentityKeys,
  signIdentity,
} from '../../src/server/identity-token.js';

const NOW = Date.UTC(2030, 0, 1);

function principal(overrides: Partial<Principal> = {}): Principal {
  return {
    subject: 'alice',
    claims: { sub: 'alice', role: 'admin', email: 'a@example.com' },
    expiresAt: null,
    authenticator: 'staff',
    ...overrides,
  };
}

function pemFile(type: 'ec' | 'rsa', curve = 'P-256'): string {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-identity-'));
  const path = join(dir, 'key.pem');
  const { privateKey } =
    type === 'ec'
      ? generateKeyPairSync('ec', { namedCurve: curve })
      : generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(path, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  return path;
}

describe('identity tokens', () => {
  it('carry iss, aud, sub, auth, a jti and only the listed claims, and verify against the JWKS', async () => {
    const keys = new IdentityKeys();
    const key = keys.generatedKey();
    const token = signIdentity(key, {
      principal: principal(),
      audience: '/chat',
      ttlSec: 60,
      claims: ['role', 'missing'],
      now: NOW,
    });
    const header = decodeProtectedHeader(token);
    assert.deepEqual(header, { alg: 'ES256', kid: key.kid, typ: IDENTITY_TYP });
    const { payload } = await jwtVerify(token, createLocalJWKSet(keys.jwks()), {
      issuer: IDENTITY_ISSUER,
      audience: '/chat',
      currentDate: new Date(NOW),
    });
    assert.equal(payload.sub, 'alice');
    assert.equal(payload.auth, 'staff');
    assert.equal(payload.role, 'admin');
    assert.equal(payload.email, undefined);
    assert.equal(payload.exp, NOW / 1000 + 60);
    assert.equal(typeof payload.jti, 'string');
  });

  it('never outlive the credential they describe', async () => {
    const keys = new IdentityKeys();
    const token = signIdentity(keys.generatedKey(), {
      principal: principal({ expiresAt: NOW + 10_000 }),
      audience: '/chat',
      ttlSec: 60,
      claims: [],
      now: NOW,
    });
    const { payload } = await jwtVerify(token, createLocalJWKSet(keys.jwks()), {
      currentDate: new Date(NOW),
    });
    assert.equal(payload.exp, NOW / 1000 + 10);
  });
});

describe('IdentityKeys', () => {
  it('uses the RFC 7638 thumbprint as kid and publishes public keys only', async () => {
    const keys = new IdentityKeys();
    const key = keys.fromFile(pemFile('ec'));
    const [jwk] = keys.jwks().keys;
    assert.equal(jwk?.kid, key.kid);
    assert.equal(key.kid, await calculateJwkThumbprint(jwk as Parameters<typeof calculateJwkThumbprint>[0]));
    assert.equal(jwk?.d, undefined);
    assert.equal(keys.generatedKey().kid, keys.generatedKey().kid, 'one generated key per process');
  });

  it('refuses keys that are not EC P-256, naming the file', () => {
    const keys = new IdentityKeys();
    for (const path of [pemFile('rsa'), pemFile('ec', 'P-384')]) {
      assert.throws(
        () => keys.fromFile(path),
        (err: Error) => err.message.startsWith(path) && /P-256/.test(err.message),
      );
    }
    assert.throws(() => keys.fromFile('/nonexistent/key.pem'), /ENOENT/);
    assert.equal(keys.active, false);
  });

  it('keeps the 8 most recently used keys published', () => {
    const keys = new IdentityKeys();
    const kids = Array.from({ length: 10 }, () => keys.fromFile(pemFile('ec')).kid);
    assert.deepEqual(
      keys.jwks().keys.map((k) => k.kid),
      kids.slice(2),
    );
  });
});
