import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DOC_PATH, withKeyTable } from '../../scripts/gen-config-doc.js';
import { configCommand } from '../../src/cli/config.js';
import { checkConfigFile } from '../../src/config/check.js';
import { EXAMPLES, renderDefaults, STARTER } from '../../src/config/defaults.js';
import { DESCRIPTIONS, schemaKeyPaths, schemaKeys } from '../../src/config/describe.js';
import { ConfigError, parseConfig, parseConfigText } from '../../src/config/load.js';
import { testPki } from '../helpers/pki.js';

const ECHO = { path: '/echo', auth: 'none', echo: {} };
const DEV = { tls: { dev: true } };

/** The `path: message` lines a config is rejected with (fails the test if it is accepted). */
function issuesOf(input: unknown): readonly string[] {
  try {
    parseConfig(input);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
  assert.fail('expected a ConfigError');
}

function hasIssueAt(issues: readonly string[], path: string, fragment = ''): boolean {
  return issues.some((line) => line.startsWith(`${path}: `) && line.includes(fragment));
}

describe('config key descriptions', () => {
  it('every schema key path has a description, and every description a key path', () => {
    const paths = schemaKeyPaths();
    assert.deepEqual(
      paths.filter((p) => !Object.hasOwn(DESCRIPTIONS, p)),
      [],
      'keys without a description',
    );
    assert.deepEqual(
      Object.keys(DESCRIPTIONS).filter((p) => !paths.includes(p)),
      [],
      'descriptions without a key',
    );
    assert.equal(new Set(paths).size, paths.length, 'key paths are unique');
  });

  it('walks nested objects, lists, maps and variants', () => {
    const paths = schemaKeyPaths();
    for (const p of [
      'listen.host',
      'tls.clientAuth',
      'limits.perIp.handshakeBurst',
      'routes[].limits.maxMessageBytes',
      'routes[].require.claims.<claim>.oneOf',
      'authenticators.<name>.type',
      'authenticators.<name>[type=jwt].issuer',
      'authenticators.<name>[type=mtls].allow',
      'engine[type=redis].url',
      'admin.tokenFile',
    ]) {
      assert.ok(paths.includes(p), p);
    }
  });

  it('reports the effective default, where an outer default wins', () => {
    const byPath = new Map(schemaKeys().map((k) => [k.path, k]));
    assert.equal(byPath.get('admin.listen.port')?.default?.value, 9090);
    assert.equal(byPath.get('listen.port')?.default?.value, 8443);
    assert.equal(byPath.get('engine.type')?.default?.value, 'memory');
    assert.equal(byPath.get('routes[].limits.maxMessageBytes')?.default?.value, 65_536);
    assert.equal(byPath.get('routes')?.required, true);
    assert.equal(byPath.get('routes[].auth')?.required, true);
    assert.equal(byPath.get('tls.cert')?.required, false);
  });

  it('every description is one line', () => {
    for (const [path, text] of Object.entries(DESCRIPTIONS)) {
      assert.ok(text.length > 0 && !text.includes('\n'), path);
    }
  });
});

describe('docs/configuration.md', () => {
  const doc = readFileSync(DOC_PATH, 'utf8');

  it('mentions every key path', () => {
    const missing = schemaKeyPaths().filter((p) => !doc.includes(`\`${p}\``));
    assert.deepEqual(missing, []);
  });

  it('has an up-to-date key table (npx tsx scripts/gen-config-doc.ts)', () => {
    assert.equal(withKeyTable(doc), doc);
  });

  it('every complete example under "## Examples" is a valid config', () => {
    const section = doc.slice(doc.indexOf('## Examples'), doc.indexOf('## Key reference'));
    const blocks = [...section.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
    assert.ok(blocks.length >= 2);
    for (const block of blocks) parseConfigText(block);
  });
});

describe('renderDefaults', () => {
  const text = renderDefaults();

  it('parses back to exactly the defaults', () => {
    assert.deepEqual(parseConfigText(text, '/etc/portcullis'), parseConfig(STARTER, '/etc/portcullis'));
  });

  it('shows every key, active or commented out, with its description', () => {
    const lines = text.split('\n');
    for (const node of schemaKeys()) {
      if (!node.key.startsWith('<')) {
        const shown = lines.some((l) => new RegExp(`^[\\s#]*(- )?${node.key}:`).test(l));
        assert.ok(shown, `${node.path} is not shown`);
      }
      const description = DESCRIPTIONS[node.path] ?? '';
      assert.ok(text.includes(description.slice(0, 30)), `${node.path} has no comment`);
    }
  });

  it('every commented-out example is valid where it stands', () => {
    const paths = schemaKeyPaths();
    for (const [path, value] of Object.entries(EXAMPLES)) {
      assert.ok(paths.includes(path), `${path} is not a key`);
      const config: Record<string, unknown> = { tls: { ...STARTER.tls }, routes: [{ ...ECHO }] };
      const route = (config.routes as Record<string, unknown>[])[0] as Record<string, unknown>;
      if (path.startsWith('routes[].')) {
        const key = path.slice('routes[].'.length);
        if (key === 'upstream' || key === 'broker') delete route.echo;
        if (key === 'broker') route.subprotocols = ['portcullis.v1'];
        if (key === 'require') {
          // Required claims need an authenticated route.
          config.authenticators = { devices: { type: 'mtls', allow: ['device-*'] } };
          route.auth = ['devices'];
        }
        route[key] = value;
      } else if (path.startsWith('tls.')) (config.tls as Record<string, unknown>)[path.slice(4)] = value;
      else if (path === 'engine[type=redis].url') config.engine = { type: 'redis', url: value };
      else if (!path.includes('.')) config[path] = value;
      else assert.fail(`no rule to place the example for ${path}`);
      assert.doesNotThrow(() => parseConfig(config), path);
    }
  });

  it('starts with one /echo route, anonymous, and TLS certificate paths', () => {
    const config = parseConfigText(text);
    assert.equal(config.routes.length, 1);
    assert.equal(config.routes[0]?.path, '/echo');
    assert.equal(config.routes[0]?.auth, 'none');
    assert.deepEqual(config.routes[0]?.echo, {});
    assert.notEqual(config.tls, false);
    assert.match(text, /^ {2}# dev: true$/m);
  });
});

describe('config validation errors name the path', () => {
  it('an unknown key in route limits', () => {
    const issues = issuesOf({ ...DEV, routes: [{ ...ECHO, limits: { bogus: 1 } }] });
    assert.ok(hasIssueAt(issues, 'routes[0].limits.bogus', 'unknown key'), issues.join('\n'));
  });

  it('a typo at the top level', () => {
    const issues = issuesOf({ ...DEV, rotues: [ECHO] });
    assert.ok(hasIssueAt(issues, 'rotues', 'unknown key'), issues.join('\n'));
    assert.ok(hasIssueAt(issues, 'routes'), issues.join('\n'));
  });

  it('a value out of range', () => {
    const issues = issuesOf({
      ...DEV,
      routes: [ECHO, { ...ECHO, path: '/b', limits: { maxMessageBytes: 0 } }],
    });
    assert.ok(hasIssueAt(issues, 'routes[1].limits.maxMessageBytes'), issues.join('\n'));
  });

  it('tls: false on a non-loopback host, at path tls', () => {
    for (const host of ['0.0.0.0', '10.1.2.3', 'gateway.example.com', '::']) {
      const issues = issuesOf({ listen: { host }, tls: false, routes: [ECHO] });
      assert.ok(hasIssueAt(issues, 'tls', 'loopback'), `${host}: ${issues.join('\n')}`);
    }
    for (const host of ['127.0.0.1', '127.0.0.2', '::1', 'localhost']) {
      assert.equal(parseConfig({ listen: { host }, tls: false, routes: [ECHO] }).tls, false, host);
    }
  });

  it('TLS without cert and key, unless dev', () => {
    assert.ok(hasIssueAt(issuesOf({ routes: [ECHO] }), 'tls', 'tls.cert'));
  });

  it('duplicate route paths', () => {
    const issues = issuesOf({ ...DEV, routes: [ECHO, ECHO] });
    assert.ok(hasIssueAt(issues, 'routes[1].path', 'duplicate'), issues.join('\n'));
  });

  it('a route with no target, or two', () => {
    const none = issuesOf({ ...DEV, routes: [{ path: '/x', auth: 'none' }] });
    assert.ok(hasIssueAt(none, 'routes[0]', 'exactly one'), none.join('\n'));
    const two = issuesOf({ ...DEV, routes: [{ ...ECHO, upstream: { url: 'ws://127.0.0.1:9000' } }] });
    assert.ok(hasIssueAt(two, 'routes[0]', 'exactly one'), two.join('\n'));
  });

  it('a route without auth', () => {
    const issues = issuesOf({ ...DEV, routes: [{ path: '/x', echo: {} }] });
    assert.ok(hasIssueAt(issues, 'routes[0].auth'), issues.join('\n'));
  });

  it('an unknown authenticator name', () => {
    const issues = issuesOf({ ...DEV, routes: [{ ...ECHO, auth: ['staff'] }] });
    assert.ok(hasIssueAt(issues, 'routes[0].auth[0]', '"staff"'), issues.join('\n'));
  });

  it('an unknown key inside an authenticator', () => {
    const issues = issuesOf({
      ...DEV,
      authenticators: { devices: { type: 'mtls', allow: ['device-*'], bogus: true } },
      routes: [ECHO],
    });
    assert.ok(hasIssueAt(issues, 'authenticators.devices.bogus', 'unknown key'), issues.join('\n'));
  });
});

describe('checkConfigFile', () => {
  let dir: string;
  const write = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-config-'));
    mkdirSync(join(dir, 'certs'));
    const pki = await testPki();
    write('certs/server.crt', pki.server.certPem);
    write('certs/server.key', pki.server.keyPem);
    write('certs/other.key', pki.client.keyPem);
    write('certs/ca.crt', pki.ca.certPem);
    write('certs/ca.crl', pki.crl);
    write('admin.token', 'a-long-random-token\n');
    write('chat.json', '{"type": "object"}');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const TLS = 'tls: { cert: certs/server.crt, key: certs/server.key }\n';
  const ROUTE = 'routes: [{ path: /echo, auth: none, echo: {} }]\n';

  it('accepts a good file with real certificates and says where it listens', () => {
    const path = write(
      'good.yaml',
      `${TLS.replace(' }', ', clientAuth: required, clientCa: certs/ca.crt, crl: certs/ca.crl }')}` +
        'admin: { tokenFile: admin.token }\n' +
        'routes: [{ path: /echo, auth: none, echo: {} }, { path: /chat, auth: none, schema: chat.json, echo: {} }]\n',
    );
    const result = checkConfigFile(path);
    assert.equal(result.ok, true);
    assert.deepEqual(result.lines, ['ok: 2 routes, listening on wss://127.0.0.1:8443']);
  });

  it('accepts plaintext on loopback with a warning', () => {
    const path = write('plain.yaml', `listen: { host: "::1", port: 8080 }\ntls: false\n${ROUTE}`);
    const result = checkConfigFile(path);
    assert.equal(result.ok, true);
    assert.equal(result.lines[0], 'ok: 1 route, listening on ws://[::1]:8080');
    assert.match(result.lines[1] ?? '', /^WARNING: .*loopback development only/);
  });

  it('warns about development certificates', () => {
    const result = checkConfigFile(
      write('dev.yaml', `listen: { host: 0.0.0.0 }\ntls: { dev: true }\n${ROUTE}`),
    );
    assert.equal(result.ok, true);
    assert.equal(result.lines[0], 'ok: 1 route, listening on wss://0.0.0.0:8443');
    assert.equal(result.lines.filter((l) => l.startsWith('WARNING: tls.dev')).length, 2);
  });

  it('reports bad YAML syntax', () => {
    const result = checkConfigFile(write('syntax.yaml', 'routes: [\n  - path: /echo\n'));
    assert.equal(result.ok, false);
    assert.match(result.lines[0] ?? '', /^\(syntax\): /);
  });

  it('reports every schema issue with its path', () => {
    const result = checkConfigFile(
      write(
        'bad.yaml',
        `${TLS}routes: [{ path: /echo, auth: none, echo: {}, limits: { maxMessageBytes: -1 } }]\nbogus: 1\n`,
      ),
    );
    assert.equal(result.ok, false);
    assert.ok(hasIssueAt(result.lines, 'routes[0].limits.maxMessageBytes'), result.lines.join('\n'));
    assert.ok(hasIssueAt(result.lines, 'bogus', 'unknown key'), result.lines.join('\n'));
  });

  it('names a missing certificate file by key and absolute path', () => {
    const result = checkConfigFile(
      write('nocert.yaml', `tls: { cert: certs/missing.crt, key: certs/server.key }\n${ROUTE}`),
    );
    assert.deepEqual(result, {
      ok: false,
      lines: [`tls.cert: cannot read ${join(dir, 'certs/missing.crt')} (ENOENT)`],
    });
  });

  it('names every other unreadable file', () => {
    const result = checkConfigFile(
      write(
        'nofiles.yaml',
        `tls: { dev: true, clientAuth: optional, clientCa: nope/ca.crt, crl: nope/ca.crl }\n` +
          'admin: { tokenFile: nope/admin.token }\n' +
          'authenticators:\n' +
          '  idp: { type: jwt, keyFile: nope/idp.pem, issuer: i, audience: a, algorithms: [ES256] }\n' +
          '  ops: { type: basic, htpasswdFile: nope/htpasswd }\n' +
          '  web: { type: cookie, keyFiles: [certs/ca.crt, nope/session.pem] }\n' +
          'routes: [{ path: /echo, auth: none, schema: nope/s.json, echo: {} }]\n',
      ),
    );
    assert.equal(result.ok, false);
    for (const key of [
      'tls.clientCa',
      'tls.crl',
      'admin.tokenFile',
      'authenticators.idp.keyFile',
      'authenticators.ops.htpasswdFile',
      'authenticators.web.keyFiles[1]',
      'routes[0].schema',
    ]) {
      assert.ok(hasIssueAt(result.lines, key, '(ENOENT)'), `${key}: ${result.lines.join('\n')}`);
    }
  });

  it('refuses a key that does not match the certificate', () => {
    const result = checkConfigFile(
      write('mismatch.yaml', `tls: { cert: certs/server.crt, key: certs/other.key }\n${ROUTE}`),
    );
    assert.equal(result.ok, false);
    assert.ok(hasIssueAt(result.lines, 'tls.key', 'does not match'), result.lines.join('\n'));
  });

  it('refuses an expired certificate', () => {
    const result = checkConfigFile(write('expired.yaml', `${TLS}${ROUTE}`), new Date('2200-01-01T00:00:00Z'));
    assert.equal(result.ok, false);
    assert.ok(hasIssueAt(result.lines, 'tls.cert', 'expired'), result.lines.join('\n'));
  });

  it('refuses files that do not hold what their key says', () => {
    const result = checkConfigFile(
      write(
        'wrongfiles.yaml',
        `tls: { cert: chat.json, key: certs/server.crt, clientAuth: optional, clientCa: chat.json, crl: certs/ca.crt }\n` +
          'routes: [{ path: /echo, auth: none, schema: certs/ca.crt, echo: {} }]\n',
      ),
    );
    assert.equal(result.ok, false);
    for (const key of ['tls.cert', 'tls.key', 'tls.clientCa', 'tls.crl', 'routes[0].schema']) {
      assert.ok(hasIssueAt(result.lines, key), `${key}: ${result.lines.join('\n')}`);
    }
  });

  it('refuses a jwt authenticator with no key source', () => {
    const result = checkConfigFile(
      write(
        'nokeys.yaml',
        'tls: { dev: true }\nauthenticators: { idp: { type: jwt, issuer: i, audience: a, algorithms: [ES256] } }\n' +
          ROUTE,
      ),
    );
    assert.equal(result.ok, false);
    assert.ok(hasIssueAt(result.lines, 'authenticators.idp', 'jwksUrl'), result.lines.join('\n'));
  });

  it('reports a missing config file', () => {
    const result = checkConfigFile(join(dir, 'absent.yaml'));
    assert.equal(result.ok, false);
    assert.match(result.lines[0] ?? '', /^\(file\): cannot read .*ENOENT/);
  });

  describe('configCommand', () => {
    const run = async (args: string[]) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await configCommand(args, { out: (s) => out.push(s), err: (s) => err.push(s) });
      return { code, out, err };
    };

    it('check: 0 for a good file, output on stdout', async () => {
      const { code, out, err } = await run(['check', write('cli-good.yaml', `${TLS}${ROUTE}`)]);
      assert.equal(code, 0);
      assert.deepEqual(out, ['ok: 1 route, listening on wss://127.0.0.1:8443']);
      assert.deepEqual(err, []);
    });

    it('check: 1 for a bad file, errors on stderr', async () => {
      const { code, out, err } = await run(['check', write('cli-bad.yaml', `${TLS}routes: []\n`)]);
      assert.equal(code, 1);
      assert.deepEqual(out, []);
      assert.ok(hasIssueAt(err, 'routes'), err.join('\n'));
    });

    it('check: 1 for a config that validates but that this version cannot serve', async () => {
      const { code, err } = await run([
        'check',
        write('cli-redis.yaml', `${TLS}${ROUTE}engine: { type: redis, url: redis://127.0.0.1:6379 }\n`),
      ]);
      assert.equal(code, 1);
      assert.ok(hasIssueAt(err, 'engine.type'), err.join('\n'));
    });

    it('defaults: 0, and the output is a valid config', async () => {
      const { code, out } = await run(['defaults']);
      assert.equal(code, 0);
      assert.equal(out.length, 1);
      parseConfigText(out[0] ?? '');
    });

    it('usage errors: 2', async () => {
      for (const args of [
        [],
        ['check'],
        ['check', 'a.yaml', 'b.yaml'],
        ['check', '--bogus'],
        ['defaults', 'x'],
        ['lint'],
      ]) {
        const { code, out, err } = await run(args);
        assert.equal(code, 2, args.join(' '));
        assert.deepEqual(out, []);
        assert.match(err.join('\n'), /usage: portcullis config/);
      }
    });

    it('help: 0', async () => {
      assert.equal((await run(['--help'])).code, 0);
    });
  });
});
