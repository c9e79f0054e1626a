// Scans across a long run of expired keys the TTL sweep has not deleted yet. One engine batch
// read steps through at most SCAN_BATCH_STEPS_MAX entries (16384, engine/src/core/cursors.rs),
// so a batch inside such a run comes back short, even empty, with done false; whoever reads the
// cursor keeps asking until done and gets exactly the live keys, none skipped or repeated: a raw
// client, the daemon's read-ahead of snapshot cursors, the client's iterator (withExpiry too, as
// `toondb dump` reads), and a transaction's cursor.
//
// No clock is raced: every scan reads a snapshot taken before the keys expired (a scan's first
// batch, which ends on a live key, or a transaction's first read), so the keys stay in what it
// reads whatever the sweep deletes meanwhile; the test then waits out their TTL once.
import { beforeAll, describe, expect, it } from 'vitest';
import type { ScanEntry } from '../../ipc-client/index.js';
import { suiteClient } from '../helpers/daemon.js';
import { RawPeer } from '../helpers/raw.js';

/** Long enough for the 40k writes and the snapshots on a loaded 2-core host (1.5 s was not). */
const TTL_MS = 3_000;
/** Over twice the engine's 16384 steps per batch: a scan crosses at least one empty batch. */
const EXPIRING = 40_000;
const PUT_BATCH = 10_000;
/** Live keys before the run: more than a first batch of one, the four the daemon reads ahead
 * and the one the client prefetches, so nothing reads into the run before it expired. */
const LIVE_BEFORE = 10;
const LIVE_AFTER = 10;

const before = (i: number) => `x/a/${i}`;
const expiring = (i: number) => `x/e/${String(i).padStart(5, '0')}`;
const after = (i: number) => `x/z/${i}`;
const LIVE = [...Array.from({ length: LIVE_BEFORE }, (_, i) => before(i)), ...Array.from({ length: LIVE_AFTER }, (_, i) => after(i))];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const names = (entries: ScanEntry[]) => entries.map(([key]) => key.toString());

describe('a scan across a run of expired keys not yet swept', () => {
  const { daemon, client } = suiteClient();
  let writtenFromMs = 0;
  let writtenToMs = 0;

  beforeAll(async () => {
    await client().putBatch(LIVE.map((key) => [key, 'live'] as [string, string]));
    writtenFromMs = Date.now();
    for (let start = 0; start < EXPIRING; start += PUT_BATCH) {
      const batch = Array.from({ length: PUT_BATCH }, (_, j) => [expiring(start + j), 'gone'] as [string, string]);
      await client().putBatch(batch, { ttlSeconds: TTL_MS / 1000 });
    }
    writtenToMs = Date.now();
  });

  /** Fails a test whose snapshots were not all taken before the first key expired. */
  const snapshotsTakenInTime = () => {
    expect(Date.now(), 'snapshots taken before the run expired (a slow host: raise TTL_MS)').toBeLessThan(writtenFromMs + TTL_MS);
  };
  const runExpired = () => sleep(Math.max(0, writtenToMs + TTL_MS + 20 - Date.now()));

  it('gives every reader exactly the live keys, through short and empty batches that are not done', async () => {
    // A raw client, to see the batches: open in batches of one (the daemon reads four ahead).
    const peer = await RawPeer.open(daemon().socketPath);
    peer.hello();
    peer.request({ id: 2, op: 'scan', prefix: Buffer.from('x/'), batchSize: 1 });
    // The client's iterators, each with its first entry read: forward with expiry, reverse.
    const forward = client().scan('x/', { batchSize: 1, withExpiry: true })[Symbol.asyncIterator]();
    const reverse = client().scan('x/', { batchSize: 1, reverse: true })[Symbol.asyncIterator]();
    const firsts = [await forward.next(), await reverse.next()].map((result) => result.value as ScanEntry);
    // A transaction takes its snapshot at its first read.
    const txn = await client().beginTransaction({ isolation: 'snapshot' });
    expect(await txn.get('x/none')).toBeNull();
    const opened = (await peer.waitFor(2))[1].result as { cursor: number; entries: [Buffer, Buffer][]; done: boolean };
    snapshotsTakenInTime();
    await runExpired();
    expect(await client().get(expiring(0))).toBeNull();

    const batches: [number, boolean][] = [[opened.entries.length, opened.done]];
    const rawKeys = opened.entries.map(([key]) => key.toString());
    for (let id = 3; !batches.at(-1)![1]; id++) {
      peer.request({ id, op: 'scanNext', cursor: opened.cursor });
      const reply = (await peer.waitFor(id))[id - 1];
      expect(reply.error).toBeUndefined();
      const batch = reply.result as { entries: [Buffer, Buffer][]; done: boolean };
      batches.push([batch.entries.length, batch.done]);
      rawKeys.push(...batch.entries.map(([key]) => key.toString()));
    }
    expect(rawKeys).toEqual(LIVE);
    expect(batches, 'a batch within the run is empty and not done').toContainEqual([0, false]);
    peer.close();

    const forwardEntries = [firsts[0]];
    for (let next = await forward.next(); next.done !== true; next = await forward.next()) forwardEntries.push(next.value);
    expect(names(forwardEntries)).toEqual(LIVE);
    expect(forwardEntries.every((entry) => entry.length === 3 && entry[2] === null), 'triples, no TTL').toBe(true);
    const reverseEntries = [firsts[1]];
    for (let next = await reverse.next(); next.done !== true; next = await reverse.next()) reverseEntries.push(next.value);
    expect(names(reverseEntries)).toEqual([...LIVE].reverse());

    expect(names(await txn.scan('x/').toArray())).toEqual(LIVE);
    expect(names(await txn.scan('x/', { reverse: true, limit: LIVE_AFTER + 2, batchSize: 3 }).toArray())).toEqual([...LIVE].reverse().slice(0, LIVE_AFTER + 2));
    await txn.abort();

    await expect.poll(async () => (await client().stats()).cursors, { timeout: 5_000 }).toMatchObject({ open: 0, readAheadBytes: 0 });
  });
});
