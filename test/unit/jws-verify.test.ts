// The node:crypto JWS verifier: which tokens it judges itself, which it hands to jose, and that on
// every token of a hostile corpus its answer is the answer jose gives.
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  errors,
  exportJWK,
  type FlattenedJWSInput,
  generateKeyPair,
  importJWK,
  type JWTHeaderParameters,
  jwtVerify,
  SignJWT,
} from 'jose';
import { JWS_ALGORITHMS } from '../../src/config/schema.js';
import { FALLBACK, type KeyResolver, verifyCompactJws } from '../../src/server/auth/jws-verify.js';

const ALL: ReadonlySet<string> = new Set(JWS_ALGORITHMS);
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const claims = { sub: 'alice', exp: Math.floor(Date.now() / 1000) + 300 };

async function keyPair(alg: string) {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  // The resolver returns a CryptoKey imported for the algorithm, as the authenticator's does.
  const verifyKey = await importJWK(await exportJWK(publicKey), alg);
  return { privateKey, resolve: (() => verifyKey) as KeyResolver };
}

function signed(header: Record<string, unknown>, payload: unknown, key: KeyObject, alg: string): string {
  const input = `${b64(header)}.${typeof payload === 'string' ? payload : b64(payload)}`;
  const digest = alg === 'EdDSA' ? null : `sha${alg.slice(2)}`;
  const options = alg.startsWith('ES') ? { key, dsaEncoding: 'ieee-p1363' as const } : { key };
  return `${input}.${sign(digest, Buffer.from(input), options).toString('base64url')}`;
}

/** What jose's jwtVerify says of a token: 'ok' or the error class's code. */
async function joseSays(token: string, resolve: KeyResolver, allowed: ReadonlySet<string>): Promise<string> {
  try {
    await jwtVerify(token, resolve as (h: JWTHeaderParameters, t: FlattenedJWSInput) => never, {
      algorithms: [...allowed],
    });
    return 'ok';
  } catch (err) {
    // A key that does not fit the alg is a TypeError in jose; the verifier falls back on it.
    return err instanceof errors.JOSEError ? err.code : 'threw';
  }
}

describe('verifyCompactJws', () => {
  for (const alg of ['ES256', 'ES384', 'ES512', 'RS256', 'PS256', 'PS512', 'EdDSA']) {
    it(`verifies ${alg} itself and refuses a signature over other bytes`, async () => {
      const { privateKey, resolve } = await keyPair(alg);
      const token = await new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT' }).sign(privateKey);
      const verdict = await verifyCompactJws(token, ALL, resolve);
      assert.ok(verdict !== FALLBACK && verdict !== false, 'judged here, and valid');
      assert.equal(verdict.header.alg, alg);
      assert.equal(verdict.header.typ, 'JWT');
      assert.equal(verdict.encodedPayload, token.split('.')[1]);

      const [h, , s] = token.split('.');
      const forged = `${h}.${b64({ ...claims, sub: 'mallory' })}.${s}`;
      assert.equal(await verifyCompactJws(forged, ALL, resolve), false);
    });
  }

  it('hands tokens with extensions, disallowed algorithms or odd encodings to jose', async () => {
    const { privateKey, resolve } = await keyPair('ES256');
    const good = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256' }).sign(privateKey);
    const [h, p, s] = good.split('.') as [string, string, string];
    const crit = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', crit: ['b64'], b64: true })
      .sign(privateKey);
    for (const token of [
      crit,
      `${h}.${p}`,
      `${h}.${p}.${s}.x`,
      `${h}.${p}.${s}=`,
      `${h}.${p}.${s.slice(0, 85)}`, // 86 base64url chars hold 64 bytes; 85 leaves 6 dangling bits
      `${b64(['ES256'])}.${p}.${s}`,
      `${b64({ alg: 'none' })}.${p}.`,
      `${Buffer.from([0xff, 0xfe]).toString('base64url')}.${p}.${s}`,
    ]) {
      assert.equal(await verifyCompactJws(token, ALL, resolve), FALLBACK, token);
    }
    assert.equal(await verifyCompactJws(good, new Set(['RS256']), resolve), FALLBACK);
  });

  it('hands a key of the wrong curve, type or size to jose', async () => {
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const token = signed({ alg: 'ES256' }, claims, p384.privateKey, 'ES384');
    assert.equal(await verifyCompactJws(token, ALL, () => p384.publicKey), FALLBACK);

    const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const weak = signed({ alg: 'RS256' }, claims, rsa1024.privateKey, 'RS256');
    assert.equal(await verifyCompactJws(weak, ALL, () => rsa1024.publicKey), FALLBACK);
    assert.equal(await verifyCompactJws(weak, ALL, () => 'not a key'), FALLBACK);
    assert.equal(await verifyCompactJws(weak, ALL, () => rsa1024.privateKey), FALLBACK);
  });

  it('gives the same verdicts once its header memory is full, and hands out frozen headers', async () => {
    const { privateKey, resolve } = await keyPair('ES256');
    const tokens = await Promise.all(
      Array.from({ length: 80 }, (_, i) =>
        new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: `k${i}` }).sign(privateKey),
      ),
    );
    for (const round of [1, 2]) {
      for (const [i, token] of tokens.entries()) {
        const verdict = await verifyCompactJws(token, ALL, resolve);
        assert.ok(verdict !== FALLBACK && verdict !== false, `token ${i}, round ${round}`);
        assert.equal(verdict.header.kid, `k${i}`);
        assert.ok(Object.isFrozen(verdict.header));
        const [h, , sig] = token.split('.');
        const forged = `${h}.${b64({ ...claims, sub: 'mallory' })}.${sig}`;
        assert.equal(await verifyCompactJws(forged, ALL, resolve), false);
      }
    }
  });

  it('lets the resolver refuse, as through jose', async () => {
    const { privateKey } = await keyPair('ES256');
    const token = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'k' }).sign(privateKey);
    const refusal = new Error('no such kid');
    await assert.rejects(
      verifyCompactJws(token, ALL, () => {
        throw refusal;
      }),
      (err) => err === refusal,
    );
  });

  it('agrees with jose on every token of a hostile corpus', async () => {
    const es = await keyPair('ES256');
    const rs = await keyPair('RS256');
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const good = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256' }).sign(es.privateKey);
    const [h, p, s] = good.split('.') as [string, string, string];
    const corpus = [
      good,
      `${h}.${b64({ sub: 'mallory' })}.${s}`,
      `${h}.${p}.${Buffer.alloc(64).toString('base64url')}`,
      `${h}.${p}.${s.slice(0, 40)}`,
      `${h}.${p}.`,
      `${b64({ alg: 'RS256' })}.${p}.${s}`,
      `${b64({ alg: 'HS256' })}.${p}.${s}`,
      `${b64({ alg: 'ES256', crit: ['exp'] })}.${p}.${s}`,
      signed({ alg: 'ES256', kid: 'x' }, claims, ec.privateKey, 'ES256'),
      await new SignJWT(claims).setProtectedHeader({ alg: 'RS256' }).sign(rs.privateKey),
    ];
    const tryBoth = async (token: string, resolve: KeyResolver) => {
      const theirs = await joseSays(token, resolve, ALL);
      let ours: unknown;
      try {
        ours = await verifyCompactJws(token, ALL, resolve);
      } catch {
        ours = 'threw';
      }
      if (ours === FALLBACK) return; // jose decides these by construction
      assert.equal(ours === false ? 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' : 'ok', theirs, token);
    };
    const ecResolve: KeyResolver = () => ec.publicKey;
    for (const token of corpus) {
      for (const resolve of [es.resolve, rs.resolve, ecResolve]) await tryBoth(token, resolve);
    }
  });
});
