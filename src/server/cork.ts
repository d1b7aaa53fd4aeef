// Write batching: a socket written to during one event-loop turn is corked until the turn ends,
// so the replies to one read (echo, relay, fan-out) leave as one write and fewer TLS records
// instead of one system call each. ws corks around each frame itself; corks nest.
import type { Duplex } from 'node:stream';

const corked = new Set<Duplex>();

/** Corks `socket` until the end of the current turn (once per socket per turn). */
export function corkForTurn(socket: Duplex): void {
  if (corked.has(socket)) return;
  if (corked.size === 0) process.nextTick(uncorkAll);
  socket.cork();
  corked.add(socket);
}

function uncorkAll(): void {
  for (const socket of corked) socket.uncork();
  corked.clear();
}
