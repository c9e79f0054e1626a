/**
 * Key and value normalisation, and the client-side size checks.
 *
 * Responsibility: turn the caller's `Bytes` (Uint8Array or UTF-8 string) into Buffers for the
 * wire, and refuse locally, with the daemon's own codes, what the daemon would refuse anyway
 * (KEY_TOO_LARGE, VALUE_TOO_LARGE, BATCH_TOO_LARGE, INVALID_ARGUMENT) using the limits the daemon
 * announced in hello — no round trip, and an oversized value never occupies the socket.
 *
 * Invariants:
 * - A Uint8Array is wrapped, not copied (the caller must not mutate it until the call settles).
 * - Checks run in the daemon's order (batch item count, then each key/value, then batch bytes),
 *   so the same bad request gets the same code locally and remotely.
 * - Buffers handed back to callers are copies: the connection reads into one buffer that the
 *   next read overwrites (socket-reader.ts), so it copies values out of each reply as it reads
 *   it (ValueCopier, or the codec's copyBins).
 */

import { ToonDBError } from '../protocol/errors.js';
import type { ServerLimits } from '../protocol/limits.js';
import { bufferView } from '../protocol/views.js';

/** Keys, values and bounds: raw bytes, or a string taken as its UTF-8 encoding. */
export type Bytes = Uint8Array | string;

/** Key and value bytes as the simple-shaped requests carry them: a Buffer, or a string that
 * the frame writer encodes straight into the frame as the `bin` of its UTF-8 bytes (saving a
 * Buffer per key; never sent as a `str`, see connection.ts). */
export type WireBytes = Buffer | string;

function byteLengthOf(value: WireBytes): number {
  return typeof value === 'string' ? Buffer.byteLength(value, 'utf8') : value.length;
}

/** `value` as sent: a string as it is, other bytes as a Buffer. */
function toWire(value: Bytes, what: string): WireBytes {
  return typeof value === 'string' ? checkWellFormed(value, what) : toBuffer(value, what);
}

/**
 * A string with a lone surrogate has no UTF-8 encoding: Buffer.from would write U+FFFD in its
 * place, so 'a\uD800' would silently read and write the key of 'a\uFFFD'. Refused instead.
 * (Cheap: V8 answers at once for a string of one-byte characters.)
 */
function checkWellFormed(value: string, what: string): string {
  if (!value.isWellFormed()) {
    throw new ToonDBError('INVALID_ARGUMENT', `${what} must be well-formed Unicode (it has a lone surrogate); pass binary bytes as a Buffer`);
  }
  return value;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}

/** The bytes of `value`; `what` names the argument in the error message. */
export function toBuffer(value: Bytes, what: string): Buffer {
  if (typeof value === 'string') return Buffer.from(checkWellFormed(value, what), 'utf8');
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new ToonDBError('INVALID_ARGUMENT', `${what} must be a Uint8Array or a string, got ${describe(value)}`);
}

/** A key: 1..keyBytesMax bytes (a string is measured by its UTF-8 bytes). */
export function toKey(value: Bytes, limits: ServerLimits, what = 'key'): WireBytes {
  if (isPlainKey(value, limits)) return value; // short enough that its UTF-8 need not be counted
  const key = toWire(value, what);
  const length = byteLengthOf(key);
  if (length === 0) throw new ToonDBError('INVALID_ARGUMENT', `${what} must not be empty`);
  checkKeyBytes(length, limits, what);
  return key;
}

/** A prefix or range bound: 0..keyBytesMax bytes (empty matches everything). */
export function toBound(value: Bytes, limits: ServerLimits, what: string): Buffer {
  return checkKeyLength(toBuffer(value, what), limits, what);
}

export function checkKeyLength(key: Buffer, limits: ServerLimits, what = 'key'): Buffer {
  checkKeyBytes(key.length, limits, what);
  return key;
}

function checkKeyBytes(length: number, limits: ServerLimits, what: string): void {
  if (length > limits.keyBytesMax) {
    throw new ToonDBError('KEY_TOO_LARGE', `${what} is ${length} bytes, over the limit of ${limits.keyBytesMax}`);
  }
}

/** A value: 0..valueBytesMax bytes (an empty value is a value; a string is measured by its
 * UTF-8 bytes). */
export function toValue(value: Bytes, limits: ServerLimits, what = 'value'): WireBytes {
  if (isPlainValue(value, limits)) return value;
  const bytes = toWire(value, what);
  const length = byteLengthOf(bytes);
  if (length > limits.valueBytesMax) {
    throw new ToonDBError('VALUE_TOO_LARGE', `${what} is ${length} bytes, over the limit of ${limits.valueBytesMax}`);
  }
  return bytes;
}

/** Bytes as a Buffer (for requests the codec encodes, which would send a string as `str`). */
export function asBuffer(bytes: WireBytes): Buffer {
  return typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes;
}

function checkBatchItems(items: unknown, limits: ServerLimits, what: string): void {
  if (!Array.isArray(items)) throw new ToonDBError('INVALID_ARGUMENT', `${what} must be an array, got ${describe(items)}`);
  if (items.length > limits.batchItemsMax) {
    throw new ToonDBError('BATCH_TOO_LARGE', `${what} has ${items.length} items, over the limit of ${limits.batchItemsMax}`);
  }
}

/**
 * The bytes of a batch's keys and values as sent, checked against batchBytesMax item by item,
 * in the daemon's order. A string first counts at its bound (3 UTF-8 bytes per UTF-16 unit);
 * only once the running bound passes the limit are the items so far measured, then each later
 * one: a batch that fits measures no string here, as the frame writer measures each anyway.
 */
class BatchBytes {
  private bytes = 0;
  private measuring = false;

  /** `sent(n)`: the wires of the first n items (only called to start measuring). */
  constructor(
    private readonly limits: ServerLimits,
    private readonly what: string,
    private readonly sent: (items: number) => Iterable<WireBytes>,
  ) {}

  /** Counts item `index` (its key, and its value for an entry). */
  add(index: number, key: WireBytes, value?: WireBytes): void {
    const size = this.measuring ? byteLengthOf : byteBoundOf;
    this.bytes += size(key) + (value === undefined ? 0 : size(value));
    if (this.bytes <= this.limits.batchBytesMax) return;
    if (!this.measuring) {
      this.measuring = true;
      this.bytes = 0;
      for (const wire of this.sent(index + 1)) this.bytes += byteLengthOf(wire);
      if (this.bytes <= this.limits.batchBytesMax) return;
    }
    throw new ToonDBError('BATCH_TOO_LARGE', `${this.what} carries more than ${this.limits.batchBytesMax} bytes`);
  }
}

/** The most UTF-8 bytes `value` takes: a string's UTF-16 units at 3 bytes each. */
function byteBoundOf(value: WireBytes): number {
  return typeof value === 'string' ? value.length * 3 : value.length;
}

/** True for a Buffer or string toKey would return as it is (batch loops then skip building an
 * item name, which only an error needs). A string qualifies when even at 3 UTF-8 bytes per
 * UTF-16 unit (the most one takes) it fits, so no UTF-8 measure is needed here. */
function isPlainKey(value: unknown, limits: ServerLimits): value is WireBytes {
  if (typeof value === 'string') return value.length > 0 && value.length * 3 <= limits.keyBytesMax && value.isWellFormed();
  return Buffer.isBuffer(value) && value.length > 0 && value.length <= limits.keyBytesMax;
}

/** True for a Buffer or string toValue would return as it is (see isPlainKey). */
function isPlainValue(value: unknown, limits: ServerLimits): value is WireBytes {
  if (typeof value === 'string') return value.length * 3 <= limits.valueBytesMax && value.isWellFormed();
  return Buffer.isBuffer(value) && value.length <= limits.valueBytesMax;
}

/** Keys of getBatch / deleteBatch. */
export function toKeyBatch(keys: readonly Bytes[], limits: ServerLimits): WireBytes[] {
  checkBatchItems(keys, limits, 'keys');
  const out = new Array<WireBytes>(keys.length);
  const bytes = new BatchBytes(limits, 'keys', (items) => out.slice(0, items));
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    // A valid Buffer as it is; anything else through toKey, which names the item in its error.
    const wire = isPlainKey(key, limits) ? key : toKey(key, limits, `keys[${i}]`);
    out[i] = wire;
    bytes.add(i, wire);
  }
  return out;
}

/** Entries of putBatch (fresh pairs: the caller may reuse its array once the call returns). */
export function toEntryBatch(entries: readonly (readonly [Bytes, Bytes])[], limits: ServerLimits): [WireBytes, WireBytes][] {
  checkBatchItems(entries, limits, 'entries');
  const out = new Array<[WireBytes, WireBytes]>(entries.length);
  const bytes = new BatchBytes(limits, 'entries', (items) => out.slice(0, items).flat());
  for (let i = 0; i < entries.length; i++) {
    const pair = entries[i];
    if (!Array.isArray(pair) || pair.length !== 2) {
      throw new ToonDBError('INVALID_ARGUMENT', `entries[${i}] must be a [key, value] pair`);
    }
    // Valid Buffers and strings as they are; anything else through toKey / toValue, which name
    // the item in their errors.
    const key = isPlainKey(pair[0], limits) ? pair[0] : toKey(pair[0], limits, `entries[${i}][0]`);
    const value = isPlainValue(pair[1], limits) ? pair[1] : toValue(pair[1], limits, `entries[${i}][1]`);
    out[i] = [key, value];
    bytes.add(i, key, value);
  }
  return out;
}

/** ttlSeconds: absent, or a positive finite number up to ttlSecondsMax (fractions allowed). */
export function toTtl(ttlSeconds: number | undefined, limits: ServerLimits): number | undefined {
  if (ttlSeconds === undefined) return undefined;
  if (typeof ttlSeconds !== 'number' || !Number.isFinite(ttlSeconds) || ttlSeconds <= 0 || ttlSeconds > limits.ttlSecondsMax) {
    throw new ToonDBError('INVALID_ARGUMENT', `ttlSeconds must be a number of seconds in (0, ${limits.ttlSecondsMax}], got ${String(ttlSeconds)}`);
  }
  return ttlSeconds;
}

/** An optional non-negative integer option such as `limit`. */
export function toCount(value: number | undefined, what: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ToonDBError('INVALID_ARGUMENT', `${what} must be an integer in ${min}..${max}, got ${String(value)}`);
  }
  return value;
}

/**
 * Copies values out of reply bodies as the simple reader reads them (a BinMaker), and out of a
 * scan batch's packed entries as they are unpacked (batch-entries.ts). In a large body (a
 * getBatch reply, a scan batch) a small value becomes a view of a copied window of the body,
 * which the values after it in the same window share (one memcpy for dozens of scan entries
 * instead of a copy each). A window is just under half of Buffer.poolSize, so it comes from
 * Node's pool like any small Buffer (a window of its own memory costs an ArrayBuffer each, and
 * more GC). A value of a small reply, or over half a window, gets a copy of its own. So a kept
 * value pins at most one pool slab, as any small Buffer does, and never aliases the read buffer
 * (which the next socket read overwrites).
 *
 * Call `reset` after each reply (or batch): the copier then holds no reference to its body.
 */
export class ValueCopier {
  /** Buffer.allocUnsafe serves sizes under half the pool size from the pool. */
  private readonly windowBytesMax = (Buffer.poolSize >>> 1) - 1;
  private body: Buffer | null = null;
  /** The window: a copy of body[windowStart, windowEnd), in `memory` from `memoryOffset`. */
  private memory = new ArrayBuffer(0);
  private memoryOffset = 0;
  private windowStart = 0;
  private windowEnd = 0;

  readonly copy = (body: Buffer, start: number, end: number): Buffer => {
    const length = end - start;
    // A value of a small reply (a get) or a large value: a copy of its own (small ones from
    // Node's pool), which costs less than a window would.
    if (body.length <= this.windowBytesMax || length > this.windowBytesMax >>> 1) {
      const own = Buffer.allocUnsafe(length);
      body.copy(own, 0, start, end);
      return own;
    }
    if (body !== this.body || start < this.windowStart || end > this.windowEnd) {
      const windowEnd = Math.min(start + this.windowBytesMax, body.length);
      // A short window (the tail of a reply) comes from Node's pool like any small Buffer.
      const window = Buffer.allocUnsafe(windowEnd - start);
      body.copy(window, 0, start, windowEnd);
      this.memory = window.buffer;
      this.memoryOffset = window.byteOffset;
      this.body = body;
      this.windowStart = start;
      this.windowEnd = windowEnd;
    }
    return bufferView(this.memory, this.memoryOffset + start - this.windowStart, length);
  };

  reset(): void {
    this.body = null;
  }
}
