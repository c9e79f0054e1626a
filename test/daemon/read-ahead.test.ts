// ScanReadAhead on its own, with an engine stand-in whose reads the test settles by hand: reads of
// a cursor run one at a time, in order, never more than SCAN_READ_AHEAD_BATCHES ahead, stop after
// a result that closed the cursor, and takeAll/closable wait for the last read.
import { describe, expect, it } from 'vitest';
import type { EngineResult } from '../../engine/types.js';
import { ScanReadAhead } from '../../daemon/read-ahead.js';
import { SCAN_READ_AHEAD_BATCHES, SCAN_READ_AHEAD_BATCHES_PER_CONNECTION_MAX } from '../../protocol/limits.js';

/** Engine stand-in: each read is held until the test settles it. */
function heldReads() {
  const held: { cursor: number; settle: (result: EngineResult) => void }[] = [];
  const read = (cursor: number) => new Promise<EngineResult>((resolve) => held.push({ cursor, settle: resolve }));
  return { held, read };
}

const batch = (n: number, done = false): EngineResult => ({ seq: n, done });
const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('ScanReadAhead', () => {
  it('reads one batch at a time up to the depth, hands them out in order, and refills when one is taken', async () => {
    const { held, read } = heldReads();
    const ahead = new ScanReadAhead(read);
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
    const ahead = new ScanReadAhead(read);
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
    const ahead = new ScanReadAhead(read);
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

  it('holds at most SCAN_READ_AHEAD_BATCHES_PER_CONNECTION_MAX batches across cursors, and frees the budget as they are taken', async () => {
    const { held, read } = heldReads();
    const ahead = new ScanReadAhead(read);
    const cursors = Array.from({ length: SCAN_READ_AHEAD_BATCHES_PER_CONNECTION_MAX + 3 }, (_, i) => i + 1);
    for (let round = 0; round < SCAN_READ_AHEAD_BATCHES; round++) {
      for (const cursor of cursors) ahead.start(cursor);
      for (const h of held.splice(0)) h.settle(batch(round + 1));
      await tick();
    }
    expect(ahead.heldBatches).toBe(SCAN_READ_AHEAD_BATCHES_PER_CONNECTION_MAX);
    const withReads = cursors.filter((cursor) => ahead.takeNext(cursor) !== undefined);
    expect(withReads.length).toBeGreaterThan(0);
    expect(ahead.heldBatches).toBeLessThan(SCAN_READ_AHEAD_BATCHES_PER_CONNECTION_MAX);
    for (const cursor of cursors) ahead.takeAll(cursor);
    expect(ahead.heldBatches).toBe(0);
  });
});
