#!/usr/bin/env node
// Runs every *.test.ts under test/ (or under the folders given) with node:test through tsx.
// Node 20 does not expand globs after --test, so files are listed here, and an empty list fails.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function collect(dir, out) {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) collect(path, out);
    else if (name.endsWith('.test.ts')) out.push(path);
  }
  return out;
}

const roots = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const files = (roots.length ? roots : ['test']).flatMap((r) =>
  statSync(r).isDirectory() ? collect(r, []) : [r],
);
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
// The CLI tests run the built binary exactly as the README does, so build first.
const build = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], {
  stdio: 'inherit',
});
if (build.status !== 0) process.exit(build.status ?? 1);
const concurrency = process.env.TEST_CONCURRENCY ?? '2';
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...files],
  { stdio: 'inherit', env: { ...process.env, PORTCULLIS_TEST: '1' } },
);
process.exit(result.status ?? 1);
