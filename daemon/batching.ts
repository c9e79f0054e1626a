/**
 * How a connection's queued requests form engine calls, and where each call runs.
 *
 * Responsibility: size the next engine call (at most ENGINE_BATCH_REQUESTS_MAX requests, and
 * ENGINE_READ_BATCH_KEYS_MAX keys for a call of plain reads or ENGINE_WRITE_BATCH_KEYS_MAX for
 * one that may write; always at least one request) and say whether it holds only plain reads,
 * which are the calls that may run beside each other; then route it (daemon/runner.ts pump()):
 * to the libuv pool, to the connection's ordered lane, or nowhere yet.
 *
 * Invariants: pure; the queue is only read. A call never starts beside an earlier call that
 * could write unless both run on the lane, which keeps their order.
 */

import {
  ENGINE_BATCH_REQUESTS_MAX,
  ENGINE_CALLS_PER_CONNECTION_MAX,
  ENGINE_LANE_CALLS_PER_CONNECTION_MAX,
  ENGINE_READ_BATCH_KEYS_MAX,
  ENGINE_WRITE_BATCH_KEYS_MAX,
} from '../protocol/limits.js';
import type { Request } from '../protocol/messages.js';
import { countOf } from '../protocol/packed-array.js';

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
      return countOf(req.keys);
    case 'putBatch':
      return req.entries.length;
    case 'listPath':
      // Up to LIST_PATH_STEPS_MAX seeks: weighed as a full call, it runs in an engine call of its own.
      return ENGINE_WRITE_BATCH_KEYS_MAX;
    default:
      return 1;
  }
}

/** A connection's engine calls in progress: all of them, those that may write, those on its
 * ordered lane (all of which count as writing), those that ended early or were skipped and
 * are running again (`replaying`: see daemon/runner.ts runData), and lane calls waiting for
 * reply room before they reach the lane (`reserving`). */
export interface RunningCalls {
  all: number;
  writes: number;
  onLane: number;
  replaying: number;
  reserving: number;
}

export type Route = 'pool' | 'lane';

/**
 * Where the next call (queue[0, take), `readOnly` as nextBatch said) runs, or null to wait for
 * running calls. Plain reads may run on the pool beside other plain reads (up to
 * ENGINE_CALLS_PER_CONNECTION_MAX). A call that may write goes to the lane once nothing runs;
 * while only lane calls run, any call of data requests queues behind them on the lane (up to
 * ENGINE_LANE_CALLS_PER_CONNECTION_MAX), except while one of them is `replaying`: the rest of a
 * call that ended early, and the calls the engine skipped behind it, must run before anything
 * sent after them; or `reserving`: a call granted reply room resumes a microtask later, and a
 * call started in between (a 'drain' grants it and pumps at once) would reach the lane first.
 * Anything else (admin requests, scans) runs alone.
 */
export function routeOf(running: RunningCalls, queue: readonly { req: Request }[], take: number, readOnly: boolean): Route | null {
  if (running.onLane > 0 && running.onLane === running.all) {
    const mayFollow = running.onLane < ENGINE_LANE_CALLS_PER_CONNECTION_MAX && running.replaying === 0 && running.reserving === 0;
    return mayFollow && isLaneBatch(queue, take) ? 'lane' : null;
  }
  if (running.all === 0) return !readOnly && isLaneBatch(queue, take) ? 'lane' : 'pool';
  return readOnly && running.writes === 0 && running.all < ENGINE_CALLS_PER_CONNECTION_MAX ? 'pool' : null;
}

/** True if queue[0, take) may run on a lane: data requests only, no scans (a scan's cursor may
 * be read ahead on the pool, see read-ahead.ts). */
function isLaneBatch(queue: readonly { req: Request }[], take: number): boolean {
  for (let i = 0; i < take; i++) {
    switch (queue[i].req.op) {
      case 'hello': case 'ping': case 'stats': case 'checkpoint': case 'shutdown':
      case 'scan': case 'scanNext': case 'scanClose':
        return false;
      default:
        continue;
    }
  }
  return true;
}

/** Counts a call starting (+1) or ending (-1) in `running`. */
export function countCall(running: RunningCalls, route: Route, mayWrite: boolean, delta: 1 | -1): void {
  running.all += delta;
  if (mayWrite) running.writes += delta;
  if (route === 'lane') running.onLane += delta;
}
