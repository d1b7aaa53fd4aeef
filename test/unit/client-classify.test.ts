// What the SDK makes of a close frame, an HTTP refusal or a socket error: one code and the retry
// flag from ERRORS (or the client-only table), as tables.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  CERT_REFUSAL_WINDOW_MS,
  classifyClose,
  classifyRefusal,
  classifySocketError,
  type SocketErrorFacts,
} from '../../src/client/classify.js';
import { CLIENT_ERRORS, ClientError, retryOf } from '../../src/client/errors.js';
import { ERRORS, type ErrorCode } from '../../src/protocol.js';

describe('client error table', () => {
  it('client-only codes never shadow a gateway code', () => {
    for (const code of Object.keys(CLIENT_ERRORS)) assert.ok(!Object.hasOwn(ERRORS, code), code);
  });

  it('PIN_MISMATCH and CLIENT_CERT_REJECTED are terminal; TLS and connection failures back off', () => {
    assert.equal(retryOf('PIN_MISMATCH'), 'never');
    assert.equal(retryOf('CLIENT_CERT_REJECTED'), 'never');
    assert.equal(retryOf('REDIRECT_NOT_FOLLOWED'), 'never');
    for (const code of ['TLS_ERROR', 'HANDSHAKE_FAILED', 'CONNECTION_FAILED', 'CONNECTION_LOST'] as const) {
      assert.equal(retryOf(code), 'backoff', code);
    }
  });

  it('every gateway code keeps its ERRORS retry flag', () => {
    for (const code of Object.keys(ERRORS) as ErrorCode[]) assert.equal(retryOf(code), ERRORS[code].retry);
  });

  it('ClientError carries code, retry and status', () => {
    const err = new ClientError('ORIGIN_NOT_ALLOWED', undefined, { status: 403 });
    assert.equal(err.code, 'ORIGIN_NOT_ALLOWED');
    assert.equal(err.retry, 'never');
    assert.equal(err.status, 403);
    assert.match(err.message, /^ORIGIN_NOT_ALLOWED: /);
  });
});

describe('docs/client.md retry tables', () => {
  const doc = readFileSync(new URL('../../docs/client.md', import.meta.url), 'utf8');

  it('list every ERRORS code with its status, close code and retry flag, in table order', () => {
    const rows = [...doc.matchAll(/^\| `([A-Z_]+)` \| (\d+) \| (\d+) \| `(\w+)` \|/gm)].map((m) => [
      m[1],
      Number(m[2]),
      Number(m[3]),
      m[4],
    ]);
    const expected = Object.entries(ERRORS).map(([code, e]) => [code, e.status, e.close, e.retry]);
    assert.deepEqual(rows, expected);
  });

  it('list every client-only code with its retry flag', () => {
    const rows = [...doc.matchAll(/^\| `([A-Z_]+)` \| `(\w+)` \|/gm)].map((m) => [m[1], m[2]]);
    assert.deepEqual(
      rows,
      Object.entries(CLIENT_ERRORS).map(([code, e]) => [code, e.retry]),
    );
  });
});

describe('classifyClose', () => {
  for (const [code, reason, errorCode, retry] of [
    [4401, 'CREDENTIAL_EXPIRED', 'CREDENTIAL_EXPIRED', 'refresh'],
    [4401, 'UNAUTHENTICATED', 'UNAUTHENTICATED', 'never'],
    [4403, 'ORIGIN_NOT_ALLOWED', 'ORIGIN_NOT_ALLOWED', 'never'],
    [1013, 'SLOW_CONSUMER', 'SLOW_CONSUMER', 'backoff'],
    [4429, 'RATE_LIMITED', 'RATE_LIMITED', 'backoff'],
    [1001, 'SHUTTING_DOWN', 'SHUTTING_DOWN', 'backoff'],
    [1000, 'NORMAL_CLOSURE', 'NORMAL_CLOSURE', 'never'],
    [1006, '', 'CONNECTION_LOST', 'backoff'],
    [1005, '', 'CONNECTION_LOST', 'backoff'],
    [1000, '', null, 'never'],
    [1001, '', null, 'backoff'],
    [1011, 'oops', null, 'backoff'],
    [1013, '', null, 'backoff'],
    [1008, '', null, 'never'],
    [4000, '<b>html</b>', null, 'never'],
  ] as const) {
    it(`${code} ${JSON.stringify(reason)} -> ${errorCode} / ${retry}`, () => {
      const failure = classifyClose(code, reason);
      assert.equal(failure.code, errorCode);
      assert.equal(failure.retry, retry);
    });
  }

  it('C-09 1013 is an overload signal (a delay floor applies)', () => {
    assert.equal(classifyClose(1013, '').overloaded, true);
    assert.equal(classifyClose(1013, 'TOO_MANY_CONNECTIONS').overloaded, true);
    assert.equal(classifyClose(1011, '').overloaded, false);
  });
});

describe('classifyRefusal', () => {
  const now = 0;
  for (const [status, body, retryAfter, code, retry, retryAfterMs] of [
    [403, { code: 'ORIGIN_NOT_ALLOWED' }, undefined, 'ORIGIN_NOT_ALLOWED', 'never', undefined],
    [401, { code: 'UNAUTHENTICATED' }, undefined, 'UNAUTHENTICATED', 'never', undefined],
    [401, { code: 'CREDENTIAL_EXPIRED' }, undefined, 'CREDENTIAL_EXPIRED', 'refresh', undefined],
    [503, { code: 'SERVER_BUSY' }, '2', 'SERVER_BUSY', 'backoff', 2_000],
    [429, { code: 'HANDSHAKE_RATE_LIMITED' }, '30', 'HANDSHAKE_RATE_LIMITED', 'backoff', 30_000],
    [503, undefined, '5', 'SERVER_UNAVAILABLE', 'backoff', 5_000],
    [502, undefined, undefined, 'SERVER_UNAVAILABLE', 'backoff', undefined],
    [404, { code: 'NOT_A_CODE' }, undefined, 'UNEXPECTED_RESPONSE', 'never', undefined],
    [200, 'hello', undefined, 'HANDSHAKE_FAILED', 'backoff', undefined],
    [204, undefined, undefined, 'HANDSHAKE_FAILED', 'backoff', undefined],
    [101, undefined, undefined, 'HANDSHAKE_FAILED', 'backoff', undefined],
    [302, undefined, undefined, 'REDIRECT_NOT_FOLLOWED', 'never', undefined],
    [307, { code: 'SERVER_BUSY' }, '1', 'REDIRECT_NOT_FOLLOWED', 'never', undefined],
    [403, { code: 'FORBIDDEN' }, '10', 'FORBIDDEN', 'never', undefined],
  ] as const) {
    it(`${status} ${JSON.stringify(body)} Retry-After ${retryAfter} -> ${code}`, () => {
      const failure = classifyRefusal({ status, body, retryAfter, now });
      assert.equal(failure.code, code);
      assert.equal(failure.retry, retry);
      assert.equal(failure.retryAfterMs, retryAfterMs);
      assert.equal(failure.status, status);
    });
  }
});

describe('classifySocketError', () => {
  const base: SocketErrorFacts = {
    errorCode: undefined,
    message: '',
    tlsVersion: undefined,
    msSinceSecure: undefined,
    clientCert: false,
    responded: false,
    upgraded: false,
    opened: false,
  };
  const afterTls13 = { tlsVersion: 'TLSv1.3', msSinceSecure: 5 };
  for (const [name, facts, code] of [
    ['pin check', { errorCode: 'PIN_MISMATCH' }, 'PIN_MISMATCH'],
    ['expired server certificate', { errorCode: 'CERT_HAS_EXPIRED' }, 'TLS_ERROR'],
    ['wrong host name', { errorCode: 'ERR_TLS_CERT_ALTNAME_INVALID' }, 'TLS_ERROR'],
    ['unknown CA', { errorCode: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }, 'TLS_ERROR'],
    ['self-signed', { errorCode: 'DEPTH_ZERO_SELF_SIGNED_CERT' }, 'TLS_ERROR'],
    ['plaintext server', { errorCode: 'ERR_SSL_WRONG_VERSION_NUMBER' }, 'TLS_ERROR'],
    [
      'certificate required alert',
      { errorCode: 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED' },
      'CLIENT_CERT_REJECTED',
    ],
    [
      'unknown CA alert',
      { errorCode: 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', clientCert: true },
      'CLIENT_CERT_REJECTED',
    ],
    [
      'C-09 EOF right after a TLS 1.3 handshake with a client certificate',
      { errorCode: 'ECONNRESET', message: 'socket hang up', clientCert: true, ...afterTls13 },
      'CLIENT_CERT_REJECTED',
    ],
    [
      'the same EOF without a client certificate',
      { errorCode: 'ECONNRESET', message: 'socket hang up', ...afterTls13 },
      'CONNECTION_FAILED',
    ],
    [
      'the same EOF long after the handshake',
      {
        errorCode: 'ECONNRESET',
        clientCert: true,
        tlsVersion: 'TLSv1.3',
        msSinceSecure: CERT_REFUSAL_WINDOW_MS + 1,
      },
      'CONNECTION_FAILED',
    ],
    [
      'the same EOF after a response began',
      { errorCode: 'ECONNRESET', clientCert: true, responded: true, ...afterTls13 },
      'CONNECTION_FAILED',
    ],
    [
      'the same EOF over TLS 1.2 (where the refusal is an alert)',
      { errorCode: 'ECONNRESET', clientCert: true, tlsVersion: 'TLSv1.2', msSinceSecure: 5 },
      'CONNECTION_FAILED',
    ],
    [
      'C-01 invalid accept',
      { message: 'Invalid Sec-WebSocket-Accept header', upgraded: true },
      'HANDSHAKE_FAILED',
    ],
    ['handshake timeout', { message: 'Opening handshake has timed out' }, 'HANDSHAKE_TIMEOUT'],
    ['refused', { errorCode: 'ECONNREFUSED' }, 'CONNECTION_FAILED'],
    ['reset after open', { errorCode: 'ECONNRESET', opened: true }, 'CONNECTION_LOST'],
    ['C-02 masked frame', { errorCode: 'WS_ERR_UNEXPECTED_MASK', opened: true }, 'PROTOCOL_ERROR'],
    ['C-02 invalid UTF-8', { errorCode: 'WS_ERR_INVALID_UTF8', opened: true }, 'INVALID_PAYLOAD'],
    [
      'C-02 2^63 length',
      { errorCode: 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH', opened: true },
      'MESSAGE_TOO_BIG',
    ],
    [
      'C-02 over maxPayload',
      { errorCode: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', opened: true },
      'MESSAGE_TOO_BIG',
    ],
    [
      'C-02 fragment flood',
      { errorCode: 'WS_ERR_TOO_MANY_BUFFERED_PARTS', opened: true },
      'TOO_MANY_FRAGMENTS',
    ],
    ['C-02 invalid close code', { errorCode: 'WS_ERR_INVALID_CLOSE_CODE', opened: true }, 'PROTOCOL_ERROR'],
  ] as const) {
    it(`${name} -> ${code}`, () => {
      assert.equal(classifySocketError({ ...base, ...facts }).code, code);
    });
  }
});
