/**
 * Handlers of the `txn` family: begin, commit, abort.
 *
 * Responsibility: keep the connection's transaction registry in step with the engine, and count
 * commits, aborts and conflicts. A transaction enters the registry when its begin is prepared
 * (so requests pipelined behind the begin bind to it) and leaves it as soon as commit or abort
 * is sent, or its begin fails: whatever the engine answers, it no longer exists there afterwards.
 *
 * Invariants: only a transaction this connection began can be committed or aborted through it;
 * commit timestamps go out as 64-bit integers.
 */

import { IsolationKind, OpKind, type EngineOp, type EngineResult } from '../../engine/types.js';
import { ToonDBError } from '../../protocol/errors.js';
import type { RequestOf } from '../../protocol/messages.js';
import { aboutTxn, bindTxn, engineError, fail, forgetCursorsOf, ok, type Outcome, type Prepared, type SessionScope } from './scope.js';

type TxnRequest = RequestOf<'begin' | 'commit' | 'abort'>;

export function prepareTxn(req: TxnRequest, scope: SessionScope): Prepared {
  if (req.op === 'begin') return prepareBegin(req, scope);
  const txn = bindTxn(req.txn, scope);
  if (typeof txn === 'object') return txn;
  if (txn === undefined) throw new Error('invariant: commit/abort without txn passed validation');
  const id = Number(req.txn);
  scope.txns.delete(id);
  // After any scanNext of them sent before this, which the engine runs first.
  forgetCursorsOf(scope, new Set([id]));
  if (req.op === 'abort') return { kind: OpKind.abort, txn };
  return req.writes === undefined ? { kind: OpKind.commit, txn } : { kind: OpKind.commit, txn, writes: req.writes };
}

/**
 * Registers the new transaction before its begin runs, under the id its client chose or else
 * under its engine handle, so that requests sent right behind the begin find it. The engine
 * handle comes from the daemon-wide sequence (handles are unique across connections; ids only
 * within one).
 */
function prepareBegin(req: RequestOf<'begin'>, scope: SessionScope): Prepared {
  const chosen = req.txn === undefined ? undefined : Number(req.txn);
  if (chosen !== undefined && scope.txns.has(chosen)) {
    return new ToonDBError('INVALID_ARGUMENT', `begin.txn ${chosen} names a transaction already open on this connection`);
  }
  let handle = scope.takeTxnHandle();
  // A handle that a transaction of this connection already uses as its chosen id is skipped.
  while (chosen === undefined && scope.txns.has(handle)) handle = scope.takeTxnHandle();
  if (!scope.txns.add(chosen ?? handle, handle, scope.nowMs)) {
    const acrossDaemon = scope.txns.refusedAcrossDaemon('open transactions');
    return new ToonDBError('LIMIT_EXCEEDED', acrossDaemon !== null
      ? `${acrossDaemon}; retry once some end`
      : `this connection already has ${scope.txns.max} open transactions; commit or abort one first`);
  }
  return { kind: OpKind.begin, txn: handle, isolation: req.isolation === 'snapshot' ? IsolationKind.snapshot : IsolationKind.serializable };
}

export function finishTxn(req: TxnRequest, result: EngineResult, scope: SessionScope, op: EngineOp): Outcome {
  const error = engineError(result);
  const counters = scope.counters;
  // The registry let the transaction go when its commit or abort was sent; an engine call that
  // failed as a whole (a bug) may not have reached it, so it is released in the engine too.
  if (error?.code === 'INTERNAL' && req.op !== 'begin' && op.txn !== undefined) scope.releaseTxn(op.txn);
  switch (req.op) {
    case 'begin': {
      const id = req.txn ?? BigInt(op.txn ?? 0);
      if (error) {
        scope.txns.forget(Number(id), op.txn);
        return fail(error);
      }
      return ok({ txn: id });
    }
    case 'commit':
      if (error) {
        counters.txnsAborted += 1;
        if (error.code === 'TXN_CONFLICT') counters.txnConflicts += 1;
        return fail(aboutTxn(error, req.txn));
      }
      counters.txnsCommitted += 1;
      return ok({ commitTs: result.commitTs ?? 0n });
    case 'abort':
      if (error) return fail(aboutTxn(error, req.txn));
      counters.txnsAborted += 1;
      return ok(null);
  }
}
