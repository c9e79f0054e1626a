/**
 * The workloads: key naming, the op each workload issues, and the list the bench runs.
 *
 * Responsibility: say *what* is measured (keys, values, mixes, concurrency, which peers), never
 * how (trial.js) or against what (servers.js, drivers.js).
 *
 * Invariants:
 * - Keys are `PREFIX` + a 12-digit index: 16–17 bytes; values are 100 bytes. In the point, mix
 *   and batch workloads a key's value starts with the key itself (`valueFor`), so a read that
 *   returns another key's value fails the check below; the big workloads write one fixed VALUE.
 *   Every driver gets the same strings and the same value Buffers.
 * - Read workloads run over a preloaded keyspace, so a GET finds its key.
 * - A workload's `make(driver, env)` returns a zero-argument op for one in-flight slot; all key
 *   choice happens inside it so every peer pays the same client-side cost. A workload with
 *   `connections` spreads each process's `inFlight` slots over that many connections.
 * - `config` picks the server setup: `fast` = toondb interval vs Redis everysec (plus echo),
 *   `sync` = toondb sync vs Redis always, `big` = the 1M-key runs (see big-suite.js).
 */

import { Zipfian, makeRng } from './zipf.js';

export const VALUE_BYTES = 100;
export const VALUE = Buffer.alloc(VALUE_BYTES, 'v');
export const KEY_PREFIX = 'user:';
export const BIG_PREFIX = 'big:';
export const BATCH_KEYS = 100;

export function keyName(prefix, index) {
  return prefix + String(index).padStart(12, '0');
}

/** The value of the point workloads' key `key`: VALUE_BYTES bytes that start with the key. */
export function valueFor(key) {
  const value = Buffer.alloc(VALUE_BYTES, 'v');
  value.write(key, 0, 'latin1');
  return value;
}

/** The preloaded keyspace as strings (built once per process). */
export function makeKeys(prefix, count) {
  const keys = new Array(count);
  for (let i = 0; i < count; i++) keys[i] = keyName(prefix, i);
  return keys;
}

/** Each op picks a key's index, so that its key and its value come from the same place. */
function uniform(env) {
  const { keys, rng } = env;
  return () => Math.floor(rng() * keys.length);
}

function zipfian(env) {
  const zipf = new Zipfian(env.keys.length, env.rng);
  return () => zipf.next();
}

/** One read in READ_CHECK_EVERY is checked: every key the workloads read was preloaded with
 * its own value (`valueFor`), and every write writes it again, so a read that returns anything
 * else (a miss, another key's value) fails the trial instead of being counted. Sampled, so both
 * systems' clients pay a promise callback on a sixty-fourth of their reads, not on each. */
const READ_CHECK_EVERY = 64;

function checkedReads(driver, env) {
  const { keys, values } = env;
  if (!driver.stores) return { get: (i) => driver.get(keys[i]), getBatch: (indices) => driver.getBatch(indices.map((i) => keys[i])) };
  let reads = 0;
  const check = (i, value) => {
    if (value === null || value === undefined || !values[i].equals(value)) {
      const what = value === null || value === undefined ? 'nothing' : `${value.length} other bytes, starting ${JSON.stringify(value.subarray(0, 17).toString('latin1'))}`;
      throw new Error(`read of preloaded key ${keys[i]} returned ${what}`);
    }
    return value;
  };
  return {
    get: (i) => ((++reads % READ_CHECK_EVERY) === 0 ? driver.get(keys[i]).then((value) => check(i, value)) : driver.get(keys[i])),
    getBatch: (indices) => {
      const batchKeys = indices.map((i) => keys[i]);
      return (++reads % READ_CHECK_EVERY) === 0
        ? driver.getBatch(batchKeys).then((got) => got.map((value, at) => check(indices[at], value)))
        : driver.getBatch(batchKeys);
    },
  };
}

function mix(readFraction, writeOp) {
  return (driver, env) => {
    const pick = zipfian(env);
    const { rng } = env;
    const reads = checkedReads(driver, env);
    return () => (rng() < readFraction ? reads.get(pick()) : writeOp(driver, env, pick()));
  };
}

const put = (driver, env, i) => driver.put(env.keys[i], env.values[i]);
const rmw = (driver, env, i) => driver.rmw(env.keys[i], env.values[i]);

const OPS = {
  get: (driver, env) => { const pick = uniform(env); const reads = checkedReads(driver, env); return () => reads.get(pick()); },
  put: (driver, env) => { const pick = uniform(env); return () => put(driver, env, pick()); },
  getBatch: (driver, env) => {
    const pick = uniform(env);
    const reads = checkedReads(driver, env);
    return () => reads.getBatch(Array.from({ length: BATCH_KEYS }, pick));
  },
  putBatch: (driver, env) => {
    const pick = uniform(env);
    return () => {
      const indices = Array.from({ length: BATCH_KEYS }, pick);
      return driver.putBatch(indices.map((i) => env.keys[i]), indices.map((i) => env.values[i]));
    };
  },
  ycsbA: mix(0.5, put),
  ycsbB: mix(0.95, put),
  ycsbC: mix(1, put),
  ycsbF: mix(0.5, rmw),
};

/** The op factory for a workload kind; used in the parent and in worker.js. */
export function opFactory(kind) {
  const factory = OPS[kind];
  if (!factory) throw new Error(`unknown workload kind ${kind}`);
  return factory;
}

/** Keys and values of the point workloads by key count, built once per process: a trial that
 * built its own would leave 100k Buffers of garbage to the next trial's window. */
const keyspaces = new Map();

/** The point workloads' keys, their values and a fresh random stream (one env per trial). */
export function makeEnv(keyCount, seed) {
  let keyspace = keyspaces.get(keyCount);
  if (keyspace === undefined) {
    const keys = makeKeys(KEY_PREFIX, keyCount);
    keyspace = { keys, values: keys.map(valueFor) };
    keyspaces.set(keyCount, keyspace);
  }
  return { ...keyspace, rng: makeRng(seed) };
}

const ALL = ['toondb', 'redis', 'echo'];
const DB = ['toondb', 'redis'];
/** YCSB mixes run 64 in flight: toondb allows 64 open transactions per connection (F). */
const YCSB_IN_FLIGHT = 64;
const BATCH_IN_FLIGHT = 16;
/** Processes the 256 writers of a connection each are spread over, as the 4-process rows are. */
const DURABLE_CONN_PROCS = 4;

function point(kind, inFlight, procs) {
  const what = kind === 'get' ? 'GET' : 'PUT';
  const where = procs === 1 ? '1 conn' : `${procs} procs × 1 conn`;
  const inFlightText = procs === 1 ? `${inFlight} in flight` : `${inFlight} in flight per process`;
  return { id: `${kind}-${inFlight}${procs > 1 ? `-x${procs}p` : ''}`, title: `${what}, ${inFlightText}, ${where}`,
    config: 'fast', kind, inFlight, procs, systems: ALL, unit: 'ops/s', keysPerOp: 1 };
}

export const WORKLOADS = [
  point('get', 1, 1), point('get', 256, 1), point('put', 1, 1), point('put', 256, 1),
  point('get', 1, 4), point('get', 256, 4), point('put', 1, 4), point('put', 256, 4),
  ...[['A', '50/50 read/update'], ['B', '95/5 read/update'], ['C', 'read-only'], ['F', '50 read / 50 read-modify-write']]
    .map(([letter, what]) => ({ id: `ycsb-${letter.toLowerCase()}`, title: `YCSB-${letter} zipfian 0.99 (${what}), ${YCSB_IN_FLIGHT} in flight`,
      config: 'fast', kind: `ycsb${letter}`, inFlight: YCSB_IN_FLIGHT, procs: 1, systems: DB, unit: 'ops/s', keysPerOp: 1 })),
  { id: 'getBatch-100', title: `getBatch of ${BATCH_KEYS} (Redis MGET), ${BATCH_IN_FLIGHT} in flight`, config: 'fast', kind: 'getBatch',
    inFlight: BATCH_IN_FLIGHT, procs: 1, systems: DB, unit: 'keys/s', keysPerOp: BATCH_KEYS },
  { id: 'putBatch-100', title: `putBatch of ${BATCH_KEYS} (Redis MSET), ${BATCH_IN_FLIGHT} in flight`, config: 'fast', kind: 'putBatch',
    inFlight: BATCH_IN_FLIGHT, procs: 1, systems: DB, unit: 'keys/s', keysPerOp: BATCH_KEYS },
  ...[1, 16, 256].map((writers) => ({ id: `durable-put-${writers}`, title: `durable PUT, ${writers} writer${writers > 1 ? 's' : ''} on 1 conn (sync / always)`,
    config: 'sync', kind: 'put', inFlight: writers, procs: 1, systems: DB, unit: 'commits/s', keysPerOp: 1 })),
  // The same 256 writers, each on a connection of its own: no request of one can join another's
  // engine call, so only the group commit shares their fsyncs. The echo daemon (no storage, no
  // fsync) shows what any Node daemon reaches with 256 sockets here.
  { id: 'durable-put-256-conns', title: `durable PUT, 256 writers on 256 conns (${DURABLE_CONN_PROCS} procs × ${256 / DURABLE_CONN_PROCS} conns, sync / always / echo)`,
    config: 'sync', kind: 'put', inFlight: 256 / DURABLE_CONN_PROCS, connections: 256 / DURABLE_CONN_PROCS, procs: DURABLE_CONN_PROCS,
    systems: ALL, unit: 'commits/s', keysPerOp: 1 },
  { id: 'bulk-load', title: 'bulk load (putBatch / MSET of 1000, 4 in flight)', config: 'big', special: 'load', systems: DB, unit: 'keys/s' },
  { id: 'scan', title: 'streamed prefix scan, default batches (Redis SCAN 1000+MGET)', config: 'big', special: 'scan', systems: DB, unit: 'keys/s' },
  { id: 'scan-again', title: 'the same scan run again at once', config: 'big', special: 'rescan', systems: DB, unit: 'keys/s' },
  { id: 'restart', title: 'restart: spawn → first ping (toondb journal / Redis AOF)', config: 'big', special: 'restart', systems: DB, unit: 'ms' },
  { id: 'rss', title: 'daemon RSS after load and two scans (VmRSS)', config: 'big', special: 'rss', systems: DB, unit: 'MiB' },
];
