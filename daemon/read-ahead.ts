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
 *   order; at most SCAN_READ_AHEAD_BATCHES are held or being read per cursor.
 * - Memory is bounded in bytes, per connection (SCAN_READ_AHEAD_BYTES_PER_CONNECTION_MAX) and
 *   across the daemon (SCAN_READ_AHEAD_BYTES_MAX, one ReadAheadBudget shared by all sessions): a
 *   read starts only if both budgets have room for a whole batch (scanBatchBytesMax), holds that
 *   much while it runs, then the size of the batch it read (which may pass scanBatchBytesMax by
 *   one entry), until its scanNext takes it or the cursor is released. A cursor that finds no
 *   room is simply read on demand.
 * - While a read-ahead runs it owns the engine cursor: a scanNext takes the oldest read (and
 *   waits for it), while a scanClose or a release on expiry or disconnect takes all of them and
 *   acts only once the last has settled, so the engine never sees two calls on one cursor.
 * - A read never rejects: an engine failure is its result (a coded EngineResult), which the
 *   scanNext that takes it reports as it would its own. Nothing more is read after a result
 *   that left the cursor closed (done or failed).
 */

import type { EngineResult } from '../engine/types.js';
import { PackedArray } from '../protocol/packed-array.js';
import { SCAN_READ_AHEAD_BATCHES, SCAN_READ_AHEAD_BYTES_PER_CONNECTION_MAX } from '../protocol/limits.js';

/** True if the engine cursor is still open after this scanOpen / scanNext result. */
export function leavesCursorOpen(result: EngineResult): boolean {
  return result.code === undefined && result.done !== true;
}

/** Bytes a batch read ahead keeps in memory until it is sent: its entries in wire form. */
function batchBytes(result: EngineResult): number {
  return result.entries instanceof PackedArray ? result.entries.bytes.length : 0;
}

/** Bytes that batches read ahead may hold: one per connection, and one for the whole daemon. */
export class ReadAheadBudget {
  private bytes = 0;

  constructor(readonly bytesMax: number) {}

  get heldBytes(): number {
    return this.bytes;
  }

  hasRoom(bytes: number): boolean {
    return this.bytes + bytes <= this.bytesMax;
  }

  /** Moves a hold from `from` to `to` bytes (take: from 0; give back: to 0). */
  change(from: number, to: number): void {
    this.bytes += to - from;
    if (this.bytes < 0) throw new Error(`invariant: read-ahead budget went negative (${this.bytes} bytes)`);
  }
}

/** One read of a cursor: its result, and the bytes it holds in both budgets until it is taken. */
interface Read {
  result: Promise<EngineResult>;
  bytes: number;
  taken: boolean;
}

/** The reads of one cursor: oldest first; the last may still be running. */
interface CursorReads {
  queue: Read[];
  reading: boolean;
  /** False once a read left the engine cursor closed: nothing more is read. */
  open: boolean;
}

export class ScanReadAhead {
  private readonly cursors = new Map<number, CursorReads>();
  private running = 0;
  private readonly connection = new ReadAheadBudget(SCAN_READ_AHEAD_BYTES_PER_CONNECTION_MAX);

  /**
   * `read` runs one scanNext of the cursor in the engine and resolves its result, never
   * rejecting; `shared` is the daemon-wide budget; `batchBytesMax` gives the live
   * scanBatchBytesMax, what a read holds while it runs.
   */
  constructor(
    private readonly read: (cursor: number) => Promise<EngineResult>,
    private readonly shared: ReadAheadBudget,
    private readonly batchBytesMax: () => number,
  ) {}

  /** Reads held or running across all cursors (counted on demand: a batch may hold 0 bytes). */
  get heldBatches(): number {
    let reads = 0;
    for (const cursor of this.cursors.values()) reads += cursor.queue.length;
    return reads;
  }

  /** Bytes held by this connection's reads (running ones count a whole batch). */
  get heldBytes(): number {
    return this.connection.heldBytes;
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
    const bytes = this.batchBytesMax();
    if (!this.connection.hasRoom(bytes) || !this.shared.hasRoom(bytes)) return;
    this.hold(0, bytes);
    reads.reading = true;
    this.running += 1;
    const read: Read = {
      bytes,
      taken: false,
      result: this.read(cursor).then((result) => {
        this.running -= 1;
        reads.reading = false;
        reads.open = leavesCursorOpen(result);
        if (!read.taken) {
          const size = batchBytes(result);
          this.hold(read.bytes, size);
          read.bytes = size;
        }
        if (this.cursors.get(cursor) === reads) this.fill(cursor, reads);
        return result;
      }),
    };
    reads.queue.push(read);
  }

  private hold(from: number, to: number): void {
    this.connection.change(from, to);
    this.shared.change(from, to);
  }

  /** Gives back what a read holds; it is the caller's from now on. */
  private take(read: Read): Promise<EngineResult> {
    read.taken = true;
    this.hold(read.bytes, 0);
    read.bytes = 0;
    return read.result;
  }

  /** Removes and returns the oldest read of `cursor` (for its scanNext), if it has one. */
  takeNext(cursor: number): Promise<EngineResult> | undefined {
    const reads = this.cursors.get(cursor);
    const next = reads?.queue.shift();
    if (reads !== undefined && reads.queue.length === 0 && !reads.reading) this.cursors.delete(cursor);
    return next === undefined ? undefined : this.take(next);
  }

  /** Removes every read of `cursor` (for its scanClose); resolves, once they have all settled,
   * with the result of the last, which says whether the engine cursor is still open. */
  takeAll(cursor: number): Promise<EngineResult> | undefined {
    const reads = this.cursors.get(cursor);
    if (reads === undefined) return undefined;
    this.cursors.delete(cursor);
    const results = reads.queue.map((read) => this.take(read));
    return results.at(-1);
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
