// Anchor: @fastify/websocket on fastify over TLS. /echo echoes; /live relays every message to every
// other client of the websocket server (each send framed separately).
import { readFileSync } from 'node:fs';
import websocket from '@fastify/websocket';
import Fastify from 'fastify';
import { onStop, ready, settings } from './common.js';

const s = settings();
const app = Fastify({ https: { cert: readFileSync(s.cert), key: readFileSync(s.key) }, logger: false });
await app.register(websocket);
app.register(async (scope) => {
  scope.get('/echo', { websocket: true }, (socket) => {
    socket.on('message', (data, isBinary) => socket.send(data as Buffer, { binary: isBinary }));
  });
  scope.get('/live', { websocket: true }, (socket) => {
    socket.on('message', (data, isBinary) => {
      for (const peer of app.websocketServer.clients) {
        if (peer !== socket && peer.readyState === 1) peer.send(data as Buffer, { binary: isBinary });
      }
    });
  });
});

await app.listen({ port: 0, host: '127.0.0.1' });
const address = app.server.address();
ready({ port: typeof address === 'object' && address ? address.port : 0 });
onStop(() => app.close());
