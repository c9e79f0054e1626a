// A flood of connections under a low open-files limit must not take the descriptors the engine
// needs. Before the daemon shared the limit (daemon/descriptors.ts), `ulimit -n 128` and 103
// idle connections left a flush unable to create its table: fjall's worker ended, the store was
// poisoned, and every write failed with STORAGE_FAILED until restart, the connections long gone.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { descriptorBudget } from '../../daemon/descriptors.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { TOONDBD_BIN } from '../helpers/paths.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const OPEN_FILES_LIMIT = 256;
const FLOOD = 300;
const VALUE = Buffer.alloc(64 * 1024, 0x5a);
/** 24 MiB in batches of 16 values of 64 KiB: more than one 16 MiB data memtable, so a flush. */
const BATCHES = 24;
const key = (i: number) => `fd/${String(i).padStart(5, '0')}`;

describe.runIf(process.platform === 'linux')('a connection flood under a low open-files limit', () => {
  let daemon: TestDaemon;
  let good: IpcClient;
  const flood: IpcClient[] = [];

  beforeAll(async () => {
    daemon = await startDaemon({ openFilesLimit: OPEN_FILES_LIMIT, args: ['--durability', 'sync'] });
    good = await IpcClient.connect(daemon.socketPath);
  });
  afterAll(async () => {
    await Promise.all(flood.map((client) => client.close().catch(() => undefined)));
    await good?.close().catch(() => undefined);
    await daemon?.dispose();
  });

  it('refuses the connections past what the limit leaves, and the engine keeps its descriptors', async () => {
    const outcomes = await Promise.allSettled(Array.from({ length: FLOOD }, () => IpcClient.connect(daemon.socketPath, { connectTimeoutMs: 5_000 })));
    const codes = new Map<string, number>();
    for (const outcome of outcomes) {
      if (outcome.status === 'fulfilled') flood.push(outcome.value);
      else {
        const code = String((outcome.reason as { code?: unknown }).code);
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
    }
    const descriptorsHeld = readdirSync(`/proc/${daemon.pid}/fd`).length;

    // With every connection it may serve held, a writer still gets flushes and a checkpoint.
    for (let b = 0; b < BATCHES; b++) {
      await good.putBatch(Array.from({ length: 16 }, (_, i) => [key(b * 16 + i), VALUE] as const));
    }
    await good.checkpoint();
    await good.put('fd/after-checkpoint', 'ok');
    expect((await good.get(key(0)))?.equals(VALUE)).toBe(true);
    expect(daemon.storageAlarms()).toEqual([]);

    // The limit capped connectionsMax, said so at start, and the flood got coded refusals.
    const { connectionsLimit } = descriptorBudget(OPEN_FILES_LIMIT);
    const { connections } = await good.stats();
    expect(connections.max).toBe(connectionsLimit);
    expect(flood).toHaveLength(connectionsLimit - 1); // `good` is the other one
    expect(connections.refused).toBe(FLOOD - flood.length);
    // Refused while the daemon can still linger over a refusal: TOO_MANY_CONNECTIONS. Past the
    // sockets its limit leaves (a burst of connects), a connection is cut off at once, after the
    // same refusal is written; a client whose hello meets the closed socket before it reads that
    // sees the daemon hang up during the handshake (UNAVAILABLE). Nothing else.
    expect(codes.get('TOO_MANY_CONNECTIONS')).toBeGreaterThan(0);
    expect([...codes.keys()].filter((code) => code !== 'TOO_MANY_CONNECTIONS' && code !== 'UNAVAILABLE')).toEqual([]);
    expect(descriptorsHeld).toBeLessThan(OPEN_FILES_LIMIT);
    expect(daemon.logs.filter((line) => String(line.msg).startsWith('the open-files limit'))).toHaveLength(1);

    // What was acknowledged survives a crash.
    await daemon.kill();
    flood.length = 0; // their daemon is gone
    await good.close().catch(() => undefined);
    await daemon.start();
    good = await IpcClient.connect(daemon.socketPath);
    let found = 0;
    for (let b = 0; b < BATCHES; b++) {
      const values = await good.getBatch(Array.from({ length: 16 }, (_, i) => key(b * 16 + i)));
      found += values.filter((value) => value?.equals(VALUE)).length;
    }
    expect(found).toBe(BATCHES * 16);
    expect((await good.get('fd/after-checkpoint'))?.toString()).toBe('ok');
  }, 30_000);
});

describe.runIf(process.platform === 'linux')('an open-files limit too low to serve clients', () => {
  // Regression: the limit was checked after the data directory was made, so a refused start
  // left an empty data dir behind, unlike every other configuration error.
  it('is refused at start with exit 2, before the data dir is made', async () => {
    const dir = makeTempDir();
    const data = join(dir, 'data');
    const result = await execa('sh', ['-c', 'ulimit -n 120 && exec node "$0" start --socket "$1" --data-dir "$2"', TOONDBD_BIN, join(dir, 's.sock'), data],
      { reject: false, stdin: 'ignore', timeout: 30_000 });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/^toondbd: INVALID_ARGUMENT: the open-files limit \(RLIMIT_NOFILE\) is 120, below the 136/m);
    expect(existsSync(data), 'refused before the data dir was made').toBe(false);
  });
});
