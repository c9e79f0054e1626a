/**
 * collectGarbage: a full collection of this process's heap between trials.
 *
 * Responsibility: let each trial start without the garbage of the trials before it. Otherwise
 * the bench's own process collects it inside the next trial, charged to whichever system
 * happens to run next: seen (2026-11-28, `--trace-gc`) as old-generation marking steps of
 * 8-20 ms and a 30 ms scavenge in the first second of getBatch after YCSB-F. (getBatch's p99 in
 * full runs stayed at 9-14 ms with it: that is the daemon's collector, bench/FINDINGS.md.)
 *
 * Invariants: both peers get the same treatment (it runs before every trial that runs in this
 * process and before every scan, whatever the system; multi-process trials run in fresh worker
 * processes); a collection is never inside a measured window. The collector is
 * exposed at load (V8's `--expose-gc`, set from here so that `node bench/run.js` needs no flag).
 */

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');

export function collectGarbage() {
  gc();
}
