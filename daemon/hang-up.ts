/**
 * Hanging up on a client.
 *
 * Responsibility: end a connection's socket so that what was written to it (replies, a final
 * connection-level error) still reaches a client that reads it, and close it for good once the
 * client closes its end, or HANG_UP_LINGER_MS_MAX from now, whichever comes first.
 *
 * Invariants:
 * - The socket is destroyed within the bound whatever the client does. Waiting for a flush
 *   (Node's destroySoon) or for the client's close alone kept the socket, its descriptor and its
 *   unread bytes for as long as a client that reads nothing kept its end open.
 * - The daemon reads (and drops) whatever the client still sends: it sees the client's close,
 *   and closing a Unix socket with bytes unread in it resets the connection, which can cost
 *   the client the last frame written to it.
 */

import type { Socket } from 'node:net';
import { HANG_UP_LINGER_MS_MAX } from '../protocol/limits.js';

export function hangUp(socket: Socket): void {
  if (socket.destroyed) return;
  socket.resume();
  if (socket.writable) socket.end();
  const timer = setTimeout(() => socket.destroy(), HANG_UP_LINGER_MS_MAX);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}
