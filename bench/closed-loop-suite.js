/**
 * The closed-loop workloads (configs 'fast' and 'sync'): servers, preload, trials, rounds.
 *
 * Responsibility: for one config, start one server per system, preload it, run every selected
 * workload of that config for every round in A/B order, and stop the servers.
 *
 * Invariants:
 * - One server instance per (system, config), reused by all of that config's workloads:
 *   'fast' = toondb `--durability interval --sync-interval-ms 1000` / Redis `appendfsync everysec` / echo;
 *   'sync' = toondb `--durability sync` / Redis `appendfsync always` / echo (rows that list it).
 * - Before any trial, each database gets BENCH_KEYS keys (when a workload of the config reads),
 *   each with its own value (workloads.js valueFor), so every GET finds its key. The echo daemon stores nothing and is not preloaded.
 * - Every system runs a round with the same seed: the same key sequence on every side.
 * - Trials with procs > 1 run in worker processes (trial.multiProcess); others run in this
 *   process (trial.closedLoop); each process opens fresh connections for the trial (one, or the
 *   workload's `connections`).
 * - Servers are stopped (and their dirs removed) whether the config succeeds or fails; warn and
 *   error lines a toondbd logged are collected as notes first.
 */

import { abOrder, failure, failureSettled, hungProbeNote, progress, toondbWarnings, withDriver } from './context.js';
import { makeDriver } from './drivers.js';
import { bulkLoad } from './load.js';
import { formatTrial, SYSTEM_NAMES } from './report.js';
import { cpuMs, exited, startEcho, startRedis, startToondb } from './servers.js';
import { closedLoop, multiProcess, openOps } from './trial.js';
import { KEY_PREFIX, keyName, makeEnv, valueFor } from './workloads.js';

const STARTERS = {
  fast: { toondb: () => startToondb({ durability: 'interval' }), redis: () => startRedis({ fsync: 'everysec' }), echo: () => startEcho() },
  // The echo stores and fsyncs nothing: in a durable row it is the ceiling of any Node daemon.
  sync: { toondb: () => startToondb({ durability: 'sync' }), redis: () => startRedis({ fsync: 'always' }), echo: () => startEcho() },
};
const SYSTEM_ORDER = ['toondb', 'redis', 'echo'];
const READ_KINDS = new Set(['get', 'getBatch', 'ycsbA', 'ycsbB', 'ycsbC', 'ycsbF']);
/** Preload shape: as the bulk load (1000 keys per call, 4 in flight). */
const PRELOAD = { chunkKeys: 1000, inFlight: 4 };
/** Seed of round 0; round r uses SEED_BASE + r on every system. */
const SEED_BASE = 20_250_101;

/** The server's CPU time (all its threads) between `start()` and `end()`, in ms (NaN off Linux). */
function serverCpuWindow(pid) {
  let startMs = NaN;
  const window = { ms: NaN, start: () => { startMs = cpuMs(pid); }, end: () => { window.ms = cpuMs(pid) - startMs; } };
  return window;
}

function summarise(opsPerSecond, histogram, workload, serverCpuMs, seconds) {
  if (histogram.total === 0) throw new Error('no operation completed inside the measured window');
  const rate = opsPerSecond * workload.keysPerOp;
  return {
    rate,
    p50Ns: histogram.quantileNs(0.5),
    p99Ns: histogram.quantileNs(0.99),
    // Per unit of the rate (op, key or commit): what the server spends, whatever the host's phase.
    serverCpuUs: (serverCpuMs * 1000) / (rate * seconds),
  };
}

/** One trial of `workload` against `server`; resolves `{ rate, p50Ns, p99Ns, serverCpuUs }`. */
export async function runTrial(workload, server, knobs, seed) {
  const loop = { inFlight: workload.inFlight, seconds: knobs.seconds, warmupSeconds: knobs.warmupSeconds };
  const target = { kind: server.kind, socketPath: server.socketPath };
  const connections = workload.connections ?? 1;
  const serverCpu = serverCpuWindow(server.pid);
  if (workload.procs > 1) {
    const setup = { target, kind: workload.kind, keyCount: knobs.keys, seed, connections, ...loop };
    const { opsPerSecond, histogram } = await multiProcess(workload.procs, setup, serverCpu);
    return summarise(opsPerSecond, histogram, workload, serverCpu.ms, knobs.seconds);
  }
  const opened = await openOps(makeDriver, target, workload.kind, makeEnv(knobs.keys, seed), connections);
  let trial;
  try {
    trial = await closedLoop(opened.ops, loop, serverCpu);
  } finally {
    await opened.close();
  }
  return summarise(trial.ops / (trial.elapsedNs / 1e9), trial.histogram, workload, serverCpu.ms, trial.elapsedNs / 1e9);
}

async function startServers(config, systems, preload, knobs, notes) {
  const servers = new Map();
  try {
    for (const system of systems) {
      const server = await STARTERS[config][system]().catch((error) => { throw failure(`starting ${system} (${config})`, null, error); });
      servers.set(system, server);
      const note = await hungProbeNote(server, `start (${config})`);
      if (note) notes.push(note);
      if (!preload || system === 'echo') continue;
      const load = await withDriver(makeDriver, server, (driver) => bulkLoad(driver, KEY_PREFIX, knobs.keys, PRELOAD, (i) => valueFor(keyName(KEY_PREFIX, i))))
        .catch(async (error) => { throw await failureSettled(`preloading ${knobs.keys} keys into ${system} (${config})`, server, error); });
      progress(`  ${SYSTEM_NAMES[system]} (${config}): preloaded ${knobs.keys} keys in ${(load.elapsedNs / 1e6).toFixed(0)} ms`);
    }
  } catch (error) {
    await stopServers(servers, [], config);
    throw error;
  }
  return servers;
}

async function stopServers(servers, notes, config) {
  for (const [system, server] of servers) {
    for (const { message, count } of toondbWarnings(server)) notes.push(`toondbd (${config}) logged ${count}× at warn+: ${message}`);
    await server.stop();
    servers.delete(system);
  }
}

/** Runs `workloads` (all of config `config`) and records every trial in `results`. */
export async function runClosedLoopSuite(config, workloads, knobs, results, notes) {
  const systems = SYSTEM_ORDER.filter((system) => workloads.some((w) => w.systems.includes(system)));
  const preload = workloads.some((w) => READ_KINDS.has(w.kind));
  progress(`== config ${config}: starting ${systems.map((s) => SYSTEM_NAMES[s]).join(', ')}`);
  const servers = await startServers(config, systems, preload, knobs, notes);
  try {
    for (const workload of workloads) {
      for (let round = 0; round < knobs.rounds; round++) {
        for (const system of abOrder(workload.systems, round)) {
          const server = servers.get(system);
          const what = `trial ${workload.id} on ${SYSTEM_NAMES[system]} (round ${round + 1}/${knobs.rounds})`;
          if (exited(server.child)) throw failure(what, server, new Error('server is not running'));
          const trial = await runTrial(workload, server, knobs, SEED_BASE + round)
            .catch(async (error) => { throw await failureSettled(what, server, error); });
          results.record(workload.id, system, round, trial);
          progress(`  [${workload.id}] round ${round + 1}/${knobs.rounds} ${SYSTEM_NAMES[system].padEnd(6)} ${formatTrial(trial, workload.unit)}`);
        }
      }
    }
  } finally {
    await stopServers(servers, notes, config);
  }
}
