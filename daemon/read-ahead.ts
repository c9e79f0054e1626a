/**
 * Read-ahead of snapshot scans: a cursor's next batch is read while the previous one travels.
 *
 * Responsibility: once the daemon answers a batch of a snapshot cursor (a scan outside any
 * transaction) and more entries follow, it starts reading the next batch at once, so the engine
 * works while the reply crosses the socket, the client decodes it and its `scanNext` comes back;
 * that `scanNext` is then answered from the batch read ahead. A streamed scan stops being one
 * engine call, one reply and one client decode in a row per batch.
 *
 * Invariants:
 * - Only snapshot cursors are read ahead: their batches are fixed when the scan opens, so reading
 *   one early shows nothing a client could tell apart. Cursors inside a transaction never are
 *   (its later writes must show in later batches).
 * - At most one read-ahead per cursor, holding at most one batch (scanBatchBytesMax), so memory
 *   is bounded by cursorsPerConnectionMax batches per connection.
 * - While a read-ahead runs it owns the engine cursor: every other use of the cursor (its
 *   scanNext, its scanClose, its release on expiry or close) first `take`s the read-ahead and
 *   waits for it, so the engine never sees two calls on one cursor.
 * - A read-ahead never rejects: an engine failure is its result (a coded EngineResult), which
 *   the scanNext that takes it reports as it would its own.
 */

import type { EngineResult } from '../engine/types.js';

/** True if the engine cursor is still open after this scanOpen / scanNext result. */
export function leavesCursorOpen(result: EngineResult): boolean {
  return result.code === undefined && result.done !== true;
}

export class ScanReadAhead {
  private readonly reads = new Map<number, Promise<EngineResult>>();
  private running = 0;

  /** `read` runs one scanNext of the cursor in the engine and resolves its result, never
   * rejecting. */
  constructor(private readonly read: (cursor: number) => Promise<EngineResult>) {}

  /** Read-aheads not yet taken. */
  get size(): number {
    return this.reads.size;
  }

  /** True while an engine call of a read-ahead is in progress. */
  get busy(): boolean {
    return this.running > 0;
  }

  /** Starts reading the next batch of `cursor`; it must not have a read-ahead already. */
  start(cursor: number): void {
    if (this.reads.has(cursor)) throw new Error(`invariant: cursor ${cursor} is already read ahead`);
    this.running += 1;
    const read = this.read(cursor).finally(() => {
      this.running -= 1;
    });
    this.reads.set(cursor, read);
  }

  /**
   * For cursors about to be closed (expired, or their connection closed): returns the ones with
   * no read-ahead, free to close now, and takes the read-ahead of each other one, passing the
   * cursor to `closeLater` once that read-ahead settles if it left the cursor open.
   */
  closable(cursors: number[], closeLater: (cursor: number) => void): number[] {
    return cursors.filter((cursor) => {
      const read = this.take(cursor);
      if (read === undefined) return true;
      void read.then((result) => {
        if (leavesCursorOpen(result)) closeLater(cursor);
      });
      return false;
    });
  }

  /** Removes and returns the read-ahead of `cursor`, if it has one. */
  take(cursor: number): Promise<EngineResult> | undefined {
    const read = this.reads.get(cursor);
    if (read !== undefined) this.reads.delete(cursor);
    return read;
  }
}
