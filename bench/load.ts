// The load generator: a separate process (pinned to its own core) that takes one command at a time
// over IPC, drives raw TLS sockets with pre-built masked frames, and measures a window: the answers
// it counted, the server's CPU time (utime + stime of the server's process tree, read from /proc at
// the window's edges) and its own CPU time, so a run where the generator was the limit shows.
import { performance } from 'node:perf_hooks';
import { Conn, openMany, type Sink } from './conn.js';
import {
  batches,
  echoRequest,
  type FanoutKind,
  fanoutPlan,
  setupSteps,
  type Target,
  upgradeRequest,
} from './frames.js';
import { cpuMs, machineBusyMs, sleep, treePids } from './proc.js';

/** A measurement window. */
interface Timing {
  readonly warmupMs: number;
  readonly durationMs: number;
  /** Root pids of the server's processes. */
  readonly pids: readonly number[];
}

/** One instruction from the orchestrator. */
export type Command =
  | ({
      kind: 'echo';
      target: Target;
      conns: number;
      inflight: number;
      size: number;
      binary: boolean;
    } & Timing)
  | ({ kind: 'latency'; target: Target; conns: number; rate: number; size: number } & Timing)
  | ({ kind: 'handshake'; target: Target; concurrency: number } & Timing)
  | ({
      kind: 'fanout';
      target: Target;
      fanout: FanoutKind;
      subscribers: number;
      inflight: number;
      size: number;
    } & Timing)
  | { kind: 'open'; target: Target; conns: number; concurrency: number; timeoutMs: number }
  | { kind: 'closeAll' };

/** What a command measured. */
export interface LoadResult {
  /** Operations completed inside the window (answers, handshakes, deliveries). */
  ops: number;
  ms: number;
  serverCpuMs: number;
  clientCpuMs: number;
  /** CPU the rest of the machine used in the window (other tenants of a shared machine), in ms. */
  othersCpuMs: number;
  errors: number;
  firstError?: string;
  /** Connections held open (memory scenario). */
  opened?: number;
  latencyMs?: { p50: number; p90: number; p99: number; max: number; n: number };
  /** The window's start and end (epoch ms), to cut a server's CPU profile to it. */
  window?: [number, number];
  /** TLS version and cipher the server chose. */
  tls?: string;
}

/** The reply to a command. */
export type Reply = { ok: true; result: LoadResult } | { ok: false; error: string };

const held: Conn[] = [];

async function window(t: Timing, count: () => number): Promise<Omit<LoadResult, 'errors'>> {
  const pids = treePids(t.pids);
  await sleep(t.warmupMs);
  const from = Date.now();
  const t0 = performance.now();
  const s0 = cpuMs(pids);
  const c0 = process.cpuUsage();
  const m0 = machineBusyMs();
  const o0 = count();
  await sleep(t.durationMs);
  const ops = count() - o0;
  const m1 = machineBusyMs();
  const c1 = process.cpuUsage(c0);
  const s1 = cpuMs(pids);
  const ms = performance.now() - t0;
  const serverCpuMs = s1 - s0;
  const clientCpuMs = (c1.user + c1.system) / 1000;
  const othersCpuMs = Math.max(0, m1 - m0 - serverCpuMs - clientCpuMs);
  return { ops, ms, serverCpuMs, clientCpuMs, othersCpuMs, window: [from, Date.now()] };
}

function tlsOf(conn: Conn | undefined): string | undefined {
  if (!conn) return undefined;
  return `${conn.socket.getProtocol()} ${conn.socket.getCipher()?.name}`;
}

function closeAll(conns: Conn[]): void {
  for (const c of conns) c.destroy();
}

function openFailure(firstError: string | undefined, failed: number): string {
  return `${failed} connection(s) failed to open: ${firstError}`;
}

async function echo(cmd: Extract<Command, { kind: 'echo' }>): Promise<LoadResult> {
  const req = echoRequest(cmd.target.dialect, cmd.size, cmd.binary);
  const batch = batches(req.bytes, cmd.inflight);
  const opened = await openMany(
    cmd.target,
    setupSteps(cmd.target.dialect),
    cmd.conns,
    16,
    Date.now() + 30_000,
  );
  if (opened.failed > 0) {
    closeAll(opened.conns);
    throw new Error(openFailure(opened.firstError, opened.failed));
  }
  let answers = 0;
  let stopping = false;
  const sink: Sink = {
    message(conn, opcode) {
      if (opcode !== req.answerOpcode) return;
      conn.owed++;
      answers++;
    },
    bytes(conn, n) {
      conn.rxBytes += n;
      const k = Math.floor(conn.rxBytes / req.answerBytes);
      if (k === 0) return;
      conn.rxBytes -= k * req.answerBytes;
      conn.owed += k;
      answers += k;
    },
    flush(conn) {
      if (conn.owed === 0 || stopping) return;
      conn.write(batch[conn.owed] as Buffer);
      conn.owed = 0;
    },
  };
  for (const conn of opened.conns) {
    conn.sink = sink;
    conn.write(batch[cmd.inflight] as Buffer);
  }
  const result = await window(cmd, () => answers);
  stopping = true;
  const errors = opened.conns.filter((c) => c.closed).length;
  const tls = tlsOf(opened.conns[0]);
  closeAll(opened.conns);
  return { ...result, errors, ...(tls ? { tls } : {}) };
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

async function latency(cmd: Extract<Command, { kind: 'latency' }>): Promise<LoadResult> {
  const req = echoRequest(cmd.target.dialect, cmd.size, false);
  const batch = batches(req.bytes, 64);
  const opened = await openMany(
    cmd.target,
    setupSteps(cmd.target.dialect),
    cmd.conns,
    16,
    Date.now() + 30_000,
  );
  if (opened.failed > 0) {
    closeAll(opened.conns);
    throw new Error(openFailure(opened.firstError, opened.failed));
  }
  const conns = opened.conns;
  const samples: number[] = [];
  let recording = false;
  let answers = 0;
  const answered = (conn: Conn, k: number) => {
    const now = performance.now();
    for (let i = 0; i < k; i++) {
      const sentAt = conn.sendTimes.shift();
      if (sentAt !== undefined && recording) samples.push(now - sentAt);
    }
    answers += k;
  };
  const sink: Sink = {
    message(conn, opcode) {
      if (opcode === req.answerOpcode) answered(conn, 1);
    },
    bytes(conn, n) {
      conn.rxBytes += n;
      const k = Math.floor(conn.rxBytes / req.answerBytes);
      conn.rxBytes -= k * req.answerBytes;
      if (k > 0) answered(conn, k);
    },
    flush() {},
  };
  for (const conn of conns) conn.sink = sink;
  // Open loop: message i is due at start + i/rate whatever the answers do, and its latency is
  // counted from when it was due, so a stalled server cannot hide its stall (no coordinated omission).
  const start = performance.now();
  const perMs = cmd.rate / 1000;
  let sent = 0;
  const due = new Array<number>(conns.length).fill(0);
  const pace = setInterval(() => {
    const target = Math.floor((performance.now() - start) * perMs);
    while (sent < target) {
      const i = sent % conns.length;
      (conns[i] as Conn).sendTimes.push(start + sent / perMs);
      due[i] = (due[i] as number) + 1;
      sent++;
    }
    for (let i = 0; i < conns.length; i++) {
      let k = due[i] as number;
      while (k > 0) {
        const n = Math.min(k, 64);
        (conns[i] as Conn).write(batch[n] as Buffer);
        k -= n;
      }
      due[i] = 0;
    }
  }, 1);
  const recordAfter = setTimeout(() => {
    recording = true;
  }, cmd.warmupMs);
  try {
    const result = await window(cmd, () => answers);
    recording = false;
    const sorted = Float64Array.from(samples).sort();
    return {
      ...result,
      errors: conns.filter((c) => c.closed).length,
      latencyMs: {
        p50: percentile(sorted, 50),
        p90: percentile(sorted, 90),
        p99: percentile(sorted, 99),
        max: sorted.length > 0 ? (sorted[sorted.length - 1] as number) : Number.NaN,
        n: sorted.length,
      },
    };
  } finally {
    clearInterval(pace);
    clearTimeout(recordAfter);
    closeAll(conns);
  }
}

/** Raw dialect: write `bytes` and resolve when as many have come back. */
function roundTrip(conn: Conn, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    conn.sink = {
      message() {},
      bytes(c, n) {
        c.rxBytes += n;
        if (c.rxBytes >= bytes.length) resolve();
      },
      flush() {},
    };
    conn.write(bytes);
  });
}

async function handshake(cmd: Extract<Command, { kind: 'handshake' }>): Promise<LoadResult> {
  const steps = setupSteps(cmd.target.dialect);
  const request = upgradeRequest(cmd.target);
  let completed = 0;
  let errors = 0;
  let firstError: string | undefined;
  let stop = false;
  let tls: string | undefined;
  // Each loop: a new TCP connection, a full TLS handshake (no session is offered back), the upgrade
  // (and socket.io's namespace join), then a clean end. The raw anchor echoes the request instead.
  const loop = async () => {
    while (!stop) {
      try {
        const conn = await Conn.open(cmd.target, steps, 10_000);
        if (cmd.target.dialect === 'raw') await roundTrip(conn, request);
        tls ??= tlsOf(conn);
        completed++;
        conn.socket.end();
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
        await sleep(5);
      }
    }
  };
  const loops = Array.from({ length: cmd.concurrency }, loop);
  const result = await window(cmd, () => completed);
  stop = true;
  await Promise.all(loops);
  return { ...result, errors, ...(firstError ? { firstError } : {}), ...(tls ? { tls } : {}) };
}

async function fanout(cmd: Extract<Command, { kind: 'fanout' }>): Promise<LoadResult> {
  const plan = fanoutPlan(cmd.target.dialect, cmd.fanout, cmd.size);
  const opened = await openMany(cmd.target, plan.subscriberSteps, cmd.subscribers, 32, Date.now() + 60_000);
  let publisher: Conn | undefined;
  try {
    if (opened.failed > 0) throw new Error(openFailure(opened.firstError, opened.failed));
    publisher = await Conn.open(cmd.target, plan.publisherSteps);
    const pub = publisher;
    const subscribers = opened.conns.length;
    const pubBatch = batches(plan.publication, cmd.inflight);
    let published = 0;
    let delivered = 0;
    let stopping = false;
    // At most `inflight` publications not yet delivered to every subscriber.
    const pump = () => {
      if (stopping) return;
      const room = cmd.inflight * subscribers - (published * subscribers - delivered);
      const k = Math.min(cmd.inflight, Math.floor(room / subscribers));
      if (k <= 0) return;
      pub.write(pubBatch[k] as Buffer);
      published += k;
    };
    const sink: Sink = {
      message(_conn, opcode) {
        if (opcode === 1) delivered++;
      },
      bytes(conn, n) {
        conn.rxBytes += n;
        const k = Math.floor(conn.rxBytes / plan.deliveryBytes);
        conn.rxBytes -= k * plan.deliveryBytes;
        delivered += k;
      },
      flush: pump,
    };
    for (const conn of opened.conns) conn.sink = sink;
    const timer = setInterval(pump, 5);
    pump();
    try {
      const result = await window(cmd, () => delivered);
      stopping = true;
      const errors = opened.conns.filter((c) => c.closed).length + (pub.closed ? 1 : 0);
      const tls = tlsOf(pub);
      return { ...result, errors, ...(tls ? { tls } : {}) };
    } finally {
      clearInterval(timer);
    }
  } finally {
    publisher?.destroy();
    closeAll(opened.conns);
  }
}

async function open(cmd: Extract<Command, { kind: 'open' }>): Promise<LoadResult> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const steps = cmd.target.dialect === 'raw' ? [] : setupSteps(cmd.target.dialect);
  const opened = await openMany(cmd.target, steps, cmd.conns, cmd.concurrency, Date.now() + cmd.timeoutMs);
  held.push(...opened.conns);
  const c1 = process.cpuUsage(c0);
  return {
    ops: opened.conns.length,
    opened: opened.conns.length,
    ms: performance.now() - t0,
    serverCpuMs: 0,
    clientCpuMs: (c1.user + c1.system) / 1000,
    othersCpuMs: Number.NaN,
    errors: opened.failed,
    ...(opened.firstError ? { firstError: opened.firstError } : {}),
  };
}

async function run(cmd: Command): Promise<LoadResult> {
  switch (cmd.kind) {
    case 'echo':
      return echo(cmd);
    case 'latency':
      return latency(cmd);
    case 'handshake':
      return handshake(cmd);
    case 'fanout':
      return fanout(cmd);
    case 'open':
      return open(cmd);
    case 'closeAll': {
      const n = held.length;
      closeAll(held.splice(0));
      return { ops: n, ms: 0, serverCpuMs: 0, clientCpuMs: 0, othersCpuMs: Number.NaN, errors: 0 };
    }
    default:
      return cmd satisfies never;
  }
}

// Started by the orchestrator with an IPC channel; exits with it.
if (process.send) {
  process.on('message', (cmd: Command) => {
    run(cmd).then(
      (result) => process.send?.({ ok: true, result } satisfies Reply),
      (err: unknown) => process.send?.({ ok: false, error: (err as Error).message } satisfies Reply),
    );
  });
  process.on('disconnect', () => process.exit(0));
}
