// Transactions over IPC: isolation anomalies the contract promises to prevent (write skew,
// lost updates, phantoms), own-writes visibility, and cleanup when a connection dies.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { IpcClient, TransactionConflictError, type Transaction } from '../../ipc-client/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { CLIENT_MODULE } from '../helpers/paths.js';

describe('transactions', () => {
  let daemon: TestDaemon;
  let a: IpcClient;
  let b: IpcClient;

  beforeAll(async () => {
    daemon = await startDaemon();
    a = await IpcClient.connect(daemon.socketPath);
    b = await IpcClient.connect(daemon.socketPath);
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await daemon?.dispose();
  });

  /** Two doctors on call; each goes off call only if the other is on call. */
  async function writeSkew(isolation: 'serializable' | 'snapshot', prefix: string): Promise<PromiseSettledResult<bigint>[]> {
    await a.putBatch([[`${prefix}/alice`, 'on'], [`${prefix}/bob`, 'on']]);
    const t1 = await a.beginTransaction({ isolation });
    const t2 = await b.beginTransaction({ isolation });
    expect((await t1.get(`${prefix}/bob`))?.toString()).toBe('on');
    expect((await t2.get(`${prefix}/alice`))?.toString()).toBe('on');
    await t1.put(`${prefix}/alice`, 'off');
    await t2.put(`${prefix}/bob`, 'off');
    return Promise.allSettled([t1.commit(), t2.commit()]);
  }

  it('serializable: exactly one of two write-skewed commits fails with TXN_CONFLICT', async () => {
    const results = await writeSkew('serializable', 'skew-s');
    const failed = results.filter((r) => r.status === 'rejected');
    expect(failed).toHaveLength(1);
    expect((failed[0] as PromiseRejectedResult).reason).toBeInstanceOf(TransactionConflictError);
    expect((failed[0] as PromiseRejectedResult).reason.code).toBe('TXN_CONFLICT');
    const states = (await a.getBatch(['skew-s/alice', 'skew-s/bob'])).map((v) => v?.toString());
    expect(states.filter((s) => s === 'on')).toHaveLength(1);
  });

  it('snapshot: both write-skewed commits succeed (the anomaly snapshot isolation allows)', async () => {
    const results = await writeSkew('snapshot', 'skew-i');
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled']);
    expect((await a.getBatch(['skew-i/alice', 'skew-i/bob'])).map((v) => v?.toString())).toEqual(['off', 'off']);
  });

  it('snapshot: concurrent writes to the same key conflict (first committer wins)', async () => {
    const t1 = await a.beginTransaction({ isolation: 'snapshot' });
    const t2 = await b.beginTransaction({ isolation: 'snapshot' });
    await t1.put('ww', '1');
    await t2.put('ww', '2');
    await t1.commit();
    await expect(t2.commit()).rejects.toMatchObject({ code: 'TXN_CONFLICT' });
    expect((await a.get('ww'))?.toString()).toBe('1');
  });

  it('takes the snapshot at the first operation: a commit between begin and it is seen and does not conflict', async () => {
    for (const isolation of ['serializable', 'snapshot'] as const) {
      await a.put('lazy', '1');
      const txn = await a.beginTransaction({ isolation });
      await b.put('lazy', '2'); // after begin, before the transaction's first operation
      expect((await txn.get('lazy'))?.toString()).toBe('2');
      await txn.put('lazy', '3');
      await txn.commit();
      expect((await b.get('lazy'))?.toString()).toBe('3');
    }
  });

  it('serializable: an insert into a scanned range conflicts (phantom)', async () => {
    await a.putBatch([['ph/1', 'x'], ['ph/3', 'x']]);
    const t1 = await a.beginTransaction();
    const seen = await t1.scan('ph/').toArray();
    expect(seen).toHaveLength(2);
    await b.put('ph/2', 'x'); // a phantom appears in t1's range
    await t1.put('ph-count', String(seen.length));
    await expect(t1.commit()).rejects.toBeInstanceOf(TransactionConflictError);
    expect(await a.get('ph-count')).toBeNull();
  });

  it('reads its own writes, and nothing is visible to others before commit', async () => {
    const txn = await a.beginTransaction();
    await txn.put('own/1', 'mine');
    await txn.delete('own/0');
    expect((await txn.get('own/1'))?.toString()).toBe('mine');
    expect(await txn.exists('own/1')).toBe(true);
    expect((await txn.scan('own/').toArray()).map(([k]) => k.toString())).toEqual(['own/1']);
    expect(await b.get('own/1')).toBeNull();
    const commitTs = await txn.commit();
    expect(typeof commitTs).toBe('bigint');
    expect((await b.get('own/1'))?.toString()).toBe('mine');
  });

  it('abort discards every write, and a finished transaction refuses further use', async () => {
    const txn = await a.beginTransaction();
    await txn.put('aborted/1', 'x');
    await txn.abort();
    expect(await a.get('aborted/1')).toBeNull();
    await expect(txn.get('aborted/1')).rejects.toMatchObject({ code: 'NOT_IN_TRANSACTION' });
    // Seed-style ids: another connection cannot commit a transaction it does not own.
    const other = await a.beginTransaction();
    await expect(b.commit(other.id)).rejects.toMatchObject({ code: 'NOT_IN_TRANSACTION' });
    await a.abort(other.id);
  });

  it('commit timestamps increase', async () => {
    const ts: bigint[] = [];
    for (let i = 0; i < 3; i++) {
      const txn = await a.beginTransaction();
      await txn.put('ts', String(i));
      ts.push(await txn.commit());
    }
    expect(ts[1] > ts[0] && ts[2] > ts[1]).toBe(true);
  });

  it('a dropped connection takes its open transaction with it', async () => {
    const doomed = await IpcClient.connect(daemon.socketPath);
    const txn = await doomed.beginTransaction();
    await txn.put('dropped/1', 'never');
    await txn.putBatch([['dropped/2', 'never'], ['dropped/3', 'never']]);
    expect((await a.stats()).transactions.active).toBeGreaterThanOrEqual(1);
    await doomed.close();
    await expect.poll(async () => (await a.stats()).transactions.active, { timeout: 5_000 }).toBe(0);
    expect(await a.getBatch(['dropped/1', 'dropped/2', 'dropped/3'])).toEqual([null, null, null]);
  });

  it('withTransaction retries conflicts: 4 processes x 50 increments end at exactly 200', async () => {
    await a.put('counter', '0');
    const child = `
      const { IpcClient } = await import(process.env.CLIENT_MODULE);
      const client = await IpcClient.connect(process.env.SOCKET);
      for (let i = 0; i < 50; i++) {
        await client.withTransaction(async (txn) => {
          const n = Number((await txn.get('counter')).toString());
          await txn.put('counter', String(n + 1));
        }, { retries: 1000 });
      }
      await client.close();`;
    await Promise.all(Array.from({ length: 4 }, () => execa('node', ['--input-type=module', '-e', child], {
      env: { CLIENT_MODULE, SOCKET: daemon.socketPath },
    })));
    expect((await a.get('counter'))?.toString()).toBe('200');
  });

  it('withTransaction aborts and rethrows a non-conflict error', async () => {
    await expect(a.withTransaction(async (txn) => {
      await txn.put('wt/fail', 'x');
      throw new Error('boom');
    })).rejects.toThrow('boom');
    expect(await a.get('wt/fail')).toBeNull();
  });
});

// Regression: a transaction's cursors outlived it in the engine (a client looping begin, scan,
// commit grew the daemon without bound), and one that expired idle kept its cursors' slots.
describe("a transaction's cursors", () => {
  /** Long enough that the loops below, on a loaded machine, never idle a transaction out. */
  const TXN_IDLE_MS = 1_500;
  /** Small enough that two getBatch of 250 four-byte keys pass it (reads count in a
   * serializable transaction, each with 160 bytes beside its key). */
  const TXN_BYTES = { txnBytesMax: 65_536, batchBytesMax: 65_536, valueBytesMax: 32_768 };
  let daemon: TestDaemon;
  let client: IpcClient;

  beforeAll(async () => {
    daemon = await startDaemon({ config: { limits: { txnIdleMsMax: TXN_IDLE_MS, cursorsPerConnectionMax: 2, ...TXN_BYTES } } });
    client = await IpcClient.connect(daemon.socketPath);
    await client.putBatch([['tc/1', 'a'], ['tc/2', 'b'], ['tc/3', 'c']]);
  });
  afterAll(async () => {
    await client?.close();
    await daemon?.dispose();
  });

  /** Opens a scan of tc/ inside `txn` with one entry per batch, so its cursor stays open. */
  async function openScan(txn: Transaction): Promise<void> {
    const first = await txn.scan('tc/', { batchSize: 1 })[Symbol.asyncIterator]().next();
    expect(first.value?.[0].toString()).toBe('tc/1');
  }

  it('are closed when it commits or aborts', async () => {
    for (let round = 0; round < 20; round++) {
      const txn = await client.beginTransaction();
      await openScan(txn);
      await openScan(txn);
      expect((await client.stats()).cursors.open).toBe(2);
      if (round % 2 === 0) await txn.commit();
      else await txn.abort();
      expect((await client.stats()).cursors.open).toBe(0);
    }
  });

  it('are closed, and their slots freed, when its reads pass txnBytesMax', async () => {
    const txn = await client.beginTransaction();
    await openScan(txn);
    await openScan(txn);
    const keys = Array.from({ length: 250 }, (_, i) => `k${String(i).padStart(3, '0')}`);
    await txn.getBatch(keys);
    await expect(txn.getBatch(keys)).rejects.toMatchObject({ code: 'TXN_TOO_LARGE' });
    expect((await client.stats()).cursors.open).toBe(0);
    expect(await client.scan('tc/').toArray()).toHaveLength(3); // no LIMIT_EXCEEDED: both slots free
  });

  // Regression: range reads were not counted (fjall marks each for the conflict check, to the
  // commit): scans repeated in one serializable transaction held memory without bound, and its
  // commit, which holds the commit lock, stalled every writer for seconds.
  it('count its scans, listPaths and next batches, and end it past txnBytesMax', async () => {
    const txn = await client.beginTransaction();
    let scans = 0;
    let refused: unknown;
    while (scans < 10_000) {
      try {
        expect(await txn.scan('tc/').toArray()).toHaveLength(3);
        if (scans === 0) expect((await client.stats()).transactions.bytes).toBeGreaterThan(160);
        scans += 1;
      } catch (error) {
        refused = error;
        break;
      }
    }
    expect(refused).toMatchObject({ code: 'TXN_TOO_LARGE' });
    expect(scans).toBeGreaterThan(100); // ~65536 / (160 + 2 × 3) bytes a scan
    expect(scans).toBeLessThan(400);
    await expect(txn.listPath('tc')).rejects.toMatchObject({ code: 'NOT_IN_TRANSACTION' });
    let stats = await client.stats();
    expect(stats.transactions).toMatchObject({ active: 0, bytes: 0 });

    // listPath counts too, and a cursor's next batch that passes the bound ends the
    // transaction and frees the cursor's slot.
    const other = await client.beginTransaction();
    await other.listPath('tc');
    expect((await client.stats()).transactions.bytes).toBeGreaterThan(160);
    const cursor = other.scan('tc/', { batchSize: 1 })[Symbol.asyncIterator]();
    expect((await cursor.next()).value?.[0].toString()).toBe('tc/1');
    // Point reads of four-byte keys (160 + 4 bytes each) up to less than one more range read:
    // the next batch's, after `tc/1` and before the prefix's end `tc0` (160 + 4 + 3 bytes).
    const room = TXN_BYTES.txnBytesMax - (await client.stats()).transactions.bytes;
    await other.getBatch(Array.from({ length: Math.floor(room / 164) }, (_, i) => `k${String(i).padStart(3, '0')}`));
    await expect(cursor.next()).rejects.toMatchObject({ code: 'TXN_TOO_LARGE' });
    stats = await client.stats();
    expect(stats.transactions).toMatchObject({ active: 0, bytes: 0 });
    expect(stats.cursors.open).toBe(0);
    await expect(other.get('tc/1')).rejects.toMatchObject({ code: 'NOT_IN_TRANSACTION' });
    // Both cursor slots are free (cursorsPerConnectionMax 2): two open scans fit.
    const open = [client.scan('tc/', { batchSize: 1 })[Symbol.asyncIterator](), client.scan('tc/', { batchSize: 1 })[Symbol.asyncIterator]()];
    for (const scan of open) expect((await scan.next()).done).toBe(false);
    for (const scan of open) await scan.return?.();
  });

  it('are closed, and their slots freed, when it expires idle', async () => {
    const txn = await client.beginTransaction();
    await openScan(txn);
    await openScan(txn);
    await expect(client.scan('tc/').toArray()).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED' });
    await expect.poll(async () => (await client.stats()).cursors.open, { timeout: 5_000 }).toBe(0);
    await expect(txn.get('tc/1')).rejects.toMatchObject({ code: 'TXN_EXPIRED' });
    expect(await client.scan('tc/').toArray()).toHaveLength(3);
  });
});

// Open transactions of all connections together hold at most txnBytesDaemonMax: before it, 64
// transactions per connection of up to txnBytesMax each, × 1024 connections, could hold 4 TiB.
describe('the bytes all open transactions hold together', () => {
  /** Each transaction may hold 64 KiB; all of them together 160 KiB: two full ones and a half. */
  const LIMITS = { txnBytesMax: 65_536, txnBytesDaemonMax: 163_840, batchBytesMax: 65_536, valueBytesMax: 32_768 };
  let daemon: TestDaemon;
  let clients: IpcClient[];

  beforeAll(async () => {
    daemon = await startDaemon({ config: { limits: LIMITS } });
    clients = await Promise.all([0, 1, 2].map(() => IpcClient.connect(daemon.socketPath)));
  });
  afterAll(async () => {
    await Promise.all((clients ?? []).map((c) => c.close()));
    await daemon?.dispose();
  });

  /** 60 KiB of writes in `txn`: two values of 30 KiB (under valueBytesMax). */
  async function fill(txn: Transaction, prefix: string): Promise<void> {
    await txn.put(`${prefix}/a`, Buffer.alloc(30_000, 1));
    await txn.put(`${prefix}/b`, Buffer.alloc(30_000, 2));
  }

  it('are bounded across connections: the write past the bound gets LIMIT_EXCEEDED and aborts its transaction', async () => {
    const [a, b, c] = clients;
    const ta = await a.beginTransaction();
    const tb = await b.beginTransaction({ isolation: 'snapshot' });
    const tc = await c.beginTransaction();
    await fill(ta, 'dw/a');
    await fill(tb, 'dw/b');
    const held = (await a.stats()).transactions.bytes;
    expect(held).toBeGreaterThanOrEqual(120_000);
    expect(held).toBeLessThanOrEqual(LIMITS.txnBytesDaemonMax);
    await tc.put('dw/c/a', Buffer.alloc(30_000, 3));
    const refused = tc.put('dw/c/b', Buffer.alloc(30_000, 4));
    await expect(refused).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED' });
    // The daemon no longer has it (NOT_IN_TRANSACTION); the client says why.
    await expect(tc.commit()).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED', message: expect.stringMatching(/was aborted, not committed/) });
    const stats = await c.stats();
    expect(stats.transactions.bytes).toBe(held);
    expect(stats.transactions.active).toBe(2);

    // A commit, an abort and a closed connection give their bytes back.
    await ta.commit();
    await tb.abort();
    expect((await a.stats()).transactions.bytes).toBe(0);
    const again = await c.withTransaction(async (txn) => {
      await fill(txn, 'dw/c');
      return txn.get('dw/c/a');
    });
    expect(again?.length).toBe(30_000);
    const abandoned = await b.beginTransaction();
    await fill(abandoned, 'dw/gone');
    expect((await a.stats()).transactions.bytes).toBeGreaterThan(0);
    await b.close();
    await expect.poll(async () => (await a.stats()).transactions.bytes, { timeout: 5_000 }).toBe(0);
    expect((await a.get('dw/a/a'))?.length).toBe(30_000);
    expect(await a.get('dw/gone/a')).toBeNull();
  });

  it('make withTransaction wait its turn: the attempt that meets the bound is aborted and run again once others finish', async () => {
    const [a, , c] = clients;
    const holder = await a.beginTransaction();
    await fill(holder, 'dw/h1');
    const second = await a.beginTransaction();
    await fill(second, 'dw/h2'); // 120 KB held: a third 60 KB transaction does not fit
    const met: string[] = [];
    const result = await c.withTransaction(async (txn) => {
      try {
        await fill(txn, 'dw/r');
      } catch (error) {
        met.push((error as { code: string }).code);
        if (met.length === 1) void holder.commit(); // the other work finishes meanwhile
        throw error;
      }
      return txn.get('dw/r/b');
    }, { retries: 8, backoffMs: 20 });
    expect(met[0]).toBe('LIMIT_EXCEEDED');
    expect(result?.length).toBe(30_000);
    expect((await c.get('dw/r/a'))?.length).toBe(30_000);
    await second.abort();
    expect((await a.stats()).transactions.bytes).toBe(0);
  });

  // Regression: a write left unawaited (as the README allows) that ended its transaction made
  // the commit fail with NOT_IN_TRANSACTION, which withTransaction does not retry, hiding the
  // write's LIMIT_EXCEEDED or TXN_TOO_LARGE.
  it('make the commit report a held limit an unawaited write met, which withTransaction retries', async () => {
    const [a, , c] = clients;
    const holder = await a.beginTransaction();
    await fill(holder, 'dw/u1');
    const second = await a.beginTransaction();
    await fill(second, 'dw/u2');
    let attempts = 0;
    const committed = c.withTransaction(async (txn) => {
      attempts += 1;
      void txn.put('dw/u/a', Buffer.alloc(30_000, 5));
      void txn.put('dw/u/b', Buffer.alloc(30_000, 6));
      if (attempts === 1) setTimeout(() => void holder.commit(), 50);
    }, { retries: 20, backoffMs: 20 });
    await expect(committed).resolves.toBeUndefined();
    expect(attempts).toBeGreaterThan(1);
    expect((await c.get('dw/u/b'))?.length).toBe(30_000);
    await second.abort();

    const tooLarge = await c.beginTransaction();
    for (const part of ['a', 'b', 'c']) void tooLarge.put(`dw/big/${part}`, Buffer.alloc(30_000, 7));
    await expect(tooLarge.commit()).rejects.toMatchObject({ code: 'TXN_TOO_LARGE' });
    expect(await c.get('dw/big/a')).toBeNull();
    // The alias answers as the transaction's own commit does (review: it said NOT_IN_TRANSACTION
    // once a request of the transaction had failed).
    const viaAlias = await c.beginTransaction();
    for (const part of ['a', 'b', 'c']) void viaAlias.put(`dw/big/${part}`, Buffer.alloc(30_000, 7));
    await viaAlias.get('dw/big/a').catch(() => undefined); // NOT_IN_TRANSACTION: ended by then
    await expect(c.commit(viaAlias.id)).rejects.toMatchObject({ code: 'TXN_TOO_LARGE' });
    expect((await a.stats()).transactions.bytes).toBe(0);
  });

  it('are refused at start when txnBytesDaemonMax is under txnBytesMax', async () => {
    await expect(startDaemon({ config: { limits: { txnBytesDaemonMax: 1_000, txnBytesMax: 65_536, batchBytesMax: 65_536, valueBytesMax: 32_768 } } }))
      .rejects.toThrow(/INVALID_ARGUMENT: limits do not fit together: one maximal transaction fits under the daemon-wide/);
  });
});
