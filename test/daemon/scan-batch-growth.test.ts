// Scan batch sizes as a client sees them on the wire: a scan that names no batchSize starts
// with SCAN_BATCH_ITEMS_DEFAULT entries and doubles each batch up to SCAN_BATCH_ITEMS_GROWN_MAX,
// never past the daemon's configured scanBatchItemsMax (a lowered one used to be passed by the
// default first batch of 256); a scan that names one gets exactly that size every time.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { SCAN_BATCH_ITEMS_DEFAULT, SCAN_BATCH_ITEMS_GROWN_MAX } from '../../protocol/limits.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { RawPeer } from '../helpers/raw.js';

const KEYS = 20_000;
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

/** Doubling batches from `first` up to `max`, covering `total` entries. */
function doubling(first: number, max: number, total: number): number[] {
  const sizes: number[] = [];
  let size = first;
  for (let left = total; left > 0; left -= sizes.at(-1)!) {
    sizes.push(Math.min(size, left));
    size = Math.min(size * 2, max);
  }
  return sizes;
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

  it('grow from the default first batch, doubling, to the grown maximum when no batchSize is named', async () => {
    const sizes = await batchSizes(daemon.socketPath);
    expect(sizes).toEqual(doubling(SCAN_BATCH_ITEMS_DEFAULT, SCAN_BATCH_ITEMS_GROWN_MAX, KEYS));
    expect(sizes[0]).toBe(256);
    expect(Math.max(...sizes)).toBe(8192);
  });

  it('stay at a named batchSize', async () => {
    expect(await batchSizes(daemon.socketPath, 3000)).toEqual([3000, 3000, 3000, 3000, 3000, 3000, 2000]);
  });

  it('never pass a lowered scanBatchItemsMax, the first batch included', async () => {
    expect(await batchSizes(lowered.socketPath)).toEqual(doubling(256, 1000, KEYS));
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
