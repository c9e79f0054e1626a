#!/usr/bin/env node
/**
 * The README's bench table, from the raw results of `npm run bench` (BENCH_JSON).
 *
 * Usage: node bench/readme-table.js CURRENT.json [PREVIOUS.json]
 *
 * Responsibility: one row per workload with each system's median rate and its p50 / p99, toondb's
 * ratio to each peer, each system's server CPU per op, key or commit (for runs that measured it:
 * `toondb / Redis / echo`), and (given a previous run) toondb's rate and Redis ratio there, so the
 * README shows what the run printed in fewer rows and a reader can see what moved; then the
 * engine's ceiling (fjall alone), when the run measured it.
 *
 * Invariants: numbers are the run's medians, formatted as the run's own report formats them
 * (report.js); ratios are toondb ÷ peer on the medians, with the range of the rounds' own
 * ratios (rounds of an older run's JSON, which left out failed rounds, are paired in order), never inverted (the workload's unit says whether lower
 * is better, as in the run's legend); a workload missing from the previous run gets an empty cell.
 */

import { readFileSync } from 'node:fs';
import { renderCeiling } from './ceiling.js';
import { formatCpuUs, formatLatency, formatRate, formatRatio, formatRatioWithRange, LOWER_IS_BETTER, roundRatioRange, unitOfRate } from './report.js';

function load(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}

/** `rate (p50 / p99)`; only the rate where latencies were not measured (scan, restart, RSS). */
function cell(summary, unit) {
  if (!summary) return '';
  const rate = formatRate(summary.rate, unit);
  return Number.isFinite(summary.p50Ns) ? `${rate} (${formatLatency(summary.p50Ns)} / ${formatLatency(summary.p99Ns)})` : rate;
}

/** toondb ÷ peer on the medians, with the range of the rounds' own ratios (report.js). */
function ratio(workload, peer) {
  const ours = workload.systems.toondb;
  const theirs = workload.systems[peer];
  if (!ours?.median || !theirs?.median) return '';
  const text = formatRatioWithRange(ours.median.rate / theirs.median.rate, roundRatioRange(ours.rounds ?? [], theirs.rounds ?? []));
  return LOWER_IS_BETTER.has(workload.unit) ? `${text}, lower is better` : text;
}

/** The systems' server CPU per unit of work, `3.14 / 4.39 / 3.31 µs/op` (a dash where one of
 * them was not measured), or '' where none was. */
function serverCpuCell(workload) {
  const systems = ['toondb', 'redis', 'echo'].filter((system) => workload.systems[system]);
  const values = systems.map((system) => workload.systems[system].median?.serverCpuUs);
  if (!values.some(Number.isFinite)) return '';
  return `${values.map(formatCpuUs).join(' / ')} µs/${unitOfRate(workload.unit)}`;
}

function previousCell(workload) {
  const ours = workload?.systems.toondb?.median;
  if (!ours) return '';
  const redis = workload.systems.redis?.median;
  return formatRate(ours.rate, workload.unit) + (redis ? ` (${formatRatio(ours.rate / redis.rate)})` : '');
}

function main([currentPath, previousPath]) {
  if (!currentPath) throw new Error('usage: node bench/readme-table.js CURRENT.json [PREVIOUS.json]');
  const current = load(currentPath);
  const previous = previousPath ? new Map(load(previousPath).workloads.map((w) => [w.id, w])) : null;
  const header = ['Workload', 'toondb (p50 / p99)', 'Redis (p50 / p99)', 'echo (p50 / p99)', 'toondb ÷ Redis', 'toondb ÷ echo'];
  // Runs before the Server CPU column (d072465) have none: the README's older tables stay as they were.
  const cpu = current.workloads.some((w) => serverCpuCell(w) !== '');
  if (cpu) header.push('server CPU: toondb / Redis / echo');
  if (previous) header.push('previous run: toondb (÷ Redis)');
  const lines = [`| ${header.join(' | ')} |`, `|---|${header.slice(1).map(() => '---:').join('|')}|`];
  for (const w of current.workloads) {
    const cells = [w.title, cell(w.systems.toondb?.median, w.unit), cell(w.systems.redis?.median, w.unit),
      cell(w.systems.echo?.median, w.unit), ratio(w, 'redis'), ratio(w, 'echo')];
    if (cpu) cells.push(serverCpuCell(w));
    if (previous) cells.push(previousCell(previous.get(w.id)));
    lines.push(`| ${cells.join(' | ')} |`);
  }
  console.log(lines.join('\n'));
  if (current.ceiling) console.log(`\n${renderCeiling(current.ceiling)}`);
}

main(process.argv.slice(2));
