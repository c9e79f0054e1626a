#!/usr/bin/env node
/**
 * `toondb` — the admin CLI. Talks to a running toondbd through the public IpcClient only.
 *
 *   toondb ping                         round trip and daemon version
 *   toondb stats [--json] [--watch S]   daemon, engine and transaction figures
 *   toondb get KEY | put KEY VALUE [--ttl S] | del KEY
 *   toondb scan PREFIX [--limit N] [--reverse] [--json]
 *   toondb checkpoint
 *   toondb dump FILE | load FILE        consistent snapshot of all keys to a file, and back
 *                                       (`-`: stdout / stdin)
 *   toondb --version                    this package's version (`ping` shows the daemon's)
 *
 * --socket (default $TOONDB_SOCKET, then /tmp/toondb.sock) is program-wide: before or after the
 * command. Keys and values are text or, with --hex or --base64 (get, put, del, scan only), that
 * encoding (text.ts says what prints as text). Exit codes and error lines: cli-exit.ts.
 */

import { Command } from 'commander';
import { DEFAULT_SOCKET_PATH, IpcClient } from '../ipc-client/index.js';
import { CLIENT_VERSION } from '../ipc-client/version.js';
import { toToonDBError } from '../protocol/errors.js';
import { TTL_SECONDS_MAX } from '../protocol/limits.js';
import type { StatsResult } from '../protocol/messages.js';
import { dump, load, loadSourceName, progressReporter } from './dump.js';
import { STDIO_NAME, writeError } from './dump-target.js';
import { renderStats } from './format.js';
import { codedCommanderError, EXIT_FAILURE, EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_USAGE, fail, failConnect, notFound, usage } from './cli-exit.js';
import { display, parseInput, parseKey, parsePath, type Encoding } from './text.js';


/** How long the CLI waits for connect + hello. */
const CONNECT_TIMEOUT_MS = 3_000;
/** Longest `stats --watch` period: a longer one overflows Node's timers, which then fire at once. */
const WATCH_SECONDS_MAX = 86_400;
/** Shortest `stats --watch` period; a shorter one is raised to it. */
const WATCH_SECONDS_MIN = 0.1;
/** `stats --watch` with no period (a bare --watch, as `toondb stats [--json] [--watch]` reads). */
const WATCH_SECONDS_DEFAULT = 2;

/** Connects to the daemon at --socket (a program-wide option), runs `run`, and ends the CLI with
 * a coded line and exit code if either fails. */
async function withClient<T>(run: (client: IpcClient) => Promise<T>): Promise<T> {
  const socket = program.opts<{ socket?: string }>().socket;
  // The client library falls back to TOONDB_SOCKET itself: check it here, where it is a usage error.
  const socketText = socket ?? process.env.TOONDB_SOCKET;
  if (socketText) parsePath(socketText, socket === undefined ? 'TOONDB_SOCKET' : '--socket');
  let client: IpcClient;
  try {
    client = await IpcClient.connect(socket, { connectTimeoutMs: CONNECT_TIMEOUT_MS, clientName: 'toondb-cli' });
  } catch (error) {
    failConnect(error);
  }
  try {
    return await run(client);
  } catch (error) {
    fail(error);
  } finally {
    await client.close();
  }
}

function out(line: string): void {
  process.stdout.write(line + '\n');
}

/** True while stdout carries a dump (`dump -`): a reader that goes away then leaves it incomplete. */
let stdoutCarriesDump = false;

// A reader that went away (`toondb scan | head -1`) is the end of the output, not a failure:
// exit quietly instead of with an unhandled EPIPE stack. Any other failure to write stdout (a
// full disk behind `> file`: ENOSPC) is one coded line and exit 4, never a stack trace and the
// exit 1 that means "key not found". Not for `dump -`: there the failed write reports the
// incomplete dump itself.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (stdoutCarriesDump) return;
  if (error.code === 'EPIPE') process.exit(0);
  fail(writeError('stdout', error));
});

const program = new Command('toondb')
  .description('admin CLI for a running toondbd')
  .version(CLIENT_VERSION)
  // Program-wide, so it goes before the command or after it; each command's help shows it.
  .option('--socket <path>', `daemon socket (default: $TOONDB_SOCKET, else ${DEFAULT_SOCKET_PATH})`)
  .configureHelp({ showGlobalOptions: true })
  .addHelpText('after', `
Environment:
  TOONDB_SOCKET      the daemon's socket when --socket is not given
  TOONDB_SERVER_UID  the uid that must own the socket (default: yours, root or a system
                     account; 'any' for no check)

Exit codes:
  ${EXIT_NOT_FOUND}  get: the key does not exist (nothing else exits ${EXIT_NOT_FOUND})
  ${EXIT_USAGE}  usage error (bad command, option, argument, socket path or TOONDB_SERVER_UID)
  ${EXIT_UNREACHABLE}  no daemon at the socket
  ${EXIT_FAILURE}  any other failure, printed as "toondb: CODE: message"`)
  .configureOutput({ outputError: (text, write) => write(codedCommanderError(text)) })
  .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : EXIT_USAGE));

function command(name: string, description: string): Command {
  return program.command(name).description(description);
}

/** --hex / --base64, for the commands that read or print keys and values. */
function withEncodings(command: Command): Command {
  return command
    .option('--hex', 'keys and values as hex, in arguments and output')
    .option('--base64', 'keys and values as base64, in arguments and output');
}

command('ping', 'check that the daemon answers, and how fast').action(() =>
  withClient(async (client) => {
    const { latencyMs, version } = await client.ping();
    out(`PONG from toondbd ${version} in ${latencyMs.toFixed(3)} ms`);
  }));

/** Errors of `stats --watch` that a daemon restart causes: the watch goes on. */
const WATCH_RIDES_THROUGH = new Set<string>(['UNAVAILABLE', 'UNKNOWN_RESULT', 'CONNECTION_CLOSED', 'SHUTTING_DOWN', 'TIMEOUT']);

command('stats', 'print daemon statistics')
  .option('--json', 'print JSON')
  .option('--watch [seconds]', `redraw every N seconds (up to ${WATCH_SECONDS_MAX}; a shorter period than ${WATCH_SECONDS_MIN} is raised to it; ${WATCH_SECONDS_DEFAULT} if not given) until interrupted`)
  .action((flags: { json?: boolean; watch?: string | true }) => {
    const watchSeconds = flags.watch === true ? WATCH_SECONDS_DEFAULT : positive(flags.watch, '--watch', WATCH_SECONDS_MAX);
    return withClient(async (client) => {
      const print = (stats: StatsResult) => out(flags.json ? JSON.stringify(stats, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) : renderStats(stats));
      if (watchSeconds === undefined) return print(await client.stats());
      const periodMs = Math.max(WATCH_SECONDS_MIN, watchSeconds) * 1000;
      // A daemon restart does not end the watch: the client reconnects on the next call, and
      // until a daemon answers each round says why on stderr.
      for (;;) {
        const stats = await client.stats().catch((error: unknown) => {
          const coded = toToonDBError(error);
          if (!WATCH_RIDES_THROUGH.has(coded.code)) throw coded;
          process.stderr.write(`toondb: ${coded.code}: ${coded.message}; retrying every ${periodMs / 1000} s\n`);
          return null;
        });
        if (stats !== null) {
          if (process.stdout.isTTY && !flags.json) process.stdout.write('\x1b[2J\x1b[H');
          print(stats);
        }
        await new Promise((resolve) => setTimeout(resolve, periodMs));
      }
    });
  });

/** A positive number from an option, at most `max` seconds if given, or a usage error. */
function positive(text: string | undefined, option: string, max?: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) usage(`${option} must be a positive number, got "${text}"`);
  if (max !== undefined && n > max) usage(`${option} must be at most ${max} seconds, got "${text}"`);
  return n;
}

// Arguments are parsed before connecting: a usage error is one whether or not a daemon runs.

withEncodings(command('get', 'print the value of KEY (exit 1 if missing)')).argument('<key>').action((key: string, flags: Encoding) => {
  const keyBytes = parseKey(key, flags);
  return withClient(async (client) => {
    const value = await client.get(keyBytes);
    if (value === null) notFound();
    else out(display(value, flags));
  });
});

withEncodings(command('put', 'set KEY to VALUE')).argument('<key>').argument('<value>')
  .option('--ttl <seconds>', `expire after N seconds (fractions allowed; at most ${TTL_SECONDS_MAX})`)
  .action((key: string, value: string, flags: Encoding & { ttl?: string }) => {
    const entry = [parseKey(key, flags), parseInput(value, flags, 'VALUE')] as const;
    const ttlSeconds = positive(flags.ttl, '--ttl', TTL_SECONDS_MAX);
    return withClient(async (client) => {
      // A daemon may be configured with a lower maximum than the protocol's.
      positive(flags.ttl, '--ttl', client.serverInfo.limits.ttlSecondsMax);
      await client.put(...entry, ttlSeconds === undefined ? undefined : { ttlSeconds });
      out('OK');
    });
  });

withEncodings(command('del', 'delete KEY')).argument('<key>').action((key: string, flags: Encoding) => {
  const keyBytes = parseKey(key, flags);
  return withClient(async (client) => {
    await client.delete(keyBytes);
    out('OK');
  });
});

withEncodings(command('scan', 'list keys and values under PREFIX in key order')).argument('[prefix]', 'key prefix', '')
  .option('--limit <n>', 'stop after N entries').option('--reverse', 'descending key order').option('--json', 'one JSON object per line')
  .action((prefix: string, flags: Encoding & { limit?: string; reverse?: boolean; json?: boolean }) => {
    const prefixBytes = parseInput(prefix, flags, 'PREFIX');
    const limit = positive(flags.limit, '--limit');
    if (limit !== undefined && !Number.isSafeInteger(limit)) usage(`--limit must be a whole number, got "${flags.limit}"`);
    return withClient(async (client) => {
      for await (const [key, value] of client.scan(prefixBytes, { limit, reverse: flags.reverse === true })) {
        out(flags.json ? JSON.stringify({ key: display(key, flags), value: display(value, flags) }) : `${display(key, flags, true)}\t${display(value, flags, true)}`);
      }
    });
  });

command('checkpoint', 'flush everything to the engine files and bound recovery work').action(() =>
  withClient(async (client) => {
    const { lsn, durationMs } = await client.checkpoint();
    out(`checkpoint at lsn ${lsn} in ${durationMs.toFixed(1)} ms`);
  }));


command('dump', 'write a consistent snapshot of every key and value to FILE (- for stdout)').argument('<file>')
  .action((file: string, flags: Encoding) => {
    parsePath(file, 'FILE');
    if (file === STDIO_NAME && process.stdout.isTTY) usage('not writing a binary dump to a terminal: redirect stdout, or name a file');
    stdoutCarriesDump = file === STDIO_NAME;
    return withClient(async (client) => {
      const progress = progressReporter('dumped');
      const { count, target } = await dump(client, file, progress).catch((error: unknown) => { progress.interrupted(); throw error; });
      // Streamed to stdout, stderr, a device or a FIFO: the summary must not join the data.
      target.summary.write(`dumped ${count} keys to ${target.name}\n`);
    });
  });

command('load', 'write every key and value from a dump FILE (- for stdin) into the daemon').argument('<file>')
  .action((file: string) => {
    parsePath(file, 'FILE');
    return withClient(async (client) => {
      const progress = progressReporter('loaded');
      const { count, expired } = await load(client, file, progress).catch((error: unknown) => { progress.interrupted(); throw error; });
      out(`loaded ${count - expired} keys from ${loadSourceName(file)}${expired > 0 ? ` (${expired} more had expired since the dump)` : ''}`);
    });
  });

try {
  await program.parseAsync(process.argv);
} catch (error) {
  fail(error);
}
