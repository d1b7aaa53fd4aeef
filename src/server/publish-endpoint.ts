// The server-side publish endpoint: backends POST a channel and data with the publishApi key, and
// the gateway publishes it to every broker route (or one), trusted.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConfigError } from '../config/load.js';
import { checkHost, type HandshakeRequest, scanHeaders } from '../core/handshake.js';
import type { ErrorCode } from '../protocol.js';
import { logSafe } from './audit.js';
import type { EndpointHost } from './endpoint-host.js';
import { sendJson, sendRefusal } from './http.js';

/** The server-side publishing endpoint for backends, and the largest body it reads. */
export const PUBLISH_PATH = '/.portcullis/publish';
const PUBLISH_MAX_BYTES = 1_048_576;

/** What the publish endpoint needs beyond every endpoint's share of the gateway. */
export interface PublishHost extends EndpointHost {
  /** The publishApi key, or undefined when the endpoint is off. */
  readonly publishKey: Buffer | undefined;
  /** Publishes to a channel on every broker route (or only `route`); see Gateway.publish. */
  publish(channel: string, data: unknown, options?: { route?: string }): { ok: boolean; delivered: number };
}

/**
 * POST /.portcullis/publish with `Authorization: Bearer <publishApi key>` and a JSON body
 * `{"channel": "...", "data": ..., "route"?: "/path"}`: server-side publishing for backends.
 */
export async function onPublishRequest(
  gateway: PublishHost,
  req: IncomingMessage,
  res: ServerResponse,
  request: HandshakeRequest,
): Promise<void> {
  const remote = req.socket.remoteAddress ?? null;
  const answer = (code: ErrorCode, reason?: string) => {
    gateway.countRejection(code);
    gateway.log.info({ event: 'publish', outcome: 'rejected', code, remote, ...(reason ? { reason } : {}) });
    sendRefusal(res, code, gateway.refusal());
  };
  const key = gateway.publishKey;
  if (!key) return answer('ROUTE_NOT_FOUND');
  if (request.method !== 'POST') {
    gateway.countRejection('METHOD_NOT_ALLOWED');
    sendRefusal(res, 'METHOD_NOT_ALLOWED', { ...gateway.refusal(), allow: 'POST' });
    return;
  }
  const scan = scanHeaders(request.rawHeaders, gateway.policy.maxHeaderCount);
  if (!scan.ok) return answer(scan.code);
  const host = checkHost(scan.headers.get('host'), gateway.policy, request.servername);
  if (!host.ok) return answer(host.code);
  const presented = /^Bearer ([\x21-\x7e]+)$/.exec(scan.headers.get('authorization') ?? '')?.[1];
  if (!presented || !sameSecret(presented, key)) return answer('UNAUTHENTICATED', 'publish_key');
  const body = await readBody(req, PUBLISH_MAX_BYTES);
  if (body === undefined) return answer('MESSAGE_TOO_BIG');
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return answer('BAD_JSON');
  }
  const { channel, data, route } = (parsed ?? {}) as { channel?: unknown; data?: unknown; route?: unknown };
  if (
    typeof channel !== 'string' ||
    data === undefined ||
    (route !== undefined && typeof route !== 'string')
  ) {
    return answer('BAD_REQUEST');
  }
  const result = gateway.publish(channel, data, route === undefined ? {} : { route: route as string });
  if (!result.ok) return answer('BAD_REQUEST', 'channel');
  gateway.log.info({
    event: 'publish',
    outcome: 'accepted',
    channel: logSafe(channel),
    delivered: result.delivered,
    remote,
  });
  sendJson(res, 200, { delivered: result.delivered }, [], gateway.hsts);
}

/** Reads and checks the publishApi key file (at compile, so a bad key fails the config). */
export function readPublishKey(file: string): Buffer {
  const key = readFileSync(file, 'utf8').trim();
  if (key.length < 32) throw new ConfigError(['publishApi.keyFile: the key must be at least 32 characters']);
  // It travels as a bearer token, so it must be something an Authorization header can carry.
  if (!/^[\x21-\x7e]+$/.test(key)) {
    throw new ConfigError(['publishApi.keyFile: the key must be printable ASCII without spaces']);
  }
  return Buffer.from(key);
}

// Constant-time comparison of the presented publish key (hash first, so lengths do not leak).
function sameSecret(presented: string, key: Buffer): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(key).digest();
  return timingSafeEqual(a, b);
}

/** Reads a request body up to `max` bytes; undefined when it is larger. */
function readBody(req: IncomingMessage, max: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > max) {
      resolve(undefined);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        req.removeAllListeners('data');
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
