import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BEARER_PROTOCOL_PREFIX, extractBearerToken } from '../../src/server/auth/token.js';

const JWT = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln';

function headers(entries: Record<string, string>): Map<string, string> {
  return new Map(Object.entries(entries));
}

function extract(h: Record<string, string>, query = '', allowQueryToken = false) {
  return extractBearerToken(headers(h), query, allowQueryToken);
}

describe('bearer token extraction', () => {
  it('finds nothing in a request without a credential', () => {
    assert.deepEqual(extract({}), { kind: 'absent' });
    assert.deepEqual(extract({ 'sec-websocket-protocol': 'chat.v1' }), { kind: 'absent' });
  });

  it('reads Authorization: Bearer with a case-insensitive scheme', () => {
    for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) {
      assert.deepEqual(extract({ authorization: `${scheme} ${JWT}` }), {
        kind: 'token',
        token: JWT,
        source: 'header',
      });
    }
  });

  it('accepts every RFC 6750 b64token character and trailing padding', () => {
    const token = 'aZ09-._~+/abc==';
    assert.deepEqual(extract({ authorization: `Bearer ${token}` }), {
      kind: 'token',
      token,
      source: 'header',
    });
  });

  it('refuses a Bearer header that is not exactly one space and one token', () => {
    const cases = [
      'Bearer',
      'Bearer ',
      `Bearer  ${JWT}`,
      `Bearer\t${JWT}`,
      `Bearer ${JWT} extra`,
      `Bearer ${JWT},${JWT}`,
      'Bearer "quoted"',
      'Bearer a=b',
      'Bearer ==',
      `Bearer ${JWT}\u00e9`,
    ];
    for (const value of cases) {
      assert.deepEqual(extract({ authorization: value }), { kind: 'malformed' }, JSON.stringify(value));
    }
  });

  it('leaves other Authorization schemes to other authenticators', () => {
    assert.deepEqual(extract({ authorization: 'Basic YWxpY2U6cw==' }), { kind: 'absent' });
    assert.deepEqual(extract({ authorization: `Bearertoken ${JWT}` }), { kind: 'absent' });
    assert.deepEqual(
      extract({
        authorization: 'Basic YWxpY2U6cw==',
        'sec-websocket-protocol': `${BEARER_PROTOCOL_PREFIX}${JWT}`,
      }),
      {
        kind: 'token',
        token: JWT,
        source: 'subprotocol',
        entry: `${BEARER_PROTOCOL_PREFIX}${JWT}`,
      },
    );
  });

  it('reads the browser form from Sec-WebSocket-Protocol and reports the entry to keep out of the echo', () => {
    const entry = `${BEARER_PROTOCOL_PREFIX}${JWT}`;
    for (const offered of [`chat.v1, ${entry}`, `${entry}, chat.v1`, entry, `chat.v1,${entry}`]) {
      assert.deepEqual(extract({ 'sec-websocket-protocol': offered }), {
        kind: 'token',
        token: JWT,
        source: 'subprotocol',
        entry,
      });
    }
  });

  it('refuses an empty or doubled subprotocol credential', () => {
    assert.deepEqual(extract({ 'sec-websocket-protocol': `chat.v1, ${BEARER_PROTOCOL_PREFIX}` }), {
      kind: 'malformed',
    });
    const two = `${BEARER_PROTOCOL_PREFIX}${JWT}, ${BEARER_PROTOCOL_PREFIX}${JWT}x`;
    assert.deepEqual(extract({ 'sec-websocket-protocol': two }), { kind: 'malformed' });
  });

  it('prefers the Authorization header over the other forms', () => {
    const result = extract(
      { authorization: `Bearer ${JWT}`, 'sec-websocket-protocol': `${BEARER_PROTOCOL_PREFIX}other` },
      'access_token=third',
      true,
    );
    assert.deepEqual(result, { kind: 'token', token: JWT, source: 'header' });
  });

  it('A-06 ignores ?access_token= unless the route allows query tokens', () => {
    assert.deepEqual(extract({}, `access_token=${JWT}`, false), { kind: 'absent' });
    assert.deepEqual(extract({}, `a=1&access_token=${JWT}`, true), {
      kind: 'token',
      token: JWT,
      source: 'query',
    });
    assert.deepEqual(extract({}, 'access_token_x=1', true), { kind: 'absent' });
  });

  it('refuses an empty, repeated or ill-formed query token', () => {
    assert.deepEqual(extract({}, 'access_token=', true), { kind: 'malformed' });
    assert.deepEqual(extract({}, `access_token=${JWT}&access_token=${JWT}`, true), { kind: 'malformed' });
    assert.deepEqual(extract({}, 'access_token=a%20b', true), { kind: 'malformed' });
  });
});
