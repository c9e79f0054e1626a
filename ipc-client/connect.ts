/**
 * Opening a connection: socket path resolution, connect, and the hello handshake.
 *
 * Responsibility: everything between `IpcClient.connect(path?, options?)` and a Connection that
 * has completed `hello`, with each way it can fail mapped to one clear coded error:
 * - a path over SOCKET_PATH_BYTES_MAX bytes: SOCKET_PATH_TOO_LONG, before touching the socket
 *   (Linux would silently truncate it and reach some other socket);
 * - a socket owned by a user not trusted to be the daemon: SERVER_NOT_TRUSTED, before a byte is
 *   sent (server-trust.ts);
 * - nothing listening (ENOENT, ECONNREFUSED), no permission (EACCES/EPERM), anything else the
 *   connect fails with, or a daemon that hangs up during the handshake: UNAVAILABLE, with a
 *   one-line message naming the path and what to do;
 * - the daemon refusing us with a connection-level error (TOO_MANY_CONNECTIONS, ACCESS_DENIED,
 *   SHUTTING_DOWN, ...) or the hello (VERSION_MISMATCH): that code;
 * - connect + hello not done within connectTimeoutMs: TIMEOUT.
 *
 * Invariants: on any failure the socket is destroyed; nothing is left open or referenced. The
 * owner check runs on every connect, the first and each reconnect (link.ts).
 */

import type { Socket } from 'node:net';
import { ToonDBError, toToonDBError } from '../protocol/errors.js';
import {
  CLIENT_NAME_BYTES_MAX, CLIENT_TIMEOUT_MS_MAX, CONNECT_TIMEOUT_MS_DEFAULT, PROTOCOL_VERSION, REQUEST_TIMEOUT_MS_DEFAULT, SOCKET_PATH_BYTES_MAX,
} from '../protocol/limits.js';
import { Connection } from './connection.js';
import { parseHello, type ServerInfo } from './results.js';
import { SocketReader } from './socket-reader.js';
import { beforeConnect, resolveTrustPolicy, type ServerUid, type TrustPolicy } from './server-trust.js';
import { CLIENT_VERSION } from './version.js';

/** Where the daemon listens when neither the caller nor $TOONDB_SOCKET says otherwise. */
export const DEFAULT_SOCKET_PATH = '/tmp/toondb.sock';


export interface ConnectOptions {
  /** Per-request timeout in ms (TIMEOUT error); default 30 000; 0 = no timeout. A request
   * fails at most timeoutMs / 64 after its deadline (one timer serves the connection). */
  timeoutMs?: number;
  /** Bound on connect + hello in ms; default 5 000. */
  connectTimeoutMs?: number;
  /** Shown in the daemon's logs next to this library's name and version. */
  clientName?: string;
  /** Connect again on the next call after the connection ended (daemon restarted); default
   * true. False: every call after the end fails with CONNECTION_CLOSED (see link.ts). */
  reconnect?: boolean;
  /** Who must own the socket for the client to talk to it (server-trust.ts): a uid, or 'any'
   * for no check. Default: $TOONDB_SERVER_UID if set, else this process's own uid, root or a
   * system account. Anyone else gets SERVER_NOT_TRUSTED before a byte is sent. */
  serverUid?: ServerUid;
}

export interface ResolvedConnectOptions {
  socketPath: string;
  timeoutMs: number;
  connectTimeoutMs: number;
  clientName: string;
  reconnect: boolean;
  trust: TrustPolicy;
}

function checkTimeout(value: number | undefined, fallback: number, what: string, min: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > CLIENT_TIMEOUT_MS_MAX) {
    throw new ToonDBError('INVALID_ARGUMENT', `${what} must be an integer number of ms in ${min}..${CLIENT_TIMEOUT_MS_MAX}, got ${String(value)}`);
  }
  return value;
}

/** Applies the defaults and checks every option; throws before any I/O. */
export function resolveConnectOptions(socketPath: string | undefined, given?: ConnectOptions | null): ResolvedConnectOptions {
  const options = given ?? {};
  const path = socketPath ?? (process.env.TOONDB_SOCKET || DEFAULT_SOCKET_PATH);
  if (typeof path !== 'string' || path.length === 0) {
    throw new ToonDBError('INVALID_ARGUMENT', 'socketPath must be a non-empty string');
  }
  const pathBytes = Buffer.byteLength(path, 'utf8');
  if (pathBytes > SOCKET_PATH_BYTES_MAX) {
    throw new ToonDBError('SOCKET_PATH_TOO_LONG',
      `socket path ${path} is ${pathBytes} bytes, longer than the ${SOCKET_PATH_BYTES_MAX}-byte limit`);
  }
  const library = `toondb-node/${CLIENT_VERSION}`;
  const clientName = options.clientName === undefined ? library : `${options.clientName} (${library})`;
  if (typeof options.clientName !== 'undefined' && typeof options.clientName !== 'string') {
    throw new ToonDBError('INVALID_ARGUMENT', 'clientName must be a string');
  }
  if (!clientName.isWellFormed()) {
    throw new ToonDBError('INVALID_ARGUMENT', 'clientName must be well-formed Unicode (it holds a lone surrogate, which has no UTF-8 form)');
  }
  if (Buffer.byteLength(clientName, 'utf8') > CLIENT_NAME_BYTES_MAX) {
    throw new ToonDBError('INVALID_ARGUMENT', `clientName is too long (the hello client field is at most ${CLIENT_NAME_BYTES_MAX} bytes)`);
  }
  if (options.reconnect !== undefined && typeof options.reconnect !== 'boolean') {
    throw new ToonDBError('INVALID_ARGUMENT', `reconnect must be a boolean, got ${String(options.reconnect)}`);
  }
  return {
    socketPath: path,
    timeoutMs: checkTimeout(options.timeoutMs, REQUEST_TIMEOUT_MS_DEFAULT, 'timeoutMs', 0),
    connectTimeoutMs: checkTimeout(options.connectTimeoutMs, CONNECT_TIMEOUT_MS_DEFAULT, 'connectTimeoutMs', 1),
    clientName,
    reconnect: options.reconnect ?? true,
    trust: resolveTrustPolicy(options.serverUid),
  };
}

/** The UNAVAILABLE error for a failed connect, naming the path and the next step. */
export function unavailable(path: string, error: NodeJS.ErrnoException): ToonDBError {
  const code = error.code ?? 'error';
  switch (code) {
    case 'ENOENT':
    case 'ECONNREFUSED':
      return new ToonDBError('UNAVAILABLE', `no toondb daemon at ${path} (${code}); start one with \`toondbd start\``, { cause: error });
    case 'EACCES':
    case 'EPERM':
      return new ToonDBError('UNAVAILABLE',
        `no permission to connect to the toondb daemon at ${path} (${code}); the socket is owner-only unless the daemon grants a group`,
        { cause: error });
    default:
      return new ToonDBError('UNAVAILABLE', `cannot reach a toondb daemon at ${path} (${code}: ${error.message})`, { cause: error });
  }
}

function openSocket(path: string): { reader: SocketReader; connected: Promise<void> } {
  const reader = new SocketReader(path);
  const { socket } = reader;
  const connected = new Promise<void>((resolve, reject) => {
    // Stays attached (a no-op once settled) so that no 'error' goes unheard before the
    // Connection attaches its own listener.
    socket.on('error', (error: NodeJS.ErrnoException) => reject(unavailable(path, error)));
    socket.once('connect', () => resolve());
  });
  return { reader, connected };
}

/** Maps a failed hello to what the caller should see (see the header). */
function handshakeError(error: unknown, connection: Connection, path: string): ToonDBError {
  const coded = toToonDBError(error);
  if (coded.code !== 'UNKNOWN_RESULT' && coded.code !== 'CONNECTION_CLOSED') return coded;
  if (connection.daemonError) return connection.daemonError;
  // Its refusal, if it sent one, was lost with the hello written into the closed socket: a
  // daemon closes new connections at once when its open-files limit leaves no room for them.
  return new ToonDBError('UNAVAILABLE', `the toondb daemon at ${path} closed the connection during the handshake `
    + '(a daemon with no descriptors to spare closes new connections at once; retry later)', { cause: coded });
}

/** What a connect attempt has opened so far, for the cleanup of a failed one. */
interface Opening {
  socket?: Socket;
  connection?: Connection;
  /** Set once the attempt failed (e.g. timed out): a handshake still running opens nothing more. */
  abandoned?: boolean;
}

/** Throws once the attempt was given up, so a handshake still running stops at its next step. */
function stopIfAbandoned(opening: Opening): void {
  if (opening.abandoned) throw new ToonDBError('CONNECTION_CLOSED', 'the connect attempt was given up');
}

async function handshake(options: ResolvedConnectOptions, opening: Opening): Promise<{ connection: Connection; info: ServerInfo }> {
  const checkServer = await beforeConnect(options.socketPath, options.trust);
  stopIfAbandoned(opening);
  const { reader, connected } = openSocket(options.socketPath);
  opening.socket = reader.socket;
  await connected;
  await checkServer();
  stopIfAbandoned(opening);
  // The hello is bounded by connectTimeoutMs (openConnection), not by the request timeout.
  const connection = new Connection(reader, 0);
  opening.connection = connection;
  let reply: unknown;
  try {
    reply = await connection.request({ op: 'hello', protocol: PROTOCOL_VERSION, client: options.clientName });
  } catch (error) {
    throw handshakeError(error, connection, options.socketPath);
  }
  const info = parseHello(reply);
  if (info.protocol !== PROTOCOL_VERSION) {
    throw new ToonDBError('VERSION_MISMATCH', `the toondb daemon at ${options.socketPath} speaks protocol ${info.protocol}, this client ${PROTOCOL_VERSION}`);
  }
  connection.frameBytesMax = info.limits.frameBytesMax;
  connection.requestTimeoutMs = options.timeoutMs;
  return { connection, info };
}

/** Connects and completes hello within connectTimeoutMs. */
export async function openConnection(options: ResolvedConnectOptions): Promise<{ connection: Connection; info: ServerInfo }> {
  const opening: Opening = {};
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ToonDBError('TIMEOUT',
      `no answer from a toondb daemon at ${options.socketPath} within ${options.connectTimeoutMs} ms (connect + hello)`)),
    options.connectTimeoutMs);
  });
  try {
    return await Promise.race([handshake(options, opening), deadline]);
  } catch (error) {
    const coded = toToonDBError(error);
    opening.abandoned = true;
    if (opening.connection) opening.connection.destroy(coded);
    else opening.socket?.destroy();
    throw coded;
  } finally {
    clearTimeout(timer);
  }
}
