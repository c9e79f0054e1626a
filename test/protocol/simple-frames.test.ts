// The hand-written frames (protocol/simple-frames.ts: simple-replies.ts, simple-requests.ts) must be exactly what MessageCodec writes
// and reads: one wire format whichever path handled a message. Random messages of every size
// class (fixint/uint8/16/32 ids, bin8/16/32 values, fixarray/array16 results) are compared byte
// for byte; random mutations of reply bodies must never be accepted by the hand-written reader
// unless MessageCodec decodes them to the same thing.
import { describe, expect, it } from 'vitest';
import { MessageCodec } from '../../protocol/codec.js';
import { BATCH_ITEMS_MAX, FRAME_HEADER_BYTES } from '../../protocol/limits.js';
import { FIXARRAY } from '../../protocol/msgpack-forms.js';
import { encodableResult, PackedArray } from '../../protocol/packed-array.js';
import { readSimpleReply, simpleReplyBytes, writeSimpleReply, type ScanBatchResult, type SimpleResult } from '../../protocol/simple-replies.js';
import { readSimpleRequest, simpleRequestBytesMax, writeSimpleRequest, type SimpleRequest } from '../../protocol/simple-requests.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';

const SEED = seedFrom('TOONDB_SIMPLE_FRAMES_SEED');
const CASES = Number(process.env.TOONDB_SIMPLE_FRAMES_CASES ?? 3_000);
const codec = new MessageCodec();

function generators(random: () => number) {
  const int = (max: number) => Math.floor(random() * max);
  const id = () => [int(0x80), 0x80 + int(0x80), 0x100 + int(0xff00), 0x10000 + int(0xffff_0000 - 1), 0xffff_ffff][int(5)]!;
  const bytes = () => {
    const length = [int(32), int(256), 256 + int(2000), 0x10000 + int(2000)][random() < 0.97 ? int(3) : 3]!;
    // Random bytes where content matters (short values); a filled buffer for the long ones.
    return length <= 256 ? Buffer.from(Array.from({ length }, () => int(256))) : Buffer.alloc(length, int(256));
  };
  const small = () => Buffer.from(Array.from({ length: int(40) }, () => int(256)));
  const scanBatch = (): SimpleResult => {
    const count = random() < 0.9 ? int(20) : 16 + int(300);
    // Cursors over 32 bits are written as float64, as msgpackr writes such numbers.
    const cursor = random() < 0.1 ? 0x1_0000_0000 + int(2 ** 40) : id();
    return { cursor, entries: Array.from({ length: count }, (): [Buffer, Buffer] => [small(), small()]), done: random() < 0.5 };
  };
  const result = (): SimpleResult => {
    switch (int(6)) {
      case 5: return scanBatch();
      case 0: return null;
      case 1: return random() < 0.5;
      case 2: return bytes();
      default: {
        const count = random() < 0.9 ? int(20) : 16 + int(300);
        return Array.from({ length: count }, () => (random() < 0.2 ? null : small()));
      }
    }
  };
  return { int, id, bytes, result, small };
}

/** Deep equality that compares Buffers by content (vitest's deep equality on long Buffers is
 * slow) and requires the same keys in the same order. */
function same(a: unknown, b: unknown): boolean {
  // A scan batch's entries, or a request's keys, read packed.
  if (a instanceof PackedArray) return same(a.count > 0 && (a.bytes[0] & 0xf0) === FIXARRAY ? a.toEntries() : a.toValues(), b);
  if (Buffer.isBuffer(a) || Buffer.isBuffer(b)) return Buffer.isBuffer(a) && Buffer.isBuffer(b) && a.equals(b);
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((item, i) => same(item, b[i]));
  }
  if (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null) {
    const keys = Object.keys(a);
    return same(keys, Object.keys(b)) && keys.every((key) => same((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]));
  }
  return a === b;
}

function sameReply(fast: { id: number; result: unknown }, decoded: Record<string, unknown>): boolean {
  return same({ id: fast.id, result: fast.result }, decoded);
}

/** `body` with one random byte changed, cut short, and with one byte too many. */
function damaged(body: Buffer, int: (max: number) => number): Buffer[] {
  const mutated = Buffer.from(body);
  mutated[int(mutated.length)] = int(256);
  return [mutated, body.subarray(0, int(body.length)), Buffer.concat([body, Buffer.from([int(256)])])];
}

/** Expects `read` to refuse each candidate or read it exactly as MessageCodec does; returns how
 * many it accepted. */
function readsAsCodec(read: (body: Buffer) => object | null, candidates: Buffer[]): number {
  let accepted = 0;
  for (const candidate of candidates) {
    const fast = read(candidate);
    if (fast === null) continue;
    accepted++;
    expect(same(fast, codec.decode(candidate))).toBe(true);
  }
  return accepted;
}

/** A batch size across the fixarray / array16 boundary. */
function random3(int: (max: number) => number): number {
  return int(10) < 8 ? int(16) : 16 + int(300);
}

/** `items` as the engine packs them, built here from msgpackr's own encoding of the array
 * without its header. */
function packed(items: ([Buffer, Buffer] | Buffer | null)[]): PackedArray {
  const n = items.length;
  const headerBytes = n < 16 ? 1 : n < 0x10000 ? 3 : 5;
  return new PackedArray(n, codec.encode(items).subarray(FRAME_HEADER_BYTES + headerBytes));
}

/** A getBatch result or a scan batch's entries packed (as the daemon replies them); others as
 * they are. */
function withPackedArray(result: SimpleResult): SimpleResult {
  if (Array.isArray(result)) return packed(result);
  if (result === null || typeof result !== 'object' || Buffer.isBuffer(result) || result instanceof PackedArray) return result;
  return { ...result, entries: packed(result.entries as [Buffer, Buffer][]) };
}

describe('simple frames', () => {
  it(`write replies exactly as MessageCodec does (seed ${SEED})`, () => {
    const { id, result, int } = generators(mulberry32(SEED));
    for (let i = 0; i < CASES; i++) {
      const plain = result();
      const expected = codec.encode({ id: id(), result: plain });
      // Value arrays and scan entries are written from objects or packed: the same bytes either way.
      const message = { id: codec.decode(expected.subarray(FRAME_HEADER_BYTES)).id as number, result: int(2) === 0 ? withPackedArray(plain) : plain };
      const frameBytes = simpleReplyBytes(message.id, message.result);
      expect(frameBytes).toBe(expected.length);
      const target = Buffer.alloc(frameBytes + 6, 0xee);
      expect(writeSimpleReply(target, 3, message.id, message.result, frameBytes)).toBe(3 + frameBytes);
      expect(target.subarray(3, 3 + frameBytes).equals(expected), JSON.stringify({ id: message.id })).toBe(true);
      expect(target.subarray(0, 3).equals(Buffer.alloc(3, 0xee)) && target.subarray(3 + frameBytes).equals(Buffer.alloc(3, 0xee))).toBe(true);
    }
  });

  /** `{ id, ...request }` written by the simple writer inside its bound, expected to equal
   * `expected`, and nothing written outside it. The bound is exact without strings, and over
   * by at most 2 bytes per unit of a string of up to 64 units (which it does not measure). */
  function expectWrittenAs(id: number, request: SimpleRequest, expected: Buffer): void {
    const frameBytesMax = simpleRequestBytesMax(id, request);
    const strings = [request.key, request.value, ...(request.keys ?? []), ...(request.entries ?? []).flat()]
      .filter((item): item is string => typeof item === 'string');
    const slackMax = strings.reduce((sum, text) => sum + (text.length <= 64 ? 2 * text.length : 0), 0);
    expect(frameBytesMax).toBeGreaterThanOrEqual(expected.length);
    expect(frameBytesMax - expected.length).toBeLessThanOrEqual(slackMax);
    const target = Buffer.alloc(frameBytesMax + 6, 0xee);
    expect(writeSimpleRequest(target, 3, id, request, frameBytesMax)).toBe(3 + expected.length);
    expect(target.subarray(3, 3 + expected.length).equals(expected)).toBe(true);
    expect(target.subarray(0, 3).equals(Buffer.alloc(3, 0xee))).toBe(true);
    expect(target.subarray(3 + expected.length).equals(Buffer.alloc(frameBytesMax + 3 - expected.length, 0xee))).toBe(true);
  }

  it(`write get/put/delete/getBatch/putBatch requests exactly as MessageCodec does (seed ${SEED})`, () => {
    const { id, bytes, int, small } = generators(mulberry32(SEED + 1));
    for (let i = 0; i < CASES; i++) {
      const op = ['get', 'exists', 'delete', 'put', 'getBatch', 'deleteBatch', 'putBatch'][int(7)]!;
      const count = random3(int);
      const request: SimpleRequest = op === 'putBatch' ? { op, entries: Array.from({ length: count }, (): [Buffer, Buffer] => [small(), int(5) === 0 ? bytes() : small()]) }
        : op.endsWith('Batch') ? { op, keys: Array.from({ length: count }, small) }
          : op === 'put' ? { op, key: bytes(), value: bytes() } : { op, key: bytes() };
      const message = { id: id(), ...request };
      expectWrittenAs(message.id, request, codec.encode(message));
    }
  });

  it(`write string keys and values as the bin of their UTF-8 bytes, as MessageCodec writes that Buffer (seed ${SEED})`, () => {
    const { id, int } = generators(mulberry32(SEED + 4));
    const alphabet = ['a', 'Z', '/', 'é', 'ß', '中', '😀', '\u0000'];
    const text = (length: number) => Array.from({ length }, () => alphabet[int(alphabet.length)]).join('');
    const textOrBytes = (length: number) => (int(2) === 0 ? text(length) : Buffer.from(text(length)));
    const asBin = (item: string | Buffer) => (typeof item === 'string' ? Buffer.from(item) : item);
    for (let i = 0; i < CASES / 3; i++) {
      const op = ['get', 'put', 'getBatch', 'putBatch'][int(4)]!;
      const key = text(1 + [int(20), int(300), 20_000 + int(100)][int(3)]!);
      let request: SimpleRequest;
      let asBuffers: SimpleRequest;
      if (op === 'getBatch') {
        const keys = Array.from({ length: random3(int) }, () => textOrBytes(1 + int(20)));
        request = { op, keys };
        asBuffers = { op, keys: keys.map(asBin) };
      } else if (op === 'putBatch') {
        const entries = Array.from({ length: random3(int) }, (): [string | Buffer, string | Buffer] => [textOrBytes(1 + int(20)), textOrBytes(int(100))]);
        request = { op, entries };
        asBuffers = { op, entries: entries.map(([k, v]) => [asBin(k), asBin(v)]) };
      } else if (op === 'put') {
        const value = text(int(100));
        request = { op, key, value };
        asBuffers = { op, key: asBin(key), value: asBin(value) };
      } else {
        request = { op, key };
        asBuffers = { op, key: asBin(key) };
      }
      const message = { id: id(), ...asBuffers };
      expectWrittenAs(message.id, request, codec.encode(message));
    }
  });

  it('write strings at the edges of the ASCII loop as MessageCodec writes their UTF-8', () => {
    const ascii = (n: number) => 'k'.repeat(n);
    const keys = ['', 'a', ascii(63), ascii(64), ascii(65), ascii(255), ascii(256), `${ascii(63)}é`, `${ascii(62)}😀`, `é${ascii(63)}`,
      `${ascii(20)}\u007f\u0080`, '\u0000'];
    for (const key of keys) {
      const request: SimpleRequest = { op: 'getBatch', keys: [key, key] };
      expectWrittenAs(7, request, codec.encode({ id: 7, op: 'getBatch', keys: [Buffer.from(key), Buffer.from(key)] }));
      expectWrittenAs(8, { op: 'put', key: 'k', value: key }, codec.encode({ id: 8, op: 'put', key: Buffer.from('k'), value: Buffer.from(key) }));
    }
  });

  it('refuse what they cannot write', () => {
    expect(simpleReplyBytes(1, 3)).toBe(-1);
    expect(simpleReplyBytes(1, { a: 1 })).toBe(-1);
    expect(simpleReplyBytes(1, [Buffer.alloc(1), 'x'])).toBe(-1);
    expect(simpleReplyBytes(-1, null)).toBe(-1);
    expect(simpleReplyBytes(2 ** 32, null)).toBe(-1);
    expect(simpleReplyBytes(1, { cursor: 1.5, entries: [], done: true })).toBe(-1);
    expect(simpleReplyBytes(1, { cursor: 1, entries: {}, done: true })).toBe(-1);
    const key = Buffer.alloc(1);
    expect(simpleRequestBytesMax(1, { op: 'get', key: 7 })).toBe(-1);
    expect(simpleRequestBytesMax(1, { op: 'put', key, value: new Uint16Array(2) })).toBe(-1);
    expect(simpleRequestBytesMax(1, { op: 'getBatch', keys: [key, null] })).toBe(-1);
    expect(simpleRequestBytesMax(1, { op: 'putBatch', entries: [[key, key], [key]] })).toBe(-1);
    expect(simpleRequestBytesMax(1, { op: 'putBatch', entries: [[key, 3]] })).toBe(-1);
    // Other fields, another order, or an op name that is not ASCII letters: the codec's business.
    expect(simpleRequestBytesMax(1, { op: 'put', key, value: key, ttlSeconds: 5 })).toBe(-1);
    expect(simpleRequestBytesMax(1, { op: 'get', key, txn: 3 })).toBe(-1);
    expect(simpleRequestBytesMax(1, { op: 'putBatch', entries: [], txn: 3 })).toBe(-1);
    expect(simpleRequestBytesMax(1, { key, op: 'get' })).toBe(-1);
    expect(simpleRequestBytesMax(1, { op: 'put', value: key, key })).toBe(-1);
    expect(simpleRequestBytesMax(1, { op: 'g\u00e9t', key })).toBe(-1);
    expect(simpleRequestBytesMax(1, { op: 'x'.repeat(17), key })).toBe(-1);
    expect(simpleRequestBytesMax(2 ** 32, { op: 'get', key })).toBe(-1);
    expect(simpleRequestBytesMax(1, { op: 'get', key })).toBeGreaterThan(0);
  });

  it('packed values unpack to their values, refuse damaged bytes, and reach the codec as values', () => {
    const values = [Buffer.from('v1'), null, Buffer.alloc(300, 7), Buffer.alloc(0), null];
    const array = packed(values);
    expect(same(array.toValues(), values)).toBe(true);
    expect(() => new PackedArray(6, array.bytes).toValues()).toThrow(/packed value 5 of 6/);
    expect(() => new PackedArray(4, array.bytes).toValues()).toThrow(/trailing bytes/);
    expect(() => new PackedArray(1, Buffer.from([0x92])).toValues()).toThrow(/neither bin nor nil/);
    const frameBytes = simpleReplyBytes(9, array);
    const written = Buffer.alloc(frameBytes);
    writeSimpleReply(written, 0, 9, array, frameBytes);
    expect(written.equals(codec.encode({ id: 9, result: encodableResult(array) }))).toBe(true);
    expect(written.equals(codec.encode({ id: 9, result: values }))).toBe(true);
  });

  it('packed entries unpack to their pairs, refuse damaged bytes, and reach the codec as pairs', () => {
    const pairs: [Buffer, Buffer][] = [[Buffer.from('k1'), Buffer.alloc(0)], [Buffer.from('k2'), Buffer.alloc(300, 7)], [Buffer.alloc(70_000, 1), Buffer.from('v')]];
    const entries = packed(pairs);
    expect(same(entries.toEntries(), pairs)).toBe(true);
    expect(() => new PackedArray(4, entries.bytes).toEntries()).toThrow(/packed entry 3 of 4/);
    expect(() => new PackedArray(2, entries.bytes).toEntries()).toThrow(/trailing bytes/);
    expect(() => new PackedArray(1, Buffer.from([0x92, 0xc4, 5, 1])).toEntries()).toThrow(/not a \[bin, bin\] pair/);
    const batch: ScanBatchResult = { cursor: 3, entries, done: false };
    const viaCodec = codec.encode({ id: 9, result: encodableResult(batch) });
    const frameBytes = simpleReplyBytes(9, batch);
    const written = Buffer.alloc(frameBytes);
    writeSimpleReply(written, 0, 9, batch, frameBytes);
    expect(written.equals(viaCodec)).toBe(true);
    expect(encodableResult([Buffer.from('x')])).toEqual([Buffer.from('x')]);
  });

  it('packed entries with expiry unpack to triples and reach the codec as triples', () => {
    const triples: [Buffer, Buffer, number | null][] = [[Buffer.from('k1'), Buffer.from('v'), 1_764_000_000_123], [Buffer.from('k2'), Buffer.alloc(0), null]];
    const entries = packed(triples as unknown as [Buffer, Buffer][]);
    expect(entries.bytes[0]).toBe(0x93);
    expect(entries.toEntries()).toEqual(triples);
    expect(() => new PackedArray(1, Buffer.from([0x93, 0xc4, 1, 1, 0xc4, 0, 0x01])).toEntries()).toThrow(/neither float 64 nor nil/);
    const batch: ScanBatchResult = { cursor: 0, entries, done: true };
    const frameBytes = simpleReplyBytes(4, batch);
    const written = Buffer.alloc(frameBytes);
    writeSimpleReply(written, 0, 4, batch, frameBytes);
    expect(written.equals(codec.encode({ id: 4, result: encodableResult(batch) }))).toBe(true);
  });

  it(`read replies as MessageCodec does, and nothing it would refuse or read differently (seed ${SEED})`, () => {
    const { id, bytes, int, result } = generators(mulberry32(SEED + 2));
    let accepted = 0;
    for (let i = 0; i < CASES; i++) {
      const plain = [null, true, false, bytes(), result()][int(5)];
      const body = codec.encode({ id: id(), result: plain }).subarray(FRAME_HEADER_BYTES);
      const read = readSimpleReply(body);
      const decoded = codec.decode(body);
      if (decoded.id === 0) expect(read).toBeNull();
      else expect(read !== null && sameReply(read, decoded)).toBe(true);
      // Other shapes and damaged bodies: refused, or read exactly as MessageCodec reads them.
      const others = [
        codec.encode({ id: id(), error: { code: 'INTERNAL', message: 'x' } }),
        codec.encode({ id: id(), result: result(), extra: 1 }),
        codec.encode({ id: id(), result: [bytes()] }),
      ].map((frame) => frame.subarray(FRAME_HEADER_BYTES));
      accepted += readsAsCodec(readSimpleReply, [...others, ...damaged(body, int)]);
    }
    expect(accepted).toBeGreaterThan(0); // some mutations are still valid replies
  });

  it('leave batches longer than BATCH_ITEMS_MAX to MessageCodec and its item bound', () => {
    const bodyOf = (message: Record<string, unknown>) => codec.encode(message).subarray(FRAME_HEADER_BYTES);
    const keys = (n: number) => Array.from({ length: n }, () => Buffer.from('k'));
    const entries = (n: number) => Array.from({ length: n }, (): [Buffer, Buffer] => [Buffer.from('k'), Buffer.from('v')]);
    expect(readSimpleRequest(bodyOf({ id: 1, op: 'getBatch', keys: keys(BATCH_ITEMS_MAX) }))).not.toBeNull();
    expect(readSimpleRequest(bodyOf({ id: 1, op: 'getBatch', keys: keys(BATCH_ITEMS_MAX + 1) }))).toBeNull();
    expect(readSimpleRequest(bodyOf({ id: 1, op: 'putBatch', entries: entries(BATCH_ITEMS_MAX) }))).not.toBeNull();
    expect(readSimpleRequest(bodyOf({ id: 1, op: 'putBatch', entries: entries(BATCH_ITEMS_MAX + 1) }))).toBeNull();
  });

  it(`read requests as MessageCodec does, and nothing it would refuse or read differently (seed ${SEED})`, () => {
    const { id, bytes, int, small } = generators(mulberry32(SEED + 3));
    let accepted = 0;
    for (let i = 0; i < CASES; i++) {
      const op = ['get', 'exists', 'delete', 'put', 'getBatch', 'ping', 'Put', 'p\u00e9t', 'getBatch', 'putBatch'][int(10)]!;
      const message = op === 'put' || op === 'Put'
        ? { id: id(), op, key: bytes(), value: bytes() }
        : op === 'putBatch' ? { id: id(), op, entries: Array.from({ length: random3(int) }, (): [Buffer, Buffer] => [small(), small()]) }
          : op === 'getBatch' && int(2) === 0 ? { id: id(), op, keys: Array.from({ length: random3(int) }, small) } : { id: id(), op, key: bytes() };
      const body = codec.encode(message).subarray(FRAME_HEADER_BYTES);
      const read = readSimpleRequest(body);
      if (op === 'p\u00e9t') expect(read).toBeNull(); // not ASCII: left to MessageCodec
      else expect(read !== null && same(read, codec.decode(body))).toBe(true);
      const others = [
        codec.encode({ id: id(), op: 'put', key: bytes(), value: bytes(), ttlSeconds: 5 }),
        codec.encode({ id: id(), op: 'get', key: bytes(), txn: 3 }),
        codec.encode({ op: 'get', id: id(), key: bytes() }),
        codec.encode({ id: id(), op: 'get', key: 'text' }),
        codec.encode({ id: id(), op: 'getBatch', keys: [small(), 'text'] }),
        codec.encode({ id: id(), op: 'getBatch', keys: [small()], txn: 1 }),
        codec.encode({ id: id(), op: 'putBatch', entries: [[small(), small()]], ttlSeconds: 5 }),
        codec.encode({ id: id(), op: 'putBatch', entries: [[small(), 'text']] }),
        codec.encode({ id: id(), op: 'putBatch', entries: [[small(), small(), small()]] }),
        codec.encode({ id: id(), op: 'putBatch', entries: [small()] }),
      ].map((frame) => frame.subarray(FRAME_HEADER_BYTES));
      accepted += readsAsCodec(readSimpleRequest, [...others, ...damaged(body, int)]);
    }
    expect(accepted).toBeGreaterThan(0);
  });
});
