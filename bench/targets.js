/**
 * The performance targets, checked against the reported medians.
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

/** Each target: a label, the measured value, its display, and the comparison. `ceiling` is
 * fjall alone (ceiling.js) or null. */
function targets(results, knobs, ceiling) {
  const r = results;
  const restartLabel = knobs.bigKeys === FULL_BIG_KEYS
    ? 'restart after loading 1M keys (journal past the last flush) < 2000 ms'
    : `restart after loading ${knobs.bigKeys} keys (journal past the last flush) < 2000 ms (the target is for 1M keys)`;
  const vs = (id, peer, unit) => (value) => `${formatRatio(value)} `
    + `(toondb ${formatRate(rateOf(r, id, 'toondb'), unit)} vs ${SYSTEM_NAMES[peer]} ${formatRate(rateOf(r, id, peer), unit)})`;
  return [
    { label: 'GET, 256 in flight, 1 conn ≥ 1.2× Redis', value: r.ratio('get-256', 'redis'), min: 1.2, show: vs('get-256', 'redis', 'ops/s') },
    { label: 'GET, 256 in flight, 1 conn ≥ 0.8× echo', value: r.ratio('get-256', 'echo'), min: 0.8, show: vs('get-256', 'echo', 'ops/s') },
    {
      label: 'sequential GET (1 in flight) p50 round trip ≤ 1.3× echo',
      value: p50Of(r, 'get-1', 'toondb') / p50Of(r, 'get-1', 'echo'),
      max: 1.3,
      show: (v) => `${formatRatio(v)} (toondb ${formatLatency(p50Of(r, 'get-1', 'toondb'))} vs echo ${formatLatency(p50Of(r, 'get-1', 'echo'))})`,
    },
    {
      label: 'durable PUT (sync), 256 in flight ≥ 1.0× Redis (appendfsync always)',
      value: r.ratio('durable-put-256', 'redis'),
      min: 1.0,
      show: vs('durable-put-256', 'redis', 'commits/s'),
    },
    {
      label: 'durable PUT: 256 writers ≥ 30× one sequential writer (group commit)',
      value: rateOf(r, 'durable-put-256', 'toondb') / rateOf(r, 'durable-put-1', 'toondb'),
      min: 30,
      show: (v) => `${formatRatio(v)} (256 writers ${formatRate(rateOf(r, 'durable-put-256', 'toondb'), 'commits/s')} `
        + `vs 1 writer ${formatRate(rateOf(r, 'durable-put-1', 'toondb'), 'commits/s')})`,
    },
    { label: 'getBatch ≥ 1M keys/s', value: rateOf(r, 'getBatch-100', 'toondb'), min: 1e6, show: (v) => formatRate(v, 'keys/s') },
    {
      label: 'putBatch ≥ 1M keys/s',
      value: rateOf(r, 'putBatch-100', 'toondb'),
      min: 1e6,
      show: (v) => formatRate(v, 'keys/s') + (ceiling ? ` (fjall alone, no daemon: ${formatRate(ceiling.keysPerSecond, 'keys/s')})` : ''),
    },
    { label: 'scan ≥ 2M keys/s', value: rateOf(r, 'scan', 'toondb'), min: 2e6, show: (v) => formatRate(v, 'keys/s') },
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
