// The relay's decisions without sockets (src/core/relay.ts): the upstream request target, the
// subprotocols offered upstream, failed handshakes, and close codes across the legs (P-04, M-06).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type ClientClose,
  type ConnectFailure,
  clientCloseFor,
  closeCodeOf,
  connectVerdict,
  offeredUpstream,
  upstreamCloseFor,
  upstreamTarget,
} from '../../src/core/relay.js';
import type { ErrorCode } from '../../src/protocol.js';

const CREDENTIALS = ['access_token', 'ticket'];

describe('upstreamTarget', () => {
  it('passes the client path when the URL has none, replaces it otherwise, and drops credential parameters', () => {
    const rows: [
      path: string | undefined,
      query: string,
      clientPath: string,
      clientQuery: string,
      out: string,
    ][] = [
      [undefined, '', '/chat', '', '/chat'],
      [undefined, '', '/chat', 'room=1', '/chat?room=1'],
      ['/', '', '/chat', '', '/'],
      ['/ws', 'v=2', '/chat', 'room=1', '/ws?v=2&room=1'],
      [undefined, '', '/chat', 'access_token=abc&room=1', '/chat?room=1'],
      [undefined, '', '/chat', 'room=1&ticket=t&ticket=u', '/chat?room=1'],
      [undefined, '', '/chat', 'access%5Ftoken=abc', '/chat'],
      [undefined, '', '/chat', 'access_token', '/chat'],
      [undefined, '', '/chat', '&&room=1&', '/chat?room=1'],
    ];
    for (const [path, query, clientPath, clientQuery, out] of rows) {
      assert.equal(upstreamTarget({ path, query }, clientPath, clientQuery, CREDENTIALS), out, clientQuery);
    }
  });
});

describe('offeredUpstream', () => {
  it('offers the client list the route allows, in the client order, never a bearer entry', () => {
    const allowed = ['chat.v2', 'chat.v1'];
    const rows: [string | undefined, string[]][] = [
      [undefined, []],
      ['chat.v1', ['chat.v1']],
      ['chat.v1, chat.v2', ['chat.v1', 'chat.v2']],
      ['chat.v9, chat.v2', ['chat.v2']],
      ['portcullis.bearer.eyJabc, chat.v1', ['chat.v1']],
      ['bad value', []],
    ];
    for (const [header, out] of rows) assert.deepEqual(offeredUpstream(header, allowed), out, String(header));
  });
});

describe('connectVerdict', () => {
  it('maps a failed upstream handshake to the client answer, retry and health', () => {
    const rows: [ConnectFailure, number | undefined, ErrorCode, boolean, boolean][] = [
      ['refused', undefined, 'BAD_GATEWAY', true, true],
      ['network', undefined, 'BAD_GATEWAY', false, true],
      ['handshake', undefined, 'BAD_GATEWAY', false, true],
      ['timeout', undefined, 'UPSTREAM_TIMEOUT', false, true],
      ['status', 403, 'BAD_GATEWAY', false, false],
      ['status', 426, 'BAD_GATEWAY', false, false],
      ['status', 503, 'BAD_GATEWAY', false, true],
      ['status', 101, 'BAD_GATEWAY', false, true],
      ['status', 200, 'BAD_GATEWAY', false, true],
    ];
    for (const [failure, status, code, retryable, unhealthy] of rows) {
      assert.deepEqual(
        connectVerdict(failure, status),
        { code, retryable, unhealthy },
        `${failure} ${status}`,
      );
    }
  });
});

describe('close codes across the legs', () => {
  it('P-04 the client never sees 1005, 1006, 1015 or an invalid code from the upstream', () => {
    const rows: [number, boolean, ClientClose, number][] = [
      [1000, false, { type: 'code', code: 'NORMAL_CLOSURE' }, 1000],
      [1005, false, { type: 'code', code: 'NORMAL_CLOSURE' }, 1000],
      [1006, false, { type: 'code', code: 'BAD_GATEWAY' }, 1014],
      [1015, false, { type: 'code', code: 'BAD_GATEWAY' }, 1014],
      [1004, false, { type: 'code', code: 'BAD_GATEWAY' }, 1014],
      [2999, false, { type: 'code', code: 'BAD_GATEWAY' }, 1014],
      [5000, false, { type: 'code', code: 'BAD_GATEWAY' }, 1014],
      [1002, true, { type: 'code', code: 'BAD_GATEWAY' }, 1014],
      [4000, true, { type: 'code', code: 'BAD_GATEWAY' }, 1014],
      [1001, false, { type: 'pass', closeCode: 1001 }, 1001],
      [1011, false, { type: 'pass', closeCode: 1011 }, 1011],
      [4000, false, { type: 'pass', closeCode: 4000 }, 4000],
      [3000, false, { type: 'pass', closeCode: 3000 }, 3000],
    ];
    for (const [code, failed, decision, wire] of rows) {
      assert.deepEqual(clientCloseFor(code, failed), decision, `${code} ${failed}`);
      assert.equal(closeCodeOf(decision), wire);
    }
  });

  it('the upstream hears the client code when sendable, 1001 and our code when the gateway closed', () => {
    const rows: [number, ErrorCode | null, number, string][] = [
      [1000, null, 1000, ''],
      [4001, null, 4001, ''],
      [1005, null, 1000, ''],
      [1006, null, 1001, ''],
      [1015, null, 1001, ''],
      [4401, 'CREDENTIAL_REVOKED', 1001, 'CREDENTIAL_REVOKED'],
      [1006, 'CREDENTIAL_EXPIRED', 1001, 'CREDENTIAL_EXPIRED'],
      [1013, 'SLOW_CONSUMER', 1001, 'SLOW_CONSUMER'],
    ];
    for (const [code, closedWith, out, reason] of rows) {
      assert.deepEqual(upstreamCloseFor(code, closedWith), { code: out, reason }, `${code} ${closedWith}`);
    }
  });
});
