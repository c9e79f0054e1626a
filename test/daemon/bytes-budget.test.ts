// The daemon-wide budget of request bytes in flight (daemon/bytes-budget.ts) and the frame
// decoder's admission of each frame before its body is read (protocol/frame.ts `admit`).
import { describe, expect, it } from 'vitest';
import { BytesBudget, type BudgetHolder } from '../../daemon/bytes-budget.js';
import { encodeFrame, FrameDecoder } from '../../protocol/frame.js';

function holder(): BudgetHolder & { grants: number[] } {
  const grants: number[] = [];
  return { grants, granted: (bytes) => grants.push(bytes) };
}

describe('BytesBudget', () => {
  it('admits while the total fits, then queues, and grants the waiters in order as bytes come back', () => {
    const budget = new BytesBudget(100);
    const [a, b, c] = [holder(), holder(), holder()];
    expect(budget.tryTake(60, a)).toBe(true);
    expect(budget.tryTake(50, b)).toBe(false); // 110 > 100
    expect(budget.tryTake(10, c)).toBe(false); // fits, but b waits first: no overtaking
    expect(budget.waiters).toBe(2);
    budget.release(5);
    expect(b.grants).toEqual([]); // 55 + 50 > 100
    budget.release(55);
    expect(b.grants).toEqual([50]);
    expect(c.grants).toEqual([10]);
    expect(budget.heldBytes).toBe(60);
    expect(budget.heldBytes).toBeLessThanOrEqual(budget.bytesMax);
  });

  it('considers the next waiter when one is forgotten, and a raised bound at once', () => {
    const budget = new BytesBudget(100);
    const [a, b, c] = [holder(), holder(), holder()];
    expect(budget.tryTake(90, a)).toBe(true);
    expect(budget.tryTake(100, b)).toBe(false);
    expect(budget.tryTake(10, c)).toBe(false);
    budget.forget(b);
    expect(c.grants).toEqual([10]);
    expect(budget.tryTake(50, a)).toBe(false);
    budget.setMax(150);
    expect(a.grants).toEqual([50]);
    expect(() => budget.release(1_000)).toThrow(/negative/);
  });
});

describe('FrameDecoder admission', () => {
  const frame = (n: number) => encodeFrame(Buffer.alloc(n, n & 0xff));

  it('takes no body byte of a refused frame and decodes what it kept once admitted', () => {
    const decoder = new FrameDecoder();
    const offered: number[] = [];
    let room = 150;
    const admit = (bytes: number): boolean => {
      offered.push(bytes);
      if (bytes > room) return false;
      room -= bytes;
      return true;
    };
    const stream = Buffer.concat([frame(100), frame(80), frame(20)]);
    expect(decoder.push(stream.subarray(0, 150), admit).map((b) => b.length)).toEqual([100]);
    expect(decoder.stalled).toBe(true);
    expect(decoder.bufferedBytes).toBe(4); // the header of the refused 80-byte frame only
    decoder.invariants();
    expect(decoder.push(stream.subarray(150), admit)).toEqual([]); // kept while stalled
    room += 100;
    expect(decoder.resumeAdmitted(admit).map((b) => b.length)).toEqual([80, 20]);
    expect(offered).toEqual([100, 80, 20]);
    expect(decoder.stalled).toBe(false);
    decoder.invariants();
  });

  it('stalls at a header that ends its chunk', () => {
    const decoder = new FrameDecoder();
    const bytes = frame(10);
    expect(decoder.push(bytes.subarray(0, 4), () => false)).toEqual([]);
    expect(decoder.stalled).toBe(true);
    decoder.push(bytes.subarray(4));
    expect(decoder.resumeAdmitted(() => true).map((b) => b.length)).toEqual([10]);
  });
});
