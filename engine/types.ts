/**
 * Types of the native storage engine as the daemon sees it.
 *
 * Responsibility: the narrow seam between toondbd and storage: ordered bytes -> bytes, optimistic
 * transactions, snapshot range reads, durability watermarks. `engine/index.ts` is the only file
 * that loads the native addon and returns an object of this shape; nothing else imports the
 * `.node` binary. A remote backend (FoundationDB, TiKV) could implement the same interface.
 *
 * Invariants:
 * - `execute` runs its ops in array order on one libuv pool thread and returns one result per op,
 *   in the same order. One op failing never fails the others (each result carries its own code).
 * - Every result carries `seq`: for a write, the commit ticket that must be durable before the
 *   write is acknowledged; for a read, the highest ticket the read could have observed; for a
 *   failed op, 0 (it showed and applied nothing). A reply may be released once
 *   `durableSeq() >= seq` (only enforced in `sync` durability).
 * - Consecutive plain (non-transactional) writes in one `execute` share one commit and ticket.
 * - Engine error codes are registry codes from protocol/errors.ts.
 */

import type { ToonDBError } from '../protocol/errors.js';
import { countOf, type PackedArray } from '../protocol/packed-array.js';

/** Operation kinds understood by `execute`. The numbers are part of the addon ABI. */
export const OpKind = {
  get: 1,
  exists: 2,
  put: 3,
  delete: 4,
  getBatch: 5,
  putBatch: 6,
  deleteBatch: 7,
  scanOpen: 8,
  scanNext: 9,
  scanClose: 10,
  listPath: 11,
  begin: 12,
  commit: 13,
  abort: 14,
} as const;
export type OpKindValue = (typeof OpKind)[keyof typeof OpKind];

/** The keys a call writes if every op of it is a plain write (put / delete / putBatch /
 * deleteBatch without `txn`), i.e. one `writeNow` may take (the engine decides); else -1. */
export function plainWriteKeys(ops: readonly EngineOp[]): number {
  let keys = 0;
  for (const op of ops) {
    switch (op.kind) {
      case OpKind.put:
      case OpKind.delete:
        if (op.txn !== undefined) return -1;
        keys += 1;
        continue;
      case OpKind.putBatch:
      case OpKind.deleteBatch:
        if (op.txn !== undefined) return -1;
        keys += op.keys === undefined ? 0 : countOf(op.keys);
        continue;
      default:
        return -1;
    }
  }
  return ops.length > 0 ? keys : -1;
}

/** True if every op of a call is a memory-only transaction step, i.e. one `runInMemory` may
 * take (the engine decides; this only saves encoding a call it would refuse). */
export function isMemoryStepCall(ops: readonly EngineOp[]): boolean {
  for (const op of ops) {
    switch (op.kind) {
      case OpKind.begin:
      case OpKind.abort:
        continue;
      case OpKind.put:
      case OpKind.delete:
      case OpKind.putBatch:
      case OpKind.deleteBatch:
        if (op.txn !== undefined) continue;
        return false;
      default:
        return false;
    }
  }
  return ops.length > 0;
}

export const IsolationKind = { serializable: 0, snapshot: 1 } as const;

/**
 * One operation. Which fields are read depends on `kind`:
 * - get/exists/delete: key (+txn)            - put: key, value, ttlMs? (+txn)
 * - getBatch/deleteBatch: keys (+txn)        - putBatch: keys, values (parallel), ttlMs? (+txn)
 * - scanOpen: prefix in `key`, or range `key` (start, inclusive; absent = unbounded) .. `end`
 *   (exclusive; absent = unbounded) with `range: true`; reverse, withExpiry (entries become
 *   `[key, value, expiry]` triples), limit (0 = none), batchItems, batchBytes (+txn)
 * - scanNext/scanClose: cursor
 * - listPath: key (the encoded parent prefix), end (where a previous call's listing goes on:
 *   its result's `value`), limit (+txn); the result's `value` is where this one goes on, absent
 *   when the listing is complete (a call examines at most LIST_PATH_STEPS_MAX keys)
 * - begin: isolation, txn (the handle to give it: the daemon chooses them, daemon/handlers/txn.ts)
 * - commit: txn, writes? (how many write ops of the transaction it covers; a different count
 *   applied aborts it with TXN_WRITE_FAILED)  - abort: txn
 */
export interface EngineOp {
  kind: OpKindValue;
  txn?: number;
  key?: Buffer;
  value?: Buffer;
  /** Packed: a request's keys as the daemon read them (bins), passed on as one block. */
  keys?: Buffer[] | PackedArray;
  values?: Buffer[];
  end?: Buffer;
  range?: boolean;
  ttlMs?: number;
  cursor?: number;
  reverse?: boolean;
  withExpiry?: boolean;
  limit?: number;
  batchItems?: number;
  batchBytes?: number;
  isolation?: number;
  writes?: number;
}

/** An entry of a scan batch that carries a TTL: its bytes in the batch's `entries` (`start` to
 * `end`) and when it expires (ms since the epoch). A batch answered later than the engine read
 * it (read-ahead) leaves out the entries expired by then (daemon/handlers/scan.ts). */
export interface ExpiringEntry {
  start: number;
  end: number;
  atMs: number;
}

/** Result of one op. `code`/`message` are set on failure and nothing else is meaningful then. */
export interface EngineResult {
  code?: string;
  message?: string;
  /** get: the value, or null when missing/expired. */
  value?: Buffer | null;
  /** exists: whether the key is present. */
  found?: boolean;
  /** getBatch: the values in key order (nil where missing), already in wire form (a view of the
   * result). */
  values?: PackedArray;
  /** listPath: the child segments. */
  keys?: Buffer[];
  /** scanOpen/scanNext: this batch's entries, already in wire form (a view of the result). */
  entries?: PackedArray;
  /** scanOpen/scanNext: the entries of `entries` that carry a TTL, in order (absent if none). */
  expiring?: ExpiringEntry[];
  /** scanOpen/scanNext: no more entries after this batch (the cursor is already freed). */
  done?: boolean;
  /** scanOpen: handle for scanNext/scanClose (absent when done in the first batch). */
  cursor?: number;
  /** begin: the new transaction handle. */
  txn?: number;
  /** commit: the commit timestamp (the engine sequence number the commit became visible at). */
  commitTs?: bigint;
  /** Durability ticket; see the file header. */
  seq: number;
}

export interface EngineOpenOptions {
  /** Data directory; created if missing. */
  path: string;
  /** Block cache size in bytes. */
  cacheBytes?: number;
  /** Row cache size in bytes (engine/src/core/rowcache.rs); absent for the default, 0 disables it. */
  rowCacheBytes?: number;
  /** Table-file descriptors the engine keeps open for reads (fjall's descriptor cache); absent
   * for fjall's default (900 on Linux, 150 on macOS). */
  tableFilesMax?: number;
  keyBytesMax: number;
  valueBytesMax: number;
  txnBytesMax: number;
  /** Bytes all open transactions may hold together (LIMIT_EXCEEDED past it; the txn is aborted). */
  txnBytesDaemonMax: number;
  batchItemsMax: number;
  /** Bytes a putBatch may carry, and a getBatch or listPath reply (BATCH_TOO_LARGE past it). */
  batchBytesMax: number;
}

export interface RecoveryReport {
  /** Milliseconds spent opening the database (journal replay included). */
  durationMs: number;
  /** Journal files found on open (more means more replay work). */
  journalCount: number;
  /** Engine sequence number after recovery. */
  seqno: bigint;
  approximateKeys: number;
}

export interface EngineStats {
  approximateKeys: number;
  diskBytes: number;
  journalBytes: number;
  journalCount: number;
  writeBufferBytes: number;
  seqno: bigint;
  openTransactions: number;
  /** Bytes of writes and reads all open transactions hold together (txnBytesDaemonMax bounds it). */
  transactionBytes: number;
  openCursors: number;
  /** Rows in the row cache, and their weight (keys + stored values + per-row overhead). */
  rowCacheRows: number;
  rowCacheBytes: number;
  /** Keys of commits whose row-cache updates a lane has queued and not applied yet (reads of
   * those keys go to storage until then); 0 whenever the lanes are idle. */
  rowCacheQueuedKeys: number;
  /** Journal fsyncs that succeeded so far (group commit, checkpoint, close). */
  journalSyncs: number;
  /** When the last of them completed (ms since the Unix epoch); null before the first. */
  lastJournalSyncMs: number | null;
  /** Good fsyncs whose write of the durable watermark failed (a full or failing disk): they
   * still count as fsyncs; the recovery check only sees an older watermark. */
  watermarkFailures: number;
}

/** What a sweep did: keys removed, and due index entries gone through (out-of-date ones remove
 * no key): a caller catching up sweeps again while `examined` reaches its limit. */
export interface SweepReport {
  removed: number;
  examined: number;
}

export interface CheckpointReport {
  lsn: bigint;
  durationMs: number;
}

export interface Engine {
  readonly recovery: RecoveryReport;
  /** Runs ops in order off the JS thread; never rejects for a per-op failure. */
  execute(ops: EngineOp[]): Promise<EngineResult[]>;
  /**
   * Runs ops like `execute`, but ends the call early, after at least one op, once its results
   * carry `outputBytesMax` bytes of data (values, names, entries: only reads count, so it ends
   * right after a read): the results are then those of a prefix of `ops`, every op of which was
   * applied and none after it, and the caller runs the rest in a later call.
   */
  executeBounded(ops: EngineOp[], outputBytesMax: number): Promise<EngineResult[]>;
  /**
   * Starts `count` ordered lanes: engine threads that each run the calls given to them one at a
   * time, in the order given (engine/src/core/lanes.rs). Call once, before `executeOrdered`.
   * With `syncResults`, each lane call asks the group-commit thread (`startSyncer`) for a fsync
   * covering its results as soon as it ran, before they reach JS (for `sync` durability).
   * With `outputBytesMax`, a lane call ends early as `executeBounded` does (default: never).
   */
  startLanes(count: number, options?: { syncResults?: boolean; outputBytesMax?: number }): void;
  /**
   * Runs ops like `execute`, but on lane `lane` (any number; taken modulo the lane count) after
   * every call given to that lane before, so one caller may have several calls in flight whose
   * effects apply in order. Results settle in submission order per lane. A call may end early
   * (`startLanes` outputBytesMax), with results for a prefix of `ops`: it then halts `lane`, and
   * the calls given to it afterwards settle with no results (none of their ops ran) until the
   * caller gives the rest of the halted call with `resume`; the caller then gives those calls
   * again, in order (engine/src/core/engine.rs `start_lanes`). Like `startSyncer`'s callback,
   * the lanes do not keep the event loop alive on their own (the daemon's listening socket
   * does): a script awaiting only lane calls must hold some handle of its own.
   */
  executeOrdered(lane: number, ops: EngineOp[], resume?: boolean): Promise<EngineResult[]>;
  /**
   * Answers plain reads (get / exists / getBatch without `txn`) from the engine's row cache,
   * synchronously on the calling thread, with the results `execute` would give; or returns null,
   * having done nothing, when any op is another kind, is invalid, or needs a row that is not in
   * memory. Never touches storage, so it is safe on the JS thread. With `outputBytesMax` it
   * answers only a prefix of `ops` (at least one) once its results carry that many bytes, as
   * `executeBounded` does.
   */
  readCached(ops: EngineOp[], outputBytesMax?: number): EngineResult[] | null;
  /**
   * Runs memory-only transaction steps (begin, abort, and put / delete / putBatch / deleteBatch
   * with `txn`; see isMemoryStepCall) synchronously on the calling thread, with the results
   * `execute` would give; or returns null, having done nothing, when any op is another kind,
   * the call writes into a transaction it begins, or a transaction's first write would wait
   * for a running commit. Never touches
   * storage, so it is safe on the JS thread.
   */
  runInMemory(ops: EngineOp[]): EngineResult[] | null;
  /**
   * Commits plain writes (put / delete / putBatch / deleteBatch without `txn`; see
   * plainWriteKeys) synchronously on the calling thread, with the results `execute` would
   * give; or returns null, having done nothing, when any op is another kind, a commit is
   * running, or fjall may make a writer wait (a write stall, or a checkpoint, flush,
   * compaction or memtable rotation that holds its locks across fsyncs; see
   * Store::writes_may_wait). Costs what the commit costs (a journal write, no fsync).
   */
  writeNow(ops: EngineOp[]): EngineResult[] | null;
  /** fsyncs the journal (fdatasync) on the libuv pool and resolves to the ticket now durable. */
  sync(): Promise<number>;
  /**
   * Starts the engine's group-commit thread, which fsyncs the journal back to back while a
   * requested ticket is not durable. `onSynced` runs on the JS thread after fsyncs complete with
   * null (read `durableSeq()`; several fsyncs may share one call, so the pending calls stay
   * bounded), or once with the coded error of a failed fsync, after which the thread has ended.
   * Starting it again replaces the thread; `close` ends it.
   */
  startSyncer(onSynced: (error: ToonDBError | null) => void): void;
  /** Asks the group-commit thread for a fsync covering `seq` (cheap; returns at once; a ticket
   * at or below one already asked for, here or by a `syncResults` lane, costs nothing). */
  requestSync(seq: number): void;
  /** Highest ticket known durable (cheap, synchronous). */
  durableSeq(): number;
  /** Highest ticket handed out to a write so far (cheap, synchronous). */
  writtenSeq(): number;
  /** Flushes memtables to tables and the journal to disk; bounds recovery work. */
  checkpoint(): Promise<CheckpointReport>;
  /** Goes through up to `limit` due TTL index entries, removing the keys still expired. */
  sweepExpired(limit: number): Promise<SweepReport>;
  stats(): Promise<EngineStats>;
  /** Persists and releases everything. Further calls fail. */
  close(): Promise<void>;
}
