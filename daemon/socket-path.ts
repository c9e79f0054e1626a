/**
 * Claiming the Unix socket path: refuse a live daemon, replace a stale socket, never delete a
 * file that is not a socket.
 *
 * Responsibility: decide, before `listen`, whether the path is free. A socket file whose
 * connect() is refused (ECONNREFUSED) was left by a daemon that died (kill -9, power cut): it is
 * removed. A socket that accepts connections belongs to a live daemon: ALREADY_RUNNING.
 *
 * Invariants: only files of type socket are ever unlinked; concurrent starters on one path are
 * serialised by the caller (proper-lockfile), so probe-then-listen is not racy.
 */

import { lstat, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { ToonDBError } from '../protocol/errors.js';

const PROBE_TIMEOUT_MS = 1_000;

function probe(socketPath: string): Promise<'live' | 'stale'> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('live'); // something holds it and is slow to answer: never steal it
    }, PROBE_TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve('live');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (error.code === 'ECONNREFUSED' || error.code === 'ENOENT') resolve('stale');
      else reject(new ToonDBError('INVALID_ARGUMENT', `cannot probe socket ${socketPath}: ${error.message}`));
    });
  });
}

/** Refuses a path that a live daemon serves, or that holds a file other than a socket; true if
 * a stale socket is there (to replace), false if nothing is. Also called before a start creates
 * or opens anything (its data directory, recovery), so a start that would be refused at
 * `claimSocketPath` leaves nothing behind; advisory there: only the claim, under the start-up
 * lock, decides. */
export async function checkSocketPath(socketPath: string): Promise<boolean> {
  let stats;
  try {
    stats = await lstat(socketPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
  if (!stats.isSocket()) {
    throw new ToonDBError('INVALID_ARGUMENT', `${socketPath} exists and is not a socket; refusing to replace it`);
  }
  if ((await probe(socketPath)) === 'live') {
    throw new ToonDBError('ALREADY_RUNNING', `a toondb daemon is already running on ${socketPath}`);
  }
  return true;
}

/** Makes `socketPath` free for listen(); returns true if a stale socket was removed. */
export async function claimSocketPath(socketPath: string): Promise<boolean> {
  if (!(await checkSocketPath(socketPath))) return false;
  try {
    await unlink(socketPath);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // Another user's socket in a sticky directory such as /tmp: not ours to replace.
    if (code === 'EPERM' || code === 'EACCES') {
      throw new ToonDBError('INVALID_ARGUMENT',
        `${socketPath} is a stale socket this user may not remove (${code}); remove it as its owner or root, or use another --socket`);
    }
    throw error;
  }
  return true;
}
