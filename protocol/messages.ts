/**
 * Message types of the toondb wire protocol (version PROTOCOL_VERSION, 2; a daemon also serves
 * version 1 clients, see PROTOCOL.md "Versioning").
 *
 * Responsibility: the shape of every request and response body, shared by daemon and client and
 * documented field by field in PROTOCOL.md. Pure types and constants; no I/O.
 *
 * Conventions (see PROTOCOL.md for the normative text):
 * - A request is a MessagePack map `{ id, op, ...fields }`. `id` is an unsigned integer chosen by
 *   the client, unique among its requests in flight (1 .. 2^32-1; 0 is reserved for
 *   connection-level errors sent by the daemon just before it closes a connection).
 * - A response is `{ id, result }` on success or `{ id, error: { code, message } }` on failure.
 *   Responses may arrive in any order; match them by id.
 * - Keys and values are MessagePack `bin` (a `str` key is accepted and taken as its UTF-8 bytes).
 * - Transaction ids, commit timestamps and LSNs are unsigned 64-bit integers (bigint in JS).
 */

import type { ServerLimits } from './limits.js';
import type { PackedArray } from './packed-array.js';

export type Isolation = 'serializable' | 'snapshot';
export type Durability = 'sync' | 'interval' | 'off';

/** Every operation name, grouped by family (the family is used for per-family stats). */
export const OP_FAMILIES = {
  hello: 'admin',
  ping: 'admin',
  stats: 'admin',
  checkpoint: 'admin',
  shutdown: 'admin',
  get: 'kv',
  exists: 'kv',
  put: 'kv',
  delete: 'kv',
  getBatch: 'batch',
  putBatch: 'batch',
  deleteBatch: 'batch',
  scan: 'scan',
  scanNext: 'scan',
  scanClose: 'scan',
  listPath: 'scan',
  begin: 'txn',
  commit: 'txn',
  abort: 'txn',
} as const;

export type OpName = keyof typeof OP_FAMILIES;
export type OpFamily = (typeof OP_FAMILIES)[OpName];
export const OP_NAMES = Object.freeze(Object.keys(OP_FAMILIES)) as readonly OpName[];

/** The write requests: what a `commit`'s `writes` count covers (PROTOCOL.md, `commit`). */
export function isWriteOp(op: OpName): boolean {
  return op === 'put' || op === 'delete' || op === 'putBatch' || op === 'deleteBatch';
}

export function isOpName(value: unknown): value is OpName {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(OP_FAMILIES, value);
}

/** Bytes as they travel: decoded MessagePack `bin` is a Buffer/Uint8Array. */
export type WireBytes = Uint8Array;

/** Fields every request carries. `txn` binds a data operation to an open transaction. */
interface RequestBase<Op extends OpName> {
  id: number;
  op: Op;
}
interface InTxn {
  txn?: bigint;
}

export interface HelloRequest extends RequestBase<'hello'> { protocol: number; client?: string }
export interface PingRequest extends RequestBase<'ping'> {}
export interface StatsRequest extends RequestBase<'stats'> {}
export interface CheckpointRequest extends RequestBase<'checkpoint'> {}
export interface ShutdownRequest extends RequestBase<'shutdown'> {}
export interface GetRequest extends RequestBase<'get'>, InTxn { key: WireBytes }
export interface ExistsRequest extends RequestBase<'exists'>, InTxn { key: WireBytes }
export interface PutRequest extends RequestBase<'put'>, InTxn { key: WireBytes; value: WireBytes; ttlSeconds?: number }
export interface DeleteRequest extends RequestBase<'delete'>, InTxn { key: WireBytes }
/** `keys` as read by the daemon: an array, or packed (a PackedArray of bins, simple-requests.ts). */
export interface GetBatchRequest extends RequestBase<'getBatch'>, InTxn { keys: WireBytes[] | PackedArray }
export interface PutBatchRequest extends RequestBase<'putBatch'>, InTxn { entries: [WireBytes, WireBytes][]; ttlSeconds?: number }
export interface DeleteBatchRequest extends RequestBase<'deleteBatch'>, InTxn { keys: WireBytes[] | PackedArray }
/** Opens a cursor. Either `prefix`, or a range `[start, end)` where an absent bound is open. */
export interface ScanRequest extends RequestBase<'scan'>, InTxn {
  prefix?: WireBytes;
  start?: WireBytes;
  end?: WireBytes;
  reverse?: boolean;
  /** Each entry also carries its expiry: `[key, value, expiresAtMs | nil]`. */
  withExpiry?: boolean;
  limit?: number;
  batchSize?: number;
}
export interface ScanNextRequest extends RequestBase<'scanNext'> { cursor: number }
export interface ScanCloseRequest extends RequestBase<'scanClose'> { cursor: number }
/** Distinct child segments directly under a path prefix (already encoded as a key prefix). */
export interface ListPathRequest extends RequestBase<'listPath'>, InTxn {
  prefix: WireBytes;
  limit?: number;
  /** Answer with a ListPathPage (see PROTOCOL.md listPath). */
  paged?: boolean;
  /** Go on from a previous page's `next`. */
  resume?: WireBytes;
}

/** A `paged` listPath's result: the names of this page, and where the listing goes on (nil
 * when it is complete). */
export interface ListPathPage {
  children: WireBytes[];
  next: WireBytes | null;
}
/** `txn`, when present, is the id the client chose for the new transaction (PROTOCOL.md). */
export interface BeginRequest extends RequestBase<'begin'>, InTxn { isolation?: Isolation }
/** `writes`, when present, is how many write requests of the transaction the commit covers. */
export interface CommitRequest extends RequestBase<'commit'> { txn: bigint; writes?: number }
export interface AbortRequest extends RequestBase<'abort'> { txn: bigint }

export type Request =
  | HelloRequest | PingRequest | StatsRequest | CheckpointRequest | ShutdownRequest
  | GetRequest | ExistsRequest | PutRequest | DeleteRequest
  | GetBatchRequest | PutBatchRequest | DeleteBatchRequest
  | ScanRequest | ScanNextRequest | ScanCloseRequest | ListPathRequest
  | BeginRequest | CommitRequest | AbortRequest;

export type RequestOf<Op extends OpName> = Extract<Request, { op: Op }>;

export interface HelloResult {
  protocol: number;
  server: string;
  connectionId: number;
  limits: ServerLimits;
}
export interface PingResult { version: string; timeMs: number }
export interface ScanBatchResult {
  /** Cursor to pass to scanNext; 0 when `done`. */
  cursor: number;
  /** `[key, value]`, or `[key, value, expiresAtMs | null]` for a scan opened `withExpiry`. */
  entries: ([WireBytes, WireBytes] | [WireBytes, WireBytes, number | null])[];
  done: boolean;
}
export interface BeginResult { txn: bigint }
export interface CommitResult { commitTs: bigint }
export interface CheckpointResult { lsn: bigint; durationMs: number }

export interface LatencySummary { p50Ms: number; p90Ms: number; p99Ms: number; maxMs: number; samples: number }

export interface StatsResult {
  version: string;
  pid: number;
  uptimeMs: number;
  socketPath: string;
  dataDir: string;
  durability: Durability;
  /** `max`: connections served at once, connectionsMax as the open-files limit leaves it. */
  connections: { active: number; total: number; refused: number; max: number; byUid: Record<string, number> };
  /** `fromMemory`: data requests answered from the engine's row cache, without a storage read. */
  requests: { total: number; errors: number; fromMemory: number; byFamily: Record<OpFamily, number> };
  /** `inFlight`: request bytes read and not yet answered, across all connections
   * (requestBytesInFlightDaemonMax bounds it), and `inFlightWaiting` the connections whose
   * next frame waits for room there; `replies`: reply bytes not yet read by their clients plus
   * room reserved for the replies of engine calls running, across all connections
   * (replyBytesDaemonMax bounds it), and `repliesWaiting` the calls waiting for room there. */
  bytes: { in: number; out: number; inFlight: number; inFlightWaiting: number; replies: number; repliesWaiting: number };
  /** `bytes`: bytes of writes and reads all open transactions hold now (txnBytesDaemonMax). */
  transactions: { active: number; bytes: number; committed: number; aborted: number; conflicts: number };
  /** `readAhead`: scanNext requests answered with a batch the daemon had read ahead;
   * `readAheadBytes`: bytes that batches read ahead hold now, across all connections. */
  cursors: { open: number; readAhead: number; readAheadBytes: number };
  engine: {
    approximateKeys: number;
    diskBytes: number;
    journalBytes: number;
    journalCount: number;
    writeBufferBytes: number;
    seqno: bigint;
    rowCacheRows: number;
    rowCacheBytes: number;
    rowCacheQueuedKeys: number;
  };
  durable: { syncs: number; lastSyncMs: number | null; pendingWrites: number; watermarkFailures: number };
  checkpoint: { last: null | { atMs: number; lsn: bigint; durationMs: number } };
  latency: LatencySummary;
}

/** Result type of each op, for typed client calls. */
export interface ResultOf {
  hello: HelloResult;
  ping: PingResult;
  stats: StatsResult;
  checkpoint: CheckpointResult;
  shutdown: null;
  get: WireBytes | null;
  exists: boolean;
  put: null;
  delete: null;
  getBatch: (WireBytes | null)[];
  putBatch: null;
  deleteBatch: null;
  scan: ScanBatchResult;
  scanNext: ScanBatchResult;
  scanClose: null;
  listPath: WireBytes[] | ListPathPage;
  begin: BeginResult;
  commit: CommitResult;
  abort: null;
}

export interface SuccessResponse<R = unknown> { id: number; result: R }
export interface ErrorResponse { id: number; error: { code: string; message: string } }
export type Response<R = unknown> = SuccessResponse<R> | ErrorResponse;

/** Request id the daemon uses for a connection-level error sent just before it hangs up. */
export const CONNECTION_ERROR_ID = 0;
export const REQUEST_ID_MAX = 0xffff_ffff;
