// Disk full: the daemon's data dir sits on a small tmpfs; after some acknowledged writes a filler
// file takes all but SLACK of the free space, and writes go on (from 1 or 16 concurrent loops)
// until one fails. Checked:
//   - the write that hits the full disk fails with DISK_FULL (tmpfs has no fsync that could
//     fail instead), any other failing with it STORAGE_FAILED, and the daemon stays up;
//   - from then on every write is refused with STORAGE_FAILED, also once the filler is deleted
//     and there is space again, until the daemon restarts (README, Guarantees: Disk full; a
//     journal that failed a write is not trusted again);
//   - reads of acknowledged keys keep working while the disk is full (README);
//   - after a restart every acknowledged write is there with its exact value, and writes work.
// Run in sync mode (replies wait for the journal fsync, so failures pass the durability gate)
// and interval mode. The fjall journal is set_len() to 64 MiB but sparse, so a 16 MiB tmpfs is
// enough to start. Needs root (mount -t tmpfs); skipped with a message otherwise. Unmounts in
// afterAll.
//
// Knob: TOONDB_DISK_FULL_MB (tmpfs size, default 16).
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmdirSync, statfsSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IpcClient } from '../../ipc-client/index.js';
import { createDaemon, type TestDaemon } from '../helpers/daemon.js';

const MOUNT_MB = Number(process.env.TOONDB_DISK_FULL_MB ?? 16);
const SLACK_BYTES = 256 * 1024;
const VALUE = 'f'.repeat(1000);
const WRITES_MAX = 20_000;
const FAIL_CODES = ['DISK_FULL', 'STORAGE_FAILED'];

const mounted = new Set<string>();

function mountTmpfs(sizeMb: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'tdb-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m,mode=0700`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (error) {
    rmdirSync(dir);
    throw error;
  }
  mounted.add(dir);
  return dir;
}

function unmount(dir: string): void {
  if (!mounted.has(dir)) return;
  try {
    execFileSync('umount', [dir], { stdio: 'pipe' });
  } catch {
    execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
  }
  mounted.delete(dir);
  rmdirSync(dir);
}

/** Why this machine cannot run the test, or null if it can. */
const skipReason: string | null = (() => {
  if (process.platform !== 'linux') return 'not Linux';
  if (process.getuid?.() !== 0) return 'not running as root (needs mount -t tmpfs)';
  try {
    unmount(mountTmpfs(1));
    return null;
  } catch (error) {
    return `mount -t tmpfs failed: ${(error as Error).message.split('\n')[0]}`;
  }
})();
if (skipReason) console.log(`disk-full test SKIPPED: ${skipReason}`);

// Where the machine is meant to run it (.ci/run sets this when it can mount a tmpfs), a skip
// is a failure.
describe.runIf(skipReason !== null && process.env.TOONDB_REQUIRE_TMPFS_TESTS === '1')('disk full (required here)', () => {
  it('can mount a tmpfs', () => {
    throw new Error(`TOONDB_REQUIRE_TMPFS_TESTS=1 but the disk-full test cannot run: ${skipReason}`);
  });
});

/** Takes all but `slack` bytes of the free space of the file system holding `dir`. */
function fill(dir: string, slack: number): string {
  const path = join(dir, 'filler');
  const stats = statfsSync(dir);
  const bytes = stats.bavail * stats.bsize - slack;
  try {
    execFileSync('fallocate', ['-l', String(bytes), path], { stdio: 'pipe' });
  } catch {
    const fd = openSync(path, 'w');
    const chunk = Buffer.alloc(1024 * 1024);
    try {
      for (let done = 0; done < bytes; done += chunk.length) writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - done));
    } finally {
      closeSync(fd);
    }
  }
  return path;
}

const codeOf = (error: unknown) => (error as { code?: string }).code ?? String(error);

interface Filled {
  daemon: TestDaemon;
  client: IpcClient;
  mount: string;
  filler: string;
  acked: Map<string, string>;
  firstFailure: string;
  /** The code each loop stopped at (one failure per loop). */
  failures: string[];
  writesBeforeFailure: number;
  /** Keys whose write failed with a definite code (DISK_FULL / STORAGE_FAILED): never applied. */
  refused: string[];
}

/**
 * A daemon on a fresh tmpfs with acknowledged writes, written until the disk is full by
 * `writers` concurrent loops (each stops at its first failure).
 */
async function fillUp(durability: string, writers = 1): Promise<Filled> {
  const mount = mountTmpfs(MOUNT_MB);
  const daemon = createDaemon({ dataDir: join(mount, 'data'), args: ['--durability', durability] });
  try {
    return await fillDaemon(daemon, mount, writers);
  } catch (error) {
    await daemon.dispose();
    unmount(mount);
    throw error;
  }
}

async function fillDaemon(daemon: TestDaemon, mount: string, writers: number): Promise<Filled> {
  await daemon.start();
  const client = await IpcClient.connect(daemon.socketPath, { timeoutMs: 10_000 });
  const acked = new Map<string, string>();
  for (let i = 0; i < 50; i++) {
    await client.put(`pre/${i}`, `v${i}`);
    acked.set(`pre/${i}`, `v${i}`);
  }
  const filler = fill(mount, SLACK_BYTES);
  let firstFailure = '';
  const failures: string[] = [];
  const refused: string[] = [];
  let next = 0;
  const loop = async () => {
    while (next < WRITES_MAX && !firstFailure) {
      const i = next++;
      const value = `${VALUE}${i}`;
      try {
        await client.put(`fill/${i}`, value);
        acked.set(`fill/${i}`, value);
      } catch (error) {
        firstFailure ||= codeOf(error);
        failures.push(codeOf(error));
        if (FAIL_CODES.includes(codeOf(error))) refused.push(`fill/${i}`);
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: writers }, loop));
  expect(firstFailure, `no write failed after ${WRITES_MAX} writes into ${SLACK_BYTES} bytes of space`).not.toBe('');
  return { daemon, client, mount, filler, acked, firstFailure, failures, writesBeforeFailure: acked.size - 50, refused };
}

async function verifyAll(client: IpcClient, acked: Map<string, string>): Promise<string[]> {
  const keys = [...acked.keys()];
  const wrong: string[] = [];
  for (let i = 0; i < keys.length; i += 100) {
    const chunk = keys.slice(i, i + 100);
    const values = await client.getBatch(chunk);
    chunk.forEach((key, j) => {
      if (values[j]?.toString() !== acked.get(key)) wrong.push(key);
    });
  }
  return wrong;
}

describe.skipIf(skipReason !== null)('disk full', () => {
  afterAll(() => {
    for (const dir of [...mounted]) unmount(dir);
  });

  it.each([['sync', 1], ['sync', 16], ['interval', 1]])('durability %s, %i writers: coded failures, daemon stays up, every acknowledged write survives a restart', async (durability, writers) => {
    const { daemon, client, mount, filler, acked, firstFailure, failures, writesBeforeFailure, refused } = await fillUp(durability, writers);
    const notes: string[] = [`first failure after ${writesBeforeFailure} writes: ${firstFailure} (loops stopped at: ${[...new Set(failures)].join(', ')})`];
    try {
      // The write that hit the full disk got DISK_FULL; writes failing after it, STORAGE_FAILED.
      expect(failures, 'every failure is coded').toEqual(failures.filter((code) => FAIL_CODES.includes(code)));
      expect(failures, 'the write that hit the full disk').toContain('DISK_FULL');
      // The daemon is up and answers.
      expect(() => process.kill(daemon.pid!, 0)).not.toThrow();
      await client.ping();
      let again = '';
      await client.put('while-full', 'x').then(() => (again = 'accepted'), (error) => (again = codeOf(error)));
      notes.push(`next write while full: ${again}`);
      expect(again, 'after a failed journal write every write is refused with STORAGE_FAILED').toBe('STORAGE_FAILED');
      refused.push('while-full');

      // One loud line (fatal), not one per failing request (counted again once the daemon
      // has exited and all its output has been read).
      await expect.poll(() => daemon.storageAlarms().length, { timeout: 5_000, message: 'a failed journal write must be logged at fatal level' }).toBe(1);

      // Reads while full: every acknowledged key, with its value.
      const reads = await verifyAll(client, acked).then((wrong) => (wrong.length ? `${wrong.length} wrong` : 'ok'), codeOf);
      notes.push(`reads while full: ${reads}`);
      expect(reads, 'reads of acknowledged keys must keep working while the disk is full').toBe('ok');

      unlinkSync(filler);
      let afterFree = '';
      await client.put('after-free', 'y').then(() => (afterFree = 'accepted'), (error) => (afterFree = codeOf(error)));
      notes.push(`write after freeing space: ${afterFree}`);
      expect(afterFree, 'a poisoned engine refuses writes with STORAGE_FAILED until restart, space or not').toBe('STORAGE_FAILED');
      refused.push('after-free');
      expect(await client.get('after-free'), 'a refused write is not visible').toBeNull();
      await client.close();

      const exit = await daemon.stop();
      const failedSteps = daemon.logs.filter((l) => l.msg === 'shutdown step failed').map((l) => `${String(l.step)}: ${String((l.err as { code?: string })?.code)}`);
      notes.push(`graceful stop exit ${exit}${failedSteps.length ? ` (failed steps: ${failedSteps.join(', ')})` : ''}`);
      expect(exit, 'a stop after a storage failure must not report success to the service manager').toBe(1);
      expect(daemon.storageAlarms(), 'a failed journal write must be logged at fatal level, once').toHaveLength(1);
      await daemon.start();
      const fresh = await IpcClient.connect(daemon.socketPath);
      expect(await verifyAll(fresh, acked), 'acknowledged writes missing or wrong after restart').toEqual([]);
      // A write refused with DISK_FULL / STORAGE_FAILED applied nothing, even once space is back.
      const reappeared = (await fresh.getBatch(refused)).flatMap((value, i) => (value === null ? [] : [refused[i]]));
      notes.push(`refused writes absent after restart: ${refused.length - reappeared.length} of ${refused.length}`);
      expect(reappeared, 'writes that failed with a definite storage error reappeared after restart').toEqual([]);
      await fresh.put('after-restart', 'z');
      expect((await fresh.get('after-restart'))?.toString()).toBe('z');
      await fresh.close();
      notes.push(`after restart: all ${acked.size} acknowledged writes present, writes work`);
    } finally {
      console.log(`disk full (durability ${durability}, ${writers} writers): ${notes.join('; ')}`);
      await client.close().catch(() => undefined);
      await daemon.dispose();
      unmount(mount);
    }
  });
});
