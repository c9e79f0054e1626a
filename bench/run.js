#!/usr/bin/env node
/**
 * `npm run bench`: toondb against Redis and a bare Node echo daemon, on this machine.
 *
 * Responsibility: wiring only. Read the knobs (knobs.js), make sure redis-server exists, print
 * the machine, measure fjall alone when putBatch runs (ceiling.js), run the closed-loop suites
 * ('fast', then 'sync') and the big suite, then print one markdown table, the engine's ceiling,
 * the issue's targets (PASS/FAIL/SKIP) and any warnings toondbd logged; optionally write
 * everything as JSON (BENCH_JSON).
 *
 * Invariants:
 * - installCleanup() runs first: no server, worker or temp dir outlives the bench, whatever
 *   way it ends.
 * - stdout carries only the report; progress and apt-get output go to stderr.
 * - Any failed trial ends the run with exit code 1 and a message naming the workload, system
 *   and round; a missed target does not (it is a measurement, reported as FAIL).
 */

import { writeFileSync } from 'node:fs';
import { runBigSuite } from './big-suite.js';
import { measureFjallCeiling, renderCeiling } from './ceiling.js';
import { runClosedLoopSuite } from './closed-loop-suite.js';
import { progress } from './context.js';
import { readKnobs, selectWorkloads } from './knobs.js';
import { describeMachine, formatMachine } from './machine.js';
import { renderTable, Results, tableLegend } from './report.js';
import { ensureRedis, installCleanup, redisVersion } from './servers.js';
import { evaluateTargets, renderTargets } from './targets.js';
import { WORKLOADS } from './workloads.js';

const CLOSED_LOOP_CONFIGS = ['fast', 'sync'];

function describeKnobs(knobs) {
  return `Knobs:  BENCH_SECONDS=${knobs.seconds} BENCH_WARMUP_SECONDS=${knobs.warmupSeconds} BENCH_ROUNDS=${knobs.rounds} `
    + `BENCH_KEYS=${knobs.keys} BENCH_BIG_KEYS=${knobs.bigKeys}${knobs.only ? ` BENCH_ONLY=${knobs.only.join(',')}` : ''}`
    + (knobs.redisAutoPipeline ? ' BENCH_REDIS_AUTOPIPELINE=1' : '');
}

/** Identical notes (the same warning from several rounds) collapse into one line. */
function dedupe(notes) {
  const counts = new Map();
  for (const note of notes) counts.set(note, (counts.get(note) ?? 0) + 1);
  return [...counts].map(([note, times]) => (times > 1 ? `${note} (in ${times} server runs)` : note));
}

async function main() {
  installCleanup();
  const knobs = readKnobs();
  const workloads = selectWorkloads(WORKLOADS, knobs.only);
  ensureRedis();
  const machine = await describeMachine(redisVersion());
  console.log('# toondb bench\n');
  console.log(formatMachine(machine));
  console.log(`${describeKnobs(knobs)}\n`);

  const startedMs = Date.now();
  const results = new Results();
  const notes = [];
  const ceiling = workloads.some((w) => w.id === 'putBatch-100') ? measureFjallCeiling(knobs) : null;
  for (const config of CLOSED_LOOP_CONFIGS) {
    const list = workloads.filter((w) => w.config === config);
    if (list.length) await runClosedLoopSuite(config, list, knobs, results, notes);
  }
  const big = workloads.filter((w) => w.config === 'big');
  if (big.length) await runBigSuite(big, knobs, results, notes);
  progress(`== done in ${((Date.now() - startedMs) / 1000).toFixed(0)} s`);

  console.log(renderTable(workloads, results));
  console.log(`\n${tableLegend(workloads, knobs)}\n`);
  if (ceiling) console.log(`## Engine ceiling\n\n${renderCeiling(ceiling)}\n`);
  const targets = evaluateTargets(results, knobs, ceiling);
  console.log('## Targets\n');
  console.log(renderTargets(targets));
  const uniqueNotes = dedupe(notes);
  if (uniqueNotes.length) console.log(`\n## Notes\n\n${uniqueNotes.map((note) => `- ${note}`).join('\n')}`);

  if (knobs.jsonPath) {
    const report = { machine, knobs, durationMs: Date.now() - startedMs, workloads: results.toJSON(workloads), ceiling, targets, notes: uniqueNotes };
    writeFileSync(knobs.jsonPath, `${JSON.stringify(report, null, 2)}\n`);
    progress(`raw results written to ${knobs.jsonPath}`);
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`\nbench FAILED: ${error.message}`);
    if (error.cause instanceof Error && error.cause.stack) console.error(`\ncaused by: ${error.cause.stack}`);
    process.exit(1);
  },
);
