// The listening socket: HTTPS only (plaintext only for an explicit loopback `tls: false`), TLS 1.2+
// with AEAD ECDHE suites, renegotiation refused, optional mutual TLS checked before any HTTP byte is
// parsed, timeouts on stalled TLS handshakes and header reads, and certificates hot-reloaded.
import { constants } from 'node:crypto';
import { type FSWatcher, readFileSync, watch } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { basename, dirname } from 'node:path';
import type { Duplex } from 'node:stream';
import {
  createSecureContext,
  type PeerCertificate,
  type SecureContext,
  type SecureContextOptions,
  type TLSSocket,
} from 'node:tls';
import type { Config, TlsConfig } from '../config/schema.js';

/** TLS 1.3 suites first, then TLS 1.2 ECDHE with AEAD only (no CBC, no RSA key exchange). */
export const CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** Certificate files resolved for this run (dev mode fills them in). */
export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
  readonly clientCa?: string | undefined;
  readonly crl?: string | undefined;
}

/**
 * Reads the PEM files into the full secure-context options (used at start and on every reload, so
 * a reload can never fall back to Node's default ciphers or versions); throws if a file is unreadable.
 */
export function secureContextOptions(tls: TlsConfig, files: TlsFiles): SecureContextOptions {
  return {
    cert: readFileSync(files.cert),
    key: readFileSync(files.key),
    ...(files.clientCa ? { ca: readFileSync(files.clientCa) } : {}),
    ...(files.crl ? { crl: readFileSync(files.crl) } : {}),
    minVersion: tls.minVersion,
    ciphers: CIPHERS,
    honorCipherOrder: true,
    // Client-initiated renegotiation is a CPU amplifier (T-02); TLS 1.3 has none at all.
    secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
  };
}

/** Certificates chosen by SNI name (tls.sni), swapped whole on every reload. */
export class SniContexts {
  private exact = new Map<string, SecureContext>();
  private wildcard = new Map<string, SecureContext>();

  /** Builds every context first, so a broken file leaves the previous set in place (throws). */
  load(tls: TlsConfig, base: SecureContextOptions): void {
    const exact = new Map<string, SecureContext>();
    const wildcard = new Map<string, SecureContext>();
    for (const entry of tls.sni) {
      const context = createSecureContext({
        ...base,
        cert: readFileSync(entry.cert),
        key: readFileSync(entry.key),
      });
      const name = entry.servername.toLowerCase();
      if (name.startsWith('*.')) wildcard.set(name.slice(1), context);
      else exact.set(name, context);
    }
    this.exact = exact;
    this.wildcard = wildcard;
  }

  /** The context for a client's SNI name, or undefined for the default certificate. */
  lookup(servername: string): SecureContext | undefined {
    const name = servername.toLowerCase();
    const hit = this.exact.get(name);
    if (hit) return hit;
    // A wildcard covers exactly one label, as in certificates themselves.
    const dot = name.indexOf('.');
    return dot > 0 ? this.wildcard.get(name.slice(dot)) : undefined;
  }
}

/** Creates the HTTP(S) server with every limit set explicitly. */
export function createListener(config: Config, files: TlsFiles | undefined, sni?: SniContexts): http.Server {
  const { limits } = config;
  const httpOptions: http.ServerOptions = {
    maxHeaderSize: limits.maxHeaderBytes,
    requestTimeout: limits.handshakeTimeoutMs,
    headersTimeout: limits.handshakeTimeoutMs,
    keepAliveTimeout: 5_000,
    connectionsCheckingInterval: Math.min(1_000, Math.max(100, Math.floor(limits.handshakeTimeoutMs / 4))),
    noDelay: true,
    joinDuplicateHeaders: false,
    // The handshake check answers a missing Host itself, with the JSON body and HSTS.
    requireHostHeader: false,
    highWaterMark: 16 * 1024,
  };
  let server: http.Server;
  if (config.tls === false || !files) {
    server = http.createServer(httpOptions);
  } else {
    const tls: TlsConfig = config.tls;
    server = https.createServer({
      ...httpOptions,
      ...secureContextOptions(tls, files),
      handshakeTimeout: limits.handshakeTimeoutMs,
      requestCert: tls.clientAuth !== 'off',
      // Verified by hand in 'secureConnection' so the reason can be logged (T-06/T-07).
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
      ...(sni && tls.sni.length > 0
        ? {
            SNICallback: (name: string, cb: (err: Error | null, ctx?: SecureContext) => void) =>
              cb(null, sni.lookup(name)),
          }
        : {}),
    });
  }
  server.maxHeadersCount = limits.maxHeaderCount + 1; // one over, so checkHandshake sees the overflow
  server.maxConnections = limits.maxConnections + limits.maxPendingHandshakes;
  return server;
}

// Node builds a fresh object on every getPeerCertificate() call; a handshake asks several times
// (mTLS check, audit, authentication, session deadline), and renegotiation is off, so one answer
// per socket holds for its whole life.
const peerCertificates = new WeakMap<TLSSocket, PeerCertificate>();

/** The peer certificate of a TLS socket, read once. */
export function peerCertificateOf(socket: TLSSocket): PeerCertificate {
  let cert = peerCertificates.get(socket);
  if (!cert) {
    cert = socket.getPeerCertificate();
    peerCertificates.set(socket, cert);
  }
  return cert;
}

/** Why a client certificate is not acceptable, or undefined when it is (or none is needed). */
export function clientCertProblem(
  socket: TLSSocket,
  clientAuth: TlsConfig['clientAuth'],
): string | undefined {
  if (clientAuth === 'off') return undefined;
  const cert = peerCertificateOf(socket);
  const presented = cert && Object.keys(cert).length > 0;
  if (!presented) return clientAuth === 'required' ? 'NO_CLIENT_CERTIFICATE' : undefined;
  if (socket.authorized) return undefined;
  return String(socket.authorizationError ?? 'UNAUTHORIZED');
}

/** Watches certificate files and calls back (debounced) when any changes, including atomic renames. */
export function watchFiles(paths: readonly string[], onChange: () => void): () => void {
  const watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  const names = new Set(paths.map((p) => basename(p)));
  for (const dir of new Set(paths.map((p) => dirname(p)))) {
    try {
      const watcher = watch(dir, { persistent: false }, (_event, name) => {
        // Kubernetes rotates a mounted secret by swapping the `..data` symlink its files point through.
        if (name && !names.has(name.toString()) && !name.toString().startsWith('..')) return;
        if (timer) clearTimeout(timer);
        timer = setTimeout(onChange, 100);
        timer.unref();
      });
      watcher.on('error', () => undefined);
      watchers.push(watcher);
    } catch {
      // A directory that cannot be watched still reloads on SIGHUP.
    }
  }
  return () => {
    if (timer) clearTimeout(timer);
    for (const w of watchers) w.close();
  };
}

/** The socket behind a request or upgrade, typed for TLS access. */
export function tlsSocketOf(socket: Duplex): TLSSocket | undefined {
  return 'encrypted' in socket && (socket as TLSSocket).encrypted ? (socket as TLSSocket) : undefined;
}
