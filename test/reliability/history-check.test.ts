// Self-test of the history checker (history.ts) on hand-made histories: a checker that finds
// no cycle in anything would let history.test.ts pass whatever the daemon did, since a correct
// daemon only ever produces acyclic serializable histories. Pure: no daemon.
import { describe, expect, it } from 'vitest';
import { checkHistory, type TxnRecord } from './history.js';

const txn = (id: string, reads: Record<string, string[]>, appends: string[], committed = true): TxnRecord => ({ id, committed, reads, appends });
const sorted = (cycles: string[][]) => cycles.map((cycle) => [...cycle].sort());

describe('history checker', () => {
  it('finds the cycle of a write skew (each read what the other then overwrote)', () => {
    // Snapshot isolation allows this; serializable must not: T1 and T2 both read x and y empty,
    // T1 appended to x, T2 to y. rw T1 -> T2 (T1 read y before T2's append) and rw T2 -> T1.
    const history = [txn('T1', { x: [], y: [] }, ['x']), txn('T2', { x: [], y: [] }, ['y'])];
    const report = checkHistory(history, { x: ['T1'], y: ['T2'] });
    expect(report.anomalies).toEqual([]);
    expect(report.edges).toBe(2);
    expect(sorted(report.cycles)).toEqual([['T1', 'T2']]);
  });

  it('finds no cycle when the second transaction saw the first one\'s append', () => {
    const history = [txn('T1', { x: [], y: [] }, ['x']), txn('T2', { x: ['T1'], y: [] }, ['y'])];
    const report = checkHistory(history, { x: ['T1'], y: ['T2'] });
    expect(report.cycles).toEqual([]);
    expect(report.anomalies).toEqual([]);
    expect(report.transactions).toBe(2);
  });

  it('finds a three-transaction anti-dependency cycle (G2 over three keys)', () => {
    const history = [txn('T1', { y: [] }, ['x']), txn('T2', { z: [] }, ['y']), txn('T3', { x: [] }, ['z'])];
    const report = checkHistory(history, { x: ['T1'], y: ['T2'], z: ['T3'] });
    expect(sorted(report.cycles)).toEqual([['T1', 'T2', 'T3']]);
  });

  it('finds a write-read cycle (each read the other\'s append: G1c)', () => {
    const history = [txn('T1', { y: ['T2'] }, ['x']), txn('T2', { x: ['T1'] }, ['y'])];
    const report = checkHistory(history, { x: ['T1'], y: ['T2'] });
    expect(sorted(report.cycles)).toEqual([['T1', 'T2']]);
  });

  it('orders appends to one key (ww) and keeps a long serial history acyclic', () => {
    // T0..T99 each read k and appended to it, in order: a chain, no cycle, 99 ww + 99 wr edges
    // collapse to 99 edges, and each read's overwriter is the next transaction (rw, same edge).
    const ids = Array.from({ length: 100 }, (_, i) => `T${i}`);
    const history = ids.map((id, i) => txn(id, { k: ids.slice(0, i) }, ['k']));
    const report = checkHistory(history, { k: ids });
    expect(report.cycles).toEqual([]);
    expect(report.edges).toBe(99);
  });

  it('reports an aborted transaction\'s visible append and a read that is no prefix', () => {
    const history = [txn('T1', {}, ['x']), txn('A', {}, ['x'], false), txn('T2', { x: ['A'] }, [])];
    const report = checkHistory(history, { x: ['T1', 'A'] });
    expect(report.anomalies).toContain('aborted A visible in x');
    expect(report.anomalies).toContain('T2 read x=[A] which is not a prefix of [T1,A]');
  });
});
