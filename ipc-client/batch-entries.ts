/**
 * BatchEntries: one scan batch's entries, handed to the iterator one at a time.
 *
 * Responsibility: give ScanCursor the same two calls (`left`, `take`) whether the connection
 * read the batch packed (the simple reader: `[bin, bin]` pairs in one block of bytes, already
 * checked) or decoded it with MessageCodec (an array of entries, e.g. a scan `withExpiry`).
 * A packed batch is unpacked as it is consumed: each entry's key, value and pair are made by
 * `take`, so they die young unless the caller keeps them. Unpacked all at once, a batch of
 * 8192 entries was ~25k objects alive until its last entry was used: every scavenge copied
 * them and promoted what it had copied before, and in a process whose old generation V8 had
 * shrunk (one mostly idle before the scan, such as a long-running service) that meant a
 * mark-compact every second scavenge: the bench's client spent ~1.3 s of CPU per 1M-entry scan
 * instead of ~0.65 s.
 *
 * Invariants:
 * - A packed batch's bytes are the batch's own (the frame the connection gathered from several
 *   reads, which FrameDecoder never writes again, or a copy out of the reused read buffer), and
 *   hold exactly `count` `[bin, bin]` pairs (simple-replies.ts readPackedPairs checked them);
 *   bytes that are not is a broken invariant and throws.
 * - Keys and values handed out never alias the batch's bytes: they are copies (ValueCopier's
 *   windows), so a kept value pins at most one pool slab, not a whole batch.
 */

import { FIXARRAY, MsgpackReader } from '../protocol/msgpack-forms.js';
import type { PackedArray } from '../protocol/packed-array.js';
import { ValueCopier } from './bytes.js';
import type { ScanEntry } from './scan.js';

export interface BatchEntries {
  /** Entries not handed out yet. */
  readonly left: number;
  /** The next entry; only while `left > 0`. */
  take(): ScanEntry;
}

/** A batch decoded by MessageCodec: its entries as they are. */
export class ListedEntries implements BatchEntries {
  private index = 0;

  constructor(private readonly entries: ScanEntry[]) {}

  get left(): number {
    return this.entries.length - this.index;
  }

  take(): ScanEntry {
    return this.entries[this.index++];
  }
}

/** A batch read packed: each entry unpacked when it is taken. */
export class PackedEntries implements BatchEntries {
  left: number;
  private readonly reader = new MsgpackReader();
  private readonly values = new ValueCopier();

  constructor(packed: PackedArray) {
    this.left = packed.count;
    this.reader.reset(packed.bytes, 0, this.values.copy);
  }

  take(): ScanEntry {
    const reader = this.reader;
    if (this.left <= 0 || reader.body[reader.at] !== (FIXARRAY | 2)) throw new Error('invariant: a packed scan entry is not a [bin, bin] pair');
    reader.at += 1;
    const key = reader.bin();
    const value = reader.bin();
    if (key === null || value === null) throw new Error('invariant: a packed scan entry is not a [bin, bin] pair');
    if (--this.left === 0) this.values.reset();
    return [key, value];
  }
}

/** No entries (before the first batch, and once a cursor is finished). */
export const NO_ENTRIES: BatchEntries = new ListedEntries([]);
