/**
 * Handlers of the `txn` family: begin, commit, abort.
 *
 * Responsibility: keep the connection's transaction registry in step with the engine, and count
 * commits, aborts and conflicts. A transaction leaves the registry as soon as commit or abort is
 * sent: whatever the engine answers, it no longer exists there afterwards.
 *
 * Invariants: only a transaction this connection began can be committed or aborted through it;
 * commit timestamps go out as 64-bit integers.
 */

import { IsolationKind, OpKind, type EngineResult } from '../../engine/types.js';
import { ToonDBError } from '../../protocol/errors.js';
import type { RequestOf } from '../../protocol/messages.js';
import { bindTxn, engineError, fail, ok, type Outcome, type Prepared, type SessionScope } from './scope.js';

type TxnRequest = RequestOf<'begin' | 'commit' | 'abort'>;

export function prepareTxn(req: TxnRequest, scope: SessionScope): Prepared {
  if (req.op === 'begin') {
    if (!scope.txns.reserve()) {
      return new ToonDBError('LIMIT_EXCEEDED', `this connection already has ${scope.txns.max} open transactions; commit or abort one first`);
    }
    return { kind: OpKind.begin, isolation: req.isolation === 'snapshot' ? IsolationKind.snapshot : IsolationKind.serializable };
  }
  const txn = bindTxn(req.txn, scope);
  if (typeof txn === 'object') return txn;
  if (txn === undefined) throw new Error('invariant: commit/abort without txn passed validation');
  scope.txns.delete(txn);
  // Cursors reading through this transaction die with it (the engine frees them too).
  scope.cursors.takeWhere((entry) => entry.txn === txn);
  return { kind: req.op === 'commit' ? OpKind.commit : OpKind.abort, txn };
}

export function finishTxn(req: TxnRequest, result: EngineResult, scope: SessionScope): Outcome {
  const error = engineError(result);
  const counters = scope.counters;
  switch (req.op) {
    case 'begin':
      scope.txns.settle(error ? undefined : result.txn, scope.nowMs);
      if (error) return fail(error);
      return ok({ txn: BigInt(result.txn ?? 0) });
    case 'commit':
      if (error) {
        counters.txnsAborted += 1;
        if (error.code === 'TXN_CONFLICT') counters.txnConflicts += 1;
        return fail(error);
      }
      counters.txnsCommitted += 1;
      return ok({ commitTs: result.commitTs ?? 0n });
    case 'abort':
      if (error) return fail(error);
      counters.txnsAborted += 1;
      return ok(null);
  }
}
