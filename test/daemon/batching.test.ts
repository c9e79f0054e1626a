// How a connection's queue becomes engine calls (daemon/batching.ts): the request and key
// bounds, the larger key bound for calls that write, the plain-read prefix, and the route.
import { describe, expect, it } from 'vitest';
import { nextBatch, routeOf } from '../../daemon/batching.js';
import {
  ENGINE_BATCH_REQUESTS_MAX, ENGINE_CALLS_PER_CONNECTION_MAX, ENGINE_LANE_CALLS_PER_CONNECTION_MAX,
  ENGINE_READ_BATCH_KEYS_MAX, ENGINE_WRITE_BATCH_KEYS_MAX,
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

describe('routeOf', () => {
  const idle = { all: 0, writes: 0, onLane: 0, replaying: 0, reserving: 0 };
  const route = (running: typeof idle, queue: { req: Request }[]) => {
    const { take, readOnly } = nextBatch(queue);
    return routeOf(running, queue, take, readOnly);
  };
  const stats = (): { req: Request } => ({ req: { id: nextId++, op: 'stats' } as Request });
  const scanNext = (): { req: Request } => ({ req: { id: nextId++, op: 'scanNext', cursor: 1 } as Request });

  it('sends a call that writes to the lane, and plain reads to the pool, when nothing runs', () => {
    expect(route(idle, [put(), get()])).toBe('lane');
    expect(route(idle, [get(), getBatch(3)])).toBe('pool');
    // Admin requests and scans run alone on the pool, wherever they sit in the call.
    expect(route(idle, [put(), stats()])).toBe('pool');
    expect(route(idle, [put(), scanNext()])).toBe('pool');
  });

  it('lets no call join the lane while a lane call waits for reply room', () => {
    expect(route({ all: 1, writes: 1, onLane: 1, replaying: 0, reserving: 1 }, [put()])).toBeNull();
    expect(route({ all: 1, writes: 1, onLane: 1, replaying: 0, reserving: 0 }, [put()])).toBe('lane');
  });

  it('queues any data call behind running lane calls, up to the per-connection bound', () => {
    const onLane = (n: number) => ({ all: n, writes: n, onLane: n, replaying: 0, reserving: 0 });
    expect(route(onLane(1), [put()])).toBe('lane');
    expect(route(onLane(1), [get()])).toBe('lane');
    expect(route(onLane(ENGINE_LANE_CALLS_PER_CONNECTION_MAX - 1), [put()])).toBe('lane');
    expect(route(onLane(ENGINE_LANE_CALLS_PER_CONNECTION_MAX), [put()])).toBeNull();
    expect(route(onLane(1), [stats()])).toBeNull();
    expect(route(onLane(1), [scanNext()])).toBeNull();
  });

  it('queues nothing behind lane calls while one replays (its rest and the calls skipped behind it go first)', () => {
    expect(route({ all: 2, writes: 2, onLane: 2, replaying: 1 }, [put()])).toBeNull();
    expect(route({ all: 2, writes: 2, onLane: 2, replaying: 0, reserving: 0 }, [put()])).toBe('lane');
  });

  it('lets plain reads run beside plain reads only, and nothing pass a pool call that writes', () => {
    const reading = { all: 1, writes: 0, onLane: 0, replaying: 0, reserving: 0 };
    expect(route(reading, [get()])).toBe('pool');
    expect(route({ all: ENGINE_CALLS_PER_CONNECTION_MAX, writes: 0, onLane: 0, replaying: 0, reserving: 0 }, [get()])).toBeNull();
    expect(route(reading, [put()])).toBeNull();
    const writingOnPool = { all: 1, writes: 1, onLane: 0, replaying: 0, reserving: 0 };
    expect(route(writingOnPool, [get()])).toBeNull();
    // A lane call beside a pool read: the next call waits for both.
    expect(route({ all: 2, writes: 1, onLane: 1, replaying: 0, reserving: 0 }, [put()])).toBeNull();
  });
});
