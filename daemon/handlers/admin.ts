/**
 * Handlers of the `admin` family: hello, ping, stats, checkpoint, shutdown.
 *
 * Responsibility: answer requests about the daemon itself. Unlike data ops these do not go
 * through the engine's batch path; they run in request order between batches of data ops (so a
 * checkpoint covers every write sent before it on the same connection).
 *
 * Invariants: `stats` reports live figures only (nothing cached or invented); hello refuses an
 * incompatible protocol version with VERSION_MISMATCH.
 */

import type { BytesBudget } from '../bytes-budget.js';
import type { CheckpointRuns } from '../checkpoints.js';
import type { HandleCount } from '../registry.js';
import type { Engine } from '../../engine/types.js';
import { ToonDBError } from '../../protocol/errors.js';
import { PROTOCOL_VERSION, PROTOCOL_VERSION_MIN, type ServerLimits } from '../../protocol/limits.js';
import type { HelloRequest, HelloResult, PingResult, Request, StatsResult } from '../../protocol/messages.js';
import type { DaemonConfig } from '../config.js';
import type { Counters } from '../counters.js';
import type { DurabilityGate } from '../durability.js';
import type { ReadAheadBudget } from '../read-ahead.js';

/** What admin handlers may see of the daemon. */
export interface DaemonContext {
  readonly version: string;
  readonly config: DaemonConfig;
  readonly engine: Engine;
  /** Clients' checkpoints, one at a time and shared (daemon/checkpoints.ts). */
  readonly checkpoints: CheckpointRuns;
  readonly gate: DurabilityGate;
  readonly counters: Counters;
  /** Bytes that scan reads ahead may hold across all connections (daemon/read-ahead.ts). */
  readonly readAheadBudget: ReadAheadBudget;
  /** Request bytes in flight across all connections (bytes-budget.ts). */
  readonly requestBudget: BytesBudget;
  /** Reply bytes unread or reserved across all connections (reply-budget.ts). */
  readonly replyBudget: BytesBudget;
  /** Open transactions and cursors across all connections (registry.ts; txnsDaemonMax,
   * cursorsDaemonMax). */
  readonly txnCount: HandleCount;
  readonly cursorCount: HandleCount;
  /** The next engine transaction handle: one sequence for the whole daemon (SessionScope). */
  readonly takeTxnHandle: () => number;
  /** Live limits (SIGHUP may reload them). */
  limits(): ServerLimits;
  /** Connections served at once (connectionsMax as the open-files limit leaves it). */
  connectionsMax(): number;
  /** Connections open now by peer uid (daemon/admission.ts). */
  connectionsByUid(): Record<string, number>;
  /** True once a graceful shutdown has begun: new requests get SHUTTING_DOWN. */
  shuttingDown(): boolean;
  /** Begins a graceful shutdown, as SIGTERM does. */
  requestShutdown(reason: string): void;
}

/** The result of admin request `req` (hello, ping, stats, checkpoint, shutdown) on connection
 * `connection` (its id, and whether its peer is an operator: the daemon's own uid or root),
 * whose first hello set protocol version `protocol` (undefined before it was accepted); throws
 * a coded error when it fails. */
export async function answer(req: Request, ctx: DaemonContext, connection: { id: number; operator: boolean }, limits: ServerLimits,
  protocol?: number): Promise<unknown> {
  switch (req.op) {
    case 'hello': return hello(req, ctx, connection.id, limits, protocol);
    case 'ping': return ping(ctx);
    case 'stats': return stats(ctx);
    case 'checkpoint': return checkpoint(ctx);
    case 'shutdown':
      // Other users the socket's group or the allow-lists let in share the daemon; stopping it
      // for all of them is its operators' call, as a service manager's stop would be.
      if (!connection.operator) {
        throw new ToonDBError('ACCESS_DENIED', `shutdown is for the daemon's own user (uid ${process.getuid?.() ?? '?'}) and root`);
      }
      ctx.requestShutdown(`shutdown requested by connection ${connection.id}`);
      return null;
    default:
      throw new Error(`invariant: ${req.op} is not an admin op`);
  }
}

/** `limits`: the ones this connection runs under (fixed when it was accepted; a reload applies
 * to later connections), which it announces. `established`: the version an earlier hello of
 * the connection set, if one was accepted. */
export function hello(req: HelloRequest, ctx: DaemonContext, connectionId: number, limits: ServerLimits, established?: number): HelloResult {
  if (req.protocol < PROTOCOL_VERSION_MIN || req.protocol > PROTOCOL_VERSION) {
    throw new ToonDBError('VERSION_MISMATCH', `daemon speaks protocol ${PROTOCOL_VERSION_MIN}..${PROTOCOL_VERSION}, client asked for ${req.protocol}`);
  }
  // Answered in the client's version: every version up to ours is a subset of it. A later hello
  // changes nothing (PROTOCOL.md Handshake), so it names the version the first one set.
  return { protocol: established ?? req.protocol, server: ctx.version, connectionId, limits };
}

export function ping(ctx: DaemonContext): PingResult {
  return { version: ctx.version, timeMs: Date.now() };
}

export async function checkpoint(ctx: DaemonContext): Promise<{ lsn: bigint; durationMs: number }> {
  const report = await ctx.checkpoints.request();
  ctx.counters.lastCheckpoint = { atMs: Date.now(), lsn: report.lsn, durationMs: report.durationMs };
  return { lsn: report.lsn, durationMs: report.durationMs };
}

export async function stats(ctx: DaemonContext): Promise<StatsResult> {
  const engine = await ctx.engine.stats();
  const c = ctx.counters;
  return {
    version: ctx.version,
    pid: process.pid,
    uptimeMs: Date.now() - c.startedAtMs,
    socketPath: ctx.config.socketPath,
    dataDir: ctx.config.dataDir,
    durability: ctx.config.durability,
    connections: { active: c.connectionsActive, total: c.connectionsTotal, refused: c.connectionsRefused, max: ctx.connectionsMax(), byUid: ctx.connectionsByUid() },
    requests: { total: c.requestsTotal, errors: c.requestErrors, fromMemory: c.requestsFromMemory, byFamily: { ...c.requestsByFamily } },
    bytes: {
      in: c.bytesIn,
      out: c.bytesOut,
      inFlight: ctx.requestBudget.heldBytes,
      inFlightWaiting: ctx.requestBudget.waiters,
      replies: ctx.replyBudget.heldBytes,
      repliesWaiting: ctx.replyBudget.waiters,
    },
    transactions: {
      active: engine.openTransactions,
      bytes: engine.transactionBytes,
      committed: c.txnsCommitted,
      aborted: c.txnsAborted,
      conflicts: c.txnConflicts,
    },
    cursors: { open: engine.openCursors, readAhead: c.scanBatchesReadAhead, readAheadBytes: ctx.readAheadBudget.heldBytes },
    engine: {
      approximateKeys: engine.approximateKeys,
      diskBytes: engine.diskBytes,
      journalBytes: engine.journalBytes,
      journalCount: engine.journalCount,
      writeBufferBytes: engine.writeBufferBytes,
      seqno: engine.seqno,
      rowCacheRows: engine.rowCacheRows,
      rowCacheBytes: engine.rowCacheBytes,
      rowCacheQueuedKeys: engine.rowCacheQueuedKeys,
    },
    durable: { syncs: engine.journalSyncs, lastSyncMs: engine.lastJournalSyncMs, pendingWrites: ctx.gate.pendingWrites, watermarkFailures: engine.watermarkFailures },
    checkpoint: { last: c.lastCheckpoint },
    latency: c.latency.snapshot(),
  };
}
