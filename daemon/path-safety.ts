/**
 * Where the daemon may write: refuses, before it writes anything, a data directory or a socket
 * directory another local user could plant links in.
 *
 * Why: the daemon writes its lock, info and watermark files in the data directory by name, and
 * sets the socket's group and mode by path after binding it; those follow symlinks. A daemon
 * running as root (the launchd plist) over a directory another user owns or can write would
 * truncate, overwrite, chown or chmod whatever file that user links in (security review).
 *
 * Invariants: a data directory is the daemon's uid's and writable by nobody else, and if the
 * path names it through a symlink, that link is the daemon's uid's or root's; a socket
 * directory is root's or the daemon's uid's, and writable by others only when sticky (/tmp);
 * every directory above either (on its real path) is root's or the daemon's uid's and writable
 * by others only when sticky, or its owner or writers could swap the checked one afterwards.
 * Refusals are INVALID_ARGUMENT (exit 2: a restart cannot fix them). No-ops where there are no
 * uids (Windows).
 */

import type { Stats } from 'node:fs';
import { lstat, realpath, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ToonDBError } from '../protocol/errors.js';

/** Refuses a data directory another user could plant links in: the daemon writes its lock file,
 * info file and watermark there by name, following symlinks, so an owner or a writer other than
 * the daemon's uid (an attacker who made /tmp/toondb-data first, or a dir left 0777) could make a
 * daemon running as root truncate or overwrite any file. A symlink naming it must be the
 * daemon's own or root's. */
export async function checkDataDirOwner(dataDir: string): Promise<void> {
  const ownUid = process.getuid?.();
  if (ownUid === undefined) return;
  const link = await lstat(dataDir);
  if (link.isSymbolicLink() && link.uid !== ownUid && link.uid !== 0) {
    throw new ToonDBError('INVALID_ARGUMENT', `the data directory ${dataDir} is a symlink owned by uid ${link.uid}, who could point it anywhere; name the directory itself`);
  }
  const dir = await stat(dataDir);
  if (dir.uid !== ownUid) {
    throw new ToonDBError('INVALID_ARGUMENT',
      `the data directory ${dataDir} is owned by uid ${dir.uid}, not by this daemon's uid ${ownUid}, so its owner could plant links the daemon would write through; chown it to uid ${ownUid} or use another --data-dir`);
  }
  if ((dir.mode & 0o022) !== 0) {
    throw new ToonDBError('INVALID_ARGUMENT',
      `the data directory ${dataDir} is writable by other users (mode ${(dir.mode & 0o777).toString(8)}), who could plant links the daemon would write through: chmod 700 it`);
  }
  await checkAncestors(dataDir, 'the data directory', ownUid);
}

/** Why `dir` (its stats) lets another user than root and `ownUid` rename what is in it: they
 * own it, or may write it without the sticky bit; null if neither. */
function sharedDirProblem(dir: Stats, ownUid: number): string | null {
  if (dir.uid !== ownUid && dir.uid !== 0) return `owned by uid ${dir.uid}`;
  if ((dir.mode & 0o022) !== 0 && (dir.mode & 0o1000) === 0) return `writable by other users and not sticky (mode ${(dir.mode & 0o7777).toString(8)})`;
  return null;
}

/** Refuses `dir` if a directory above it, on its real path, has a sharedDirProblem: that user
 * could rename `dir` away after it was checked and put one of theirs, full of links, in its place. */
async function checkAncestors(dir: string, what: string, ownUid: number): Promise<void> {
  let current = dirname(await realpath(dir));
  for (;;) {
    const problem = sharedDirProblem(await stat(current), ownUid);
    if (problem !== null) {
      throw new ToonDBError('INVALID_ARGUMENT',
        `${what} ${dir} is inside ${current}, ${problem}, so another user could swap it for a directory of theirs; use one under directories of root's or uid ${ownUid}'s, not writable by others unless sticky`);
    }
    const parent = dirname(current);
    if (parent === current) return;
    current = parent;
  }
}

/** Refuses a socket directory another user could swap the socket in between its bind and its
 * chown/chmod (which go by path, so through a symlink put in its place): it must be root's or
 * the daemon's, and writable by others only when sticky (as /tmp is), where nobody but its
 * owner and root can rename or remove the daemon's socket. */
export async function checkSocketDirOwner(socketPath: string): Promise<void> {
  const ownUid = process.getuid?.();
  if (ownUid === undefined) return;
  const socketDir = dirname(socketPath);
  const problem = sharedDirProblem(await stat(socketDir), ownUid);
  if (problem !== null) {
    throw new ToonDBError('INVALID_ARGUMENT',
      `the socket's directory ${socketDir} is ${problem}, so another user could swap the socket for a link to another file as the daemon sets its mode; use a directory of root's or uid ${ownUid}'s, not writable by others unless sticky`);
  }
  await checkAncestors(socketDir, 'the socket\'s directory', ownUid);
}
