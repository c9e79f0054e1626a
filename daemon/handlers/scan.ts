/**
 * Handlers of the `scan` family: cursor open / next / close, and listPath.
 *
 * Responsibility: keep the connection's cursor registry in step with the engine's cursors.
 * A cursor slot is reserved before the engine opens it (so pipelined scans cannot exceed the
 * per-connection limit), registered only if the first batch did not finish the scan and the
 * transaction it reads through (if any) is still open, and forgotten as soon as the engine
 * reports it done, failed or closed. A read that ends its transaction (TXN_TOO_LARGE,
 * LIMIT_EXCEEDED) forgets the transaction and its cursors, as kv.ts does.
 *
 * Invariants: every cursor id on the wire was created by this connection; a done cursor is
 * never registered; entries are `[key, value]` pairs in the engine's order, passed on in the
 * wire form the engine wrote (PackedArray), never decoded here.
 */

import { OpKind, type EngineOp, type EngineResult } from '../../engine/types.js';
import { ToonDBError } from '../../protocol/errors.js';
import { SCAN_BATCH_ITEMS_DEFAULT, SCAN_BATCH_ITEMS_GROWN_MAX } from '../../protocol/limits.js';
import type { RequestOf } from '../../protocol/messages.js';
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
        return new ToonDBError('LIMIT_EXCEEDED', scope.cursors.fullAcrossDaemon
          ? `the daemon already has ${scope.cursors.daemonMax} open cursors across all connections; retry once some finish`
          : `this connection already has ${scope.cursors.max} open cursors; finish or close one first`);
      }
      const range = req.prefix === undefined;
      const itemsMax = scope.limits.scanBatchItemsMax;
      return {
        kind: OpKind.scanOpen,
        txn,
        key: (range ? req.start : req.prefix) as Buffer | undefined,
        end: req.end as Buffer | undefined,
        range,
        reverse: req.reverse === true,
        withExpiry: req.withExpiry === true,
        limit: req.limit ?? 0,
        // A batchSize bounds every batch; without one the batches grow (protocol/limits.ts).
        batchItems: req.batchSize ?? Math.min(SCAN_BATCH_ITEMS_DEFAULT, itemsMax),
        batchItemsGrownMax: req.batchSize === undefined ? Math.min(SCAN_BATCH_ITEMS_GROWN_MAX, itemsMax) : undefined,
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
      return { kind: OpKind.listPath, txn, key: req.prefix as Buffer, limit: req.limit ?? 0 };
    }
  }
}

/** The engine op reading a cursor's next batch (a client's scanNext, or a read-ahead). */
export function scanNextOp(cursor: number, scope: SessionScope): EngineOp {
  return { kind: OpKind.scanNext, cursor, batchBytes: scope.limits.scanBatchBytesMax };
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

export function finishScan(req: ScanRequest, result: EngineResult, scope: SessionScope, op: EngineOp): Outcome {
  const error = engineError(result);
  switch (req.op) {
    case 'scan': {
      const txn = req.txn === undefined ? undefined : Number(req.txn);
      // A scan of a transaction that ended while it ran (a commit or abort pipelined behind it
      // was prepared first) left no cursor: the engine closed it with the transaction.
      const orphaned = txn !== undefined && scope.txns.touch(txn, scope.nowMs)?.handle !== op.txn;
      const done = error !== null || result.done === true || orphaned;
      scope.cursors.settle(done ? undefined : result.cursor, scope.nowMs, txn);
      if (error) return fail(req.txn === undefined ? error : txnRequestFailed(error, req.txn, op.txn, scope));
      return ok({ cursor: result.done === true ? 0 : result.cursor, entries: entriesOf(result), done: result.done === true });
    }
    case 'scanNext': {
      const txn = scope.cursors.touch(req.cursor, scope.nowMs)?.txn;
      if (error || result.done === true) scope.cursors.delete(req.cursor);
      if (!error) return ok({ cursor: result.done ? 0 : req.cursor, entries: entriesOf(result), done: result.done === true });
      // The cursor's transaction may have ended with its read (TXN_TOO_LARGE, LIMIT_EXCEEDED).
      if (txn === undefined) return fail(error);
      return fail(txnRequestFailed(error, BigInt(txn), scope.txns.touch(txn, scope.nowMs)?.handle, scope));
    }
    case 'scanClose':
      return error ? fail(error) : ok(null);
    case 'listPath':
      if (!error) return ok(result.keys ?? []);
      return fail(req.txn === undefined ? error : txnRequestFailed(error, req.txn, op.txn, scope));
  }
}
