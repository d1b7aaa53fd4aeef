// normaliseTarget: the one normalised path that routing and authorization both use (H-08).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { normaliseTarget } from '../../src/core/path.js';
import type { ErrorCode } from '../../src/protocol.js';

const MAX = 4_096;

function normalises(rows: ReadonlyArray<readonly [target: string, path: string, query?: string]>): void {
  for (const [target, path, query = ''] of rows) {
    assert.deepEqual(normaliseTarget(target, MAX), { ok: true, path, query }, JSON.stringify(target));
  }
}

function refuses(rows: ReadonlyArray<readonly [target: string, code: ErrorCode]>): void {
  for (const [target, code] of rows) {
    assert.deepEqual(normaliseTarget(target, MAX), { ok: false, code }, JSON.stringify(target));
  }
}

describe('normaliseTarget', () => {
  it('keeps a canonical path and splits off the query', () => {
    normalises([
      ['/', '/'],
      ['/echo', '/echo'],
      ['/echo?room=1', '/echo', 'room=1'],
      ['/echo?', '/echo', ''],
      ['/echo?a/b?c=%2f', '/echo', 'a/b?c=%2f'],
      ['/a/b/c', '/a/b/c'],
      ["/a-b_c.d~e!$&'()*+,;=:@", "/a-b_c.d~e!$&'()*+,;=:@"],
    ]);
  });

  it('H-08 collapses empty and dot segments: //echo is /echo, /echo/../admin is /admin', () => {
    normalises([
      ['//echo', '/echo'],
      ['///echo//', '/echo/'],
      ['/./echo', '/echo'],
      ['/echo/.', '/echo'],
      ['/echo/./', '/echo/'],
      ['/echo/../admin', '/admin'],
      ['/a/b/../../echo', '/echo'],
      ['/echo/..', '/'],
      ['/echo/', '/echo/'],
      ['//', '/'],
      ['/.', '/'],
    ]);
  });

  it('H-08 keeps case and parameters: /ECHO and /echo;x are different paths', () => {
    normalises([
      ['/ECHO', '/ECHO'],
      ['/echo;x', '/echo;x'],
      ['/echo;x=../admin', '/echo;x=../admin'],
    ]);
  });

  it('H-08 decodes escaped unreserved characters and keeps other escapes upper-cased', () => {
    normalises([
      ['/ec%68o', '/echo'],
      ['/%65%63%68%6F', '/echo'],
      ['/%7e%2D%2e%5F', '/~-._'],
      ['/a%20b', '/a%20b'],
      ['/a%3bb', '/a%3Bb'],
      ['/a%25', '/a%25'],
      ['/caf%c3%a9', '/caf%C3%A9'],
      // An escaped dot is a dot, so %2e segments are dot segments.
      ['/echo/%2e', '/echo'],
      ['/x/%2e%2e/echo', '/echo'],
    ]);
  });

  it('H-08 refuses climbing above the root with BAD_PATH, escaped or not', () => {
    refuses([
      ['/..', 'BAD_PATH'],
      ['/../echo', 'BAD_PATH'],
      ['/%2e%2e/', 'BAD_PATH'],
      ['/%2E%2E/echo', 'BAD_PATH'],
      ['/.%2e/', 'BAD_PATH'],
      ['/echo/../../admin', 'BAD_PATH'],
    ]);
  });

  it('H-08 refuses an escaped separator or control character with BAD_PATH', () => {
    refuses([
      ['/echo%2f', 'BAD_PATH'],
      ['/%2Fecho', 'BAD_PATH'],
      ['/x%2f..%2fecho', 'BAD_PATH'],
      ['/echo%5c..', 'BAD_PATH'],
      ['/echo%5C', 'BAD_PATH'],
      ['/echo%00', 'BAD_PATH'],
      ['/echo%0a', 'BAD_PATH'],
      ['/echo%0D%0A', 'BAD_PATH'],
      ['/echo%7f', 'BAD_PATH'],
      ['/echo%1f', 'BAD_PATH'],
    ]);
  });

  it('H-08 refuses a malformed escape with BAD_PATH', () => {
    refuses([
      ['/echo%', 'BAD_PATH'],
      ['/echo%2', 'BAD_PATH'],
      ['/echo%zz', 'BAD_PATH'],
      ['/echo%%32%65', 'BAD_PATH'],
      ['/echo%-1', 'BAD_PATH'],
    ]);
  });

  it('H-08 refuses raw characters RFC 3986 never allows in a path with BAD_PATH', () => {
    refuses(
      [' ', '\\', '"', '<', '>', '^', '`', '{', '|', '}', '#', '\u0000', '\t', '\r', '\n', '\u007f'].map(
        (ch) => [`/ec${ch}ho`, 'BAD_PATH'] as const,
      ),
    );
    refuses([
      ['/echo?a b', 'BAD_PATH'],
      ['/echo?a#b', 'BAD_PATH'],
      ['/echo?a\u0000', 'BAD_PATH'],
      ['/echo?a\r\nX-Injected: 1', 'BAD_PATH'],
    ]);
  });

  it('H-08 refuses absolute-form, authority-form and asterisk-form targets with BAD_REQUEST', () => {
    refuses([
      ['http://10.0.0.5:8080/admin', 'BAD_REQUEST'],
      ['https://localhost/echo', 'BAD_REQUEST'],
      ['10.0.0.5:8080', 'BAD_REQUEST'],
      ['*', 'BAD_REQUEST'],
      ['echo', 'BAD_REQUEST'],
      ['', 'BAD_REQUEST'],
      ['?x=1', 'BAD_REQUEST'],
    ]);
  });

  it('H-11 refuses a target longer than maxBytes with URI_TOO_LONG, and the limit itself passes', () => {
    const atLimit = `/${'a'.repeat(MAX - 1)}`;
    assert.deepEqual(normaliseTarget(atLimit, MAX), { ok: true, path: atLimit, query: '' });
    assert.deepEqual(normaliseTarget(`${atLimit}a`, MAX), { ok: false, code: 'URI_TOO_LONG' });
    assert.deepEqual(normaliseTarget(`/echo?q=${'a'.repeat(102_400)}`, MAX), {
      ok: false,
      code: 'URI_TOO_LONG',
    });
    // The length check comes first, so a huge malformed target is never scanned.
    assert.deepEqual(normaliseTarget(`http://${'a'.repeat(MAX)}`, MAX), { ok: false, code: 'URI_TOO_LONG' });
  });

  it('H-08 is idempotent: a normalised path normalises to itself', () => {
    const targets = [
      '//echo',
      '/ec%68o',
      '/x/%2e%2e/echo',
      '/a%3bb',
      '/echo/./',
      '/a/b/../c',
      '/caf%c3%a9',
      '/echo;x',
    ];
    for (const target of targets) {
      const first = normaliseTarget(target, MAX);
      assert.ok(first.ok, target);
      assert.deepEqual(normaliseTarget(first.path, MAX), { ok: true, path: first.path, query: '' }, target);
    }
  });
});
