// The browser build: `import { connect } from 'portcullis/client/browser'`. The same client over
// the platform's WebSocket, minus what a browser cannot do: no pinning, no client certificates,
// no headers (the token travels in the `portcullis.bearer.` subprotocol, never in the URL).
// No Node imports, here or in anything this file imports (a test checks).

import { classifyClose, type Failure } from './classify.js';
import { Client, type Dial, type Transport } from './client.js';
import { retryOf } from './errors.js';
import { type BaseConnectOptions, resolveBaseOptions } from './options.js';
import { BEARER_PROTOCOL_PREFIX } from './token.js';

export * from './shared-exports.js';
export { BEARER_PROTOCOL_PREFIX, type TokenProvider, type TokenReason } from './token.js';

/** The part of the WebSocket API the browser transport uses. */
export interface BrowserWebSocket {
  readonly protocol: string;
  readonly bufferedAmount: number;
  readonly readyState: number;
  binaryType: string;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string | ArrayBufferView | ArrayBuffer): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor (the global one by default). */
export type BrowserWebSocketConstructor = new (url: string, protocols?: string[]) => BrowserWebSocket;

/** Options of the browser `connect`. */
export interface BrowserConnectOptions extends BaseConnectOptions {
  /** The WebSocket implementation (default: globalThis.WebSocket). */
  WebSocket?: BrowserWebSocketConstructor;
}

/**
 * Connects from a browser. Production mode defaults to on when the page itself was served over
 * https:, so such a page never opens ws:// (threats.md C-08). Throws a TypeError on a bad option.
 */
export function connect(url: string | URL, options: BrowserConnectOptions = {}): Client {
  const page = (globalThis as { location?: { protocol?: string } }).location;
  const production = options.production ?? page?.protocol === 'https:';
  const base = resolveBaseOptions(url, options, production);
  const Impl = options.WebSocket ?? (globalThis as { WebSocket?: BrowserWebSocketConstructor }).WebSocket;
  if (!Impl) throw new TypeError('no WebSocket implementation: pass options.WebSocket');
  return new Client(base, browserDial(Impl, base.maxPayload));
}

function browserDial(Impl: BrowserWebSocketConstructor, maxPayload: number): Dial {
  return (request, handlers) => {
    const protocols = [...request.protocols];
    // A browser cannot set Authorization; the gateway reads this entry and never echoes it.
    if (request.token !== undefined) protocols.push(`${BEARER_PROTOCOL_PREFIX}${request.token}`);
    const ws = new Impl(request.url.href, protocols);
    ws.binaryType = 'arraybuffer';
    let opened = false;
    let localFailure: Failure | undefined;
    const failLocally = (code: 'MESSAGE_TOO_BIG', closeCode: number) => {
      localFailure ??= { code, retry: retryOf(code) };
      ws.close(scriptCloseCode(closeCode), code);
    };
    ws.onopen = () => {
      opened = true;
      handlers.open(ws.protocol);
    };
    ws.onmessage = (event) => {
      if (localFailure) return;
      const { data } = event;
      if (typeof data === 'string') {
        // The browser has already read the message; what the limit protects here is the application.
        if (data.length > maxPayload / 3 && new TextEncoder().encode(data).length > maxPayload) {
          return failLocally('MESSAGE_TOO_BIG', 1009);
        }
        handlers.message(data);
      } else if (data instanceof ArrayBuffer) {
        if (data.byteLength > maxPayload) return failLocally('MESSAGE_TOO_BIG', 1009);
        handlers.message(new Uint8Array(data));
      }
    };
    ws.onclose = (event) => {
      // A browser hides why a handshake failed (status, TLS): before the open it is CONNECTION_FAILED.
      const failure: Failure | undefined =
        localFailure ??
        (opened ? undefined : { code: 'CONNECTION_FAILED', retry: retryOf('CONNECTION_FAILED') });
      handlers.close(event.code, event.reason, failure ?? classifyClose(event.code, event.reason));
    };
    ws.onerror = () => {
      // Always followed by close, which reports.
    };
    const transport: Transport = {
      get bufferedAmount() {
        return ws.bufferedAmount;
      },
      send(data) {
        ws.send(data);
      },
      close(code, reason) {
        ws.close(scriptCloseCode(code), reason);
      },
    };
    return transport;
  };
}

/**
 * A close code a page may send: the WebSocket API allows only 1000 and 3000..4999, so an RFC 6455
 * code the client means (1008, 1009) goes out as 4000 + its last three digits; the reason names it.
 */
function scriptCloseCode(code: number): number {
  return code === 1000 || (code >= 3000 && code <= 4999) ? code : 4000 + (code % 1000);
}
