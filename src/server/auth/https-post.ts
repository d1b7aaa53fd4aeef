// A small JSON-over-HTTPS client for the authenticators that ask the application (cookie
// introspection, webhook). https only; the CA file is added to the system roots; one deadline
// covers connect, request and response; the response body is capped and must be JSON.
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { rootCertificates } from 'node:tls';

/** The largest response body read from the application (64 KiB). */
export const MAX_RESPONSE_BYTES = 64 * 1024;

/** Sockets kept per application host, so a burst of handshakes cannot open unbounded connections. */
export const MAX_SOCKETS = 64;

/** How a poster is set up. */
export interface JsonPostOptions {
  /** A PEM file of extra trusted CAs (the system roots stay trusted). */
  readonly caFile?: string | undefined;
  /** Deadline for the whole exchange, from the call to the last body byte. */
  readonly timeoutMs: number;
  readonly maxResponseBytes?: number;
}

/** Why a call failed: every one of these means "the application could not answer". */
export type JsonPostFailure = 'timeout' | 'network' | 'tls' | 'http_status' | 'too_large' | 'not_json';

/** The outcome of one POST. `status` is present for `http_status`. */
export type JsonPostResult =
  | { readonly ok: true; readonly status: number; readonly body: unknown }
  | { readonly ok: false; readonly reason: JsonPostFailure; readonly status?: number };

/** A reusable client bound to one trust store. */
export interface JsonPoster {
  /** POSTs `body` as JSON to an https URL and reads a JSON answer. Never throws for network faults. */
  post(url: string, body: unknown): Promise<JsonPostResult>;
  /** Closes kept-alive sockets. */
  close(): void;
}

// OpenSSL verification codes (CERT_HAS_EXPIRED, UNABLE_TO_VERIFY_LEAF_SIGNATURE, ...) and Node's
// TLS codes (ERR_TLS_CERT_ALTNAME_INVALID, ERR_SSL_...): reported apart so operators see a trust problem.
const TLS_ERROR = /CERT|SELF_SIGNED|^UNABLE_TO_|^ERR_TLS_|^ERR_SSL_/;

// application/json or any structured +json type (RFC 6839), with optional parameters.
const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/** Creates a poster; reads the CA file now, so a missing file fails at start-up. */
export function createJsonPoster(options: JsonPostOptions): JsonPoster {
  const extraCa = options.caFile === undefined ? undefined : readFileSync(options.caFile, 'utf8');
  // Passing `ca` replaces Node's default store, so the system roots are added back explicitly.
  const agent = new Agent({
    keepAlive: true,
    maxSockets: MAX_SOCKETS,
    ...(extraCa === undefined ? {} : { ca: [...rootCertificates, extraCa] }),
  });
  const maxBytes = options.maxResponseBytes ?? MAX_RESPONSE_BYTES;

  return {
    post(url, body) {
      const target = new URL(url);
      if (target.protocol !== 'https:') throw new TypeError(`not an https URL: ${target.origin}`);
      const payload = Buffer.from(JSON.stringify(body));
      return new Promise<JsonPostResult>((resolve) => {
        let settled = false;
        const finish = (result: JsonPostResult): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(result);
        };
        const req = request(target, {
          method: 'POST',
          agent,
          headers: {
            'content-type': 'application/json',
            'content-length': payload.length,
            accept: 'application/json',
          },
        });
        const timer = setTimeout(() => {
          finish({ ok: false, reason: 'timeout' });
          req.destroy();
        }, options.timeoutMs);
        req.on('error', (err: NodeJS.ErrnoException) => {
          finish({ ok: false, reason: TLS_ERROR.test(err.code ?? '') ? 'tls' : 'network' });
        });
        req.on('response', (res) => {
          const status = res.statusCode ?? 0;
          // Redirects are not followed: a 3xx is as much a failure as a 5xx.
          if (status < 200 || status > 299) {
            finish({ ok: false, reason: 'http_status', status });
            res.destroy();
            return;
          }
          if (!JSON_TYPE.test(res.headers['content-type'] ?? '')) {
            finish({ ok: false, reason: 'not_json' });
            res.destroy();
            return;
          }
          const declared = Number(res.headers['content-length'] ?? 0);
          if (declared > maxBytes) {
            finish({ ok: false, reason: 'too_large' });
            res.destroy();
            return;
          }
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > maxBytes) {
              finish({ ok: false, reason: 'too_large' });
              res.destroy();
              return;
            }
            chunks.push(chunk);
          });
          res.on('error', () => finish({ ok: false, reason: 'network' }));
          // A connection cut mid-body ends in 'close' without 'end'.
          res.on('close', () => {
            if (!res.complete) finish({ ok: false, reason: 'network' });
          });
          res.on('end', () => {
            try {
              finish({ ok: true, status, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
            } catch {
              finish({ ok: false, reason: 'not_json' });
            }
          });
        });
        req.end(payload);
      });
    },
    close() {
      agent.destroy();
    },
  };
}
