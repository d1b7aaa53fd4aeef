// The ceiling: Node TLS with no HTTP and no framing. One listener echoes every byte; the other
// relays every byte a client sends to every other client (fan-out without framing).
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { onStop, ready, settings } from './common.js';

const s = settings();
const options = { cert: readFileSync(s.cert), key: readFileSync(s.key) };

const echo = tls.createServer(options, (socket) => {
  socket.on('error', () => undefined);
  socket.on('data', (chunk) => socket.write(chunk));
});

const peers = new Set<tls.TLSSocket>();
const relay = tls.createServer(options, (socket) => {
  peers.add(socket);
  socket.on('error', () => undefined);
  socket.on('close', () => peers.delete(socket));
  socket.on('data', (chunk) => {
    for (const peer of peers) if (peer !== socket) peer.write(chunk);
  });
});

const listen = (server: tls.Server) =>
  new Promise<number>((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
  );
const [port, fanoutPort] = await Promise.all([listen(echo), listen(relay)]);
ready({ port, fanoutPort });
onStop(() => {
  echo.close();
  relay.close();
});
