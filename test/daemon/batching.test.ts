// How a connection's queue becomes engine calls (daemon/batching.ts): the request and key
// bounds, the larger key bound for calls that write, and the plain-read prefix.
import { describe, expect, it } from 'vitest';
import { nextBatch } from '../../daemon/batching.js';
import {
  ENGINE_BATCH_REQUESTS_MAX, ENGINE_READ_BATCH_KEYS_MAX, ENGINE_WRITE_BATCH_KEYS_MAX,
} from '../../protocol/limits.js';
import type { Request } from '../../protocol/messages.js';

const key = Buffer.from('k');
let nextId = 1;
const get = (): { req: Request } => ({ req: { id: nextId++, op: 'get', key } as Request });
const put = (): { req: Request } => ({ req: { id: nextId++, op: 'put', key, value: key } as Request });
const getBatch = (n: number): { req: Request } => ({ req: { id: nextId++, op: 'getBatch', keys: Array.from({ length: n }, () => key) } as Request });
const putBatch = (n: number): { req: Request } => ({ req: { id: nextId++, op: 'putBatch', entries: Array.from({ length: n }, () => [key, key]) } as Request });
const times = <T>(n: number, make: () => T): T[] => Array.from({ length: n }, make);

describe('nextBatch', () => {
  it('takes at most ENGINE_BATCH_REQUESTS_MAX point requests', () => {
    expect(nextBatch(times(ENGINE_BATCH_REQUESTS_MAX + 5, get))).toEqual({ take: ENGINE_BATCH_REQUESTS_MAX, readOnly: true, readPrefix: ENGINE_BATCH_REQUESTS_MAX });
    expect(nextBatch(times(ENGINE_BATCH_REQUESTS_MAX + 5, put))).toEqual({ take: ENGINE_BATCH_REQUESTS_MAX, readOnly: false, readPrefix: 0 });
  });

  it('bounds a call of plain reads by ENGINE_READ_BATCH_KEYS_MAX keys', () => {
    const size = ENGINE_READ_BATCH_KEYS_MAX / 4;
    expect(nextBatch(times(16, () => getBatch(size)))).toEqual({ take: 4, readOnly: true, readPrefix: 4 });
  });

  it('bounds a call that writes by the larger ENGINE_WRITE_BATCH_KEYS_MAX', () => {
    expect(ENGINE_WRITE_BATCH_KEYS_MAX).toBeGreaterThan(ENGINE_READ_BATCH_KEYS_MAX);
    const size = ENGINE_WRITE_BATCH_KEYS_MAX / 8;
    expect(nextBatch(times(16, () => putBatch(size)))).toEqual({ take: 8, readOnly: false, readPrefix: 0 });
    // Reads ahead of a write join it under the write bound, and are counted as its read prefix.
    const reads = times(2, () => getBatch(ENGINE_READ_BATCH_KEYS_MAX / 2));
    expect(nextBatch([...reads, putBatch(ENGINE_WRITE_BATCH_KEYS_MAX - ENGINE_READ_BATCH_KEYS_MAX), putBatch(1)]))
      .toEqual({ take: 3, readOnly: false, readPrefix: 2 });
  });

  it('never splits a request, and always takes one', () => {
    expect(nextBatch([putBatch(ENGINE_WRITE_BATCH_KEYS_MAX * 3), put()])).toEqual({ take: 1, readOnly: false, readPrefix: 0 });
    expect(nextBatch([getBatch(ENGINE_READ_BATCH_KEYS_MAX * 3), get()])).toEqual({ take: 1, readOnly: true, readPrefix: 1 });
  });

  it('stops the read prefix at the first request that is not a plain read', () => {
    const inTxn = { req: { id: nextId++, op: 'get', key, txn: 1 } as Request };
    expect(nextBatch([get(), get(), inTxn, get()])).toEqual({ take: 4, readOnly: false, readPrefix: 2 });
  });
});
