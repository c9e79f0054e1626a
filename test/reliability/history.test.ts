// Elle-style history check (see history.ts): concurrent list-append transactions from several
// clients; the committed history must have no dependency cycle under serializable isolation.
// Under snapshot isolation cycles (write skew, G2) are possible and are reported, not failed.
// Knobs: TOONDB_HISTORY_TXNS per client (default 150), TOONDB_HISTORY_SEED (printed).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpcClient, type Transaction } from '../../ipc-client/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { checkHistory, type TxnRecord } from './history.js';

const TXNS = Number(process.env.TOONDB_HISTORY_TXNS ?? 150);
const SEED = Number(process.env.TOONDB_HISTORY_SEED ?? Date.now() % 1_000_000);
const CLIENTS = 4;
const KEYS = 6;

async function runClient(client: IpcClient, name: string, isolation: 'serializable' | 'snapshot', seed: number): Promise<TxnRecord[]> {
  let state = seed;
  const rand = (n: number) => (state = (state * 1103515245 + 12345) % 2147483648) % n;
  const records: TxnRecord[] = [];
  for (let i = 0; i < TXNS; i++) {
    const id = `${name}.${i}`;
    const record: TxnRecord = { id, committed: false, reads: {}, appends: [] };
    const txn: Transaction = await client.beginTransaction({ isolation });
    try {
      for (let op = 0; op < 1 + rand(3); op++) {
        const key = `h/${rand(KEYS)}`;
        const raw = await txn.get(key);
        const list = raw && raw.length > 0 ? raw.toString().split(',') : [];
        if (!(key in record.reads) && !record.appends.includes(key)) record.reads[key] = list;
        if (rand(2) === 0 && !record.appends.includes(key)) {
          await txn.put(key, [...list, id].join(','));
          record.appends.push(key);
        }
      }
      await txn.commit();
      record.committed = true;
    } catch (error) {
      if ((error as { code?: string }).code !== 'TXN_CONFLICT') throw error;
    }
    records.push(record);
  }
  return records;
}

describe('transaction history has no dependency cycles', () => {
  let daemon: TestDaemon;
  beforeAll(async () => {
    console.log(`history test: TOONDB_HISTORY_TXNS=${TXNS} TOONDB_HISTORY_SEED=${SEED}`);
    daemon = await startDaemon();
  });
  afterAll(async () => {
    await daemon?.dispose();
  });

  for (const isolation of ['serializable', 'snapshot'] as const) {
    it(`${isolation}: history is checked`, async () => {
      const clients = await Promise.all(Array.from({ length: CLIENTS }, () => IpcClient.connect(daemon.socketPath)));
      await clients[0].deleteBatch(Array.from({ length: KEYS }, (_, k) => `h/${k}`));
      const histories = await Promise.all(clients.map((c, i) => runClient(c, `${isolation[0]}${i}`, isolation, SEED + i)));
      const finalValues = await clients[0].getBatch(Array.from({ length: KEYS }, (_, k) => `h/${k}`));
      const finalLists = Object.fromEntries(finalValues.map((v, k) => [`h/${k}`, v && v.length > 0 ? v.toString().split(',') : []]));
      const report = checkHistory(histories.flat(), finalLists);
      console.log(`${isolation}: ${report.transactions} committed, ${report.edges} edges, ${report.cycles.length} cycles, ${report.anomalies.length} anomalies`);
      expect(report.transactions).toBeGreaterThan(CLIENTS * TXNS * 0.1);
      expect(report.anomalies).toEqual([]);
      if (isolation === 'serializable') expect(report.cycles).toEqual([]);
      // Every committed append is in its key's final list exactly once (no lost update).
      for (const txn of histories.flat().filter((t) => t.committed)) {
        for (const key of txn.appends) expect(finalLists[key].filter((id) => id === txn.id)).toHaveLength(1);
      }
      await Promise.all(clients.map((c) => c.close()));
    });
  }
});
