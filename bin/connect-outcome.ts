/**
 * What a failed connect tells a CLI, shared by `toondb` and `toondbd status` / `stop` so that
 * both exit alike for the same socket:
 *
 *   usage     the socket path or the environment is wrong (INVALID_ARGUMENT: an empty path, a
 *             bad TOONDB_SERVER_UID; SOCKET_PATH_TOO_LONG), found before any I/O
 *   absent    no daemon there: UNAVAILABLE with nothing listening (no socket file, connection
 *             refused, closed during the handshake)
 *   unusable  something holds the socket but this user cannot use it: no permission to
 *             connect (UNAVAILABLE from EACCES / EPERM), refused (ACCESS_DENIED), owned by a
 *             user not trusted to be the daemon (SERVER_NOT_TRUSTED), not answering (TIMEOUT),
 *             full (TOO_MANY_CONNECTIONS), another protocol (VERSION_MISMATCH), stopping
 *             (SHUTTING_DOWN). Never "not running": a script that starts a daemon when none
 *             runs must not start a second one.
 */

import type { ToonDBError } from '../protocol/errors.js';

export type ConnectFailure = 'usage' | 'absent' | 'unusable';

const USAGE_CODES: ReadonlySet<string> = new Set(['INVALID_ARGUMENT', 'SOCKET_PATH_TOO_LONG']);
/** connect(2) errors that mean the socket is there but not this user's to connect to. */
const NO_PERMISSION: ReadonlySet<string> = new Set(['EACCES', 'EPERM']);

export function connectFailure(error: ToonDBError): ConnectFailure {
  if (USAGE_CODES.has(error.code)) return 'usage';
  if (error.code !== 'UNAVAILABLE') return 'unusable';
  const errno = (error.cause as NodeJS.ErrnoException | undefined)?.code;
  return typeof errno === 'string' && NO_PERMISSION.has(errno) ? 'unusable' : 'absent';
}
