/**
 * `toondb` — the Node.js client of the toondb daemon.
 *
 * ```ts
 * import { IpcClient } from 'toondb';
 * await using client = await IpcClient.connect();          // $TOONDB_SOCKET or /tmp/toondb.sock
 * await client.put('user:1', 'alice', { ttlSeconds: 60 });
 * const value = await client.get('user:1');                // Buffer | null
 * for await (const [key, value] of client.scan('user:')) {}
 * await client.withTransaction(async (txn) => {
 *   const n = Number((await txn.get('counter'))?.toString() ?? '0');
 *   await txn.put('counter', String(n + 1));
 * });
 * ```
 *
 * Wiring only: the modules are connection.ts (socket, pending map, write queue, timeouts),
 * socket-reader.ts (reads into one reused buffer), connect.ts (path, connect, hello),
 * server-trust.ts (who may own the socket), link.ts (the
 * current connection, and reconnecting after a loss), client.ts (IpcClient), operations.ts
 * (data calls shared with transactions), transaction.ts, retry.ts (withTransaction), scan.ts
 * (cursors), bytes.ts (key and value checks), results.ts (reply shapes).
 */

export { IpcClient } from './client.js';
export type { BeginOptions, ClientEvents } from './client.js';
export { DEFAULT_SOCKET_PATH } from './connect.js';
export type { ConnectOptions } from './connect.js';
export type { ServerUid } from './server-trust.js';
export { Transaction } from './transaction.js';
export type { TransactionState } from './transaction.js';
export type { ScanIterable, ScanOptions, ScanEntry } from './scan.js';
export type { ListPathOptions, PathLike, PutOptions } from './operations.js';
export type { WithTransactionOptions } from './retry.js';
export type { CheckpointInfo, PingInfo, ServerInfo } from './results.js';
export type { Bytes } from './bytes.js';
export { ToonDBError, TransactionConflictError, ERROR_CODES, ALL_ERROR_CODES, isErrorCode } from '../protocol/errors.js';
export type { ErrorCode, ErrorSpec } from '../protocol/errors.js';
export type { Isolation, StatsResult } from '../protocol/messages.js';
export type { ServerLimits } from '../protocol/limits.js';
