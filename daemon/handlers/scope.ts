/**
 * What a data handler may see of its connection, and the shapes handlers return.
 *
 * Responsibility: the narrow interface between a session and the per-family handlers, so that
 * handlers stay pure functions of (request, scope) -> engine op and (request, result, scope) ->
 * reply, testable without sockets.
 *
 * Invariants: a handler never keeps a reference to a request or result after returning; all
 * per-connection state lives in the scope's registries.
 */

import type { EngineOp, EngineResult } from '../../engine/types.js';
import { ToonDBError, errorFromWire } from '../../protocol/errors.js';
import type { ServerLimits } from '../../protocol/limits.js';
import type { Counters } from '../counters.js';
import type { HandleRegistry } from '../registry.js';

export interface SessionScope {
  readonly txns: HandleRegistry;
  readonly cursors: HandleRegistry;
  readonly counters: Counters;
  readonly limits: ServerLimits;
  /** The next engine transaction handle from the daemon-wide sequence (unique across
   * connections, so the daemon, not the engine, can name a transaction before it exists). */
  takeTxnHandle(): number;
  /** Aborts engine transaction `handle` in the background, if it still exists: for a commit or
   * abort whose whole engine call failed before it ran (INTERNAL). */
  releaseTxn(handle: number): void;
  /** Time of the batch being handled (one clock read per batch, not per request). */
  nowMs: number;
}

/** A reply body: the `result` on success, or a coded error. */
export type Outcome = { ok: true; result: unknown } | { ok: false; error: ToonDBError };

export const ok = (result: unknown): Outcome => ({ ok: true, result });
export const fail = (error: ToonDBError): Outcome => ({ ok: false, error });

/** The engine op for a request, or the error that answers it without touching the engine. */
export type Prepared = EngineOp | ToonDBError;

/** The engine's per-op error, as a registry error (unknown codes become INTERNAL). */
export function engineError(result: EngineResult): ToonDBError | null {
  if (result.code === undefined || result.code === null) return null;
  return errorFromWire({ code: result.code, message: result.message });
}

/** `error` about transaction `txn`, named by the id its client knows (the engine's messages
 * name none: its handle may differ from that id). */
export function aboutTxn(error: ToonDBError, txn: bigint | undefined): ToonDBError {
  return txn === undefined ? error : new ToonDBError(error.code, `transaction ${txn}: ${error.message}`);
}

/**
 * The reply to a request of transaction `txn` (engine handle `handle`) that failed with `error`,
 * and the registries brought in line with the engine: TXN_TOO_LARGE and LIMIT_EXCEEDED (the
 * engine's only LIMIT_EXCEEDED: txnBytesDaemonMax) abort the transaction, and
 * NOT_IN_TRANSACTION finds it gone; either way the engine has dropped it and closed its
 * cursors, so they are forgotten here too. Any other error leaves it open.
 */
export function txnRequestFailed(error: ToonDBError, txn: bigint, handle: number | undefined, scope: SessionScope): ToonDBError {
  const aborted = error.code === 'TXN_TOO_LARGE' || error.code === 'LIMIT_EXCEEDED';
  if (!aborted && error.code !== 'NOT_IN_TRANSACTION') return error;
  const id = Number(txn);
  scope.txns.forget(id, handle);
  // Unless the id already names a newer transaction (its client reused it), whose cursors
  // these are not.
  if (!scope.txns.has(id)) forgetCursorsOf(scope, new Set([id]));
  if (aborted) scope.counters.txnsAborted += 1;
  return aboutTxn(error, txn);
}

/** Lets go of the cursors that read through the transactions `txnIds` (by the ids their client
 * knows): a transaction's cursors end with it, however it ends (commit, abort, idle expiry, or
 * dropped by the engine), and the engine closes them as it ends it. `expired`: remember their
 * ids as expired (an idle expiry), as HandleRegistry.takeWhere does. */
export function forgetCursorsOf(scope: SessionScope, txnIds: ReadonlySet<number>, expired = false): void {
  if (txnIds.size > 0) scope.cursors.takeWhere((entry) => entry.txn !== undefined && txnIds.has(entry.txn), expired);
}

/** Resolves a wire transaction id to the engine handle this connection owns. */
export function bindTxn(txn: bigint | undefined, scope: SessionScope): number | undefined | ToonDBError {
  if (txn === undefined) return undefined;
  const id = Number(txn);
  const entry = scope.txns.touch(id, scope.nowMs);
  if (entry) return entry.handle;
  if (scope.txns.wasExpired(id)) {
    return new ToonDBError('TXN_EXPIRED', `transaction ${txn} was idle longer than ${scope.limits.txnIdleMsMax} ms and has been aborted`);
  }
  return new ToonDBError('NOT_IN_TRANSACTION', `transaction ${txn} is not open on this connection`);
}
