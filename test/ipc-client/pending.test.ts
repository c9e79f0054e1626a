// PendingTable on its own: ids never shared while pending or remembered as timed out, timeouts
// at the deadline, and requests leaving in allocation order (sweep, drain). The slot array
// under it is tested in test/protocol/id-slots.test.ts.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ToonDBError } from '../../protocol/errors.js';
import { CLIENT_TIMEOUT_MS_MAX } from '../../protocol/limits.js';
import { REQUEST_ID_MAX } from '../../protocol/messages.js';
import { PendingTable, type Pending } from '../../ipc-client/pending.js';

interface Req {
  op: string;
}

interface Added {
  pending: Pending<Req>;
  outcome: () => unknown;
}

function adder(table: PendingTable<Req>): (op?: string) => Added {
  return (op = 'get') => {
    let outcome: unknown = 'unsettled';
    const pending = table.add({ op }, (result) => { outcome = result; }, (error: ToonDBError) => { outcome = error.code; });
    return { pending, outcome: () => outcome };
  };
}

/** Moves the table's id counter (inside its IdSlots), as if `lastId` had just been handed out:
 * to reach the wrap without four billion requests. */
function countFrom(table: PendingTable<Req>, lastId: number): PendingTable<Req> {
  (table as unknown as { byId: { lastId: number } }).byId.lastId = lastId;
  return table;
}

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('PendingTable', () => {
  it('finds each pending request by its id, and an id only while pending', () => {
    const table = new PendingTable<Req>(0, () => undefined);
    const add = adder(table);
    const requests = Array.from({ length: 5 }, () => add());
    expect(requests.map((r) => r.pending.id)).toEqual([1, 2, 3, 4, 5]);
    expect(table.size).toBe(5);
    expect(table.take(3)).toBe(requests[2].pending);
    expect(requests[2].pending.live).toBe(false);
    expect(table.take(3)).toBeUndefined();
    // Ids that were never handed out, or fall on a taken id's slot, find nothing.
    expect(table.take(3 + 1024)).toBeUndefined();
    expect(table.take(2 ** 40 + 1)).toBeUndefined();
    expect(table.take(0)).toBeUndefined();
    expect(table.size).toBe(4);
  });

  it('skips ids still pending when the counter wraps, and ids that may get a late reply', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const table = new PendingTable<Req>(100, () => undefined);
    const add = adder(table);
    const timedOut = add(); // id 1: written, then times out and may still get a late reply
    timedOut.pending.written = true;
    vi.advanceTimersByTime(101);
    expect(timedOut.outcome()).toBe('TIMEOUT');
    const held = add(); // id 2: stays pending
    expect([timedOut.pending.id, held.pending.id]).toEqual([1, 2]);
    countFrom(table, REQUEST_ID_MAX - 1);
    expect(add().pending.id).toBe(REQUEST_ID_MAX);
    expect(add().pending.id).toBe(3); // wrapped past 1 (timed out) and 2 (pending)
    // The late reply to 1 arrives: the id is forgotten and may be handed out again.
    expect(table.takeLate(1)).toBeNull();
    table.take(2);
    countFrom(table, REQUEST_ID_MAX);
    expect(add().pending.id).toBe(1);
    expect(add().pending.id).toBe(2);
  });

  it('times requests out at their deadline, in allocation order, and only those past it', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    let sweeps = 0;
    const table = new PendingTable<Req>(1000, () => { sweeps += 1; });
    const add = adder(table);
    const first = Array.from({ length: 3 }, () => add('put'));
    vi.advanceTimersByTime(500);
    const second = Array.from({ length: 2 }, () => add('get'));
    const order: number[] = [];
    for (const r of [...first, ...second]) {
      const reject = r.pending.reject;
      (r.pending as { reject: (error: ToonDBError) => void }).reject = (error) => { order.push(r.pending.id); reject(error); };
    }
    table.take(first[1].pending.id);
    vi.advanceTimersByTime(499);
    expect(first[0].outcome()).toBe('unsettled');
    vi.advanceTimersByTime(2);
    expect(first.map((r) => r.outcome())).toEqual(['TIMEOUT', 'unsettled', 'TIMEOUT']);
    expect(second.map((r) => r.outcome())).toEqual(['unsettled', 'unsettled']);
    expect(sweeps).toBe(1);
    expect(table.size).toBe(2);
    vi.advanceTimersByTime(500);
    expect(second.map((r) => r.outcome())).toEqual(['TIMEOUT', 'TIMEOUT']);
    expect(order).toEqual([first[0].pending.id, first[2].pending.id, second[0].pending.id, second[1].pending.id]);
    expect(table.size).toBe(0);
    expect(sweeps).toBe(2);
  });

  // Review: each sweep visits the whole table and re-armed for the earliest deadline left, so
  // requests added a ms apart to a stalled connection cost one sweep of all of them each
  // (quadratic in a burst). Sweeps are now at least timeoutMs / 64 apart.
  it('sweeps a table of spread-out deadlines a bounded number of times, none early, none much late', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const timeoutMs = 640;
    let sweeps = 0;
    const table = new PendingTable<Req>(timeoutMs, () => { sweeps += 1; });
    const add = adder(table);
    const added: { at: number; request: Added; settledAt: number | null }[] = [];
    for (let i = 0; i < 1000; i++) {
      const at = performance.now();
      const request = add();
      const entry = { at, request, settledAt: null as number | null };
      const reject = request.pending.reject;
      (request.pending as { reject: (error: ToonDBError) => void }).reject = (error) => { entry.settledAt = performance.now(); reject(error); };
      added.push(entry);
      vi.advanceTimersByTime(1);
    }
    vi.advanceTimersByTime(2 * timeoutMs);
    expect(added.every((entry) => entry.request.outcome() === 'TIMEOUT')).toBe(true);
    const lateness = added.map((entry) => entry.settledAt! - (entry.at + timeoutMs));
    expect(Math.min(...lateness)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...lateness)).toBeLessThanOrEqual(timeoutMs / 64 + 1);
    // 1000 ms of deadlines, at most one sweep per 10 ms (one per deadline before: ~1000).
    expect(sweeps).toBeLessThanOrEqual(1000 / (timeoutMs / 64) + 2);
    expect(sweeps).toBeGreaterThan(50);
  });

  it('drains every request in allocation order across the id wrap', () => {
    const table = countFrom(new PendingTable<Req>(0, () => undefined), REQUEST_ID_MAX - 2);
    const add = adder(table);
    const ids = Array.from({ length: 6 }, () => add().pending.id);
    expect(ids).toEqual([REQUEST_ID_MAX - 1, REQUEST_ID_MAX, 1, 2, 3, 4]);
    table.take(2);
    const drained = table.drain();
    expect(drained.map((p) => p.id)).toEqual([REQUEST_ID_MAX - 1, REQUEST_ID_MAX, 1, 3, 4]);
    expect(drained.every((p) => !p.live)).toBe(true);
    expect(table.size).toBe(0);
  });
});

// Regression: with timeoutMs at its maximum, (now + timeoutMs) - now can round up past
// setTimeout's 32-bit bound, which Node fires after 1 ms with a TimeoutOverflowWarning (and the
// sweep, finding nothing due, would re-arm it every ms).
describe('PendingTable at the longest timeout', () => {
  it('never arms its timer past setTimeout\'s bound', () => {
    // A clock reading at which the sum rounds up (found by search).
    vi.spyOn(performance, 'now').mockReturnValue(1272776.0169732939);
    const delays: number[] = [];
    const setTimeoutSpy = vi.spyOn(globalThis, 'setTimeout').mockImplementation(((_fn: () => void, delayMs?: number) => {
      delays.push(delayMs ?? 0);
      return { unref: () => undefined } as unknown as NodeJS.Timeout;
    }) as typeof setTimeout);
    const table = new PendingTable<Req>(CLIENT_TIMEOUT_MS_MAX, () => undefined);
    adder(table)();
    setTimeoutSpy.mockRestore();
    expect(delays).toEqual([CLIENT_TIMEOUT_MS_MAX]);
  });
});
