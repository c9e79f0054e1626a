// Jepsen-style bank test: transfers between accounts in serializable transactions from several
// processes while other clients repeatedly scan and sum every balance. Money is neither created
// nor destroyed: every observed sum equals the initial total, and so does the final state.
// Knobs: TOONDB_BANK_SECONDS (default 3), TOONDB_BANK_SEED (printed).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { IpcClient } from '../../ipc-client/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { CLIENT_MODULE } from '../helpers/paths.js';

const SECONDS = Number(process.env.TOONDB_BANK_SECONDS ?? 3);
const SEED = Number(process.env.TOONDB_BANK_SEED ?? Date.now() % 1_000_000);
const ACCOUNTS = 8;
const INITIAL = 100;
const TRANSFER_PROCESSES = 3;

const TRANSFERS = `
const { IpcClient } = await import(process.env.CLIENT_MODULE);
const client = await IpcClient.connect(process.env.SOCKET);
let seed = Number(process.env.SEED);
const rand = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
const until = Date.now() + Number(process.env.MS);
let done = 0;
const loops = Array.from({ length: 8 }, async () => {
  while (Date.now() < until) {
    const from = rand(${ACCOUNTS}), to = rand(${ACCOUNTS}), amount = 1 + rand(20);
    if (from === to) continue;
    await client.withTransaction(async (txn) => {
      const [a, b] = await txn.getBatch(['acct/' + from, 'acct/' + to]);
      const balance = Number(a.toString());
      if (balance < amount) return;
      await txn.putBatch([['acct/' + from, String(balance - amount)], ['acct/' + to, String(Number(b.toString()) + amount)]]);
    }, { retries: 10000 });
    done++;
  }
});
await Promise.all(loops);
process.stdout.write(String(done));
await client.close();
`;

describe('bank: serializable transfers conserve money', () => {
  let daemon: TestDaemon;
  beforeAll(async () => {
    console.log(`bank test: TOONDB_BANK_SECONDS=${SECONDS} TOONDB_BANK_SEED=${SEED}`);
    daemon = await startDaemon();
  });
  afterAll(async () => {
    await daemon?.dispose();
  });

  it('every concurrent sum and the final sum equal the initial total', async () => {
    const client = await IpcClient.connect(daemon.socketPath);
    await client.putBatch(Array.from({ length: ACCOUNTS }, (_, i) => [`acct/${i}`, String(INITIAL)] as [string, string]));
    const total = ACCOUNTS * INITIAL;
    const transfers = Array.from({ length: TRANSFER_PROCESSES }, (_, p) => execa('node', ['--input-type=module', '-e', TRANSFERS], {
      env: { CLIENT_MODULE, SOCKET: daemon.socketPath, SEED: String(SEED + p * 7919), MS: String(SECONDS * 1000) },
    }));
    const sums: number[] = [];
    const txnSums: number[] = [];
    const deadline = Date.now() + SECONDS * 1000;
    while (Date.now() < deadline) {
      // A plain scan reads one snapshot...
      const rows = await client.scan('acct/').toArray();
      sums.push(rows.reduce((sum, [, v]) => sum + Number(v.toString()), 0));
      // ...and so does a read inside a transaction.
      const txn = await client.beginTransaction({ isolation: 'snapshot' });
      const inTxn = await txn.scan('acct/').toArray();
      txnSums.push(inTxn.reduce((sum, [, v]) => sum + Number(v.toString()), 0));
      await txn.abort();
    }
    const done = (await Promise.all(transfers)).map((r) => Number(r.stdout));
    expect(done.reduce((a, b) => a + b, 0), 'transfers happened').toBeGreaterThan(0);
    expect(sums.length).toBeGreaterThan(3);
    expect(sums.filter((s) => s !== total)).toEqual([]);
    expect(txnSums.filter((s) => s !== total)).toEqual([]);
    const final = await client.scan('acct/').toArray();
    expect(final).toHaveLength(ACCOUNTS);
    expect(final.reduce((sum, [, v]) => sum + Number(v.toString()), 0)).toBe(total);
    for (const [, v] of final) expect(Number(v.toString())).toBeGreaterThanOrEqual(0);
    await client.close();
  });
});
