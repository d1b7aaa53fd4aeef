// The one HTTPS client for the calls authenticators make to identity services (JWKS, webhook,
// cookie introspection): https only, an optional private CA on top of the public roots, a capped
// socket pool, one deadline for the whole exchange, a capped response body, and no redirects
// followed. https-post.ts is the JSON-POST layer over it.
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, request } from 'node:https';
import { rootCertificates } from 'node:tls';

/** Default cap on a response body: a JWKS or an identity answer is a few KiB. */
export const DEFAULT_MAX_RESPONSE_BYTES = 1_048_576;

/** Default cap on sockets per host, so a burst of handshakes cannot open unbounded connections. */
export const DEFAULT_MAX_SOCKETS = 64;

/** How the client trusts servers and reuses connections. */
export interface HttpsClientOptions {
  /**
   * PEM file of extra CA certificates, trusted on top of Node's root store (so a private CA works
   * without NODE_EXTRA_CA_CERTS). Without it, Node's default trust applies, NODE_EXTRA_CA_CERTS included.
   */
  readonly caFile?: string | undefined;
  /** Keep connections open between calls (for per-handshake callers such as a webhook). */
  readonly keepAlive?: boolean;
  /** Sockets open at once per host; further requests wait for one (DEFAULT_MAX_SOCKETS). */
  readonly maxSockets?: number;
}

/** One request. */
export interface HttpsRequest {
  readonly method?: 'GET' | 'POST';
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Uint8Array;
  /** Deadline for connect, TLS, request and the whole response body. */
  readonly timeoutMs: number;
  readonly maxBodyBytes?: number;
  /**
   * Decides from the status and headers whether the body is worth reading. When it says no, the
   * response resolves with an empty body and its connection is dropped, so a caller that will
   * refuse the answer anyway (an error status, a wrong content type) never reads, or caps, its body.
   */
  readonly wantBody?: (status: number, headers: IncomingHttpHeaders) => boolean;
  /** Aborts the exchange; it rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/** A complete response; redirects are returned as they are, never followed. */
export interface HttpsResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** Why a request failed, for the operator's log (never sent to a client); `tls` is a trust failure. */
export type HttpsFailure = 'not_https' | 'timeout' | 'too_large' | 'network' | 'tls';

/** A failed exchange; `cause` holds the socket or TLS error when there is one. */
export class HttpsFetchError extends Error {
  readonly failure: HttpsFailure;
  constructor(failure: HttpsFailure, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'HttpsFetchError';
    this.failure = failure;
  }
}

// OpenSSL verification codes (CERT_HAS_EXPIRED, UNABLE_TO_VERIFY_LEAF_SIGNATURE, ...) and Node's
// TLS codes (ERR_TLS_CERT_ALTNAME_INVALID, ERR_SSL_...): reported apart so operators see a trust problem.
const TLS_ERROR = /CERT|SELF_SIGNED|^UNABLE_TO_|^ERR_TLS_|^ERR_SSL_/;

/** An HTTPS client bound to one trust configuration. */
export interface HttpsClient {
  request(url: string | URL, req: HttpsRequest): Promise<HttpsResponse>;
  /** Closes pooled connections. */
  close(): void;
}

/** Reads a CA bundle; the error names the file. */
export function readCaFile(path: string): string {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`${path}: cannot read CA file (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`${path}: no PEM certificate in CA file`);
  return pem;
}

/** Creates a client; the CA file is read once, here. */
export function createHttpsClient(options: HttpsClientOptions = {}): HttpsClient {
  const ca = options.caFile === undefined ? undefined : [...rootCertificates, readCaFile(options.caFile)];
  // Passing `ca` replaces Node's default store, so the public roots are added back above.
  const agent = new Agent({
    keepAlive: options.keepAlive ?? false,
    maxSockets: options.maxSockets ?? DEFAULT_MAX_SOCKETS,
    ...(ca ? { ca } : {}),
  });
  return {
    request: (url, req) => send(agent, typeof url === 'string' ? new URL(url) : url, req),
    close: () => agent.destroy(),
  };
}

function send(agent: Agent, url: URL, req: HttpsRequest): Promise<HttpsResponse> {
  if (url.protocol !== 'https:') {
    return Promise.reject(new HttpsFetchError('not_https', 'only https:// URLs are fetched'));
  }
  const max = req.maxBodyBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  const { signal } = req;
  if (signal?.aborted) return Promise.reject(abortReason(signal));
  const headers: Record<string, string> = { 'user-agent': 'portcullis', ...req.headers };
  if (req.body !== undefined) headers['content-length'] = String(Buffer.byteLength(req.body));

  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (err: Error | null, res?: HttpsResponse) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (err) {
        outgoing.destroy();
        reject(err);
      } else resolve(res as HttpsResponse);
    };
    const onAbort = () => finish(abortReason(signal as AbortSignal));
    const outgoing = request(url, { agent, method: req.method ?? 'GET', headers }, (res) => {
      const status = res.statusCode ?? 0;
      if (req.wantBody !== undefined && !req.wantBody(status, res.headers)) {
        finish(null, { status, headers: res.headers, body: Buffer.alloc(0) });
        res.destroy();
        return;
      }
      const declared = Number(res.headers['content-length']);
      if (declared > max) {
        finish(new HttpsFetchError('too_large', `response body over ${max} bytes`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > max) finish(new HttpsFetchError('too_large', `response body over ${max} bytes`));
        else chunks.push(chunk);
      });
      res.on('end', () => {
        finish(null, { status, headers: res.headers, body: Buffer.concat(chunks, size) });
      });
      res.on('error', (err) => finish(new HttpsFetchError('network', err.message, err)));
      res.on('close', () => {
        if (!res.complete)
          finish(new HttpsFetchError('network', 'connection closed before the response ended'));
      });
    });
    outgoing.on('error', (err: NodeJS.ErrnoException) => {
      const failure = TLS_ERROR.test(err.code ?? '') ? 'tls' : 'network';
      finish(new HttpsFetchError(failure, err.message, err));
    });
    const timer = setTimeout(() => {
      finish(new HttpsFetchError('timeout', `no complete response within ${req.timeoutMs} ms`));
    }, req.timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    outgoing.end(req.body);
  });
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new HttpsFetchError('timeout', 'aborted');
}
