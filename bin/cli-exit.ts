/**
 * How `toondb` ends: its exit codes, and the one line on stderr that says why.
 *
 *   0  success
 *   1  any failure, printed as `toondb: CODE: message`
 *   2  usage error: a bad command, option or argument
 *   3  no daemon reachable at the socket
 *
 * Invariant: every path out of the CLI other than success goes through `fail` or `usage`, so
 * each prints exactly one line.
 */

import { toToonDBError } from '../protocol/errors.js';

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const EXIT_UNREACHABLE = 3;

export function fail(error: unknown): never {
  const coded = toToonDBError(error);
  const unreachable = coded.code === 'UNAVAILABLE' || coded.code === 'SOCKET_PATH_TOO_LONG';
  process.stderr.write(`toondb: ${unreachable ? '' : coded.code + ': '}${coded.message}\n`);
  process.exit(unreachable ? EXIT_UNREACHABLE : EXIT_FAILURE);
}

export function usage(message: string): never {
  process.stderr.write(`toondb: ${message}\n`);
  process.exit(EXIT_USAGE);
}
