// parseRequest / requestIdOf. Guards against a handler ever seeing an unchecked field: every op
// is accepted with good fields, every field of the wrong type or out of range is refused with the
// code a client can act on, and every size limit comes from the limits passed in.
import { describe, expect, it } from 'vitest';
import { ToonDBError, type ErrorCode } from '../../protocol/errors.js';
import { DEFAULT_SERVER_LIMITS, FRAME_HEADER_BYTES, type ServerLimits } from '../../protocol/limits.js';
import { OP_NAMES, REQUEST_ID_MAX, type OpName } from '../../protocol/messages.js';
import { parseRequest, requestIdOf } from '../../protocol/validate.js';
import { MessageCodec } from '../../protocol/codec.js';
import { PackedArray } from '../../protocol/packed-array.js';

const limits: ServerLimits = { ...DEFAULT_SERVER_LIMITS, keyBytesMax: 8, valueBytesMax: 16, batchItemsMax: 3, batchBytesMax: 40, scanBatchItemsMax: 50, ttlSecondsMax: 1000 };
const k = (s: string): Buffer => Buffer.from(s);

/** One valid body per op, with every optional field set. */
const GOOD: Record<OpName, Record<string, unknown>> = {
  hello: { protocol: 1, client: 'test' },
  ping: {},
  stats: {},
  checkpoint: {},
  shutdown: {},
  get: { key: k('a'), txn: 5n },
  exists: { key: 'a', txn: 5 },
  put: { key: k('a'), value: k(''), ttlSeconds: 0.5, txn: 5n },
  delete: { key: k('a') },
  getBatch: { keys: [k('a'), 'b'] },
  putBatch: { entries: [[k('a'), k('1')], ['b', '2']], ttlSeconds: 10 },
  deleteBatch: { keys: [k('a')], txn: 1n },
  scan: { prefix: k('p'), reverse: true, limit: 0, batchSize: 50, txn: 2n },
  scanNext: { cursor: 3 },
  scanClose: { cursor: 3 },
  listPath: { prefix: k(''), limit: 10 },
  begin: { isolation: 'snapshot' },
  commit: { txn: 2n ** 64n - 1n },
  abort: { txn: 1 },
};

function parse(op: string, fields: Record<string, unknown>, id = 1) {
  return parseRequest({ id, op, ...fields }, limits);
}

function expectCode(code: ErrorCode, op: string, fields: Record<string, unknown>, message?: RegExp): void {
  let thrown: unknown;
  try { parse(op, fields); } catch (error) { thrown = error; }
  expect(thrown, `${op} ${JSON.stringify(fields, (_, v) => typeof v === 'bigint' ? `${v}n` : v)}`).toBeInstanceOf(ToonDBError);
  expect((thrown as ToonDBError).code).toBe(code);
  if (message) expect((thrown as ToonDBError).message).toMatch(message);
}

describe('requestIdOf', () => {
  it('accepts integers 1..REQUEST_ID_MAX as number or bigint', () => {
    expect(requestIdOf({ id: 1 })).toBe(1);
    expect(requestIdOf({ id: REQUEST_ID_MAX })).toBe(REQUEST_ID_MAX);
    expect(requestIdOf({ id: 42n })).toBe(42);
  });
  it('refuses anything else', () => {
    for (const id of [0, -1, 1.5, REQUEST_ID_MAX + 1, 2n ** 40n, '1', null, undefined, true, NaN]) {
      expect(requestIdOf({ id })).toBeUndefined();
    }
  });
});

describe('parseRequest', () => {
  it('accepts every op with good fields', () => {
    for (const op of OP_NAMES) {
      const request = parse(op, GOOD[op], 7);
      expect(request.op).toBe(op);
      expect(request.id).toBe(7);
    }
  });

  // Review (a client written from the protocol document): refusals named JavaScript's types
  // ("got undefined", "got object", and "must be a [key, value] array, got array").
  it('names what it got in the wire\'s terms', () => {
    expectCode('INVALID_ARGUMENT', 'get', { key: undefined }, /get\.key must be .*, got nothing \(the field is absent\)$/);
    expectCode('INVALID_ARGUMENT', 'get', { key: { a: 1 } }, /got a map$/);
    expectCode('INVALID_ARGUMENT', 'putBatch', { entries: [[k('a')]] }, /got an array of 1$/);
    expect(() => parseRequest({ id: 1 }, limits)).toThrow(/request op must be a str, got nothing \(the field is absent\)/);
  });

  it('has a good body for every op in the registry (and no stale ones)', () => {
    expect(Object.keys(GOOD).sort()).toEqual([...OP_NAMES].sort());
  });

  it('normalises keys to Buffers, txn ids to bigint and integers to numbers', () => {
    const put = parse('put', { key: 'é', value: new Uint8Array([1]), txn: 9 }) as unknown as { key: Buffer; value: Buffer; txn: bigint };
    expect(Buffer.isBuffer(put.key) && put.key.equals(Buffer.from('é'))).toBe(true);
    expect(Buffer.isBuffer(put.value)).toBe(true);
    expect(put.txn).toBe(9n);
    expect(parse('scanNext', { cursor: 3n })).toEqual({ id: 1, op: 'scanNext', cursor: 3 });
    expect(parse('hello', { protocol: 1n })).toEqual({ id: 1, op: 'hello', protocol: 1 });
    const batch = parse('putBatch', GOOD.putBatch) as unknown as { entries: [Buffer, Buffer][] };
    expect(batch.entries.map(([a, b]) => [a.toString(), b.toString()])).toEqual([['a', '1'], ['b', '2']]);
  });

  it('leaves absent or nil optional fields out, and ignores unknown fields', () => {
    expect(parse('get', { key: 'a', txn: null, future: 1 })).toEqual({ id: 1, op: 'get', key: k('a') });
    expect(parse('begin', {})).toEqual({ id: 1, op: 'begin' });
    expect(parse('scan', { prefix: undefined, start: 'a' })).toEqual({ id: 1, op: 'scan', start: k('a') });
    expect(parse('hello', { protocol: 1, client: null })).toEqual({ id: 1, op: 'hello', protocol: 1 });
  });

  it('refuses a body without a valid id with PROTOCOL_ERROR', () => {
    for (const id of [undefined, 0, -1, 'x', 2 ** 32]) {
      expect(() => parseRequest({ id, op: 'ping' }, limits)).toThrowError(expect.objectContaining({ code: 'PROTOCOL_ERROR' }));
    }
  });

  it('refuses unknown ops with UNKNOWN_OP and a non-string op with INVALID_ARGUMENT', () => {
    expectCode('UNKNOWN_OP', 'frobnicate', {});
    expectCode('UNKNOWN_OP', '__proto__', {});
    expectCode('UNKNOWN_OP', 'toString', {});
    expect(() => parseRequest({ id: 1 }, limits)).toThrowError(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => parseRequest({ id: 1, op: 3 }, limits)).toThrowError(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  // [op, field, bad value, expected code]
  const BAD: [OpName, string, unknown, ErrorCode][] = [
    ['hello', 'protocol', undefined, 'INVALID_ARGUMENT'],
    ['hello', 'protocol', '1', 'VERSION_MISMATCH'],
    ['hello', 'protocol', 1.5, 'VERSION_MISMATCH'],
    ['hello', 'protocol', 2n ** 40n, 'VERSION_MISMATCH'],
    ['hello', 'client', 5, 'INVALID_ARGUMENT'],
    ['hello', 'client', 'x'.repeat(257), 'INVALID_ARGUMENT'],
    ['get', 'key', undefined, 'INVALID_ARGUMENT'],
    ['get', 'key', 5, 'INVALID_ARGUMENT'],
    ['get', 'key', [1], 'INVALID_ARGUMENT'],
    ['get', 'key', k(''), 'INVALID_ARGUMENT'],
    ['get', 'key', k('123456789'), 'KEY_TOO_LARGE'],
    ['get', 'txn', 0, 'INVALID_ARGUMENT'],
    ['get', 'txn', -1n, 'INVALID_ARGUMENT'],
    ['get', 'txn', 1.5, 'INVALID_ARGUMENT'],
    ['get', 'txn', 2n ** 64n, 'INVALID_ARGUMENT'],
    ['get', 'txn', '5', 'INVALID_ARGUMENT'],
    ['exists', 'key', true, 'INVALID_ARGUMENT'],
    ['put', 'value', undefined, 'INVALID_ARGUMENT'],
    ['put', 'value', 3, 'INVALID_ARGUMENT'],
    ['put', 'value', k('x'.repeat(17)), 'VALUE_TOO_LARGE'],
    ['put', 'key', 'x'.repeat(9), 'KEY_TOO_LARGE'],
    ['put', 'ttlSeconds', 0, 'INVALID_ARGUMENT'],
    ['put', 'ttlSeconds', -1, 'INVALID_ARGUMENT'],
    ['put', 'ttlSeconds', 1001, 'INVALID_ARGUMENT'],
    ['put', 'ttlSeconds', Infinity, 'INVALID_ARGUMENT'],
    ['put', 'ttlSeconds', NaN, 'INVALID_ARGUMENT'],
    ['put', 'ttlSeconds', '5', 'INVALID_ARGUMENT'],
    ['delete', 'key', {}, 'INVALID_ARGUMENT'],
    ['getBatch', 'keys', undefined, 'INVALID_ARGUMENT'],
    ['getBatch', 'keys', k('a'), 'INVALID_ARGUMENT'],
    ['getBatch', 'keys', [k('a'), 5], 'INVALID_ARGUMENT'],
    ['getBatch', 'keys', [k('a'), k('')], 'INVALID_ARGUMENT'],
    ['getBatch', 'keys', [k('123456789')], 'KEY_TOO_LARGE'],
    ['getBatch', 'keys', [k('a'), k('b'), k('c'), k('d')], 'BATCH_TOO_LARGE'],
    ['deleteBatch', 'keys', 'a', 'INVALID_ARGUMENT'],
    ['deleteBatch', 'keys', Array(4).fill(k('a')), 'BATCH_TOO_LARGE'],
    ['putBatch', 'entries', undefined, 'INVALID_ARGUMENT'],
    ['putBatch', 'entries', [[k('a')]], 'INVALID_ARGUMENT'],
    ['putBatch', 'entries', [k('a'), k('b')], 'INVALID_ARGUMENT'],
    ['putBatch', 'entries', [[k('a'), 1]], 'INVALID_ARGUMENT'],
    ['putBatch', 'entries', [[k('a'), k('b'), k('c')]], 'INVALID_ARGUMENT'],
    ['putBatch', 'entries', [[k('123456789'), k('b')]], 'KEY_TOO_LARGE'],
    ['putBatch', 'entries', [[k('a'), k('x'.repeat(17))]], 'VALUE_TOO_LARGE'],
    ['putBatch', 'entries', Array(4).fill([k('a'), k('b')]), 'BATCH_TOO_LARGE'],
    // 3 items of 1 + 16 bytes = 51 bytes > batchBytesMax 40
    ['putBatch', 'entries', Array(3).fill([k('a'), k('x'.repeat(16))]), 'BATCH_TOO_LARGE'],
    ['putBatch', 'ttlSeconds', 0, 'INVALID_ARGUMENT'],
    ['scan', 'prefix', 5, 'INVALID_ARGUMENT'],
    ['scan', 'prefix', k('123456789'), 'KEY_TOO_LARGE'],
    ['scan', 'reverse', 1, 'INVALID_ARGUMENT'],
    ['scan', 'limit', -1, 'INVALID_ARGUMENT'],
    ['scan', 'limit', 1.5, 'INVALID_ARGUMENT'],
    ['scan', 'batchSize', 0, 'INVALID_ARGUMENT'],
    ['scan', 'batchSize', 51, 'INVALID_ARGUMENT'],
    ['scan', 'txn', 'x', 'INVALID_ARGUMENT'],
    ['scanNext', 'cursor', undefined, 'INVALID_ARGUMENT'],
    ['scanNext', 'cursor', 0, 'INVALID_ARGUMENT'],
    ['scanNext', 'cursor', 'x', 'INVALID_ARGUMENT'],
    ['scanClose', 'cursor', -3, 'INVALID_ARGUMENT'],
    ['listPath', 'prefix', undefined, 'INVALID_ARGUMENT'],
    ['listPath', 'prefix', k('123456789'), 'KEY_TOO_LARGE'],
    ['listPath', 'limit', 'x', 'INVALID_ARGUMENT'],
    ['begin', 'isolation', 'repeatable-read', 'INVALID_ARGUMENT'],
    ['begin', 'isolation', 1, 'INVALID_ARGUMENT'],
    ['commit', 'txn', undefined, 'INVALID_ARGUMENT'],
    ['commit', 'txn', 0n, 'INVALID_ARGUMENT'],
    ['abort', 'txn', k('1'), 'INVALID_ARGUMENT'],
  ];

  it.each(BAD)('%s.%s = %s -> %s', (op, field, value, code) => {
    const fields = { ...GOOD[op], [field]: value };
    if (value === undefined) delete fields[field];
    // Every message names the op and the field, so a client can tell which argument was wrong.
    expectCode(code, op, fields, new RegExp(`^${op}\\.${field}`));
  });

  it('names the batch item that failed', () => {
    expectCode('INVALID_ARGUMENT', 'getBatch', { keys: [k('a'), 5] }, /getBatch\.keys\[1\] must be bin or str, got integer 5/);
    expectCode('INVALID_ARGUMENT', 'getBatch', { keys: [k('a'), 1e300] }, /getBatch\.keys\[1\] must be bin or str, got float 1e\+300/);
    expectCode('KEY_TOO_LARGE', 'putBatch', { entries: [[k('a'), k('b')], [k('123456789'), k('b')]] }, /entries\[1\]\[0\]/);
  });

  it('passes keys read packed on as they are when they pass, and refuses them as an array when not', () => {
    // As the daemon's request reader leaves them: the keys' bins, a PackedArray.
    const codec = new MessageCodec();
    const packed = (keys: Buffer[]) => {
      const body = codec.encode(keys).subarray(FRAME_HEADER_BYTES);
      return new PackedArray(keys.length, body.subarray(keys.length < 16 ? 1 : 3));
    };
    for (const op of ['getBatch', 'deleteBatch']) {
      const good = packed([k('a'), k('12345678'), k('b')]); // keyBytesMax 8, batchItemsMax 3
      expect((parse(op, { keys: good }) as { keys: unknown }).keys).toBe(good);
      expect((parse(op, { keys: packed([]) }) as { keys: PackedArray }).keys.count).toBe(0);
      // Every refusal has the code and the message the same keys get as an array.
      const bad = [[k('a'), k('')], [k('123456789')], [k('a'), k('b'), k('c'), k('d')]];
      const wide = { ...limits, batchItemsMax: 20, batchBytesMax: 8 }; // 9 keys of 1 byte: over 8 bytes
      for (const [keys, within] of [...bad.map((keys) => [keys, limits] as const), [Array(9).fill(k('a')), wide] as const]) {
        const message = (value: unknown) => {
          try {
            parseRequest({ id: 1, op, keys: value }, within);
          } catch (error) {
            return `${(error as ToonDBError).code} ${(error as Error).message}`;
          }
          return 'accepted';
        };
        expect(message(packed(keys))).toBe(message(keys));
        expect(message(keys)).not.toBe('accepted');
      }
    }
  });

  it('refuses scan with both a prefix and a range', () => {
    expectCode('INVALID_ARGUMENT', 'scan', { prefix: k('a'), start: k('a') }, /not both/);
    expectCode('INVALID_ARGUMENT', 'scan', { prefix: k('a'), end: k('b') }, /not both/);
    expect(parse('scan', { start: k('a'), end: k('b') })).toEqual({ id: 1, op: 'scan', start: k('a'), end: k('b') });
    expect(parse('scan', {})).toEqual({ id: 1, op: 'scan' });
  });

  it('accepts limits exactly at the bound', () => {
    expect(() => parse('put', { key: 'x'.repeat(8), value: k('x'.repeat(16)), ttlSeconds: 1000 })).not.toThrow();
    expect(() => parse('getBatch', { keys: [k('a'), k('b'), k('c')] })).not.toThrow();
    expect(() => parse('putBatch', { entries: [[k('aaaa'), k('x'.repeat(16))], [k('aaaa'), k('x'.repeat(16))]] })).not.toThrow();
    expect(() => parse('scan', { batchSize: 50 })).not.toThrow();
  });

  it('takes the limits it is given, not the defaults', () => {
    const wide = { ...limits, keyBytesMax: 100 };
    expect(() => parseRequest({ id: 1, op: 'get', key: 'x'.repeat(50) }, wide)).not.toThrow();
    expectCode('KEY_TOO_LARGE', 'get', { key: 'x'.repeat(50) });
  });

  it('works on bodies decoded from the wire, with 64-bit ids from another language', () => {
    const codec = new MessageCodec();
    // {"id": uint64 9, "op": "commit", "txn": uint64 2^63}
    const body = Buffer.from('83a26964cf0000000000000009a26f70a6636f6d6d6974a374786ecf8000000000000000', 'hex');
    expect(parseRequest(codec.decode(body), limits)).toEqual({ id: 9, op: 'commit', txn: 2n ** 63n });
  });
});
