/**
 * Replies `{ id, result }` on the hand-written path (simple-frames.ts says why and what both
 * directions promise): a result that is nil, a boolean, a Buffer, an array of Buffer/nil (get,
 * exists, getBatch, and the nil of put, delete and the batch writes) or a scan batch
 * `{ cursor, entries, done }` (scan, scanNext); an array of values and a batch's entries may
 * also be a PackedArray (the elements already encoded, as the engine returns them).
 *
 * Responsibility: `simpleReplyBytes` sizes a reply's frame (or says it is not simple) and
 * `writeSimpleReply` writes it (the daemon); `readSimpleReply` reads one back (the client),
 * leaving a scan batch's entries packed (ReadScanBatch).
 *
 * Invariants: those of simple-frames.ts; a reply's frame is written in exactly the bytes
 * simpleReplyBytes sized.
 */

import { FRAME_HEADER_BYTES } from './limits.js';
import {
  arrayHeaderBytes, BIN16, BIN32, BIN8, binBytes, FALSE, FIXARRAY, FIXMAP, FIXSTR, FLOAT64, MsgpackReader, NIL, TRUE,
  uintBytes, VIEW_BINS, writeArrayHeader, writeBin, writeUint, type BinMaker,
} from './msgpack-forms.js';
import { PackedArray } from './packed-array.js';
import { isIdNumber, KEY_ENTRIES, KEY_ID } from './simple-frames.js';

/** A scan batch as the daemon replies it (keys in this order). */
export interface ScanBatchResult {
  cursor: number;
  entries: [Buffer, Buffer][] | PackedArray;
  done: boolean;
}

/** A scan batch as readSimpleReply read it: its entries are still packed (one block of bytes,
 * made by the reader's `packedBins`), already known to be exactly `count` `[bin, bin]` pairs, so a
 * reader of the reply need not check them again and can unpack each entry as it is consumed
 * (a batch of 8192 entries unpacked at once is ~25k objects that live until the last is used,
 * which the GC then copies and promotes; unpacked one at a time they die young). */
export class ReadScanBatch implements ScanBatchResult {
  constructor(
    readonly cursor: number,
    readonly entries: PackedArray,
    readonly done: boolean,
  ) {}
}

/** A reply result these writers and the reader handle. */
export type SimpleResult = null | boolean | Buffer | (Buffer | null)[] | PackedArray | ScanBatchResult;

/** `result`, `cursor`, `done` as fixstr map keys. */
const KEY_RESULT = Buffer.from([FIXSTR | 6, 0x72, 0x65, 0x73, 0x75, 0x6c, 0x74]);
const KEY_CURSOR = Buffer.from([FIXSTR | 6, ...Buffer.from('cursor')]);
const KEY_DONE = Buffer.from([FIXSTR | 4, ...Buffer.from('done')]);
/** Bytes of a scan batch map around its entries: fixmap, three keys, the done flag. */
const SCAN_BATCH_FIXED_BYTES = 1 + KEY_CURSOR.length + KEY_ENTRIES.length + KEY_DONE.length + 1;

/** A cursor id: any safe integer. Over 32 bits msgpackr writes a number as float64, so do we. */
function isCursorNumber(cursor: number): boolean {
  return Number.isSafeInteger(cursor) && cursor >= 0;
}
const cursorBytes = (cursor: number): number => (cursor > 0xffff_ffff ? 9 : uintBytes(cursor));
function writeCursor(target: Buffer, at: number, cursor: number): number {
  if (cursor <= 0xffff_ffff) return writeUint(target, at, cursor);
  target[at] = FLOAT64;
  target.writeDoubleBE(cursor, at + 1);
  return at + 9;
}

/** True if `value` is a plain object with exactly `cursor`, `entries`, `done`, in that order. */
function isScanBatchShape(value: object): value is ScanBatchResult {
  if (Object.getPrototypeOf(value) !== Object.prototype) return false;
  let index = 0;
  for (const key in value) {
    if (key !== (index === 0 ? 'cursor' : index === 1 ? 'entries' : index === 2 ? 'done' : '')) return false;
    index++;
  }
  return index === 3;
}

function scanBatchBytes(batch: ScanBatchResult): number {
  const { cursor, entries, done } = batch;
  if (!isCursorNumber(cursor) || typeof done !== 'boolean') return -1;
  const fixed = SCAN_BATCH_FIXED_BYTES + cursorBytes(cursor);
  if (entries instanceof PackedArray) return fixed + arrayHeaderBytes(entries.count) + entries.bytes.length;
  if (!Array.isArray(entries)) return -1;
  let total = fixed + arrayHeaderBytes(entries.length);
  for (const entry of entries) {
    if (!Array.isArray(entry) || entry.length !== 2 || !Buffer.isBuffer(entry[0]) || !Buffer.isBuffer(entry[1])) return -1;
    total += 1 + binBytes(entry[0].length) + binBytes(entry[1].length);
  }
  return total;
}

/** Bytes of the MessagePack for `result`, or -1 if it is not a SimpleResult. */
function resultBytes(result: unknown): number {
  if (result === null || typeof result === 'boolean') return 1;
  if (Buffer.isBuffer(result)) return binBytes(result.length);
  if (result instanceof PackedArray) return arrayHeaderBytes(result.count) + result.bytes.length;
  if (typeof result === 'object' && !Array.isArray(result)) return isScanBatchShape(result) ? scanBatchBytes(result) : -1;
  if (!Array.isArray(result)) return -1;
  let total = arrayHeaderBytes(result.length);
  for (const item of result) {
    if (item === null) total += 1;
    else if (Buffer.isBuffer(item)) total += binBytes(item.length);
    else return -1;
  }
  return total;
}

/** Frame bytes (length prefix included) of the reply `{ id, result }`, or -1 if this module
 * cannot write it (then use MessageCodec). */
export function simpleReplyBytes(id: number, result: unknown): number {
  if (!isIdNumber(id)) return -1;
  const value = resultBytes(result);
  if (value < 0) return -1;
  return FRAME_HEADER_BYTES + 1 + KEY_ID.length + uintBytes(id) + KEY_RESULT.length + value;
}

/** Writes the reply frame `{ id, result }` of `frameBytes` (from simpleReplyBytes) at `at`;
 * returns the offset after it. */
export function writeSimpleReply(target: Buffer, at: number, id: number, result: SimpleResult, frameBytes: number): number {
  target.writeUInt32BE(frameBytes - FRAME_HEADER_BYTES, at);
  let p = at + FRAME_HEADER_BYTES;
  target[p++] = FIXMAP | 2;
  p += KEY_ID.copy(target, p);
  p = writeUint(target, p, id);
  p += KEY_RESULT.copy(target, p);
  if (result === null) target[p++] = NIL;
  else if (result === true) target[p++] = TRUE;
  else if (result === false) target[p++] = FALSE;
  else if (Buffer.isBuffer(result)) p = writeBin(target, p, result);
  else if (result instanceof PackedArray) p = writePacked(target, p, result);
  else if (Array.isArray(result)) {
    p = writeArrayHeader(target, p, result.length);
    for (const item of result) p = item === null ? (target[p] = NIL, p + 1) : writeBin(target, p, item);
  } else {
    target[p++] = FIXMAP | 3;
    p += KEY_CURSOR.copy(target, p);
    p = writeCursor(target, p, result.cursor);
    p += KEY_ENTRIES.copy(target, p);
    const entries = result.entries;
    if (entries instanceof PackedArray) {
      p = writePacked(target, p, entries);
    } else {
      p = writeArrayHeader(target, p, entries.length);
      for (const [key, value] of entries) {
        target[p++] = FIXARRAY | 2;
        p = writeBin(target, p, key);
        p = writeBin(target, p, value);
      }
    }
    p += KEY_DONE.copy(target, p);
    target[p++] = result.done ? TRUE : FALSE;
  }
  if (p !== at + frameBytes) throw new Error(`invariant: simple reply wrote ${p - at} of ${frameBytes} bytes`);
  return p;
}

/** Writes a PackedArray as the array it holds: the header, then its elements as one block. */
function writePacked(target: Buffer, at: number, packed: PackedArray): number {
  const p = writeArrayHeader(target, at, packed.count);
  target.set(packed.bytes, p);
  return p + packed.bytes.length;
}

/** A reply read by readSimpleReply. */
export interface SimpleReply {
  id: number;
  result: SimpleResult;
}

/** The reader of the reply being read, reset by each read. */
const reader = new MsgpackReader();
/** What readSimpleReply makes of a scan batch's packed entries (its `packedBins`). */
let packedBins: BinMaker = VIEW_BINS;

/** A cursor as writeCursor writes it: a uint, or a float64 (read as MessageCodec reads one,
 * whatever its value; the client checks it). */
function readCursor(): number {
  return reader.float64() ?? reader.uint();
}

function readResult(): SimpleResult | undefined {
  const body = reader.body;
  const tag = body[reader.at];
  if (tag === NIL || tag === TRUE || tag === FALSE) {
    reader.at += 1;
    return tag === NIL ? null : tag === TRUE;
  }
  if (tag === (FIXMAP | 3)) return readScanBatch();
  if (tag === BIN8 || tag === BIN16 || tag === BIN32) return reader.bin() ?? undefined;
  const count = reader.arrayHeader();
  if (reader.at < 0) return undefined;
  const items = new Array<Buffer | null>(count);
  for (let i = 0; i < count; i++) {
    if (body[reader.at] === NIL) {
      items[i] = null;
      reader.at += 1;
    } else {
      const item = reader.bin();
      if (item === null) return undefined;
      items[i] = item;
    }
  }
  return items;
}

/** An array of `[bin, bin]` pairs, checked and left packed: its element bytes as `packedBins`
 * makes them (a view of the body, or a copy); null if anything else. */
function readPackedPairs(): PackedArray | null {
  const body = reader.body;
  const count = reader.arrayHeader();
  const start = reader.at;
  if (start < 0) return null;
  for (let i = 0; i < count; i++) {
    if (body[reader.at] !== (FIXARRAY | 2)) return null;
    reader.at += 1;
    if (!reader.skipBin() || !reader.skipBin()) return null;
  }
  return new PackedArray(count, packedBins(body, start, reader.at));
}

function readScanBatch(): ScanBatchResult | undefined {
  const body = reader.body;
  reader.at += 1;
  if (!reader.literal(KEY_CURSOR)) return undefined;
  const cursor = readCursor();
  if (!reader.literal(KEY_ENTRIES)) return undefined;
  const entries = readPackedPairs();
  if (entries === null || !reader.literal(KEY_DONE)) return undefined;
  const done = body[reader.at];
  if (done !== TRUE && done !== FALSE) return undefined;
  reader.at += 1;
  return new ReadScanBatch(cursor, entries, done === TRUE);
}

/**
 * Reads a reply body that is exactly `{ id: uint, result }` with a SimpleResult in the encoding
 * above; null for anything else (decode it with MessageCodec instead). `bin` values are views
 * of the body, as MessageCodec's are, or what `bins` makes of their bytes (e.g. copies, for a
 * caller that hands values out and must not let them pin the body); a scan batch's packed
 * entries are what `packed` makes of theirs (a caller whose body is its own may keep a view).
 */
export function readSimpleReply(body: Buffer, bins: BinMaker = VIEW_BINS, packed: BinMaker = bins): SimpleReply | null {
  if (body.length < 12 || body[0] !== (FIXMAP | 2)) return null;
  reader.reset(body, 1, bins);
  packedBins = packed;
  try {
    if (!reader.literal(KEY_ID)) return null;
    const id = reader.uint();
    // id 0 is a connection-level error: always the codec's business.
    if (id <= 0 || !reader.literal(KEY_RESULT) || reader.at >= body.length) return null;
    const result = readResult();
    return result !== undefined && reader.done ? { id, result } : null;
  } finally {
    reader.reset(EMPTY, 0); // keep no reference to the body or the caller's BinMakers
    packedBins = VIEW_BINS;
  }
}

const EMPTY = Buffer.alloc(0);
