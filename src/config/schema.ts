// One strict schema for the whole configuration. Unknown keys are errors; every default is on the
// safe side (loopback bind, no origins allowed, authentication required, every limit set).
import { isIP } from 'node:net';
import { z } from 'zod';
import { unforwardable } from '../core/forward-headers.js';
import { parseOriginPattern } from '../core/origin.js';

const ms = (def: number) => z.number().int().min(1).max(2_147_483_647).default(def);
const count = (def: number) => z.number().int().min(1).max(1_000_000_000).default(def);

/** A CIDR such as 10.0.0.0/8 or ::1/128, or a bare address. */
const cidr = z.string().refine((value) => {
  const [addr, bits, extra] = value.split('/');
  if (extra !== undefined || addr === undefined) return false;
  const family = isIP(addr);
  if (family === 0) return false;
  if (bits === undefined) return true;
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}, 'must be an IP address or CIDR, e.g. 10.0.0.0/8');

/** An RFC 6455 subprotocol token (RFC 7230 tchar). */
const token = z.string().regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, 'must be an HTTP token');

export const ListenSchema = z.strictObject({
  host: z.string().min(1).default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(8443),
});

export const TlsSchema = z.strictObject({
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
  minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
  clientAuth: z.enum(['off', 'optional', 'required']).default('off'),
  clientCa: z.string().min(1).optional(),
  crl: z.string().min(1).optional(),
  dev: z.boolean().default(false),
  devDir: z.string().min(1).default('.portcullis'),
  hstsMaxAgeSeconds: z.number().int().min(31_536_000).default(31_536_000),
  sni: z
    .array(
      z.strictObject({
        servername: z
          .string()
          .regex(
            /^(\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/,
            'must be a DNS name, optionally *.example.com',
          ),
        cert: z.string().min(1),
        key: z.string().min(1),
      }),
    )
    .default([]),
  expiryWarningDays: z.number().int().min(1).max(365).default(30),
});

export const PerIpSchema = z.strictObject({
  maxConnections: count(100),
  handshakesPerSecond: z.number().positive().default(20),
  handshakeBurst: count(40),
  authFailuresPerMinute: z.number().positive().default(10),
  authFailureBurst: count(20),
});

export const ServerLimitsSchema = z.strictObject({
  maxConnections: count(10_000),
  perIp: PerIpSchema.prefault({}),
  handshakeTimeoutMs: ms(10_000),
  maxPendingHandshakes: count(1_000),
  maxHeaderBytes: z.number().int().min(1024).max(65_536).default(16_384),
  maxHeaderCount: z.number().int().min(16).max(2_000).default(100),
  maxUrlBytes: z.number().int().min(64).max(65_536).default(4_096),
  drainTimeoutMs: ms(10_000),
  closeTimeoutMs: ms(5_000),
});

export const RouteLimitsSchema = z.strictObject({
  maxMessageBytes: z
    .number()
    .int()
    .min(1)
    .max(256 * 1024 * 1024)
    .default(65_536),
  maxFragments: count(1_000),
  maxBufferedChunks: count(10_000),
  messagesPerSecond: z.number().positive().default(100),
  messageBurst: count(200),
  bytesPerSecond: z.number().positive().default(1_048_576),
  bytesBurst: count(2_097_152),
  onRateExceeded: z.enum(['throttle', 'drop', 'close']).default('throttle'),
  controlFramesPerSecond: z.number().positive().default(10),
  controlFrameBurst: count(20),
  idleTimeoutMs: ms(60_000),
  pingIntervalMs: ms(25_000),
  pongTimeoutMs: ms(10_000),
  maxSendQueueBytes: count(1_048_576),
  maxConnectionsPerIdentity: count(10),
  maxLifetimeMs: ms(86_400_000),
  maxJsonDepth: z.number().int().min(1).max(256).default(32),
});

const ClaimValue = z.union([z.string(), z.number(), z.boolean()]);
export const RequireSchema = z.strictObject({
  claims: z.record(z.string(), z.union([ClaimValue, z.strictObject({ oneOf: z.array(ClaimValue).min(1) })])),
});

export const EchoTargetSchema = z.strictObject({});
/** A ws:// or wss:// URL with a host, no credentials and no fragment (an upstream of a route). */
const upstreamUrl = z.string().superRefine((value, ctx) => {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be a ws:// or wss:// URL' });
    return;
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    ctx.addIssue({ code: 'custom', message: 'must be a ws:// or wss:// URL' });
  } else if (!url.hostname) ctx.addIssue({ code: 'custom', message: 'must name a host' });
  else if (url.username || url.password) {
    ctx.addIssue({ code: 'custom', message: 'must not carry credentials (user:password@)' });
  } else if (url.hash || value.includes('#'))
    ctx.addIssue({ code: 'custom', message: 'must not have a #fragment' });
});
const upstreamFile = z.string().min(1);
/** A reserved claim of the identity token, which identityClaims cannot copy over. */
const RESERVED_IDENTITY_CLAIMS = ['iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti', 'auth'];

export const UpstreamHealthCheckSchema = z.strictObject({
  type: z.enum(['http', 'websocket']).default('http'),
  path: z
    .string()
    .regex(/^\/[A-Za-z0-9\-._~!$&'()*+,;=:@/%?]*$/, 'must be an absolute path such as /healthz')
    .default('/'),
  intervalMs: z.number().int().min(100).max(3_600_000).default(10_000),
  timeoutMs: ms(2_000),
  healthyAfter: z.number().int().min(1).max(100).default(2),
  unhealthyAfter: z.number().int().min(1).max(100).default(2),
});

export const UpstreamTargetSchema = z
  .strictObject({
    url: z.union([upstreamUrl, z.array(upstreamUrl).min(1).max(64)]),
    ca: upstreamFile.optional(),
    pins: z
      .array(z.string().regex(/^sha256\/[A-Za-z0-9+/]{43}=$/, 'must be sha256/<base64 of 32 bytes>'))
      .min(1)
      .optional(),
    cert: upstreamFile.optional(),
    key: upstreamFile.optional(),
    servername: z
      .string()
      .regex(/^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/, 'must be a DNS name')
      .optional(),
    balance: z.enum(['round-robin', 'least-connections']).default('round-robin'),
    connectTimeoutMs: z.number().int().min(1).max(60_000).default(5_000),
    retries: z.number().int().min(0).max(5).default(1),
    ejectAfterFailures: z.number().int().min(1).max(1_000).default(3),
    ejectForMs: ms(10_000),
    healthCheck: UpstreamHealthCheckSchema.optional(),
    passHeaders: z
      .array(
        z.string().superRefine((name, ctx) => {
          const why = unforwardable(name);
          if (why) ctx.addIssue({ code: 'custom', message: `${name} ${why}` });
        }),
      )
      .default([]),
    passQuery: z.boolean().default(true),
    forwardedHeaders: z.boolean().default(true),
    identityHeader: z.boolean().default(true),
    identityKeyFile: upstreamFile.optional(),
    identityTtlSec: z.number().int().min(5).max(3_600).default(60),
    identityAudience: z.string().min(1).max(256).optional(),
    identityClaims: z
      .array(
        z
          .string()
          .min(1)
          .max(64)
          .refine((c) => !RESERVED_IDENTITY_CLAIMS.includes(c), 'is set by the gateway'),
      )
      .default([]),
    plainIdentityHeaders: z.boolean().default(false),
    maxQueueBytes: count(1_048_576),
    highWaterMarkBytes: count(65_536),
    stallTimeoutMs: ms(30_000),
  })
  .superRefine((u, ctx) => {
    const issue = (path: string, message: string) =>
      ctx.addIssue({ code: 'custom', path: path.split('.').filter(Boolean), message });
    const urls = typeof u.url === 'string' ? [u.url] : u.url;
    if (new Set(urls).size !== urls.length) issue('url', 'lists an upstream twice');
    const secure = urls.filter((v) => v.startsWith('wss:')).length;
    if (secure !== 0 && secure !== urls.length) issue('url', 'mixes ws:// and wss:// upstreams');
    for (const key of ['ca', 'pins', 'cert', 'key', 'servername'] as const) {
      if (u[key] !== undefined && secure === 0) issue(key, 'applies to wss:// upstreams only');
    }
    if ((u.cert === undefined) !== (u.key === undefined)) issue('cert', 'cert and key go together');
    if (!u.identityHeader) {
      for (const key of ['identityKeyFile', 'identityAudience'] as const) {
        if (u[key] !== undefined) issue(key, 'is only used with identityHeader: true');
      }
    }
    if (u.highWaterMarkBytes > u.maxQueueBytes) issue('highWaterMarkBytes', 'must not exceed maxQueueBytes');
    if (u.healthCheck && u.healthCheck.timeoutMs >= u.healthCheck.intervalMs) {
      issue('healthCheck.timeoutMs', 'must be below healthCheck.intervalMs');
    }
  });
/** One channel rule of a broker route; deny by default, so a channel no rule grants is refused. */
export const ChannelRuleSchema = z.strictObject({
  pattern: z
    .string()
    .min(1)
    .max(200)
    .regex(/^[A-Za-z0-9_.:@{}*-]+$/, 'letters, digits, _ . : @ - and {template} or * segments only'),
  subscribe: z.boolean().default(false),
  publish: z.boolean().default(false),
  when: RequireSchema.optional(),
  schema: z.string().min(1).optional(),
  publishPerSecond: z.number().positive().default(10),
  publishBurst: count(20),
});

export const BrokerTargetSchema = z.strictObject({
  channels: z.array(ChannelRuleSchema).min(1),
  maxSubscriptions: count(100),
  maxChannelNameBytes: z.number().int().min(8).max(1024).default(200),
  maxErrors: count(20),
  // Resumption (M-07): the last historySize publications per channel, for historyTtlMs, in at most
  // maxRetainedChannels channels and maxHistoryBytes; least recently published channels go first.
  historySize: z.number().int().min(0).max(100_000).default(100),
  historyTtlMs: ms(300_000),
  maxRetainedChannels: count(10_000),
  maxHistoryBytes: z.number().int().min(1).max(1_099_511_627_776).default(67_108_864),
});

export const RouteSchema = z
  .strictObject({
    path: z
      .string()
      .regex(/^\/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*$/, 'must be an absolute path such as /chat')
      .refine((p) => !p.includes('//') && !/(^|\/)\.\.?(\/|$)/.test(p), 'must be in canonical form'),
    host: z
      .string()
      .regex(
        /^(\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/,
        'must be a host name, or *.example.com for any subdomain',
      )
      .optional(),
    pathMatch: z.enum(['exact', 'prefix']).default('exact'),
    origins: z
      .array(
        z.string().superRefine((entry, ctx) => {
          const parsed = parseOriginPattern(entry);
          if ('error' in parsed) ctx.addIssue({ code: 'custom', message: parsed.error });
        }),
      )
      .default([]),
    allowMissingOrigin: z.boolean().default(false),
    allowQueryToken: z.boolean().default(false),
    auth: z.union([z.literal('none'), z.array(z.string().min(1)).min(1)]),
    require: RequireSchema.optional(),
    subprotocols: z
      .array(
        token.refine((name) => !name.startsWith('portcullis.bearer.'), {
          message: 'portcullis.bearer.* carries a credential and can never be selected',
        }),
      )
      .default([]),
    perMessageDeflate: z.boolean().default(false),
    limits: RouteLimitsSchema.prefault({}),
    schema: z.string().min(1).optional(),
    echo: EchoTargetSchema.optional(),
    upstream: UpstreamTargetSchema.optional(),
    broker: BrokerTargetSchema.optional(),
  })
  .superRefine((route, ctx) => {
    const targets = ['echo', 'upstream', 'broker'].filter((t) => route[t as 'echo'] !== undefined);
    if (targets.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: 'exactly one of echo, upstream or broker is required',
        path: [],
      });
    }
  });

const httpsUrl = z.string().regex(/^https:\/\/[^\s]+$/, 'must be an https:// URL');
const file = z.string().min(1);
// Asymmetric algorithms only: an HS* allowlist would let a public key be used as an HMAC secret (A-03).
/** The JWS algorithms a jwt authenticator may list. */
export const JWS_ALGORITHMS = [
  'ES256',
  'ES384',
  'ES512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'EdDSA',
] as const;
const jwsAlgorithm = z.enum(JWS_ALGORITHMS);

export const JwtAuthenticatorSchema = z
  .strictObject({
    type: z.literal('jwt'),
    jwksUrl: httpsUrl.optional(),
    jwksCaFile: file.optional(),
    keyFile: file.optional(),
    issuer: z.string().min(1),
    audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
    algorithms: z.array(jwsAlgorithm).min(1),
    clockToleranceSec: z.number().int().min(0).max(60).default(30),
    maxTokenAgeSec: z.number().int().min(1).max(31_536_000).optional(),
    typ: z.string().min(1).optional(),
    subjectClaim: z.string().min(1).default('sub'),
    jwksCacheMs: ms(600_000),
    jwksCooldownMs: ms(30_000),
    jwksTimeoutMs: ms(5_000),
  })
  .refine((a) => (a.jwksUrl === undefined) !== (a.keyFile === undefined), {
    message: 'exactly one of jwksUrl or keyFile is required',
  })
  .refine((a) => a.jwksCaFile === undefined || a.jwksUrl !== undefined, {
    message: 'jwksCaFile is only used with jwksUrl',
    path: ['jwksCaFile'],
  });

export const MtlsAuthenticatorSchema = z.strictObject({
  type: z.literal('mtls'),
  identityFrom: z.enum(['cn', 'san-dns', 'san-uri', 'san-email']).default('cn'),
  allow: z.array(z.string().min(1)).min(1),
});

export const TicketAuthenticatorSchema = z.strictObject({
  type: z.literal('ticket'),
  issueWith: z.array(z.string().min(1)).default([]),
  ttlMs: z.number().int().min(1_000).max(300_000).default(30_000),
  maxOutstanding: count(100_000),
});

export const CookieAuthenticatorSchema = z
  .strictObject({
    type: z.literal('cookie'),
    name: z
      .string()
      .regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/)
      .default('session'),
    keyFiles: z.array(file).min(1).optional(),
    introspectUrl: httpsUrl.optional(),
    introspectCaFile: file.optional(),
    cacheMs: z.number().int().min(0).max(300_000).default(5_000),
    timeoutMs: ms(2_000),
    subjectClaim: z.string().min(1).default('sub'),
  })
  .refine((a) => (a.keyFiles === undefined) !== (a.introspectUrl === undefined), {
    message: 'exactly one of keyFiles or introspectUrl is required',
  });

export const BasicAuthenticatorSchema = z.strictObject({
  type: z.literal('basic'),
  htpasswdFile: file,
  realm: z
    .string()
    .regex(/^[\x20-\x21\x23-\x7e]+$/, 'printable ASCII without quotes')
    .default('portcullis'),
  failuresPerMinute: z.number().positive().default(10),
  failureBurst: count(10),
});

export const WebhookAuthenticatorSchema = z.strictObject({
  type: z.literal('webhook'),
  url: httpsUrl,
  caFile: file.optional(),
  forwardHeaders: z.array(z.string().regex(/^[A-Za-z0-9-]+$/)).default(['authorization']),
  timeoutMs: ms(2_000),
  cacheMs: z.number().int().min(0).max(300_000).default(0),
});

export const AuthenticatorSchema = z.discriminatedUnion('type', [
  JwtAuthenticatorSchema,
  MtlsAuthenticatorSchema,
  TicketAuthenticatorSchema,
  CookieAuthenticatorSchema,
  BasicAuthenticatorSchema,
  WebhookAuthenticatorSchema,
]);

export const AdminSchema = z.strictObject({
  listen: ListenSchema.prefault({ port: 9090 }),
  tokenFile: z.string().min(1),
});

export const EngineSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('memory') }),
  z.strictObject({ type: z.literal('redis'), url: z.string().regex(/^rediss?:\/\//) }),
]);

export const LogSchema = z.strictObject({
  level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  bufferBytes: z.number().int().min(0).max(16_000).default(16_000),
  flushIntervalMs: z.number().int().min(10).max(60_000).default(250),
  maxPendingBytes: z.number().int().min(65_536).max(1_073_741_824).default(16_777_216),
});

export const ConfigSchema = z
  .strictObject({
    listen: ListenSchema.prefault({}),
    tls: z
      .union([z.literal(false), TlsSchema], { error: 'must be false or an object such as { dev: true }' })
      .prefault({}),
    hosts: z
      .array(
        z
          .string()
          .regex(
            /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/,
            'must be a host name or address, optionally with :port (no scheme, no trailing dot)',
          ),
      )
      .default([]),
    trustedProxies: z.array(cidr).default([]),
    limits: ServerLimitsSchema.prefault({}),
    authenticators: z.record(z.string().regex(/^[A-Za-z0-9_-]+$/), AuthenticatorSchema).default({}),
    routes: z.array(RouteSchema).min(1),
    admin: AdminSchema.optional(),
    publishApi: z.strictObject({ keyFile: z.string().min(1) }).optional(),
    engine: EngineSchema.prefault({ type: 'memory' }),
    log: LogSchema.prefault({}),
  })
  .superRefine((config, ctx) => {
    if (config.tls === false && !isLoopback(config.listen.host)) {
      ctx.addIssue({
        code: 'custom',
        path: ['tls'],
        message: 'false is allowed only when listen.host is a loopback address',
      });
    }
    if (config.tls !== false && !config.tls.dev && (!config.tls.cert || !config.tls.key)) {
      ctx.addIssue({
        code: 'custom',
        path: ['tls'],
        message: 'tls.cert and tls.key are required unless tls.dev is true',
      });
    }
    if (config.tls !== false && config.tls.clientAuth !== 'off' && !config.tls.clientCa) {
      ctx.addIssue({
        code: 'custom',
        path: ['tls', 'clientCa'],
        message: 'required when clientAuth is not off',
      });
    }
    for (const [name, auth] of Object.entries(config.authenticators)) {
      if (auth.type !== 'ticket') continue;
      auth.issueWith.forEach((issuer, j) => {
        const type = config.authenticators[issuer]?.type;
        if (type === undefined || type === 'ticket') {
          ctx.addIssue({
            code: 'custom',
            path: ['authenticators', name, 'issueWith', j],
            message: `"${issuer}" must name a configured authenticator that is not a ticket authenticator`,
          });
        }
      });
    }
    const seen = new Set<string>();
    config.routes.forEach((route, i) => {
      const key = `${route.host?.toLowerCase() ?? '*'} ${route.path}`;
      if (seen.has(key)) {
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i, 'path'],
          message: `duplicate route path ${route.path}${route.host ? ` for host ${route.host}` : ''}`,
        });
      }
      seen.add(key);
      if (route.auth !== 'none') {
        route.auth.forEach((name, j) => {
          if (!Object.hasOwn(config.authenticators, name)) {
            ctx.addIssue({
              code: 'custom',
              path: ['routes', i, 'auth', j],
              message: `unknown authenticator "${name}"`,
            });
          }
        });
      }
      if (route.broker && !route.subprotocols.includes('portcullis.v1')) {
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i, 'subprotocols'],
          message: 'a broker route speaks portcullis.v1: list it in subprotocols',
        });
      }
      if (route.broker && route.schema) {
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i, 'schema'],
          message: 'broker routes validate per channel: use broker.channels[].schema',
        });
      }
      if (route.auth === 'none' && route.require) {
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i, 'require'],
          message: 'requires claims, so auth cannot be none',
        });
      }
      if (route.limits.maxSendQueueBytes < route.limits.maxMessageBytes) {
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i, 'limits', 'maxSendQueueBytes'],
          message: 'must be at least maxMessageBytes, or a maximal message could never be sent',
        });
      }
      if (route.limits.bytesBurst < route.limits.maxMessageBytes) {
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i, 'limits', 'bytesBurst'],
          message: 'must be at least maxMessageBytes, or a maximal message could never pass',
        });
      }
    });
  });

/** True for the loopback names and addresses a plaintext listener may bind to. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/** The validated, defaulted configuration. */
export type Config = z.output<typeof ConfigSchema>;
/** The configuration as a user writes it (defaults optional). */
export type ConfigInput = z.input<typeof ConfigSchema>;
export type RouteConfig = z.output<typeof RouteSchema>;
export type RouteLimits = z.output<typeof RouteLimitsSchema>;
export type ServerLimits = z.output<typeof ServerLimitsSchema>;
export type TlsConfig = z.output<typeof TlsSchema>;
export type BrokerConfig = z.output<typeof BrokerTargetSchema>;
export type UpstreamConfig = z.output<typeof UpstreamTargetSchema>;
export type ChannelRuleConfig = z.output<typeof ChannelRuleSchema>;
export type AuthenticatorConfig = z.output<typeof AuthenticatorSchema>;
export type JwtAuthenticatorConfig = z.output<typeof JwtAuthenticatorSchema>;
export type MtlsAuthenticatorConfig = z.output<typeof MtlsAuthenticatorSchema>;
export type TicketAuthenticatorConfig = z.output<typeof TicketAuthenticatorSchema>;
export type CookieAuthenticatorConfig = z.output<typeof CookieAuthenticatorSchema>;
export type BasicAuthenticatorConfig = z.output<typeof BasicAuthenticatorSchema>;
export type WebhookAuthenticatorConfig = z.output<typeof WebhookAuthenticatorSchema>;
