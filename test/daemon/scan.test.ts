// Streamed scans: order, completeness, snapshot consistency across batches while others write,
// early termination freeing the daemon's cursor, reverse and range edges.
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

  it('is snapshot-consistent while another client writes into the range', async () => {
    let i = 0;
    let writes = 0;
    for await (const [k, v] of client.scan('s/', { batchSize: 13 })) {
      expect(k.toString()).toBe(key(i));
      expect(v.toString()).toBe(`v${i}`);
      if (i % 500 === 0) {
        // Inserts before and after the cursor, overwrites and deletes ahead of it.
        await writer.putBatch([[`s/${String(i).padStart(5, '0')}x`, 'new'], [key(total - 1 - (i % 1000)), 'changed']]);
        await writer.delete(key(Math.min(total - 1, i + 100)));
        writes++;
      }
      i++;
    }
    expect(i).toBe(total);
    expect(writes).toBe(total / 500);
    // The writes did land: a new scan sees them.
    const after = new Map((await client.scan('s/').toArray()).map(([k, v]) => [k.toString(), v.toString()]));
    expect(after.get('s/00000x')).toBe('new');
    expect(after.has(key(100))).toBe(false);
    expect(after.get(key(total - 1))).toBe('changed');
  });

  it('frees the daemon cursor when the consumer breaks out early', async () => {
    let n = 0;
    for await (const _ of client.scan('s/', { batchSize: 10 })) {
      if (++n === 25) break;
    }
    expect(n).toBe(25);
    await expect.poll(async () => (await client.stats()).cursors.open, { timeout: 2_000 }).toBe(0);
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
});
