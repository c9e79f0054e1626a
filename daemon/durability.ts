/**
 * Group commit: holds replies until the journal fsync that covers them has completed.
 *
 * Responsibility: implement the three durability modes on top of the engine's tickets
 * (see engine/types.ts). Every engine result carries a ticket `seq`; in `sync` mode a reply is
 * released only once `engine.durableSeq() >= seq`, for writes (the write is on stable storage)
 * and for reads alike (a read never shows a write that a crash could still take back).
 *
 * How sharing works: the engine's group-commit thread (engine/src/core/syncer.rs) fsyncs the
 * journal back to back while a requested ticket is not durable, without holding fjall's
 * journal lock, so commits go on during a fsync. Each fsync covers every write that returned
 * before it started: the fsync rate stays at one per fsync latency however many writers there
 * are, and throughput grows with concurrency. After fsyncs complete the thread calls
 * `onSynced`, which releases every waiter the durable ticket now covers.
 *
 * Modes:
 * - sync: as above.
 * - interval: every `syncIntervalMs`, if anything was written, ask the thread for a fsync;
 *   replies are not held. A crash (power loss) can lose writes acknowledged in the last
 *   interval; kill -9 of the daemon loses nothing (writes reach the OS at commit).
 * - off: never fsync except at checkpoint and shutdown; the OS writes back when it likes.
 * In `sync` mode a write no reply waits for (the TTL sweep's) is fsynced when its writer asks
 * (`syncIfBehind`).
 *
 * Invariants: waiters are bounded by the daemon's in-flight limits; a failed fsync rejects
 * every waiter with STORAGE_FAILED and fails the gate (the engine refuses further writes);
 * replies whose data was already durable are still released; the fatal alarm fires once.
 */

import type { Engine } from '../engine/types.js';
import type { Durability } from '../protocol/messages.js';
import { ToonDBError } from '../protocol/errors.js';

interface Waiter {
  seq: number;
  resolve: () => void;
  reject: (error: ToonDBError) => void;
}

export class DurabilityGate {
  private waiters: Waiter[] = [];
  private failure: ToonDBError | null = null;
  private storageFailureReported = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly engine: Engine,
    readonly mode: Durability,
    intervalMs: number,
    private readonly onFatal: (error: ToonDBError) => void,
  ) {
    if (mode === 'off') return;
    engine.startSyncer((error) => (error === null ? this.onSynced() : this.onSyncFailed(error)));
    if (mode === 'interval') {
      this.timer = setInterval(() => this.syncIfBehind(), intervalMs);
      this.timer.unref();
    }
  }

  /** Null when nothing needs waiting for (the common read path), else a promise. */
  waitFor(seq: number): Promise<void> | null {
    if (this.mode !== 'sync') return null;
    // Already durable data stays readable after a failure; only what is not durable fails.
    if (this.engine.durableSeq() >= seq) return null;
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ seq, resolve, reject });
      this.engine.requestSync(seq);
    });
  }

  /** Replies waiting for a fsync (only in `sync` mode): how many writers the group commit serves. */
  get waiting(): number {
    return this.waiters.length;
  }

  get pendingWrites(): number {
    return Math.max(0, this.engine.writtenSeq() - this.engine.durableSeq());
  }

  private onSynced(): void {
    if (this.waiters.length === 0) return;
    const durable = this.engine.durableSeq();
    const still: Waiter[] = [];
    for (const waiter of this.waiters) {
      if (waiter.seq <= durable) waiter.resolve();
      else still.push(waiter);
    }
    this.waiters = still;
  }

  private onSyncFailed(error: ToonDBError): void {
    const failure = error.code === 'DISK_FULL' || error.code === 'STORAGE_FAILED'
      ? error
      : new ToonDBError('STORAGE_FAILED', `journal fsync failed: ${error.message}`, { cause: error });
    this.failure = failure;
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter.reject(failure);
    this.reportStorageFailure(failure);
  }

  /**
   * Storage failed (a journal write or fsync, or a flush or compaction; the engine refuses writes from now on): raise the alarm
   * once, however many requests fail after it. Called by the gate itself for a failed fsync and
   * by sessions for a commit that failed with DISK_FULL / STORAGE_FAILED.
   */
  reportStorageFailure(error: ToonDBError): void {
    if (this.storageFailureReported) return;
    this.storageFailureReported = true;
    this.onFatal(error);
  }

  /** Asks for a fsync of everything written so far if some of it is not durable yet: on the
   * interval timer, and in `sync` mode after writes no reply waits for (the TTL sweep's), which
   * would otherwise stay unsynced, and counted pending, until a client writes again. */
  syncIfBehind(): void {
    if (this.failure || this.mode === 'off') return;
    const written = this.engine.writtenSeq();
    if (written > this.engine.durableSeq()) this.engine.requestSync(written);
  }

  /** Stops the interval timer and fails any waiter (used at shutdown after draining; the
   * engine's close ends the group-commit thread). */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter.reject(new ToonDBError('SHUTTING_DOWN', 'daemon is shutting down'));
  }
}
