// Portcullis with its full default policy on: TLS, the Origin allowlist, every route authenticated
// by a jwt authenticator (ES256 key file) with a bearer token, per-IP and per-route rate and size
// limits switched on (set high enough that the load never reaches them) and the audit log written
// to a file. /echo echoes; /live is the built-in broker (portcullis.v1). With `upstream` set, /echo
// is an upstream route to that ws:// app instead (gateway mode, its defaults on: forwarded headers
// and the signed identity header).

import { parseConfig } from '../../dist/config/load.js';
import type { ConfigInput } from '../../dist/config/schema.js';
import { createLogDestination } from '../../dist/server/audit.js';
import { createGateway } from '../../dist/server/gateway.js';
import { BENCH_CHANNEL } from '../frames.js';
import { JWT_AUDIENCE, JWT_ISSUER, onStop, ready, settings } from './common.js';

// Limits stay on with their checks on every message; only the ceilings move out of the load's way.
const routeLimits = {
  maxMessageBytes: 131_072,
  messagesPerSecond: 1_000_000,
  messageBurst: 1_000_000,
  bytesPerSecond: 1_000_000_000,
  bytesBurst: 1_000_000_000,
  maxSendQueueBytes: 16_777_216,
  maxConnectionsPerIdentity: 100_000,
};

/** The gateway configuration the suite measures. */
function benchConfig(s: { cert: string; key: string; jwtKeyFile: string; upstream?: string }): ConfigInput {
  const common = { origins: ['https://app.test'], auth: ['app'], limits: routeLimits };
  const echo = s.upstream ? { upstream: { url: s.upstream } } : { echo: {} };
  return {
    listen: { host: '127.0.0.1', port: 0 },
    tls: { cert: s.cert, key: s.key },
    limits: {
      maxConnections: 100_000,
      perIp: { maxConnections: 100_000, handshakesPerSecond: 1_000_000, handshakeBurst: 1_000_000 },
    },
    authenticators: {
      app: {
        type: 'jwt',
        keyFile: s.jwtKeyFile,
        issuer: JWT_ISSUER,
        audience: JWT_AUDIENCE,
        algorithms: ['ES256'],
      },
    },
    routes: [
      { path: '/echo', ...common, ...echo },
      {
        path: '/live',
        ...common,
        subprotocols: ['portcullis.v1'],
        broker: {
          channels: [
            {
              pattern: BENCH_CHANNEL,
              subscribe: true,
              publish: true,
              publishPerSecond: 1_000_000,
              publishBurst: 1_000_000,
            },
          ],
        },
      },
    ],
  } as ConfigInput;
}

const s = settings();
const config = parseConfig(benchConfig(s));
// The gateway's own default destination (buffered as config `log` says), pointed at a file.
const gateway = createGateway(config, {
  logDestination: createLogDestination(config.log, () => {}, s.auditFile),
});
const info = await gateway.listen();
ready({ port: info.port });
onStop(() => gateway.close({ drainTimeoutMs: 500 }));
