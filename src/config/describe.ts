// Walks the zod config schema into a tree of key paths (with type, default and whether a key is
// required), and holds the one-line description of every path. `config defaults`, the reference
// doc and a test that keeps both in step with the schema all read from here.
import type { z } from 'zod';
import { ConfigSchema } from './schema.js';

/** What a value at a key may look like, merged over the options of a union. */
export interface Shape {
  /** Human-readable type, e.g. `integer 1..2147483647`, `false | object`. */
  readonly type: string;
  /** The keys when the value is an object (variant keys of a discriminated union included). */
  readonly children?: readonly KeyNode[];
  /** The key of a discriminated union, e.g. `type`. */
  readonly discriminator?: string;
  /** The element when the value is a list of objects. */
  readonly item?: Shape;
  /** The value when the value is a map of names to values. */
  readonly entry?: KeyNode;
}

/** One key of the configuration. */
export interface KeyNode {
  /** Path in the doc notation: `routes[].limits.maxMessageBytes`, `authenticators.<name>[type=jwt].issuer`. */
  readonly path: string;
  /** The key as written in a file; `<name>` for map entries. */
  readonly key: string;
  /** Must be written (within its parent object, or within its variant). */
  readonly required: boolean;
  /** The effective default, when there is one (an outer default wins over an inner one). */
  readonly default?: { readonly value: unknown };
  /** For keys of one variant of a discriminated union, e.g. `type=jwt`. */
  readonly variant?: string;
  readonly shape: Shape;
}

/** Placeholder written for the keys of a map, by the map's own key. */
const PLACEHOLDERS: Record<string, string> = { authenticators: '<name>', claims: '<claim>' };

// zod 4 keeps every schema's definition at `_zod.def`; only the fields read here are typed.
interface Def {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  options?: z.ZodType[];
  discriminator?: string;
  element?: z.ZodType;
  valueType?: z.ZodType;
  entries?: Record<string, string | number>;
  values?: unknown[];
  checks?: { _zod: { def: CheckDef } }[];
}
interface CheckDef {
  check: string;
  format?: string;
  value?: number;
  inclusive?: boolean;
  minimum?: number;
}

function defOf(schema: z.ZodType): Def {
  return (schema as unknown as { _zod: { def: Def } })._zod.def;
}

function checksOf(schema: z.ZodType): CheckDef[] {
  return (defOf(schema).checks ?? []).map((c) => c._zod.def);
}

/** Strips optional/default/prefault/pipe wrappers, noting what they said. */
function unwrap(schema: z.ZodType): { core: z.ZodType; optional: boolean; defaulted: boolean } {
  let core = schema;
  let optional = false;
  let defaulted = false;
  for (;;) {
    const def = defOf(core);
    if (def.type === 'optional') optional = true;
    else if (def.type === 'default' || def.type === 'prefault') defaulted = true;
    else if (!['nullable', 'readonly', 'catch', 'nonoptional'].includes(def.type)) break;
    core = def.innerType as z.ZodType;
  }
  if (defOf(core).type === 'pipe') return { ...unwrap(defOf(core).in as z.ZodType), optional, defaulted };
  return { core, optional, defaulted };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function join(parent: string, key: string): string {
  return parent ? `${parent}.${key}` : key;
}

/** A key of an object; `parentValue` is the parent's effective default, which wins over the key's own. */
function fieldNode(
  key: string,
  schema: z.ZodType,
  path: string,
  parentValue: { value: unknown } | undefined,
  variant?: string,
): KeyNode {
  const { core, optional, defaulted } = unwrap(schema);
  let fallback: { value: unknown } | undefined;
  if (parentValue && isRecord(parentValue.value) && Object.hasOwn(parentValue.value, key)) {
    fallback = { value: parentValue.value[key] };
  } else if (defaulted) {
    const parsed = schema.safeParse(undefined);
    if (parsed.success) fallback = { value: parsed.data };
  }
  return {
    path,
    key,
    required: !optional && fallback === undefined,
    ...(fallback ? { default: fallback } : {}),
    ...(variant ? { variant } : {}),
    shape: shapeOf(core, path, fallback),
  };
}

function numberType(schema: z.ZodType): string {
  const checks = checksOf(schema);
  const int = checks.some((c) => c.check === 'number_format' && /int/.test(c.format ?? ''));
  const min = checks.find((c) => c.check === 'greater_than');
  const max = checks.find((c) => c.check === 'less_than');
  const base = int ? 'integer' : 'number';
  if (min?.inclusive && max?.inclusive) return `${base} ${min.value}..${max.value}`;
  const parts = [base];
  if (min) parts.push(`${min.inclusive ? '>=' : '>'} ${min.value}`);
  if (max) parts.push(`${min ? ', ' : ''}${max.inclusive ? '<=' : '<'} ${max.value}`);
  return parts.join(' ').replace(' ,', ',');
}

function minLength(schema: z.ZodType): number {
  return checksOf(schema).find((c) => c.check === 'min_length')?.minimum ?? 0;
}

function shapeOf(schema: z.ZodType, path: string, value: { value: unknown } | undefined): Shape {
  const def = defOf(schema);
  switch (def.type) {
    case 'object': {
      const shape = def.shape ?? {};
      return {
        type: 'object',
        children: Object.entries(shape).map(([k, s]) => fieldNode(k, s, join(path, k), value)),
      };
    }
    case 'union': {
      const options = (def.options ?? []).map((o) => unwrap(o).core);
      if (def.discriminator) return discriminated(def.discriminator, options, path, value);
      const shapes = options.map((o) => shapeOf(o, path, defOf(o).type === 'object' ? value : undefined));
      const children = shapes.flatMap((s) => s.children ?? []);
      const item = shapes.find((s) => s.item)?.item;
      const entry = shapes.find((s) => s.entry)?.entry;
      return {
        type: [...new Set(shapes.map((s) => s.type))].join(' | '),
        ...(children.length ? { children } : {}),
        ...(item ? { item } : {}),
        ...(entry ? { entry } : {}),
      };
    }
    case 'array': {
      const item = shapeOf(unwrap(def.element as z.ZodType).core, `${path}[]`, undefined);
      const list = minLength(schema) > 0 ? `list (at least ${minLength(schema)}) of` : 'list of';
      if (item.children) return { type: `${list} objects`, item };
      return { type: `${list} ${item.type.includes(' | ') ? `(${item.type})` : item.type}` };
    }
    case 'record': {
      const last =
        path
          .split(/[.[\]]/)
          .filter(Boolean)
          .pop() ?? '';
      const placeholder = PLACEHOLDERS[last] ?? '<key>';
      // An entry is never required: the map may be empty.
      const entry = {
        ...fieldNode(placeholder, def.valueType as z.ZodType, `${path}.${placeholder}`, undefined),
        required: false,
      };
      return { type: `map of ${placeholder} to ${entry.shape.type}`, entry };
    }
    case 'string':
      return { type: checksOf(schema).some((c) => c.format === 'url') ? 'URL' : 'string' };
    case 'number':
      return { type: numberType(schema) };
    case 'boolean':
      return { type: 'boolean' };
    case 'enum':
      return { type: Object.values(def.entries ?? {}).join(' | ') };
    case 'literal':
      return { type: (def.values ?? []).map(String).join(' | ') };
    default:
      throw new Error(`describe: zod type "${def.type}" at ${path || '(root)'} is not handled`);
  }
}

/** A discriminated union flattened: the discriminator once, then each variant's keys under `[type=x]`. */
function discriminated(
  discriminator: string,
  options: z.ZodType[],
  path: string,
  value: { value: unknown } | undefined,
): Shape {
  const current = value && isRecord(value.value) ? value.value[discriminator] : undefined;
  const tags: string[] = [];
  const variantKeys: KeyNode[] = [];
  for (const option of options) {
    const shape = defOf(option).shape ?? {};
    const tagSchema = shape[discriminator];
    const tag = String(tagSchema ? (defOf(tagSchema).values?.[0] ?? '') : '');
    tags.push(tag);
    const variant = `${discriminator}=${tag}`;
    const own = current === tag ? value : undefined;
    for (const [k, s] of Object.entries(shape)) {
      if (k !== discriminator) variantKeys.push(fieldNode(k, s, `${path}[${variant}].${k}`, own, variant));
    }
  }
  const tagNode: KeyNode = {
    path: join(path, discriminator),
    key: discriminator,
    required: current === undefined,
    ...(current === undefined ? {} : { default: { value: current } }),
    shape: { type: tags.join(' | ') },
  };
  return { type: `object (by ${discriminator})`, discriminator, children: [tagNode, ...variantKeys] };
}

/** The top-level keys of the configuration, each with its subtree. */
export function schemaTree(): readonly KeyNode[] {
  return shapeOf(ConfigSchema, '', undefined).children ?? [];
}

/** Every key in document order, depth first (list items and map entries included). */
export function schemaKeys(): KeyNode[] {
  const out: KeyNode[] = [];
  const visitShape = (shape: Shape) => {
    for (const child of shape.children ?? []) visit(child);
    if (shape.item) visitShape(shape.item);
    if (shape.entry) visit(shape.entry);
  };
  const visit = (node: KeyNode) => {
    out.push(node);
    visitShape(node.shape);
  };
  schemaTree().forEach(visit);
  return out;
}

/** Every key path of the schema, e.g. `routes[].limits.maxMessageBytes`. */
export function schemaKeyPaths(): string[] {
  return schemaKeys().map((k) => k.path);
}

/** One line per key path: unit, meaning, and why the default is safe. */
export const DESCRIPTIONS: Readonly<Record<string, string>> = {
  listen: 'Where the gateway accepts connections.',
  'listen.host':
    'Address or name to bind. Loopback by default, so nothing is reachable from the network until you choose an interface.',
  'listen.port': 'TCP port; 0 picks a free port (printed at start-up).',

  tls: 'TLS settings for wss://, or false for plaintext ws://, which is accepted only when listen.host is a loopback address.',
  'tls.cert':
    'PEM certificate chain file. Required unless tls.dev is true; watched and reloaded on change without dropping connections.',
  'tls.key': 'PEM private key file for tls.cert (a secret: keep it readable by the gateway user only).',
  'tls.minVersion': 'Lowest TLS version accepted. TLSv1.2 by default; TLSv1.0/1.1 are never offered.',
  'tls.clientAuth':
    'Mutual TLS: off, optional (verify a certificate if one is sent) or required (refuse handshakes without a valid one).',
  'tls.clientCa':
    'PEM file of the CA(s) that issue client certificates; required when clientAuth is not off. Client certificates are verified against these CAs only.',
  'tls.crl': 'PEM certificate revocation list checked against client certificates; watched and reloaded.',
  'tls.dev':
    'Development only: when cert/key are absent, create a local CA and a localhost certificate under devDir. Off, so production never runs on a throwaway CA.',
  'tls.devDir': 'Directory (relative to the config file) where tls.dev keeps its CA and certificate.',
  'tls.hstsMaxAgeSeconds':
    'Seconds in the Strict-Transport-Security header on HTTP answers; at least one year, as browsers preload lists require.',
  'tls.sni':
    'Extra certificates chosen by the TLS server name (SNI); clients that send another name get tls.cert.',
  'tls.sni[].servername':
    'The SNI name this certificate serves: a DNS name, or *.example.com for exactly one label.',
  'tls.sni[].cert': 'PEM certificate chain file for this name; watched and reloaded like tls.cert.',
  'tls.sni[].key': 'PEM private key file for this name; keep it readable by the gateway user only.',
  'tls.expiryWarningDays':
    'A server certificate this close to its notAfter is logged as a warning at start, on reload and daily.',

  hosts:
    'Allowed Host header values (HOST_NOT_ALLOWED, 421, otherwise). Empty accepts any Host; list your names to stop DNS rebinding.',
  trustedProxies:
    'CIDRs of proxies whose X-Forwarded-For / Forwarded headers are believed. Empty: the socket address is the client, so no one can spoof their IP.',

  limits: 'Server-wide limits, applied before any route is chosen.',
  'limits.maxConnections':
    'Open WebSocket connections across all routes; handshakes beyond it are refused with TOO_MANY_CONNECTIONS (503).',
  'limits.perIp': 'Limits per client IP (the socket address, or the forwarded one from a trusted proxy).',
  'limits.perIp.maxConnections':
    'Open connections from one IP, so one host cannot take every slot (IP_CONNECTION_LIMIT, 429).',
  'limits.perIp.handshakesPerSecond':
    'Sustained handshakes per second from one IP (token bucket refill rate); excess gets HANDSHAKE_RATE_LIMITED (429).',
  'limits.perIp.handshakeBurst':
    'Handshakes one IP may make at once before the per-second rate applies (bucket size).',
  'limits.perIp.authFailuresPerMinute':
    'Failed authentications per minute one IP may make before its handshakes get 429 AUTH_RATE_LIMITED (brute-force guard).',
  'limits.perIp.authFailureBurst':
    'Failed authentications one IP may make at once before the per-minute rate applies.',
  'limits.handshakeTimeoutMs':
    'Milliseconds a client has to finish TLS and the HTTP upgrade request; slow-loris connections are cut after it.',
  'limits.maxPendingHandshakes':
    'Connections still in TLS or upgrade at once; more are refused with SERVER_BUSY (503) so they cannot pile up.',
  'limits.maxHeaderBytes': 'Bytes of HTTP request headers accepted on the upgrade request (431 beyond).',
  'limits.maxHeaderCount': 'Number of HTTP request headers accepted on the upgrade request (431 beyond).',
  'limits.maxUrlBytes': 'Bytes of the request target (path and query) accepted (414 beyond).',
  'limits.drainTimeoutMs':
    'Milliseconds a graceful shutdown (SIGTERM/SIGINT) waits for sessions to close before terminating them.',
  'limits.closeTimeoutMs':
    'Milliseconds to wait for the peer to answer a close frame before the socket is destroyed.',

  authenticators: 'Named authenticators; routes refer to them by name in routes[].auth. None by default.',
  'authenticators.<name>': 'One authenticator; the name is letters, digits, _ and -.',
  'authenticators.<name>.type':
    'The kind of credential checked: jwt (bearer token), mtls (client certificate), ticket, cookie, basic or webhook.',
  'authenticators.<name>[type=jwt].jwksUrl':
    'URL of the issuer JSON Web Key Set, fetched with the system trust store plus NODE_EXTRA_CA_CERTS.',
  'authenticators.<name>[type=jwt].jwksCaFile':
    'PEM CA file that verifies the jwksUrl server, for an identity provider behind a private CA.',
  'authenticators.<name>[type=jwt].keyFile':
    'PEM public key file to verify tokens with, instead of jwksUrl (for issuers without a JWKS endpoint).',
  'authenticators.<name>[type=jwt].issuer': 'Required iss claim; tokens from any other issuer are refused.',
  'authenticators.<name>[type=jwt].audience':
    'Required aud claim (one value or a list of accepted values), so tokens minted for other services do not work here.',
  'authenticators.<name>[type=jwt].algorithms':
    'Accepted signature algorithms (ES/RS/PS 256-512, EdDSA). Listed explicitly so none and HMAC can never be accepted.',
  'authenticators.<name>[type=jwt].clockToleranceSec':
    'Seconds of clock skew allowed when checking exp, nbf and iat; at most 60, so an expired token stays expired.',
  'authenticators.<name>[type=jwt].maxTokenAgeSec':
    'Refuse tokens issued (iat) longer ago than this many seconds, whatever their exp (optional).',
  'authenticators.<name>[type=jwt].typ':
    'Required typ header (e.g. at+jwt), so tokens of another kind, such as ID tokens, are refused (optional).',
  'authenticators.<name>[type=jwt].subjectClaim':
    'Claim that becomes the identity (logs, per-identity limits, channel templates).',
  'authenticators.<name>[type=jwt].jwksCacheMs':
    'Milliseconds a fetched key set is used before it is fetched again.',
  'authenticators.<name>[type=jwt].jwksCooldownMs':
    'Milliseconds between refetches caused by an unknown key id, so forged tokens cannot make the gateway flood the issuer.',
  'authenticators.<name>[type=jwt].jwksTimeoutMs': 'Milliseconds a key set fetch may take.',
  'authenticators.<name>[type=mtls].identityFrom':
    'Which part of the client certificate becomes the identity: cn, san-dns, san-uri or san-email.',
  'authenticators.<name>[type=mtls].allow':
    'Identities allowed, exact or with * wildcards (e.g. device-*); a verified certificate alone is not enough.',

  routes: 'The WebSocket endpoints, at least one. Each has its own origins, auth, limits and one target.',
  'authenticators.<name>[type=ticket].issueWith':
    "Authenticators whose credentials may mint tickets at POST /.portcullis/ticket; empty means the route's other authenticators. Lets a route accept only tickets on the socket while a cookie mints them.",
  'authenticators.<name>[type=ticket].ttlMs':
    'Milliseconds a one-time connection ticket stays valid after it is issued (at most 5 minutes).',
  'authenticators.<name>[type=ticket].maxOutstanding':
    'Tickets issued and not yet used at once, bounding the memory tickets take.',
  'authenticators.<name>[type=cookie].name':
    'Name of the session cookie. Browsers send cookies by themselves, so a cookie route relies on its origins list.',
  'authenticators.<name>[type=cookie].keyFiles':
    'Files holding HMAC secrets (at least 32 bytes) that verify signed session cookies; the first is current, the rest are previous keys still accepted during rotation. Give this or introspectUrl.',
  'authenticators.<name>[type=cookie].introspectUrl':
    'https:// URL asked whether a session cookie is valid; give this or keyFiles.',
  'authenticators.<name>[type=cookie].introspectCaFile':
    'PEM CA file that verifies the introspectUrl server.',
  'authenticators.<name>[type=cookie].cacheMs':
    'Milliseconds a session verdict is reused (0: never); at most 5 minutes, so a logout takes effect soon.',
  'authenticators.<name>[type=cookie].timeoutMs': 'Milliseconds an introspection request may take.',
  'authenticators.<name>[type=cookie].subjectClaim':
    'Field of the verified session that becomes the identity.',
  'authenticators.<name>[type=basic].htpasswdFile':
    'htpasswd file of user names and password hashes (a secret: keep it readable by the gateway user only).',
  'authenticators.<name>[type=basic].realm': 'Realm named in the WWW-Authenticate challenge.',
  'authenticators.<name>[type=basic].failuresPerMinute':
    'Failed password attempts allowed per minute (token bucket refill rate), to slow down guessing.',
  'authenticators.<name>[type=basic].failureBurst':
    'Failed attempts allowed at once before failuresPerMinute applies (bucket size).',
  'authenticators.<name>[type=webhook].url':
    'https:// URL that decides each handshake, given the request headers listed in forwardHeaders.',
  'authenticators.<name>[type=webhook].caFile': 'PEM CA file that verifies the webhook server.',
  'authenticators.<name>[type=webhook].forwardHeaders': 'Request headers passed to the webhook.',
  'authenticators.<name>[type=webhook].timeoutMs': 'Milliseconds a webhook call may take.',
  'authenticators.<name>[type=webhook].cacheMs':
    'Milliseconds a webhook answer is reused for the same forwarded headers (0: never).',
  'routes[].path': 'URL path served, in canonical form (e.g. /chat, no // or dot segments); unique per host.',
  'routes[].host':
    'Serve this route only for this Host (exact, or *.example.com for any subdomain); routes for a host are tried before routes without one.',
  'routes[].pathMatch':
    'exact serves the path only; prefix also serves every path below it on segment boundaries (/api serves /api/x, never /apix); the longest prefix wins.',
  'routes[].origins':
    'Allowed Origin values, exact or https://*.example.com. Empty by default: no browser page may connect until you list it (stops cross-site WebSocket hijacking).',
  'routes[].allowMissingOrigin':
    'Accept handshakes with no Origin header (non-browser clients). Off by default; allowed only for credentials a browser does not send by itself.',
  'routes[].allowQueryToken':
    'Accept a bearer token in the query string, for clients that cannot set headers. Off: URLs end up in logs and histories.',
  'routes[].auth':
    'Names of authenticators, any one of which must accept the client; anonymous routes must say none, so no route is open by accident.',
  'routes[].require': 'Extra conditions on the authenticated identity, checked after auth succeeds.',
  'routes[].require.claims': 'Claims the identity must carry, by claim name.',
  'routes[].require.claims.<claim>':
    'A string, number or boolean: the claim must equal it, or be an array that contains it.',
  'routes[].require.claims.<claim>.oneOf':
    'The claim must equal (or, if an array, contain) one of these values.',
  'routes[].subprotocols':
    'Sec-WebSocket-Protocol values offered, in order of preference; a client asking only for others is refused. Empty: none negotiated.',
  'routes[].perMessageDeflate':
    'Allow permessage-deflate compression. Off by default: compression costs CPU and memory per connection and mixes secrets with attacker data (CRIME/BREACH).',
  'routes[].limits': 'Limits for each connection on this route.',
  'routes[].limits.maxMessageBytes':
    'Bytes in one message after reassembly and inflation; a larger message closes the connection with MESSAGE_TOO_BIG (1009).',
  'routes[].limits.maxFragments':
    'Frames one message may be split into, so tiny fragments cannot exhaust CPU (TOO_MANY_FRAGMENTS, 1008).',
  'routes[].limits.maxBufferedChunks':
    'Chunks buffered while assembling one message, bounding per-message overhead.',
  'routes[].limits.messagesPerSecond':
    'Sustained messages per second from the client (token bucket refill rate).',
  'routes[].limits.messageBurst':
    'Messages the client may send at once before messagesPerSecond applies (bucket size).',
  'routes[].limits.bytesPerSecond': 'Sustained bytes per second from the client (token bucket refill rate).',
  'routes[].limits.bytesBurst':
    'Bytes the client may send at once before bytesPerSecond applies; at least maxMessageBytes so a maximal message can pass.',
  'routes[].limits.onRateExceeded':
    'What exceeding a message or byte rate does: throttle (pause reading; TCP backpressure), drop (discard the message) or close (RATE_LIMITED, 4429).',
  'routes[].limits.controlFramesPerSecond':
    'Sustained ping/pong frames per second from the client; a flood closes with CONTROL_FLOOD (1008).',
  'routes[].limits.controlFrameBurst': 'Control frames the client may send at once (bucket size).',
  'routes[].limits.idleTimeoutMs':
    'Milliseconds without any message in either direction before the connection is closed (IDLE_TIMEOUT, 4408).',
  'routes[].limits.pingIntervalMs':
    'Milliseconds between server pings that detect dead peers and keep NAT mappings open.',
  'routes[].limits.pongTimeoutMs':
    'Milliseconds to wait for the pong after a ping before the peer is considered gone (PONG_TIMEOUT, 4408).',
  'routes[].limits.maxSendQueueBytes':
    'Bytes queued for a client that reads slowly; beyond it the connection is closed (SLOW_CONSUMER, 1013) instead of growing memory.',
  'routes[].limits.maxConnectionsPerIdentity':
    'Open connections per authenticated identity on this route (IDENTITY_CONNECTION_LIMIT, 429).',
  'routes[].limits.maxJsonDepth':
    'Nesting depth of arrays/objects in a JSON text message on a schema route, checked before parsing (BAD_JSON, 1007).',
  'routes[].limits.maxLifetimeMs':
    'Milliseconds a connection may live at most (24 h by default), so revoked credentials and rotated certificates take effect (MAX_LIFETIME, 1001).',
  'routes[].schema':
    'JSON Schema file (JSON or YAML) every message must satisfy: text only, valid JSON, and schema-valid (SCHEMA_VIOLATION, 1008).',
  'routes[].echo': 'Target: send every message back to the sender (for testing and health checks).',
  'routes[].upstream':
    'Target: relay to a backend WebSocket application (gateway mode). The gateway connects before answering the client, so an unavailable upstream is a 502/503/504, never a 101 then a close.',
  'routes[].upstream.url':
    'The upstream ws:// or wss:// URL, or a list of them (all ws:// or all wss://) balanced per balance. Without a path the client path is passed on; a path replaces it (like nginx proxy_pass).',
  'routes[].upstream.ca':
    'PEM file of the CA(s) that issue the upstream certificates; when set, only these are trusted for wss:// upstreams (not the public roots).',
  'routes[].upstream.pins':
    'SPKI pins (sha256/<base64>) of which some certificate in the upstream chain must match, after the normal verification.',
  'routes[].upstream.cert': 'PEM client certificate for mutual TLS to the upstream (with key).',
  'routes[].upstream.key': 'PEM private key of cert (a secret: keep it readable by the gateway user only).',
  'routes[].upstream.servername':
    'TLS server name (SNI) sent to the upstream and checked against its certificate; the URL host by default.',
  'routes[].upstream.balance':
    'How a new connection picks among several urls: round-robin, or least-connections (fewest open connections from this route).',
  'routes[].upstream.connectTimeoutMs':
    'Milliseconds for the whole upstream handshake (TCP, TLS, 101); past it the client gets UPSTREAM_TIMEOUT (504).',
  'routes[].upstream.retries':
    'Other upstreams to try when one refuses the TCP connection (no byte reached an application, so it is safe); never after a timeout or an HTTP answer.',
  'routes[].upstream.ejectAfterFailures':
    'Failed connections in a row (refused, reset, timeout, TLS, 5xx, fake 101) after which an upstream is taken out for ejectForMs.',
  'routes[].upstream.ejectForMs': 'Milliseconds an ejected upstream gets no new connections.',
  'routes[].upstream.healthCheck':
    'Active health checks of every upstream. Absent by default: only passive ejection applies. With no healthy upstream, clients get UPSTREAM_UNAVAILABLE (503).',
  'routes[].upstream.healthCheck.type':
    'http: GET path must answer 2xx. websocket: a WebSocket handshake to path must succeed (for apps without a health endpoint).',
  'routes[].upstream.healthCheck.path': 'Path (and query) the check requests on each upstream.',
  'routes[].upstream.healthCheck.intervalMs': 'Milliseconds between two rounds of checks.',
  'routes[].upstream.healthCheck.timeoutMs': 'Milliseconds one check may take; slower counts as failed.',
  'routes[].upstream.healthCheck.healthyAfter':
    'Passing checks in a row that bring an unhealthy upstream back.',
  'routes[].upstream.healthCheck.unhealthyAfter': 'Failing checks in a row that take an upstream out.',
  'routes[].upstream.passHeaders':
    'Client request headers passed to the upstream (an allowlist; empty by default). Forwarding, X-Portcullis-*, hop-by-hop, Sec-WebSocket-* and underscore names cannot be listed.',
  'routes[].upstream.passQuery':
    'Pass the client query string on (access_token and ticket parameters are always removed).',
  'routes[].upstream.forwardedHeaders':
    'Add X-Forwarded-For (the client address as the gateway determined it), X-Forwarded-Proto and X-Forwarded-Host; client-sent copies are always removed.',
  'routes[].upstream.identityHeader':
    'Send the verified identity as X-Portcullis-Identity: a short-lived ES256 JWT the app verifies with the JWKS at /.well-known/portcullis/jwks.json. Not sent on auth: none routes.',
  'routes[].upstream.identityKeyFile':
    'PEM EC P-256 private key that signs identities (share it between gateway instances); a key generated at start by default.',
  'routes[].upstream.identityTtlSec':
    'Seconds an identity token is valid (never past the credential expiry).',
  'routes[].upstream.identityAudience': 'The aud claim of identity tokens; the route path by default.',
  'routes[].upstream.identityClaims':
    'Verified claims copied into the identity token by name (none by default, so nothing private leaves the gateway unasked).',
  'routes[].upstream.plainIdentityHeaders':
    'Also send X-Portcullis-Subject and X-Portcullis-Authenticator in plain text (percent-encoded). Only for upstreams no one else can reach.',
  'routes[].upstream.maxQueueBytes':
    'Bytes that may wait for the upstream to read; beyond it the client is closed with UPSTREAM_UNAVAILABLE (1013). At least limits.maxMessageBytes.',
  'routes[].upstream.highWaterMarkBytes':
    'Bytes buffered toward one side above which the other side is no longer read (backpressure both ways).',
  'routes[].upstream.stallTimeoutMs':
    'Milliseconds one side may stay above the high-water mark; then the client is closed (SLOW_CONSUMER or UPSTREAM_UNAVAILABLE, 1013) and the upstream with 1001.',
  'routes[].broker': 'Target: publish/subscribe channels inside the gateway.',
  'routes[].broker.channels': 'Channel rules; a channel that no rule grants is refused (deny by default).',
  'routes[].broker.channels[].pattern':
    'Channel names the rule covers: literal segments, * wildcards and {template} segments filled from the identity.',
  'routes[].broker.channels[].subscribe': 'Clients may subscribe to matching channels (off unless granted).',
  'routes[].broker.channels[].publish': 'Clients may publish to matching channels (off unless granted).',
  'routes[].broker.channels[].when': 'Conditions on the identity for this rule to apply.',
  'routes[].broker.channels[].when.claims': 'Claims the identity must carry, by claim name.',
  'routes[].broker.channels[].when.claims.<claim>':
    'A string, number or boolean: the claim must equal it, or be an array that contains it.',
  'routes[].broker.channels[].when.claims.<claim>.oneOf':
    'The claim must equal (or, if an array, contain) one of these values.',
  'routes[].broker.channels[].schema':
    'JSON Schema file that messages published to matching channels must satisfy (optional).',
  'routes[].broker.channels[].publishPerSecond':
    'Sustained publishes per second on matching channels (token bucket refill rate).',
  'routes[].broker.channels[].publishBurst':
    'Publishes allowed at once before publishPerSecond applies (bucket size).',
  'routes[].broker.maxSubscriptions': 'Channels one connection may be subscribed to at once.',
  'routes[].broker.maxChannelNameBytes': 'Bytes in a channel name a client may use.',
  'routes[].broker.maxErrors': 'Refused broker requests one connection may make before it is closed.',
  'routes[].broker.historySize':
    'Publications retained per channel so a reconnecting subscriber can resume with `since`; 0 turns retention off.',
  'routes[].broker.historyTtlMs':
    'Milliseconds a retained publication, or an idle channel kept for resumption, is kept.',
  'routes[].broker.maxRetainedChannels':
    'Channels kept for resumption at once; the least recently active (published to, or left) lose their history first.',
  'routes[].broker.maxHistoryBytes':
    'Bytes of retained publications on the route (frame size plus 64 per message); the least recently published channels are trimmed first.',

  admin: 'Admin API. Absent by default, so no second listener is opened.',
  'admin.listen': 'Where the admin API listens; keep it on loopback or a private interface.',
  'admin.listen.host': 'Address or name to bind the admin API; loopback by default.',
  'admin.listen.port': 'TCP port of the admin API.',
  'admin.tokenFile':
    'File holding the bearer token the admin API requires (a secret: the token is never written in the config).',

  publishApi: 'Server-side publishing to broker channels. Absent by default.',
  'publishApi.keyFile':
    'Key file for the publish API (a file path: the secret is never written in the config).',

  engine: 'Where shared state (connection counts, rate buckets) lives.',
  'engine.type': 'memory (one process) or redis (shared by several gateway instances).',
  'engine[type=redis].url': 'redis:// or rediss:// URL of the Redis server.',

  log: 'Logging (JSON lines on stdout; tokens, cookies and Authorization values are always redacted).',
  'log.level': 'Least severe level written: fatal, error, warn, info, debug, trace or silent.',
  'log.bufferBytes':
    'Log lines are held until this many bytes are waiting and then written with one system call (0: each line at once). Held lines are written at exit, on close and every flushIntervalMs.',
  'log.flushIntervalMs': 'Longest time a log line waits in the buffer before it is written.',
  'log.maxPendingBytes':
    'Bound on log bytes waiting for a slow stdout or disk; lines beyond it are dropped and counted in stats.logLinesDropped.',
};
