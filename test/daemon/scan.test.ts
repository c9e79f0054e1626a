// Streamed scans: order, completeness, snapshot consistency across batches while others write,
// early termination freeing the daemon's cursor, reverse and range edges.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';

const key = (i: number) => `s/${String(i).padStart(5, '0')}`;

describe('scans', () => {
  let daemon: TestDaemon;
  let client: IpcClient;
  let writer: IpcClient;
  const total = 10_000;

  beforeAll(async () => {
    daemon = await startDaemon();
    client = await IpcClient.connect(daemon.socketPath);
    writer = await IpcClient.connect(daemon.socketPath);
    for (let start = 0; start < total; start += 1000) {
      await client.putBatch(Array.from({ length: 1000 }, (_, j) => [key(start + j), `v${start + j}`] as [string, string]));
    }
  });
  afterAll(async () => {
    await client?.close();
    await writer?.close();
    await daemon?.dispose();
  });

  it('returns 10k keys exactly once, in order, with a tiny batch size', async () => {
    let i = 0;
    for await (const [k, v] of client.scan('s/', { batchSize: 7 })) {
      expect(k.toString()).toBe(key(i));
      expect(v.toString()).toBe(`v${i}`);
      i++;
    }
    expect(i).toBe(total);
  });

  it('carries each entry expiry with withExpiry, in and out of a transaction, across batches', async () => {
    const before = Date.now();
    await writer.putBatch([['x/ttl/a', '1'], ['x/ttl/b', '2']], { ttlSeconds: 120 });
    await writer.put('x/ttl/c', '3');
    await writer.put('x/ttl/d', '4', { ttlSeconds: 0.001 });
    await new Promise((resolve) => setTimeout(resolve, 10));
    const plain = await client.scan('x/ttl/').toArray();
    expect(plain.map((entry) => entry.length)).toEqual([2, 2, 2]);
    const check = (entries: [Buffer, Buffer, (number | null)?][]) => {
      expect(entries.map(([k, v, at]) => [k.toString(), v.toString(), at === null ? null : typeof at])).toEqual([
        ['x/ttl/a', '1', 'number'], ['x/ttl/b', '2', 'number'], ['x/ttl/c', '3', null],
      ]);
      for (const [, , at] of entries.slice(0, 2)) {
        expect(at).toBeGreaterThanOrEqual(before + 120_000);
        expect(at).toBeLessThanOrEqual(Date.now() + 120_000);
      }
    };
    check(await client.scan('x/ttl/', { withExpiry: true, batchSize: 1 }).toArray());
    const txn = await client.beginTransaction();
    check(await txn.scan('x/ttl/', { withExpiry: true }).toArray());
    await txn.abort();
    await expect(client.scan('x/ttl/', { withExpiry: 'yes' as unknown as boolean }).toArray()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  // Its own copy of the keys (snap/), so its writes change nothing another test reads.
  it('is snapshot-consistent while another client writes into the range', async () => {
    const snap = (i: number) => `snap/${String(i).padStart(5, '0')}`;
    for (let start = 0; start < total; start += 1000) {
      await client.putBatch(Array.from({ length: 1000 }, (_, j) => [snap(start + j), `v${start + j}`] as [string, string]));
    }
    let i = 0;
    let writes = 0;
    for await (const [k, v] of client.scan('snap/', { batchSize: 13 })) {
      expect(k.toString()).toBe(snap(i));
      expect(v.toString()).toBe(`v${i}`);
      if (i % 500 === 0) {
        // Inserts before and after the cursor, overwrites and deletes ahead of it.
        await writer.putBatch([[`snap/${String(i).padStart(5, '0')}x`, 'new'], [snap(total - 1 - (i % 1000)), 'changed']]);
        await writer.delete(snap(Math.min(total - 1, i + 100)));
        writes++;
      }
      i++;
    }
    expect(i).toBe(total);
    expect(writes).toBe(total / 500);
    // The writes did land: a new scan sees them.
    const after = new Map((await client.scan('snap/').toArray()).map(([k, v]) => [k.toString(), v.toString()]));
    expect(after.get('snap/00000x')).toBe('new');
    expect(after.has(snap(100))).toBe(false);
    expect(after.get(snap(total - 1))).toBe('changed');
  });

  it('frees the daemon cursor when the consumer breaks out early', async () => {
    let n = 0;
    for await (const _ of client.scan('s/', { batchSize: 10 })) {
      if (++n === 25) break;
    }
    expect(n).toBe(25);
    await expect.poll(async () => (await client.stats()).cursors.open, { timeout: 2_000 }).toBe(0);
  });

  // Review: the first next() went through a microtask (and the client's open through another)
  // before its `scan` was sent, so a write called right after it in the same tick reached the
  // daemon first and showed in the scan's snapshot.
  it('sends a scan in call order with the calls made beside it', async () => {
    await client.put('ord/a', '1');
    const scanned = client.scan('ord/').toArray();
    const put = client.put('ord/b', '2');
    expect((await scanned).map(([k]) => k.toString())).toEqual(['ord/a']);
    await put;
    const txn = await client.beginTransaction();
    const inTxn = txn.scan('ord/').toArray();
    void txn.put('ord/c', '3');
    expect((await inTxn).map(([k]) => k.toString())).toEqual(['ord/a', 'ord/b']);
    await txn.commit();
  });

  // Review: iterators dropped without break or return() kept their cursors open until the daemon
  // expired them (cursorIdleMsMax, 60 s): 64 of them took every cursor slot of the connection.
  it('closes the cursor of an iterator dropped with it open, once it is collected', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const openBefore = (await client.stats()).cursors.open;
    await (async () => {
      for (let i = 0; i < 5; i++) {
        const iterator = client.scan('s/', { batchSize: 10 })[Symbol.asyncIterator]();
        await iterator.next(); // opened, one entry taken, then dropped
      }
    })();
    expect((await client.stats()).cursors.open).toBe(openBefore + 5);
    await expect.poll(async () => {
      gc();
      await new Promise((resolve) => setImmediate(resolve));
      return (await client.stats()).cursors.open;
    }, { timeout: 10_000 }).toBe(openBefore);
  });

  it('honours limit, reverse and [start, end) range edges', async () => {
    await client.putBatch([['r/a', '1'], ['r/b', '2'], ['r/c', '3'], ['r/d', '4']]);
    const keys = async (it: AsyncIterable<[Buffer, Buffer]>) => {
      const out: string[] = [];
      for await (const [k] of it) out.push(k.toString());
      return out;
    };
    expect(await keys(client.scanRange('r/b', 'r/d'))).toEqual(['r/b', 'r/c']);
    expect(await keys(client.scanRange('r/b', 'r/d', { reverse: true }))).toEqual(['r/c', 'r/b']);
    expect(await keys(client.scanRange('r/a', 'r/a'))).toEqual([]);
    expect(await keys(client.scan('r/', { reverse: true, limit: 3 }))).toEqual(['r/d', 'r/c', 'r/b']);
    expect(await keys(client.scan('r/', { limit: 2, batchSize: 1 }))).toEqual(['r/a', 'r/b']);
    expect(await keys(client.scan('nothing-here/'))).toEqual([]);
  });

  it('scans binary prefixes including 0xff edges', async () => {
    await client.putBatch([[Buffer.from([0xff]), 'a'], [Buffer.from([0xff, 0xff]), 'b'], [Buffer.from([0xff, 0x00]), 'c']]);
    const found = await client.scan(Buffer.from([0xff])).toArray();
    expect(found.map(([k]) => k.toString('hex'))).toEqual(['ff', 'ff00', 'ffff']);
  });

  it('sends batches of hundreds of KB intact, forwards and in reverse', async () => {
    // 1000 entries of 300 bytes per batch: ~310 KB replies, written corked rather than
    // coalesced (WRITE_COALESCE_BYTES_MAX), and read by the client across many socket reads.
    const value = (i: number) => Buffer.alloc(300, i % 251);
    const bigKey = (i: number) => `big/${String(i).padStart(5, '0')}`;
    const count = 3_500;
    for (let start = 0; start < count; start += 500) {
      await writer.putBatch(Array.from({ length: 500 }, (_, j) => [bigKey(start + j), value(start + j)] as [string, Buffer]));
    }
    for (const reverse of [false, true]) {
      let seen = 0;
      for await (const [k, v] of client.scan('big/', { batchSize: 1000, reverse })) {
        const i = reverse ? count - 1 - seen : seen;
        expect(k.toString()).toBe(bigKey(i));
        expect(v.equals(value(i))).toBe(true);
        seen++;
      }
      expect(seen).toBe(count);
    }
    // A getBatch reply of ~300 KB, with missing keys among the values.
    const keys = Array.from({ length: 1000 }, (_, i) => (i % 10 === 9 ? 'big/missing' : bigKey(i * 3)));
    const values = await client.getBatch(keys);
    values.forEach((v, i) => expect(i % 10 === 9 ? v : v?.equals(value(i * 3))).toBe(i % 10 === 9 ? null : true));
  });
});
