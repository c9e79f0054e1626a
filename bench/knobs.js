/**
 * The bench's knobs, read once from the environment, and the BENCH_ONLY workload filter.
 *
 *   BENCH_SECONDS         measured window per trial (default 3)
 *   BENCH_WARMUP_SECONDS  unrecorded warm-up before each window (default 1)
 *   BENCH_ROUNDS          A/B rounds per workload; medians are reported (default 3)
 *   BENCH_KEYS            preloaded keyspace of the point/YCSB/batch workloads (default 100000)
 *   BENCH_BIG_KEYS        keys of the bulk load / scan / restart / RSS runs (default 1000000)
 *   BENCH_ONLY            comma-separated workload ids or id prefixes (default: all)
 *   BENCH_JSON            also write the raw results to this path
 *   BENCH_REDIS_AUTOPIPELINE  1 = ioredis auto-pipelining on (read by drivers.js; default off, the faster peer)
 *
 * Invariants: a knob that is set but malformed is an error naming it (never silently the
 * default); a BENCH_ONLY token that selects nothing is an error listing the valid ids.
 */

export const DEFAULT_KNOBS = Object.freeze({
  seconds: 3,
  warmupSeconds: 1,
  rounds: 3,
  keys: 100_000,
  bigKeys: 1_000_000,
});

/** Bounds that keep a typo from starting a day-long run. */
const SECONDS_MAX = 600;
const ROUNDS_MAX = 50;
const KEYS_MAX = 50_000_000;
/** The zipfian chooser needs at least two keys. */
const KEYS_MIN = 2;

function numberKnob(env, name, fallback, { min, max, integer = false }) {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw.replaceAll('_', ''));
  const kind = integer ? 'an integer' : 'a number';
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value)) || value < min || value > max) {
    throw new Error(`${name} must be ${kind} in ${min}..${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/** A 0/1 knob: absent or empty is `fallback`; anything but 0 or 1 is an error naming it. */
function flagKnob(env, name, fallback) {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return fallback;
  if (raw !== '0' && raw !== '1') throw new Error(`${name} must be 0 or 1, got ${JSON.stringify(raw)}`);
  return raw === '1';
}

export function readKnobs(env = process.env) {
  const only = (env.BENCH_ONLY ?? '').split(',').map((token) => token.trim()).filter(Boolean);
  return {
    seconds: numberKnob(env, 'BENCH_SECONDS', DEFAULT_KNOBS.seconds, { min: 0.1, max: SECONDS_MAX }),
    warmupSeconds: numberKnob(env, 'BENCH_WARMUP_SECONDS', DEFAULT_KNOBS.warmupSeconds, { min: 0, max: SECONDS_MAX }),
    rounds: numberKnob(env, 'BENCH_ROUNDS', DEFAULT_KNOBS.rounds, { min: 1, max: ROUNDS_MAX, integer: true }),
    keys: numberKnob(env, 'BENCH_KEYS', DEFAULT_KNOBS.keys, { min: KEYS_MIN, max: KEYS_MAX, integer: true }),
    bigKeys: numberKnob(env, 'BENCH_BIG_KEYS', DEFAULT_KNOBS.bigKeys, { min: KEYS_MIN, max: KEYS_MAX, integer: true }),
    only: only.length ? only : null,
    jsonPath: env.BENCH_JSON?.trim() || null,
    // Read again by drivers.js in each worker (they inherit the environment); checked here,
    // once, and recorded with the results.
    redisAutoPipeline: flagKnob(env, 'BENCH_REDIS_AUTOPIPELINE', false),
  };
}

/** A token that is a workload's id names that workload alone (`get-1` is not also `get-1-x4p`);
 * any other names every workload whose id starts with it (`ycsb`). */
function selects(workloads, token) {
  const exact = workloads.some((workload) => workload.id === token);
  return (workload) => (exact ? workload.id === token : workload.id.startsWith(token));
}

/** The workloads BENCH_ONLY asks for, in their listed order (all of them without it). */
export function selectWorkloads(workloads, only) {
  if (!only) return workloads;
  const matchers = only.map((token) => {
    const matcher = selects(workloads, token);
    if (!workloads.some(matcher)) {
      throw new Error(`BENCH_ONLY: no workload id is or starts with "${token}"; ids: ${workloads.map((w) => w.id).join(', ')}`);
    }
    return matcher;
  });
  return workloads.filter((workload) => matchers.some((matcher) => matcher(workload)));
}
