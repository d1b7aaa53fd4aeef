// connect() refuses unsafe options before any socket exists: ws:// off loopback (C-08),
// credentials in the URL (C-07), fewer than two pins and disabled verification (C-04, C-05).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connect } from '../../src/client/connect.js';
import { checkProtocols, checkUrl, isLoopbackHost } from '../../src/client/options.js';
import { checkPinSet, MIN_PINS } from '../../src/client/pins.js';
import { BEARER_PROTOCOL_PREFIX, isBearerToken, jwtExpiryMs, refreshAt } from '../../src/client/token.js';
import { BEARER_PROTOCOL_PREFIX as SERVER_BEARER_PREFIX } from '../../src/server/auth/token.js';

const PIN_A = `sha256/${'A'.repeat(43)}=`;
const PIN_B = `sha256/${'B'.repeat(43)}=`;
const dev = { allowInsecure: false, production: false };

describe('checkUrl', () => {
  for (const [url, ok] of [
    ['wss://gw.example/chat', true],
    ['ws://localhost:8080/x', true],
    ['ws://127.0.0.1/x', true],
    ['ws://127.255.0.9/x', true],
    ['ws://[::1]:9000/x', true],
    ['ws://gw.example/chat', false],
    ['ws://10.0.0.1/chat', false],
    ['ws://localhost.evil.example/', false],
    ['ws://127.0.0.1.evil.example/', false],
    ['https://gw.example/chat', false],
    ['http://localhost/x', false],
    ['ws+unix:///tmp/s.sock', false],
    ['wss://user:pass@gw.example/', false],
    ['wss://gw.example/chat?access_token=abc', false],
    ['wss://gw.example/chat#frag', false],
    ['/relative', false],
  ] as const) {
    it(`C-08 ${url} ${ok ? 'accepted' : 'refused'}`, () => {
      if (ok) checkUrl(url, dev);
      else assert.throws(() => checkUrl(url, dev), TypeError);
    });
  }

  it('C-08 allowInsecure permits ws:// to another host; production refuses ws:// even on loopback', () => {
    checkUrl('ws://gw.example/', { allowInsecure: true, production: false });
    assert.throws(
      () => checkUrl('ws://localhost/', { allowInsecure: false, production: true }),
      /production/,
    );
  });

  it('isLoopbackHost knows only names that always mean this machine', () => {
    assert.equal(isLoopbackHost('localhost'), true);
    assert.equal(isLoopbackHost('LOCALHOST'), true);
    assert.equal(isLoopbackHost('[::1]'), true);
    assert.equal(isLoopbackHost('127.0.0.1'), true);
    assert.equal(isLoopbackHost('127.0.0.256'), false);
    assert.equal(isLoopbackHost('0.0.0.0'), false);
    assert.equal(isLoopbackHost('::ffff:127.0.0.1'), false);
  });
});

describe('checkProtocols', () => {
  it('accepts tokens, refuses duplicates, separators and a bearer entry', () => {
    assert.deepEqual(checkProtocols('chat.v1'), ['chat.v1']);
    assert.deepEqual(checkProtocols(['a', 'b']), ['a', 'b']);
    assert.throws(() => checkProtocols(['a', 'a']), /duplicate/);
    assert.throws(() => checkProtocols(['a b']), /invalid/);
    assert.throws(() => checkProtocols([`${BEARER_PROTOCOL_PREFIX}abc`]), /token option/);
  });
});

describe('pins', () => {
  it('C-05 at least two pins are required (a primary and a backup)', () => {
    assert.equal(MIN_PINS, 2);
    assert.throws(() => checkPinSet([PIN_A]), /at least 2/);
    assert.throws(() => checkPinSet([]), /at least 2/);
    assert.deepEqual(checkPinSet([PIN_A, PIN_B]), [PIN_A, PIN_B]);
  });

  it('refuses malformed and repeated pins', () => {
    assert.throws(() => checkPinSet([PIN_A, 'sha1/abc']), /invalid pin/);
    assert.throws(() => checkPinSet([PIN_A, `sha256/${'B'.repeat(42)}=`]), /invalid pin/);
    assert.throws(() => checkPinSet([PIN_A, PIN_A]), /repeat/);
  });
});

describe('connect() option checks', () => {
  it('C-05 one pin throws', () => {
    assert.throws(() => connect('wss://localhost:1/x', { pins: [PIN_A] }), /at least 2/);
  });

  it('C-04 rejectUnauthorized: false with pins throws', () => {
    assert.throws(
      () => connect('wss://localhost:1/x', { pins: [PIN_A, PIN_B], rejectUnauthorized: false }),
      /rejectUnauthorized/,
    );
  });

  it('C-04 production mode refuses rejectUnauthorized: false and NODE_TLS_REJECT_UNAUTHORIZED=0', () => {
    assert.throws(
      () => connect('wss://localhost:1/x', { production: true, rejectUnauthorized: false }),
      /production/,
    );
    const saved = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
    try {
      assert.throws(
        () => connect('wss://localhost:1/x', { production: true }),
        /NODE_TLS_REJECT_UNAUTHORIZED/,
      );
    } finally {
      if (saved === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
      else process.env.NODE_TLS_REJECT_UNAUTHORIZED = saved;
    }
  });

  it('C-04 production mode follows NODE_ENV=production unless set explicitly', () => {
    const saved = process.env.NODE_ENV;
    process.env.NODE_ENV = 'production';
    try {
      assert.throws(() => connect('ws://localhost:1/x'), /production/);
      connect('ws://localhost:1/x', { production: false, reconnect: false }).close();
    } finally {
      if (saved === undefined) delete process.env.NODE_ENV;
      else process.env.NODE_ENV = saved;
    }
  });

  it('C-08 ws:// to a host that is not loopback throws', () => {
    assert.throws(() => connect('ws://gw.example/chat'), /ws:\/\/ is refused/);
  });

  it('C-07 a token in the URL throws; the token option must be a b64token', () => {
    assert.throws(() => connect('wss://gw.example/chat?access_token=abc'), /access_token/);
    assert.throws(() => connect('wss://gw.example/chat', { token: 'a b' }), /b64token/);
    assert.throws(() => connect('wss://gw.example/chat', { token: 'abc\r\nX-Evil: 1' }), /b64token/);
  });

  it('refuses pins on ws://, a cert without a key, and headers the SDK owns', () => {
    assert.throws(() => connect('ws://localhost:1/x', { pins: [PIN_A, PIN_B] }), /wss/);
    assert.throws(() => connect('wss://localhost:1/x', { cert: 'x' }), /cert and key/);
    assert.throws(
      () => connect('wss://localhost:1/x', { headers: { 'Sec-WebSocket-Key': 'x' } }),
      /set by the SDK/,
    );
    assert.throws(() => connect('wss://localhost:1/x', { headers: { Origin: 'x' } }), /set by the SDK/);
    assert.throws(
      () => connect('wss://localhost:1/x', { token: 'abc', headers: { Authorization: 'Basic x' } }),
      /exclusive/,
    );
    assert.throws(() => connect('wss://localhost:1/x', { headers: { 'X-A': 'a\r\nb' } }), /invalid/);
  });
});

describe('tokens', () => {
  it('the browser bearer prefix is the gateway one', () => {
    assert.equal(BEARER_PROTOCOL_PREFIX, SERVER_BEARER_PREFIX);
  });

  it('isBearerToken follows RFC 6750 b64token', () => {
    assert.equal(isBearerToken('eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.sig-_'), true);
    assert.equal(isBearerToken('abc=='), true);
    assert.equal(isBearerToken(''), false);
    assert.equal(isBearerToken('a=b'), false);
    assert.equal(isBearerToken(42), false);
  });

  it('jwtExpiryMs reads exp without verifying; anything else is undefined', () => {
    const payload = Buffer.from(JSON.stringify({ sub: 'a', exp: 2_000_000_000 })).toString('base64url');
    assert.equal(jwtExpiryMs(`e30.${payload}.sig`), 2_000_000_000_000);
    assert.equal(jwtExpiryMs('opaque-token'), undefined);
    assert.equal(jwtExpiryMs(`e30.${Buffer.from('{"exp":"x"}').toString('base64url')}.s`), undefined);
    assert.equal(jwtExpiryMs('e30.%%%.s'), undefined);
  });

  it('C-07 refreshAt: the lead before exp, never before halfway, nothing once expired', () => {
    assert.equal(refreshAt(900_000, 0, 30_000), 870_000);
    assert.equal(refreshAt(40_000, 0, 30_000), 20_000);
    assert.equal(refreshAt(1_000, 2_000, 30_000), undefined);
  });
});
