/**
 * Routes a data request to its family's handler.
 *
 * Responsibility: one switch from op name to (prepare, finish), so the session's batch loop
 * stays free of per-op knowledge and free of per-request closures.
 *
 * Invariants: every op in OP_FAMILIES whose family is not `admin` is routed here; admin ops are
 * answered by the session itself (they need the daemon, not the engine's batch path).
 */

import type { EngineOp, EngineResult } from '../../engine/types.js';
import { ToonDBError } from '../../protocol/errors.js';
import type { Request } from '../../protocol/messages.js';
import { finishKv, prepareKv } from './kv.js';
import { finishScan, prepareScan } from './scan.js';
import type { Reply } from '../replies.js';
import { fail, type Outcome, type Prepared, type SessionScope } from './scope.js';
import { finishTxn, prepareTxn } from './txn.js';

export type DataRequest = Exclude<Request, { op: 'hello' | 'ping' | 'stats' | 'checkpoint' | 'shutdown' }>;

export function isDataRequest(req: Request): req is DataRequest {
  switch (req.op) {
    case 'hello': case 'ping': case 'stats': case 'checkpoint': case 'shutdown':
      return false;
    default:
      return true;
  }
}

export function prepare(req: DataRequest, scope: SessionScope): Prepared {
  switch (req.op) {
    case 'get': case 'exists': case 'put': case 'delete':
    case 'getBatch': case 'putBatch': case 'deleteBatch':
      return prepareKv(req, scope);
    case 'scan': case 'scanNext': case 'scanClose': case 'listPath':
      return prepareScan(req, scope);
    case 'begin': case 'commit': case 'abort':
      return prepareTxn(req, scope);
  }
}

/** The reply to `req` from its engine `result`; `op` is the engine op prepare() made for it. */
export function finish(req: DataRequest, result: EngineResult, scope: SessionScope, op: EngineOp): Outcome {
  switch (req.op) {
    case 'get': case 'exists': case 'put': case 'delete':
    case 'getBatch': case 'putBatch': case 'deleteBatch':
      return finishKv(req, result, scope, op);
    case 'scan': case 'scanNext': case 'scanClose': case 'listPath':
      return finishScan(req, result, scope, op);
    case 'begin': case 'commit': case 'abort':
      return finishTxn(req, result, scope, op);
  }
}

/** A batch's engine ops, and per request its op or the validation error that replaced it. */
export interface PreparedBatch {
  each: Prepared[];
  ops: EngineOp[];
}

/** Prepares the data requests batch[from, to) at this moment (`scope.nowMs`). */
export function prepareBatch(batch: readonly { req: Request }[], from: number, to: number, scope: SessionScope): PreparedBatch {
  scope.nowMs = Date.now();
  const each = new Array<Prepared>(to - from);
  const ops: EngineOp[] = [];
  for (let i = from; i < to; i++) {
    const op = prepare(batch[i].req as DataRequest, scope);
    each[i - from] = op;
    if (!(op instanceof ToonDBError)) ops.push(op);
  }
  return { each, ops };
}

/**
 * The replies to the data requests batch[from, to) from the engine results of their ops
 * (`results`: one per op of `prepared.ops`, in order), a refused request's with its validation
 * error; `onResult` sees each request that ran with its result and outcome. Returns them with
 * the highest ticket they show (the fsync their release waits for in `sync` mode).
 */
export function repliesOf(batch: readonly { req: Request; receivedAt: number; bytes: number; refusal?: ToonDBError }[], from: number, to: number, prepared: PreparedBatch,
  results: EngineResult[], scope: SessionScope, onResult: (req: DataRequest, result: EngineResult, outcome: Outcome) => void): { replies: Reply[]; maxSeq: number } {
  const replies = new Array<Reply>(to - from);
  let maxSeq = 0;
  let r = 0;
  for (let i = from; i < to; i++) {
    const op = prepared.each[i - from];
    const req = batch[i].req as DataRequest;
    let outcome: Outcome;
    const refusal = batch[i].refusal;
    if (op instanceof ToonDBError) {
      outcome = fail(refusal ?? op);
    } else {
      const result = results[r++];
      if (result.seq > maxSeq) maxSeq = result.seq;
      outcome = finish(req, result, scope, op);
      onResult(req, result, outcome);
      if (refusal !== undefined) outcome = fail(refusal);
    }
    replies[i - from] = { id: req.id, outcome, receivedAt: batch[i].receivedAt, requestBytes: batch[i].bytes };
  }
  return { replies, maxSeq };
}

/**
 * How many requests of `prepared` an engine call answered that ran only its first `opsRan` ops:
 * those requests, and the refused ones right after them, which need no engine work.
 */
export function requestsCovered(prepared: PreparedBatch, opsRan: number): number {
  const { each } = prepared;
  let covered = 0;
  for (let ran = 0; covered < each.length && (ran < opsRan || each[covered] instanceof ToonDBError); covered++) {
    if (!(each[covered] instanceof ToonDBError)) ran++;
  }
  return covered;
}
