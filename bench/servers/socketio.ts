// Anchor: socket.io over TLS, websocket transport only. Event `e` is echoed to its sender (binary
// attachments included); event `p` is broadcast as `m` to every other socket (encoded once).
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { onStop, ready, settings } from './common.js';

const s = settings();
const server = https.createServer({ cert: readFileSync(s.cert), key: readFileSync(s.key) });
const io = new Server(server, { transports: ['websocket'], serveClient: false });

io.on('connection', (socket) => {
  socket.on('e', (data: unknown) => socket.emit('e', data));
  socket.on('p', (data: unknown) => socket.broadcast.emit('m', data));
});

server.listen(0, '127.0.0.1', () => ready({ port: (server.address() as AddressInfo).port }));
onStop(() => {
  io.disconnectSockets(true);
  server.close();
});
