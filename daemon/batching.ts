/**
 * How a connection's queued requests form engine calls.
 *
 * Responsibility: size the next engine call (at most ENGINE_BATCH_REQUESTS_MAX requests, and
 * ENGINE_READ_BATCH_KEYS_MAX keys for a call of plain reads or ENGINE_WRITE_BATCH_KEYS_MAX for
 * one that may write; always at least one request) and say whether it holds only plain reads,
 * which are the calls that may run beside each other (daemon/session.ts pump()).
 *
 * Invariants: pure; the queue is only read.
 */

import { ENGINE_BATCH_REQUESTS_MAX, ENGINE_READ_BATCH_KEYS_MAX, ENGINE_WRITE_BATCH_KEYS_MAX } from '../protocol/limits.js';
import type { Request } from '../protocol/messages.js';

/** How many queued requests form the next engine call (within the bounds above, always at
 * least one), whether all are plain reads, and how many plain reads it starts with
 * (`readPrefix`, all of them when `readOnly`). */
export function nextBatch(queue: readonly { req: Request }[]): { take: number; readOnly: boolean; readPrefix: number } {
  let keys = 0;
  let readOnly = true;
  let readPrefix = 0;
  let take = 0;
  for (; take < queue.length && take < ENGINE_BATCH_REQUESTS_MAX; take++) {
    const req = queue[take].req;
    const reads: boolean = readOnly && isPlainRead(req);
    keys += keysOf(req);
    if (take > 0 && keys > (reads ? ENGINE_READ_BATCH_KEYS_MAX : ENGINE_WRITE_BATCH_KEYS_MAX)) break;
    readOnly = reads;
    if (readOnly) readPrefix = take + 1;
  }
  return { take, readOnly, readPrefix };
}

/** A read outside any transaction: it changes no state, so it may run beside other reads. */
function isPlainRead(req: Request): boolean {
  switch (req.op) {
    case 'get':
    case 'exists':
    case 'getBatch':
    case 'listPath':
      return req.txn === undefined;
    default:
      return false;
  }
}

function keysOf(req: Request): number {
  switch (req.op) {
    case 'getBatch':
    case 'deleteBatch':
      return req.keys.length;
    case 'putBatch':
      return req.entries.length;
    default:
      return 1;
  }
}
