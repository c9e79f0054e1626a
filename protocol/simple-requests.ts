/**
 * Requests on the hand-written path (simple-frames.ts says why and what both directions
 * promise): `{ id, op, key }`, `{ id, op, key, value }` (get, exists, delete, put),
 * `{ id, op, keys }` (getBatch, deleteBatch) and `{ id, op, entries }` (putBatch).
 *
 * Responsibility: `simpleRequestBytesMax` bounds a request's frame (short strings are not
 * measured, see msgpack-forms.ts binOfBytesMax) and `writeSimpleRequest` writes it, given the
 * request without its id (the client); `readSimpleRequest` reads one back as MessageCodec would
 * decode it (the daemon, which still validates what it returns), except that a request's
 * `keys` stay packed (a PackedArray of their bins, a view of the body): the daemon checks
 * them and copies them into the engine call as one block, where a Buffer per key cost it
 * ~110 ns a key (the view, its check, its copy) of ~850 under getBatch.
 *
 * Invariants: those of simple-frames.ts; a request's frame never passes the bound
 * simpleRequestBytesMax gave, and its header gives the bytes actually written.
 */

import { BATCH_ITEMS_MAX, FRAME_HEADER_BYTES } from './limits.js';
import { OP_NAMES } from './messages.js';
import {
  arrayHeaderBytes, binOfBytesMax, FIXARRAY, FIXMAP, FIXSTR, MsgpackReader, touchBins, uintBytes, VIEW_BINS, writeArrayHeader, writeBinOf, writeUint,
  type BinSource,
} from './msgpack-forms.js';
import { PackedArray } from './packed-array.js';
import { isIdNumber, KEY_ENTRIES, KEY_ID } from './simple-frames.js';

/** Longest op name the request writer and reader accept (every op name fits). */
const OP_NAME_BYTES_MAX = 16;

/** `op`, `key`, `value`, `keys` as fixstr map keys. */
const KEY_OP = Buffer.from([FIXSTR | 2, 0x6f, 0x70]);
const KEY_KEY = Buffer.from([FIXSTR | 3, 0x6b, 0x65, 0x79]);
const KEY_VALUE = Buffer.from([FIXSTR | 5, 0x76, 0x61, 0x6c, 0x75, 0x65]);
const KEY_KEYS = Buffer.from([FIXSTR | 4, ...Buffer.from('keys')]);

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
    touchBins(keys);
    for (const item of keys) p = writeBinOf(target, p, item);
  } else if (entries !== undefined) {
    p += KEY_ENTRIES.copy(target, p);
    p = writeArrayHeader(target, p, entries.length);
    touchBins(entries, true);
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

/** The reader of the request being read, reset by each read. */
const reader = new MsgpackReader();

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
 * return but with `keys` a PackedArray of bins (see above), for the daemon to validate as
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
    const start = reader.at;
    for (let i = 0; i < count && reader.skipBin(); i++);
    return reader.done ? { id, op: op, keys: new PackedArray(count, VIEW_BINS(body, start, reader.at)) } : null;
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
