/**
 * Hand-written MessagePack for the hottest message shapes: what MessageCodec (msgpackr with the
 * codec's options) produces for them, byte for byte, without msgpackr, the plain-check or an
 * intermediate object per frame. Profiles put msgpackr plus the check at ~20 % of the daemon's
 * and the client's CPU for point operations; these shapes are nearly all of that traffic.
 *
 * Shapes:
 * - replies `{ id, result }` whose result is nil, a boolean, a Buffer, an array of Buffer/nil
 *   (get, exists, getBatch, and the nil of put, delete and the batch writes) or a scan batch
 *   `{ cursor, entries, done }` (scan, scanNext); an array of values and a batch's entries may
 *   also be a PackedArray (the elements already encoded, as the engine returns them):
 *   `simpleReplyBytes` sizes one (or says it is not simple), `writeSimpleReply` writes the frame;
 * - requests `{ id, op, key }`, `{ id, op, key, value }` (get, exists, delete, put),
 *   `{ id, op, keys }` (getBatch, deleteBatch) and `{ id, op, entries }` (putBatch):
 *   `simpleRequestBytesMax` bounds one's frame (short strings are not measured, see
 *   msgpack-forms.ts binOfBytesMax) and `writeSimpleRequest` writes it, given the request
 *   without its id;
 * - reading a reply `{ id, result }` whose result is any of those: `readSimpleReply` (a scan
 *   batch's entries stay packed, see ReadScanBatch); reading those requests back:
 *   `readSimpleRequest` (the daemon still validates what it returns).
 *
 * The MessagePack forms themselves are in msgpack-forms.ts; engine-encoded arrays in
 * packed-array.ts.
 *
 * Invariants:
 * - The writers produce exactly MessageCodec.encode's frame for the same message (a test compares
 *   them on random messages), so the wire stays one format whichever path wrote it.
 * - The readers return null for anything they do not fully recognise, including trailing
 *   bytes; the caller then decodes with MessageCodec. So it never accepts a body MessageCodec
 *   would refuse, and decodes what it accepts exactly as MessageCodec would (a `bin` is a view
 *   of the body, as there, unless the caller asks for copies), but for a scan batch's entries,
 *   which it checks and returns packed: unpacked (`toEntries`), they are MessageCodec's pairs.
 * - Pure: no I/O; the writers write only inside the range they sized (for a request, the
 *   bound), and a request's frame header gives the bytes actually written.
 */

import { BATCH_ITEMS_MAX, FRAME_HEADER_BYTES } from './limits.js';
import { OP_NAMES } from './messages.js';
import {
  arrayHeaderBytes, BIN16, BIN32, BIN8, binBytes, FALSE, FIXARRAY, FIXMAP, FIXSTR, FLOAT64, MsgpackReader, NIL, TRUE,
  binOfBytesMax, uintBytes, VIEW_BINS, writeArrayHeader, writeBin, writeBinOf, writeUint, type BinMaker, type BinSource,
} from './msgpack-forms.js';
import { PackedArray } from './packed-array.js';

/** Longest op name the request writer and reader accept (every op name fits). */
const OP_NAME_BYTES_MAX = 16;

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

/** `id`, `result`, `op`, `key`, `value` as fixstr map keys. */
const KEY_ID = Buffer.from([FIXSTR | 2, 0x69, 0x64]);
const KEY_RESULT = Buffer.from([FIXSTR | 6, 0x72, 0x65, 0x73, 0x75, 0x6c, 0x74]);
const KEY_OP = Buffer.from([FIXSTR | 2, 0x6f, 0x70]);
const KEY_KEY = Buffer.from([FIXSTR | 3, 0x6b, 0x65, 0x79]);
const KEY_VALUE = Buffer.from([FIXSTR | 5, 0x76, 0x61, 0x6c, 0x75, 0x65]);
const KEY_KEYS = Buffer.from([FIXSTR | 4, ...Buffer.from('keys')]);
const KEY_CURSOR = Buffer.from([FIXSTR | 6, ...Buffer.from('cursor')]);
const KEY_ENTRIES = Buffer.from([FIXSTR | 7, ...Buffer.from('entries')]);
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

function isIdNumber(id: number): boolean {
  return Number.isInteger(id) && id >= 0 && id <= 0xffff_ffff;
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

/** A request these writers handle, without its id: its own enumerable fields are exactly
 * `op, key`, `op, key, value`, `op, keys` or `op, entries`, in that order (the order
 * MessageCodec writes them in), with every key and value a Buffer or a string. */
export interface SimpleRequest {
  op: string;
  key?: BinSource;
  value?: BinSource;
  keys?: readonly BinSource[];
  entries?: readonly (readonly [BinSource, BinSource])[];
}

/** A request's shape: the names of its fields after `op` (null: none these writers handle). */
type Shape = 'key' | 'key,value' | 'keys' | 'entries' | null;

function shapeOf(request: object): Shape {
  let shape: Shape = null;
  let index = 0;
  for (const field in request) {
    if (index === 0) {
      if (field !== 'op') return null;
    } else if (index === 1) {
      if (field !== 'key' && field !== 'keys' && field !== 'entries') return null;
      shape = field;
    } else if (index === 2 && shape === 'key' && field === 'value') {
      shape = 'key,value';
    } else {
      return null;
    }
    index++;
  }
  return shape;
}

/** An op name these writers can write: 1..OP_NAME_BYTES_MAX ASCII letters (its UTF-8 bytes are
 * its Latin-1 bytes, and it fits a fixstr). */
function isOpName(op: unknown): op is string {
  if (typeof op !== 'string' || op.length < 1 || op.length > OP_NAME_BYTES_MAX) return false;
  for (let i = 0; i < op.length; i++) {
    const c = op.charCodeAt(i) | 0x20; // folds upper to lower case
    if (c < 0x61 || c > 0x7a) return false;
  }
  return true;
}

/** Most bytes of a `keys` array of Buffers or strings, or -1. */
function keysBytesMax(keys: unknown): number {
  if (!Array.isArray(keys)) return -1;
  let total = arrayHeaderBytes(keys.length);
  for (const key of keys) {
    const bytes = binOfBytesMax(key);
    if (bytes < 0) return -1;
    total += bytes;
  }
  return total;
}

/** Most bytes of an `entries` array of [key, value] pairs of Buffers or strings, or -1. */
function entriesBytesMax(entries: unknown): number {
  if (!Array.isArray(entries)) return -1;
  let total = arrayHeaderBytes(entries.length);
  for (const pair of entries) {
    if (!Array.isArray(pair) || pair.length !== 2) return -1;
    const key = binOfBytesMax(pair[0]);
    const value = binOfBytesMax(pair[1]);
    if (key < 0 || value < 0) return -1;
    total += 1 + key + value;
  }
  return total;
}

/** The most bytes writeSimpleRequest writes for `{ id, ...request }` (exact unless the request
 * holds strings of up to 64 units, which are not measured), or -1 if this module cannot write
 * it (then use MessageCodec). A string key or value is written as the bin of its UTF-8 bytes,
 * exactly the frame MessageCodec writes for that Buffer. */
export function simpleRequestBytesMax(id: number, request: object): number {
  const { op, key, value, keys, entries } = request as SimpleRequest;
  if (!isIdNumber(id) || !isOpName(op)) return -1;
  const head = FRAME_HEADER_BYTES + 1 + KEY_ID.length + uintBytes(id) + KEY_OP.length + 1 + op.length;
  let body: number;
  switch (shapeOf(request)) {
    case 'key':
      body = binOfBytesMax(key);
      return body < 0 ? -1 : head + KEY_KEY.length + body;
    case 'key,value': {
      const keyBytes = binOfBytesMax(key);
      const valueBytes = binOfBytesMax(value);
      return keyBytes < 0 || valueBytes < 0 ? -1 : head + KEY_KEY.length + keyBytes + KEY_VALUE.length + valueBytes;
    }
    case 'keys':
      body = keysBytesMax(keys);
      return body < 0 ? -1 : head + KEY_KEYS.length + body;
    case 'entries':
      body = entriesBytesMax(entries);
      return body < 0 ? -1 : head + KEY_ENTRIES.length + body;
    default:
      return -1;
  }
}

/** Writes the request frame bounded by simpleRequestBytesMax (`frameBytesMax`) at `at`; returns
 * the offset after it, which may be short of `at + frameBytesMax`. */
export function writeSimpleRequest(target: Buffer, at: number, id: number, request: SimpleRequest, frameBytesMax: number): number {
  const { op, key, value, keys, entries } = request;
  let p = at + FRAME_HEADER_BYTES;
  target[p++] = FIXMAP | (value === undefined ? 3 : 4);
  p += KEY_ID.copy(target, p);
  p = writeUint(target, p, id);
  p += KEY_OP.copy(target, p);
  target[p] = FIXSTR | op.length;
  p += 1 + target.write(op, p + 1, 'latin1');
  if (keys !== undefined) {
    p += KEY_KEYS.copy(target, p);
    p = writeArrayHeader(target, p, keys.length);
    for (const item of keys) p = writeBinOf(target, p, item);
  } else if (entries !== undefined) {
    p += KEY_ENTRIES.copy(target, p);
    p = writeArrayHeader(target, p, entries.length);
    for (const [entryKey, entryValue] of entries) {
      target[p++] = FIXARRAY | 2;
      p = writeBinOf(target, p, entryKey);
      p = writeBinOf(target, p, entryValue);
    }
  } else {
    p += KEY_KEY.copy(target, p);
    p = writeBinOf(target, p, key as BinSource);
    if (value !== undefined) {
      p += KEY_VALUE.copy(target, p);
      p = writeBinOf(target, p, value);
    }
  }
  if (p > at + frameBytesMax) throw new Error(`invariant: simple request wrote ${p - at} bytes, past its bound of ${frameBytesMax}`);
  target.writeUInt32BE(p - at - FRAME_HEADER_BYTES, at);
  return p;
}

/** A reply read by readSimpleReply. */
export interface SimpleReply {
  id: number;
  result: SimpleResult;
}

/** The reader of the frame being read: one per module, reset by each read. */
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

/** An array of `[bin, bin]` pairs (putBatch entries); null if anything else. */
function readPairs(countMax = Infinity): [Buffer, Buffer][] | null {
  const body = reader.body;
  const count = reader.arrayHeader();
  if (reader.at < 0 || count > countMax) return null;
  const pairs = new Array<[Buffer, Buffer]>(count);
  for (let i = 0; i < count; i++) {
    if (body[reader.at] !== (FIXARRAY | 2)) return null;
    reader.at += 1;
    const key = reader.bin();
    const value = reader.bin();
    if (key === null || value === null) return null;
    pairs[i] = [key, value];
  }
  return pairs;
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

function isAsciiLetters(body: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = body[i] | 0x20; // folds upper to lower case
    if (c < 0x61 || c > 0x7a) return false;
  }
  return true;
}

/** The op names by byte length, so a request's op is read as one of these constants: no new
 * string per request, and the daemon's lookups by op name take V8's fast path for strings it
 * has seen (reading the name with toString cost ~5 % of the daemon's JS time under PUT-256). */
const OP_NAMES_BY_LENGTH: readonly string[][] = (() => {
  const byLength: string[][] = [];
  for (const name of OP_NAMES) (byLength[name.length] ??= []).push(name);
  return byLength;
})();

function opNameAt(body: Buffer, start: number, end: number): string {
  const candidates = OP_NAMES_BY_LENGTH[end - start];
  if (candidates !== undefined) {
    next: for (const name of candidates) {
      for (let i = 0; i < name.length; i++) if (body[start + i] !== name.charCodeAt(i)) continue next;
      return name;
    }
  }
  return body.toString('latin1', start, end); // not an op: the daemon refuses it by name
}

/**
 * Reads a request body that is exactly `{ id: uint, op: str, key: bin }`, the same with
 * `value: bin` after it, `{ id, op, keys: [bin] }` or `{ id, op, entries: [[bin, bin]] }` (as
 * writeSimpleRequest and MessageCodec write them), as the plain object MessageCodec.decode would
 * return, for the daemon to validate as
 * usual; null for anything else (decode it with MessageCodec), and for arrays longer than any
 * batch (BATCH_ITEMS_MAX), so that MessageCodec's item bound (REQUEST_ITEMS_MAX) applies to
 * them. The op name must be ASCII letters, so reading it as Latin-1 equals MessageCodec's
 * UTF-8. Bins are views of the body.
 */
export function readSimpleRequest(body: Buffer): Record<string, unknown> | null {
  const fields = body[0];
  if (body.length < 12 || (fields !== (FIXMAP | 3) && fields !== (FIXMAP | 4))) return null;
  reader.reset(body, 1);
  if (!reader.literal(KEY_ID)) return null;
  const id = reader.uint();
  if (!reader.literal(KEY_OP) || reader.at >= body.length) return null;
  const opBytes = body[reader.at] - FIXSTR;
  const opStart = reader.at + 1;
  const opEnd = opStart + opBytes;
  if (opBytes < 1 || opBytes > OP_NAME_BYTES_MAX || opEnd > body.length || !isAsciiLetters(body, opStart, opEnd)) return null;
  reader.at = opEnd;
  const op = opNameAt(body, opStart, opEnd);
  if (fields === (FIXMAP | 3) && reader.sees(KEY_KEYS)) {
    reader.at += KEY_KEYS.length;
    const count = reader.arrayHeader();
    // Past any batch the daemon takes: left to the codec, which answers as it would have
    // (BATCH_TOO_LARGE, or PROTOCOL_ERROR past REQUEST_ITEMS_MAX) without this reader first
    // building a view per item of a frame of millions.
    if (reader.at < 0 || count > BATCH_ITEMS_MAX) return null;
    const keys = new Array<Buffer>(count);
    for (let i = 0; i < count; i++) {
      const item = reader.bin();
      if (item === null) return null;
      keys[i] = item;
    }
    return reader.done ? { id, op: op, keys } : null;
  }
  if (fields === (FIXMAP | 3) && reader.sees(KEY_ENTRIES)) {
    reader.at += KEY_ENTRIES.length;
    const entries = readPairs(BATCH_ITEMS_MAX);
    return entries !== null && reader.done ? { id, op: op, entries } : null;
  }
  if (!reader.literal(KEY_KEY)) return null;
  const key = reader.bin();
  if (key === null) return null;
  if (fields === (FIXMAP | 3)) return reader.done ? { id, op: op, key } : null;
  if (!reader.literal(KEY_VALUE)) return null;
  const value = reader.bin();
  return value !== null && reader.done ? { id, op: op, key, value } : null;
}
