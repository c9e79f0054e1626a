// `toondb` exit codes, as README's table documents them, and the one coded line each failure
// prints: 1 only for a missing key, 2 for any usage error (options, arguments, environment,
// before anything is sent), 3 when no daemon is at the socket, 4 for every other failure.
// Real daemon, real CLI processes.
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { suiteDaemon } from '../helpers/daemon.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { TOONDB_BIN } from '../helpers/paths.js';

const toondb = (args: string[], env: Record<string, string> = {}) =>
  execa('node', [TOONDB_BIN, ...args], { reject: false, env, stdin: 'ignore' });

/** A TTL beyond any daemon's ttlSecondsMax (100 years). */
const TTL_TOO_LONG = '99999999999999';

describe('toondb exit codes', () => {
  const daemon = suiteDaemon();
  const socket = () => ['--socket', daemon().socketPath];

  it('exits 2 with one coded line for every usage error, before connecting', async () => {
    const nowhere = join(makeTempDir(), 'none.sock');
    const cases: [string[], Record<string, string>, RegExp][] = [
      [['ping', '--socket', ''], {}, /^toondb: INVALID_ARGUMENT: socketPath must be a non-empty string$/],
      [['ping', ...socket()], { TOONDB_SERVER_UID: 'bogus' }, /^toondb: INVALID_ARGUMENT: TOONDB_SERVER_UID must be a uid/],
      [['ping', '--socket', join(makeTempDir(), 'x'.repeat(120))], {}, /^toondb: SOCKET_PATH_TOO_LONG: socket path .* longer than the 103-byte limit$/],
      [['put', 'ttl/long', 'v', '--ttl', TTL_TOO_LONG, ...socket()], {}, /^toondb: INVALID_ARGUMENT: --ttl must be at most 3153600000 seconds/],
      // Usage comes first: the same error with no daemon there is still a usage error.
      [['put', 'ttl/long', 'v', '--ttl', TTL_TOO_LONG, '--socket', nowhere], {}, /^toondb: INVALID_ARGUMENT: --ttl must be at most/],
      [['put', 'k', 'v', '--ttl', 'soon', '--socket', nowhere], {}, /^toondb: INVALID_ARGUMENT: --ttl must be a positive number/],
      [['get', 'zz', '--hex', '--socket', nowhere], {}, /^toondb: INVALID_ARGUMENT: --hex input/],
      [['stats', '--watch', '1e12', ...socket()], {}, /^toondb: INVALID_ARGUMENT: --watch must be at most 86400 seconds/],
      // Regression (review): an empty key was sent, refused by the daemon, and exited 4 (3
      // with no daemon).
      [['put', '', 'v', '--socket', nowhere], {}, /^toondb: INVALID_ARGUMENT: KEY must not be empty$/],
      [['get', '--hex', '', ...socket()], {}, /^toondb: INVALID_ARGUMENT: KEY must not be empty$/],
      [['del', '', ...socket()], {}, /^toondb: INVALID_ARGUMENT: KEY must not be empty$/],
    ];
    for (const [args, env, line] of cases) {
      const result = await toondb(args, env);
      const what = `${JSON.stringify(env)} ${args.join(' ')}`;
      expect(result.exitCode, what).toBe(2);
      expect(result.stderr.split('\n'), what).toHaveLength(1);
      expect(result.stderr, what).toMatch(line);
    }
    const client = await IpcClient.connect(daemon().socketPath);
    expect(await client.get('ttl/long')).toBeNull();
    await client.close();
  });

  // Regression (review): commander's usage errors were followed by the whole help text, where
  // the README promises one line.
  it('exits 2 with one coded line for an unknown option, command or a missing argument', async () => {
    const cases: [string[], string][] = [
      [['ping', '--no-such-option', ...socket()], "unknown option '--no-such-option'"],
      [['bogus', ...socket()], "unknown command 'bogus'"],
      // A near miss: commander's suggestion joins the line instead of starting a second one.
      [['gett', 'k', ...socket()], "unknown command 'gett' (Did you mean get?)"],
      [['get', ...socket()], "missing required argument 'key'"],
      [['put', 'a', 'b', 'c', ...socket()], 'too many arguments for \'put\'. Expected 2 arguments but got 3.'],
    ];
    for (const [args, message] of cases) {
      const result = await toondb(args);
      expect(result.exitCode, args.join(' ')).toBe(2);
      expect(result.stderr, args.join(' ')).toBe(`toondb: INVALID_ARGUMENT: ${message} (--help shows the usage)`);
    }
  });

  it('exits 3 with a coded line when no daemon is at the socket', async () => {
    const nowhere = join(makeTempDir(), 'none.sock');
    const result = await toondb(['ping', '--socket', nowhere]);
    expect(result.exitCode).toBe(3);
    expect(result.stderr).toBe(`toondb: UNAVAILABLE: no toondb daemon at ${nowhere} (ENOENT); start one with \`toondbd start\``);
  });

  it('exits 1 for a missing key and 4 for a failure, so the two can be told apart', async () => {
    const missing = await toondb(['get', 'no-such-key', ...socket()]);
    expect({ code: missing.exitCode, stderr: missing.stderr, stdout: missing.stdout }).toEqual({ code: 1, stderr: 'toondb: key not found', stdout: '' });
    const tooLarge = await toondb(['get', 'k'.repeat(20_000), ...socket()]);
    expect(tooLarge.exitCode).toBe(4);
    expect(tooLarge.stderr).toMatch(/^toondb: KEY_TOO_LARGE: /);
    const self = process.getuid?.() ?? 0;
    const untrusted = await toondb(['ping', ...socket()], { TOONDB_SERVER_UID: String(self + 1) });
    expect(untrusted.exitCode).toBe(4);
    expect(untrusted.stderr).toMatch(/^toondb: SERVER_NOT_TRUSTED: /);
  });
});
