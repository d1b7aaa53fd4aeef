// The processes the suite starts: pinned to a core with taskset, measured from /proc (CPU time and
// RSS of each process tree) and stopped with SIGTERM, then SIGKILL. Only processes started here are
// ever signalled, each by its own pid.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { appendFileSync, readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat times (getconf CLK_TCK, 100 on Linux). */
export const CLK_TCK = readClockTicks();

function readClockTicks(): number {
  try {
    const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(ticks) && ticks > 0 ? ticks : 100;
  } catch {
    return 100;
  }
}

/** Whether `taskset` is on the PATH (util-linux). */
export function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The command line that runs `cmd args` on `core` (unchanged when core is undefined). */
export function pinnedCommand(core: number | undefined, cmd: string, args: string[]): [string, string[]] {
  return core === undefined ? [cmd, args] : ['taskset', ['-c', String(core), cmd, ...args]];
}

/** Pins this process and its threads to `core`; false when it could not. */
export function pinSelf(core: number): boolean {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(core), String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Every live pid in the trees rooted at `roots`, roots included. */
export function treePids(roots: readonly number[]): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const ppid = Number(statFields(pid)?.[1]);
    if (!Number.isInteger(ppid)) continue;
    const list = children.get(ppid);
    if (list) list.push(pid);
    else children.set(ppid, [pid]);
  }
  const out: number[] = [];
  const queue = roots.filter((pid) => statFields(pid) !== undefined);
  while (queue.length > 0) {
    const pid = queue.shift() as number;
    out.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** utime + stime of the processes (every thread counts), in milliseconds. */
export function cpuMs(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const f = statFields(pid);
    // Fields 14 and 15 of stat(5), counted here from field 3 (state) = index 0.
    if (f) ticks += Number(f[11]) + Number(f[12]);
  }
  return (ticks * 1000) / CLK_TCK;
}

/** CPU time (ms) all processes on the machine have used since boot, idle and iowait excluded. */
export function machineBusyMs(): number {
  try {
    const fields =
      readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    const busy = fields.slice(0, 8).reduce((sum, v, i) => (i === 3 || i === 4 ? sum : sum + v), 0);
    return (busy * 1000) / CLK_TCK;
  } catch {
    return Number.NaN;
  }
}

/** Resident set size of the processes, summed, in bytes. */
export function rssBytes(pids: readonly number[]): number {
  let kib = 0;
  for (const pid of pids) {
    try {
      const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (match) kib += Number(match[1]);
    } catch {
      // The process ended between the listing and the read.
    }
  }
  return kib * 1024;
}

/** Waits until the processes have used less than `idleMs` of CPU over 200 ms (at most `maxMs`). */
export async function quiesce(pids: readonly number[], idleMs = 10, maxMs = 5_000): Promise<void> {
  const until = Date.now() + maxMs;
  let last = cpuMs(pids);
  while (Date.now() < until) {
    await sleep(200);
    const now = cpuMs(pids);
    if (now - last < idleMs) return;
    last = now;
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The processes started by this run, stopped together at the end (and on any failure). */
export class ProcessGroup {
  private readonly children = new Set<ChildProcess>();

  /** Starts a process (pinned when `core` is set) with stdout piped and stderr to `stderr`. */
  start(
    core: number | undefined,
    cmd: string,
    args: string[],
    options: { env?: NodeJS.ProcessEnv; ipc?: boolean; cwd?: string } = {},
  ): ChildProcess {
    const [file, argv] = pinnedCommand(core, cmd, args);
    const child = spawn(file, argv, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: options.ipc ? ['ignore', 'pipe', 'inherit', 'ipc'] : ['ignore', 'pipe', 'inherit'],
    });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** SIGTERM, then SIGKILL after `graceMs` for any that is still running. */
  async stop(child: ChildProcess, graceMs = 3_000): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  /** Stops every process still running, all in parallel. */
  async stopAll(graceMs = 3_000): Promise<void> {
    await Promise.all([...this.children].map((child) => this.stop(child, graceMs)));
  }
}

/** Resolves with the first stdout line that starts with `READY `, parsed as JSON. */
export function waitReady<T>(child: ChildProcess, name: string, timeoutMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => finish(new Error(`${name}: not ready after ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString();
      for (;;) {
        const end = buffered.indexOf('\n');
        if (end === -1) return;
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 1);
        if (line.startsWith('READY ')) return finish(undefined, JSON.parse(line.slice(6)) as T);
      }
    };
    const onExit = (code: number | null, signal: string | null) =>
      finish(new Error(`${name}: exited (${code ?? signal}) before it was ready`));
    const finish = (err?: Error, value?: T) => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      // Keep draining stdout so a chatty server never blocks on a full pipe.
      // BENCH_SERVER_STDOUT=<prefix>: keep each server's stdout in <prefix>.<pid> (see anchors.ts).
      const keep = process.env.BENCH_SERVER_STDOUT;
      if (keep) child.stdout?.on('data', (c: Buffer) => appendFileSync(`${keep}.${child.pid}`, c));
      child.stdout?.resume();
      if (err) reject(err);
      else resolve(value as T);
    };
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
  });
}
