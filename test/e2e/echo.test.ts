import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { closed, nextMessage, openClient, startGateway, type TestGateway } from '../helpers/gateway.js';
import { F, HS, RawClient, upgraded } from '../helpers/raw.js';

describe('echo route over real TLS', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway();
  });
  after(() => gw.close());

  it('echoes text as text and binary as binary', async () => {
    const ws = await openClient(gw);
    const text = nextMessage(ws);
    ws.send('hello');
    const t = await text;
    assert.equal(t.data.toString(), 'hello');
    assert.equal(t.isBinary, false);
    const bin = nextMessage(ws);
    ws.send(Buffer.from([0, 1, 2, 255]));
    const b = await bin;
    assert.deepEqual([...b.data], [0, 1, 2, 255]);
    assert.equal(b.isBinary, true);
    ws.close(1000);
    assert.equal((await closed(ws)).code, 1000);
  });

  it('answers the 101 with HSTS and no subprotocol when none is configured', async () => {
    const client = await RawClient.connect(gw.port, gw.ca);
    client.write(HS());
    const res = await client.readResponse();
    assert.equal(res.status, 101);
    assert.match(res.headers['strict-transport-security'] ?? '', /max-age=31536000; includeSubDomains/);
    assert.equal(res.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    assert.equal(res.headers['sec-websocket-protocol'], undefined);
    client.destroy();
  });

  it('writes one audit line per handshake and per close, without the message body', async () => {
    const client = await upgraded(gw.port, gw.ca);
    client.write(F(0x81, 'SECRET-BODY-123'));
    const echo = await client.readFrame();
    assert.equal(echo.payload.toString(), 'SECRET-BODY-123');
    client.write(F(0x88, Buffer.from([0x03, 0xe8])));
    const close = await client.readClose();
    assert.equal(close.code, 1000);
    await client.waitClosed();
    await new Promise((r) => setTimeout(r, 50));
    const accepted = gw.logs.filter((l) => l.event === 'handshake' && l.outcome === 'accepted');
    assert.ok(accepted.length >= 1);
    const last = accepted.at(-1) as Record<string, unknown>;
    assert.equal(last.route, '/echo');
    assert.equal(last.status, 101);
    assert.deepEqual(Object.keys(last.tls as object).sort(), ['clientCert', 'version']);
    const closes = gw.logs.filter((l) => l.event === 'close');
    assert.ok(closes.some((c) => c.messagesIn === 1 && c.bytesIn === 15 && c.closeCode === 1000));
    assert.ok(!gw.rawLog().includes('SECRET-BODY-123'));
  });
});
