// Request bytes in flight across all connections (requestBytesInFlightDaemonMax). Before it,
// only each connection was bounded (64 MiB of request bodies read and not answered), so 1024
// connections pipelining large puts could make the daemon hold 64 GiB. Several raw clients
// pipeline large puts against a daemon whose bound is lowered: every request is answered, the
// total is never seen above the bound, and the daemon stays up.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { RawPeer } from '../helpers/raw.js';
import { sampleMax } from '../helpers/sample-max.js';

const MiB = 1024 * 1024;
/** Frames of at most 2 MiB (values of 1,000,000 bytes), and 4 MiB in flight for the daemon:
 * four puts, while each connection alone may hold 64 MiB. */
const LIMITS = {
  frameBytesMax: 2 * MiB,
  valueBytesMax: 1_000_000,
  batchBytesMax: MiB,
  scanBatchBytesMax: 512 * 1024,
  requestBytesInFlightDaemonMax: 4 * MiB,
};

describe('request bytes in flight across connections', () => {
  let daemon: TestDaemon;
  let watcher: IpcClient;

  beforeAll(async () => {
    daemon = await startDaemon({ config: { limits: LIMITS } });
    watcher = await IpcClient.connect(daemon.socketPath);
  });
  afterAll(async () => {
    await watcher?.close();
    await daemon?.dispose();
  });

  it('stay under the daemon-wide bound while several clients pipeline large puts, and every one is answered', async () => {
    const peers = await Promise.all(Array.from({ length: 4 }, () => RawPeer.open(daemon.socketPath)));
    const PUTS = 40; // 40 MB per client, 160 MB in all: forty times the bound
    const value = Buffer.alloc(900_000, 0x61);
    const sampler = sampleMax(watcher, (stats) => stats.bytes.inFlight);
    peers.forEach((peer, p) => {
      peer.hello();
      for (let i = 0; i < PUTS; i++) peer.request({ id: 2 + i, op: 'put', key: Buffer.from(`rb/${p}/${i}`), value });
    });
    for (const peer of peers) {
      const replies = await peer.waitFor(1 + PUTS, 60_000);
      expect(replies.filter((reply) => reply.error !== undefined)).toEqual([]);
    }
    const seenMax = await sampler.stop();
    expect(seenMax).toBeGreaterThan(0);
    expect(seenMax).toBeLessThanOrEqual(LIMITS.requestBytesInFlightDaemonMax);
    const stats = await watcher.stats();
    expect(stats.bytes.inFlight).toBeLessThan(MiB); // only the stats request itself, if anything
    expect((await watcher.get(`rb/3/${PUTS - 1}`))?.length).toBe(value.length);
    peers.forEach((peer) => peer.close());
  });

  it('gives back what a client held when it disconnects mid-frame or with requests queued', async () => {
    const peer = await RawPeer.open(daemon.socketPath);
    peer.hello();
    peer.socket.pause();
    const value = Buffer.alloc(900_000, 0x62);
    for (let i = 0; i < 10; i++) peer.request({ id: 2 + i, op: 'put', key: Buffer.from(`gone/${i}`), value });
    const half = peer.codec.encode({ id: 99, op: 'put', key: Buffer.from('gone/half'), value });
    peer.send(half.subarray(0, half.length >> 1));
    // The half frame's whole length is held from its header on (the puts may be answered by now).
    await expect.poll(async () => (await watcher.stats()).bytes.inFlight, { timeout: 10_000 }).toBeGreaterThanOrEqual(half.length - 4);
    peer.close();
    await expect.poll(async () => (await watcher.stats()).bytes.inFlight, { timeout: 10_000 }).toBeLessThan(1024);
    // The budget is whole: a maximal frame still gets in.
    await watcher.put('after', Buffer.alloc(LIMITS.valueBytesMax, 0x63));
    expect((await watcher.get('after'))?.length).toBe(LIMITS.valueBytesMax);
  });

  // Review: the budget reserves a frame's announced length from its header, so a few clients
  // that announce large frames and send nothing filled it, and every other client's requests
  // (stats and toondbd stop included) waited until partialFrameMsMax cut them off, 30 s, again
  // and again. Small frames of a connection that holds nothing else go in alone now.
  it('lets other connections\' small requests through while announced frames hold the budget; large ones wait their turn', async () => {
    // Two peers each hold an admitted 1.9 MB frame whose body never completes (3.8 of 4 MiB),
    // and a third's frame waits behind them.
    const holders = await Promise.all([0, 1, 2].map(() => RawPeer.open(daemon.socketPath)));
    const sendHalfFrame = async (p: number): Promise<void> => {
      const peer = holders[p];
      peer.hello();
      await peer.waitFor(1);
      const frame = peer.codec.encode({ id: 2, op: 'put', key: Buffer.from(`held/${p}`), value: Buffer.alloc(1_900_000, 0x64) });
      peer.send(frame.subarray(0, frame.length >> 1));
    };
    await sendHalfFrame(0);
    await sendHalfFrame(1);
    await expect.poll(async () => (await watcher.stats()).bytes.inFlight, { timeout: 5_000 }).toBeGreaterThan(3 * MiB);
    await sendHalfFrame(2);
    await expect.poll(async () => (await watcher.stats()).bytes.inFlightWaiting, { timeout: 5_000 }).toBe(1);

    // A new connection: its hello, a sequence of small requests and a pipelined burst of them all
    // get answered while the holders keep the budget full.
    const late = await IpcClient.connect(daemon.socketPath, { connectTimeoutMs: 2_000, timeoutMs: 20_000 });
    await late.ping();
    await late.put('small', 'x');
    expect((await late.get('small'))?.toString()).toBe('x');
    const burst = await Promise.all(Array.from({ length: 20 }, (_, i) => late.put(`small/${i}`, String(i)).then(() => late.get(`small/${i}`))));
    expect(burst.map((v) => v?.toString())).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
    expect((await late.stats()).bytes.inFlightWaiting).toBe(1); // the third holder still waits
    // A large frame does not go in alone: it waits its turn behind the third holder's.
    let answered = false;
    const large = late.put('large', Buffer.alloc(100_000, 0x65)).then(() => { answered = true; });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(answered).toBe(false);
    holders.forEach((peer) => peer.close());
    await large;
    expect(await late.get('held/0')).toBeNull();
    expect((await late.get('large'))?.length).toBe(100_000);
    await late.close();
    await expect.poll(async () => (await watcher.stats()).bytes.inFlight, { timeout: 5_000 }).toBeLessThan(1024);
  });

  it('refuses a bound under frameBytesMax at start', async () => {
    await expect(startDaemon({ config: { limits: { requestBytesInFlightDaemonMax: 1024 } } }))
      .rejects.toThrow(/a maximal frame fits under the daemon-wide request bytes in flight/);
  });
});
