// Keeps the ERRORS table (src/protocol.ts) and docs/errors.md in step, and checks the table's own
// invariants: every close code is sendable, every status is a real HTTP status, every message is
// short and safe to show a client.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  codeFromCloseReason,
  ERRORS,
  type ErrorCode,
  errorBody,
  GatewayError,
  isErrorCode,
  isSendableCloseCode,
  RESERVED_CLOSE_CODES,
} from '../../src/protocol.js';

const DOC_PATH = new URL('../../docs/errors.md', import.meta.url);
const DOC = readFileSync(DOC_PATH, 'utf8');
const CODES = Object.keys(ERRORS) as ErrorCode[];
const RETRIES = new Set(['never', 'backoff', 'refresh']);

interface Section {
  readonly heading: string;
  readonly body: string;
}

/** The `## ` sections of a markdown text, ignoring fenced code blocks. */
function sections(markdown: string): { intro: string; sections: Section[] } {
  const out: Section[] = [];
  const intro: string[] = [];
  let current: { heading: string; lines: string[] } | undefined;
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    if (!fenced && line.startsWith('## ')) {
      if (current) out.push({ heading: current.heading, body: current.lines.join('\n') });
      current = { heading: line.slice(3).trim(), lines: [] };
      continue;
    }
    (current ? current.lines : intro).push(line);
  }
  if (current) out.push({ heading: current.heading, body: current.lines.join('\n') });
  return { intro: intro.join('\n'), sections: out };
}

/** Every capture of `pattern` (which must have the g flag) in `text`. */
function all(text: string, pattern: RegExp): string[] {
  return [...text.matchAll(pattern)].map((m) => m[1] as string);
}

/** The single value a section states for one field, failing when it is missing or repeated. */
function field(section: Section, name: string, pattern: RegExp): string {
  const values = all(section.body, pattern);
  assert.equal(values.length, 1, `## ${section.heading}: expected exactly one "**${name}:**" line`);
  return values[0] as string;
}

const doc = sections(DOC);
const byHeading = new Map(doc.sections.map((s) => [s.heading, s]));

describe('docs/errors.md and the ERRORS table', () => {
  it('has exactly one "## CODE" heading per ErrorCode', () => {
    const headings = doc.sections.map((s) => s.heading);
    const missing = CODES.filter((code) => !headings.includes(code));
    assert.deepEqual(missing, [], `add a "## CODE" section to docs/errors.md for: ${missing.join(', ')}`);
    const repeated = headings.filter((h, i) => headings.indexOf(h) !== i);
    assert.deepEqual(repeated, [], `headings repeated in docs/errors.md: ${repeated.join(', ')}`);
  });

  it('has no "## " heading that is not an ErrorCode', () => {
    const strays = doc.sections.map((s) => s.heading).filter((h) => !isErrorCode(h));
    assert.deepEqual(strays, [], `headings that name no ErrorCode: ${strays.join(', ')}`);
  });

  it('lists the codes in the same order as the table', () => {
    const documented = doc.sections.map((s) => s.heading).filter(isErrorCode);
    assert.deepEqual(
      documented,
      CODES.filter((c) => documented.includes(c)),
    );
  });

  it('states the same HTTP status, close code, retry and message as the table in every section', () => {
    for (const code of CODES) {
      const section = byHeading.get(code);
      if (!section) continue; // reported by the heading test
      const spec = ERRORS[code];
      const status = field(section, 'HTTP status', /^- \*\*HTTP status:\*\* (\d{3})\b/gm);
      const close = field(section, 'Close code', /^- \*\*Close code:\*\* (\d{4})\b/gm);
      const retry = field(section, 'Retry', /^- \*\*Retry:\*\* `([a-z]+)`/gm);
      const message = field(section, 'Message', /^- \*\*Message:\*\* `([^`]*)`/gm);
      assert.equal(Number(status), spec.status, `## ${code}: HTTP status`);
      assert.equal(Number(close), spec.close, `## ${code}: close code`);
      assert.equal(retry, spec.retry, `## ${code}: retry`);
      assert.equal(message, spec.message, `## ${code}: message`);
      assert.match(section.body, /^- \*\*When:\*\* \S/m, `## ${code}: says when it happens`);
      assert.match(section.body, /^- \*\*What to do:\*\* \S/m, `## ${code}: says what to do`);
    }
  });

  it('links every code from the index, and every in-page link reaches a heading', () => {
    const anchors = new Set(doc.sections.map((s) => s.heading.toLowerCase()));
    const linked = new Set(all(doc.intro, /\[([A-Z][A-Z0-9_]*)\]\(#[a-z0-9_]+\)/g));
    const unlinked = CODES.filter((c) => !linked.has(c));
    assert.deepEqual(unlinked, [], `add to the "Codes by stage" index: ${unlinked.join(', ')}`);
    const broken = all(DOC, /\]\(#([^)]+)\)/g).filter((a) => !anchors.has(a));
    assert.deepEqual(broken, [], 'in-page links without a heading');
  });
});

describe('the ERRORS table', () => {
  it('uses close codes that may be sent: never 1004, 1005, 1006 or 1015', () => {
    for (const code of CODES) {
      const { close } = ERRORS[code];
      assert.ok(isSendableCloseCode(close), `${code}: ${close} is not sendable`);
      assert.ok(![1004, 1005, 1006, 1015].includes(close), `${code}: ${close} is reserved`);
    }
  });

  it('uses RFC 6455 codes or 4000 + the HTTP status for application codes', () => {
    for (const code of CODES) {
      const { close, status } = ERRORS[code];
      if (close >= 1000 && close <= 1014) continue;
      assert.equal(close, 4000 + status, `${code}: application close code must be 4000 + ${status}`);
    }
  });

  it('uses valid HTTP statuses between 200 and 599', () => {
    for (const code of CODES) {
      const { status } = ERRORS[code];
      assert.ok(Number.isInteger(status) && status >= 200 && status <= 599, `${code}: status ${status}`);
      assert.notEqual(status, 101, `${code}: 101 is success`);
    }
  });

  it('has a retry of never, backoff or refresh on every row', () => {
    for (const code of CODES) assert.ok(RETRIES.has(ERRORS[code].retry), `${code}: ${ERRORS[code].retry}`);
  });

  it('has short, client-safe messages: printable ASCII, one line, under 100 characters', () => {
    for (const code of CODES) {
      const { message } = ERRORS[code];
      assert.ok(message.length > 0 && message.length < 100, `${code}: message length ${message.length}`);
      assert.doesNotMatch(message, /[\r\n]/, `${code}: message has a newline`);
      assert.match(message, /^[\x20-\x7e]+$/, `${code}: message must be printable ASCII`);
      assert.equal(message, message.trim(), `${code}: message has surrounding spaces`);
    }
  });

  it('has codes that fit a close reason (upper snake case, at most 123 bytes)', () => {
    for (const code of CODES) {
      assert.match(code, /^[A-Z][A-Z0-9_]*$/);
      assert.ok(Buffer.byteLength(code) <= 123, code);
    }
  });
});

describe('protocol helpers', () => {
  it('isErrorCode accepts every code and nothing else, inherited names included', () => {
    for (const code of CODES) assert.equal(isErrorCode(code), true, code);
    const others: unknown[] = [
      '',
      'bad_request',
      'BAD_REQUEST ',
      'toString',
      'constructor',
      '__proto__',
      'hasOwnProperty',
      42,
      null,
      undefined,
      {},
      ['BAD_REQUEST'],
    ];
    for (const value of others) assert.equal(isErrorCode(value), false, JSON.stringify(value));
  });

  it('errorBody is exactly {code, message} with the table message', () => {
    for (const code of CODES) {
      const body = errorBody(code);
      assert.deepEqual(body, { code, message: ERRORS[code].message });
      assert.equal(JSON.stringify(body), JSON.stringify({ code, message: ERRORS[code].message }));
    }
  });

  it('codeFromCloseReason reads a code back from a close reason, and only a code', () => {
    for (const code of CODES) assert.equal(codeFromCloseReason(code), code);
    for (const reason of ['', 'Closed', 'rate_limited', 'RATE_LIMITED\n', '__proto__', 'toString']) {
      assert.equal(codeFromCloseReason(reason), undefined, JSON.stringify(reason));
    }
  });

  it('isSendableCloseCode follows RFC 6455 section 7.4', () => {
    const table: ReadonlyArray<readonly [number, boolean]> = [
      [0, false],
      [999, false],
      [1000, true],
      [1001, true],
      [1002, true],
      [1003, true],
      [1004, false],
      [1005, false],
      [1006, false],
      [1007, true],
      [1011, true],
      [1013, true],
      [1014, true],
      [1015, false],
      [1016, false],
      [2999, false],
      [3000, true],
      [4000, true],
      [4999, true],
      [5000, false],
      [65535, false],
      [1000.5, false],
      [Number.NaN, false],
    ];
    for (const [code, sendable] of table) assert.equal(isSendableCloseCode(code), sendable, String(code));
    for (const reserved of RESERVED_CLOSE_CODES) assert.equal(isSendableCloseCode(reserved), false);
  });

  it('GatewayError carries its code, with the table message unless a detail is given', () => {
    const plain = new GatewayError('ROUTE_NOT_FOUND');
    assert.equal(plain.code, 'ROUTE_NOT_FOUND');
    assert.equal(plain.message, ERRORS.ROUTE_NOT_FOUND.message);
    assert.equal(plain.name, 'GatewayError');
    assert.ok(plain instanceof Error);
    assert.equal(new GatewayError('INTERNAL', 'cause for the log').message, 'cause for the log');
  });
});
