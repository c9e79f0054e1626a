/**
 * How the daemon shares its open-files limit between client sockets and the engine.
 *
 * Responsibility: from the soft RLIMIT_NOFILE (read through the engine: Node has no getrlimit;
 * Node raises the soft limit to the hard one at startup), decide how many table files the engine keeps open, how many sockets the daemon holds at once,
 * and how many connections it serves. Every descriptor a client socket takes is one the engine
 * may need to create a table in a flush, and a flush that cannot create its table ends fjall's
 * worker and poisons the store (writes refused with STORAGE_FAILED until restart): so client
 * sockets are bounded to what is left after ENGINE_FD_RESERVE and the table-file cache.
 *
 * Invariants:
 * - reserve + tableFiles + sockets <= openFilesLimit, and connectionsLimit + HANGING_UP_SOCKETS_MIN
 *   <= sockets: refusals always have room to be written.
 * - With a limit that has room for everything (ENGINE_FD_RESERVE + ENGINE_TABLE_FILES_MAX +
 *   CONNECTIONS_MAX + HANGING_UP_SOCKETS_MIN), nothing is lowered.
 * - tableFiles is in ENGINE_TABLE_FILES_MIN..ENGINE_TABLE_FILES_MAX, at least a quarter of what
 *   the reserve leaves, and otherwise what CONNECTIONS_MAX connections do not need.
 * - The budget depends on the limit alone, not on the configured connectionsMax: the engine's
 *   share is fixed when it opens, and a reload (SIGHUP) may raise connectionsMax up to
 *   connectionsLimit.
 */

import { ToonDBError } from '../protocol/errors.js';
import {
  CONNECTIONS_MAX, ENGINE_FD_RESERVE, ENGINE_TABLE_FILES_MAX, ENGINE_TABLE_FILES_MIN, FD_LIMITED_CONNECTIONS_MIN, HANGING_UP_SOCKETS_MIN,
} from '../protocol/limits.js';

export interface DescriptorBudget {
  /** The soft RLIMIT_NOFILE it was computed from (Number.MAX_SAFE_INTEGER: unlimited). */
  openFilesLimit: number;
  /** Capacity of the engine's table-file descriptor cache. */
  tableFiles: number;
  /** Most sockets the daemon holds at once: its connections and the ones it is hanging up on.
   * A connection that arrives past it is cut off at once. */
  sockets: number;
  /** Most connections the limit leaves room for; the daemon serves min(connectionsMax, this). */
  connectionsLimit: number;
}

/** The lowest open-files limit the daemon starts with. */
export const OPEN_FILES_LIMIT_MIN = ENGINE_FD_RESERVE + ENGINE_TABLE_FILES_MIN + HANGING_UP_SOCKETS_MIN + FD_LIMITED_CONNECTIONS_MIN;

/** The budget for `openFilesLimit`; INVALID_ARGUMENT when it is below OPEN_FILES_LIMIT_MIN. */
export function descriptorBudget(openFilesLimit: number): DescriptorBudget {
  if (!(openFilesLimit >= OPEN_FILES_LIMIT_MIN)) {
    throw new ToonDBError('INVALID_ARGUMENT',
      `the open-files limit (RLIMIT_NOFILE) is ${openFilesLimit}, below the ${OPEN_FILES_LIMIT_MIN} toondbd needs (its engine's files and ${FD_LIMITED_CONNECTIONS_MIN} connections): raise it (ulimit -n, systemd LimitNOFILE=)`);
  }
  const available = openFilesLimit - ENGINE_FD_RESERVE;
  const tableFiles = Math.min(ENGINE_TABLE_FILES_MAX,
    Math.max(ENGINE_TABLE_FILES_MIN, Math.floor(available / 4), available - CONNECTIONS_MAX - HANGING_UP_SOCKETS_MIN));
  const sockets = available - tableFiles;
  return { openFilesLimit, tableFiles, sockets, connectionsLimit: sockets - HANGING_UP_SOCKETS_MIN };
}
