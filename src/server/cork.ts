// Write batching: a socket written to during one event-loop iteration is corked until the I/O
// callbacks of that iteration have all run (setImmediate: the check phase, right after poll), so
// the replies to every read of the iteration (echo, relay, fan-out of publications that arrived
// in separate reads) leave as one write and fewer TLS records instead of one system call each.
// The wait is never longer than one iteration, and what a corked socket holds still counts in
// ws.bufferedAmount, so the send-queue caps bound it. ws corks around each frame itself; corks nest.
import type { Duplex } from 'node:stream';

/**
 * Messages below this size wait for the iteration's batch; a larger one fills TLS records (16 KiB
 * at most) by itself and is written at once rather than held.
 */
export const BATCH_BELOW_BYTES = 16_384;

const corked = new Set<Duplex>();

/** Corks `socket` until the check phase of this event-loop iteration (once per socket per iteration). */
export function corkForTurn(socket: Duplex): void {
  if (corked.has(socket)) return;
  if (corked.size === 0) setImmediate(uncorkAll);
  socket.cork();
  corked.add(socket);
}

function uncorkAll(): void {
  for (const socket of corked) socket.uncork();
  corked.clear();
}
