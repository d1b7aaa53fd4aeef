// Route selection by Host and path over real sockets (issue 5).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { echoRoute, startGateway } from '../helpers/gateway.js';
import { HS, RawClient } from '../helpers/raw.js';

describe('route selection over real sockets', () => {
  it('routes by Host (with a matching SNI name) and by path prefix, and audits the route served', async () => {
    const gw = await startGateway({
      routes: [
        echoRoute(),
        echoRoute({ path: '/svc', host: 'gw.test', pathMatch: 'prefix', subprotocols: ['gw.v1'] }),
        echoRoute({ path: '/svc', host: 'app.test', subprotocols: ['app.v1'] }),
      ],
    });
    const status = async (host: string, path: string, protocol: string) => {
      const client = await RawClient.connect(gw.port, gw.ca, { servername: host });
      client.write(HS({ 'Sec-WebSocket-Protocol': protocol }, { host, path }));
      const res = await client.readResponse();
      client.destroy();
      return [res.status, res.headers['sec-websocket-protocol'] ?? JSON.parse(res.body || '{}').code];
    };
    try {
      assert.deepEqual(await status('gw.test', '/svc', 'gw.v1'), [101, 'gw.v1']);
      assert.deepEqual(await status('gw.test', '/svc/deep/path', 'gw.v1'), [101, 'gw.v1']);
      assert.deepEqual(await status('gw.test', '/svc', 'app.v1'), [400, 'SUBPROTOCOL_NOT_SUPPORTED']);
      assert.deepEqual(await status('app.test', '/svc', 'app.v1'), [101, 'app.v1']);
      assert.deepEqual(await status('app.test', '/svc/deep', 'app.v1'), [404, 'ROUTE_NOT_FOUND']);
      assert.deepEqual(await status('localhost', '/svc', 'gw.v1'), [404, 'ROUTE_NOT_FOUND']);
    } finally {
      await gw.close();
    }
  });
});
