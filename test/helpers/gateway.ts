// Starts a real gateway on 127.0.0.1 port 0 with certificates issued at test start, and collects
// its log lines for assertions.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import WebSocket from 'ws';
import type { ConfigInput } from '../../src/config/schema.js';
import { createGateway, type Gateway, type GatewayOptions } from '../../src/server/gateway.js';
import { testPki } from './pki.js';

/** A running test gateway and what it wrote to its log. */
export interface TestGateway {
  gateway: Gateway;
  url: string;
  port: number;
  ca: string;
  logs: Record<string, unknown>[];
  /** Every log line as written (for grep-style "never logged" checks). */
  rawLog(): string;
  close(): Promise<void>;
}

type RouteInput = ConfigInput['routes'][number];

/** The route most tests use: anonymous echo, Origin https://app.test allowed. */
export function echoRoute(overrides: Partial<RouteInput> = {}): RouteInput {
  return { path: '/echo', auth: 'none', origins: ['https://app.test'], echo: {}, ...overrides } as RouteInput;
}

/** Writes the test server certificate to a temp dir and returns the file paths. */
export async function certFiles(): Promise<{ dir: string; cert: string; key: string; ca: string }> {
  const pki = await testPki();
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-test-'));
  const files = { dir, cert: join(dir, 'server.crt'), key: join(dir, 'server.key'), ca: join(dir, 'ca.crt') };
  writeFileSync(files.cert, pki.server.certPem);
  writeFileSync(files.key, pki.server.keyPem, { mode: 0o600 });
  writeFileSync(files.ca, pki.ca.certPem);
  return files;
}

/** Starts a gateway with the given config over the test certificates. */
export async function startGateway(
  config: Partial<ConfigInput> = {},
  options: Omit<GatewayOptions, 'logDestination' | 'logger'> = {},
): Promise<TestGateway> {
  const pki = await testPki();
  const files = await certFiles();
  const lines: string[] = [];
  const logs: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        lines.push(line);
        logs.push(JSON.parse(line));
      }
      done();
    },
  });
  const gateway = createGateway(
    {
      listen: { host: '127.0.0.1', port: 0 },
      tls: { cert: files.cert, key: files.key },
      routes: [echoRoute()],
      ...config,
    } as ConfigInput,
    { ...options, logDestination: destination },
  );
  const info = await gateway.listen();
  return {
    gateway,
    url: info.url,
    port: info.port,
    ca: pki.ca.certPem,
    logs,
    rawLog: () => lines.join('\n'),
    close: () => gateway.close({ drainTimeoutMs: 500 }),
  };
}

/** Opens a ws client to the gateway; resolves when open. */
export function openClient(
  gw: TestGateway,
  path = '/echo',
  options: WebSocket.ClientOptions & { protocols?: string | string[] } = {},
): Promise<WebSocket> {
  const { protocols, ...rest } = options;
  const ws = new WebSocket(`wss://localhost:${gw.port}${path}`, protocols, {
    ca: gw.ca,
    origin: 'https://app.test',
    ...rest,
  });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected status ${res.statusCode}`)));
  });
}

/** Resolves with the next message. */
export function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve) =>
    ws.once('message', (data, isBinary) => resolve({ data: data as Buffer, isBinary })),
  );
}

/** Resolves with the close code and reason. */
export function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve({ code: 1006, reason: '' });
  return new Promise((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
}

/**
 * The canary check (C✓ in threats.md): a fresh client still gets an echo, open connections
 * return to the expected count, and the process is still up.
 */
export async function canary(gw: TestGateway, expectedOpen = 0): Promise<void> {
  const ws = await openClient(gw);
  const reply = nextMessage(ws);
  ws.send('canary');
  const { data } = await reply;
  if (data.toString() !== 'canary') throw new Error(`canary echo was ${data.toString()}`);
  ws.close(1000);
  await closed(ws);
  const deadline = Date.now() + 3_000;
  while (gw.gateway.connectionCount() > expectedOpen && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  if (gw.gateway.connectionCount() !== expectedOpen) {
    throw new Error(`open connections ${gw.gateway.connectionCount()}, expected ${expectedOpen}`);
  }
}

/** Writes a config file to a temp dir (for CLI tests). */
export function writeTempFile(name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-cfg-'));
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}
