// `connect()` for Node: the shared options plus pinning, mutual TLS, Origin and headers. Every
// check that can fail does so here, synchronously, before a socket exists (C-04, C-08).
import { Client, type CredentialUpdate } from './client.js';
import { type BaseConnectOptions, CLIENT_DEFAULTS, resolveBaseOptions } from './options.js';
import { checkPinSet, type PinScope, pinningIdentityCheck } from './pins.js';
import { nodeDial, type TlsSettings } from './transport-node.js';

/** PEM text or bytes. */
export type Pem = string | Buffer;

/** Client certificate and trust settings that may change while the client runs. */
export interface TlsCredentials {
  /** CA certificates to trust instead of Node's bundle (a private CA). */
  ca?: Pem | Pem[];
  /** Client certificate for mutual TLS (PEM), with its key. */
  cert?: Pem;
  key?: Pem;
  passphrase?: string;
}

/** Options of the Node `connect`. */
export interface ConnectOptions extends BaseConnectOptions, TlsCredentials {
  /**
   * SPKI pins, `sha256/<base64>`: at least two (the current key and a backup). Checked on every
   * connection after CA and hostname verification; a mismatch is PIN_MISMATCH and is not retried.
   */
  pins?: readonly string[];
  /** 'chain' (default): a pin may match any certificate of the verified chain; 'leaf': the server's own. */
  pinScope?: PinScope;
  /** Only `false` has an effect, and it is refused with pins or in production mode. */
  rejectUnauthorized?: boolean;
  /** The Origin header (a browser-like client; servers allow listed origins only). */
  origin?: string;
  /** Extra request headers. Not Authorization when `token` is set, nor any WebSocket header. */
  headers?: Readonly<Record<string, string>>;
  /** Fragments in one message before the connection fails with 1008 (default 1024). */
  maxFragments?: number;
  /** How long close() waits for the server's close frame before dropping the socket (default 5 s). */
  closeTimeoutMs?: number;
}

/** A client with the Node-only credential update (certificate and key). */
export class NodeClient extends Client {
  private readonly updateTls: (update: TlsCredentials) => void;

  /** @internal Use connect(). */
  constructor(
    options: ConstructorParameters<typeof Client>[0],
    dial: ConstructorParameters<typeof Client>[1],
    updateTls: (update: TlsCredentials) => void,
  ) {
    super(options, dial);
    this.updateTls = updateTls;
  }

  /**
   * Replaces the token and/or the client certificate for the next attempt; a client stopped by
   * CLIENT_CERT_REJECTED (or another credential refusal) reconnects at once.
   */
  override setCredentials(update: CredentialUpdate & TlsCredentials): void {
    this.updateTls(update);
    super.setCredentials(update);
  }
}

// Headers the WebSocket handshake owns, or that the SDK sets from options.
const RESERVED_HEADERS =
  /^(host|upgrade|connection|origin|sec-websocket-.*|content-length|transfer-encoding)$/i;

/** True when the process runs in production mode (NODE_ENV=production): stricter defaults. */
export function productionFromEnv(): boolean {
  return process.env.NODE_ENV === 'production';
}

/**
 * Connects to a Portcullis gateway (or any WebSocket server). Returns at once; the first attempt
 * starts on the next microtask. Throws a TypeError for an option that would weaken security.
 */
export function connect(url: string | URL, options: ConnectOptions = {}): NodeClient {
  const production = options.production ?? productionFromEnv();
  const base = resolveBaseOptions(url, options, production);
  const pins = options.pins === undefined ? undefined : checkPinSet(options.pins);
  const pinScope = options.pinScope ?? 'chain';
  if (pinScope !== 'chain' && pinScope !== 'leaf') throw new TypeError("pinScope must be 'leaf' or 'chain'");
  const rejectUnauthorized = options.rejectUnauthorized !== false;
  if (!rejectUnauthorized && pins) {
    throw new TypeError('rejectUnauthorized: false is refused with pins: pinning adds to CA verification');
  }
  if (production && !rejectUnauthorized) {
    throw new TypeError('rejectUnauthorized: false is refused in production mode');
  }
  // The SDK always passes rejectUnauthorized explicitly, so this variable cannot weaken it; in
  // production its presence means a misconfigured process, and starting anyway would hide that.
  if (production && process.env.NODE_TLS_REJECT_UNAUTHORIZED === '0') {
    throw new TypeError('NODE_TLS_REJECT_UNAUTHORIZED=0 is refused in production mode');
  }
  if (pins && base.url.protocol !== 'wss:') throw new TypeError('pins need a wss:// URL');
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new TypeError('cert and key go together');
  }
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    if (RESERVED_HEADERS.test(name)) throw new TypeError(`header ${name} is set by the SDK`);
    if (/^authorization$/i.test(name) && options.token !== undefined) {
      throw new TypeError('Authorization and token are exclusive');
    }
    if (typeof value !== 'string' || /[\r\n\0]/.test(value)) throw new TypeError(`header ${name} is invalid`);
    headers[name] = value;
  }
  if (
    options.origin !== undefined &&
    (typeof options.origin !== 'string' || /[\r\n\0]/.test(options.origin))
  ) {
    throw new TypeError('origin must be a string');
  }
  const maxFragments = positiveInteger('maxFragments', options.maxFragments, CLIENT_DEFAULTS.maxFragments);
  const closeTimeoutMs = positiveInteger(
    'closeTimeoutMs',
    options.closeTimeoutMs,
    CLIENT_DEFAULTS.closeTimeoutMs,
  );

  let credentials: TlsCredentials = pick(options);
  const checkServerIdentity = pins ? pinningIdentityCheck(pins, pinScope) : undefined;
  const tls = (): TlsSettings => ({ ...credentials, rejectUnauthorized, checkServerIdentity });
  if (!rejectUnauthorized) base.debug?.('portcullis/client: WARNING certificate verification is disabled');
  const dial = nodeDial({
    origin: options.origin,
    headers,
    maxPayload: base.maxPayload,
    maxFragments,
    handshakeTimeoutMs: base.handshakeTimeoutMs,
    closeTimeoutMs,
    tls,
    now: () => base.timers.now(),
  });
  return new NodeClient(base, dial, (update) => {
    const next = { ...credentials, ...pick(update) };
    if ((next.cert === undefined) !== (next.key === undefined))
      throw new TypeError('cert and key go together');
    credentials = next;
  });
}

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0) throw new TypeError(`${name} must be a positive integer`);
  return value;
}

function pick(source: TlsCredentials): TlsCredentials {
  const out: TlsCredentials = {};
  if (source.ca !== undefined) out.ca = source.ca;
  if (source.cert !== undefined) out.cert = source.cert;
  if (source.key !== undefined) out.key = source.key;
  if (source.passphrase !== undefined) out.passphrase = source.passphrase;
  return out;
}
