import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkJson, jsonTooDeep } from '../../src/core/json.js';

const anyValue = () => true;

describe('JSON message inspection', () => {
  it('measures nesting depth outside strings only', () => {
    assert.equal(jsonTooDeep(Buffer.from('[[[1]]]'), 3), false);
    assert.equal(jsonTooDeep(Buffer.from('[[[[1]]]]'), 3), true);
    assert.equal(jsonTooDeep(Buffer.from('{"a":"[[[[[[[[[["}'), 2), false);
    assert.equal(jsonTooDeep(Buffer.from('{"a":"\\"[[[[[[["}'), 2), false);
  });

  it('M-02 refuses 60,000 nested arrays before parsing', () => {
    const started = performance.now();
    const verdict = checkJson(Buffer.from('['.repeat(60_000)), 32, anyValue);
    assert.deepEqual(verdict, { ok: false, code: 'BAD_JSON' });
    assert.ok(performance.now() - started < 50);
  });

  it('M-02 parses __proto__ as data, never onto Object.prototype', () => {
    const verdict = checkJson(
      Buffer.from('{"__proto__":{"polluted":1},"constructor":{"prototype":{"x":1}}}'),
      32,
      anyValue,
    );
    assert.equal(verdict.ok, true);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(({} as Record<string, unknown>).x, undefined);
  });

  it('M-01 maps unparsable text to BAD_JSON and a failed schema to SCHEMA_VIOLATION', () => {
    assert.deepEqual(checkJson(Buffer.from('{not json'), 32, anyValue), { ok: false, code: 'BAD_JSON' });
    assert.deepEqual(
      checkJson(Buffer.from('{"a":1}'), 32, () => false),
      { ok: false, code: 'SCHEMA_VIOLATION' },
    );
    assert.deepEqual(checkJson(Buffer.from('{"a":1}'), 32, anyValue), { ok: true, value: { a: 1 } });
  });
});
