/**
 * One timed trial: a closed loop of in-flight slots, in this process or across N worker
 * processes.
 *
 * Responsibility: measure ops/s and per-op latency with little overhead. Each slot issues its
 * next request when the previous one resolves (closed loop); latency is hrtime.bigint around
 * each op, recorded into a preallocated histogram (stats.js).
 *
 * Invariants:
 * - A trial in this process starts with a full collection of its heap (gc.js), so that it does
 *   not pay for the garbage of the trials before it.
 * - A warm-up phase runs the same loop unrecorded; the measured window starts when it ends and
 *   stops at a fixed deadline. Only ops that *complete* inside the window count, and elapsed is
 *   the window length, so ops/s is not skewed by the drain of the last in-flight requests.
 * - An op that fails fails the trial (a benchmark that swallows errors measures nothing), and so
 *   do requests that do not finish within DRAIN_MS_MAX of the window's end.
 * - Multi-process trials: every worker connects and reports ready before any starts (barrier);
 *   ops/s is the sum of the workers' rates; histograms are merged.
 * - A process's slots share its connections (`connections` of them; one unless a workload says
 *   otherwise), slot i on connection i mod connections.
 */

import { fork } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { collectGarbage } from './gc.js';
import { Histogram } from './stats.js';
import { track } from './servers.js';
import { opFactory } from './workloads.js';

const WORKER_BIN = join(dirname(fileURLToPath(import.meta.url)), 'worker.js');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** How long the requests still in flight when a window ends may take to finish: past it a
 * server hangs and the trial fails (neither client arms a timeout of its own per request). */
const DRAIN_MS_MAX = 120_000;

/** Runs `slotOps` from `inFlight` slots, slot i issuing `slotOps[i % slotOps.length]` (one op
 * per connection: slots spread over the connections in turn): warm-up, then a window of `seconds`.
 * `window.start()` and `window.end()`, if given, are called as the window opens and closes.
 * A failing op ends the trial at once (no waiting out the window) and is rethrown once every
 * slot has stopped. */
export async function closedLoop(slotOps, { inFlight, seconds, warmupSeconds }, window = null) {
  const histogram = new Histogram();
  let recording = false;
  let running = true;
  let ops = 0;
  let failure = null;
  let onFailure;
  const failed = new Promise((resolve) => { onFailure = resolve; });
  const wait = (ms) => Promise.race([sleep(ms), failed]);
  collectGarbage();
  const slot = async (op) => {
    while (running && !failure) {
      const t0 = process.hrtime.bigint();
      try {
        await op();
      } catch (error) {
        failure ??= error;
        onFailure();
        return;
      }
      if (recording && running) {
        histogram.record(Number(process.hrtime.bigint() - t0));
        ops++;
      }
    }
  };
  const slots = Array.from({ length: inFlight }, (_, i) => slot(slotOps[i % slotOps.length]));
  await wait(warmupSeconds * 1000);
  window?.start();
  const start = process.hrtime.bigint();
  recording = true;
  await wait(seconds * 1000);
  running = false;
  const elapsedNs = Number(process.hrtime.bigint() - start);
  window?.end();
  let drainTimer;
  const hung = new Promise((_, reject) => {
    drainTimer = setTimeout(() => reject(new Error(`requests still in flight ${DRAIN_MS_MAX / 1000} s after the window: the server hangs`)), DRAIN_MS_MAX);
  });
  try {
    await Promise.race([Promise.all(slots), hung]);
  } finally {
    clearTimeout(drainTimer);
  }
  if (failure) throw failure;
  return { ops, elapsedNs, histogram };
}

/** Opens `connections` drivers to `target` and one op of workload `kind` on each (the env,
 * keys and random stream, shared by them); resolves { ops, close }. A failure closes the drivers
 * already open. */
export async function openOps(makeDriver, target, kind, env, connections) {
  const drivers = [];
  const close = () => Promise.all(drivers.map((driver) => driver.close().catch(() => undefined)));
  try {
    for (let i = 0; i < connections; i++) drivers.push(await makeDriver(target));
  } catch (error) {
    await close();
    throw error;
  }
  return { ops: drivers.map((driver) => opFactory(kind)(driver, env)), close };
}

/** Forks one worker and sends it `setup`; `ready` and `done` settle from its messages. */
function startWorker(index, setup) {
  const worker = track(fork(WORKER_BIN, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  const settle = {};
  const ready = new Promise((resolve, reject) => { settle.ready = resolve; settle.failReady = reject; });
  const done = new Promise((resolve, reject) => { settle.done = resolve; settle.failDone = reject; });
  done.catch(() => undefined); // awaited later; keep an early failure from being "unhandled"
  const fail = (error) => { settle.failReady(error); settle.failDone(error); };
  worker.on('message', (message) => {
    if (message.type === 'ready') settle.ready();
    else if (message.type === 'result') settle.done(message);
    else if (message.type === 'error') fail(new Error(`worker ${index}: ${message.error}`));
  });
  worker.once('exit', (code, signal) => fail(new Error(`worker ${index} exited (${code ?? signal})`)));
  worker.send({ type: 'setup', ...setup, seed: setup.seed + index });
  return { worker, ready, done };
}

/** Runs the trial in `procs` worker processes; resolves the merged result. `window.start()` and
 * `window.end()`, if given, are called when the workers' windows open and close, as timed from
 * their 'go' here (each worker times its own warm-up, so within a few ms of it). */
export async function multiProcess(procs, setup, window = null) {
  const workers = Array.from({ length: procs }, (_, index) => startWorker(index, setup));
  const timers = [];
  try {
    await Promise.all(workers.map((w) => w.ready));
    for (const { worker } of workers) worker.send({ type: 'go' });
    if (window) {
      timers.push(setTimeout(() => window.start(), setup.warmupSeconds * 1000));
      timers.push(setTimeout(() => window.end(), (setup.warmupSeconds + setup.seconds) * 1000));
    }
    const results = await Promise.all(workers.map((w) => w.done));
    const histogram = new Histogram();
    let opsPerSecond = 0;
    for (const result of results) {
      histogram.merge(new Histogram(result.counts));
      opsPerSecond += result.ops / (result.elapsedNs / 1e9);
    }
    return { opsPerSecond, histogram };
  } finally {
    for (const timer of timers) clearTimeout(timer);
    for (const { worker } of workers) if (worker.exitCode === null && worker.signalCode === null) worker.kill('SIGKILL');
  }
}
