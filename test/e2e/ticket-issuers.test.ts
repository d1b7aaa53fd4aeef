// A ticket-only route: the WebSocket accepts nothing but a one-time ticket, while a session cookie
// may mint tickets at POST /.portcullis/ticket (behind the Origin and custom-header checks).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { signSessionCookie } from '../../src/server/auth/cookie-sign.js';
import {
  closed,
  echoRoute,
  nextMessage,
  openClient,
  startGateway,
  type TestGateway,
  writeTempFile,
} from '../helpers/gateway.js';
import { HS, RawClient } from '../helpers/raw.js';

async function post(gw: TestGateway, headers: Record<string, string>, method = 'POST') {
  const client = await RawClient.connect(gw.port, gw.ca);
  const lines = Object.entries({ Host: 'localhost', 'Content-Length': '0', ...headers }).map(
    ([k, v]) => `${k}: ${v}`,
  );
  client.write(`${method} /.portcullis/ticket?route=/live HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`);
  const res = await client.readResponse();
  client.destroy();
  return res;
}

describe('ticket-only routes with issueWith', () => {
  let gw: TestGateway;
  let cookie: string;

  before(async () => {
    const key = randomBytes(32).toString('hex');
    const keyFile = writeTempFile('session.key', key);
    cookie = await signSessionCookie({ sub: 'alice', exp: Math.floor(Date.now() / 1000) + 600 }, key);
    gw = await startGateway({
      authenticators: {
        session: { type: 'cookie', name: 'sid', keyFiles: [keyFile] },
        tickets: { type: 'ticket', issueWith: ['session'] },
      },
      routes: [echoRoute(), echoRoute({ path: '/live', auth: ['tickets'] })],
    });
  });
  after(() => gw.close());

  it('A-01 refuses the session cookie on the WebSocket itself: only a ticket opens the route', async () => {
    const client = await RawClient.connect(gw.port, gw.ca);
    client.write(HS({ Cookie: `sid=${cookie}` }, { path: '/live' }));
    const res = await client.readResponse();
    assert.equal(res.status, 401);
    assert.equal(JSON.parse(res.body).code, 'UNAUTHENTICATED');
    client.destroy();
  });

  it('mints a ticket with the cookie (allowed Origin + custom header) and the ticket opens the route once', async () => {
    const res = await post(gw, {
      Origin: 'https://app.test',
      Cookie: `sid=${cookie}`,
      'X-Portcullis-Ticket': '1',
    });
    assert.equal(res.status, 200);
    const { ticket } = JSON.parse(res.body) as { ticket: string };
    const ws = await openClient(gw, `/live?ticket=${ticket}`);
    const reply = nextMessage(ws);
    ws.send('hi');
    assert.equal((await reply).data.toString(), 'hi');
    const accepted = gw.logs.filter(
      (l) => l.event === 'handshake' && l.outcome === 'accepted' && l.route === '/live',
    );
    assert.equal(accepted.at(-1)?.identity, 'alice');
    ws.close(1000);
    await closed(ws);
    await assert.rejects(openClient(gw, `/live?ticket=${ticket}`), /401/);
    assert.ok(!gw.rawLog().includes(ticket));
    assert.ok(!gw.rawLog().includes(cookie));
  });

  it('answers a GET on the ticket endpoint with 405 and Allow: POST, OPTIONS', async () => {
    const res = await post(gw, { Origin: 'https://app.test' }, 'GET');
    assert.equal(res.status, 405);
    assert.equal(res.headers.allow, 'POST, OPTIONS');
  });

  it('refuses a ticket authenticator that names an unknown or ticket issuer at start', async () => {
    await assert.rejects(
      startGateway({
        authenticators: { tickets: { type: 'ticket', issueWith: ['nobody'] } },
        routes: [echoRoute({ auth: ['tickets'] })],
      }),
      /authenticators\.tickets\.issueWith\[0\]/,
    );
  });
});
