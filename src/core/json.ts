// Inspection of JSON text messages before they are parsed: nesting depth is bounded, because
// JSON.parse recurses and a 60,000-deep array is a cheap way to burn stack and CPU (M-02).

/** True when the JSON text nests arrays/objects deeper than maxDepth (strings are skipped). */
export function jsonTooDeep(text: Buffer, maxDepth: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as number;
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** The verdict on one text message for a schema route. */
export type JsonVerdict = { ok: true; value: unknown } | { ok: false; code: 'BAD_JSON' | 'SCHEMA_VIOLATION' };

/** Parses and validates a JSON text message; `validate` is the route's compiled schema. */
export function checkJson(
  text: Buffer,
  maxDepth: number,
  validate: (value: unknown) => boolean,
): JsonVerdict {
  if (jsonTooDeep(text, maxDepth)) return { ok: false, code: 'BAD_JSON' };
  let value: unknown;
  try {
    value = JSON.parse(text.toString('utf8'));
  } catch {
    return { ok: false, code: 'BAD_JSON' };
  }
  return validate(value) ? { ok: true, value } : { ok: false, code: 'SCHEMA_VIOLATION' };
}
