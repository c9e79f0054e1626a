/**
 * The storage engine's own ceiling for the putBatch workload: fjall alone, measured in the same
 * run, so the table's putBatch row can be read against what the engine does with no daemon,
 * client, napi or row cache in the way.
 *
 * Responsibility: build engine/examples/fjall_ceiling.rs (cargo, release, without the napi
 * surface), run it `rounds` times with the putBatch workload's shape (batches of BATCH_KEYS
 * random keys over the preloaded keyspace, BENCH_SECONDS each) and report the median run.
 *
 * Invariants: runs before the suites, so a failure to build or run ends the bench before it
 * spends its time; cargo's output goes to stderr with the progress log, stdout stays the report.
 */

import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { progress } from './context.js';
import { median } from './stats.js';
import { BATCH_KEYS, KEY_PREFIX, VALUE_BYTES } from './workloads.js';

const ENGINE_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'engine');
const EXAMPLE = 'fjall_ceiling';
const CARGO_ARGS = ['--release', '--no-default-features', '--features', 'ceiling', '--example', EXAMPLE, '--quiet'];

/** { keysPerSecond, writerCpuUsPerKey, processCpuUsPerKey, batchKeys, keySpace, runs } */
export function measureFjallCeiling(knobs) {
  progress(`== fjall alone (engine/examples/${EXAMPLE}.rs): batches of ${BATCH_KEYS} over ${knobs.keys} keys`);
  try {
    execFileSync('cargo', ['build', ...CARGO_ARGS], { cwd: ENGINE_DIR, stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (error) {
    const why = error.code === 'ENOENT' ? 'cargo is not on PATH (rustup puts it in ~/.cargo/bin)' : error.message;
    throw new Error(`building engine/examples/${EXAMPLE}.rs failed: ${why}`, { cause: error });
  }
  const runs = [];
  for (let round = 0; round < knobs.rounds; round++) {
    const args = [knobs.seconds, BATCH_KEYS, knobs.keys, VALUE_BYTES, KEY_PREFIX].map(String);
    const line = execFileSync('cargo', ['run', ...CARGO_ARGS, '--', ...args],
      { cwd: ENGINE_DIR, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const run = JSON.parse(line.trim());
    progress(`  round ${round + 1}/${knobs.rounds}: ${Math.round(run.keysPerSecond)} keys/s, `
      + `${run.writerCpuUsPerKey} µs writer CPU and ${run.processCpuUsPerKey} µs process CPU per key`);
    runs.push(run);
  }
  const pick = (field) => median(runs.map((run) => run[field]));
  return {
    keysPerSecond: pick('keysPerSecond'),
    writerCpuUsPerKey: pick('writerCpuUsPerKey'),
    processCpuUsPerKey: pick('processCpuUsPerKey'),
    batchKeys: BATCH_KEYS,
    keySpace: knobs.keys,
    runs: runs.length,
  };
}

/** The report's lines for the ceiling, under the table. */
export function renderCeiling(ceiling) {
  const rate = `${(ceiling.keysPerSecond / 1e3).toFixed(0)}k keys/s`;
  return `fjall alone, one writer thread, batches of ${ceiling.batchKeys} random keys over ${ceiling.keySpace} `
    + `(median of ${ceiling.runs}): ${rate}; per key ${ceiling.writerCpuUsPerKey.toFixed(2)} µs of the writer's CPU and `
    + `${ceiling.processCpuUsPerKey.toFixed(2)} µs of the whole process's (its flushes and compactions included). `
    + 'This bounds the putBatch row: the daemon adds its own work per key on top.';
}
