/**
 * Results and the printed report: per-round trials, their medians, the markdown table and the
 * number formats.
 *
 * Invariants:
 * - A trial is `{ rate, p50Ns, p99Ns }`: `rate` in the workload's unit (ops/s, keys/s,
 *   commits/s, ms or MiB); a latency that was not measured is NaN and prints as "—". A trial
 *   may also carry `serverCpuUs`, the server's CPU time per unit of its rate (µs per op, key or
 *   commit; all its threads, measured over the trial's window).
 * - Reported values are medians across rounds, each taken separately (rate, p50, p99), so one
 *   disturbed round cannot move them.
 * - Ratios are always toondb ÷ peer, on the reported medians, with the range of the ratios of
 *   the rounds (each round's toondb ÷ that round's peer, runs of one round paired) beside them,
 *   so a ratio near a target line shows how far the rounds spread. For units where lower is
 *   better (ms, MiB) the legend under the table says so; a ratio is never inverted silently.
 */

import { median } from './stats.js';

export const LOWER_IS_BETTER = new Set(['ms', 'MiB']);
const PEERS = [['redis', 'Redis'], ['echo', 'echo']];
export const SYSTEM_NAMES = { toondb: 'toondb', redis: 'Redis', echo: 'echo' };

export class Results {
  #trials = new Map();

  record(workloadId, system, round, trial) {
    const key = `${workloadId}\u0000${system}`;
    if (!this.#trials.has(key)) this.#trials.set(key, []);
    this.#trials.get(key)[round] = trial;
  }

  trials(workloadId, system) {
    return (this.#trials.get(`${workloadId}\u0000${system}`) ?? []).filter(Boolean);
  }

  /** Medians across rounds, or null when the pair was not measured. */
  summary(workloadId, system) {
    const trials = this.trials(workloadId, system);
    if (trials.length === 0) return null;
    return {
      rate: median(trials.map((t) => t.rate)),
      p50Ns: median(trials.map((t) => t.p50Ns)),
      p99Ns: median(trials.map((t) => t.p99Ns)),
      serverCpuUs: median(trials.map((t) => t.serverCpuUs ?? NaN)),
      rounds: trials.length,
    };
  }

  /** toondb ÷ peer on the median rate (NaN if either is missing). */
  ratio(workloadId, peer) {
    return (this.summary(workloadId, 'toondb')?.rate ?? NaN) / (this.summary(workloadId, peer)?.rate ?? NaN);
  }

  /** The lowest and highest of the rounds' own toondb ÷ peer ratios, or null with fewer than
   * two rounds that measured both. */
  ratioRange(workloadId, peer) {
    const ours = this.#trials.get(`${workloadId}\u0000toondb`) ?? [];
    const theirs = this.#trials.get(`${workloadId}\u0000${peer}`) ?? [];
    return roundRatioRange(ours, theirs);
  }

  toJSON(workloads) {
    return workloads.map((w) => ({
      id: w.id, title: w.title, config: w.config, unit: w.unit,
      // Indexed by round (null for a round that did not measure it), so rounds pair up.
      systems: Object.fromEntries(w.systems.map((s) => [s, {
        median: this.summary(w.id, s),
        rounds: Array.from(this.#trials.get(`${w.id}\u0000${s}`) ?? [], (trial) => trial ?? null),
      }])),
    }));
  }
}

/** [min, max] of ours[r].rate ÷ theirs[r].rate over the rounds r both measured (arrays indexed by
 * round, holes allowed), or null with fewer than two such rounds. */
export function roundRatioRange(ours, theirs) {
  const ratios = [];
  for (let round = 0; round < Math.min(ours.length, theirs.length); round++) {
    if (ours[round] && theirs[round]) ratios.push(ours[round].rate / theirs[round].rate);
  }
  return ratios.length < 2 ? null : [Math.min(...ratios), Math.max(...ratios)];
}

/** `1.29× (1.19-1.35)`: the ratio, and the range of the rounds' own ratios when known. */
export function formatRatioWithRange(ratio, range) {
  const text = formatRatio(ratio);
  return range && Number.isFinite(ratio) ? `${text} (${range[0].toFixed(2)}-${range[1].toFixed(2)})` : text;
}

const grouped = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

export function formatRate(value, unit) {
  if (!Number.isFinite(value)) return '—';
  if (unit === 'MiB') return `${value.toFixed(1)} MiB`;
  if (unit === 'ms') return `${grouped.format(value)} ms`;
  return `${grouped.format(value)} ${unit}`;
}

export function formatLatency(ns) {
  if (!Number.isFinite(ns)) return '—';
  if (ns < 1e6) return `${(ns / 1e3).toFixed(ns < 1e5 ? 1 : 0)} µs`;
  if (ns < 1e9) return `${(ns / 1e6).toFixed(ns < 1e8 ? 2 : 0)} ms`;
  return `${(ns / 1e9).toFixed(2)} s`;
}

export function formatRatio(ratio) {
  return Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : '—';
}

export function formatTrial(trial, unit) {
  return `${formatRate(trial.rate, unit)}, p50 ${formatLatency(trial.p50Ns)}, p99 ${formatLatency(trial.p99Ns)}`;
}

/** What one unit of a rate is: `op` for ops/s, `key` for keys/s, `commit` for commits/s. */
export function unitOfRate(unit) {
  return unit.replace(/s\/s$/, '');
}

/** `3.12`, or `31.2` from 10 up: server CPU in µs; "—" where not measured. */
export function formatCpuUs(us) {
  return Number.isFinite(us) ? us.toFixed(us < 10 ? 2 : 1) : '—';
}

/** `3.12 µs/op`: the server's CPU per unit of a rate (op, key, commit); "—" where not measured. */
function formatServerCpu(us, unit) {
  return Number.isFinite(us) ? `${formatCpuUs(us)} µs/${unitOfRate(unit)}` : '—';
}

function row(cells) {
  return `| ${cells.join(' | ')} |`;
}

/** One markdown table: a row per (workload, system); ratios on the toondb row. */
export function renderTable(workloads, results) {
  const header = ['Workload', 'System', 'Result (median)', 'p50', 'p99', 'Server CPU', 'toondb ÷ Redis', 'toondb ÷ echo'];
  const lines = [row(header), row(header.map((_, i) => (i >= 2 ? '---:' : '---')))];
  for (const workload of workloads) {
    workload.systems.forEach((system, index) => {
      const summary = results.summary(workload.id, system);
      const ratios = PEERS.map(([peer]) => (system === 'toondb' && workload.systems.includes(peer)
        ? formatRatioWithRange(results.ratio(workload.id, peer), results.ratioRange(workload.id, peer)) : ''));
      lines.push(row([
        index === 0 ? `\`${workload.id}\` ${workload.title}` : '',
        SYSTEM_NAMES[system],
        summary ? formatRate(summary.rate, workload.unit) : 'not measured',
        summary ? formatLatency(summary.p50Ns) : '—',
        summary ? formatLatency(summary.p99Ns) : '—',
        summary ? formatServerCpu(summary.serverCpuUs, workload.unit) : '—',
        ...ratios,
      ]));
    });
  }
  return lines.join('\n');
}

export function tableLegend(workloads, knobs) {
  const lowerBetter = workloads.filter((w) => LOWER_IS_BETTER.has(w.unit)).map((w) => `\`${w.id}\``);
  const lines = [
    `Medians over ${knobs.rounds} round(s), the systems' order rotating from round to round; ${knobs.seconds} s window after ${knobs.warmupSeconds} s warm-up per trial.`,
    'Ratios are toondb ÷ peer on the medians: above 1 means toondb is faster for rates; in brackets the lowest and highest of the rounds\' own ratios.',
  ];
  if (lowerBetter.length) lines.push(`For ${lowerBetter.join(', ')} lower is better, so a ratio below 1 favours toondb.`);
  lines.push('Server CPU is the server process\'s CPU time (all its threads, from /proc) over the measured window per unit of the result (per op, key or commit);',
    'for multi-process rows the window is timed from the workers\' start, within a few ms of theirs. It does not move with the host\'s phase as much as rates do.');
  lines.push('Latency is per operation (per batch call for getBatch/putBatch/bulk load), measured in the client from when the request is sent.',
    'The load is a closed loop (a fixed number in flight, each sending its next request when the last is answered), so a stall delays the requests not yet sent without being counted in them:',
    'p99s understate what clients arriving at a steady rate would see, the more so for the system that stalls more.');
  return lines.join('\n');
}
