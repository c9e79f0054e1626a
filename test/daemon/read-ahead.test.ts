// ScanReadAhead on its own, with an engine stand-in whose reads the test settles by hand: reads of
// a cursor run one at a time, in order, never more than SCAN_READ_AHEAD_BATCHES ahead, stop after
// a result that closed the cursor, takeAll/closable wait for the last read, and the bytes held
// stay within the connection's and the daemon's budgets.
import { describe, expect, it } from 'vitest';
import type { EngineResult } from '../../engine/types.js';
import { ReadAheadBudget, ScanReadAhead } from '../../daemon/read-ahead.js';
import { SCAN_READ_AHEAD_BATCHES, SCAN_READ_AHEAD_BYTES_MAX, SCAN_READ_AHEAD_BYTES_PER_CONNECTION_MAX } from '../../protocol/limits.js';
import { PackedArray } from '../../protocol/packed-array.js';

/** Engine stand-in: each read is held until the test settles it. */
function heldReads() {
  const held: { cursor: number; settle: (result: EngineResult) => void }[] = [];
  const read = (cursor: number) => new Promise<EngineResult>((resolve) => held.push({ cursor, settle: resolve }));
  return { held, read };
}

/** A batch result whose entries take `bytes` bytes. */
const batch = (n: number, done = false, bytes = 100): EngineResult => ({ seq: n, done, entries: new PackedArray(1, Buffer.alloc(bytes)) });
/** What a running read holds: the daemon's scanBatchBytesMax in these tests. */
const BATCH_BYTES_MAX = SCAN_READ_AHEAD_BYTES_PER_CONNECTION_MAX / 8;

function readAhead(read: (cursor: number) => Promise<EngineResult>, shared = new ReadAheadBudget(SCAN_READ_AHEAD_BYTES_MAX)) {
  return new ScanReadAhead(read, shared, () => BATCH_BYTES_MAX);
}
const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('ScanReadAhead', () => {
  it('reads one batch at a time up to the depth, hands them out in order, and refills when one is taken', async () => {
    const { held, read } = heldReads();
    const ahead = readAhead(read);
    ahead.start(7);
    ahead.start(7); // a second start while reading changes nothing
    expect(held).toHaveLength(1);
    expect(ahead.busy).toBe(true);
    for (let n = 1; n <= SCAN_READ_AHEAD_BATCHES; n++) {
      held[n - 1].settle(batch(n));
      await tick();
    }
    expect(held).toHaveLength(SCAN_READ_AHEAD_BATCHES); // full: no read beyond the depth
    expect(ahead.busy).toBe(false);
    expect(await ahead.takeNext(7)).toEqual(batch(1));
    ahead.start(7); // the session's call after answering a batch
    expect(held).toHaveLength(SCAN_READ_AHEAD_BATCHES + 1);
    expect(held.every((h) => h.cursor === 7)).toBe(true);
  });

  it('reads nothing after a result that closed the cursor, and forgets a drained cursor', async () => {
    const { held, read } = heldReads();
    const ahead = readAhead(read);
    ahead.start(3);
    held[0].settle(batch(1, true));
    await tick();
    expect(held).toHaveLength(1);
    expect(await ahead.takeNext(3)).toEqual(batch(1, true));
    expect(ahead.takeNext(3)).toBeUndefined();
    expect(ahead.takeAll(3)).toBeUndefined();
  });

  it('takeAll and closable settle with the last read, and close only what it left open', async () => {
    const { held, read } = heldReads();
    const ahead = readAhead(read);
    ahead.start(1);
    ahead.start(2);
    const last = ahead.takeAll(1)!;
    let settled = false;
    void last.then(() => { settled = true; });
    held[0].settle(batch(1));
    await tick();
    expect(settled).toBe(true);
    expect(held.filter((h) => h.cursor === 1)).toHaveLength(1); // taken: no further read of it
    const closedLater: number[] = [];
    expect(ahead.closable([2, 9], (cursor) => closedLater.push(cursor))).toEqual([9]);
    held[1].settle(batch(1));
    await tick();
    expect(closedLater).toEqual([2]);
  });

  it('holds a whole batch per running read and the batch size once read, and gives both back when taken', async () => {
    const { held, read } = heldReads();
    const shared = new ReadAheadBudget(SCAN_READ_AHEAD_BYTES_MAX);
    const ahead = readAhead(read, shared);
    ahead.start(5);
    expect(ahead.heldBytes).toBe(BATCH_BYTES_MAX);
    expect(shared.heldBytes).toBe(BATCH_BYTES_MAX);
    held[0].settle(batch(1, false, 300));
    await tick();
    expect(held).toHaveLength(2); // the next read runs
    expect(ahead.heldBytes).toBe(300 + BATCH_BYTES_MAX);
    expect(await ahead.takeNext(5)).toEqual(batch(1, false, 300));
    expect(ahead.heldBytes).toBe(BATCH_BYTES_MAX);
    // Taken while still running: given back at once, and not held again when it settles.
    const last = ahead.takeAll(5)!;
    expect(ahead.heldBytes).toBe(0);
    held[1].settle(batch(2, false, 500));
    await last;
    expect(ahead.heldBytes).toBe(0);
    expect(shared.heldBytes).toBe(0);
    expect(ahead.heldBatches).toBe(0);
  });

  it("starts no read that the connection's byte budget has no room for, and reads again once batches are taken", async () => {
    const { held, read } = heldReads();
    const ahead = readAhead(read);
    const cursors = Array.from({ length: 12 }, (_, i) => i + 1);
    for (const cursor of cursors) ahead.start(cursor);
    const perConnection = SCAN_READ_AHEAD_BYTES_PER_CONNECTION_MAX / BATCH_BYTES_MAX;
    expect(held).toHaveLength(perConnection); // each running read holds a whole batch
    expect(ahead.heldBytes).toBe(SCAN_READ_AHEAD_BYTES_PER_CONNECTION_MAX);
    for (const h of held) h.settle(batch(1, false, 1000));
    await tick();
    // Settled batches hold only their size: the cursors read on, each up to the depth.
    expect(held.length).toBeGreaterThan(perConnection);
    expect(ahead.heldBytes).toBeLessThanOrEqual(SCAN_READ_AHEAD_BYTES_PER_CONNECTION_MAX);
    for (const cursor of cursors) ahead.takeAll(cursor);
    expect(ahead.heldBytes).toBe(0);
    expect(ahead.heldBatches).toBe(0);
  });

  it('shares one daemon-wide budget between connections', async () => {
    const shared = new ReadAheadBudget(BATCH_BYTES_MAX * 3 + 10);
    const first = heldReads();
    const second = heldReads();
    const a = readAhead(first.read, shared);
    const b = readAhead(second.read, shared);
    for (const cursor of [1, 2, 3]) a.start(cursor);
    b.start(1);
    expect(first.held).toHaveLength(3);
    expect(second.held).toHaveLength(0); // no room left in the daemon's budget
    expect(shared.heldBytes).toBe(BATCH_BYTES_MAX * 3);
    first.held[0].settle(batch(1, true, 10)); // cursor 1 is done: its read holds 10 bytes
    await tick();
    b.start(1);
    expect(second.held).toHaveLength(1);
    expect(shared.heldBytes).toBe(10 + BATCH_BYTES_MAX * 3);
    for (const cursor of [1, 2, 3]) a.takeAll(cursor);
    b.takeAll(1);
    expect(shared.heldBytes).toBe(0);
  });
});
