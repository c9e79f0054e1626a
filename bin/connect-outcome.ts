/**
 * What a failed connect tells a CLI, shared by `toondb` and `toondbd status` / `stop` so that
 * both exit alike for the same socket:
 *
 *   usage     the socket path or the environment is wrong (INVALID_ARGUMENT: an empty path, a
 *             bad TOONDB_SERVER_UID; SOCKET_PATH_TOO_LONG), found before any I/O
 *   absent    no daemon there: UNAVAILABLE with nothing listening (no socket file, connection
 *             refused: ENOENT / ECONNREFUSED), or closed during the handshake (no errno)
 *   unusable  something holds the socket but this user cannot use it: any other connect(2)
 *             error (EACCES / EPERM: no permission; EAGAIN: a live daemon's listen queue is
 *             full), refused (ACCESS_DENIED), owned by a
 *             user not trusted to be the daemon (SERVER_NOT_TRUSTED), not answering (TIMEOUT),
 *             full (TOO_MANY_CONNECTIONS), another protocol (VERSION_MISMATCH), stopping
 *             (SHUTTING_DOWN). Never "not running": a script that starts a daemon when none
 *             runs must not start a second one.
 */

import type { ToonDBError } from '../protocol/errors.js';

export type ConnectFailure = 'usage' | 'absent' | 'unusable';

const USAGE_CODES: ReadonlySet<string> = new Set(['INVALID_ARGUMENT', 'SOCKET_PATH_TOO_LONG']);
/** connect(2) errors that mean nothing listens there; any other one says nothing of the sort
 * (EAGAIN comes from a daemon too busy to accept), so it is not taken for "not running". */
const NOTHING_LISTENING: ReadonlySet<string> = new Set(['ENOENT', 'ECONNREFUSED']);

export function connectFailure(error: ToonDBError): ConnectFailure {
  if (USAGE_CODES.has(error.code)) return 'usage';
  if (error.code !== 'UNAVAILABLE') return 'unusable';
  const errno = (error.cause as NodeJS.ErrnoException | undefined)?.code;
  return typeof errno !== 'string' || NOTHING_LISTENING.has(errno) ? 'absent' : 'unusable';
}
