/**
 * Server trust: whether the process behind a socket path may be the toondb daemon.
 *
 * Responsibility: before a client sends its first byte, check who owns the socket it connected
 * to. A Unix socket file belongs to the user whose process bound it, and in a directory such as
 * /tmp (world-writable, sticky) any user can bind `/tmp/toondb.sock` while the real daemon is
 * down; without this check every client on the machine would hand that user its data.
 *
 * Policy (`serverUid`, from the connect option, else $TOONDB_SERVER_UID, else the default):
 * - default: the owner is this process's own uid, root, or a system account
 *   (uid 1..SYSTEM_UID_MAX: 999 on Linux, as systemd-sysusers and useradd --system allocate;
 *   499 on macOS). The shipped systemd unit's `toondb` user is such an account; `nobody` and
 *   regular users other than oneself are not.
 * - a uid: exactly that owner (for a daemon run by another regular user).
 * - 'any': no check.
 *
 * Invariants:
 * - The path's own entry is lstat'ed (never followed) before the connect and again after it; both
 *   must be the same socket (device and inode) with a trusted owner. A symlink is followed only
 *   if a trusted user owns it and it names the socket directly (`endpointOf`), which is then
 *   checked the same way; any other link is refused: its owner can point it elsewhere between
 *   the stats and the connect (to a root-owned file for the stats, to its own socket for the
 *   connect), so its target proves nothing. A socket
 *   owned by a trusted user cannot be replaced by another user in a sticky directory, so an
 *   entry that passes both is the one connected to, with one exception Node leaves open (it has
 *   no SO_PEERCRED for a client): if, within the connect, the real daemon removes its socket,
 *   another user binds the path, the client connects to that, and that user removes it again
 *   before the real daemon binds the path anew, a reused inode number would hide the swap.
 *   That needs the daemon to stop and start again inside one connect. A path missing before
 *   the connect and present after it fails the connect as UNAVAILABLE (retryable).
 * - A refusal is SERVER_NOT_TRUSTED naming the owner and how to trust it; the connection is
 *   closed by the caller before anything is written to it.
 * - Pure policy (`ownerProblem`) is separate from the file system calls, and platforms without
 *   uids (Windows) skip the check.
 */

import { lstat, readlink } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Stats } from 'node:fs';
import { ToonDBError } from '../protocol/errors.js';

/** The `serverUid` connect option: a uid, or 'any' for no check. */
export type ServerUid = number | 'any';

/** Highest uid of a system account: Linux distributions allocate them below 1000. */
export const SYSTEM_UID_MAX_LINUX = 999;
/** macOS gives system accounts uids below 500 (users start at 501). */
export const SYSTEM_UID_MAX_DARWIN = 499;
/** Largest uid the option accepts (uid_t is 32 bits; 2^32 - 1 means "no uid"). */
const UID_MAX = 2 ** 32 - 2;

/** What the caller asked for: 'default' when neither the option nor the environment says. */
export type TrustPolicy = ServerUid | 'default';

function parseUid(value: unknown, what: string): ServerUid {
  if (value === 'any') return 'any';
  const uid = typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value.trim()) : value;
  if (typeof uid !== 'number' || !Number.isInteger(uid) || uid < 0 || uid > UID_MAX) {
    throw new ToonDBError('INVALID_ARGUMENT', `${what} must be a uid (an integer in 0..${UID_MAX}) or 'any', got ${JSON.stringify(value)}`);
  }
  return uid;
}

/** The policy from the option, else $TOONDB_SERVER_UID; throws INVALID_ARGUMENT for a bad one. */
export function resolveTrustPolicy(option: unknown, env: NodeJS.ProcessEnv = process.env): TrustPolicy {
  if (option !== undefined) return parseUid(option, 'serverUid');
  const fromEnv = env.TOONDB_SERVER_UID;
  if (fromEnv === undefined || fromEnv.trim() === '') return 'default';
  return parseUid(fromEnv.trim(), 'TOONDB_SERVER_UID');
}

function systemUidMax(platform: NodeJS.Platform): number {
  return platform === 'darwin' ? SYSTEM_UID_MAX_DARWIN : SYSTEM_UID_MAX_LINUX;
}

/** Why a socket owned by `ownerUid` is not trusted under `policy`, or null if it is. */
export function ownerProblem(ownerUid: number, policy: TrustPolicy, selfUid: number, platform: NodeJS.Platform = process.platform): string | null {
  if (policy === 'any') return null;
  if (policy !== 'default') return ownerUid === policy ? null : `serverUid asks for uid ${policy}`;
  if (ownerUid === selfUid || ownerUid === 0) return null;
  const max = systemUidMax(platform);
  if (ownerUid >= 1 && ownerUid <= max) return null;
  return `this client trusts its own uid ${selfUid}, root and system accounts (uid 1..${max})`;
}

/** The path's own entry (a symlink is not followed), or null if it cannot be lstat'ed. */
async function socketFile(path: string): Promise<Stats | null> {
  try {
    return await lstat(path);
  } catch {
    return null;
  }
}

/** The entry that must be the socket: `entry` itself (the path's own), or for a symlink the
 * entry it names, one hop only (not followed further); null if the link names nothing. */
async function endpointOf(path: string, entry: Stats): Promise<Stats | null> {
  if (!entry.isSymbolicLink()) return entry;
  try {
    return await lstat(resolve(dirname(path), await readlink(path)));
  } catch {
    return null;
  }
}

const sameFile = (a: Stats, b: Stats): boolean => a.dev === b.dev && a.ino === b.ino;

/**
 * Stats `path` before a connect; call the returned check once connected. The check resolves if
 * the server is trusted and rejects with SERVER_NOT_TRUSTED otherwise.
 */
export async function beforeConnect(path: string, policy: TrustPolicy): Promise<() => Promise<void>> {
  const selfUid = process.getuid?.();
  if (policy === 'any' || selfUid === undefined) return async () => undefined;
  const before = await socketFile(path);
  // A symlink only a trusted user can repoint (a root-owned /tmp/toondb.sock ->
  // /run/toondb/toondb.sock) leads to the socket it names, which is checked as the path's own
  // entry would be.
  let endBefore: Stats | null = null;
  if (before !== null) {
    refuseUntrusted(path, before, policy, selfUid);
    endBefore = await endpointOf(path, before);
    if (endBefore?.isSymbolicLink()) {
      // A second hop could be anyone's link: only a link straight to the socket is followed.
      throw new ToonDBError('SERVER_NOT_TRUSTED', `${path} is a symlink to another symlink; connect to the socket's real path, or link straight to it`);
    }
    if (endBefore !== null && endBefore !== before) refuseUntrusted(path, endBefore, policy, selfUid);
  }
  return async () => {
    const after = await socketFile(path);
    // Gone or replaced between the stat and the connect: nothing is sent to whatever answered,
    // but that is what a daemon stopping or restarting looks like too, not a sign of a stranger:
    // UNAVAILABLE (retryable), and the next connect checks the socket there then. (It was
    // SERVER_NOT_TRUSTED, which failed every call sharing a reconnect in 1 of 10 restarts.)
    if (after === null) {
      throw new ToonDBError('UNAVAILABLE', `the socket ${path} disappeared as it was connected to (the daemon stopping?), so its owner cannot be checked; nothing was sent`);
    }
    // Missing before: whatever was connected to appeared within the connect, and its owner
    // could have swapped it for a trusted file since. The next connect checks it from the start.
    const endAfter = await endpointOf(path, after);
    if (before === null || endBefore === null || endAfter === null || !sameFile(before, after) || !sameFile(endBefore, endAfter)) {
      throw new ToonDBError('UNAVAILABLE', `the socket ${path} was replaced by another file as it was connected to (the daemon restarting?); nothing was sent`);
    }
    // Connected, so a socket, unless another file took its place: the same inode says not.
    if (!endAfter.isSocket()) {
      throw new ToonDBError('SERVER_NOT_TRUSTED', `${path} is not a socket, yet a connect to it succeeded; nothing was sent`);
    }
    refuseUntrusted(path, endAfter, policy, selfUid);
  };
}

function refuseUntrusted(path: string, file: Stats, policy: TrustPolicy, selfUid: number): void {
  if (file.isSymbolicLink() && ownerProblem(file.uid, policy, selfUid) !== null) {
    throw new ToonDBError('SERVER_NOT_TRUSTED',
      `${path} is a symlink, whose owner (uid ${file.uid}) can point it at another socket as it is connected to; connect to the socket's real path`);
  }
  const ownerUid = file.uid;
  const problem = ownerProblem(ownerUid, policy, selfUid);
  if (problem === null) return;
  throw new ToonDBError('SERVER_NOT_TRUSTED',
    `the socket ${path} is owned by uid ${ownerUid}, which is not trusted to be the toondb daemon (${problem}); `
    + `if that user runs your daemon, connect with { serverUid: ${ownerUid} } or set TOONDB_SERVER_UID=${ownerUid}`);
}
