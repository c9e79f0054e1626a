// IdSlots: ids from a wrapping counter never shared, entries found only under their own id,
// growth with scattered live ids, shrinking after a burst, and allocation order across the wrap.
import { describe, expect, it } from 'vitest';
import { IdSlots } from '../../protocol/id-slots.js';

interface Entry {
  readonly id: number;
  readonly label: string;
}

function added(slots: IdSlots<Entry>, label = ''): Entry {
  const entry = { id: slots.allocate(), label };
  slots.put(entry);
  return entry;
}

const slotCount = (slots: IdSlots<Entry>): number => (slots as unknown as { slots: unknown[] }).slots.length;

describe('IdSlots', () => {
  it('takes an entry only under its own id, and only once', () => {
    const slots = new IdSlots<Entry>(1000);
    const entries = Array.from({ length: 5 }, (_, i) => added(slots, `e${i}`));
    expect(entries.map((e) => e.id)).toEqual([1, 2, 3, 4, 5]);
    // Same slot, other id; ids never handed out; not an id at all: nothing is taken.
    expect(slots.take(3 + 1024)).toBeUndefined();
    expect(slots.take(2 ** 40 + 3)).toBeUndefined();
    expect(slots.take(0)).toBeUndefined();
    expect(slots.take(Number.NaN)).toBeUndefined();
    expect(slots.size).toBe(5);
    expect(slots.take(3)).toBe(entries[2]);
    expect(slots.take(3)).toBeUndefined();
    expect(slots.size).toBe(4);
  });

  it('grows with scattered live ids and never hands out a live id', () => {
    const slots = new IdSlots<Entry>(0xffff_ffff);
    const live = new Map<number, Entry>();
    for (let i = 0; i < 5000; i += 1) {
      const entry = added(slots);
      expect(live.has(entry.id)).toBe(false);
      live.set(entry.id, entry);
      if (i % 3 === 0) { // take the oldest: live ids spread over the whole counter range
        const oldest = live.keys().next().value as number;
        expect(slots.take(oldest)).toBe(live.get(oldest));
        live.delete(oldest);
      }
    }
    expect(slotCount(slots)).toBeGreaterThanOrEqual(2 * live.size);
    expect(slots.size).toBe(live.size);
    for (const [id, entry] of live) expect(slots.take(id)).toBe(entry);
    expect(slots.size).toBe(0);
  });

  it('skips ids whose slot is taken and ids named reserved, across the wrap', () => {
    const slots = new IdSlots<Entry>(3000, 2999);
    const held = added(slots); // 3000
    const reserved = new Set([2]);
    const after = { id: slots.allocate((id) => reserved.has(id)), label: '' };
    slots.put(after);
    expect([held.id, after.id]).toEqual([3000, 1]);
    expect(slots.allocate((id) => reserved.has(id))).toBe(3); // 2 reserved
    // A full turn later the counter meets a held id again: it is skipped.
    const turn = new IdSlots<Entry>(1000, 998);
    const stuck = added(turn); // 999
    for (let i = 0; i < 998; i += 1) turn.take(added(turn).id); // 1000, 1 .. 997
    expect(turn.allocate()).toBe(998);
    expect(turn.allocate()).toBe(1000); // 999 is still held
    expect(turn.take(stuck.id)).toBe(stuck);
    // An id whose slot a live entry holds is skipped too (1025 & 1023 === 1 & 1023).
    const shared = new IdSlots<Entry>(0xffff_ffff);
    const one = added(shared);
    for (let i = 0; i < 1023; i += 1) shared.take(added(shared).id); // 2 .. 1024
    expect(shared.allocate()).toBe(1026);
    expect(shared.take(one.id)).toBe(one);
  });

  it('removes entries together in allocation order, across the wrap', () => {
    const slots = new IdSlots<Entry>(0xffff_ffff, 0xffff_ffff - 2);
    const ids = Array.from({ length: 6 }, () => added(slots).id);
    expect(ids).toEqual([0xffff_fffe, 0xffff_ffff, 1, 2, 3, 4]);
    const odd = slots.removeWhere((e) => e.id % 2 === 1);
    expect(odd.map((e) => e.id)).toEqual([0xffff_ffff, 1, 3]);
    let visited = 0;
    slots.forEach(() => { visited += 1; });
    expect(visited).toBe(3);
    expect(slots.removeWhere(() => true).map((e) => e.id)).toEqual([0xffff_fffe, 2, 4]);
    expect(slots.size).toBe(0);
  });

  it('gives a burst\'s memory back once emptied, and keeps counting', () => {
    const slots = new IdSlots<Entry>(0xffff_ffff);
    const burst = Array.from({ length: 20_000 }, () => added(slots).id);
    expect(slotCount(slots)).toBeGreaterThanOrEqual(40_000);
    for (const id of burst.slice(0, -1)) expect(slots.take(id)?.id).toBe(id);
    expect(slotCount(slots)).toBeGreaterThanOrEqual(40_000); // not yet empty
    slots.take(burst[burst.length - 1]);
    expect(slotCount(slots)).toBe(1024);
    const next = added(slots);
    expect(next.id).toBe(20_001);
    expect(slots.take(20_001)).toBe(next);
  });

  it('refuses a taken slot and out-of-range bounds as broken invariants', () => {
    const slots = new IdSlots<Entry>(100);
    const first = added(slots);
    expect(() => slots.put({ id: first.id, label: 'again' })).toThrow(/invariant/);
    expect(() => new IdSlots<Entry>(0)).toThrow(/invariant/);
    expect(() => new IdSlots<Entry>(2 ** 32)).toThrow(/invariant/);
    expect(() => new IdSlots<Entry>(100, 101)).toThrow(/invariant/);
  });
});
