// Streamed scans under read-ahead while a writer moves money: many concurrent multi-batch scans
// (random batch sizes, or none so that batches grow from 256 as they are answered; both
// directions; several per connection so the per-connection read-ahead budget is contended) over
// 3000 accounts whose total never changes. Every scan that runs to the
// end sees each account exactly once, in order, summing to the total (one snapshot, even though
// the daemon read its batches ahead); scans broken off early and connections dropped mid-scan
// leave no cursor behind. Knobs: TOONDB_SCAN_STRESS_SCANS (default 40), TOONDB_SCAN_STRESS_SEED.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';

const SCANS = Number(process.env.TOONDB_SCAN_STRESS_SCANS ?? 40);
const SEED = seedFrom('TOONDB_SCAN_STRESS_SEED');
const ACCOUNTS = 3000;
const INITIAL = 100;
const TOTAL = ACCOUNTS * INITIAL;
const CONCURRENT_SCANS = 6;
const account = (i: number) => `sa/${String(i).padStart(4, '0')}`;

describe('scan stress: read-ahead scans stay snapshot-consistent and leak no cursor', () => {
  let daemon: TestDaemon;
  beforeAll(async () => {
    console.log(`scan stress: TOONDB_SCAN_STRESS_SCANS=${SCANS} TOONDB_SCAN_STRESS_SEED=${SEED}`);
    daemon = await startDaemon();
  });
  afterAll(async () => {
    await daemon?.dispose();
  });

  it(`${SCANS} scans against a moving total`, async () => {
    const random = mulberry32(SEED);
    const int = (n: number) => Math.floor(random() * n);
    const writer = await IpcClient.connect(daemon.socketPath);
    const balances = Array.from({ length: ACCOUNTS }, () => INITIAL);
    for (let i = 0; i < ACCOUNTS; i += 1000) {
      await writer.putBatch(balances.slice(i, i + 1000).map((b, j) => [account(i + j), String(b)] as [string, string]));
    }
    const before = (await writer.stats()).cursors.readAhead;

    // The only writer, so it knows every balance: each commit moves money between two accounts
    // in one atomic putBatch, and the total stays the same at every commit.
    let writing = true;
    let commits = 0;
    const writes = (async () => {
      while (writing) {
        const from = int(ACCOUNTS);
        const to = (from + 1 + int(ACCOUNTS - 1)) % ACCOUNTS;
        const amount = Math.min(balances[from], 1 + int(10));
        balances[from] -= amount;
        balances[to] += amount;
        await writer.putBatch([[account(from), String(balances[from])], [account(to), String(balances[to])]]);
        commits++;
      }
    })();

    const readers = [await IpcClient.connect(daemon.socketPath), await IpcClient.connect(daemon.socketPath)];
    let complete = 0;
    let brokenOff = 0;
    let dropped = 0;
    const scanOnce = async (n: number) => {
      // A quarter name no batchSize: their batches grow (256, 512, ... up to 8192).
      const batchSize = int(4) === 0 ? undefined : 1 + int(97);
      const reverse = int(2) === 0;
      const fate = int(10); // 0: drop the connection mid-scan, 1-2: break off early, else run to the end
      const client = fate === 0 ? await IpcClient.connect(daemon.socketPath) : readers[n % readers.length];
      const stopAt = fate <= 2 ? 1 + int(ACCOUNTS - 1) : ACCOUNTS + 1;
      let seen = 0;
      let sum = 0;
      let previous: string | null = null;
      for await (const [key, value] of client.scan('sa/', batchSize === undefined ? { reverse } : { batchSize, reverse })) {
        const name = key.toString();
        if (previous !== null) expect(reverse ? name < previous : name > previous, `scan ${n}: ${previous} then ${name}`).toBe(true);
        previous = name;
        sum += Number(value.toString());
        if (++seen === stopAt) break;
      }
      if (fate === 0) {
        await client.close();
        dropped++;
      } else if (fate <= 2) {
        brokenOff++;
      } else {
        expect(seen, `scan ${n} (batchSize ${batchSize}) saw every account once`).toBe(ACCOUNTS);
        expect(sum, `scan ${n} (batchSize ${batchSize}, reverse ${reverse}) summed one snapshot`).toBe(TOTAL);
        complete++;
      }
    };
    let next = 0;
    await Promise.all(Array.from({ length: CONCURRENT_SCANS }, async () => {
      while (next < SCANS) await scanOnce(next++);
    }));
    writing = false;
    await writes;

    const stats = await writer.stats();
    console.log(`scan stress: ${complete} complete, ${brokenOff} broken off, ${dropped} dropped; ${commits} commits; ` +
      `${stats.cursors.readAhead - before} batches read ahead`);
    expect(complete).toBeGreaterThan(0);
    expect(commits).toBeGreaterThan(0);
    expect(stats.cursors.readAhead - before, 'multi-batch scans were read ahead').toBeGreaterThan(0);
    await expect.poll(async () => (await writer.stats()).cursors.open, { timeout: 5_000 }).toBe(0);
    await expect.poll(async () => (await writer.stats()).cursors.readAheadBytes, { timeout: 5_000 }).toBe(0);
    const final = await writer.scan('sa/').toArray();
    expect(final.reduce((total, [, value]) => total + Number(value.toString()), 0)).toBe(TOTAL);
    for (const reader of readers) await reader.close();
    await writer.close();
  });
});
