#!/usr/bin/env node
/**
 * `toondbd` — run and control the toondb daemon.
 *
 *   toondbd start  [--socket PATH] [--data-dir DIR] [--durability sync|interval|off]
 *                  [--sync-interval-ms N] [--log-level LEVEL] [--config FILE]
 *                  [--socket-group NAME] [--allow-uid LIST] [--allow-gid LIST]
 *                  [--row-cache-mb MIB]
 *   toondbd stop   [--socket PATH] [--timeout-ms N]
 *   toondbd status [--socket PATH] [--json]
 *
 * `start` runs in the foreground (service managers supervise it; it never daemonises itself) and
 * logs JSON lines to stdout. Exit codes: 0 ok; 1 runtime failure, or (`status`/`stop`) a socket
 * held by something this user cannot use (connect-outcome.ts: never "not running"); 2 invalid
 * configuration or usage, a bad socket path included; 3 (`status`/`stop`) no daemon there.
 * Every error line is `toondbd: CODE: message`.
 *
 * The libuv pool runs the engine's disk work; its size must be fixed before the pool is first
 * used, so this file sets it and only then imports the daemon.
 */

import { availableParallelism, constants as osConstants } from 'node:os';
import type { ErrorCode } from '../protocol/errors.js';

process.env.UV_THREADPOOL_SIZE ??= String(Math.min(16, Math.max(4, availableParallelism() * 2)));

/** Set once `start` has a logger. Node's default action for SIGUSR1 is to open its inspector on
 * 127.0.0.1:9229, which lets any local user run code as the daemon's user (root under the
 * launchd plist); a listener of our own replaces that action. Installed before the imports. */
let onUsr1: (() => void) | null = null;
process.on('SIGUSR1', () => onUsr1?.());
/** Set once `start` has read its configuration (`status` and `stop` set it to exit, as the
 * default action would). SIGHUP's default action is to terminate: one that comes while the
 * modules load (a reload sent as the service starts) is ignored instead, as the configuration
 * is read after it. */
let onHup: (() => void) | null = null;
process.on('SIGHUP', () => onHup?.());
/** SIGTERM and SIGINT: `start` sets this to stop the daemon cleanly, the other commands to exit
 * as the default action would. Until then (the modules load: up to a second or more on a loaded
 * host) the first one is held in `stopWhileLoading` instead of killing the process: `start` then
 * exits 0 having created nothing (a service stopped as it starts), any other command as killed. */
let onStop: ((signal: NodeJS.Signals) => void) | null = null;
let stopWhileLoading: NodeJS.Signals | null = null;
const stopSignal = (signal: NodeJS.Signals): void => {
  if (onStop !== null) onStop(signal);
  else stopWhileLoading ??= signal;
};
process.on('SIGTERM', stopSignal);
process.on('SIGINT', stopSignal);

const { Command, Option } = await import('commander');
const { connectFailure } = await import('./connect-outcome.js');
const { codedCommanderError } = await import('./cli-exit.js');
const daemonModule = await import('../daemon/index.js');
const { IpcClient } = await import('../ipc-client/index.js');
const { ToonDBError, toToonDBError } = await import('../protocol/errors.js');
const { ROW_CACHE_MIB_DEFAULT, SYNC_INTERVAL_MS_DEFAULT } = await import('../protocol/limits.js');
const { DATA_DIR_NAME, DATA_HOME_FALLBACK, DEFAULT_SOCKET_PATH, DURABILITY_DEFAULT, DURABILITY_MODES, LOG_LEVEL_DEFAULT, LOG_LEVELS } = daemonModule;

const EXIT_RUNTIME = 1;
const EXIT_CONFIG = 2;
const EXIT_NOT_RUNNING = 3;
/** As long as systemd (TimeoutStopSec) and launchd (ExitTimeOut) give a stop: the daemon's own
 * bounds (a 10 s drain, a 2 s reply flush, a 25 s checkpoint flush) end it well within. */
const STOP_TIMEOUT_MS_DEFAULT = 60_000;
/** How often `stop` looks whether a daemon shutting down is gone. */
const STOP_POLL_MS = 50;
/** How long `stop` waits, once the socket is released, for the daemon's pid to end too. */
const STOP_PID_GRACE_MS = 2_000;
/** How long `status` and `stop` wait for connect + hello, and then for each request. */
const CONNECT_TIMEOUT_MS = 2_000;
const REQUEST_TIMEOUT_MS = 10_000;

interface StartFlags {
  socket?: string;
  dataDir?: string;
  durability?: string;
  syncIntervalMs?: string;
  logLevel?: string;
  config?: string;
  socketGroup?: string;
  allowUid?: string;
  allowGid?: string;
  rowCacheMb?: string;
}

/** Prints `toondbd: CODE: message` (CODE from the error registry) and exits with `exitCode`. */
function die(code: ErrorCode, message: string, exitCode: number): never {
  process.stderr.write(`toondbd: ${code}: ${message}\n`);
  process.exit(exitCode);
}

function loadConfig(flags: StartFlags) {
  const file = flags.config ? daemonModule.readConfigFile(flags.config) : {};
  const { config: _file, ...rest } = flags;
  return daemonModule.resolveConfig(rest, file);
}

async function start(flags: StartFlags): Promise<void> {
  let config;
  try {
    config = loadConfig(flags);
  } catch (error) {
    const coded = toToonDBError(error);
    die(coded.code, coded.message, EXIT_CONFIG);
  }
  const log = daemonModule.createLogger(config);
  if (stopWhileLoading !== null) {
    log.info({ signal: stopWhileLoading }, 'stopped before starting: the signal came while the modules loaded');
    process.exit(0);
  }
  // Owner-only files: the engine creates its directories and files with the process umask, and
  // a data dir that already existed (mkdir -p, a package's install step) is not made 0700, so
  // under the usual 022 every other local user could read the journal and tables, past the
  // socket's mode and the allow-lists. The socket's mode is set explicitly (access.ts).
  process.umask(process.umask(0o077) | 0o077);
  // Handlers go in before startup: a SIGTERM during recovery or right after listen must stop
  // the daemon cleanly (socket removed, exit 0), not kill it with the default action.
  let daemon: Awaited<ReturnType<typeof daemonModule.Daemon.start>> | null = null;
  let stopRequestedBy: string | null = null;
  let reloadRequested = false;
  const stopAndExit = (signal: string) => {
    if (daemon === null) {
      stopRequestedBy ??= signal;
      return;
    }
    const stopping = daemon;
    stopping.stop(`received ${signal}`).then(() => process.exit(exitCodeOf(stopping)), () => process.exit(EXIT_RUNTIME));
  };
  onStop = stopAndExit;
  const reload = () => {
    if (daemon === null) {
      reloadRequested = true; // applied once startup is done
      return;
    }
    try {
      const next = loadConfig(flags);
      daemon.reload(next); // sets the log level (of `log` too), and says so
    } catch (error) {
      log.error({ err: error }, 'reload failed; keeping the running configuration');
    }
  };
  onHup = reload;
  onUsr1 = () => log.warn('SIGUSR1 ignored (toondbd has no action for it; SIGHUP reloads the configuration)');
  process.on('uncaughtException', (error) => {
    log.fatal({ err: error }, 'uncaught exception: stopping');
    if (daemon === null) process.exit(EXIT_RUNTIME);
    daemon.stop('uncaught exception').finally(() => process.exit(EXIT_RUNTIME));
  });
  try {
    daemon = await daemonModule.Daemon.start(config, log);
  } catch (error) {
    const coded = toToonDBError(error);
    log.fatal({ code: coded.code, err: error }, 'cannot start');
    // Exit 2: what a restart cannot fix (see the systemd unit's RestartPreventExitStatus): a bad
    // configuration, a socket or data dir held by another, and a damaged database, which
    // needs an operator (README, Recovery).
    const configError = ['INVALID_ARGUMENT', 'SOCKET_PATH_TOO_LONG', 'ALREADY_RUNNING', 'LOCKED', 'CORRUPTION'].includes(coded.code);
    die(coded.code, coded.message, configError ? EXIT_CONFIG : EXIT_RUNTIME);
  }
  if (stopRequestedBy !== null) stopAndExit(stopRequestedBy);
  else if (reloadRequested) reload();
  await daemon.stopped;
  process.exit(exitCodeOf(daemon));
}

/** 0 after a clean run and stop; EXIT_RUNTIME if storage failed while running or a shutdown
 * step failed (logged at fatal / error level), so a service manager sees it. */
function exitCodeOf(daemon: { stopTrouble: string | null }): number {
  return daemon.stopTrouble === null ? 0 : EXIT_RUNTIME;
}

/** A client of the daemon on `socket`, or an exit (connect-outcome.ts): 2 for a bad socket
 * path, 3 when no daemon is there ("not running"), 1 when something holds the socket but this
 * user cannot use it. Under `json`, the last two also print what they found on stdout:
 * `running` is true whenever something holds the socket (exit 1 included), so a script that
 * starts a daemon when `running` is false never starts a second one. */
async function connectOrExit(socket: string | undefined, json = false, whenStopping?: () => Promise<never>): ReturnType<typeof IpcClient.connect> {
  try {
    daemonModule.checkPathText(socket ?? daemonModule.defaultSocketPath(), 'socket path');
    return await IpcClient.connect(socket, { connectTimeoutMs: CONNECT_TIMEOUT_MS, timeoutMs: REQUEST_TIMEOUT_MS });
  } catch (error) {
    const coded = toToonDBError(error);
    if (coded.code === 'SHUTTING_DOWN' && whenStopping !== undefined) return whenStopping();
    const outcome = connectFailure(coded);
    if (outcome === 'usage') die(coded.code, coded.message, EXIT_CONFIG);
    const running = outcome === 'unusable';
    if (json) process.stdout.write(JSON.stringify({ running, ...(running ? { usable: false } : {}), code: coded.code, message: coded.message }) + '\n');
    die(coded.code, `${running ? 'cannot use the socket (something may be running there)' : 'not running'}: ${coded.message}`, running ? EXIT_RUNTIME : EXIT_NOT_RUNNING);
  }
}

/** Ends the process as the default action of `signal` would have (128 + its number). */
function exitAsSignalled(signal: NodeJS.Signals): never {
  process.exit(128 + osConstants.signals[signal]);
}

/** For `status` and `stop`: a hangup (their terminal closed) ends them, as by default; so does a
 * SIGTERM or SIGINT, one held while the modules loaded included. */
function exitOnSignals(): void {
  onHup = () => exitAsSignalled('SIGHUP');
  if (stopWhileLoading !== null) exitAsSignalled(stopWhileLoading);
}

async function status(flags: { socket?: string; json?: boolean }): Promise<void> {
  exitOnSignals();
  const client = await connectOrExit(flags.socket, flags.json);
  let stats: Awaited<ReturnType<typeof client.stats>>;
  try {
    stats = await client.stats();
  } catch (error) {
    // A daemon answered the handshake, so it runs; it could not say more (TIMEOUT, SHUTTING_DOWN).
    const coded = toToonDBError(error);
    if (flags.json) process.stdout.write(JSON.stringify({ running: true, usable: false, code: coded.code, message: coded.message }) + '\n');
    die(coded.code, `running, but its stats failed: ${coded.message}`, EXIT_RUNTIME);
  } finally {
    await client.close();
  }
  // Not counting the connection this command asked on.
  const connections = Math.max(0, stats.connections.active - 1);
  const summary = { running: true, usable: true, pid: stats.pid, version: stats.version, socket: stats.socketPath, dataDir: stats.dataDir, uptimeMs: stats.uptimeMs, durability: stats.durability, connections };
  if (flags.json) process.stdout.write(JSON.stringify(summary) + '\n');
  else process.stdout.write(`toondbd ${stats.version} running: pid ${stats.pid}, socket ${stats.socketPath}, data ${stats.dataDir}, up ${(stats.uptimeMs / 1000).toFixed(1)} s, ${connections} client connection(s)\n`);
}

async function stop(flags: { socket?: string; timeoutMs?: string }): Promise<void> {
  exitOnSignals();
  const timeoutMs = flags.timeoutMs === undefined ? STOP_TIMEOUT_MS_DEFAULT : Number(flags.timeoutMs);
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) die('INVALID_ARGUMENT', `--timeout-ms must be a positive integer, got ${flags.timeoutMs}`, EXIT_CONFIG);
  const deadline = Date.now() + timeoutMs;
  const whenStopping = () => waitUntilStopped(flags.socket, deadline, timeoutMs);
  const client = await connectOrExit(flags.socket, false, whenStopping);
  let pid: number;
  try {
    ({ pid } = await client.stats());
    await client.shutdown();
  } catch (error) {
    // It began stopping between the connect and these (a signal, another stop).
    if (toToonDBError(error).code !== 'SHUTTING_DOWN') throw error;
    await client.close();
    return whenStopping();
  }
  await client.close();
  // The socket says when it is done: the pid is the daemon's own view of it, which in another
  // pid namespace (a container sharing its socket) names another process here, or none.
  if (!(await socketReleased(flags.socket, deadline))) die('TIMEOUT', `daemon pid ${pid} did not stop within ${timeoutMs} ms`, EXIT_RUNTIME);
  // Its socket goes last but for the exit itself; here, a pid that is still alive a little
  // later is another namespace's number (or a process exiting).
  const graceEndMs = Math.min(deadline, Date.now() + STOP_PID_GRACE_MS);
  while (Date.now() < graceEndMs && pidAlive(pid)) await new Promise((resolve) => setTimeout(resolve, STOP_POLL_MS));
  process.stdout.write(`toondbd (pid ${pid}) stopped\n`);
}

/** True unless kill(pid, 0) says no such process (EPERM: alive, another user's). */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Waits until a daemon told to stop (it refuses connections with SHUTTING_DOWN until it has let
 * go of its data dir, then removes its socket) is gone from its socket: nothing there, or
 * another daemon answering (a service manager's restart). False at the deadline. */
async function socketReleased(socket: string | undefined, deadline: number): Promise<boolean> {
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, STOP_POLL_MS));
    try {
      await (await IpcClient.connect(socket, { connectTimeoutMs: CONNECT_TIMEOUT_MS, reconnect: false })).close();
    } catch (error) {
      const coded = toToonDBError(error);
      if (coded.code === 'SHUTTING_DOWN' || connectFailure(coded) !== 'absent') continue;
    }
    return true;
  }
  return false;
}

/** For `stop` on a daemon already shutting down: waits for it to be gone. */
async function waitUntilStopped(socket: string | undefined, deadline: number, timeoutMs: number): Promise<never> {
  if (!(await socketReleased(socket, deadline))) die('TIMEOUT', `the daemon was shutting down and did not stop within ${timeoutMs} ms`, EXIT_RUNTIME);
  process.stdout.write('toondbd stopped (it was already shutting down)\n');
  process.exit(0);
}

const program = new Command('toondbd')
  .description('toondb daemon: one per machine, owns the data directory, serves clients on a Unix socket')
  .version(daemonModule.VERSION)
  .configureOutput({ outputError: (text, write) => write(codedCommanderError(text, 'toondbd: ')) })
  .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : EXIT_CONFIG));

/** Defaults are shown in the text, never given to commander: a flag's default would override
 * the --config file (flags win over it). */
const SOCKET_HELP = `Unix socket path (default: $TOONDB_SOCKET, else ${DEFAULT_SOCKET_PATH})`;

program.command('start')
  .description('run the daemon in the foreground')
  .option('--socket <path>', SOCKET_HELP)
  .option('--data-dir <dir>', `data directory (default: $TOONDB_DATA_DIR, else $XDG_DATA_HOME/${DATA_DIR_NAME}, else ~/${DATA_HOME_FALLBACK}/${DATA_DIR_NAME})`)
  .addOption(new Option('--durability <mode>', `when writes are fsynced (default: ${DURABILITY_DEFAULT})`).choices([...DURABILITY_MODES]))
  .option('--sync-interval-ms <ms>', `fsync period for --durability interval (default: ${SYNC_INTERVAL_MS_DEFAULT})`)
  .addOption(new Option('--log-level <level>', `log level (default: ${LOG_LEVEL_DEFAULT})`).choices([...LOG_LEVELS]))
  .option('--config <file>', 'JSON file with the same settings in camelCase, plus connectionsMax, connectionsPerUidMax and limits (flags win)')
  .option('--socket-group <group>', 'let members of this group connect (socket mode 0660; default: owner only, 0600)')
  .option('--allow-uid <uids>', 'comma-separated peer uids allowed to connect (default: any the socket mode lets in)')
  .option('--allow-gid <gids>', 'comma-separated peer gids allowed to connect (primary or supplementary group)')
  .option('--row-cache-mb <mib>', `memory for recently used rows, served without a storage read (default: ${ROW_CACHE_MIB_DEFAULT}; 0 = off)`)
  .action((flags: StartFlags) => start(flags));

program.command('stop')
  .description('ask the running daemon to shut down cleanly and wait until it has stopped (its socket gone, then its pid ended or 2 s passed) (exit 0 once it has; 1 if it cannot be used or did not stop in time; 2 for a usage error; 3 if none runs there)')
  .option('--socket <path>', SOCKET_HELP)
  .option('--timeout-ms <ms>', `how long to wait for the daemon to stop (default: ${STOP_TIMEOUT_MS_DEFAULT})`)
  .action((flags: { socket?: string; timeoutMs?: string }) => stop(flags));

program.command('status')
  .description('exit 0 if a daemon answers on the socket; 1 if something holds the socket that this user cannot use (refused, not trusted, no permission, no answer: do not start another); 2 for a usage error or a bad socket path; 3 if none runs there')
  .option('--socket <path>', SOCKET_HELP)
  .option('--json', 'print what was found as JSON (also when not running)')
  .action((flags: { socket?: string; json?: boolean }) => status(flags));

// From here on a stop signal ends any command as by default, until `start` takes it over.
onStop = exitAsSignalled;
try {
  await program.parseAsync(process.argv);
} catch (error) {
  const coded = error instanceof ToonDBError ? error : toToonDBError(error);
  die(coded.code, coded.message, EXIT_RUNTIME);
}
