// The native engine through its typed loader (engine/index.ts), without the daemon: per-op
// results, transactions at both isolation levels, cursors, TTL, durability tickets, recovery,
// the data-dir lock and error codes.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  IsolationKind,
  isMemoryStepCall,
  lockDataDir,
  plainWriteKeys,
  nativeErrorCodes,
  OpKind,
  openEngine,
  type Engine,
  type EngineOp,
  type EngineResult,
} from '../../engine/index.js';
import { encodePath, pathPrefix } from '../../protocol/paths.js';
import { ERROR_CODES } from '../../protocol/errors.js';
import { PackedArray } from '../../protocol/packed-array.js';
import { LANE_WAKE_SHARED_OPS_MAX } from '../../protocol/limits.js';

const LIMITS = { keyBytesMax: 1024, valueBytesMax: 1 << 20, txnBytesMax: 1 << 20, txnBytesDaemonMax: 1 << 22, batchItemsMax: 1000, batchBytesMax: 1 << 22 };
const b = (s: string) => Buffer.from(s);

let dir: string;
let engine: Engine;

async function open(): Promise<Engine> {
  return openEngine({ path: join(dir, 'db'), ...LIMITS });
}

async function one(op: EngineOp): Promise<EngineResult> {
  const [result] = await engine.execute([op]);
  return result!;
}

async function ok(op: EngineOp): Promise<EngineResult> {
  const result = await one(op);
  expect(result.code, result.message).toBeUndefined();
  return result;
}

const put = (key: string, value: string, txn?: number) => ok({ kind: OpKind.put, key: b(key), value: b(value), txn });
const get = async (key: string, txn?: number) => (await ok({ kind: OpKind.get, key: b(key), txn })).value?.toString() ?? null;
const begin = async (isolation: number = IsolationKind.serializable) => (await ok({ kind: OpKind.begin, isolation })).txn!;
const commit = (txn: number) => one({ kind: OpKind.commit, txn });
/** The keys of a scan batch (the engine returns its entries already encoded for the wire). */
const scanKeys = (result: EngineResult) => result.entries!.toEntries().map(([key]) => key);

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tdb-engine-'));
  engine = await open();
});

afterEach(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('engine', () => {
  it('only produces registry error codes', () => {
    const codes = nativeErrorCodes();
    expect(codes.length).toBeGreaterThan(10);
    for (const code of codes) expect(Object.keys(ERROR_CODES)).toContain(code);
  });

  it('runs a batch in order and fails one op without touching the others', async () => {
    const results = await engine.execute([
      { kind: OpKind.put, key: b('a'), value: b('1') },
      { kind: OpKind.put, key: Buffer.alloc(2000, 1), value: b('x') },
      { kind: OpKind.get, key: b('a') },
      { kind: OpKind.get, key: b('missing') },
      { kind: OpKind.exists, key: b('a') },
      { kind: OpKind.getBatch, keys: [b('missing'), b('a')] },
    ]);
    expect(results.map((r) => r.code)).toEqual([undefined, 'KEY_TOO_LARGE', undefined, undefined, undefined, undefined]);
    expect(results[2]!.value).toEqual(b('1'));
    expect(results[3]!.value).toBeNull();
    expect(results[4]!.found).toBe(true);
    expect(results[5]!.values!.toValues()).toEqual([null, b('1')]);
  });

  it('takes keys packed as the daemon reads them (MessagePack bins) as it takes them listed', async () => {
    const packed = (...keys: Buffer[]) => {
      const bins = keys.map((key) => Buffer.concat([key.length < 256 ? Buffer.from([0xc4, key.length]) : Buffer.from([0xc5, key.length >> 8, key.length & 0xff]), key]));
      return new PackedArray(keys.length, Buffer.concat(bins));
    };
    const long = Buffer.alloc(300, 7);
    await put('a', '1');
    await ok({ kind: OpKind.put, key: long, value: b('2') });
    const keys = [b('missing'), b('a'), long];
    for (const run of [(ops: EngineOp[]) => engine.execute(ops), async (ops: EngineOp[]) => engine.readCached(ops) ?? engine.execute(ops)]) {
      const [listed, fromPacked] = await run([{ kind: OpKind.getBatch, keys }, { kind: OpKind.getBatch, keys: packed(...keys) }]);
      expect(fromPacked!.values!.toValues()).toEqual([null, b('1'), b('2')]);
      expect(fromPacked!.values!.toValues()).toEqual(listed!.values!.toValues());
    }
    expect(plainWriteKeys([{ kind: OpKind.deleteBatch, keys: packed(b('a'), long) }])).toBe(2);
    await ok({ kind: OpKind.deleteBatch, keys: packed(b('a'), long) });
    expect((await ok({ kind: OpKind.getBatch, keys: packed(...keys) })).values!.toValues()).toEqual([null, null, null]);
    // The engine checks packed keys as it checks listed ones (defence in depth) and refuses a
    // packed list that is not exactly its bins for the whole call.
    expect((await one({ kind: OpKind.getBatch, keys: packed(b('a'), Buffer.alloc(2000, 1)) })).code).toBe('KEY_TOO_LARGE');
    await expect(engine.execute([{ kind: OpKind.getBatch, keys: new PackedArray(2, packed(b('a')).bytes) }])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('answers cached plain reads synchronously with the results execute gives, and nothing else', async () => {
    await put('a', '1');
    const reads: EngineOp[] = [
      { kind: OpKind.get, key: b('a') },
      { kind: OpKind.exists, key: b('a') },
      { kind: OpKind.getBatch, keys: [b('a'), b('a')] },
    ];
    const cached = engine.readCached(reads);
    expect(cached).not.toBeNull();
    expect(cached!.map(({ seq: _seq, ...rest }) => rest)).toEqual((await engine.execute(reads)).map(({ seq: _seq, ...rest }) => rest));
    expect(cached![0]!.seq).toBeGreaterThan(0);
    // Each of these needs storage or a transaction: refused, nothing done.
    expect(engine.readCached([{ kind: OpKind.get, key: b('never-written') }])).toBeNull();
    expect(engine.readCached([{ kind: OpKind.get, key: Buffer.alloc(2000, 1) }])).toBeNull();
    expect(engine.readCached([{ kind: OpKind.put, key: b('a'), value: b('2') }])).toBeNull();
    expect(await get('a')).toBe('1');
    const t = await begin();
    expect(engine.readCached([{ kind: OpKind.get, key: b('a'), txn: t }])).toBeNull();
    await put('a', '2', t);
    expect(engine.readCached([{ kind: OpKind.get, key: b('a') }])![0]!.value).toEqual(b('1'));
    expect((await commit(t)).code).toBeUndefined();
    // The commit wrote its row through to the cache; a delete leaves nothing cached.
    expect(engine.readCached([{ kind: OpKind.get, key: b('a') }])![0]!.value).toEqual(b('2'));
    await ok({ kind: OpKind.delete, key: b('a') });
    expect(engine.readCached([{ kind: OpKind.get, key: b('a') }])).toBeNull();
    expect(await get('a')).toBeNull();
  });

  it('commits small plain writes synchronously when it can, and refuses anything else untouched', async () => {
    const w = (key: string, value = 'v'): EngineOp => ({ kind: OpKind.put, key: b(key), value: b(value) });
    expect(plainWriteKeys([w('a'), { kind: OpKind.putBatch, keys: [b('b'), b('c')], values: [b('1'), b('2')] }])).toBe(3);
    expect(plainWriteKeys([w('a'), { kind: OpKind.get, key: b('a') }])).toBe(-1);
    expect(plainWriteKeys([{ ...w('a'), txn: 1 }])).toBe(-1);
    expect(plainWriteKeys([])).toBe(-1);
    const [first, refused, second] = engine.writeNow([w('n', '1'), w('x'.repeat(2000)), w('m', '2')])!;
    expect(first!.code).toBeUndefined();
    expect(refused!.code).toBe('KEY_TOO_LARGE');
    expect(second!.seq).toBe(first!.seq);
    expect(engine.writtenSeq()).toBeGreaterThanOrEqual(first!.seq);
    expect(await get('m')).toBe('2');
    expect(engine.writeNow([w('n', '3'), { kind: OpKind.get, key: b('n') }])).toBeNull();
    expect(await get('n')).toBe('1');
  });

  it('runs memory-only transaction steps synchronously, and refuses anything else untouched', async () => {
    expect(isMemoryStepCall([{ kind: OpKind.begin }, { kind: OpKind.put, key: b('m'), value: b('1'), txn: 1 }])).toBe(true);
    expect(isMemoryStepCall([{ kind: OpKind.put, key: b('m'), value: b('1') }])).toBe(false);
    expect(isMemoryStepCall([{ kind: OpKind.begin }, { kind: OpKind.commit, txn: 1 }])).toBe(false);
    expect(engine.runInMemory([{ kind: OpKind.put, key: b('m'), value: b('plain') }])).toBeNull();
    expect(engine.runInMemory([{ kind: OpKind.begin }, { kind: OpKind.get, key: b('m') }])).toBeNull();
    const [began] = engine.runInMemory([{ kind: OpKind.begin }])!;
    const t = began!.txn!;
    expect(t).toBeGreaterThan(0);
    const [wrote, refused] = engine.runInMemory([
      { kind: OpKind.put, key: b('m'), value: b('1'), txn: t },
      { kind: OpKind.put, key: Buffer.alloc(2000, 1), value: b('x'), txn: t },
    ])!;
    expect(wrote!.code).toBeUndefined();
    expect(refused!.code).toBe('KEY_TOO_LARGE');
    expect(await get('m')).toBeNull(); // buffered in the transaction until it commits
    expect((await commit(t)).code).toBeUndefined();
    expect(await get('m')).toBe('1');
    const [again] = engine.runInMemory([{ kind: OpKind.begin }])!;
    const [aborted] = engine.runInMemory([{ kind: OpKind.put, key: b('m'), value: b('2'), txn: again!.txn }, { kind: OpKind.abort, txn: again!.txn }])!.slice(1);
    expect(aborted!.code).toBeUndefined();
    expect((await commit(again!.txn!)).code).toBe('NOT_IN_TRANSACTION');
    expect(await get('m')).toBe('1');
  });

  it('hands writes tickets that become durable only after sync', async () => {
    const { seq } = await put('k', 'v');
    expect(seq).toBeGreaterThan(0);
    expect(engine.writtenSeq()).toBeGreaterThanOrEqual(seq);
    expect(engine.durableSeq()).toBeLessThan(seq);
    expect(await engine.sync()).toBeGreaterThanOrEqual(seq);
    expect(engine.durableSeq()).toBeGreaterThanOrEqual(seq);
    const read = await ok({ kind: OpKind.get, key: b('k') });
    expect(read.seq).toBeGreaterThanOrEqual(seq);
  });

  it('runs group commit on its own thread: a requested ticket becomes durable and onSynced runs', async () => {
    expect((await engine.stats()).lastJournalSyncMs).toBeNull();
    const startedMs = Date.now();
    const notices: (string | null)[] = [];
    let synced!: () => void;
    let wake = new Promise<void>((resolve) => (synced = resolve));
    engine.startSyncer((error) => {
      notices.push(error === null ? null : error.code);
      synced();
    });
    for (let round = 0; round < 3; round++) {
      const { seq } = await put(`k${round}`, 'v');
      expect(engine.durableSeq()).toBeLessThan(seq);
      engine.requestSync(seq);
      while (engine.durableSeq() < seq) {
        await wake;
        wake = new Promise<void>((resolve) => (synced = resolve));
      }
    }
    expect(notices.length).toBeGreaterThan(0);
    expect(notices.every((n) => n === null)).toBe(true);
    const stats = await engine.stats();
    expect(stats.journalSyncs).toBeGreaterThanOrEqual(1);
    expect(stats.lastJournalSyncMs).toBeGreaterThanOrEqual(startedMs);
    expect(stats.lastJournalSyncMs).toBeLessThanOrEqual(Date.now());
    // A request for what is already durable starts no fsync.
    const before = (await engine.stats()).journalSyncs;
    engine.requestSync(engine.durableSeq());
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect((await engine.stats()).journalSyncs).toBe(before);
  });

  it('runs calls on ordered lanes: each lane in submission order, each call with its own results', async () => {
    engine.startLanes(2);
    const calls: Promise<EngineResult[]>[] = [];
    for (let i = 0; i < 200; i++) {
      const key = b(`lane${i % 2}`);
      // On one lane a read queued behind a write sees it, however many calls are in flight.
      calls.push(engine.executeOrdered(i % 2, [
        { kind: OpKind.put, key, value: b(String(i)) },
        { kind: OpKind.get, key },
        { kind: 99 as EngineOp['kind'] },
      ]));
    }
    const results = await Promise.all(calls);
    results.forEach((call, i) => {
      expect(call.map((r) => r.code)).toEqual([undefined, undefined, 'INVALID_ARGUMENT']);
      expect(call[1]!.value?.toString()).toBe(String(i));
    });
    expect(await get('lane0')).toBe('198');
    expect(await get('lane1')).toBe('199');
  });

  it('small lane calls, whose lane wakes at the end of the turn, keep their order with large ones', async () => {
    engine.startLanes(1);
    const put1 = (i: number) => ({ kind: OpKind.put, key: b('order'), value: b(String(i)) });
    const calls: Promise<EngineResult[]>[] = [];
    // Small calls (deferred wake), then a large one (wakes the lane at once), then small ones:
    // every call runs in submission order whichever of them woke the lane.
    for (let i = 0; i < 5; i++) calls.push(engine.executeOrdered(0, [put1(i), { kind: OpKind.get, key: b('order') }]));
    calls.push(engine.executeOrdered(0, Array.from({ length: LANE_WAKE_SHARED_OPS_MAX + 1 }, (_, j) => put1(100 + j))));
    for (let i = 5; i < 10; i++) calls.push(engine.executeOrdered(0, [put1(i), { kind: OpKind.get, key: b('order') }]));
    const results = await Promise.all(calls);
    const reads = results.filter((call) => call.length === 2).map((call) => call[1]!.value?.toString());
    expect(reads).toEqual(Array.from({ length: 10 }, (_, i) => String(i)));
    expect(await get('order')).toBe('9');
    // A lone small call, nothing else in the turn, is woken at the turn's end too.
    expect((await engine.executeOrdered(0, [put1(42)]))[0]!.code).toBeUndefined();
    expect(await get('order')).toBe('42');
  });

  it('halts a lane caller whose call ended early: its later calls are skipped until it resumes', async () => {
    engine.startLanes(1, { outputBytesMax: 1000 });
    await put('big', 'x'.repeat(600));
    const read = { kind: OpKind.get, key: b('big') };
    const write = (value: string) => ({ kind: OpKind.put, key: b('w'), value: b(value) });
    // Two reads of 600 bytes pass the 1000-byte bound: the call ends after the second, and the
    // write behind them does not run. Caller 0's next call is skipped; caller 1 runs as usual.
    const first = engine.executeOrdered(0, [read, write('1'), read, write('2'), read]);
    const skipped = engine.executeOrdered(0, [write('3')]);
    const other = engine.executeOrdered(1, [write('other')]);
    expect((await first).map((r) => r.value?.length)).toEqual([600, undefined, 600]);
    expect(await skipped).toEqual([]);
    expect((await other)[0]!.code).toBeUndefined();
    expect(await get('w')).toBe('other');
    // The rest, with resume, lifts the halt; the skipped call then runs when sent again.
    expect((await engine.executeOrdered(0, [write('2'), read], true)).map((r) => r.code)).toEqual([undefined, undefined]);
    expect(await get('w')).toBe('2');
    expect(await engine.executeOrdered(0, [write('3')])).toHaveLength(1);
    expect(await get('w')).toBe('3');
  });

  it('with syncResults, a lane call asks for its own fsync: no requestSync from JS', async () => {
    let synced!: () => void;
    const fsynced = new Promise<void>((resolve) => (synced = resolve));
    engine.startSyncer(() => synced());
    engine.startLanes(1, { syncResults: true });
    const [put] = await engine.executeOrdered(0, [{ kind: OpKind.put, key: b('k'), value: b('v') }]);
    await fsynced;
    expect(engine.durableSeq()).toBeGreaterThanOrEqual(put!.seq);
    expect(() => engine.startLanes(1)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    // Without it nothing asks: the write stays not durable.
    await engine.close();
    engine = await open();
    engine.startSyncer(() => {});
    engine.startLanes(1);
    const [later] = await engine.executeOrdered(0, [{ kind: OpKind.put, key: b('k'), value: b('w') }]);
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(engine.durableSeq()).toBeLessThan(later!.seq);
  });

  it('refuses lane calls before lanes start and once closed, after finishing the queued ones', async () => {
    await expect(engine.executeOrdered(0, [{ kind: OpKind.get, key: b('k') }])).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
    engine.startLanes(1);
    // Calls queued when close starts are finished first, and their outcomes still arrive.
    const queued = Array.from({ length: 20 }, (_, i) => engine.executeOrdered(0, [{ kind: OpKind.put, key: b(`c${i}`), value: b('v') }]));
    await engine.close();
    expect((await Promise.all(queued)).map(([r]) => r!.code)).toEqual(Array.from({ length: 20 }, () => undefined));
    await expect(engine.executeOrdered(0, [{ kind: OpKind.get, key: b('k') }])).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
    engine = await open();
  });

  it('serializable refuses write skew; snapshot allows it but keeps first-committer-wins', async () => {
    for (const [isolation, skewCommits] of [[IsolationKind.serializable, false], [IsolationKind.snapshot, true]] as const) {
      await put('x', '1');
      await put('y', '1');
      const t1 = await begin(isolation);
      const t2 = await begin(isolation);
      // Each reads both and zeroes a different one: fine alone, a skew together.
      for (const t of [t1, t2]) expect([await get('x', t), await get('y', t)]).toEqual(['1', '1']);
      await put('x', '0', t1);
      await put('y', '0', t2);
      expect((await commit(t1)).code).toBeUndefined();
      expect((await commit(t2)).code).toBe(skewCommits ? undefined : 'TXN_CONFLICT');
    }
    const t3 = await begin(IsolationKind.snapshot);
    const t4 = await begin(IsolationKind.snapshot);
    await put('z', 'a', t3);
    await put('z', 'b', t4);
    expect((await commit(t3)).commitTs).toBeTypeOf('bigint');
    expect((await commit(t4)).code).toBe('TXN_CONFLICT');
    expect(await get('z')).toBe('a');
  });

  it('serializable catches a phantom inserted into a scanned range', async () => {
    await put('r/1', 'a');
    const t = await begin();
    const scan = await ok({ kind: OpKind.scanOpen, key: b('r/'), txn: t });
    expect(scanKeys(scan)).toEqual([b('r/1')]);
    await put('r/2', 'phantom');
    await put('summary', '1', t);
    expect((await commit(t)).code).toBe('TXN_CONFLICT');
    expect(await get('summary')).toBeNull();
  });

  it('reads own writes, hides them from others, discards on abort, and refuses a finished txn', async () => {
    const t = await begin(IsolationKind.snapshot);
    await put('own', 'mine', t);
    expect(await get('own', t)).toBe('mine');
    expect(await get('own')).toBeNull();
    expect(scanKeys(await ok({ kind: OpKind.scanOpen, key: b('o'), txn: t }))).toEqual([b('own')]);
    await ok({ kind: OpKind.abort, txn: t });
    expect(await get('own')).toBeNull();
    expect((await one({ kind: OpKind.put, key: b('own'), value: b('x'), txn: t })).code).toBe('NOT_IN_TRANSACTION');
    expect((await commit(t)).code).toBe('NOT_IN_TRANSACTION');
  });

  it('streams a snapshot-consistent scan in batches, forward and reverse, and frees cursors', async () => {
    await ok({ kind: OpKind.putBatch, keys: Array.from({ length: 50 }, (_, i) => b(`s/${String(i).padStart(2, '0')}`)), values: Array.from({ length: 50 }, () => b('v')) });
    for (const reverse of [false, true]) {
      const seen: string[] = [];
      let result = await ok({ kind: OpKind.scanOpen, key: b('s/'), batchItems: 7, reverse });
      await put('s/25x', 'late'); // after the snapshot: must not appear
      for (;;) {
        seen.push(...scanKeys(result).map((k) => k.toString()));
        if (result.done) break;
        expect(result.entries!.count).toBe(7);
        result = await ok({ kind: OpKind.scanNext, cursor: result.cursor! });
      }
      const expected = Array.from({ length: 50 }, (_, i) => `s/${String(i).padStart(2, '0')}`);
      expect(seen).toEqual(reverse ? expected.reverse() : expected);
      await ok({ kind: OpKind.delete, key: b('s/25x') });
    }
    expect((await engine.stats()).openCursors).toBe(0);
    const open = await ok({ kind: OpKind.scanOpen, key: b('s/'), batchItems: 1 });
    await ok({ kind: OpKind.scanClose, cursor: open.cursor! });
    expect((await one({ kind: OpKind.scanNext, cursor: open.cursor! })).code).toBe('CURSOR_NOT_FOUND');
    const ranged = await ok({ kind: OpKind.scanOpen, key: b('s/10'), end: b('s/13'), range: true, limit: 2 });
    expect(ranged.entries!.toEntries().map(([k, v]) => `${k}=${v}`)).toEqual(['s/10=v', 's/11=v']);
    expect(ranged.done).toBe(true);
  });

  it('a cursor inside a transaction dies with the transaction', async () => {
    await ok({ kind: OpKind.putBatch, keys: [b('c/1'), b('c/2')], values: [b('1'), b('2')] });
    const t = await begin();
    const scan = await ok({ kind: OpKind.scanOpen, key: b('c/'), batchItems: 1, txn: t });
    await ok({ kind: OpKind.abort, txn: t });
    expect((await one({ kind: OpKind.scanNext, cursor: scan.cursor! })).code).toBe('CURSOR_NOT_FOUND');
  });

  it('lists the distinct children of a path, even with separators inside segments', async () => {
    for (const path of [['u', 'ann', 'age'], ['u', 'ann', 'name'], ['u', 'b/ob'], ['u', 'b', 'deep'], ['v', 'x']]) {
      await ok({ kind: OpKind.put, key: encodePath(path), value: b('1') });
    }
    const listed = await ok({ kind: OpKind.listPath, key: pathPrefix(['u']) });
    expect(listed.keys!.map(String)).toEqual(['ann', 'b', 'b/ob']);
  });

  it('hides expired keys at once and reclaims them in a sweep', async () => {
    await ok({ kind: OpKind.put, key: b('t/short'), value: b('v'), ttlMs: 30 });
    await ok({ kind: OpKind.put, key: b('t/long'), value: b('v'), ttlMs: 60_000 });
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(await get('t/short')).toBeNull();
    expect(scanKeys(await ok({ kind: OpKind.scanOpen, key: b('t/') })).map(String)).toEqual(['t/long']);
    expect(await engine.sweepExpired(100)).toEqual({ removed: 1, examined: 1 });
    expect(await engine.sweepExpired(100)).toEqual({ removed: 0, examined: 0 });
    expect(await get('t/long')).toBe('v');
  });

  it('aborts a transaction that buffers more than txnBytesMax', async () => {
    const t = await begin();
    const big = Buffer.alloc(LIMITS.txnBytesMax / 2 + 1);
    await ok({ kind: OpKind.put, key: b('big/1'), value: big, txn: t });
    expect((await one({ kind: OpKind.put, key: b('big/2'), value: big, txn: t })).code).toBe('TXN_TOO_LARGE');
    expect((await commit(t)).code).toBe('NOT_IN_TRANSACTION');
  });

  it('recovers writes after close and reopen, and checkpoints', async () => {
    await put('keep', 'me');
    const checkpoint = await engine.checkpoint();
    expect(checkpoint.lsn).toBeTypeOf('bigint');
    await put('after', 'checkpoint');
    await engine.close();
    await expect(engine.execute([{ kind: OpKind.get, key: b('keep') }])).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
    engine = await open();
    expect(engine.recovery.seqno).toBeGreaterThan(0n);
    expect(await get('keep')).toBe('me');
    expect(await get('after')).toBe('checkpoint');
  });

  // engine/src/core/store/workers.rs: FJALL_WORKER_NICE. Each vitest file runs in its own
  // process, so the threads counted are this file's stores' only.
  const FJALL_WORKER_NICE = 5;
  /** The nice value of every live fjall worker thread of this process (Linux /proc). */
  const fjallWorkerNices = () =>
    readdirSync('/proc/self/task').flatMap((task) => {
      try {
        if (readFileSync(`/proc/self/task/${task}/comm`, 'utf8').trimEnd() !== 'fjall:worker') return [];
        const stat = readFileSync(`/proc/self/task/${task}/stat`, 'utf8');
        // After the ")" that ends comm: state is the 1st field, nice the 17th.
        return [Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])];
      } catch {
        return []; // the thread ended while being read
      }
    });

  it.runIf(process.platform === 'linux')('runs the fjall workers of every store in the process nicer, not only the first', async () => {
    const second = await openEngine({ path: join(dir, 'db2'), ...LIMITS });
    try {
      const nices = fjallWorkerNices();
      expect(nices.length).toBeGreaterThanOrEqual(2); // the beforeEach store's and this one's
      expect(nices.every((nice) => nice >= FJALL_WORKER_NICE), `nice values ${nices}`).toBe(true);
    } finally {
      await second.close();
    }
  });

  it('locks a data directory exclusively until released', () => {
    const lockDir = join(dir, 'locked');
    const lock = lockDataDir(lockDir);
    expect(() => lockDataDir(lockDir)).toThrow(expect.objectContaining({ code: 'LOCKED' }));
    lock.release();
    lockDataDir(lockDir).release();
  });
});
