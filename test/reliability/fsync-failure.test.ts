// A journal fsync that fails (a failing disk), injected with the engine's test failpoint
// TOONDB_FAILPOINT_FSYNC_AFTER: in `sync` mode no write whose fsync failed is acknowledged, the
// failure is one fatal log line however many requests fail, writes are refused from then on
// with STORAGE_FAILED, no read shows data that was never made durable, the daemon stays up and
// its stop reports the failure (exit 1), and after a restart every acknowledged write is there.
import { afterAll, describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { createDaemon, startDaemon, type TestDaemon } from '../helpers/daemon.js';

/** fsyncs that succeed before the injected failure (the first writes are acknowledged). */
const FSYNCS_BEFORE_FAILURE = 20;
const WRITERS = 8;

const codeOf = (error: unknown) => (error as { code?: string }).code ?? String(error);

describe('fsync failure', () => {
  const daemons: TestDaemon[] = [];
  afterAll(async () => {
    for (const daemon of daemons.reverse()) await daemon.dispose();
  });

  it('acknowledges nothing the failed fsync covered, alarms once, refuses writes, and loses nothing acknowledged', async () => {
    const daemon = await startDaemon({ env: { TOONDB_FAILPOINT_FSYNC_AFTER: String(FSYNCS_BEFORE_FAILURE) } });
    daemons.push(daemon);
    const client = await IpcClient.connect(daemon.socketPath);
    const acked = new Map<string, string>();
    const failures: string[] = [];
    // Writers loop until each has seen a failure: group commit makes several of them share the
    // fsync that fails.
    await Promise.all(Array.from({ length: WRITERS }, async (_, w) => {
      for (let i = 0; ; i++) {
        const key = `f/${w}/${i}`;
        try {
          await client.put(key, `v${i}`);
          acked.set(key, `v${i}`);
        } catch (error) {
          failures.push(codeOf(error));
          return;
        }
      }
    }));
    expect(acked.size, 'writes before the failpoint were acknowledged').toBeGreaterThan(0);
    expect(new Set(failures)).toEqual(new Set(['STORAGE_FAILED']));
    await expect(client.put('after', 'x')).rejects.toMatchObject({ code: 'STORAGE_FAILED' });
    await client.ping(); // the daemon is up

    await expect.poll(() => daemon.storageAlarms().length, { timeout: 5_000, message: 'the failed fsync is logged at fatal level' }).toBe(1);
    // Reads never show data no fsync covered: a read either answers from durable state or is
    // refused, and whatever it returns for an acknowledged key is its acknowledged value.
    let refusedReads = 0;
    for (const [key, value] of [...acked].slice(0, 20)) {
      const read = await client.get(key).then((v) => v?.toString() ?? null, codeOf);
      if (read === 'STORAGE_FAILED') refusedReads++;
      else expect(read).toBe(value);
    }
    console.log(`fsync failure: ${acked.size} writes acknowledged, ${failures.length} failed; ${refusedReads} of 20 reads refused`);
    await client.close();
    // Regression: the expired-key sweep, refused like every write, logged a warning each
    // second until restart. It stops once storage has failed.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    expect(daemon.logs.filter((line) => line.msg === 'expired-key sweep failed')).toEqual([]);

    expect(await daemon.stop(), 'a stop after a storage failure exits 1').toBe(1);
    expect(daemon.storageAlarms(), 'one fatal line, however many requests failed').toHaveLength(1);
    const restarted = createDaemon({ dataDir: daemon.dataDir });
    daemons.push(restarted);
    await restarted.start();
    const fresh = await IpcClient.connect(restarted.socketPath);
    const keys = [...acked.keys()];
    for (let start = 0; start < keys.length; start += 100) {
      const chunk = keys.slice(start, start + 100);
      const values = await fresh.getBatch(chunk);
      chunk.forEach((key, i) => expect(values[i]?.toString(), `acknowledged ${key}`).toBe(acked.get(key)));
    }
    await fresh.put('after-restart', 'ok');
    expect((await fresh.get('after-restart'))?.toString()).toBe('ok');
    await fresh.close();
  });
});
