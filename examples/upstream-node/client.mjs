// A client for both examples: connects to wss://localhost:8443/chat as ops, sends what you type
// (or its arguments) and prints what comes back.
// Run: NODE_EXTRA_CA_CERTS=.portcullis/ca.crt node examples/upstream-node/client.mjs hello whoami
import WebSocket from 'ws';

const url = process.env.PORTCULLIS_CHAT ?? 'wss://localhost:8443/chat';
const ws = new WebSocket(url, ['chat.v1'], {
  origin: 'https://localhost:8443',
  headers: {
    authorization: `Basic ${Buffer.from('ops:example-password').toString('base64')}`,
    'x-request-id': 'example-1',
  },
});
const messages = process.argv.slice(2);
ws.on('open', () => {
  console.log(`open, subprotocol ${ws.protocol}`);
  for (const m of messages) ws.send(m);
  if (messages.length > 0) setTimeout(() => ws.close(1000), 500);
  else process.stdin.on('data', (d) => ws.send(d.toString().trim()));
});
ws.on('message', (data) => console.log(`< ${data}`));
ws.on('unexpected-response', (_req, res) => {
  console.log(`refused: HTTP ${res.statusCode}`);
  res.on('data', (d) => console.log(String(d)));
});
ws.on('close', (code, reason) => console.log(`closed ${code} ${reason}`));
ws.on('error', (err) => console.log(`error: ${err.message}`));
