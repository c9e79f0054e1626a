// The daemon-wide budgets under pressure, with every path that takes and gives back from them:
// reads answered from the row cache and from storage, lane calls of writes and reads that end
// early on large values and run their rest later, replies held for a `sync` fsync, scans read
// ahead, transactions, and raw clients that read their replies in bursts. Request bytes and
// reply bytes are bounded low (4 MiB and about 20 MiB) against values of up to 900 KB, so calls
// wait for room all the time. Every answer must be right (each worker owns its keys and checks
// them against what it wrote), nobody is cut off, and once the load stops both budgets hold
// nothing: a reservation or a request's bytes not given back would leave them stuck above
// zero, and the daemon would stall a little more with each one.
// Knob: TOONDB_BUDGET_STRESS_OPS (operations per worker, default 100; 8 workers on each of 3
// clients). Seed: TOONDB_BUDGET_STRESS_SEED (printed).
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { DEFAULT_SERVER_LIMITS } from '../../protocol/limits.js';
import { engineCallReplyBytesMax } from '../../protocol/limit-relations.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { RawPeer } from '../helpers/raw.js';
import { mulberry32 } from '../helpers/rng.js';

const OPS = Number(process.env.TOONDB_BUDGET_STRESS_OPS ?? 100);
const SEED = Number(process.env.TOONDB_BUDGET_STRESS_SEED ?? Date.now() % 1_000_000);
const MiB = 1024 * 1024;
const LIMITS = {
  frameBytesMax: 2 * MiB,
  valueBytesMax: 1_000_000,
  batchBytesMax: MiB,
  batchItemsMax: 1000,
  scanBatchBytesMax: 256 * 1024,
  requestBytesInFlightDaemonMax: 4 * MiB,
  replyBytesDaemonMax: 0,
};
LIMITS.replyBytesDaemonMax = engineCallReplyBytesMax({ ...DEFAULT_SERVER_LIMITS, ...LIMITS }) + MiB;
const CLIENTS = 3;
const WORKERS = 8;
const KEYS_PER_WORKER = 6;

/** What a value is, in a form cheap to compare (toEqual walks a Buffer byte by byte, which at
 * 900 KB takes the test process longer than the daemon takes to serve it). */
function digest(value: Buffer | null | undefined): string {
  return value ? `${value.length}:${createHash('sha1').update(value).digest('hex')}` : 'none';
}

/** A value of `bytes` whose content says which key and version it is. */
function valueOf(key: string, version: number, bytes: number): Buffer {
  const value = Buffer.alloc(bytes, version % 251);
  value.write(`${key}#${version}`, 0, 'latin1');
  return value;
}

describe(`daemon-wide budgets under ${CLIENTS * WORKERS * OPS} mixed operations (seed ${SEED})`, () => {
  let daemon: TestDaemon;
  let clients: IpcClient[];

  beforeAll(async () => {
    daemon = await startDaemon({ args: ['--durability', 'sync', '--log-level', 'info'], config: { limits: LIMITS } });
    clients = await Promise.all(Array.from({ length: CLIENTS }, () => IpcClient.connect(daemon.socketPath, { timeoutMs: 60_000 })));
  });
  afterAll(async () => {
    await Promise.all((clients ?? []).map((c) => c.close()));
    await daemon?.dispose();
  });

  /** One worker: random operations on its own keys, each checked against what it wrote. */
  async function worker(client: IpcClient, prefix: string, rng: () => number): Promise<void> {
    const model = new Map<string, Buffer>();
    let version = 0;
    const keyAt = (i: number): string => `${prefix}${i}`;
    const pickKey = (): string => keyAt(Math.floor(rng() * KEYS_PER_WORKER));
    const size = (): number => (rng() < 0.15 ? 300_000 + Math.floor(rng() * 600_000) : 1 + Math.floor(rng() * 200));
    for (let op = 0; op < OPS; op++) {
      const roll = rng();
      const key = pickKey();
      if (roll < 0.3) {
        const value = valueOf(key, ++version, size());
        await client.put(key, value);
        model.set(key, value);
      } else if (roll < 0.5) {
        expect(digest(await client.get(key))).toBe(digest(model.get(key)));
      } else if (roll < 0.6) {
        const keys = Array.from({ length: KEYS_PER_WORKER }, (_, i) => keyAt(i));
        // Large values may pass batchBytesMax: that is a coded refusal, not a wrong answer.
        const values = await client.getBatch(keys).catch((error: { code?: string }) => {
          expect(error.code).toBe('BATCH_TOO_LARGE');
          return null;
        });
        if (values !== null) expect(values.map(digest)).toEqual(keys.map((k) => digest(model.get(k))));
      } else if (roll < 0.7) {
        const entries = await client.scan(prefix, { batchSize: 1 + Math.floor(rng() * 4) }).toArray();
        expect(entries.map(([k]) => k.toString())).toEqual([...model.keys()].sort());
        expect(entries.map(([, v]) => digest(v))).toEqual(entries.map(([k]) => digest(model.get(k.toString()))));
      } else if (roll < 0.8) {
        await client.delete(key);
        model.delete(key);
      } else if (roll < 0.9) {
        const value = valueOf(key, ++version, size());
        const seen = await client.withTransaction(async (txn) => {
          const before = await txn.get(key);
          await txn.put(key, value);
          return before;
        });
        expect(digest(seen)).toBe(digest(model.get(key)));
        model.set(key, value);
      } else {
        // Pipelined: a write between reads of large values makes lane calls end early.
        const value = valueOf(key, ++version, size());
        const [first, , second] = await Promise.all([client.get(key), client.put(key, value), client.get(key)]);
        expect(digest(first)).toBe(digest(model.get(key)));
        expect(digest(second)).toBe(digest(value));
        model.set(key, value);
      }
    }
  }

  /** A raw client that pipelines gets of large values and reads their replies in bursts. */
  async function burstyReader(keys: string[], expected: Map<string, number>): Promise<void> {
    const peer = await RawPeer.open(daemon.socketPath);
    peer.hello();
    await peer.waitFor(1);
    peer.socket.pause();
    keys.forEach((key, i) => peer.request({ id: 2 + i, op: 'get', key: Buffer.from(key) }));
    while (peer.messages.length < 1 + keys.length) {
      // Cut off (what this test exists to catch): fail with what arrived, not a timeout.
      if (peer.socket.destroyed) throw new Error(`bursty reader cut off after ${peer.messages.length - 1} of ${keys.length} replies`);
      peer.socket.resume();
      await new Promise((resolve) => setTimeout(resolve, 20));
      peer.socket.pause();
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
    peer.socket.resume();
    for (const reply of peer.messages.slice(1)) {
      const key = keys[(reply.id as number) - 2];
      expect((reply.result as Buffer).length).toBe(expected.get(key));
    }
    peer.close();
  }

  it('answers everything right, cuts off nobody, and gives every byte back', async () => {
    const rng = mulberry32(SEED);
    const bigKeys = Array.from({ length: 8 }, (_, i) => `stress/big/${i}`);
    const bigSizes = new Map(bigKeys.map((key) => [key, 500_000 + Math.floor(rng() * 400_000)]));
    for (const key of bigKeys) await clients[0].put(key, valueOf(key, 0, bigSizes.get(key)!));
    const readerKeys = Array.from({ length: 40 }, (_, i) => bigKeys[i % bigKeys.length]);
    await Promise.all([
      ...clients.flatMap((client, c) => Array.from({ length: WORKERS }, (_, w) => worker(client, `stress/${c}/${w}/`, mulberry32(SEED + 97 * c + w)))),
      burstyReader(readerKeys, bigSizes),
      burstyReader(readerKeys, bigSizes),
    ]);
    expect(daemon.logged('closing connection that does not read its replies')).toEqual([]);
    await expect.poll(async () => {
      const stats = await clients[0].stats();
      return { inFlight: stats.bytes.inFlight < 1024, replies: stats.bytes.replies < 4096, txns: stats.transactions.active, cursors: stats.cursors.open };
    }, { timeout: 5_000 }).toEqual({ inFlight: true, replies: true, txns: 0, cursors: 0 });
  }, 120_000 + OPS * CLIENTS * WORKERS * 50);
});
