// The default log destination: lines held to log.bufferBytes and written together, flushed on
// demand and by the gateway's timer, and bounded by log.maxPendingBytes with drops counted.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import WebSocket from 'ws';
import { parseConfig } from '../../src/config/load.js';
import { createLogDestination, createLogger } from '../../src/server/audit.js';
import { createGateway } from '../../src/server/gateway.js';
import { certFiles, echoRoute } from '../helpers/gateway.js';
import { sleep, until } from '../helpers/wait.js';

const tempFile = () => join(mkdtempSync(join(tmpdir(), 'portcullis-log-')), 'audit.log');
const flushed = (stream: { flush(cb: () => void): void }) =>
  new Promise<void>((resolve) => stream.flush(() => resolve()));
const read = (path: string) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};

describe('log destination', () => {
  it('holds short lines until bufferBytes and writes them on flush', async () => {
    const path = tempFile();
    const dest = createLogDestination({ bufferBytes: 4096, maxPendingBytes: 65_536 }, () => {}, path);
    const log = createLogger('info', dest);
    log.info({ event: 'handshake', n: 1 });
    log.info({ event: 'handshake', n: 2 });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(read(path), '', 'nothing written before the buffer fills or a flush');
    await flushed(log);
    const lines = read(path)
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      lines.map((l) => l.n),
      [1, 2],
    );
  });

  it('writes each line at once with bufferBytes 0', async () => {
    const path = tempFile();
    const log = createLogger(
      'info',
      createLogDestination({ bufferBytes: 0, maxPendingBytes: 65_536 }, () => {}, path),
    );
    log.info({ event: 'close' });
    await until(() => read(path).includes('"close"'), 'the line', 2_000);
  });

  it('drops and counts lines beyond maxPendingBytes instead of growing', async () => {
    const path = tempFile();
    let dropped = 0;
    const dest = createLogDestination(
      { bufferBytes: 16_000, maxPendingBytes: 65_536 },
      () => dropped++,
      path,
    );
    const log = createLogger('info', dest);
    const filler = 'x'.repeat(1000);
    for (let i = 0; i < 200; i++) log.info({ event: 'filler', filler });
    assert.ok(dropped > 0, 'lines past the bound are dropped');
    await flushed(log);
    const written = read(path).trim().split('\n').length;
    assert.equal(written + dropped, 200, 'every line is either written or counted');
  });
});

describe('gateway log flushing', () => {
  async function gatewayLoggingTo(path: string, flushIntervalMs: number) {
    const files = await certFiles();
    const config = parseConfig({
      listen: { host: '127.0.0.1', port: 0 },
      tls: { cert: files.cert, key: files.key },
      routes: [echoRoute()],
      log: { bufferBytes: 8192, flushIntervalMs },
    });
    const gateway = createGateway(config, {
      logDestination: createLogDestination(config.log, () => {}, path),
    });
    const { port } = await gateway.listen();
    const open = async () => {
      const ws = new WebSocket(`wss://127.0.0.1:${port}/echo`, {
        ca: readFileSync(files.ca),
        origin: 'https://app.test',
      });
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      return ws;
    };
    return { gateway, open };
  }

  it('writes the listening line at once and holds the rest until close when the interval is long', async () => {
    const path = tempFile();
    const { gateway, open } = await gatewayLoggingTo(path, 60_000);
    try {
      await until(() => read(path).includes('"event":"listening"'), 'the listening line');
      await open();
      await sleep(200);
      assert.doesNotMatch(read(path), /"event":"handshake"/, 'held in the buffer');
    } finally {
      await gateway.close();
    }
    assert.match(read(path), /"event":"handshake"/);
    assert.match(read(path), /"event":"close"/);
    assert.match(read(path), /"event":"stopped"/);
    assert.equal(gateway.stats.logLinesDropped, 0);
  });

  it('writes a buffered audit line within log.flushIntervalMs', async () => {
    const path = tempFile();
    const { gateway, open } = await gatewayLoggingTo(path, 50);
    try {
      const ws = await open();
      await until(() => read(path).includes('"event":"handshake"'), 'the handshake line', 2_000);
      ws.close();
    } finally {
      await gateway.close();
    }
  });
});
