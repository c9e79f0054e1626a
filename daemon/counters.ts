/**
 * Daemon-wide counters reported by `stats`.
 *
 * Responsibility: one mutable record of everything the daemon counts (connections, requests by
 * family, bytes, transactions, checkpoints, syncs) plus the latency histogram. Sessions and the
 * durability gate increment it; `handlers/admin.ts` turns it into a StatsResult.
 *
 * Invariants: counters only grow, except the `active*` gauges, which sessions keep equal to
 * the live number of connections/transactions/cursors.
 */

import type { OpFamily } from '../protocol/messages.js';
import { LatencyHistogram } from './latency.js';

export class Counters {
  readonly startedAtMs = Date.now();
  connectionsActive = 0;
  connectionsTotal = 0;
  connectionsRefused = 0;
  requestsTotal = 0;
  requestErrors = 0;
  /** Data requests answered from the engine's row cache on the JS thread. */
  requestsFromMemory = 0;
  /** scanNext requests answered with a batch read ahead (daemon/read-ahead.ts). */
  scanBatchesReadAhead = 0;
  readonly requestsByFamily: Record<OpFamily, number> = { admin: 0, kv: 0, batch: 0, scan: 0, txn: 0 };
  bytesIn = 0;
  bytesOut = 0;
  txnsActive = 0;
  txnsCommitted = 0;
  txnsAborted = 0;
  txnConflicts = 0;
  cursorsOpen = 0;
  lastCheckpoint: { atMs: number; lsn: bigint; durationMs: number } | null = null;
  readonly latency = new LatencyHistogram();
}
