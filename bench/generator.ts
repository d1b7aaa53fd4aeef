// The orchestrator's handle on the load generator process (bench/load.ts): one command at a time
// over IPC, each with a deadline.
import type { ChildProcess } from 'node:child_process';
import type { Command, LoadResult, Reply } from './load.js';
import type { ProcessGroup } from './proc.js';

/** A running load generator. */
export class Generator {
  private constructor(private readonly child: ChildProcess) {
    child.setMaxListeners(50);
  }

  /** Starts bench/load.ts on `core` with an IPC channel. */
  static start(procs: ProcessGroup, core: number | undefined, root: string): Generator {
    const child = procs.start(core, process.execPath, ['--import', 'tsx', 'bench/load.ts'], {
      ipc: true,
      cwd: root,
    });
    child.stdout?.resume();
    return new Generator(child);
  }

  get pid(): number {
    return this.child.pid as number;
  }

  /** Runs one command; rejects on the generator's error, its exit, or after `timeoutMs`. */
  run(cmd: Command, timeoutMs: number): Promise<LoadResult> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`generator: ${cmd.kind} timed out`)), timeoutMs);
      const onMessage = (reply: Reply) =>
        reply.ok ? finish(undefined, reply.result) : finish(new Error(reply.error));
      const onExit = () => finish(new Error('generator exited'));
      const finish = (err?: Error, result?: LoadResult) => {
        clearTimeout(timer);
        this.child.off('message', onMessage);
        this.child.off('exit', onExit);
        if (err) reject(err);
        else resolve(result as LoadResult);
      };
      this.child.on('message', onMessage);
      this.child.once('exit', onExit);
      this.child.send(cmd);
    });
  }
}
