// Anchor: bare ws over TLS, as a team would write it by hand (bufferutil and utf-8-validate
// installed). /echo echoes; /live relays every message to every other /live client, each send
// framed separately (the usual ws broadcast). With `plain` it listens without TLS, as the upstream
// that nginx terminates TLS for.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { type WebSocket, WebSocketServer } from 'ws';
import { onStop, ready, settings } from './common.js';

const s = settings();
const server = s.plain
  ? http.createServer()
  : https.createServer({ cert: readFileSync(s.cert), key: readFileSync(s.key) });
const wss = new WebSocketServer({ server });
const live = new Set<WebSocket>();

wss.on('connection', (ws, req) => {
  ws.on('error', () => undefined);
  if (req.url === '/live') {
    live.add(ws);
    ws.on('close', () => live.delete(ws));
    ws.on('message', (data, isBinary) => {
      for (const peer of live)
        if (peer !== ws && peer.readyState === 1) peer.send(data, { binary: isBinary });
    });
    return;
  }
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});

server.listen(0, '127.0.0.1', () => ready({ port: (server.address() as AddressInfo).port }));
onStop(() => {
  for (const ws of wss.clients) ws.terminate();
  server.close();
});
