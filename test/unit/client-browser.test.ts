// The browser build over a fake WebSocket: the token goes in the subprotocol list, close codes
// stay within what a page may send, maxPayload holds, and failures before the open back off.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type BrowserWebSocket, connect } from '../../src/client/browser.js';
import type { CloseEvent } from '../../src/client/client.js';

class FakeSocket implements BrowserWebSocket {
  static made: FakeSocket[] = [];
  protocol = '';
  bufferedAmount = 0;
  readyState = 0;
  binaryType = 'blob';
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  readonly sent: unknown[] = [];
  closedWith: [number | undefined, string | undefined] | undefined;
  constructor(
    readonly url: string,
    readonly protocols: string[] = [],
  ) {
    FakeSocket.made.push(this);
  }
  send(data: unknown): void {
    this.sent.push(data);
  }
  close(code?: number, reason?: string): void {
    if (code !== undefined && code !== 1000 && (code < 3000 || code > 4999)) {
      throw new Error('InvalidAccessError: a page may only send 1000 or 3000..4999');
    }
    this.closedWith = [code, reason];
    queueMicrotask(() => this.onclose?.({ code: code ?? 1005, reason: reason ?? '' }));
  }
  open(protocol = ''): void {
    this.protocol = protocol;
    this.readyState = 1;
    this.onopen?.({});
  }
}

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));
const last = () => FakeSocket.made[FakeSocket.made.length - 1] as FakeSocket;

describe('browser build', () => {
  it('C-07 sends the token as a portcullis.bearer. subprotocol entry and binary as arraybuffer', async () => {
    const client = connect('wss://gw.test/live', {
      WebSocket: FakeSocket,
      protocols: ['portcullis.v1'],
      token: async () => 'tok-123',
      reconnect: false,
    });
    await settle();
    assert.equal(last().url, 'wss://gw.test/live');
    assert.deepEqual(last().protocols, ['portcullis.v1', 'portcullis.bearer.tok-123']);
    assert.equal(last().binaryType, 'arraybuffer');
    last().open('portcullis.v1');
    const got: unknown[] = [];
    client.on('message', (m) => got.push(m));
    last().onmessage?.({ data: new Uint8Array([1, 2]).buffer });
    last().onmessage?.({ data: 'text' });
    assert.deepEqual(got, [new Uint8Array([1, 2]), 'text']);
    client.close();
  });

  it('C-02 a message over maxPayload never reaches the application; the close code is one a page may send', async () => {
    const client = connect('wss://gw.test/x', { WebSocket: FakeSocket, maxPayload: 8, reconnect: false });
    const closes: CloseEvent[] = [];
    client.on('close', (e) => closes.push(e));
    await settle();
    last().open();
    const got: unknown[] = [];
    client.on('message', (m) => got.push(m));
    last().onmessage?.({ data: 'x'.repeat(9) });
    last().onmessage?.({ data: 'late' });
    await settle();
    assert.deepEqual(got, []);
    assert.deepEqual(last().closedWith, [4009, 'MESSAGE_TOO_BIG']);
    assert.equal(closes[0]?.errorCode, 'MESSAGE_TOO_BIG');
  });

  it('a failure before the open is CONNECTION_FAILED and backs off', async () => {
    const client = connect('wss://gw.test/x', {
      WebSocket: FakeSocket,
      reconnect: { initialDelayMs: 10, maxDelayMs: 10, maxAttempts: 1 },
    });
    const closes: CloseEvent[] = [];
    client.on('close', (e) => closes.push(e));
    await settle();
    last().onclose?.({ code: 1006, reason: '' });
    assert.equal(closes[0]?.errorCode, 'CONNECTION_FAILED');
    assert.equal(closes[0]?.reconnecting, true);
    client.close();
  });

  it('after the open, the gateway close reason decides', async () => {
    const client = connect('wss://gw.test/x', {
      WebSocket: FakeSocket,
      reconnect: { initialDelayMs: 10, maxDelayMs: 10 },
    });
    const closes: CloseEvent[] = [];
    client.on('close', (e) => closes.push(e));
    await settle();
    last().open();
    last().onclose?.({ code: 4403, reason: 'ORIGIN_NOT_ALLOWED' });
    assert.deepEqual(
      { errorCode: closes[0]?.errorCode, reconnecting: closes[0]?.reconnecting },
      { errorCode: 'ORIGIN_NOT_ALLOWED', reconnecting: false },
    );
  });

  it('without a WebSocket implementation connect throws', () => {
    const g = globalThis as { WebSocket?: unknown };
    const saved = g.WebSocket;
    delete g.WebSocket;
    try {
      assert.throws(() => connect('wss://gw.test/x'), /no WebSocket implementation/);
    } finally {
      if (saved !== undefined) g.WebSocket = saved;
    }
  });
});
