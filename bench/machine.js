/**
 * What the bench ran on: CPU, cores, RAM, OS, Node, Redis and toondb versions, and which code:
 * the git commit (and whether the tree had changes), when, and whether the build is older than
 * its sources (`npm run bench` does not rebuild).
 *
 * Responsibility: describe the machine once, as data (for BENCH_JSON) and as the lines printed
 * above the table, so every published number carries its context.
 */

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { arch, availableParallelism, cpus, release, totalmem, type } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './servers.js';

function osName() {
  try {
    const pretty = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1];
    if (pretty) return `${pretty} (${type()} ${release()}, ${arch()})`;
  } catch {
    // not Linux, or no os-release: the kernel line below is enough
  }
  return `${type()} ${release()} (${arch()})`;
}

function toondbVersion() {
  return JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;
}

function git(args) {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null; // not a checkout, or no git
  }
}

/** Test sources, which the build does not include (`tests.rs`, `*_tests.rs`). */
const TEST_SOURCE = /(^|_)tests\.rs$/;

/** Newest modification time (ms) of the non-test files under `dir` whose names end with one of
 * `suffixes`. */
function newestMs(dir, suffixes) {
  let newest = 0;
  for (const entry of readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !suffixes.some((suffix) => entry.name.endsWith(suffix)) || TEST_SOURCE.test(entry.name)) continue;
    // parentPath from Node 20.12, path before it.
    newest = Math.max(newest, statSync(join(entry.parentPath ?? entry.path, entry.name)).mtimeMs);
  }
  return newest;
}

/** Which builds are older than their sources: measuring them measures other code. */
function staleBuilds() {
  try {
    return staleBuildsOrThrow();
  } catch (error) {
    return [`(not checked: ${error.message})`]; // e.g. a Node 20 without recursive readdir
  }
}

function staleBuildsOrThrow() {
  const stale = [];
  const built = (path) => { try { return statSync(join(ROOT, path)).mtimeMs; } catch { return 0; } };
  const sources = Math.max(...['protocol', 'daemon', 'ipc-client', 'bin'].map((dir) => newestMs(dir, ['.ts'])));
  if (built('dist/ipc-client/index.js') < sources) stale.push('dist/ (npm run build:ts)');
  if (built('engine/index.node') < newestMs('engine/src', ['.rs'])) stale.push('engine/index.node (npm run build:engine)');
  return stale;
}

export function describeMachine(redisVersion) {
  const cpuList = cpus();
  const status = git(['status', '--porcelain', '--untracked-files=no']);
  return {
    cpuModel: cpuList[0]?.model?.trim() || 'unknown',
    logicalCores: availableParallelism(),
    ramGiB: totalmem() / 2 ** 30,
    os: osName(),
    node: process.version,
    redis: redisVersion ?? 'not installed',
    toondb: toondbVersion(),
    commit: git(['rev-parse', '--short', 'HEAD']) ?? 'unknown',
    treeChanged: status === null ? null : status.length > 0,
    measuredAt: new Date().toISOString(),
    staleBuilds: staleBuilds(),
  };
}

export function formatMachine(machine) {
  return [
    `CPU:    ${machine.cpuModel}, ${machine.logicalCores} logical cores`,
    `RAM:    ${machine.ramGiB.toFixed(1)} GiB`,
    `OS:     ${machine.os}`,
    `Node:   ${machine.node}`,
    `Redis:  ${machine.redis}`,
    `toondb: ${machine.toondb} at ${machine.commit}${machine.treeChanged ? ' (with uncommitted changes)' : ''}, ${machine.measuredAt}`,
    ...(machine.staleBuilds?.length ? [`WARNING: older than their sources, so not what is measured as committed: ${machine.staleBuilds.join(', ')}`] : []),
  ].join('\n');
}
