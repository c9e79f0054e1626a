/**
 * A structural check that a byte string is exactly one value of plain MessagePack.
 *
 * Responsibility: decide, before msgpackr sees a body, that it uses only the language-neutral
 * subset toondb speaks, and that decoding it is cheap and safe. "Plain" means: nil, bool, int
 * (all widths), float 32/64, str (valid UTF-8), bin, array and map with str keys. Rejected: every ext type
 * (fixext, ext 8/16/32 — this covers msgpackr records, structured clone, timestamps, typed
 * arrays, bundled strings), the never-used byte 0xc1, non-str map keys, nesting deeper than the
 * depth limit, maps of more than MESSAGE_MAP_ENTRIES_MAX entries, more items than the caller
 * allows, declared lengths that the remaining bytes cannot hold, trailing bytes, and a str
 * that is not UTF-8 (a decoder would replace each bad byte by U+FFFD: a key would silently
 * become another key).
 *
 * Invariants:
 * - Runs in time linear in the number of MessagePack items plus the bytes of its str payloads
 *   (checked as UTF-8; bin payloads are skipped, not read) with an explicit stack of at most `depthMax` entries: no recursion, so no stack
 *   overflow, and no allocation proportional to a declared (possibly hostile) length.
 * - Every declared count is checked against the bytes left before it is trusted: each item takes
 *   at least one byte, so a container cannot claim more items than bytes remain.
 * - On success msgpackr reads exactly the checked bytes, so it can neither over-read nor loop.
 */

import { isUtf8 } from 'node:buffer';
import { ToonDBError } from './errors.js';
import { MESSAGE_DEPTH_MAX, MESSAGE_MAP_ENTRIES_MAX } from './limits.js';

function reject(reason: string, offset: number): never {
  throw new ToonDBError('PROTOCOL_ERROR', `invalid MessagePack at byte ${offset}: ${reason}`);
}

/** Kinds of items, by leading byte (KIND); 0 = not allowed. */
const INVALID = 0;
const SCALAR = 1;
const STR = 2;
const BIN = 3;
const ARRAY = 4;
const MAP = 5;

/** Per leading byte: its kind, the width of the length field that follows it (0 if the size is
 * implied), and for implied sizes the payload bytes (scalars) or the count (fix str/array/map). */
const KIND = new Uint8Array(256);
const LENGTH_BYTES = new Uint8Array(256);
const IMPLIED = new Uint8Array(256);

function define(kind: number, lengthBytes: number, implied: number, ...codes: number[]): void {
  for (const code of codes) {
    KIND[code] = kind;
    LENGTH_BYTES[code] = lengthBytes;
    IMPLIED[code] = implied;
  }
}
for (let b = 0x00; b <= 0x7f; b++) define(SCALAR, 0, 0, b); // positive fixint
for (let b = 0xe0; b <= 0xff; b++) define(SCALAR, 0, 0, b); // negative fixint
for (let b = 0x80; b <= 0x8f; b++) define(MAP, 0, b & 0x0f, b);
for (let b = 0x90; b <= 0x9f; b++) define(ARRAY, 0, b & 0x0f, b);
for (let b = 0xa0; b <= 0xbf; b++) define(STR, 0, b & 0x1f, b);
define(SCALAR, 0, 0, 0xc0, 0xc2, 0xc3); // nil, false, true
define(SCALAR, 0, 1, 0xcc, 0xd0); // uint8, int8
define(SCALAR, 0, 2, 0xcd, 0xd1); // uint16, int16
define(SCALAR, 0, 4, 0xca, 0xce, 0xd2); // float32, uint32, int32
define(SCALAR, 0, 8, 0xcb, 0xcf, 0xd3); // float64, uint64, int64
define(BIN, 1, 0, 0xc4);
define(BIN, 2, 0, 0xc5);
define(BIN, 4, 0, 0xc6);
define(STR, 1, 0, 0xd9);
define(STR, 2, 0, 0xda);
define(STR, 4, 0, 0xdb);
define(ARRAY, 2, 0, 0xdc);
define(ARRAY, 4, 0, 0xdd);
define(MAP, 2, 0, 0xde);
define(MAP, 4, 0, 0xdf);

function describeRejected(byte: number): string {
  if (byte === 0xc1) return 'byte 0xc1 is never used in MessagePack';
  if ((byte >= 0xc7 && byte <= 0xc9) || (byte >= 0xd4 && byte <= 0xd8)) {
    return `extension type (0x${byte.toString(16)}) is not allowed`;
  }
  return `unknown type byte 0x${byte.toString(16)}`;
}

const KIND_NAMES = ['invalid', 'scalar', 'str', 'bin', 'array', 'map'];

/** Longest str payload checked byte by byte here; longer ones go to Node's UTF-8 check at once. */
const STR_INLINE_CHECK_BYTES_MAX = 64;

/** True if bytes[start, start + length) are UTF-8. A short ASCII payload (map keys, op names,
 * most keys) is checked here without allocating; anything else by `isUtf8` on a view. */
function isUtf8Text(bytes: Uint8Array, start: number, length: number): boolean {
  if (length <= STR_INLINE_CHECK_BYTES_MAX) {
    let i = start;
    const end = start + length;
    while (i < end && bytes[i] < 0x80) i++;
    if (i === end) return true;
  }
  return isUtf8(bytes.subarray(start, start + length));
}

/** The explicit stack, reused by every call (the check is synchronous and never re-entered):
 * pending[d] = items still to read in the container at depth d (a map counts keys and values),
 * isMap[d] = whether it is a map, so its next item is a key when pending[d] is even. */
let pendingStack = new Float64Array(MESSAGE_DEPTH_MAX + 2);
let isMapStack = new Uint8Array(MESSAGE_DEPTH_MAX + 2);

/**
 * Throws PROTOCOL_ERROR unless `bytes` is exactly one plain MessagePack value nested at most
 * `depthMax` containers deep, of at most `itemsMax` items in all (the value itself, each element,
 * each map key and value). Allocates nothing on success unless a str is long or not ASCII (it
 * runs on every message).
 */
export function checkPlainMessagePack(bytes: Uint8Array, depthMax: number = MESSAGE_DEPTH_MAX, itemsMax = Infinity): void {
  if (pendingStack.length < depthMax + 2) {
    pendingStack = new Float64Array(depthMax + 2);
    isMapStack = new Uint8Array(depthMax + 2);
  }
  const pending = pendingStack;
  const isMap = isMapStack;
  const end = bytes.length;
  pending[0] = 1;
  isMap[0] = 0;
  let depth = 0;
  let offset = 0;
  let itemsLeft = itemsMax - 1;
  while (depth >= 0) {
    const left = pending[depth];
    if (left === 0) {
      depth--;
      continue;
    }
    const isKey = isMap[depth] === 1 && left % 2 === 0;
    pending[depth] = left - 1;
    if (offset >= end) reject('truncated: a value is missing', offset);
    const byte = bytes[offset];
    const kind = KIND[byte];
    if (kind === INVALID) reject(describeRejected(byte), offset);
    if (isKey && kind !== STR) reject('map keys must be strings', offset);
    const lengthBytes = LENGTH_BYTES[byte];
    const headerEnd = offset + 1 + lengthBytes;
    let count: number;
    if (lengthBytes === 0) {
      count = IMPLIED[byte];
    } else {
      if (headerEnd > end) reject('truncated length field', offset);
      count = bytes[offset + 1];
      for (let i = 2; i <= lengthBytes; i++) count = count * 256 + bytes[offset + i];
    }
    if (kind === ARRAY || kind === MAP) {
      const items = kind === MAP ? count * 2 : count;
      if (items > end - headerEnd) reject(`${KIND_NAMES[kind]} declares ${count} entries but only ${end - headerEnd} bytes remain`, offset);
      if (kind === MAP && count > MESSAGE_MAP_ENTRIES_MAX) reject(`map of ${count} entries, over the limit of ${MESSAGE_MAP_ENTRIES_MAX}`, offset);
      itemsLeft -= items;
      if (itemsLeft < 0) reject(`more than ${itemsMax} items in one message`, offset);
      if (depth + 1 > depthMax) reject(`nesting deeper than ${depthMax}`, offset);
      depth++;
      pending[depth] = items;
      isMap[depth] = kind === MAP ? 1 : 0;
      offset = headerEnd;
    } else {
      if (count > end - headerEnd) reject(`${KIND_NAMES[kind]} declares ${count} bytes but only ${end - headerEnd} remain`, offset);
      if (kind === STR && count > 0 && !isUtf8Text(bytes, headerEnd, count)) reject('str is not valid UTF-8 (send other bytes as bin)', offset);
      offset = headerEnd + count;
    }
  }
  if (offset !== end) reject(`${end - offset} trailing bytes after the value`, offset);
}
