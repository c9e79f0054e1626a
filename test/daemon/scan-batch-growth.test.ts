// Scan batch sizes as a client sees them on the wire: a scan that names no batchSize starts
// with SCAN_BATCH_ITEMS_DEFAULT entries and grows, batch n holding at most
// min(256 * 2^n, SCAN_BATCH_ITEMS_GROWN_MAX) entries, never past the daemon's configured
// scanBatchItemsMax (a lowered one used to be passed by the default first batch of 256); growth
// follows the batches answered, so a scan left after its first batch has not had ~8k entries
// read ahead; a scan that names a batchSize gets exactly that size every time.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { SCAN_BATCH_ITEMS_DEFAULT, SCAN_BATCH_ITEMS_GROWN_MAX } from '../../protocol/limits.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { RawPeer } from '../helpers/raw.js';

// Enough that a scan reaches full 8192-entry batches however the reads ahead and the answers
// interleave (the sizes read depend on how many batches were answered when each read started).
const KEYS = 40_000;
const key = (i: number) => `g/${String(i).padStart(5, '0')}`;

/** The batch sizes of a whole raw scan of `g/` (batchSize absent when undefined). */
async function batchSizes(socketPath: string, batchSize?: number): Promise<number[]> {
  const peer = await RawPeer.open(socketPath);
  try {
    peer.hello();
    peer.request({ id: 2, op: 'scan', prefix: Buffer.from('g/'), ...(batchSize === undefined ? {} : { batchSize }) });
    const sizes: number[] = [];
    for (let id = 2; ; id++) {
      const reply = (await peer.waitFor(id))[id - 1] as { id: number; result?: { cursor: number; entries: unknown[]; done: boolean }; error?: unknown };
      expect(reply.error).toBeUndefined();
      const { cursor, entries, done } = reply.result!;
      sizes.push(entries.length);
      if (done) return sizes;
      peer.request({ id: id + 1, op: 'scanNext', cursor });
    }
  } finally {
    peer.close();
  }
}

/** Checks that batch n holds at most min(first * 2^n, max) entries and that they total KEYS. */
function expectGrowth(sizes: number[], first: number, max: number): void {
  expect(sizes[0]).toBe(first);
  sizes.forEach((size, n) => expect(size, `batch ${n} of ${sizes.join(', ')}`).toBeLessThanOrEqual(Math.min(first * 2 ** n, max)));
  expect(sizes.reduce((a, b) => a + b, 0)).toBe(KEYS);
}

async function load(socketPath: string): Promise<void> {
  const client = await IpcClient.connect(socketPath);
  try {
    for (let start = 0; start < KEYS; start += 1000) {
      await client.putBatch(Array.from({ length: 1000 }, (_, j) => [key(start + j), 'v'] as [string, string]));
    }
  } finally {
    await client.close();
  }
}

describe('scan batch sizes', () => {
  let daemon: TestDaemon;
  let lowered: TestDaemon;
  let tiny: TestDaemon;

  beforeAll(async () => {
    [daemon, lowered, tiny] = await Promise.all([
      startDaemon(),
      startDaemon({ config: { limits: { scanBatchItemsMax: 1000 } } }),
      startDaemon({ config: { limits: { scanBatchItemsMax: 100 } } }),
    ]);
    await Promise.all([daemon, lowered, tiny].map((d) => load(d.socketPath)));
  });
  afterAll(async () => {
    await Promise.all([daemon, lowered, tiny].map((d) => d?.dispose()));
  });

  it('grow from the default first batch, doubling at most, to the grown maximum when no batchSize is named', async () => {
    const sizes = await batchSizes(daemon.socketPath);
    expectGrowth(sizes, SCAN_BATCH_ITEMS_DEFAULT, SCAN_BATCH_ITEMS_GROWN_MAX);
    expect(SCAN_BATCH_ITEMS_DEFAULT).toBe(256);
    expect(Math.max(...sizes), sizes.join(', ')).toBe(8192);
    expect(sizes.length).toBeLessThan(20);
  });

  it('grow with the batches answered, not the batches read ahead', async () => {
    const stats = await IpcClient.connect(daemon.socketPath);
    const peer = await RawPeer.open(daemon.socketPath);
    try {
      peer.hello();
      peer.request({ id: 2, op: 'scan', prefix: Buffer.from('g/') });
      const first = (await peer.waitFor(2))[1] as { result: { entries: unknown[]; done: boolean } };
      expect(first.result.entries).toHaveLength(256);
      // The daemon reads up to four batches ahead, each at the size that follows one answered
      // batch (512 entries of 13 bytes here), not at 512, 1024, 2048 and 4096 entries. A read in
      // progress holds a whole scanBatchBytesMax; once all four are read, their sizes.
      const held = async () => (await stats.stats()).cursors.readAheadBytes;
      await expect.poll(held, { timeout: 5_000 }).toBe(4 * 512 * 13);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(await held()).toBe(4 * 512 * 13);
    } finally {
      peer.close();
      await stats.close();
    }
  });

  it('stay at a named batchSize', async () => {
    expect(await batchSizes(daemon.socketPath, 3000)).toEqual([...Array<number>(13).fill(3000), 1000]);
  });

  it('never pass a lowered scanBatchItemsMax, the first batch included', async () => {
    const loweredSizes = await batchSizes(lowered.socketPath);
    expectGrowth(loweredSizes, 256, 1000);
    expect(loweredSizes.filter((size) => size === 1000).length).toBeGreaterThan(10);
    const sizes = await batchSizes(tiny.socketPath);
    expect(sizes).toHaveLength(KEYS / 100);
    expect(sizes.every((size) => size === 100)).toBe(true);
  });

  it('stream every key once, in order, through the client', async () => {
    const client = await IpcClient.connect(daemon.socketPath);
    try {
      let seen = 0;
      for await (const [k] of client.scan('g/')) expect(k.toString()).toBe(key(seen++));
      expect(seen).toBe(KEYS);
    } finally {
      await client.close();
    }
  });
});
