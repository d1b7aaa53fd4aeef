// Writes refusals: every one has the ErrorCode's status, a `{"code","message"}` body,
// `Connection: close`, HSTS on HTTPS, and the extra header some statuses require.
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { ERRORS, type ErrorCode, errorBody } from '../protocol.js';

/** What a refusal adds beyond the code itself. */
export interface RefusalOptions {
  /** The Strict-Transport-Security value, or undefined on plaintext (it must never go over http). */
  readonly hsts: string | undefined;
  readonly retryAfterMs?: number | undefined;
  /** The route's WWW-Authenticate challenges for a 401, one header each (default: Bearer). */
  readonly challenges?: readonly string[] | undefined;
  /** The methods a 405 names in Allow (default: GET, the only method that upgrades). */
  readonly allow?: string | undefined;
}

// How long a refused socket may take to flush its answer before it is destroyed.
const FLUSH_TIMEOUT_MS = 2_000;

/** Response headers for a refusal, without the status line. */
export function refusalHeaders(
  code: ErrorCode,
  options: RefusalOptions,
  bodyLength: number,
): [string, string][] {
  const headers: [string, string][] = [
    ['Content-Type', 'application/json'],
    ['Content-Length', String(bodyLength)],
    ['Cache-Control', 'no-store'],
    ['X-Content-Type-Options', 'nosniff'],
    ['Connection', 'close'],
  ];
  if (options.hsts) headers.push(['Strict-Transport-Security', options.hsts]);
  switch (code) {
    case 'METHOD_NOT_ALLOWED':
      headers.push(['Allow', options.allow ?? 'GET']);
      break;
    case 'UNSUPPORTED_VERSION':
      headers.push(['Sec-WebSocket-Version', '13']);
      break;
    case 'UPGRADE_REQUIRED':
      headers.push(['Upgrade', 'websocket']);
      break;
    default:
      break;
  }
  // RFC 9110 section 15.5.2: every 401 carries a challenge (expired and revoked credentials too).
  if (ERRORS[code].status === 401) {
    for (const challenge of options.challenges ?? ['Bearer']) headers.push(['WWW-Authenticate', challenge]);
  }
  if (options.retryAfterMs !== undefined) {
    headers.push(['Retry-After', String(Math.max(1, Math.ceil(options.retryAfterMs / 1000)))]);
  }
  return headers;
}

/** The full HTTP/1.1 response text for a refusal on a raw socket. */
export function refusalResponse(code: ErrorCode, options: RefusalOptions): string {
  const body = JSON.stringify(errorBody(code));
  const { status } = ERRORS[code];
  const lines = refusalHeaders(code, options, Buffer.byteLength(body)).map(([k, v]) => `${k}: ${v}`);
  return `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\n${lines.join('\r\n')}\r\n\r\n${body}`;
}

/**
 * Answers on a raw socket (upgrade path or a parser error) and ends it. Nothing more is read:
 * bytes pipelined after the refused request are never parsed.
 */
export function writeRefusal(socket: Duplex, code: ErrorCode, options: RefusalOptions): void {
  if (socket.destroyed) return;
  socket.removeAllListeners('data');
  socket.pause();
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(refusalResponse(code, options));
  const timer = setTimeout(() => socket.destroy(), FLUSH_TIMEOUT_MS);
  timer.unref();
  socket.once('finish', () => {
    clearTimeout(timer);
    socket.destroy();
  });
  socket.once('close', () => clearTimeout(timer));
}

/** Answers a plain HTTP request with a refusal, then closes the connection. */
export function sendRefusal(res: ServerResponse, code: ErrorCode, options: RefusalOptions): void {
  const body = JSON.stringify(errorBody(code));
  res.shouldKeepAlive = false;
  res.writeHead(ERRORS[code].status, refusalHeaders(code, options, Buffer.byteLength(body)).flat());
  res.end(body, () => res.socket?.destroySoon?.());
}

/** Answers a plain HTTP request with JSON (or nothing for 204), never cached, then closes. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  extra: readonly [string, string][],
  hsts: string | undefined,
): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  const headers: [string, string][] = [
    ...(text ? ([['Content-Type', 'application/json']] as [string, string][]) : []),
    ['Content-Length', String(Buffer.byteLength(text))],
    ['Cache-Control', 'no-store'],
    ['X-Content-Type-Options', 'nosniff'],
    ['Connection', 'close'],
    ...(hsts ? ([['Strict-Transport-Security', hsts]] as [string, string][]) : []),
    ...extra,
  ];
  res.shouldKeepAlive = false;
  res.writeHead(status, headers.flat());
  res.end(text, () => res.socket?.destroySoon?.());
}

const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Content Too Large',
  414: 'URI Too Long',
  421: 'Misdirected Request',
  426: 'Upgrade Required',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};
