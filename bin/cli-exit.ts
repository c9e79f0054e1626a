/**
 * How `toondb` ends: its exit codes, and the one line on stderr that says why. README's
 * "Admin CLI" section has the same table; keep them in step.
 *
 *   0  success
 *   1  `get`: the key does not exist (`toondb: key not found`); nothing else exits 1
 *   2  usage error: a bad command, option or argument, or a bad socket path or
 *      TOONDB_SERVER_UID; found before anything is sent
 *   3  no daemon at the socket (UNAVAILABLE: nothing listens there)
 *   4  any other failure: the daemon refused this user or is not trusted (connect-outcome.ts),
 *      it answered with an error, or a dump / load file could not be used
 *
 * Invariant: every failure prints exactly one line, `toondb: CODE: message`, with a code of
 * the protocol/errors.ts registry (usage errors: INVALID_ARGUMENT or SOCKET_PATH_TOO_LONG). A
 * missing key is a result, not an error: its line carries no code, and its exit code is its own.
 */

import { toToonDBError, type ToonDBError } from '../protocol/errors.js';
import { connectFailure } from './connect-outcome.js';

export const EXIT_NOT_FOUND = 1;
export const EXIT_USAGE = 2;
export const EXIT_UNREACHABLE = 3;
export const EXIT_FAILURE = 4;

/** The program name every line starts with. */
const PREFIX = 'toondb: ';

function printed(error: unknown): ToonDBError {
  const coded = toToonDBError(error);
  process.stderr.write(`${PREFIX}${coded.code}: ${coded.message}\n`);
  return coded;
}

/** Ends the CLI after a failed connect: usage, no daemon, or a daemon this user cannot use. */
export function failConnect(error: unknown): never {
  const outcome = connectFailure(printed(error));
  process.exit(outcome === 'usage' ? EXIT_USAGE : outcome === 'absent' ? EXIT_UNREACHABLE : EXIT_FAILURE);
}

/** Ends the CLI after a failure once connected (a daemon that went away counts as absent). */
export function fail(error: unknown): never {
  const coded = printed(error);
  process.exit(coded.code === 'UNAVAILABLE' && connectFailure(coded) === 'absent' ? EXIT_UNREACHABLE : EXIT_FAILURE);
}

/** Ends the CLI for a usage error the CLI itself found. */
export function usage(message: string): never {
  process.stderr.write(`${PREFIX}INVALID_ARGUMENT: ${message}\n`);
  process.exit(EXIT_USAGE);
}

/** Reports a missing key; the CLI then ends normally with EXIT_NOT_FOUND. */
export function notFound(): void {
  process.stderr.write(`${PREFIX}key not found\n`);
  process.exitCode = EXIT_NOT_FOUND;
}

/** Commander's own usage errors (`error: unknown option '--x'`) as coded lines. */
export function codedCommanderError(text: string, prefix = PREFIX): string {
  // One line: commander puts a suggestion ("(Did you mean get?)") on a line of its own.
  const oneLine = text.trim().replace(/\s*\n\s*/g, ' ');
  return `${oneLine.replace(/^error: /, `${prefix}INVALID_ARGUMENT: `)} (--help shows the usage)\n`;
}
