/**
 * The issue's performance targets, checked against the reported medians.
 *
 * Invariants:
 * - Each target reads only medians from Results (the numbers in the table), never a single
 *   round.
 * - A target whose inputs were not measured (BENCH_ONLY) is SKIP, never PASS.
 * - A missed target is reported as FAIL with the measured value; it does not fail the run (the
 *   run fails only when a trial fails).
 */

import { formatLatency, formatRate, formatRatio, SYSTEM_NAMES } from './report.js';

const FULL_BIG_KEYS = 1_000_000;

function rateOf(results, id, system) {
  return results.summary(id, system)?.rate ?? NaN;
}

function p50Of(results, id, system) {
  return results.summary(id, system)?.p50Ns ?? NaN;
}

/** A target read several ways is met only when every reading meets it: the largest of ratios
 * that must stay under a bound, the smallest of ratios that must reach one (NaN, so SKIP, while
 * any reading is unmeasured). */
const worst = (...ratios) => Math.max(...ratios);
const weakest = (...ratios) => Math.min(...ratios);

/** Each target: a label, the measured value, its display, and the comparison. `ceiling` is
 * fjall alone (ceiling.js) or null. */
function targets(results, knobs, ceiling) {
  const r = results;
  const bigCaveat = knobs.bigKeys === FULL_BIG_KEYS ? '' : ` (measured over ${knobs.bigKeys} keys; the target is for 1M)`;
  const restartLabel = `restart after loading ${knobs.bigKeys === FULL_BIG_KEYS ? '1M keys' : `${knobs.bigKeys} keys (the target is for 1M)`} (journal past the last flush) < 2000 ms`;
  // A sequential round trip, read two ways: the median (p50) and the mean (1 / the rate, the
  // table's number; a slow tail moves it and not the median).
  const getP50Ratio = p50Of(r, 'get-1', 'toondb') / p50Of(r, 'get-1', 'echo');
  const getMeanRatio = rateOf(r, 'get-1', 'echo') / rateOf(r, 'get-1', 'toondb');
  // 256 writers two ways: sharing one connection (the requests of one Node process's tasks,
  // which the daemon may fold into one engine call) and each on a connection of its own (only
  // the group commit shares their fsyncs).
  const oneWriter = rateOf(r, 'durable-put-1', 'toondb');
  const sharedRatio = rateOf(r, 'durable-put-256', 'toondb') / oneWriter;
  const ownRatio = rateOf(r, 'durable-put-256-conns', 'toondb') / oneWriter;
  const vs = (id, peer, unit) => (value) => `${formatRatio(value)} `
    + `(toondb ${formatRate(rateOf(r, id, 'toondb'), unit)} vs ${SYSTEM_NAMES[peer]} ${formatRate(rateOf(r, id, peer), unit)})`;
  return [
    { label: 'GET, 256 in flight, 1 conn ≥ 1.2× Redis', value: r.ratio('get-256', 'redis'), min: 1.2, show: vs('get-256', 'redis', 'ops/s') },
    { label: 'GET, 256 in flight, 1 conn ≥ 0.8× echo', value: r.ratio('get-256', 'echo'), min: 0.8, show: vs('get-256', 'echo', 'ops/s') },
    {
      label: 'sequential GET (1 in flight) round trip ≤ 1.3× echo, at the median and on average',
      value: worst(getP50Ratio, getMeanRatio),
      max: 1.3,
      show: () => `p50 ${formatRatio(getP50Ratio)} (toondb ${formatLatency(p50Of(r, 'get-1', 'toondb'))} vs echo ${formatLatency(p50Of(r, 'get-1', 'echo'))}), `
        + `mean ${formatRatio(getMeanRatio)} (toondb ${formatRate(rateOf(r, 'get-1', 'toondb'), 'ops/s')} vs echo ${formatRate(rateOf(r, 'get-1', 'echo'), 'ops/s')})`,
    },
    {
      label: 'durable PUT (sync), 256 in flight ≥ 1.0× Redis (appendfsync always)',
      value: r.ratio('durable-put-256', 'redis'),
      min: 1.0,
      show: vs('durable-put-256', 'redis', 'commits/s'),
    },
    {
      label: 'durable PUT: 256 writers ≥ 30× one sequential writer (group commit), on 1 conn and on 256 conns',
      value: weakest(sharedRatio, ownRatio),
      min: 30,
      show: () => `1 conn ${formatRatio(sharedRatio)} (${formatRate(rateOf(r, 'durable-put-256', 'toondb'), 'commits/s')}), `
        + `256 conns ${formatRatio(ownRatio)} (${formatRate(rateOf(r, 'durable-put-256-conns', 'toondb'), 'commits/s')}; `
        + `the echo daemon, storing nothing, ${formatRatio(rateOf(r, 'durable-put-256-conns', 'echo') / oneWriter)}), `
        + `vs 1 writer ${formatRate(oneWriter, 'commits/s')}`,
    },
    { label: 'getBatch ≥ 1M keys/s', value: rateOf(r, 'getBatch-100', 'toondb'), min: 1e6, show: (v) => formatRate(v, 'keys/s') },
    {
      label: 'putBatch ≥ 1M keys/s',
      value: rateOf(r, 'putBatch-100', 'toondb'),
      min: 1e6,
      show: (v) => formatRate(v, 'keys/s') + (ceiling ? ` (fjall alone, no daemon: ${formatRate(ceiling.keysPerSecond, 'keys/s')})` : ''),
    },
    { label: `scan ≥ 2M keys/s${bigCaveat}`, value: rateOf(r, 'scan', 'toondb'), min: 2e6, show: (v) => formatRate(v, 'keys/s') },
    { label: restartLabel, value: rateOf(r, 'restart', 'toondb'), below: 2000, show: (v) => formatRate(v, 'ms') },
  ];
}

function verdict({ value, min, max, below }) {
  if (!Number.isFinite(value)) return 'SKIP';
  if (min !== undefined) return value >= min ? 'PASS' : 'FAIL';
  if (max !== undefined) return value <= max ? 'PASS' : 'FAIL';
  return value < below ? 'PASS' : 'FAIL';
}

/** [{ label, status: 'PASS'|'FAIL'|'SKIP', value, measured }] */
export function evaluateTargets(results, knobs, ceiling = null) {
  return targets(results, knobs, ceiling).map((target) => {
    const status = verdict(target);
    return { label: target.label, status, value: Number.isFinite(target.value) ? target.value : null,
      measured: status === 'SKIP' ? 'not measured' : target.show(target.value) };
  });
}

export function renderTargets(evaluated) {
  return evaluated.map(({ label, status, measured }) => `${status.padEnd(4)}  ${label}: ${measured}`).join('\n');
}
