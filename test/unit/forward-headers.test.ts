// forwardHeaders: which client headers reach an upstream and what the gateway adds (P-03), as
// tables of inputs and the headers that come out.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type ForwardContext,
  forwardHeaders,
  headerSafe,
  IDENTITY_HEADER,
  unforwardable,
} from '../../src/core/forward-headers.js';

function context(headers: Record<string, string>, overrides: Partial<ForwardContext> = {}): ForwardContext {
  return {
    headers: new Map(Object.entries(headers)),
    allow: new Set<string>(),
    forwarded: true,
    remote: '203.0.113.7',
    encrypted: true,
    host: 'chat.example.com',
    identity: [],
    ...overrides,
  };
}

describe('forwardHeaders', () => {
  it('passes only allowlisted headers', () => {
    const out = forwardHeaders(
      context(
        { 'x-request-id': 'r1', 'user-agent': 'ua', 'accept-language': 'de', cookie: 'sid=1' },
        { allow: new Set(['x-request-id', 'accept-language']), forwarded: false },
      ),
    );
    assert.deepEqual(out, { 'x-request-id': 'r1', 'accept-language': 'de' });
  });

  it('P-03 drops headers the Connection header nominates, even allowlisted ones', () => {
    const out = forwardHeaders(
      context(
        { connection: 'Upgrade, close, X-Request-Id', 'x-request-id': 'r1', 'x-trace': 't' },
        { allow: new Set(['x-request-id', 'x-trace']), forwarded: false },
      ),
    );
    assert.deepEqual(out, { 'x-trace': 't' });
  });

  it('P-03 never takes forwarding, identity, hop-by-hop, handshake or underscore headers from the client', () => {
    const forged: Record<string, string> = {
      'x-forwarded-for': '6.6.6.6',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'evil.test',
      'x-forwarded-port': '1',
      forwarded: 'for=6.6.6.6',
      'x-real-ip': '6.6.6.6',
      'true-client-ip': '6.6.6.6',
      'x-client-cert': 'forged',
      'x-portcullis-identity': 'forged',
      'x-portcullis-subject': 'admin',
      x_portcullis_subject: 'admin',
      x_forwarded_for: '6.6.6.6',
      'keep-alive': '1',
      te: 'trailers',
      'transfer-encoding': 'chunked',
      upgrade: 'websocket',
      host: 'evil.test',
      'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      'sec-websocket-protocol': 'chat.v1',
      'sec-websocket-extensions': 'permessage-deflate',
      'proxy-authorization': 'Basic eA==',
    };
    // Even an allowlist naming them (config refuses it; this is the defence in depth).
    const out = forwardHeaders(context(forged, { allow: new Set(Object.keys(forged)), forwarded: false }));
    assert.deepEqual(out, {});
  });

  it('P-03 adds X-Forwarded-* and identity after stripping, so a nomination cannot remove them', () => {
    const out = forwardHeaders(
      context(
        {
          connection: 'Upgrade, X-Forwarded-For, X-Portcullis-Identity',
          'x-forwarded-for': '6.6.6.6',
          'x-portcullis-identity': 'forged',
        },
        { identity: [[IDENTITY_HEADER, 'signed.jwt.value']] },
      ),
    );
    assert.deepEqual(out, {
      'x-forwarded-for': '203.0.113.7',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'chat.example.com',
      [IDENTITY_HEADER]: 'signed.jwt.value',
    });
  });

  it('says http for a plaintext listener and adds nothing when forwarded is off', () => {
    assert.equal(forwardHeaders(context({}, { encrypted: false }))['x-forwarded-proto'], 'http');
    assert.deepEqual(forwardHeaders(context({}, { forwarded: false })), {});
  });
});

describe('unforwardable (the passHeaders check)', () => {
  it('refuses names an allowlist may not contain, with the reason', () => {
    const rows: [string, RegExp][] = [
      ['X-Forwarded-For', /gateway only/],
      ['x-forwarded-anything', /gateway only/],
      ['Forwarded', /gateway only/],
      ['X-Real-IP', /gateway only/],
      ['X-Portcullis-Identity', /gateway only/],
      ['X-Client-Cert', /gateway only/],
      ['x_user', /underscores/],
      ['Connection', /hop-by-hop/],
      ['Transfer-Encoding', /hop-by-hop/],
      ['Host', /hop-by-hop/],
      ['Sec-WebSocket-Protocol', /upstream handshake/],
      ['bad header', /HTTP header name/],
      ['', /HTTP header name/],
    ];
    for (const [name, why] of rows) assert.match(unforwardable(name) ?? '', why, name);
  });

  it('allows ordinary names, credentials included when an operator lists them', () => {
    for (const name of [
      'X-Request-Id',
      'Authorization',
      'Cookie',
      'Origin',
      'User-Agent',
      'accept-language',
    ]) {
      assert.equal(unforwardable(name), undefined, name);
    }
  });
});

describe('headerSafe (plain identity values)', () => {
  it('keeps visible ASCII and percent-encodes the rest, % included', () => {
    const rows: [string, string][] = [
      ['alice', 'alice'],
      ['alice@example.com', 'alice@example.com'],
      ['a b', 'a%20b'],
      ['100%', '100%25'],
      ['\u00e9', '%C3%A9'],
      ['x\r\nSet-Cookie: a=1', 'x%0D%0ASet-Cookie:%20a=1'],
      ['\ud800', '%EF%BF%BD'],
    ];
    for (const [input, output] of rows) assert.equal(headerSafe(input), output, JSON.stringify(input));
  });
});
