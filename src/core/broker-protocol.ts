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

/** Longest epoch a client may send back in `since`, in characters. */
export const MAX_EPOCH_LENGTH = 64;

/**
 * A position in a channel's publication sequence: the epoch from a subscribe ack and the last seq
 * the client received. Sent back in `subscribe.since` to resume after a disconnect (M-07).
 */
export interface StreamPosition {
  readonly epoch: string;
  readonly seq: number;
}

/** One operation a client may send. */
export type ClientOp =
  | {
      readonly type: 'subscribe';
      readonly id: RequestId;
      readonly channel: string;
      readonly since?: StreamPosition;
    }
  | { readonly type: 'unsubscribe'; readonly id: RequestId; readonly channel: string }
  | { readonly type: 'publish'; readonly id: RequestId; readonly channel: string; readonly data: unknown }
  | { readonly type: 'auth.refresh'; readonly id: RequestId; readonly token: string };

/** The verdict on one client frame; `id` is set when the frame carried a valid one, for correlation. */
export type ParsedFrame =
  | { readonly ok: true; readonly op: ClientOp }
  | { readonly ok: false; readonly code: 'BAD_JSON' | 'BAD_REQUEST'; readonly id?: RequestId };

// The exact field set of each operation (required, then optional): any other field is refused.
const FIELDS: Readonly<Record<ClientOp['type'], readonly [readonly string[], readonly string[]]>> = {
  subscribe: [['type', 'id', 'channel'], ['since']],
  unsubscribe: [['type', 'id', 'channel'], []],
  publish: [['type', 'id', 'channel', 'data'], []],
  'auth.refresh': [['type', 'id', 'token'], []],
};
const SINCE_FIELDS: readonly [readonly string[], readonly string[]] = [['epoch', 'seq'], []];
const EPOCH_RE = /^[A-Za-z0-9._-]+$/;

const anyValue = (): boolean => true;

/** True for a valid request id. */
export function isRequestId(value: unknown): value is RequestId {
  if (typeof value === 'string') return value.length > 0 && value.length <= MAX_ID_LENGTH;
  return Number.isSafeInteger(value);
}

function hasExactly(
  frame: Record<string, unknown>,
  [required, optional]: readonly [readonly string[], readonly string[]],
): boolean {
  let n = 0;
  // for-in stops at the first stranger, so a 1e6-key object costs no more than its parse.
  for (const key in frame) {
    if (!Object.hasOwn(frame, key)) continue;
    if (required.includes(key)) n++;
    else if (!optional.includes(key)) return false;
  }
  return n === required.length;
}

/** `since` as sent: exactly {epoch, seq}, an epoch of 1..64 characters and a seq >= 0. */
function parseSince(value: unknown): StreamPosition | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const fields = value as Record<string, unknown>;
  if (!hasExactly(fields, SINCE_FIELDS)) return undefined;
  const { epoch, seq } = fields;
  if (typeof epoch !== 'string' || epoch.length > MAX_EPOCH_LENGTH || !EPOCH_RE.test(epoch)) return undefined;
  if (!Number.isSafeInteger(seq) || (seq as number) < 0) return undefined;
  return { epoch, seq: seq as number };
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
      if (type === 'subscribe' && Object.hasOwn(fields, 'since')) {
        const since = parseSince(fields.since);
        return since ? { ok: true, op: { type, id, channel, since } } : bad;
      }
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
 * `{"type":"ack","id":...,"epoch":...,"seq":...}`: the answer to a subscribe, with the channel's
 * epoch and the seq of its latest publication (0 before the first), to resume from later.
 */
export function subscribeAckFrame(id: RequestId, epoch: string, seq: number): string {
  return JSON.stringify({ type: 'ack', id, epoch, seq });
}

/**
 * `{"type":"gap","channel":...,"from":...,"to":...}`: publications `from`..`to` (inclusive) of the
 * channel are no longer retained and will never be delivered; the retained ones follow.
 */
export function gapFrame(channel: string, from: number, to: number): string {
  return JSON.stringify({ type: 'gap', channel, from, to });
}

/**
 * `{"type":"gap","channel":...,"reset":true}`: the `since` epoch is not the channel's current one
 * (the gateway restarted or forgot the channel), so what was missed is unknown.
 */
export function resetFrame(channel: string): string {
  return JSON.stringify({ type: 'gap', channel, reset: true });
}

/** What a resuming subscriber is sent after its ack (M-07). */
export type ResumePlan =
  /** Nothing was missed. */
  | { readonly kind: 'current' }
  /** Replay every retained publication with a seq above `after`. */
  | { readonly kind: 'replay'; readonly after: number }
  /** Publications `from`..`to` are gone: signal the gap, then replay those above `to`. */
  | { readonly kind: 'gap'; readonly from: number; readonly to: number }
  /** Another sequence (restart, forgotten channel), or a position it never reached: signal a reset. */
  | { readonly kind: 'reset' };

/**
 * Decides a resume: `since` against the channel's `epoch`, its latest `seq`, and `oldest`, the seq
 * of the oldest retained publication (seq + 1 when none is retained). Retained publications are
 * always the contiguous run oldest..seq, so everything after `since.seq` below `oldest` is lost.
 */
export function planResume(since: StreamPosition, epoch: string, seq: number, oldest: number): ResumePlan {
  if (since.epoch !== epoch || since.seq > seq) return { kind: 'reset' };
  if (since.seq === seq) return { kind: 'current' };
  if (since.seq + 1 >= oldest) return { kind: 'replay', after: since.seq };
  return { kind: 'gap', from: since.seq + 1, to: oldest - 1 };
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
