// Checkpoint, stats and the engine threads: real figures that move when the daemon does work.
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../../protocol/limits.js';
import { startDaemon, suiteClient } from '../helpers/daemon.js';
import { RawPeer } from '../helpers/raw.js';

describe('checkpoint and stats', () => {
  const { daemon, client, reconnect } = suiteClient();

  it('stats numbers move as work is done', async () => {
    const before = await client().stats();
    expect(before.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(before.pid).toBe(daemon().pid);
    expect(before.connections.active).toBe(1);
    await client().putBatch(Array.from({ length: 100 }, (_, i) => [`k${i}`, 'v'] as [string, string]));
    for (let i = 0; i < 10; i++) await client().get(`k${i}`);
    // An oversize key: the client refuses it itself (the daemon never sees it)...
    const oversize = Buffer.alloc(client().serverInfo.limits.keyBytesMax + 1);
    await expect(client().get(oversize)).rejects.toMatchObject({ code: 'KEY_TOO_LARGE' });
    // ...so a raw peer sends it, and the daemon answers it with an error.
    const peer = await RawPeer.open(daemon().socketPath);
    try {
      peer.hello();
      await peer.waitFor(1);
      peer.request({ id: 2, op: 'get', key: oversize });
      const [, refused] = await peer.waitFor(2);
      expect(refused).toMatchObject({ id: 2, error: { code: 'KEY_TOO_LARGE' } });
    } finally {
      peer.close();
    }
    const txn = await client().beginTransaction();
    await txn.put('t', 'x');
    await txn.commit();
    const after = await client().stats();
    expect(after.uptimeMs).toBeGreaterThan(before.uptimeMs);
    expect(after.requests.total).toBeGreaterThanOrEqual(before.requests.total + 14);
    expect(after.requests.byFamily.kv).toBeGreaterThanOrEqual(before.requests.byFamily.kv + 10);
    expect(after.requests.byFamily.batch).toBeGreaterThan(before.requests.byFamily.batch);
    expect(after.requests.byFamily.txn).toBeGreaterThanOrEqual(before.requests.byFamily.txn + 2);
    expect(after.bytes.in).toBeGreaterThan(before.bytes.in);
    expect(after.bytes.out).toBeGreaterThan(before.bytes.out);
    expect(after.transactions.committed).toBe(before.transactions.committed + 1);
    expect(after.engine.approximateKeys).toBeGreaterThanOrEqual(100);
    // putBatch wrote its rows through to the row cache, so the 10 gets never touched storage.
    expect(after.requests.fromMemory).toBeGreaterThanOrEqual(before.requests.fromMemory + 10);
    expect(after.engine.rowCacheRows).toBeGreaterThanOrEqual(100);
    expect(after.engine.rowCacheBytes).toBeGreaterThan(100 * 3);
    // Lanes apply the row-cache updates they queued once they have no call to run.
    await expect.poll(async () => (await client().stats()).engine.rowCacheQueuedKeys).toBe(0);
    expect(after.engine.diskBytes).toBeGreaterThan(0);
    expect(after.durable.syncs).toBeGreaterThan(before.durable.syncs);
    // The time of the last of those fsyncs, from the engine that ran them.
    expect(after.durable.lastSyncMs).toBeGreaterThanOrEqual(before.durable.lastSyncMs ?? 0);
    expect(after.durable.lastSyncMs).toBeLessThanOrEqual(Date.now());
    expect(after.latency.samples).toBeGreaterThan(before.latency.samples);
    expect(after.latency.p99Ms).toBeGreaterThanOrEqual(after.latency.p50Ms);
    // The daemon's one error reply (the raw peer's oversize key) counted, and nothing else did.
    expect(after.requests.errors).toBe(before.requests.errors + 1);
  });

  it.runIf(process.platform === 'linux')('runs its engine threads: two lanes, group commit, fjall background workers', () => {
    const threads = daemon().threadNames();
    expect(threads.get('toondb:lane0')).toBe(1);
    expect(threads.get('toondb:lane1')).toBe(1);
    expect(threads.get('toondb:sync')).toBe(1);
    // One on up to two cores (fjall's second worker would spin through every compaction),
    // fjall's default min(cores, 4) above that (engine/src/core/store.rs background_workers).
    // The engine counts cores after cgroup quotas, which Node does not: it may see fewer.
    const cores = availableParallelism();
    const workers = threads.get('fjall:worker') ?? 0;
    if (cores <= 2) {
      expect(workers).toBe(1);
    } else {
      expect(workers).toBeGreaterThanOrEqual(1);
      expect(workers).toBeLessThanOrEqual(Math.min(cores, 4));
    }
  });

  it('checkpoint returns an lsn that grows with writes and is recorded in stats', async () => {
    const first = await client().checkpoint();
    expect(typeof first.lsn).toBe('bigint');
    expect(first.durationMs).toBeGreaterThanOrEqual(0);
    await client().put('after-checkpoint', 'x');
    const second = await client().checkpoint();
    expect(second.lsn > first.lsn).toBe(true);
    const stats = await client().stats();
    expect(stats.checkpoint.last?.lsn).toBe(second.lsn);
  });

  it('data written before a checkpoint survives SIGKILL', async () => {
    await client().put('cp/key', 'kept');
    const { lsn } = await client().checkpoint();
    await client().close();
    const linesBefore = daemon().logs.length;
    await daemon().kill();
    await daemon().start();
    await reconnect();
    expect((await client().get('cp/key'))?.toString()).toBe('kept');
    // The restart logged its recovery (only its own lines count: the first start logged one
    // too), and the engine carries on from there: a write after it moves the seqno past the
    // one recovered. (Not necessarily past the checkpoint before the kill: flushes take seqnos
    // that recovery does not restore.)
    const recovered = daemon().logs.slice(linesBefore).filter((line) => line.msg === 'storage recovered');
    expect(recovered).toHaveLength(1);
    expect(recovered[0].durationMs ?? recovered[0].openMs).toBeTypeOf('number');
    expect(lsn).toBeTypeOf('bigint');
    await client().put('cp/after', 'x');
    expect((await client().checkpoint()).lsn > BigInt(recovered[0].seqno as string)).toBe(true);
  });
});

// Regression: hello announced the daemon's limits as of the hello, while a connection runs
// under the ones in force when it was accepted (a reload applies to later connections).
describe('reload', () => {
  it("a connection's hello announces the limits it runs under, across a reload", async () => {
    const daemon = await startDaemon({ config: { limits: { txnsPerConnectionMax: 2 } } });
    try {
      const before = await RawPeer.open(daemon.socketPath);
      // Accepted before the reload (the daemon logs each connection it accepts).
      await expect.poll(() => daemon.logged('connection opened').length, { timeout: 5_000 }).toBe(1);
      writeFileSync(join(daemon.dir, 'config.json'), JSON.stringify({ limits: { txnsPerConnectionMax: 8 } }));
      process.kill(daemon.pid!, 'SIGHUP');
      await expect.poll(() => daemon.logs.some((line) => line.msg === 'configuration reloaded'), { timeout: 5_000 }).toBe(true);
      const after = await RawPeer.open(daemon.socketPath);
      for (const peer of [before, after]) peer.request({ id: 1, op: 'hello', protocol: PROTOCOL_VERSION, client: 'admin-test' });
      const [[beforeHello], [afterHello]] = await Promise.all([before.waitFor(1), after.waitFor(1)]);
      expect(beforeHello).toMatchObject({ result: { limits: { txnsPerConnectionMax: 2 } } });
      expect(afterHello).toMatchObject({ result: { limits: { txnsPerConnectionMax: 8 } } });
      // The name a hello gives is logged, once per connection (PROTOCOL.md: "for logs").
      await expect.poll(() => daemon.logged('handshake').filter((line) => line.client === 'admin-test').length, { timeout: 5_000 }).toBe(2);
      for (let txn = 1; txn <= 3; txn++) before.request({ id: 10 + txn, op: 'begin', txn });
      const replies = await before.waitFor(4);
      expect(replies[3]).toMatchObject({ id: 13, error: { code: 'LIMIT_EXCEEDED' } });
      before.close();
      after.close();
    } finally {
      await daemon.dispose();
    }
  });
});
