// A plain Node `ws` chat echo app, as a team would run it behind nginx today. Behind Portcullis it
// verifies who the client is from X-Portcullis-Identity with the gateway's JWKS, and trusts
// nothing else the client could have sent.
// Run: NODE_EXTRA_CA_CERTS=.portcullis/ca.crt node examples/upstream-node/app.mjs
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { WebSocketServer } from 'ws';

const GATEWAY = process.env.PORTCULLIS_URL ?? 'https://localhost:8443';
const jwks = createRemoteJWKSet(new URL('/.well-known/portcullis/jwks.json', GATEWAY));

/** The verified identity of a connection, or null (no header, bad signature, wrong audience, expired). */
async function identityOf(req) {
  const token = req.headers['x-portcullis-identity'];
  if (typeof token !== 'string') return null;
  try {
    const { payload } = await jwtVerify(token, jwks, {
      issuer: 'portcullis',
      audience: req.url.split('?')[0], // the route path, unless the route sets identityAudience
      typ: 'portcullis-identity+jwt',
      algorithms: ['ES256'],
    });
    return payload;
  } catch (err) {
    console.error(`identity refused: ${err.code ?? err.message}`);
    return null;
  }
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: Number(process.env.PORT ?? 9000),
  handleProtocols: (offered) => (offered.has('chat.v1') ? 'chat.v1' : false),
});
wss.on('listening', () => console.log(`app listening on ws://127.0.0.1:${wss.address().port}`));
wss.on('connection', async (ws, req) => {
  ws.pause();
  const who = await identityOf(req);
  if (!who) {
    ws.close(4401, 'unauthenticated');
    return;
  }
  console.log(`connected: ${who.sub} via ${who.auth} from ${req.headers['x-forwarded-for']}`);
  ws.send(JSON.stringify({ hello: who.sub }));
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.resume();
});
