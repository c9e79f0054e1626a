/**
 * PackedArray: the elements of a MessagePack array, already encoded, as the engine returns them
 * (engine/src/core/wire.rs): a scan batch's `entries` (each a fixarray of 2 followed by two
 * `bin`s, or for a scan opened `withExpiry` a fixarray of 3 whose third element is a `float 64`
 * or nil) or a getBatch's values (each a `bin`, or nil where missing); and, the other way, a
 * getBatch's or deleteBatch's keys as the daemon reads them from a request (each a `bin`, in
 * whatever bin form the client wrote).
 *
 * Responsibility: carry `count` elements in their encoded bytes (for a reply, exactly what
 * MessageCodec writes: the smallest `bin` forms), so the daemon copies `bytes` into its reply
 * as one block instead of handling each key and value (simple-replies.ts writes it), and a
 * request's keys into its engine call as one block (engine/abi.ts); check them without making
 * anything of them; and turn them back into values where something needs them.
 *
 * Invariants: `toEntries` / `toValues` accept exactly `count` well-formed elements of their kind
 * and nothing after them; what they return are views of `bytes`. Pure: no I/O.
 */

import { FIXARRAY, MsgpackReader, NIL } from './msgpack-forms.js';

/** How many items a list holds, whether it came as an array or packed. */
export function countOf(items: PackedArray | readonly unknown[]): number {
  return items instanceof PackedArray ? items.count : items.length;
}

/** A scan entry: `[key, value]`, or `[key, value, expiresAtMs | null]` with `withExpiry`. */
export type PackedEntry = [Buffer, Buffer] | [Buffer, Buffer, number | null];

export class PackedArray {
  constructor(
    readonly count: number,
    readonly bytes: Buffer,
  ) {}

  /** A copy without the elements whose bytes are `ranges` (in order, not overlapping, each
   * exactly one element, as the engine reports a batch's entries that carry a TTL). */
  without(ranges: readonly { start: number; end: number }[]): PackedArray {
    if (ranges.length === 0) return this;
    let kept = this.bytes.length;
    let end = 0;
    for (const range of ranges) {
      if (range.start < end || range.end <= range.start || range.end > this.bytes.length) {
        throw new Error(`invariant: element range ${range.start}..${range.end} out of order or out of ${this.bytes.length} bytes`);
      }
      kept -= range.end - range.start;
      end = range.end;
    }
    const bytes = Buffer.allocUnsafe(kept);
    let from = 0;
    let at = 0;
    for (const range of ranges) {
      at += this.bytes.copy(bytes, at, from, range.start);
      from = range.end;
    }
    this.bytes.copy(bytes, at, from);
    return new PackedArray(this.count - ranges.length, bytes);
  }

  /** The elements as scan entries: `[key, value]` pairs or `[key, value, expiry]` triples.
   * Throws if `bytes` is not exactly `count` such entries. For tests, diagnostics and the codec
   * path; the daemon never needs them. */
  toEntries(): PackedEntry[] {
    const reader = this.reader();
    const entries = new Array<PackedEntry>(this.count);
    for (let i = 0; i < this.count; i++) {
      const isTriple = reader.sees(TRIPLE_HEADER);
      const isEntry = reader.literal(isTriple ? TRIPLE_HEADER : PAIR_HEADER);
      const key = isEntry ? reader.bin() : null;
      const value = key !== null ? reader.bin() : null;
      if (key === null || value === null) throw new Error(`invariant: packed entry ${i} of ${this.count} is not a [bin, bin] pair or triple`);
      if (!isTriple) {
        entries[i] = [key, value];
        continue;
      }
      const isNil = reader.sees(NIL_BYTE);
      if (isNil) reader.at += 1;
      const expiry = isNil ? null : reader.float64();
      if (expiry === undefined) throw new Error(`invariant: packed entry ${i} of ${this.count} has an expiry that is neither float 64 nor nil`);
      entries[i] = [key, value, expiry];
    }
    return this.checkedEnd(reader, entries);
  }

  /** The elements as values, null for nil (getBatch). Throws if `bytes` is not exactly `count`
   * bins or nils. */
  toValues(): (Buffer | null)[] {
    const reader = this.reader();
    const values = new Array<Buffer | null>(this.count);
    for (let i = 0; i < this.count; i++) {
      if (this.bytes[reader.at] === NIL) {
        reader.at += 1;
        values[i] = null;
        continue;
      }
      const value = reader.bin();
      if (value === null) throw new Error(`invariant: packed value ${i} of ${this.count} is neither bin nor nil`);
      values[i] = value;
    }
    return this.checkedEnd(reader, values);
  }

  /** The elements' total length if they are exactly `count` bins (no nil) of `lengthMin` to
   * `lengthMax` bytes each; -1 otherwise. Makes nothing of them: how the daemon checks the keys
   * of a getBatch or deleteBatch it read packed. */
  binBytesWithin(lengthMin: number, lengthMax: number): number {
    const reader = this.reader();
    let total = 0;
    for (let i = 0; i < this.count; i++) {
      const length = reader.skipBinLength();
      if (length < lengthMin || length > lengthMax) return -1;
      total += length;
    }
    return reader.done ? total : -1;
  }

  private reader(): MsgpackReader {
    const reader = new MsgpackReader();
    reader.reset(this.bytes, 0);
    return reader;
  }

  private checkedEnd<T>(reader: MsgpackReader, items: T): T {
    if (!reader.done) throw new Error(`invariant: packed array has ${this.bytes.length - reader.at} trailing bytes`);
    return items;
  }
}

const PAIR_HEADER = Buffer.from([FIXARRAY | 2]);
const TRIPLE_HEADER = Buffer.from([FIXARRAY | 3]);
const NIL_BYTE = Buffer.from([NIL]);

/** `result` as MessageCodec can encode it: a PackedArray (getBatch values, or a scan batch's
 * entries) becomes its values or pairs. For the rare reply the hand-written writers refuse. */
export function encodableResult(result: unknown): unknown {
  if (result instanceof PackedArray) return result.toValues();
  if (typeof result !== 'object' || result === null || !('entries' in result)) return result;
  const { entries } = result as { entries: unknown };
  return entries instanceof PackedArray ? { ...result, entries: entries.toEntries() } : result;
}
