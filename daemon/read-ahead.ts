/**
 * Read-ahead of snapshot scans: a cursor's next batches are read while earlier ones travel.
 *
 * Responsibility: once the daemon answers a batch of a snapshot cursor (a scan outside any
 * transaction) and more entries follow, it keeps up to SCAN_READ_AHEAD_BATCHES further batches
 * read or being read, one engine call after the other, so the engine works while replies cross
 * the socket, the client decodes them and its scanNext requests come back; each scanNext is
 * answered with the oldest batch read ahead. A streamed scan stops being one engine call, one
 * reply and one client decode in a row per batch.
 *
 * Invariants:
 * - Only snapshot cursors are read ahead: their batches are fixed when the scan opens, so reading
 *   one early shows nothing a client could tell apart. Cursors inside a transaction never are
 *   (its later writes must show in later batches).
 * - Batches of a cursor are read one engine call at a time, in order, and handed out in that
 *   order; at most SCAN_READ_AHEAD_BATCHES are held or being read per cursor, and at most
 *   SCAN_READ_AHEAD_BATCHES_PER_CONNECTION_MAX across the connection's cursors (each at most
 *   scanBatchBytesMax). A cursor over the budget is simply read on demand.
 * - While a read-ahead runs it owns the engine cursor: a scanNext takes the oldest read (and
 *   waits for it), while a scanClose or a release on expiry or disconnect takes all of them and
 *   acts only once the last has settled, so the engine never sees two calls on one cursor.
 * - A read never rejects: an engine failure is its result (a coded EngineResult), which the
 *   scanNext that takes it reports as it would its own. Nothing more is read after a result
 *   that left the cursor closed (done or failed).
 */

import type { EngineResult } from '../engine/types.js';
import { SCAN_READ_AHEAD_BATCHES, SCAN_READ_AHEAD_BATCHES_PER_CONNECTION_MAX } from '../protocol/limits.js';

/** True if the engine cursor is still open after this scanOpen / scanNext result. */
export function leavesCursorOpen(result: EngineResult): boolean {
  return result.code === undefined && result.done !== true;
}

/** The reads of one cursor: oldest first; the last may still be running. */
interface CursorReads {
  queue: Promise<EngineResult>[];
  reading: boolean;
  /** False once a read left the engine cursor closed: nothing more is read. */
  open: boolean;
}

export class ScanReadAhead {
  private readonly cursors = new Map<number, CursorReads>();
  private running = 0;
  /** Reads held or running across all cursors (the per-connection budget). */
  private held = 0;

  /** `read` runs one scanNext of the cursor in the engine and resolves its result, never
   * rejecting. */
  constructor(private readonly read: (cursor: number) => Promise<EngineResult>) {}

  /** Reads held or running across all cursors. */
  get heldBatches(): number {
    return this.held;
  }

  /** True while an engine call of a read-ahead is in progress. */
  get busy(): boolean {
    return this.running > 0;
  }

  /** Reads ahead on `cursor`, whose last batch was just answered and left it open, up to the
   * depth (new cursor, or one whose oldest read was just taken). */
  start(cursor: number): void {
    let reads = this.cursors.get(cursor);
    if (reads === undefined) {
      reads = { queue: [], reading: false, open: true };
      this.cursors.set(cursor, reads);
    }
    this.fill(cursor, reads);
  }

  private fill(cursor: number, reads: CursorReads): void {
    if (reads.reading || !reads.open || reads.queue.length >= SCAN_READ_AHEAD_BATCHES) return;
    if (this.held >= SCAN_READ_AHEAD_BATCHES_PER_CONNECTION_MAX) return;
    this.held += 1;
    reads.reading = true;
    this.running += 1;
    const read = this.read(cursor).then((result) => {
      this.running -= 1;
      reads.reading = false;
      reads.open = leavesCursorOpen(result);
      if (this.cursors.get(cursor) === reads) this.fill(cursor, reads);
      return result;
    });
    reads.queue.push(read);
  }

  /** Removes and returns the oldest read of `cursor` (for its scanNext), if it has one. */
  takeNext(cursor: number): Promise<EngineResult> | undefined {
    const reads = this.cursors.get(cursor);
    const next = reads?.queue.shift();
    if (next !== undefined) this.held -= 1;
    if (reads !== undefined && reads.queue.length === 0 && !reads.reading) this.cursors.delete(cursor);
    return next;
  }

  /** Removes every read of `cursor` (for its scanClose); resolves, once they have all settled,
   * with the result of the last, which says whether the engine cursor is still open. */
  takeAll(cursor: number): Promise<EngineResult> | undefined {
    const reads = this.cursors.get(cursor);
    if (reads === undefined) return undefined;
    this.cursors.delete(cursor);
    this.held -= reads.queue.length;
    return reads.queue.at(-1);
  }

  /**
   * For cursors about to be closed (expired, or their connection closed): returns the ones with
   * no read-ahead, free to close now, and takes the reads of each other one, passing the cursor
   * to `closeLater` once they have settled if they left it open.
   */
  closable(cursors: number[], closeLater: (cursor: number) => void): number[] {
    return cursors.filter((cursor) => {
      const last = this.takeAll(cursor);
      if (last === undefined) return true;
      void last.then((result) => {
        if (leavesCursorOpen(result)) closeLater(cursor);
      });
      return false;
    });
  }
}
