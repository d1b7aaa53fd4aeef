// Keeps the README honest: the two commands users copy are there verbatim, every relative link
// points at a file that exists (or says on its line that the target is planned), and every
// `npm run` script it mentions exists.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const README = readFileSync(resolve(ROOT, 'README.md'), 'utf8');
const LINES = README.split('\n');
const QUICKSTART = 'npm install && npx portcullis serve --config examples/quickstart.yaml';
const TEST = 'npm test';

/** The lines inside fenced code blocks. */
function codeLines(lines: readonly string[]): string[] {
  const out: string[] = [];
  let fenced = false;
  for (const line of lines) {
    if (line.startsWith('```')) fenced = !fenced;
    else if (fenced) out.push(line);
  }
  return out;
}

/** Relative link targets, with the line each one is on. */
function relativeLinks(lines: readonly string[]): { target: string; line: string }[] {
  const out: { target: string; line: string }[] = [];
  for (const line of lines) {
    for (const match of line.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = match[1] as string;
      if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('#')) continue; // URL or anchor
      out.push({ target, line });
    }
  }
  return out;
}

describe('README.md', () => {
  it('gives the quickstart and test commands verbatim, each on its own line in a code block', () => {
    const code = codeLines(LINES).map((l) => l.trim());
    assert.ok(code.includes(QUICKSTART), `missing code line: ${QUICKSTART}`);
    assert.ok(code.includes(TEST), `missing code line: ${TEST}`);
  });

  it('links only to files that exist, unless the link line says the target is planned', () => {
    const links = relativeLinks(LINES);
    assert.ok(
      links.some((l) => l.target.startsWith('docs/')),
      'expected links to docs/',
    );
    const broken = links
      .filter(({ target }) => !existsSync(resolve(ROOT, target.split('#')[0] as string)))
      .filter(({ line }) => !/\bplanned\b/i.test(line))
      .map(({ target }) => target);
    assert.deepEqual(broken, [], 'README links to missing files; add them or mark the line "planned"');
  });

  it('names the quickstart config and the documentation that must exist', () => {
    for (const path of ['examples/quickstart.yaml', 'docs/errors.md', 'docs/security.md', 'CHANGELOG.md']) {
      assert.ok(existsSync(resolve(ROOT, path)), `${path} does not exist`);
      assert.ok(README.includes(path), `README does not mention ${path}`);
    }
  });

  it('mentions only npm scripts that package.json defines', () => {
    const pkg = JSON.parse(readFileSync(resolve(ROOT, 'package.json'), 'utf8')) as {
      scripts?: Record<string, string>;
    };
    const scripts = Object.keys(pkg.scripts ?? {});
    const mentioned = [...README.matchAll(/\bnpm run ([a-z][\w:-]*)/g)].map((m) => m[1] as string);
    const unknown = mentioned.filter((name) => !scripts.includes(name));
    assert.deepEqual(unknown, [], 'README mentions npm scripts that do not exist');
    assert.ok(scripts.includes('test'), 'package.json has no test script');
  });
});
