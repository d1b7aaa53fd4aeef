// Route selection by Host and path (issue 5): the most specific host first, exact before prefix,
// the longest prefix first, and prefixes only on segment boundaries.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { compileHandshakePolicy, findRoute } from '../../src/core/handshake.js';

const config = parseConfig({
  tls: { dev: true },
  routes: [
    { path: '/chat', auth: 'none', echo: {} },
    { path: '/api', pathMatch: 'prefix', auth: 'none', echo: {} },
    { path: '/api/v2', pathMatch: 'prefix', auth: 'none', echo: {} },
    { path: '/chat', host: 'chat.example.com', auth: 'none', echo: {} },
    { path: '/', pathMatch: 'prefix', host: '*.apps.example.com', auth: 'none', echo: {} },
    { path: '/api/exact', auth: 'none', echo: {} },
  ],
});
const policy = compileHandshakePolicy(config);
const route = (host: string, path: string) => findRoute(policy, host, path)?.key ?? null;

describe('route selection by Host and path', () => {
  it('prefers the route for this host over the route for any host', () => {
    assert.equal(route('chat.example.com', '/chat'), 'chat.example.com /chat');
    assert.equal(route('other.test', '/chat'), '* /chat');
  });

  it('matches *.example.com for any subdomain but never the bare parent', () => {
    assert.equal(route('a.apps.example.com', '/anything/here'), '*.apps.example.com /');
    assert.equal(route('a.b.apps.example.com', '/x'), '*.apps.example.com /');
    assert.equal(route('apps.example.com', '/x'), null);
    assert.equal(route('evilapps.example.com', '/x'), null);
  });

  it('serves a prefix on segment boundaries only, longest prefix first, exact paths before prefixes', () => {
    assert.equal(route('h', '/api'), '* /api');
    assert.equal(route('h', '/api/users'), '* /api');
    assert.equal(route('h', '/api/v2/users'), '* /api/v2');
    assert.equal(route('h', '/api/exact'), '* /api/exact');
    assert.equal(route('h', '/apix'), null);
    assert.equal(route('h', '/chat/x'), null);
  });

  it('refuses two routes with the same host and path, but allows the same path on two hosts', () => {
    assert.throws(
      () =>
        parseConfig({
          tls: { dev: true },
          routes: [
            { path: '/a', auth: 'none', echo: {} },
            { path: '/a', auth: 'none', echo: {} },
          ],
        }),
      /duplicate route path/,
    );
    parseConfig({
      tls: { dev: true },
      routes: [
        { path: '/a', auth: 'none', echo: {} },
        { path: '/a', host: 'x.test', auth: 'none', echo: {} },
      ],
    });
  });
});
