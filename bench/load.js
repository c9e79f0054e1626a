/**
 * Bulk loading: write keys `prefix + 0 .. count-1`, in batches, each with `valueOf(index)` (one
 * fixed VALUE unless given).
 *
 * Responsibility: the one loader behind both the preload of the point workloads and the
 * measured bulk-load workload, so both write identical keys and values to every system.
 *
 * Invariants:
 * - Chunks are disjoint and cover 0..count-1 exactly once; `inFlight` chunks are outstanding
 *   at a time (a closed loop), each one putBatch (toondb) / MSET (Redis) call.
 * - The first failing call stops further chunks and is rethrown after the others settle.
 * - keys/s is count over the wall time of the whole load; latency is per batch call.
 */

import { Histogram } from './stats.js';
import { VALUE, keyName } from './workloads.js';

export async function bulkLoad(driver, prefix, count, { chunkKeys, inFlight }, valueOf = () => VALUE) {
  const histogram = new Histogram();
  let next = 0;
  let failure = null;
  const slot = async () => {
    while (next < count && !failure) {
      const first = next;
      const end = Math.min(count, first + chunkKeys);
      next = end;
      const keys = new Array(end - first);
      const values = new Array(end - first);
      for (let i = first; i < end; i++) {
        keys[i - first] = keyName(prefix, i);
        values[i - first] = valueOf(i);
      }
      const t0 = process.hrtime.bigint();
      try {
        await driver.putBatch(keys, values);
      } catch (error) {
        failure ??= error;
        return;
      }
      histogram.record(Number(process.hrtime.bigint() - t0));
    }
  };
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: inFlight }, slot));
  const elapsedNs = Number(process.hrtime.bigint() - t0);
  if (failure) throw failure;
  return { keysPerSecond: count / (elapsedNs / 1e9), elapsedNs, histogram };
}
