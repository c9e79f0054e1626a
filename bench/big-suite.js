/**
 * The big workloads (config 'big'): bulk load of BENCH_BIG_KEYS keys, a streamed prefix scan
 * of all of them right after the load and once more, daemon RSS after those, and restart time
 * after SIGKILL.
 *
 * Responsibility: per round and system (A/B order), one fresh server: load, scan twice,
 * measure RSS, write a sentinel, SIGKILL, restart on the same dir, check the data survived,
 * stop. The first scan is
 * the one the speed target judges (its reads fill the engine's caches from cold); the second
 * shows the same scan once they have been filled.
 *
 * Invariants:
 * - Servers: toondb `--durability interval` (fsync every 1 s), Redis `appendfsync everysec`, as in 'fast'. Each
 *   (round, system) gets a new server on an empty dir: the restart measurement consumes it, and
 *   every load starts from nothing.
 * - The load always runs (scan, RSS and restart need the data) even when only some of the big
 *   workloads are selected; only the selected ones are recorded.
 * - Nothing checkpoints or snapshots before the kill, but the systems keep their data unlike
 *   each other: fjall flushes its memtables into tables as the load runs, so toondb's restart
 *   replays only the journal past its last flush (up to ~66 MB, where fjall seals a journal),
 *   while Redis (no RDB, no AOF rewrite) replays its whole AOF (one with an RDB preamble,
 *   rewritten before the kill, measured no faster here: 1.57 s against 1.0-2.0 s). Restart
 *   time runs from spawn to the first successful ping (Redis answers -LOADING until its AOF is
 *   loaded, which does not count).
 * - The scan must see every key: exactly N for toondb (keys are unique, the scan is ordered);
 *   at least N for Redis (SCAN may return a key twice); the rate is N over the scan's time.
 *   Each scan also records the CPU its client (this process) and its server (every thread,
 *   from /proc) spent on it, and the notes give their medians: on two cores a scan is bound by
 *   the CPU of both sides, and the split says which one moved (it found a client GC problem
 *   that halved the first scan inside full runs).
 * - After the restart the first and last loaded keys must read back, and so must a sentinel key
 *   written just before the kill (its reply awaited, the SIGKILL sent at once): a kill -9 of the
 *   daemon must not lose acknowledged writes in either system's mode (an fsync a second later
 *   would hide a write held back in the daemon). toondb writes each commit to the OS before it
 *   answers; Redis `everysec` does too, but may put its AOF write off for up to 2 s while a
 *   background fsync runs, so in theory its sentinel could be lost (a false failure, never a
 *   hidden loss; not seen here, seconds after the load's last fsync).
 */

import { readFileSync } from 'node:fs';
import { abOrder, failure, failureSettled, hungProbeNote, progress, toondbWarnings, withDriver } from './context.js';
import { makeDriver } from './drivers.js';
import { collectGarbage } from './gc.js';
import { bulkLoad } from './load.js';
import { formatRate, formatTrial, SYSTEM_NAMES } from './report.js';
import { cpuMs, killHard, rssBytes, startRedis, startToondb } from './servers.js';
import { median } from './stats.js';
import { BIG_PREFIX, VALUE, keyName } from './workloads.js';

/** The restarted toondbd logs at info: its 'storage recovered' line says how long the engine
 * took to open (journal replay); Redis always logs its AOF load time. */
const STARTERS = {
  toondb: (dir, logLevel) => startToondb({ durability: 'interval', dir, logLevel }),
  redis: (dir) => startRedis({ fsync: 'everysec', dir }),
};
const SYSTEM_ORDER = ['toondb', 'redis'];
const LOAD = { chunkKeys: 1000, inFlight: 4 };
/** Entries per scan batch: toondb's client default (no batchSize: batches grow from 256 to 8192
 * entries, protocol/limits.ts), as a user's scan runs; Redis's SCAN COUNT 1000, its fastest
 * here (COUNT 8192 measured 0.40-0.52M keys/s against 0.41-0.51M). */
const SCAN_BATCH_ITEMS = { toondb: undefined, redis: 1000 };
const MiB = 2 ** 20;
/** Written just before the SIGKILL, outside the scanned prefix, and read back after the restart. */
const SENTINEL_KEY = 'bench-sentinel';
const SENTINEL_VALUE = Buffer.from('written just before the kill');
/** The warning a restart after SIGKILL is supposed to log; not worth a note. */
const EXPECTED_AFTER_KILL = /stale socket/;

/** One scan of the loaded keys: its rate, and the CPU the client (this process) and the server
 * (all its threads) spent on it. */
async function timedScan(driver, system, count, serverPid) {
  collectGarbage();
  const clientCpu0 = process.cpuUsage();
  const serverCpu0 = cpuMs(serverPid);
  const t0 = process.hrtime.bigint();
  const seen = await driver.scan(BIG_PREFIX, SCAN_BATCH_ITEMS[system]);
  const elapsedNs = Number(process.hrtime.bigint() - t0);
  const clientCpu = process.cpuUsage(clientCpu0);
  const serverCpuMs = cpuMs(serverPid) - serverCpu0;
  const complete = system === 'toondb' ? seen === count : seen >= count;
  if (!complete) throw new Error(`the scan of prefix ${BIG_PREFIX} returned ${seen} entries, expected ${count}`);
  return { keysPerSecond: count / (elapsedNs / 1e9), clientCpuMs: (clientCpu.user + clientCpu.system) / 1000, serverCpuMs };
}

/** A scan's trial: its rate, and its CPU, in all and per key (`serverCpuUs`, as other rows). */
function scanTrial(scan, count) {
  const { keysPerSecond, clientCpuMs, serverCpuMs } = scan;
  return { rate: keysPerSecond, p50Ns: NaN, p99Ns: NaN, clientCpuMs, serverCpuMs, serverCpuUs: (serverCpuMs * 1000) / count };
}

/** How long the restarted server spent loading its data, from its log (NaN if not logged). */
function recoveryMs(server) {
  let text = '';
  try {
    text = readFileSync(server.logFile, 'utf8');
  } catch {
    return NaN;
  }
  if (server.kind === 'redis') {
    const seconds = [...text.matchAll(/DB loaded from append only file: ([\d.]+) seconds/g)].at(-1)?.[1];
    return seconds === undefined ? NaN : Number(seconds) * 1000;
  }
  const line = text.split('\n').filter((l) => l.includes('"storage recovered"')).at(-1);
  return line ? Number(JSON.parse(line).durationMs) : NaN;
}

async function checkSurvived(driver, count) {
  const keys = [keyName(BIG_PREFIX, 0), keyName(BIG_PREFIX, count - 1), SENTINEL_KEY];
  const expected = [VALUE, VALUE, SENTINEL_VALUE];
  const values = await driver.getBatch(keys);
  const lost = keys.filter((_, i) => !values[i] || !expected[i].equals(values[i]));
  if (lost.length) throw new Error(`acknowledged keys missing or wrong after SIGKILL + restart: ${lost.join(', ')}`);
}

/** Load, RSS, scan, kill, restart on one fresh server; resolves a trial per special. */
async function bigRound(system, knobs, notes) {
  const count = knobs.bigKeys;
  const first = await STARTERS[system]().catch((error) => { throw failure(`starting ${system} (big)`, null, error); });
  let second = null;
  let step = 'bulk load';
  try {
    const measured = await withDriver(makeDriver, first, async (driver) => {
      const load = await bulkLoad(driver, BIG_PREFIX, count, LOAD);
      step = 'scan';
      const scan = await timedScan(driver, system, count, first.pid);
      step = 'second scan';
      const rescan = await timedScan(driver, system, count, first.pid);
      // After the scans, not right after the load: the engine's block cache and read buffers
      // are full by then (measured after the load, toondbd showed ~240 of its ~350 MiB).
      step = 'RSS';
      const rssMiB = rssBytes(first.pid) / MiB;
      step = 'sentinel write and kill';
      await driver.put(SENTINEL_KEY, SENTINEL_VALUE);
      await killHard(first.child);
      return { load, rssMiB, scan, rescan };
    });
    step = 'restart';
    second = await STARTERS[system](first.dir, 'info');
    step = 'read-back after restart';
    await withDriver(makeDriver, second, (driver) => checkSurvived(driver, count));
    for (const [server, when] of [[first, 'start (big)'], [second, 'restart after SIGKILL']]) {
      const note = await hungProbeNote(server, when);
      if (note) notes.push(note);
    }
    const { load, rssMiB, scan, rescan } = measured;
    return {
      load: { rate: load.keysPerSecond, p50Ns: load.histogram.quantileNs(0.5), p99Ns: load.histogram.quantileNs(0.99) },
      rss: { rate: rssMiB, p50Ns: NaN, p99Ns: NaN },
      scan: scanTrial(scan, count),
      rescan: scanTrial(rescan, count),
      restart: { rate: second.readyMs, p50Ns: NaN, p99Ns: NaN, recoveryMs: recoveryMs(second) },
    };
  } catch (error) {
    throw await failureSettled(`big workloads, ${step} of ${count} keys on ${SYSTEM_NAMES[system]}`, second ?? first, error);
  } finally {
    const last = second ?? first; // both write the same log file in the same dir
    for (const { message, count: times } of toondbWarnings(last)) {
      if (!EXPECTED_AFTER_KILL.test(message)) notes.push(`toondbd (big) logged ${times}× at warn+: ${message}`);
    }
    await last.stop();
  }
}

/** Runs the selected big workloads (config 'big') and records their trials in `results`. */
export async function runBigSuite(workloads, knobs, results, notes) {
  const systems = SYSTEM_ORDER.filter((system) => workloads.some((w) => w.systems.includes(system)));
  progress(`== config big: ${knobs.bigKeys} keys, ${systems.map((s) => SYSTEM_NAMES[s]).join(', ')}`);
  for (let round = 0; round < knobs.rounds; round++) {
    for (const system of abOrder(systems, round)) {
      const trials = await bigRound(system, knobs, notes);
      for (const workload of workloads) {
        if (!workload.systems.includes(system)) continue;
        const trial = trials[workload.special];
        if (!trial) throw new Error(`workload ${workload.id}: unknown special ${workload.special}`);
        results.record(workload.id, system, round, trial);
        const recovery = trial.recoveryMs === undefined ? '' : ` (data load ${formatRate(trial.recoveryMs, 'ms')})`;
        const cpu = trial.clientCpuMs === undefined ? '' : ` (CPU: client ${formatRate(trial.clientCpuMs, 'ms')}, server ${formatRate(trial.serverCpuMs, 'ms')})`;
        progress(`  [${workload.id}] round ${round + 1}/${knobs.rounds} ${SYSTEM_NAMES[system].padEnd(6)} ${formatTrial(trial, workload.unit)}${recovery}${cpu}`);
      }
    }
  }
  if (workloads.some((w) => w.special === 'restart')) notes.push(restartBreakdown(results, systems));
  for (const workload of workloads.filter((w) => w.special === 'scan' || w.special === 'rescan')) {
    notes.push(scanCpu(results, workload, systems, knobs.bigKeys));
  }
}

/** One line: the CPU each system's client and server spent per scan (medians of the rounds):
 * which side a scan's rate is bound by on a machine this small. */
function scanCpu(results, workload, systems, keys) {
  const parts = systems.filter((system) => workload.systems.includes(system)).map((system) => {
    const trials = results.trials(workload.id, system);
    const client = median(trials.map((t) => t.clientCpuMs));
    const server = median(trials.map((t) => t.serverCpuMs));
    return `${SYSTEM_NAMES[system]} client ${formatRate(client, 'ms')}, server ${formatRate(server, 'ms')}`;
  });
  return `CPU per ${workload.special === 'scan' ? 'first scan' : 'scan run again'} of ${keys} keys (medians): ${parts.join('; ')}.`;
}

/** One line: of each system's median restart, how much was loading its data. */
function restartBreakdown(results, systems) {
  const what = { toondb: 'opening the engine (journal replay)', redis: 'loading the AOF' };
  const parts = systems.map((system) => {
    const trials = results.trials('restart', system);
    const total = median(trials.map((t) => t.rate));
    const load = median(trials.map((t) => t.recoveryMs));
    return `${SYSTEM_NAMES[system]} ${formatRate(total, 'ms')} spawn → first ping, of which ${formatRate(load, 'ms')} ${what[system]}`;
  });
  return `restart breakdown (medians): ${parts.join('; ')}.`;
}
