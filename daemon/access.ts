/**
 * Who may talk to the daemon: socket file mode and group, and the peer uid/gid allow-list.
 *
 * Responsibility: the two layers of access control. The socket file is created owner-only
 * (umask 0177 around bind, so there is no window in which it is world-accessible); with a
 * configured group it is chowned to that group and opened to 0660. Beyond file modes, the peer's
 * uid/gid/pid and supplementary groups are read from the kernel (SO_PEERCRED and SO_PEERGROUPS /
 * getpeereid and LOCAL_PEERCRED, through the native addon, as they were when the peer
 * connected) and checked against `--allow-uid` / `--allow-gid` (the primary group or any
 * supplementary one) before the connection may send anything.
 *
 * Invariants: the daemon's own uid is always allowed (so `toondbd stop` and `status` work);
 * with no allow-list configured every peer that can open the socket file is allowed.
 */

import { readFileSync } from 'node:fs';
import { chmod, lchown } from 'node:fs/promises';
import type { Socket } from 'node:net';
import type { PeerCredentials } from '../engine/index.js';
import { ToonDBError } from '../protocol/errors.js';
import type { DaemonConfig } from './config.js';

export type { PeerCredentials };

/** Resolves a group name (or numeric id) to a gid using /etc/group. */
export function resolveGroupId(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  let text = '';
  try {
    text = readFileSync('/etc/group', 'utf8');
  } catch {
    // fall through to the error below
  }
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined) return Number(gid);
  }
  throw new ToonDBError('INVALID_ARGUMENT', `unknown group "${group}" (not in /etc/group)`);
}

/** Runs `bind` with a umask that creates the socket owner-only, then applies the group mode. */
export async function listenPrivately(bind: () => Promise<void>, socketPath: string, config: DaemonConfig): Promise<void> {
  const previous = process.umask(0o177);
  try {
    await bind();
  } finally {
    process.umask(previous);
  }
  if (config.socketGroup !== null) {
    // lchown: never the file a link put in the socket's place names (the directory is checked
    // too, daemon/server.ts: a link there could still redirect the chmod).
    await lchown(socketPath, -1, resolveGroupId(config.socketGroup));
    await chmod(socketPath, 0o660);
  } else {
    await chmod(socketPath, 0o600);
  }
}

/** The file descriptor behind a connected net.Socket (libuv keeps it on the handle). */
export function socketFd(socket: Socket): number {
  const handle = (socket as unknown as { _handle?: { fd?: number } })._handle;
  return typeof handle?.fd === 'number' ? handle.fd : -1;
}

export function isPeerAllowed(peer: PeerCredentials, config: DaemonConfig): boolean {
  if (config.allowUids.length === 0 && config.allowGids.length === 0) return true;
  // The daemon's own uid and root are operators (they may stop it, and keep slots of their
  // own): an allow-list that shut them out would leave `toondbd stop` and `stats` to nobody.
  if (peer.uid === process.getuid?.() || peer.uid === 0) return true;
  if (config.allowUids.includes(peer.uid) || config.allowGids.includes(peer.gid)) return true;
  return peer.groups.some((gid) => config.allowGids.includes(gid));
}
