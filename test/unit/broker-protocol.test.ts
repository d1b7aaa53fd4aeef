import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ackFrame,
  errorFrame,
  gapFrame,
  messageFrame,
  type ParsedFrame,
  parseClientFrame,
  planResume,
  type ResumePlan,
  resetFrame,
  subscribeAckFrame,
} from '../../src/core/broker-protocol.js';
import { ERRORS } from '../../src/protocol.js';

const DEPTH = 32;
const parse = (text: string): ParsedFrame => parseClientFrame(Buffer.from(text), DEPTH);

describe('portcullis.v1 client frames', () => {
  it('parses each operation into a typed op', () => {
    assert.deepEqual(parse('{"type":"subscribe","id":"s1","channel":"room:a"}'), {
      ok: true,
      op: { type: 'subscribe', id: 's1', channel: 'room:a' },
    });
    assert.deepEqual(parse('{"type":"unsubscribe","id":2,"channel":"room:a"}'), {
      ok: true,
      op: { type: 'unsubscribe', id: 2, channel: 'room:a' },
    });
    assert.deepEqual(parse('{"id":3,"type":"publish","channel":"room:a","data":{"text":"hi","n":[1,2]}}'), {
      ok: true,
      op: { type: 'publish', id: 3, channel: 'room:a', data: { text: 'hi', n: [1, 2] } },
    });
    assert.deepEqual(parse('{"type":"publish","id":4,"channel":"c","data":null}'), {
      ok: true,
      op: { type: 'publish', id: 4, channel: 'c', data: null },
    });
    assert.deepEqual(parse('{"type":"auth.refresh","id":"r","token":"eyJ.x.y"}'), {
      ok: true,
      op: { type: 'auth.refresh', id: 'r', token: 'eyJ.x.y' },
    });
  });

  it('M-07 parses a subscribe with since {epoch, seq}', () => {
    assert.deepEqual(
      parse('{"type":"subscribe","id":1,"channel":"room:a","since":{"epoch":"Ab_-.9","seq":42}}'),
      {
        ok: true,
        op: { type: 'subscribe', id: 1, channel: 'room:a', since: { epoch: 'Ab_-.9', seq: 42 } },
      },
    );
    assert.deepEqual(parse('{"since":{"seq":0,"epoch":"e"},"type":"subscribe","id":1,"channel":"a"}'), {
      ok: true,
      op: { type: 'subscribe', id: 1, channel: 'a', since: { epoch: 'e', seq: 0 } },
    });
  });

  it('M-07 refuses a malformed since with BAD_REQUEST', () => {
    const frame = (since: string) => `{"type":"subscribe","id":1,"channel":"a","since":${since}}`;
    for (const since of [
      'null',
      '{}',
      '[]',
      '"e:1"',
      '{"epoch":"e"}',
      '{"seq":1}',
      '{"epoch":"","seq":1}',
      `{"epoch":"${'e'.repeat(65)}","seq":1}`,
      '{"epoch":"e e","seq":1}',
      '{"epoch":"é","seq":1}',
      '{"epoch":7,"seq":1}',
      '{"epoch":"e","seq":-1}',
      '{"epoch":"e","seq":1.5}',
      '{"epoch":"e","seq":"1"}',
      '{"epoch":"e","seq":9007199254740993}',
      '{"epoch":"e","seq":1,"channel":"user:bob"}',
      '{"epoch":"e","seq":1,"__proto__":{"x":1}}',
    ]) {
      assert.deepEqual(parse(frame(since)), { ok: false, code: 'BAD_REQUEST', id: 1 }, since);
    }
    assert.equal(
      parse(`{"type":"subscribe","id":1,"channel":"a","since":{"epoch":"${'e'.repeat(64)}","seq":1}}`).ok,
      true,
    );
    for (const type of ['unsubscribe', 'publish']) {
      const extra = type === 'publish' ? ',"data":1' : '';
      assert.deepEqual(
        parse(`{"type":"${type}","id":1,"channel":"a"${extra},"since":{"epoch":"e","seq":1}}`),
        { ok: false, code: 'BAD_REQUEST', id: 1 },
        `since is a subscribe field only (${type})`,
      );
    }
  });

  it('M-01 maps every malformed frame to its code, with the id only when it was valid', () => {
    const table: [string, string, (string | number)?][] = [
      ['{not json', 'BAD_JSON'],
      ['', 'BAD_JSON'],
      ['{"type":"subscribe","id":1,"channel":"a"', 'BAD_JSON'],
      ['{"type":"subscribe","id":1,"channel":"a"} x', 'BAD_JSON'],
      ['null', 'BAD_REQUEST'],
      ['42', 'BAD_REQUEST'],
      ['"subscribe"', 'BAD_REQUEST'],
      ['[{"type":"subscribe","id":1,"channel":"a"}]', 'BAD_REQUEST'],
      ['{}', 'BAD_REQUEST'],
      // ids
      ['{"type":"subscribe","channel":"a"}', 'BAD_REQUEST'],
      ['{"type":"subscribe","id":null,"channel":"a"}', 'BAD_REQUEST'],
      ['{"type":"subscribe","id":"","channel":"a"}', 'BAD_REQUEST'],
      [`{"type":"subscribe","id":"${'x'.repeat(65)}","channel":"a"}`, 'BAD_REQUEST'],
      ['{"type":"subscribe","id":1.5,"channel":"a"}', 'BAD_REQUEST'],
      ['{"type":"subscribe","id":1e400,"channel":"a"}', 'BAD_REQUEST'],
      ['{"type":"subscribe","id":9007199254740993,"channel":"a"}', 'BAD_REQUEST'],
      ['{"type":"subscribe","id":true,"channel":"a"}', 'BAD_REQUEST'],
      ['{"type":"subscribe","id":["a"],"channel":"a"}', 'BAD_REQUEST'],
      // types
      ['{"id":1,"channel":"a"}', 'BAD_REQUEST', 1],
      ['{"type":"sub","id":1,"channel":"a"}', 'BAD_REQUEST', 1],
      ['{"type":"Subscribe","id":1,"channel":"a"}', 'BAD_REQUEST', 1],
      ['{"type":"message","id":1,"channel":"a","data":1}', 'BAD_REQUEST', 1],
      ['{"type":"ack","id":1}', 'BAD_REQUEST', 1],
      ['{"type":"constructor","id":1}', 'BAD_REQUEST', 1],
      ['{"type":"__proto__","id":1}', 'BAD_REQUEST', 1],
      ['{"type":["subscribe"],"id":1,"channel":"a"}', 'BAD_REQUEST', 1],
      // field types
      ['{"type":"subscribe","id":1,"channel":42}', 'BAD_REQUEST', 1],
      ['{"type":"subscribe","id":"s","channel":null}', 'BAD_REQUEST', 's'],
      ['{"type":"subscribe","id":1,"channel":["a"]}', 'BAD_REQUEST', 1],
      ['{"type":"subscribe","id":1,"channel":{"name":"a"}}', 'BAD_REQUEST', 1],
      ['{"type":"auth.refresh","id":1,"token":42}', 'BAD_REQUEST', 1],
      ['{"type":"auth.refresh","id":1,"token":""}', 'BAD_REQUEST', 1],
      // missing and extra fields
      ['{"type":"subscribe","id":1}', 'BAD_REQUEST', 1],
      ['{"type":"publish","id":1,"channel":"a"}', 'BAD_REQUEST', 1],
      ['{"type":"auth.refresh","id":1}', 'BAD_REQUEST', 1],
      ['{"type":"subscribe","id":1,"channel":"a","data":1}', 'BAD_REQUEST', 1],
      ['{"type":"subscribe","id":1,"channel":"a","userId":"victim"}', 'BAD_REQUEST', 1],
      ['{"type":"publish","id":1,"channel":"a","data":1,"sub":"alice"}', 'BAD_REQUEST', 1],
      ['{"type":"auth.refresh","id":1,"token":"t","subject":"alice"}', 'BAD_REQUEST', 1],
      ['{"type":"subscribe","id":1,"channel":"a","__proto__":{"x":1}}', 'BAD_REQUEST', 1],
    ];
    for (const [text, code, id] of table) {
      const expected = id === undefined ? { ok: false, code } : { ok: false, code, id };
      assert.deepEqual(parse(text), expected, text);
    }
  });

  it('M-01 1,000 malformed frames in a row each get a code, none throws', () => {
    for (let i = 0; i < 1_000; i++) {
      assert.equal(parse(`{"type":"subscribe","id":${i},"channel":${i}}`).ok, false);
    }
  });

  it('M-02 refuses 60,000 nested arrays (as data too) before parsing', () => {
    const started = performance.now();
    assert.deepEqual(parse('['.repeat(60_000)), { ok: false, code: 'BAD_JSON' });
    const deepData = `{"type":"publish","id":1,"channel":"a","data":${'['.repeat(60_000)}${']'.repeat(60_000)}}`;
    assert.deepEqual(parse(deepData), { ok: false, code: 'BAD_JSON' });
    assert.ok(performance.now() - started < 100);
    const ok = `{"type":"publish","id":1,"channel":"a","data":${'['.repeat(DEPTH - 1)}${']'.repeat(DEPTH - 1)}}`;
    assert.equal(parse(ok).ok, true, 'the frame object plus 31 levels of data is exactly the limit');
    const over = `{"type":"publish","id":1,"channel":"a","data":${'['.repeat(DEPTH)}${']'.repeat(DEPTH)}}`;
    assert.deepEqual(parse(over), { ok: false, code: 'BAD_JSON' });
  });

  it('M-02 __proto__ and constructor keys leave Object.prototype untouched', () => {
    const texts = [
      '{"__proto__":{"polluted":1}}',
      '{"type":"publish","id":1,"channel":"a","data":{"__proto__":{"polluted":1}}}',
      '{"type":"publish","id":1,"channel":"a","data":{"constructor":{"prototype":{"polluted":1}}}}',
      '{"type":"subscribe","id":1,"channel":"a","__proto__":{"polluted":1}}',
    ];
    for (const text of texts) parse(text);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    const parsed = parse(texts[1] as string);
    assert.ok(parsed.ok && parsed.op.type === 'publish');
    assert.equal(JSON.stringify(parsed.op.data), '{"__proto__":{"polluted":1}}', 'carried as plain data');
  });

  it('M-02 refuses a 100,000-key object at the first unknown key', () => {
    const keys = Array.from({ length: 100_000 }, (_, i) => `"k${i}":0`).join(',');
    const text = Buffer.from(`{"type":"subscribe","id":1,"channel":"a",${keys}}`);
    assert.deepEqual(parseClientFrame(text, DEPTH), { ok: false, code: 'BAD_REQUEST', id: 1 });
  });
});

describe('portcullis.v1 server frames', () => {
  it('builds acks', () => {
    assert.equal(ackFrame('s1'), '{"type":"ack","id":"s1"}');
    assert.equal(ackFrame(7), '{"type":"ack","id":7}');
    assert.equal(subscribeAckFrame(7, 'E.x', 42), '{"type":"ack","id":7,"epoch":"E.x","seq":42}');
  });

  it('M-07 builds gap and reset frames', () => {
    assert.equal(gapFrame('room:a', 3, 7), '{"type":"gap","channel":"room:a","from":3,"to":7}');
    assert.equal(resetFrame('room:a'), '{"type":"gap","channel":"room:a","reset":true}');
  });

  it('builds error frames from ERRORS, never from the input', () => {
    assert.deepEqual(JSON.parse(errorFrame('FORBIDDEN', 'x')), {
      type: 'error',
      id: 'x',
      code: 'FORBIDDEN',
      message: ERRORS.FORBIDDEN.message,
    });
    assert.deepEqual(JSON.parse(errorFrame('BAD_JSON')), {
      type: 'error',
      code: 'BAD_JSON',
      message: ERRORS.BAD_JSON.message,
    });
    assert.deepEqual(JSON.parse(errorFrame('FORBIDDEN', undefined, 'user:alice')), {
      type: 'error',
      channel: 'user:alice',
      code: 'FORBIDDEN',
      message: ERRORS.FORBIDDEN.message,
    });
  });

  it('builds message frames around data serialised once', () => {
    const frame = messageFrame('room:a', 3, JSON.stringify({ text: 'hi "there"' }));
    assert.equal(frame, '{"type":"message","channel":"room:a","seq":3,"data":{"text":"hi \\"there\\""}}');
    assert.deepEqual(JSON.parse(frame), {
      type: 'message',
      channel: 'room:a',
      seq: 3,
      data: { text: 'hi "there"' },
    });
  });
});

describe('M-07 planResume', () => {
  it('decides replay, gap or reset from since, the epoch, the latest seq and the oldest retained seq', () => {
    // [since.epoch, since.seq, latest seq, oldest retained (latest + 1 when none), plan]
    const table: [string, number, number, number, ResumePlan][] = [
      ['E', 10, 10, 1, { kind: 'current' }],
      ['E', 10, 10, 11, { kind: 'current' }],
      ['E', 0, 0, 1, { kind: 'current' }],
      ['E', 7, 10, 1, { kind: 'replay', after: 7 }],
      ['E', 7, 10, 8, { kind: 'replay', after: 7 }],
      ['E', 0, 10, 1, { kind: 'replay', after: 0 }],
      ['E', 7, 10, 9, { kind: 'gap', from: 8, to: 8 }],
      ['E', 2, 10, 8, { kind: 'gap', from: 3, to: 7 }],
      ['E', 2, 10, 11, { kind: 'gap', from: 3, to: 10 }],
      ['E', 11, 10, 1, { kind: 'reset' }],
      ['other', 10, 10, 1, { kind: 'reset' }],
      ['other', 0, 0, 1, { kind: 'reset' }],
    ];
    for (const [epoch, seq, latest, oldest, plan] of table) {
      assert.deepEqual(
        planResume({ epoch, seq }, 'E', latest, oldest),
        plan,
        `${epoch} ${seq} ${latest} ${oldest}`,
      );
    }
  });
});
