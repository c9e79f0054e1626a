/**
 * ScanIterable: a lazily streamed, snapshot-consistent range read.
 *
 * Responsibility: turn the cursor protocol (`scan` -> first batch, `scanNext` -> next batch,
 * `scanClose` -> give up early) into an AsyncIterable of [key, value] pairs.
 *
 * Invariants:
 * - Lazy and bounded: nothing is sent until the first `next()`. When a batch arrives and more
 *   follow, the `scanNext` for the one after it is sent at once (one batch of prefetch) if the
 *   source allows it, so the daemon reads and ships batch n+1 while the consumer works through
 *   batch n: at most two batches are held, and a steady scan is not one idle round trip per
 *   batch. A transaction's cursor is never prefetched: each of its batches is read when the
 *   consumer reaches it, so it shows the transaction's writes made before that (as the daemon
 *   promises, which reads such a cursor ahead for nobody either).
 * - Each `for await` (each `[Symbol.asyncIterator]()` call) opens a fresh cursor.
 * - A cursor left early (`break`, `return()`, `throw()`, or an error in the loop body) is closed
 *   with a fire-and-forget `scanClose` whose failure is swallowed (the daemon also closes idle
 *   cursors after cursorIdleMsMax, and every cursor dies with its connection or transaction).
 *   An iterator dropped with its cursor open (neither drained nor returned) is closed the same
 *   way once it is garbage-collected (`abandoned`): 64 such iterators held every cursor slot of
 *   their connection until the daemon expired them.
 * - Calls on one iterator are serialised, so overlapping `next()` calls never reorder entries.
 * - Only a batch marked done ends the iteration: one that is not may hold fewer entries than
 *   batchSize, even none (the daemon bounds what one batch examines), and the next is fetched.
 * - Argument errors surface as a rejected first `next()`, like every other failure of a scan.
 * - A connection lost under a later batch fails the iteration with CONNECTION_CLOSED, as every
 *   later call of a scan of a lost connection does (its `scanNext` was in flight, often the
 *   prefetch; UNKNOWN_RESULT's "may have been applied" means nothing for a read).
 */

import { ToonDBError } from '../protocol/errors.js';
import { NO_ENTRIES, type BatchEntries } from './batch-entries.js';
import { parseScanBatch } from './results.js';

export interface ScanOptions {
  /** Descending key order. */
  reverse?: boolean;
  /** Most entries in total; 0 or absent = no limit. */
  limit?: number;
  /** Most entries per round trip, 1..scanBatchItemsMax. Absent (best for streaming): batches
   * grow, batch n holding up to min(256 * 2^n, 8192) entries. */
  batchSize?: number;
  /** Each entry also carries its expiry: `[key, value, expiresAtMs]`, in ms since the Unix
   * epoch, null for a key without TTL (dumps use it). */
  withExpiry?: boolean;
}

/** What a cursor needs from its owner (the client, or a transaction that binds `scan`). */
export interface ScanSource {
  /** Sends `scan` with these fields; resolves with the first batch. */
  open(fields: Record<string, unknown>): Promise<unknown>;
  /** Sends `scanNext`; resolves with the next batch. */
  next(cursor: number): Promise<unknown>;
  /** Sends `scanClose` without waiting; must never reject. */
  close(cursor: number): void;
  /** Whether the next batch may be asked for before the consumer reaches it: false when a
   * later batch must show writes made while the consumer works through this one. */
  readonly prefetch: boolean;
}

/** `[key, value]`; with `withExpiry`, also the key's expiry (ms since the epoch, or null). */
export type ScanEntry = [key: Buffer, value: Buffer, expiresAtMs?: number | null];

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/** What closes an iterator's cursor once the iterator is collected: its source and the open
 * cursor id (0 once finished). Holds nothing of the iterator itself, or it would never be. */
interface OpenCursor {
  source: ScanSource;
  cursor: number;
}

const abandoned = new FinalizationRegistry<OpenCursor>((open) => {
  if (open.cursor !== 0) open.source.close(open.cursor);
});

export class ScanIterable implements AsyncIterable<ScanEntry> {
  /** @internal built by IpcClient.scan / scanRange and their Transaction twins; `source`
   * gives each cursor its own (a client's binds to the connection the cursor opens on). */
  constructor(
    private readonly source: () => ScanSource,
    private readonly fields: () => Record<string, unknown>,
  ) {}

  [Symbol.asyncIterator](): AsyncIterableIterator<ScanEntry> {
    return new ScanCursor(this.source(), this.fields);
  }

  /** Reads the whole scan into memory. Use a `limit` on scans of unknown size. */
  async toArray(): Promise<ScanEntry[]> {
    const all: ScanEntry[] = [];
    for await (const entry of this) all.push(entry);
    return all;
  }
}

class ScanCursor implements AsyncIterableIterator<ScanEntry> {
  /** The current batch's entries not handed out yet. */
  private entries: BatchEntries = NO_ENTRIES;
  /** Open cursor id at the daemon, 0 when there is none (not opened yet, done, or closed). */
  private cursor = 0;
  private started = false;
  private serverDone = false;
  private finished = false;
  private chain: Promise<unknown> = Promise.resolve();
  /** Serialised tasks started and not yet settled. */
  private tasksRunning = 0;
  /** The prefetched `scanNext` reply, if one was requested and not consumed yet. */
  private prefetched: Promise<unknown> | null = null;
  /** Registered with `abandoned` while a cursor is open. */
  private open: OpenCursor | null = null;

  constructor(
    private readonly source: ScanSource,
    private readonly fields: () => Record<string, unknown>,
  ) {}

  [Symbol.asyncIterator](): AsyncIterableIterator<ScanEntry> {
    return this;
  }

  next(): Promise<IteratorResult<ScanEntry, undefined>> {
    // The common case: an entry of the current batch and nothing queued before this call. It
    // is answered at once instead of through the task chain (two promises and a microtask hop
    // per entry otherwise); order is kept because no earlier call is still pending.
    if (this.tasksRunning === 0 && !this.finished && this.entries.left > 0) {
      return Promise.resolve({ done: false, value: this.entries.take() });
    }
    return this.serialise(() => this.step());
  }

  return(): Promise<IteratorResult<ScanEntry, undefined>> {
    return this.serialise(async () => {
      this.finish();
      return DONE;
    });
  }

  throw(error?: unknown): Promise<IteratorResult<ScanEntry, undefined>> {
    return this.serialise(async () => {
      this.finish();
      throw error;
    });
  }

  /** Runs `task` after every earlier one; at once when none is running (so the `scan` a first
   * `next()` sends goes out in call order with the calls made beside it). */
  private serialise<T>(task: () => Promise<T>): Promise<T> {
    this.tasksRunning++;
    const result = this.tasksRunning === 1 ? task() : this.chain.then(task);
    this.chain = result.then(
      () => { this.tasksRunning--; },
      () => { this.tasksRunning--; },
    );
    return result;
  }

  private async step(): Promise<IteratorResult<ScanEntry, undefined>> {
    for (;;) {
      if (this.finished) return DONE;
      if (this.entries.left > 0) return { done: false, value: this.entries.take() };
      this.entries = NO_ENTRIES; // drained: let the batch go before asking for the next one
      if (this.started && this.serverDone) {
        this.finished = true;
        return DONE;
      }
      await this.fetch();
    }
  }

  private async fetch(): Promise<void> {
    const first = !this.started;
    this.started = true;
    try {
      const pending = this.prefetched;
      this.prefetched = null;
      const reply = first ? await this.source.open(this.fields()) : await (pending ?? this.source.next(this.cursor));
      const batch = parseScanBatch(reply, first ? 'scan' : 'scanNext');
      this.entries = batch.entries;
      this.serverDone = batch.done;
      this.cursor = batch.done ? 0 : batch.cursor;
      if (this.cursor !== 0 && this.open === null) {
        this.open = { source: this.source, cursor: this.cursor };
        abandoned.register(this, this.open, this);
      }
      if (this.cursor === 0) this.forgetOpen();
      if (!batch.done && this.source.prefetch) this.prefetch();
    } catch (error) {
      // The cursor may still be open at the daemon (e.g. after a TIMEOUT): close it if it can be.
      const gone = error instanceof ToonDBError && (error.code === 'CURSOR_NOT_FOUND' || error.code === 'NOT_IN_TRANSACTION');
      if (gone) this.cursor = 0;
      this.finish();
      // A batch in flight when the connection dropped: UNKNOWN_RESULT says "may have been
      // applied", which means nothing for a read; the cursor died with its connection.
      if (!first && error instanceof ToonDBError && error.code === 'UNKNOWN_RESULT') {
        throw new ToonDBError('CONNECTION_CLOSED', `the scan's cursor died with its connection (its next batch was in flight: ${error.message})`, { cause: error });
      }
      throw error;
    }
  }

  /** Asks for the next batch now; its failure is reported when (if) it is consumed. */
  private prefetch(): void {
    const pending = this.source.next(this.cursor);
    pending.catch(() => undefined); // consumed (and rethrown) by fetch(), or dropped by finish()
    this.prefetched = pending;
  }

  /** Stops the iteration; closes the daemon's cursor if one is still open. A prefetched
   * `scanNext` may still be in flight: the daemon runs it before the `scanClose` sent after
   * it, and a cursor it already finished makes that close a swallowed CURSOR_NOT_FOUND. */
  private finish(): void {
    this.finished = true;
    this.prefetched = null;
    this.entries = NO_ENTRIES;
    if (this.cursor !== 0 && !this.serverDone) this.source.close(this.cursor);
    this.cursor = 0;
    this.forgetOpen();
  }

  private forgetOpen(): void {
    if (this.open === null) return;
    this.open.cursor = 0;
    abandoned.unregister(this);
    this.open = null;
  }
}
