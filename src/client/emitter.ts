// A small typed event emitter that runs in Node and browsers alike (node:events is not in a
// browser). Unlike Node's, an 'error' with no listener is not thrown: the reconnect loop reports
// failures through events and an unhandled one must not crash the application.

/** Map of event name to listener argument. */
export type EventMap = Record<string, unknown>;

/** Typed on/once/off/emit. */
export class Emitter<Events extends EventMap> {
  private readonly listeners = new Map<keyof Events, Set<(arg: never) => void>>();

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(event: K, listener: (arg: Events[K]) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener as (arg: never) => void);
    return () => this.off(event, listener);
  }

  /** Adds a listener that runs at most once. */
  once<K extends keyof Events>(event: K, listener: (arg: Events[K]) => void): () => void {
    const off = this.on(event, (arg) => {
      off();
      listener(arg);
    });
    return off;
  }

  /** Removes a listener. */
  off<K extends keyof Events>(event: K, listener: (arg: Events[K]) => void): void {
    this.listeners.get(event)?.delete(listener as (arg: never) => void);
  }

  /** Number of listeners for an event. */
  listenerCount(event: keyof Events): number {
    return this.listeners.get(event)?.size ?? 0;
  }

  protected emit<K extends keyof Events>(event: K, arg: Events[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) (listener as (arg: Events[K]) => void)(arg);
  }
}
