/**
 * Drivers: one op interface over the toondb IpcClient (against toondbd or the echo daemon) and
 * over ioredis (against redis-server), so every workload runs the same code against every peer.
 *
 * Interface (all async): get(key), put(key, value), getBatch(keys), putBatch(keys, values),
 * rmw(key, value) (read-modify-write in one transaction), scan(prefix, batchSize) -> entries
 * seen (toondb: batchSize undefined is the client's default), ping(), close(); and `stores`:
 * false for the echo daemon, which stores nothing (its GET replies carry 100 bytes of no key's
 * value; workloads.js checks reads only where something was stored).
 *
 * Invariants:
 * - A driver is built from a plain, serialisable description `{ kind, socketPath }`, so a child
 *   process (worker.js) can build the same driver as the parent.
 * - Values come back as Buffers on both sides (ioredis `*Buffer` commands), so neither side pays
 *   a UTF-8 decode the other does not.
 * - Redis read-modify-write is one EVALSHA of a Lua GET+SET (atomic, one round trip); toondb's is
 *   withTransaction get+put (begin, get, put, commit in two round trips, serializable).
 * - Redis scan is SCAN MATCH prefix* COUNT batchSize, plus an MGET per batch so that keys *and*
 *   values arrive, as with toondb's scan. Redis has no ordered scan; the db holds only the
 *   scanned keys, so SCAN visits exactly them.
 */

import Redis from 'ioredis';
import { loadClient } from './servers.js';

/** Transaction retries for the F mix; zipfian hot keys conflict often at 64 in flight. */
const RMW_RETRIES = 100;
const RMW_LUA = "local v = redis.call('GET', KEYS[1]); redis.call('SET', KEYS[1], ARGV[1]); return v";

export async function makeDriver({ kind, socketPath }) {
  if (kind === 'redis') return RedisDriver.open(socketPath);
  if (kind === 'toondb' || kind === 'echo') return ToondbDriver.open(socketPath, kind === 'toondb');
  throw new Error(`unknown driver kind ${kind}`);
}

class ToondbDriver {
  static async open(socketPath, stores) {
    const { IpcClient } = await loadClient();
    return new ToondbDriver(await IpcClient.connect(socketPath, { timeoutMs: 120_000, clientName: 'bench' }), stores);
  }

  constructor(client, stores) {
    this.client = client;
    this.stores = stores;
  }

  get(key) { return this.client.get(key); }
  put(key, value) { return this.client.put(key, value); }
  getBatch(keys) { return this.client.getBatch(keys); }
  putBatch(keys, values) { return this.client.putBatch(keys.map((key, i) => [key, values[i]])); }
  ping() { return this.client.ping(); }
  close() { return this.client.close(); }

  // Two round trips: the begin goes out with the get, the put with the commit (which counts
  // it, so a failed put would abort the transaction instead of being left out).
  rmw(key, value) {
    return this.client.withTransaction(async (txn) => {
      await txn.get(key);
      void txn.put(key, value);
    }, { retries: RMW_RETRIES });
  }

  async scan(prefix, batchSize) {
    let entries = 0;
    for await (const entry of this.client.scan(prefix, { batchSize })) if (entry) entries++;
    return entries;
  }
}

class RedisDriver {
  stores = true;

  static async open(socketPath) {
    const redis = new Redis({
      path: socketPath,
      lazyConnect: true,
      // Off unless asked for: on, it made Redis slower in every row measured (README, Performance).
      enableAutoPipelining: process.env.BENCH_REDIS_AUTOPIPELINE === '1',
      maxRetriesPerRequest: 0,
      // No commandTimeout: ioredis arms a timer per command for it (~0.5 µs each, ~10 % of its
      // CPU at 256 in flight), where toondb's client shares one; trial.js bounds a hung trial.
    });
    redis.on('error', () => undefined); // surfaced by the failing command instead
    await redis.connect();
    redis.defineCommand('benchRmw', { numberOfKeys: 1, lua: RMW_LUA });
    return new RedisDriver(redis);
  }

  constructor(redis) {
    this.redis = redis;
  }

  get(key) { return this.redis.getBuffer(key); }
  put(key, value) { return this.redis.set(key, value); }
  getBatch(keys) { return this.redis.mgetBuffer(keys); }
  ping() { return this.redis.ping(); }
  rmw(key, value) { return this.redis.benchRmwBuffer(key, value); }

  putBatch(keys, values) {
    const args = new Array(keys.length * 2);
    for (let i = 0; i < keys.length; i++) { args[2 * i] = keys[i]; args[2 * i + 1] = values[i]; }
    return this.redis.mset(args);
  }

  /** Pipelined as toondb's read-ahead is: the MGET of one batch goes out with the SCAN for the
   * next, so Redis is never one idle round trip per batch. */
  async scan(prefix, batchSize) {
    const step = (cursor) => this.redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', batchSize);
    let entries = 0;
    let [cursor, keys] = await step('0');
    for (;;) {
      const values = keys.length ? this.redis.mgetBuffer(keys) : Promise.resolve([]);
      const next = cursor === '0' ? null : step(cursor);
      next?.catch(() => undefined); // awaited below; failing before `values` must not be "unhandled"
      entries += (await values).length;
      if (next === null) return entries;
      [cursor, keys] = await next;
    }
  }

  async close() {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
