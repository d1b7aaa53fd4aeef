// One shared clock for every connection's deadlines (idle, ping, pong, lifetime, close timeout):
// a single interval instead of timers per connection.

/** Something with deadlines. */
export interface Ticking {
  onTick(now: number): void;
}

/**
 * A clock read at most once per received message and once per tick, for bookkeeping that needs no
 * more precision than the deadlines it feeds (outbound activity for the idle timeout).
 */
export const coarseClock = { now: Date.now() };

/** Calls onTick(now) on every member at a fixed resolution. */
export class Ticker<T extends Ticking> {
  readonly members = new Set<T>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private resolutionMs: number) {}

  /** Changes the resolution (after a reload with other limits). */
  setResolution(ms: number): void {
    if (ms === this.resolutionMs) return;
    this.resolutionMs = ms;
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
      this.start();
    }
  }

  add(member: T): void {
    coarseClock.now = Date.now();
    this.members.add(member);
    if (!this.timer) this.start();
  }

  delete(member: T): void {
    this.members.delete(member);
    if (this.members.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private start(): void {
    this.timer = setInterval(() => {
      const now = Date.now();
      coarseClock.now = now;
      for (const member of this.members) member.onTick(now);
    }, this.resolutionMs);
    this.timer.unref();
  }
}

/** A resolution fine enough for the shortest deadline: a quarter of it, between 20 ms and 1 s. */
export function resolutionFor(shortestMs: number): number {
  return Math.min(1_000, Math.max(20, Math.floor(shortestMs / 4)));
}
