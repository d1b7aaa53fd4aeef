// Application-layer rows on a route with a JSON Schema (routes[].schema).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { canary, echoRoute, startGateway, type TestGateway, writeTempFile } from '../helpers/gateway.js';
import { closePayload, F, upgraded } from '../helpers/raw.js';

const SCHEMA = {
  type: 'object',
  properties: { type: { enum: ['chat', 'ping'] }, text: { type: 'string', maxLength: 200 } },
  required: ['type'],
  additionalProperties: false,
};

describe('messages on a schema route', () => {
  let gw: TestGateway;
  before(async () => {
    const schema = writeTempFile('chat.json', JSON.stringify(SCHEMA));
    gw = await startGateway({ routes: [echoRoute(), echoRoute({ path: '/chat', schema })] });
  });
  after(() => gw.close());

  async function closeCodeFor(frame: Buffer): Promise<{ code: number; reason: string; echoed: number }> {
    const client = await upgraded(gw.port, gw.ca, '/chat');
    client.write(frame);
    const close = await client.readClose();
    client.write(F(0x88, closePayload(close.code)));
    await client.waitClosed();
    return { code: close.code, reason: close.reason, echoed: close.before.length };
  }

  it('delivers a message that satisfies the schema', async () => {
    const client = await upgraded(gw.port, gw.ca, '/chat');
    client.write(F(0x81, '{"type":"chat","text":"hi"}'));
    const frame = await client.readFrame();
    assert.equal(frame.opcode, 1);
    assert.equal(frame.payload.toString(), '{"type":"chat","text":"hi"}');
    client.destroy();
  });

  it('F-10 closes with 1003 UNSUPPORTED_DATA on a binary frame to a JSON route', async () => {
    const result = await closeCodeFor(F(0x82, Buffer.from([0x00, 0xff])));
    assert.deepEqual(result, { code: 1003, reason: 'UNSUPPORTED_DATA', echoed: 0 });
    await canary(gw);
  });

  it('M-01 closes with 1007 BAD_JSON on invalid JSON and 1008 SCHEMA_VIOLATION on a wrong shape, echoing nothing', async () => {
    assert.deepEqual(await closeCodeFor(F(0x81, '{not json')), { code: 1007, reason: 'BAD_JSON', echoed: 0 });
    for (const bad of [
      '{"type":"sub","channel":42}',
      '{"type":"chat","extra":1}',
      '{"type":"chat","text":7}',
      '[]',
    ]) {
      assert.deepEqual(
        await closeCodeFor(F(0x81, bad)),
        { code: 1008, reason: 'SCHEMA_VIOLATION', echoed: 0 },
        bad,
      );
    }
    const audit = gw.logs.filter((l) => l.event === 'close' && l.route === '/chat').map((l) => l.code);
    assert.ok(audit.includes('BAD_JSON') && audit.includes('SCHEMA_VIOLATION'));
    assert.ok(!gw.rawLog().includes('"extra"'));
    await canary(gw);
  });

  it('M-02 refuses 60,000-deep nesting and leaves Object.prototype untouched by __proto__ keys', async () => {
    const started = performance.now();
    assert.deepEqual(await closeCodeFor(F(0x81, '['.repeat(60_000))), {
      code: 1007,
      reason: 'BAD_JSON',
      echoed: 0,
    });
    assert.ok(performance.now() - started < 1_000);
    assert.deepEqual(await closeCodeFor(F(0x81, '{"__proto__":{"polluted":1},"type":"chat"}')), {
      code: 1008,
      reason: 'SCHEMA_VIOLATION',
      echoed: 0,
    });
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    await canary(gw);
  });

  it('refuses to start with a schema file that is not a valid JSON Schema', async () => {
    const bad = writeTempFile('bad.json', '{"type":"object","propertiez":{}}');
    writeFileSync(bad, '{"type":"object","propertiez":{}}');
    await assert.rejects(startGateway({ routes: [echoRoute({ schema: bad })] }), /schema/);
  });
});
