/**
 * Daemon configuration: defaults, environment, config file and flags merged into one validated
 * `DaemonConfig`.
 *
 * Responsibility: every knob toondbd has, where its default comes from, and the check that
 * rejects a bad value with a one-line reason before anything is opened. Precedence, lowest to
 * highest: built-in default < environment (TOONDB_SOCKET, TOONDB_DATA_DIR) < `--config FILE`
 * (JSON, same keys as the flags in camelCase) < command-line flags.
 *
 * Invariants: a `DaemonConfig` returned from `resolveConfig` is complete and valid: absolute
 * paths that name the file meant (see checkPathText), a socket path within
 * SOCKET_PATH_BYTES_MAX, a known durability mode and log level.
 */

import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import {
  DEFAULT_SERVER_LIMITS,
  SOCKET_PATH_BYTES_MAX,
  SYNC_INTERVAL_MS_DEFAULT,
  SYNC_INTERVAL_MS_MAX,
  CONNECTIONS_MAX,
  ROW_CACHE_MIB_DEFAULT,
  ROW_CACHE_MIB_MAX,
  type ServerLimits,
} from '../protocol/limits.js';
import { brokenLimitRelation } from '../protocol/limit-relations.js';
import type { Durability } from '../protocol/messages.js';
import { ToonDBError } from '../protocol/errors.js';

export const DEFAULT_SOCKET_PATH = '/tmp/toondb.sock';
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const DURABILITY_MODES: readonly Durability[] = ['sync', 'interval', 'off'];
export const DURABILITY_DEFAULT: Durability = 'sync';
export const LOG_LEVEL_DEFAULT: LogLevel = 'info';
/** Where the data dir goes without TOONDB_DATA_DIR or an absolute XDG_DATA_HOME: the XDG
 * default, relative to the home directory, and the dir's own name under it. */
export const DATA_HOME_FALLBACK = '.local/share';
export const DATA_DIR_NAME = 'toondb';

export interface DaemonConfig {
  socketPath: string;
  dataDir: string;
  durability: Durability;
  syncIntervalMs: number;
  logLevel: LogLevel;
  /** Group whose members may connect (socket mode 0660); null = owner only (0600). */
  socketGroup: string | null;
  /** Peer uid/gid allow-lists; empty = anyone who can open the socket file. */
  allowUids: number[];
  allowGids: number[];
  connectionsMax: number;
  /** Connections one uid other than the daemon's own and root may hold (daemon/admission.ts). */
  connectionsPerUidMax: number;
  /** Row cache size in MiB (0 = off): plain reads it can answer skip the libuv pool. */
  rowCacheMib: number;
  limits: ServerLimits;
}

/** Raw, unvalidated settings as they come from flags or a config file. */
export type ConfigInput = Partial<{
  socket: string;
  dataDir: string;
  durability: string;
  syncIntervalMs: number | string;
  logLevel: string;
  socketGroup: string;
  allowUid: (number | string)[] | string;
  allowGid: (number | string)[] | string;
  connectionsMax: number | string;
  connectionsPerUidMax: number | string;
  rowCacheMb: number | string;
  limits: Partial<Record<keyof ServerLimits, number>>;
}>;

export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TOONDB_DATA_DIR) return env.TOONDB_DATA_DIR;
  if (env.XDG_DATA_HOME && env.XDG_DATA_HOME.startsWith('/')) return join(env.XDG_DATA_HOME, DATA_DIR_NAME);
  // os.homedir() is $HOME as it is: an empty or relative one would put the data dir under the
  // working directory (resolveConfig resolves it), wherever the daemon happened to be started.
  let home: string;
  try {
    home = homedir();
  } catch (error) {
    throw invalid(`no data dir: no --data-dir, TOONDB_DATA_DIR or XDG_DATA_HOME, and no home directory (${(error as Error).message})`);
  }
  if (!home.startsWith('/')) {
    throw invalid(`no data dir: no --data-dir, TOONDB_DATA_DIR or XDG_DATA_HOME, and HOME is not an absolute path (${JSON.stringify(home)})`);
  }
  return join(home, DATA_HOME_FALLBACK, DATA_DIR_NAME);
}

export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.TOONDB_SOCKET || DEFAULT_SOCKET_PATH;
}

function invalid(message: string): ToonDBError {
  return new ToonDBError('INVALID_ARGUMENT', message);
}

/** What Node makes of each byte that is not UTF-8 when it decodes argv, the environment, the
 * working directory or a config file read as text. */
const REPLACEMENT_CHARACTER = '\uFFFD';

/**
 * Returns `path` if it can name the file meant. Node hands a path given as bytes that are not
 * UTF-8 (in a flag, TOONDB_SOCKET or TOONDB_DATA_DIR, the config file, or the working
 * directory it resolves against) on with each invalid byte turned into U+FFFD, which names
 * another file: the daemon would create a data dir or socket nobody asked for. So a path
 * holding U+FFFD is refused (a path that really holds that character is refused too).
 */
export function checkPathText(path: string, name: string): string {
  if (path.includes(REPLACEMENT_CHARACTER)) {
    throw invalid(`${name} is not valid UTF-8 (Node reads each invalid byte as U+FFFD, which names another file): ${JSON.stringify(path)}`);
  }
  return path;
}

/** Throws SOCKET_PATH_TOO_LONG for a path the kernel would truncate or refuse. */
export function checkSocketPath(socketPath: string): void {
  const bytes = Buffer.byteLength(socketPath);
  if (bytes > SOCKET_PATH_BYTES_MAX) {
    throw new ToonDBError('SOCKET_PATH_TOO_LONG',
      `socket path is ${bytes} bytes, longer than the ${SOCKET_PATH_BYTES_MAX}-byte limit of Unix sockets: ${socketPath}`);
  }
  if (bytes === 0) throw invalid('socket path is empty');
}

/** An integer from a number, or a string of decimal digits (a flag's text): `Number` alone
 * reads '' and ' ' as 0, true as 1 and null as 0, which made `--allow-uid 1000,` allow uid 0. */
function toInt(value: unknown, name: string, min: number, max: number): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\s*-?\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw invalid(`${name} must be an integer in ${min}..${max}, got ${JSON.stringify(value) ?? String(value)}`);
  return n;
}

/** A list of ids: an array (config file), a comma-separated string (flag), or one number. */
function toIdList(value: unknown, name: string): number[] {
  if (value === undefined) return [];
  const items: unknown[] = Array.isArray(value) ? value : typeof value === 'string' ? value.split(',') : [value];
  return items.map((item) => toInt(item, name, 0, 0xffff_fffe));
}

/** A path or name setting: a non-empty string (an empty one resolved to the current
 * directory, or would name nothing), or absent. */
function toText(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.trim() === '') throw invalid(`${name} must be a non-empty string, got ${JSON.stringify(value) ?? String(value)}`);
  return value;
}

/** Every setting a config file may hold (the flags' names in camelCase). */
const CONFIG_KEYS: readonly string[] = [
  'socket', 'dataDir', 'durability', 'syncIntervalMs', 'logLevel', 'socketGroup', 'allowUid', 'allowGid', 'connectionsMax', 'connectionsPerUidMax', 'rowCacheMb', 'limits',
];

export function readConfigFile(path: string): ConfigInput {
  checkPathText(path, 'config file path');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw invalid(`cannot read config file ${path}: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw invalid(`config file ${path} is not valid JSON: ${(error as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw invalid(`config file ${path} must hold a JSON object`);
  // A misspelt key must not be dropped silently: an allow-list or socket group that is not
  // applied opens the daemon to more than its operator meant.
  const unknown = Object.keys(parsed).filter((key) => !CONFIG_KEYS.includes(key));
  if (unknown.length > 0) throw invalid(`config file ${path}: unknown setting${unknown.length > 1 ? 's' : ''} ${unknown.map((key) => `"${key}"`).join(', ')} (known: ${CONFIG_KEYS.join(', ')})`);
  const config = parsed as ConfigInput;
  // A relative path in the file means one beside the file, not under whatever directory the
  // daemon was started from (`/` under systemd); `~` is a shell's, so it is refused.
  for (const key of ['socket', 'dataDir'] as const) {
    const value = config[key];
    if (typeof value !== 'string' || value === '' || isAbsolute(value)) continue;
    if (value.startsWith('~')) throw invalid(`config file ${path}: ${key} "${value}": ~ is not expanded here; give an absolute path`);
    config[key] = resolve(dirname(resolve(path)), value);
  }
  return config;
}

function resolveLimits(input: ConfigInput['limits']): ServerLimits {
  const limits: ServerLimits = { ...DEFAULT_SERVER_LIMITS };
  if (input !== undefined && input !== null && (typeof input !== 'object' || Array.isArray(input))) {
    // Object.entries(5) is empty: the limits meant would be silently not applied.
    throw invalid(`limits must be an object of limit names to integers, got ${JSON.stringify(input)}`);
  }
  for (const [name, value] of Object.entries(input ?? {})) {
    // Own names only: `in` also finds what every object inherits (toString, __proto__).
    if (!Object.hasOwn(DEFAULT_SERVER_LIMITS, name)) throw invalid(`unknown limit "${name}"`);
    const key = name as keyof ServerLimits;
    // A configured limit may only tighten the compiled-in one: the frame and engine sizes are
    // asserted against each other in protocol/limits.ts.
    limits[key] = toInt(value as number, `limits.${name}`, 1, DEFAULT_SERVER_LIMITS[key]);
  }
  const broken = brokenLimitRelation(limits);
  if (broken !== null) throw invalid(`limits do not fit together: ${broken}`);
  return limits;
}

/** Merges file settings under flag settings and validates the result. */
export function resolveConfig(flags: ConfigInput, file: ConfigInput = {}, env: NodeJS.ProcessEnv = process.env): DaemonConfig {
  const input: ConfigInput = { ...file, ...Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)) };
  const socketPath = checkPathText(resolve(toText(input.socket, 'socket path') ?? defaultSocketPath(env)), 'socket path');
  checkSocketPath(socketPath);
  const durability = (input.durability ?? DURABILITY_DEFAULT) as Durability;
  if (!DURABILITY_MODES.includes(durability)) throw invalid(`durability must be one of ${DURABILITY_MODES.join(', ')}, got ${input.durability}`);
  const logLevel = (input.logLevel ?? LOG_LEVEL_DEFAULT) as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw invalid(`log level must be one of ${LOG_LEVELS.join(', ')}, got ${input.logLevel}`);
  return {
    socketPath,
    dataDir: checkPathText(resolve(toText(input.dataDir, 'data dir') ?? defaultDataDir(env)), 'data dir'),
    durability,
    syncIntervalMs: toInt(input.syncIntervalMs ?? SYNC_INTERVAL_MS_DEFAULT, 'sync interval (ms)', 1, SYNC_INTERVAL_MS_MAX),
    logLevel,
    socketGroup: toText(input.socketGroup, 'socket group') ?? null,
    allowUids: toIdList(input.allowUid, 'allowed uid'),
    allowGids: toIdList(input.allowGid, 'allowed gid'),
    connectionsMax: toInt(input.connectionsMax ?? CONNECTIONS_MAX, 'connections max', 1, CONNECTIONS_MAX),
    connectionsPerUidMax: toInt(input.connectionsPerUidMax ?? CONNECTIONS_MAX, 'connections per uid max', 1, CONNECTIONS_MAX),
    rowCacheMib: toInt(input.rowCacheMb ?? ROW_CACHE_MIB_DEFAULT, 'row cache (MiB)', 0, ROW_CACHE_MIB_MAX),
    limits: resolveLimits(input.limits),
  };
}
