// Every row of the threat catalogue (../shared/threats.md) must end up covered by a test whose
// title starts with the row id. Rows whose capability is not built yet are listed here with the
// reason; the list may only shrink: a listed row that gains a test fails until it is removed.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

const PENDING: Record<string, string> = {
  'P-08': 'SSE / long-poll fallback transports are not built yet',
  'P-09': 'SSE / long-poll fallback transports are not built yet',
  'P-10': 'SSE / long-poll fallback transports are not built yet',
  'P-11': 'SSE / long-poll fallback transports are not built yet',
  'P-12': 'SSE / long-poll fallback and HTTP/2 extended CONNECT are not built yet',
};

function testFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) testFiles(path, out);
    else if (name.endsWith('.test.ts')) out.push(path);
  }
  return out;
}

const ids = readFileSync('test/threat-ids.txt', 'utf8').split('\n').filter(Boolean);
const titles = testFiles('test').flatMap((file) =>
  [...readFileSync(file, 'utf8').matchAll(/\b(?:it|test|describe)\(\s*['"`]([^'"`]+)/g)].map(
    (m) => m[1] as string,
  ),
);
const covered = (id: string) => titles.some((t) => t.startsWith(`${id} `) || t.startsWith(`${id}:`));

describe('threat catalogue coverage', () => {
  it('the vendored row list matches ../shared/threats.md when it is present', () => {
    const shared = join('..', 'shared', 'threats.md');
    if (!existsSync(shared)) return; // a clone without shared/ checks against the vendored list only
    const current = [...readFileSync(shared, 'utf8').matchAll(/^\| ([A-Z]-\d{2}) \|/gm)].map((m) => m[1]);
    assert.deepEqual([...new Set(current)].sort(), ids);
  });

  it('every row has a test titled with its id, or is listed as pending with a reason', () => {
    const missing = ids.filter((id) => !covered(id) && !Object.hasOwn(PENDING, id));
    assert.deepEqual(missing, []);
  });

  it('no pending row already has a test (remove it from PENDING)', () => {
    assert.deepEqual(
      Object.keys(PENDING).filter((id) => covered(id)),
      [],
    );
  });
});
