// Single puts answered on the daemon's JS thread (engine.writeNow) across several memtable
// rotations, flushes and a journal seal, then SIGKILL and restart: every acknowledged value must
// come back byte for byte. Covers the hand-over around a full memtable: writeNow declines near
// the rotation size and while fjall flushes or compacts (store.rs `writes_may_wait`), the lane
// rotates the memtable itself, and nothing acknowledged is lost on either path.
import { describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { suiteDaemon } from '../helpers/daemon.js';

const MiB = 1024 * 1024;
/** Data memtable size (engine/src/core/store.rs DATA_MEMTABLE_BYTES). */
const MEMTABLE_BYTES = 16 * MiB;
const VALUE_BYTES = 64 * 1024;
/** Enough single puts to fill the memtable five times over (and pass fjall's 64 MB journal seal). */
const PUTS = (5 * MEMTABLE_BYTES) / VALUE_BYTES;
const READ_BATCH_KEYS = 16;

const keyOf = (i: number) => `rot/${String(i).padStart(5, '0')}`;
const valueOf = (i: number) => Buffer.alloc(VALUE_BYTES, i % 251);

describe('single puts across memtable rotations', () => {
  const daemon = suiteDaemon();

  it('keeps every acknowledged value through rotations, flushes and a SIGKILL', async () => {
    const client = await IpcClient.connect(daemon().socketPath);
    // One in flight: each put arrives alone, so the daemon offers it to writeNow.
    for (let i = 0; i < PUTS; i++) await client.put(keyOf(i), valueOf(i));

    // fjall flushed the rotated memtables: what stays in memory is about one memtable, not the
    // 80 MiB written.
    const deadline = Date.now() + 20_000;
    let stats = await client.stats();
    while (stats.engine.writeBufferBytes > MEMTABLE_BYTES + 2 * MiB && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      stats = await client.stats();
    }
    expect(stats.engine.writeBufferBytes).toBeLessThanOrEqual(MEMTABLE_BYTES + 2 * MiB);
    await client.close();

    await daemon().kill();
    await daemon().start();
    const reader = await IpcClient.connect(daemon().socketPath);
    try {
      for (let first = 0; first < PUTS; first += READ_BATCH_KEYS) {
        const indexes = Array.from({ length: Math.min(READ_BATCH_KEYS, PUTS - first) }, (_, k) => first + k);
        const values = await reader.getBatch(indexes.map(keyOf));
        indexes.forEach((i, k) => {
          if (!values[k]?.equals(valueOf(i))) expect.fail(`${keyOf(i)} lost or wrong after SIGKILL and restart`);
        });
      }
    } finally {
      await reader.close();
    }
  });
});
