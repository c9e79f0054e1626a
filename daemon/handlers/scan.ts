/**
 * Handlers of the `scan` family: cursor open / next / close, and listPath.
 *
 * Responsibility: keep the connection's cursor registry in step with the engine's cursors.
 * A cursor slot is reserved before the engine opens it (so pipelined scans cannot exceed the
 * per-connection limit), registered only if the first batch did not finish the scan and the
 * transaction it reads through (if any) is still open, and forgotten as soon as the engine
 * reports it done, failed or closed. A read that ends its transaction (TXN_TOO_LARGE,
 * LIMIT_EXCEEDED) forgets the transaction and its cursors, as kv.ts does. A scan that names no
 * batchSize gets growing batches: the registry entry holds the size of its next read, doubled
 * by each batch answered (growthAfterFirst).
 *
 * Invariants: every cursor id on the wire was created by this connection; a done cursor is
 * never registered; entries are `[key, value]` pairs in the engine's order, passed on in the
 * wire form the engine wrote (PackedArray), never decoded here.
 */

import { OpKind, type EngineOp, type EngineResult } from '../../engine/types.js';
import { ToonDBError } from '../../protocol/errors.js';
import { LIST_PATH_STEPS_MAX, SCAN_BATCH_ITEMS_DEFAULT, SCAN_BATCH_ITEMS_GROWN_MAX } from '../../protocol/limits.js';
import type { RequestOf } from '../../protocol/messages.js';
import type { BatchGrowth } from '../registry.js';
import { PackedArray } from '../../protocol/packed-array.js';
import type { DataRequest } from './index.js';
import { bindTxn, engineError, fail, ok, txnRequestFailed, type Outcome, type Prepared, type SessionScope } from './scope.js';

type ScanRequest = RequestOf<'scan' | 'scanNext' | 'scanClose' | 'listPath'>;

const NO_ENTRIES = new PackedArray(0, Buffer.alloc(0));

function cursorNotFound(cursor: number): ToonDBError {
  return new ToonDBError('CURSOR_NOT_FOUND', `cursor ${cursor} is not open on this connection (finished, closed or expired)`);
}

export function prepareScan(req: ScanRequest, scope: SessionScope): Prepared {
  switch (req.op) {
    case 'scan': {
      const txn = bindTxn(req.txn, scope);
      if (typeof txn === 'object') return txn;
      if (!scope.cursors.reserve()) {
        const acrossDaemon = scope.cursors.refusedAcrossDaemon('open cursors');
        return new ToonDBError('LIMIT_EXCEEDED', acrossDaemon !== null
          ? `${acrossDaemon}; retry once some finish`
          : `this connection already has ${scope.cursors.max} open cursors; finish or close one first`);
      }
      const range = req.prefix === undefined;
      return {
        kind: OpKind.scanOpen,
        txn,
        key: (range ? req.start : req.prefix) as Buffer | undefined,
        end: req.end as Buffer | undefined,
        range,
        reverse: req.reverse === true,
        withExpiry: req.withExpiry === true,
        limit: req.limit ?? 0,
        // A batchSize bounds every batch; without one the batches grow (growthAfterFirst).
        batchItems: req.batchSize ?? Math.min(SCAN_BATCH_ITEMS_DEFAULT, scope.limits.scanBatchItemsMax),
        batchBytes: scope.limits.scanBatchBytesMax,
      };
    }
    case 'scanNext': {
      const cursor = scope.cursors.touch(req.cursor, scope.nowMs);
      if (!cursor) return cursorNotFound(req.cursor);
      // Pulling a transaction's cursor uses the transaction: it must not expire as idle.
      if (cursor.txn !== undefined) scope.txns.touch(cursor.txn, scope.nowMs);
      return scanNextOp(req.cursor, scope);
    }
    case 'scanClose':
      if (!scope.cursors.delete(req.cursor)) return cursorNotFound(req.cursor);
      return { kind: OpKind.scanClose, cursor: req.cursor };
    case 'listPath': {
      const txn = bindTxn(req.txn, scope);
      if (typeof txn === 'object') return txn;
      const prefix = req.prefix as Buffer;
      // The engine takes where the listing goes on as a whole key under the prefix.
      const end = req.resume === undefined ? undefined : Buffer.concat([prefix, req.resume as Buffer]);
      return { kind: OpKind.listPath, txn, key: prefix, end, limit: req.limit ?? 0 };
    }
  }
}

/** The engine op reading a cursor's next batch (a client's scanNext, or a read-ahead), at the
 * cursor's current size if its batches grow (the engine keeps a fixed one). */
export function scanNextOp(cursor: number, scope: SessionScope): EngineOp {
  const batchItems = scope.cursors.peek(cursor)?.growth?.batchItems;
  return { kind: OpKind.scanNext, cursor, batchItems, batchBytes: scope.limits.scanBatchBytesMax };
}

/**
 * How the batches of a scan that named no batchSize grow once its first batch (of `first`
 * entries) is answered: each batch the client is answered doubles the size of the batches read
 * after it, up to SCAN_BATCH_ITEMS_GROWN_MAX and the connection's scanBatchItemsMax. Growth
 * follows the batches answered, not the batches read: the daemon reads up to four ahead, and a
 * scan a client leaves after a few entries would otherwise have read ~16k.
 */
function growthAfterFirst(first: number, scope: SessionScope): BatchGrowth {
  const batchItemsMax = Math.min(SCAN_BATCH_ITEMS_GROWN_MAX, scope.limits.scanBatchItemsMax);
  return { batchItems: Math.min(first * 2, batchItemsMax), batchItemsMax };
}

/** After a cursor's batch was answered: the batches read from now on may hold twice as many. */
function grow(cursor: number, scope: SessionScope): void {
  const growth = scope.cursors.peek(cursor)?.growth;
  if (growth !== undefined) growth.batchItems = Math.min(growth.batchItems * 2, growth.batchItemsMax);
}

/**
 * The cursor whose next batch may be read ahead (daemon/read-ahead.ts) after this finished
 * scan or scanNext, or 0: only a snapshot cursor (no transaction) that is still open.
 */
export function readAheadCursor(req: DataRequest, outcome: Outcome, scope: SessionScope): number {
  if (!outcome.ok || (req.op !== 'scan' && req.op !== 'scanNext')) return 0;
  const batch = outcome.result as { cursor: number; done: boolean };
  if (batch.done || batch.cursor <= 0) return 0;
  const entry = scope.cursors.touch(batch.cursor, scope.nowMs);
  return entry !== undefined && entry.txn === undefined ? batch.cursor : 0;
}

/** The batch's entries as the engine encoded them (the reply copies them as one block), less
 * those expired since the engine read them: a batch read ahead may be answered long after, and
 * an expired key reads as absent at once (README, Guarantees). They still count toward the
 * scan's `limit`, as the engine counted them. */
function entriesOf(result: EngineResult): PackedArray {
  const entries = result.entries ?? NO_ENTRIES;
  if (result.expiring === undefined) return entries;
  const nowMs = Date.now();
  const expired = result.expiring.filter((entry) => entry.atMs <= nowMs);
  return entries.without(expired);
}

/**
 * A listPath's reply. An engine call examines at most LIST_PATH_STEPS_MAX keys (names, keys that
 * are not path names, expired keys) and answers at most batchBytesMax bytes of names, and says
 * where the listing goes on (`value`) if it stopped early: a `paged` request gets that as
 * `next` (after the prefix), one that is not paged gets every name or, if the listing did not
 * finish before its limit, BATCH_TOO_LARGE.
 */
function listPathOutcome(req: RequestOf<'listPath'>, result: EngineResult): Outcome {
  const children = result.keys ?? [];
  const next = result.value ?? null;
  if (req.paged === true) return ok({ children, next: next === null ? null : next.subarray(req.prefix.length) });
  const limitReached = req.limit !== undefined && req.limit > 0 && children.length >= req.limit;
  if (next === null || limitReached) return ok(children);
  return fail(new ToonDBError('BATCH_TOO_LARGE',
    `listPath did not finish in one request (one examines at most ${LIST_PATH_STEPS_MAX} keys under the prefix, names or not, `
    + 'and answers at most batchBytesMax bytes of names); send it with paged: true and go on from each page\'s next '
    + '(the client library does)'));
}

export function finishScan(req: ScanRequest, result: EngineResult, scope: SessionScope, op: EngineOp): Outcome {
  const error = engineError(result);
  switch (req.op) {
    case 'scan': {
      const txn = req.txn === undefined ? undefined : Number(req.txn);
      // A scan of a transaction that ended while it ran (a commit or abort pipelined behind it
      // was prepared first) left no cursor: the engine closed it with the transaction.
      const orphaned = txn !== undefined && scope.txns.touch(txn, scope.nowMs)?.handle !== op.txn;
      const done = error !== null || result.done === true || orphaned;
      const growth = done || req.batchSize !== undefined || op.batchItems === undefined ? undefined : growthAfterFirst(op.batchItems, scope);
      scope.cursors.settle(done ? undefined : result.cursor, scope.nowMs, txn, growth);
      if (error) return fail(req.txn === undefined ? error : txnRequestFailed(error, req.txn, op.txn, scope));
      return ok({ cursor: result.done === true ? 0 : result.cursor, entries: entriesOf(result), done: result.done === true });
    }
    case 'scanNext': {
      const txn = scope.cursors.touch(req.cursor, scope.nowMs)?.txn;
      if (error || result.done === true) scope.cursors.delete(req.cursor);
      else grow(req.cursor, scope);
      if (!error) return ok({ cursor: result.done ? 0 : req.cursor, entries: entriesOf(result), done: result.done === true });
      // The cursor's transaction may have ended with its read (TXN_TOO_LARGE, LIMIT_EXCEEDED).
      if (txn === undefined) return fail(error);
      return fail(txnRequestFailed(error, BigInt(txn), scope.txns.touch(txn, scope.nowMs)?.handle, scope));
    }
    case 'scanClose':
      return error ? fail(error) : ok(null);
    case 'listPath':
      if (error) return fail(req.txn === undefined ? error : txnRequestFailed(error, req.txn, op.txn, scope));
      return listPathOutcome(req, result);
  }
}
