// The Node transport: one ws client per attempt, over a socket this file opens itself so that
// every TLS option is explicit (no agent, no saved session, no proxy, no redirects) and the facts
// the classifier needs (TLS version, when the handshake ended, whether any response came) are known.
import type { ClientRequest, IncomingMessage } from 'node:http';
import { isIP, connect as netConnect, type Socket } from 'node:net';
import {
  type ConnectionOptions,
  type PeerCertificate,
  type TLSSocket,
  connect as tlsConnect,
} from 'node:tls';
import WebSocket from 'ws';
import { classifyRefusal, classifySocketError, type Failure } from './classify.js';
import type { Dial, Message, Transport } from './client.js';
import { PinMismatchError } from './pins.js';

/** The TLS settings of one attempt (read per attempt: credentials can change). */
export interface TlsSettings {
  readonly ca?: string | Buffer | (string | Buffer)[] | undefined;
  readonly cert?: string | Buffer | undefined;
  readonly key?: string | Buffer | undefined;
  readonly passphrase?: string | undefined;
  readonly rejectUnauthorized: boolean;
  readonly checkServerIdentity?: ((host: string, cert: PeerCertificate) => Error | undefined) | undefined;
}

/** What the Node transport needs besides the per-attempt request. */
export interface NodeTransportConfig {
  readonly origin: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly maxPayload: number;
  readonly maxFragments: number;
  readonly handshakeTimeoutMs: number;
  readonly closeTimeoutMs: number;
  tls(): TlsSettings;
  now(): number;
}

/** Bytes of a refusal body read to find its `code`; the rest is ignored. */
const MAX_REFUSAL_BODY_BYTES = 4096;
const REFUSAL_BODY_TIMEOUT_MS = 2_000;
/** Automatic pongs left unread before ws fails the connection (a ping flood, threats.md C-02). */
const MAX_PENDING_AUTO_PONGS = 60;

/** A Dial over ws. */
export function nodeDial(config: NodeTransportConfig): Dial {
  return (request, handlers) => {
    const tls = config.tls();
    const secure = request.url.protocol === 'wss:';
    const headers: Record<string, string> = { ...config.headers };
    if (request.token !== undefined) headers.Authorization = `Bearer ${request.token}`;
    let failure: Failure | undefined;
    let tlsSocket: TLSSocket | undefined;
    let secureAt: number | undefined;
    let responded = false;
    let upgraded = false;
    let opened = false;

    const createConnection = (opts: { host?: string; port?: number | string }): Socket => {
      const host = opts.host ?? request.url.hostname;
      const port = Number(opts.port);
      if (!secure) return netConnect({ host, port });
      const options: ConnectionOptions = {
        host,
        port,
        rejectUnauthorized: tls.rejectUnauthorized,
        minVersion: 'TLSv1.2',
        // No `session`: every connection makes a full handshake, so the pin check always runs.
      };
      if (isIP(host) === 0) options.servername = host;
      if (tls.ca !== undefined) options.ca = tls.ca;
      if (tls.cert !== undefined) options.cert = tls.cert;
      if (tls.key !== undefined) options.key = tls.key;
      if (tls.passphrase !== undefined) options.passphrase = tls.passphrase;
      if (tls.checkServerIdentity) options.checkServerIdentity = tls.checkServerIdentity;
      const socket = tlsConnect(options);
      socket.once('secureConnect', () => {
        secureAt = config.now();
      });
      tlsSocket = socket;
      return socket;
    };

    const ws = new WebSocket(request.url, [...request.protocols], {
      headers,
      ...(config.origin === undefined ? {} : { origin: config.origin }),
      maxPayload: config.maxPayload,
      maxFragments: config.maxFragments,
      maxPendingAutoPongs: MAX_PENDING_AUTO_PONGS,
      followRedirects: false,
      perMessageDeflate: false,
      skipUTF8Validation: false,
      autoPong: true,
      handshakeTimeout: config.handshakeTimeoutMs,
      closeTimeout: config.closeTimeoutMs,
      createConnection: createConnection as unknown as WebSocket.ClientOptions['createConnection'],
    } as WebSocket.ClientOptions);

    const fail = (next: Failure) => {
      failure ??= next;
    };

    ws.on('upgrade', () => {
      responded = true;
      upgraded = true;
    });
    ws.on('unexpected-response', (req: ClientRequest, res: IncomingMessage) => {
      responded = true;
      readRefusal(res, (body) => {
        const retryAfter = res.headers['retry-after'];
        fail(classifyRefusal({ status: res.statusCode ?? 0, body, retryAfter, now: config.now() }));
        req.destroy();
        ws.terminate();
      });
    });
    ws.on('open', () => {
      opened = true;
      handlers.open(ws.protocol);
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      handlers.message(isBinary ? data : data.toString('utf8'));
    });
    ws.on('error', (err: NodeJS.ErrnoException) => {
      fail(
        classifySocketError({
          errorCode: err.code,
          message: err.message,
          tlsVersion: tlsSocket?.getProtocol() ?? undefined,
          msSinceSecure: secureAt === undefined ? undefined : config.now() - secureAt,
          clientCert: tls.cert !== undefined,
          responded,
          upgraded,
          opened,
          pinMismatch: err instanceof PinMismatchError ? err.info : undefined,
        }),
      );
    });
    ws.on('close', (code: number, reason: Buffer) => {
      handlers.close(code, reason.toString('utf8'), failure);
    });

    const transport: Transport = {
      get bufferedAmount() {
        return ws.bufferedAmount;
      },
      send(data: Message) {
        ws.send(data);
      },
      close(code: number, reason: string) {
        if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
        else ws.close(code, reason);
      },
      pause() {
        ws.pause();
      },
      resume() {
        ws.resume();
      },
    };
    return transport;
  };
}

/** Reads at most MAX_REFUSAL_BODY_BYTES of a refusal and parses it as JSON (undefined if it is not). */
function readRefusal(res: IncomingMessage, done: (body: unknown) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      body = undefined;
    }
    done(body);
  };
  const timer = setTimeout(finish, REFUSAL_BODY_TIMEOUT_MS);
  res.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > MAX_REFUSAL_BODY_BYTES) return finish();
    chunks.push(chunk);
  });
  res.once('end', finish);
  res.once('error', finish);
  res.once('close', finish);
}
