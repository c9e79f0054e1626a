/**
 * Hand-written MessagePack for the hottest message shapes: what MessageCodec (msgpackr with the
 * codec's options) produces for them, byte for byte, without msgpackr, the plain-check or an
 * intermediate object per frame. Profiles put msgpackr plus the check at ~20 % of the daemon's
 * and the client's CPU for point operations; these shapes are nearly all of that traffic.
 *
 * Shapes:
 * - replies `{ id, result }` whose result is nil, a boolean, a Buffer, or an array of Buffer/nil
 *   (get, exists, getBatch, and the nil of put, delete and the batch writes): `simpleReplyBytes`
 *   sizes one (or says it is not simple), `writeSimpleReply` writes the frame;
 * - requests `{ id, op, key }` and `{ id, op, key, value }` (get, exists, delete, put):
 *   `simpleRequestBytes` / `writeSimpleRequest`;
 * - reading a reply `{ id, result }` whose result is nil, a boolean or a bin:
 *   `readSimpleReply`.
 *
 * Invariants:
 * - The writers produce exactly MessageCodec.encode's frame for the same message (a test compares
 *   them on random messages), so the wire stays one format whichever path wrote it.
 * - `readSimpleReply` returns null for anything it does not fully recognise, including trailing
 *   bytes; the caller then decodes with MessageCodec. So it never accepts a body MessageCodec
 *   would refuse, and decodes what it accepts exactly as MessageCodec would (a `bin` is a view
 *   of the body, as there).
 * - Pure: no I/O; the writers write only inside the range they sized.
 */

import { FRAME_HEADER_BYTES } from './limits.js';

/** A reply result these writers handle. */
export type SimpleResult = null | boolean | Buffer | (Buffer | null)[];

const NIL = 0xc0;
const FALSE = 0xc2;
const TRUE = 0xc3;
const BIN8 = 0xc4;
const BIN16 = 0xc5;
const BIN32 = 0xc6;
const UINT8 = 0xcc;
const UINT16 = 0xcd;
const UINT32 = 0xce;
const ARRAY16 = 0xdc;
const ARRAY32 = 0xdd;
const FIXMAP = 0x80;
const FIXARRAY = 0x90;
const FIXSTR = 0xa0;
const FIXSTR_BYTES_MAX = 31;

/** `id`, `result`, `op`, `key`, `value` as fixstr map keys. */
const KEY_ID = Buffer.from([FIXSTR | 2, 0x69, 0x64]);
const KEY_RESULT = Buffer.from([FIXSTR | 6, 0x72, 0x65, 0x73, 0x75, 0x6c, 0x74]);
const KEY_OP = Buffer.from([FIXSTR | 2, 0x6f, 0x70]);
const KEY_KEY = Buffer.from([FIXSTR | 3, 0x6b, 0x65, 0x79]);
const KEY_VALUE = Buffer.from([FIXSTR | 5, 0x76, 0x61, 0x6c, 0x75, 0x65]);

function uintBytes(value: number): number {
  return value < 0x80 ? 1 : value < 0x100 ? 2 : value < 0x10000 ? 3 : 5;
}

function writeUint(target: Buffer, at: number, value: number): number {
  if (value < 0x80) {
    target[at] = value;
    return at + 1;
  }
  if (value < 0x100) {
    target[at] = UINT8;
    target[at + 1] = value;
    return at + 2;
  }
  if (value < 0x10000) {
    target[at] = UINT16;
    target.writeUInt16BE(value, at + 1);
    return at + 3;
  }
  target[at] = UINT32;
  target.writeUInt32BE(value, at + 1);
  return at + 5;
}

function binBytes(length: number): number {
  return (length < 0x100 ? 2 : length < 0x10000 ? 3 : 5) + length;
}

function writeBin(target: Buffer, at: number, bytes: Uint8Array): number {
  const length = bytes.length;
  if (length < 0x100) {
    target[at] = BIN8;
    target[at + 1] = length;
    at += 2;
  } else if (length < 0x10000) {
    target[at] = BIN16;
    target.writeUInt16BE(length, at + 1);
    at += 3;
  } else {
    target[at] = BIN32;
    target.writeUInt32BE(length, at + 1);
    at += 5;
  }
  target.set(bytes, at);
  return at + length;
}

function arrayHeaderBytes(count: number): number {
  return count < 16 ? 1 : count < 0x10000 ? 3 : 5;
}

function writeArrayHeader(target: Buffer, at: number, count: number): number {
  if (count < 16) {
    target[at] = FIXARRAY | count;
    return at + 1;
  }
  if (count < 0x10000) {
    target[at] = ARRAY16;
    target.writeUInt16BE(count, at + 1);
    return at + 3;
  }
  target[at] = ARRAY32;
  target.writeUInt32BE(count, at + 1);
  return at + 5;
}

function isIdNumber(id: number): boolean {
  return Number.isInteger(id) && id >= 0 && id <= 0xffff_ffff;
}

/** Bytes of the MessagePack for `result`, or -1 if it is not a SimpleResult. */
function resultBytes(result: unknown): number {
  if (result === null || typeof result === 'boolean') return 1;
  if (Buffer.isBuffer(result)) return binBytes(result.length);
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
  else {
    p = writeArrayHeader(target, p, result.length);
    for (const item of result) p = item === null ? (target[p] = NIL, p + 1) : writeBin(target, p, item);
  }
  if (p !== at + frameBytes) throw new Error(`invariant: simple reply wrote ${p - at} of ${frameBytes} bytes`);
  return p;
}

/** Frame bytes of the request `{ id, op, key }` (value undefined) or `{ id, op, key, value }`,
 * or -1 if this module cannot write it. */
export function simpleRequestBytes(id: number, op: string, key: unknown, value: unknown): number {
  if (!isIdNumber(id) || op.length > FIXSTR_BYTES_MAX || !Buffer.isBuffer(key)) return -1;
  let body = 1 + KEY_ID.length + uintBytes(id) + KEY_OP.length + 1 + Buffer.byteLength(op) + KEY_KEY.length + binBytes(key.length);
  if (value !== undefined) {
    if (!Buffer.isBuffer(value)) return -1;
    body += KEY_VALUE.length + binBytes(value.length);
  }
  return FRAME_HEADER_BYTES + body;
}

/** Writes the request frame sized by simpleRequestBytes at `at`; returns the offset after it. */
export function writeSimpleRequest(target: Buffer, at: number, id: number, op: string, key: Buffer, value: Buffer | undefined, frameBytes: number): number {
  target.writeUInt32BE(frameBytes - FRAME_HEADER_BYTES, at);
  let p = at + FRAME_HEADER_BYTES;
  target[p++] = FIXMAP | (value === undefined ? 3 : 4);
  p += KEY_ID.copy(target, p);
  p = writeUint(target, p, id);
  p += KEY_OP.copy(target, p);
  target[p] = FIXSTR | Buffer.byteLength(op);
  p += 1 + target.write(op, p + 1, 'latin1');
  p += KEY_KEY.copy(target, p);
  p = writeBin(target, p, key);
  if (value !== undefined) {
    p += KEY_VALUE.copy(target, p);
    p = writeBin(target, p, value);
  }
  if (p !== at + frameBytes) throw new Error(`invariant: simple request wrote ${p - at} of ${frameBytes} bytes`);
  return p;
}

/** A reply read by readSimpleReply. */
export interface SimpleReply {
  id: number;
  result: null | boolean | Buffer;
}

function matches(body: Buffer, at: number, literal: Buffer): boolean {
  if (at + literal.length > body.length) return false;
  for (let i = 0; i < literal.length; i++) if (body[at + i] !== literal[i]) return false;
  return true;
}

/**
 * Reads a reply body that is exactly `{ id: uint, result: nil | bool | bin }` in the encoding
 * above; null for anything else (decode it with MessageCodec instead).
 */
export function readSimpleReply(body: Buffer): SimpleReply | null {
  const end = body.length;
  if (end < 12 || body[0] !== (FIXMAP | 2) || !matches(body, 1, KEY_ID)) return null;
  let p = 1 + KEY_ID.length;
  const tag = body[p];
  let id: number;
  if (tag < 0x80) {
    id = tag;
    p += 1;
  } else if (tag === UINT8 && p + 2 <= end) {
    id = body[p + 1];
    p += 2;
  } else if (tag === UINT16 && p + 3 <= end) {
    id = body.readUInt16BE(p + 1);
    p += 3;
  } else if (tag === UINT32 && p + 5 <= end) {
    id = body.readUInt32BE(p + 1);
    p += 5;
  } else {
    return null;
  }
  if (id === 0 || !matches(body, p, KEY_RESULT)) return null; // id 0 is a connection-level error
  p += KEY_RESULT.length;
  if (p >= end) return null;
  const kind = body[p];
  if (kind === NIL || kind === TRUE || kind === FALSE) {
    return p + 1 === end ? { id, result: kind === NIL ? null : kind === TRUE } : null;
  }
  let length: number;
  let start: number;
  if (kind === BIN8 && p + 2 <= end) {
    length = body[p + 1];
    start = p + 2;
  } else if (kind === BIN16 && p + 3 <= end) {
    length = body.readUInt16BE(p + 1);
    start = p + 3;
  } else if (kind === BIN32 && p + 5 <= end) {
    length = body.readUInt32BE(p + 1);
    start = p + 5;
  } else {
    return null;
  }
  if (start + length !== end) return null;
  return { id, result: body.subarray(start, end) };
}
