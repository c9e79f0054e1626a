/**
 * Handlers of the `kv` and `batch` families: get, exists, put, delete and their batch forms.
 *
 * Responsibility: map each request to one engine op (bound to the request's transaction, if
 * any) and each engine result to its wire result. Validation of sizes and types already
 * happened in protocol/validate.ts; the engine checks again (defence in depth).
 *
 * Invariants: a missing key reads as `null`, an empty value as an empty bin; batch results keep
 * request order; TTLs travel to the engine in milliseconds.
 */

import { OpKind, type EngineOp, type EngineResult } from '../../engine/types.js';
import type { RequestOf } from '../../protocol/messages.js';
import type { PackedArray } from '../../protocol/packed-array.js';
import { bindTxn, engineError, fail, ok, txnRequestFailed, type Outcome, type Prepared, type SessionScope } from './scope.js';

type KvRequest = RequestOf<'get' | 'exists' | 'put' | 'delete' | 'getBatch' | 'putBatch' | 'deleteBatch'>;

const ttlMsOf = (ttlSeconds: number | undefined): number | undefined =>
  ttlSeconds === undefined ? undefined : Math.max(1, Math.round(ttlSeconds * 1000));

export function prepareKv(req: KvRequest, scope: SessionScope): Prepared {
  const txn = bindTxn(req.txn, scope);
  if (typeof txn === 'object') return txn;
  switch (req.op) {
    case 'get': return { kind: OpKind.get, txn, key: req.key as Buffer };
    case 'exists': return { kind: OpKind.exists, txn, key: req.key as Buffer };
    case 'put': return { kind: OpKind.put, txn, key: req.key as Buffer, value: req.value as Buffer, ttlMs: ttlMsOf(req.ttlSeconds) };
    case 'delete': return { kind: OpKind.delete, txn, key: req.key as Buffer };
    case 'getBatch': return { kind: OpKind.getBatch, txn, keys: req.keys as Buffer[] | PackedArray };
    case 'deleteBatch': return { kind: OpKind.deleteBatch, txn, keys: req.keys as Buffer[] | PackedArray };
    case 'putBatch': {
      const keys = new Array<Buffer>(req.entries.length);
      const values = new Array<Buffer>(req.entries.length);
      for (let i = 0; i < req.entries.length; i++) {
        keys[i] = req.entries[i][0] as Buffer;
        values[i] = req.entries[i][1] as Buffer;
      }
      return { kind: OpKind.putBatch, txn, keys, values, ttlMs: ttlMsOf(req.ttlSeconds) };
    }
  }
}

export function finishKv(req: KvRequest, result: EngineResult, scope: SessionScope, op: EngineOp): Outcome {
  const error = engineError(result);
  if (error) return fail(req.txn === undefined ? error : txnRequestFailed(error, req.txn, op.txn, scope));
  switch (req.op) {
    case 'get': return ok(result.value ?? null);
    case 'exists': return ok(result.found === true);
    case 'getBatch': return ok(result.values ?? []);
    default: return ok(null);
  }
}
