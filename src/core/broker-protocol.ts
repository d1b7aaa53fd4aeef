// The portcullis.v1 wire format, sans-I/O: one client text frame in, a typed operation or an error
// code out; server frames built as strings. Strict by allowlist: unknown types and unknown fields
// are refused (M-01), depth is bounded before parsing (M-02), and error frames carry the client-safe
// message from ERRORS, never a piece of the input.
import { ERRORS, type ErrorCode } from '../protocol.js';
import { checkJson } from './json.js';

/** The WebSocket subprotocol of the built-in broker. */
export const BROKER_SUBPROTOCOL = 'portcullis.v1';

/** Longest string request id, in characters. */
export const MAX_ID_LENGTH = 64;

/** A request id chosen by the client: a string of 1..64 characters or a safe integer. */
export type RequestId = string | number;

/** One operation a client may send. */
export type ClientOp =
  | { readonly type: 'subscribe'; readonly id: RequestId; readonly channel: string }
  | { readonly type: 'unsubscribe'; readonly id: RequestId; readonly channel: string }
  | { readonly type: 'publish'; readonly id: RequestId; readonly channel: string; readonly data: unknown }
  | { readonly type: 'auth.refresh'; readonly id: RequestId; readonly token: string };

/** The verdict on one client frame; `id` is set when the frame carried a valid one, for correlation. */
export type ParsedFrame =
  | { readonly ok: true; readonly op: ClientOp }
  | { readonly ok: false; readonly code: 'BAD_JSON' | 'BAD_REQUEST'; readonly id?: RequestId };

// The exact field set of each operation: a frame with any other field is refused.
const FIELDS: Readonly<Record<ClientOp['type'], readonly string[]>> = {
  subscribe: ['type', 'id', 'channel'],
  unsubscribe: ['type', 'id', 'channel'],
  publish: ['type', 'id', 'channel', 'data'],
  'auth.refresh': ['type', 'id', 'token'],
};

const anyValue = (): boolean => true;

/** True for a valid request id. */
export function isRequestId(value: unknown): value is RequestId {
  if (typeof value === 'string') return value.length > 0 && value.length <= MAX_ID_LENGTH;
  return Number.isSafeInteger(value);
}

function hasExactly(frame: Record<string, unknown>, fields: readonly string[]): boolean {
  let n = 0;
  // for-in stops at the first stranger, so a 1e6-key object costs no more than its parse.
  for (const key in frame) {
    if (!Object.hasOwn(frame, key)) continue;
    if (!fields.includes(key)) return false;
    n++;
  }
  return n === fields.length;
}

function isOpType(value: unknown): value is ClientOp['type'] {
  return typeof value === 'string' && Object.hasOwn(FIELDS, value);
}

/** Parses one client text frame; `maxDepth` is the route's maxJsonDepth. */
export function parseClientFrame(data: Buffer, maxDepth: number): ParsedFrame {
  const json = checkJson(data, maxDepth, anyValue);
  if (!json.ok) return { ok: false, code: 'BAD_JSON' };
  const frame = json.value;
  if (typeof frame !== 'object' || frame === null || Array.isArray(frame))
    return { ok: false, code: 'BAD_REQUEST' };
  const fields = frame as Record<string, unknown>;
  const id = Object.hasOwn(fields, 'id') ? fields.id : undefined;
  if (!isRequestId(id)) return { ok: false, code: 'BAD_REQUEST' };
  const bad: ParsedFrame = { ok: false, code: 'BAD_REQUEST', id };
  const type = Object.hasOwn(fields, 'type') ? fields.type : undefined;
  if (!isOpType(type) || !hasExactly(fields, FIELDS[type])) return bad;
  switch (type) {
    case 'subscribe':
    case 'unsubscribe':
    case 'publish': {
      const channel = fields.channel;
      if (typeof channel !== 'string') return bad;
      if (type === 'publish') return { ok: true, op: { type, id, channel, data: fields.data } };
      return { ok: true, op: { type, id, channel } };
    }
    case 'auth.refresh': {
      const token = fields.token;
      if (typeof token !== 'string' || token.length === 0) return bad;
      return { ok: true, op: { type, id, token } };
    }
    default:
      return type satisfies never;
  }
}

/** `{"type":"ack","id":...}`: the operation with this id succeeded. */
export function ackFrame(id: RequestId): string {
  return JSON.stringify({ type: 'ack', id });
}

/**
 * `{"type":"error","id":...,"code":...,"message":...}`. `id` answers a request; `channel` names a
 * subscription the server dropped on its own (delivery-time ACL). The message is the ERRORS text.
 */
export function errorFrame(code: ErrorCode, id?: RequestId, channel?: string): string {
  const frame: Record<string, unknown> = { type: 'error' };
  if (id !== undefined) frame.id = id;
  if (channel !== undefined) frame.channel = channel;
  frame.code = code;
  frame.message = ERRORS[code].message;
  return JSON.stringify(frame);
}

/**
 * `{"type":"message","channel":...,"seq":...,"data":...}` from data already serialised once: the
 * publication is stringified one time and this frame is shared by every subscriber.
 */
export function messageFrame(channel: string, seq: number, dataJson: string): string {
  return `{"type":"message","channel":${JSON.stringify(channel)},"seq":${seq},"data":${dataJson}}`;
}
