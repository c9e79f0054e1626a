/**
 * The binary form of `execute`'s ops and results: the JS half of the addon ABI whose layout is
 * written down in engine/src/core/abi.rs (flag values here must match the ones there).
 *
 * Responsibility: pack a batch of `EngineOp`s into one Buffer and unpack the addon's result
 * Buffer into `EngineResult`s, so a batch crosses the napi boundary as two buffers.
 *
 * Invariants:
 * - `encodeOps` sizes its buffer exactly before writing (one allocation, no growth).
 * - Keys and values in decoded results are views (`subarray`) of the one result buffer: no
 *   copy per value. They stay valid as long as they are referenced. A getBatch's values and a
 *   scan batch's entries stay in the wire form the engine wrote (PackedArray, one view each):
 *   the daemon copies them into its reply as one block.
 * - Absent optional fields stay absent in decoded results (never `undefined`-valued keys).
 */
import { ToonDBError } from '../protocol/errors.js';
import { PackedArray } from '../protocol/packed-array.js';
import type { EngineOp, EngineResult, ExpiringEntry } from './types.js';

const F_TXN = 1 << 0;
const F_KEY = 1 << 1;
const F_VALUE = 1 << 2;
const F_KEYS = 1 << 3;
const F_VALUES = 1 << 4;
const F_END = 1 << 5;
const F_RANGE = 1 << 6;
const F_TTL = 1 << 7;
const F_CURSOR = 1 << 8;
const F_REVERSE = 1 << 9;
const F_LIMIT = 1 << 10;
const F_BATCH_ITEMS = 1 << 11;
const F_BATCH_BYTES = 1 << 12;
const F_ISOLATION = 1 << 13;
const F_WRITES = 1 << 14;
const F_EXPIRY = 1 << 15;

const R_ERROR = 1 << 0;
const R_VALUE = 1 << 1;
const R_VALUE_NULL = 1 << 2;
const R_HAS_FOUND = 1 << 3;
const R_FOUND = 1 << 4;
const R_VALUES = 1 << 5;
const R_KEYS = 1 << 6;
const R_ENTRIES = 1 << 7;
const R_HAS_DONE = 1 << 8;
const R_DONE = 1 << 9;
const R_CURSOR = 1 << 10;
const R_TXN = 1 << 11;
const R_COMMIT_TS = 1 << 12;
const R_EXPIRING = 1 << 13;

const NUM_BYTES = 8;
const LEN_BYTES = 4;
/** Set in a list's count when the list is packed: MessagePack bins after a byte length. */
const LIST_PACKED = 0x8000_0000;

function listBytes(list: readonly Buffer[] | PackedArray): number {
  if (list instanceof PackedArray) return 2 * LEN_BYTES + list.bytes.length;
  let total = LEN_BYTES;
  for (const item of list) total += LEN_BYTES + item.length;
  return total;
}

function opBytes(op: EngineOp): number {
  let total = 3;
  if (op.txn !== undefined) total += NUM_BYTES;
  if (op.key !== undefined) total += LEN_BYTES + op.key.length;
  if (op.value !== undefined) total += LEN_BYTES + op.value.length;
  if (op.keys !== undefined) total += listBytes(op.keys);
  if (op.values !== undefined) total += listBytes(op.values);
  if (op.end !== undefined) total += LEN_BYTES + op.end.length;
  if (op.ttlMs !== undefined) total += NUM_BYTES;
  if (op.cursor !== undefined) total += NUM_BYTES;
  if (op.limit !== undefined) total += NUM_BYTES;
  if (op.batchItems !== undefined) total += NUM_BYTES;
  if (op.batchBytes !== undefined) total += NUM_BYTES;
  if (op.isolation !== undefined) total += 4;
  if (op.writes !== undefined) total += NUM_BYTES;
  return total;
}

/** Packs `ops` into one buffer (layout: engine/src/core/abi.rs). */
export function encodeOps(ops: readonly EngineOp[]): Buffer {
  let size = LEN_BYTES;
  for (const op of ops) size += opBytes(op);
  const out = Buffer.allocUnsafe(size);
  let at = out.writeUInt32LE(ops.length, 0);
  const bytes = (b: Buffer) => {
    at = out.writeUInt32LE(b.length, at);
    at += b.copy(out, at);
  };
  const list = (l: readonly Buffer[] | PackedArray) => {
    if (l instanceof PackedArray) {
      if (l.count >= LIST_PACKED) throw new Error(`invariant: a packed list of ${l.count} items`);
      at = out.writeUInt32LE((l.count | LIST_PACKED) >>> 0, at);
      bytes(l.bytes);
      return;
    }
    at = out.writeUInt32LE(l.length, at);
    for (const b of l) bytes(b);
  };
  const num = (n: number) => {
    at = out.writeDoubleLE(n, at);
  };
  for (const op of ops) {
    let flags = 0;
    if (op.txn !== undefined) flags |= F_TXN;
    if (op.key !== undefined) flags |= F_KEY;
    if (op.value !== undefined) flags |= F_VALUE;
    if (op.keys !== undefined) flags |= F_KEYS;
    if (op.values !== undefined) flags |= F_VALUES;
    if (op.end !== undefined) flags |= F_END;
    if (op.range === true) flags |= F_RANGE;
    if (op.ttlMs !== undefined) flags |= F_TTL;
    if (op.cursor !== undefined) flags |= F_CURSOR;
    if (op.reverse === true) flags |= F_REVERSE;
    if (op.withExpiry === true) flags |= F_EXPIRY;
    if (op.limit !== undefined) flags |= F_LIMIT;
    if (op.batchItems !== undefined) flags |= F_BATCH_ITEMS;
    if (op.batchBytes !== undefined) flags |= F_BATCH_BYTES;
    if (op.isolation !== undefined) flags |= F_ISOLATION;
    if (op.writes !== undefined) flags |= F_WRITES;
    at = out.writeUInt8(op.kind, at);
    at = out.writeUInt16LE(flags, at);
    if (op.txn !== undefined) num(op.txn);
    if (op.key !== undefined) bytes(op.key);
    if (op.value !== undefined) bytes(op.value);
    if (op.keys !== undefined) list(op.keys);
    if (op.values !== undefined) list(op.values);
    if (op.end !== undefined) bytes(op.end);
    if (op.ttlMs !== undefined) num(op.ttlMs);
    if (op.cursor !== undefined) num(op.cursor);
    if (op.limit !== undefined) num(op.limit);
    if (op.batchItems !== undefined) num(op.batchItems);
    if (op.batchBytes !== undefined) num(op.batchBytes);
    if (op.isolation !== undefined) at = out.writeUInt32LE(op.isolation, at);
    if (op.writes !== undefined) num(op.writes);
  }
  if (at !== size) throw new Error(`invariant: encoded ${at} of ${size} op bytes`);
  return out;
}

/** Unpacks the addon's result buffer. */
export function decodeResults(buf: Buffer): EngineResult[] {
  let at = 0;
  const u32 = () => {
    const v = buf.readUInt32LE(at);
    at += 4;
    return v;
  };
  const num = () => {
    const v = buf.readDoubleLE(at);
    at += NUM_BYTES;
    return v;
  };
  const bytes = () => {
    const len = u32();
    const view = buf.subarray(at, at + len);
    at += len;
    return view;
  };
  const list = () => {
    const n = u32();
    const out = new Array<Buffer>(n);
    for (let i = 0; i < n; i++) out[i] = bytes();
    return out;
  };
  const count = u32();
  const results = new Array<EngineResult>(count);
  for (let i = 0; i < count; i++) {
    const flags = buf.readUInt16LE(at);
    at += 2;
    const result: EngineResult = { seq: num() };
    if (flags & R_ERROR) {
      result.code = bytes().toString('utf8');
      result.message = bytes().toString('utf8');
    }
    if (flags & R_VALUE) result.value = bytes();
    else if (flags & R_VALUE_NULL) result.value = null;
    if (flags & R_HAS_FOUND) result.found = (flags & R_FOUND) !== 0;
    if (flags & R_VALUES) {
      const n = u32();
      result.values = new PackedArray(n, bytes());
    }
    if (flags & R_KEYS) result.keys = list();
    if (flags & R_ENTRIES) {
      const n = u32();
      result.entries = new PackedArray(n, bytes());
    }
    if (flags & R_EXPIRING) {
      const n = u32();
      const expiring = new Array<ExpiringEntry>(n);
      for (let e = 0; e < n; e++) expiring[e] = { start: u32(), end: u32(), atMs: num() };
      result.expiring = expiring;
    }
    if (flags & R_HAS_DONE) result.done = (flags & R_DONE) !== 0;
    if (flags & R_CURSOR) result.cursor = num();
    if (flags & R_TXN) result.txn = num();
    if (flags & R_COMMIT_TS) {
      result.commitTs = buf.readBigUInt64LE(at);
      at += 8;
    }
    results[i] = result;
  }
  if (at !== buf.length) throw new ToonDBError('INTERNAL', `engine result buffer has ${buf.length - at} trailing bytes`);
  return results;
}

/** One lane call's outcome (layout `done` in engine/src/core/abi.rs): its encoded results (a
 * view of the done buffer), or the `[CODE] message` text of a whole-call failure. */
export interface LaneDone {
  call: number;
  results?: Buffer;
  failure?: string;
}

/** Unpacks the outcomes of finished lane calls. */
export function decodeDone(buf: Buffer): LaneDone[] {
  let at = 0;
  const count = buf.readUInt32LE(at);
  at += 4;
  const done = new Array<LaneDone>(count);
  for (let i = 0; i < count; i++) {
    const call = buf.readUInt32LE(at);
    const status = buf[at + 4];
    const len = buf.readUInt32LE(at + 5);
    at += 9;
    const body = buf.subarray(at, at + len);
    at += len;
    done[i] = status === 0 ? { call, results: body } : { call, failure: body.toString('utf8') };
  }
  if (at !== buf.length) throw new ToonDBError('INTERNAL', `engine done buffer has ${buf.length - at} trailing bytes`);
  return done;
}
