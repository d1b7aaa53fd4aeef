// Keeps docs/authentication.md and examples/auth/ honest. Every example config loads with the
// strict schema, names files that exist and hold what their keys say (config check), and compiles
// into a gateway (keys parsed, htpasswd read, key lengths checked, broker rules compiled). Every
// ```yaml block of the page starts with `# example: examples/auth/NAME.yaml` and is that file
// verbatim, so the page shows exactly what is tested.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkConfigFile } from '../../src/config/check.js';
import { loadConfig, parseConfigText } from '../../src/config/load.js';
import { AuthenticatorSchema } from '../../src/config/schema.js';
import { createGateway } from '../../src/server/gateway.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const EXAMPLES_DIR = join(ROOT, 'examples/auth');
const DOC_PATH = join(ROOT, 'docs/authentication.md');
const DOC = readFileSync(DOC_PATH, 'utf8');
const FILES = readdirSync(EXAMPLES_DIR)
  .filter((name) => name.endsWith('.yaml'))
  .sort();
const MARKER = /^# example: examples\/auth\/([a-z0-9-]+\.yaml)$/;

/** A fenced ```yaml block of the page: its first line number and its text. */
interface Block {
  readonly line: number;
  readonly text: string;
}

function yamlBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  let open: { line: number; lines: string[] } | undefined;
  markdown.split('\n').forEach((line, i) => {
    if (open === undefined) {
      if (/^\s*```yaml\s*$/.test(line)) open = { line: i + 2, lines: [] };
    } else if (/^\s*```\s*$/.test(line)) {
      blocks.push({ line: open.line, text: open.lines.join('\n') });
      open = undefined;
    } else {
      open.lines.push(line);
    }
  });
  assert.equal(open, undefined, 'docs/authentication.md has an unclosed ```yaml block');
  return blocks;
}

/** A log destination that drops everything: compiling a gateway logs nothing worth reading here. */
function sink(): Writable {
  return new Writable({
    write(_chunk, _encoding, done) {
      done();
    },
  });
}

/** The file a block shows, and the block without its marker line. */
function split(block: Block): { file: string; body: string } {
  const [first = '', ...rest] = block.text.split('\n');
  const match = MARKER.exec(first.trim());
  assert.ok(
    match,
    `docs/authentication.md:${block.line}: a yaml block must start with "# example: examples/auth/NAME.yaml"`,
  );
  return { file: match[1] as string, body: rest.join('\n') };
}

const BLOCKS = yamlBlocks(DOC);

describe('examples/auth/*.yaml', () => {
  it('exist', () => {
    assert.ok(FILES.length > 0, 'no example configs under examples/auth/');
  });

  for (const name of FILES) {
    const path = join(EXAMPLES_DIR, name);

    it(`${name} loads with loadConfig`, () => {
      assert.doesNotThrow(() => loadConfig(path));
    });

    it(`${name} passes config check (its files exist and hold what their keys say)`, () => {
      const result = checkConfigFile(path);
      assert.equal(result.ok, true, result.lines.join('\n'));
    });

    it(`${name} compiles into a gateway`, async () => {
      const gateway = createGateway(loadConfig(path), { logDestination: sink() });
      await gateway.close();
    });
  }

  it('cover every authenticator type', () => {
    const types = AuthenticatorSchema.options.map((option) => option.shape.type.value);
    const used = new Set<string>();
    for (const name of FILES) {
      for (const auth of Object.values(loadConfig(join(EXAMPLES_DIR, name)).authenticators)) {
        used.add(auth.type);
      }
    }
    assert.deepEqual(
      types.filter((t) => !used.has(t)),
      [],
      'authenticator types without an example',
    );
  });

  it('include a broker route with the publish API', () => {
    const configs = FILES.map((name) => loadConfig(join(EXAMPLES_DIR, name)));
    assert.ok(configs.some((c) => c.publishApi !== undefined && c.routes.some((r) => r.broker)));
  });
});

describe('docs/authentication.md', () => {
  it('has yaml blocks', () => {
    assert.ok(BLOCKS.length > 0);
  });

  it('marks every yaml block with the example file it shows', () => {
    for (const block of BLOCKS) split(block);
  });

  for (const block of BLOCKS) {
    const first = block.text.split('\n')[0] ?? '';
    it(`line ${block.line}: ${first}`, () => {
      const { file, body } = split(block);
      // Relative paths resolve against examples/auth/, exactly as they do for the file.
      assert.doesNotThrow(() => parseConfigText(body, EXAMPLES_DIR));
      assert.ok(FILES.includes(file), `examples/auth/${file} does not exist`);
      const text = readFileSync(join(EXAMPLES_DIR, file), 'utf8');
      assert.equal(body.trimEnd(), text.trimEnd(), `the block differs from examples/auth/${file}`);
    });
  }

  it('shows every example file', () => {
    const shown = new Set(BLOCKS.map((b) => split(b).file));
    assert.deepEqual(
      FILES.filter((f) => !shown.has(f)),
      [],
      'example files the page does not show',
    );
  });
});
