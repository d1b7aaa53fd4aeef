// The SDK's dependency rules (STYLE.md): client -> protocol only, never src/server; the browser
// build and everything it imports use no Node module and not ws, so pinning and mTLS cannot leak in.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';

const CLIENT_DIR = 'src/client';
const IMPORT = /^\s*(?:import|export)\s[^;]*?from\s+'([^']+)'/gm;

function importsOf(file: string): string[] {
  return [...readFileSync(file, 'utf8').matchAll(IMPORT)].map((m) => m[1] as string);
}

/** Every file reachable from `entry` through relative imports, with the bare imports they make. */
function closure(entry: string): Map<string, string[]> {
  const seen = new Map<string, string[]>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    const specifiers = importsOf(file);
    seen.set(file, specifiers);
    for (const spec of specifiers) {
      if (spec.startsWith('.')) visit(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
    }
  };
  visit(resolve(entry));
  return seen;
}

describe('client import rules', () => {
  it('src/client imports nothing from src/server, src/core, src/config or src/pki', () => {
    for (const name of readdirSync(CLIENT_DIR).filter((f) => f.endsWith('.ts'))) {
      for (const spec of importsOf(join(CLIENT_DIR, name))) {
        if (!spec.startsWith('.')) continue;
        const target = relative('src', resolve(CLIENT_DIR, spec));
        assert.ok(
          target.startsWith('client/') || target === 'protocol.js',
          `${name} imports ${spec}: the SDK may import only src/client and src/protocol.ts`,
        );
      }
    }
  });

  it('C-08 the browser build reaches no Node module and not ws', () => {
    const files = closure(join(CLIENT_DIR, 'browser.ts'));
    assert.ok(files.size >= 5, 'the walk found the browser build');
    for (const [file, specifiers] of files) {
      const bare = specifiers.filter((s) => !s.startsWith('.'));
      assert.deepEqual(bare, [], `${relative('.', file)} imports ${bare.join(', ')}`);
    }
    const names = [...files.keys()].map((f) => relative(CLIENT_DIR, f));
    for (const nodeOnly of ['pins.ts', 'transport-node.ts', 'connect.ts'])
      assert.ok(!names.includes(nodeOnly));
  });
});
