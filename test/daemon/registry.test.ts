// The per-connection handle registry: ids (as the connection names a handle) against engine
// handles, the per-connection maximum, idle expiry, and a late result about a finished
// transaction whose id a client has already chosen again; the daemon-wide count shared by them.
import { describe, expect, it } from 'vitest';
import { HandleCount, HandleRegistry } from '../../daemon/registry.js';

describe('HandleRegistry', () => {
  it('keys transactions by the id their client chose and resolves them to engine handles', () => {
    const txns = new HandleRegistry(2, 1_000);
    expect(txns.add(5, 101, 0)).toBe(true);
    expect(() => txns.add(5, 104, 0)).toThrow(/invariant/); // callers check has() first
    expect(txns.add(6, 102, 0)).toBe(true);
    expect(txns.add(7, 103, 0)).toBe(false); // at the max
    expect(txns.touch(5, 10)?.handle).toBe(101);
    expect(txns.takeAll().sort()).toEqual([101, 102]);
    expect(txns.size).toBe(0);
  });

  it('a late result about a finished transaction does not drop the one that reuses its id', () => {
    const txns = new HandleRegistry(4, 1_000);
    txns.add(5, 101, 0);
    txns.delete(5); // committed
    txns.add(5, 102, 0); // the client chose 5 again
    txns.forget(5, 101); // e.g. the old one's write failed with NOT_IN_TRANSACTION
    expect(txns.touch(5, 0)?.handle).toBe(102);
    txns.forget(5, 102);
    expect(txns.has(5)).toBe(false);
  });

  it('expires idle entries by id, returns their handles, and forgets the mark when an id is reused', () => {
    const txns = new HandleRegistry(4, 1_000);
    txns.add(5, 101, 0);
    txns.add(6, 102, 900);
    expect(txns.takeIdle(1_500)).toEqual([101]);
    expect(txns.wasExpired(5)).toBe(true);
    expect(txns.has(6)).toBe(true);
    txns.add(5, 103, 1_500);
    expect(txns.wasExpired(5)).toBe(false);
  });

  it('reserves cursor slots against the same maximum and registers a cursor under its handle', () => {
    const cursors = new HandleRegistry(2, 1_000);
    expect(cursors.reserve()).toBe(true);
    expect(cursors.reserve()).toBe(true);
    expect(cursors.reserve()).toBe(false);
    cursors.settle(9, 0, 5);
    cursors.settle(undefined, 0); // the scan finished in its first batch
    expect(cursors.touch(9, 0)).toMatchObject({ handle: 9, txn: 5 });
    expect(cursors.takeWhere((entry) => entry.txn === 5)).toEqual([9]);
    expect(cursors.size).toBe(0);
  });

  it('counts every registry of a kind against the daemon-wide maximum, and gives back on every way out', () => {
    const shared = new HandleCount(5);
    const a = new HandleRegistry(4, 1_000, shared, true);
    const b = new HandleRegistry(4, 1_000, shared, true);
    for (let i = 1; i <= 3; i++) expect(a.add(i, 100 + i, 0)).toBe(true);
    expect(b.reserve()).toBe(true);
    expect(b.add(7, 107, 500)).toBe(true);
    expect(shared.held).toBe(5);
    expect(b.reserve()).toBe(false); // b has room (2 of 4), the daemon has none
    expect(b.refusedAcrossDaemon('open cursors')).toBe('the daemon already has 5 open cursors across all connections, its maximum (5)');
    expect(a.add(4, 104, 0)).toBe(false);
    b.settle(undefined, 0); // its scan finished in its first batch: no cursor left
    expect(shared.held).toBe(4);
    expect(a.delete(1)).toBe(true);
    a.forget(2, 102);
    expect(a.takeIdle(2_000)).toEqual([103]); // idle since 0
    expect(shared.held).toBe(1);
    expect(a.add(9, 109, 2_000)).toBe(true);
    expect(b.takeAll()).toEqual([107]);
    expect(a.takeWhere(() => true)).toEqual([109]);
    expect(shared.held).toBe(0);
    shared.max = 0; // a reload lowered it: new handles are refused
    expect(a.add(10, 110, 0)).toBe(false);
    expect(a.refusedAcrossDaemon('open transactions')).toMatch(/^the daemon already has 0 open transactions .* its maximum \(0\)$/);
  });

  it('keeps the last handles of the daemon-wide maximum for operators (the daemon\'s uid and root)', () => {
    const shared = new HandleCount(8); // a reserve of 4: half of it, below OWNER_HANDLES_RESERVED
    expect(shared.ownerReserve).toBe(4);
    const others = new HandleRegistry(8, 1_000, shared, false);
    const operator = new HandleRegistry(8, 1_000, shared, true);
    for (let i = 1; i <= 4; i++) expect(others.add(i, 100 + i, 0)).toBe(true);
    expect(others.reserve()).toBe(false); // 4 held: the rest is the operators'
    expect(others.refusedAcrossDaemon('open transactions'))
      .toBe('the daemon already has 4 open transactions across all connections; it keeps the last 4 of its 8 for its own user and root');
    expect(operator.refusedAcrossDaemon('open transactions')).toBeNull();
    for (let i = 1; i <= 4; i++) expect(operator.add(i, 200 + i, 0)).toBe(true);
    expect(operator.add(5, 205, 0)).toBe(false);
    expect(operator.refusedAcrossDaemon('open transactions')).toMatch(/its maximum \(8\)$/);
    operator.delete(1);
    expect(others.add(5, 105, 0)).toBe(false); // still 7 held, past others' 4
    expect(operator.add(1, 201, 0)).toBe(true);
    expect(new HandleCount(4096).ownerReserve).toBe(64); // OWNER_HANDLES_RESERVED
    expect(new HandleCount(1).ownerReserve).toBe(0);
  });
});
