// What every server the suite starts shares: its settings from the BENCH_SERVER environment
// variable, the READY line the orchestrator waits for, a clean exit on SIGTERM (so --cpu-prof
// writes its profile), and a SIGUSR2 hook that runs a full GC before a memory reading.

/** The issuer and audience of the bench's bearer token (bench/setup.ts signs it). */
export const JWT_ISSUER = 'https://bench.portcullis.test/';
export const JWT_AUDIENCE = 'portcullis-bench';

/** Files and switches a bench server reads. */
export interface ServerSettings {
  /** Server certificate and key (ECDSA P-256, issued by src/pki at the start of the run). */
  readonly cert: string;
  readonly key: string;
  /** SPKI PEM public key the jwt authenticator verifies bearer tokens with (ES256). */
  readonly jwtKeyFile: string;
  /** Where the Portcullis audit log goes. */
  readonly auditFile: string;
  /** ws only: listen without TLS (the upstream behind nginx and the Portcullis proxy route). */
  readonly plain?: boolean;
  /** Portcullis only: relay /echo to this ws:// upstream instead of echoing itself. */
  readonly upstream?: string;
}

/** The settings this process was started with. */
export function settings(): ServerSettings {
  const text = process.env.BENCH_SERVER;
  if (!text) throw new Error('BENCH_SERVER is not set: bench servers are started by bench/run.ts');
  return JSON.parse(text) as ServerSettings;
}

/** Tells the orchestrator the ports this server listens on. */
export function ready(ports: { port: number; fanoutPort?: number }): void {
  process.stdout.write(`READY ${JSON.stringify(ports)}\n`);
}

/** Runs `stop` on SIGTERM or SIGINT (for at most 2 s), then exits 0. */
export function onStop(stop: () => Promise<void> | void): void {
  let stopping = false;
  const handler = () => {
    if (stopping) return;
    stopping = true;
    const cap = new Promise((resolve) => setTimeout(resolve, 2_000).unref());
    Promise.race([Promise.resolve().then(stop), cap]).finally(() => process.exit(0));
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
  // Started with --expose-gc: a memory reading asks for a full collection first.
  process.on('SIGUSR2', () => (globalThis as { gc?: () => void }).gc?.());
}
