/**
 * What the bench ran on: CPU, cores, RAM, OS, Node, Redis and toondb versions, the file system
 * the servers' data dirs are on (the durable rows fsync there), how busy the machine was as the
 * run began (load average, and the CPU time the hypervisor stole over a second), and which code:
 * the git commit (and whether the tree had changes), when, and whether the build is older than
 * its sources (`npm run bench` does not rebuild).
 *
 * Responsibility: describe the machine once, as data (for BENCH_JSON) and as the lines printed
 * above the table, so every published number carries its context.
 */

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { arch, availableParallelism, cpus, loadavg, release, tmpdir, totalmem, type } from 'node:os';
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

/** How long the start of a run samples the CPU time stolen from this VM. */
const STEAL_SAMPLE_MS = 1_000;

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
  const modified = (path) => { try { return statSync(join(ROOT, path)).mtimeMs; } catch { return 0; } };
  // engine/*.ts (the loader, compiled into dist/engine) without engine/target's tree.
  const engineTs = readdirSync(join(ROOT, 'engine')).filter((name) => name.endsWith('.ts')).map((name) => modified(join('engine', name)));
  const sources = Math.max(...engineTs, ...['protocol', 'daemon', 'ipc-client', 'bin'].map((dir) => newestMs(dir, ['.ts'])));
  if (modified('dist/ipc-client/index.js') < sources) stale.push('dist/ (npm run build:ts)');
  const crate = Math.max(newestMs('engine/src', ['.rs']), ...['Cargo.toml', 'Cargo.lock', 'build.rs'].map((name) => modified(join('engine', name))));
  if (modified('engine/index.node') < crate) stale.push('engine/index.node (npm run build:engine)');
  return stale;
}

/** The file system holding `dir` (the mount with the longest matching path in /proc/mounts):
 * its type and device, or null off Linux. */
function fileSystemOf(dir) {
  try {
    let best = null;
    for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const [device, mountPoint, fsType] = line.split(' ');
      if (!mountPoint || !(dir === mountPoint || dir.startsWith(mountPoint.endsWith('/') ? mountPoint : `${mountPoint}/`))) continue;
      if (!best || mountPoint.length > best.mountPoint.length) best = { device, mountPoint, fsType };
    }
    return best;
  } catch {
    return null;
  }
}

/** Share of all CPU time (0-1) the hypervisor stole over `ms` (/proc/stat), or null off Linux. */
async function stealShare(ms) {
  const sample = () => readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  try {
    const before = sample();
    await sleep(ms);
    const after = sample();
    const delta = after.map((value, i) => value - before[i]);
    const total = delta.reduce((a, b) => a + b, 0);
    return total > 0 ? (delta[7] ?? 0) / total : null; // user nice system idle iowait irq softirq steal
  } catch {
    return null;
  }
}

export async function describeMachine(redisVersion) {
  const cpuList = cpus();
  const status = git(['status', '--porcelain', '--untracked-files=no']);
  const fileSystem = fileSystemOf(tmpdir());
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
    dataFileSystem: fileSystem === null ? null : `${fileSystem.fsType} on ${fileSystem.device} (${fileSystem.mountPoint})`,
    loadAverage1m: loadavg()[0],
    cpuStolenShare: await stealShare(STEAL_SAMPLE_MS),
  };
}

export function formatMachine(machine) {
  const busy = [`load ${machine.loadAverage1m?.toFixed(2) ?? '?'} (1 min)`];
  if (typeof machine.cpuStolenShare === 'number') busy.push(`${(machine.cpuStolenShare * 100).toFixed(1)} % of CPU time stolen by the hypervisor`);
  return [
    `CPU:    ${machine.cpuModel}, ${machine.logicalCores} logical cores`,
    `RAM:    ${machine.ramGiB.toFixed(1)} GiB`,
    `OS:     ${machine.os}`,
    `Node:   ${machine.node}`,
    `Redis:  ${machine.redis}`,
    ...(machine.dataFileSystem ? [`Data:   ${machine.dataFileSystem}`] : []),
    ...(machine.loadAverage1m !== undefined ? [`Start:  ${busy.join(', ')}`] : []),
    `toondb: ${machine.toondb} at ${machine.commit}${machine.treeChanged ? ' (with uncommitted changes)' : ''}, ${machine.measuredAt}`,
    ...(machine.staleBuilds?.length ? [`WARNING: older than their sources, so not what is measured as committed: ${machine.staleBuilds.join(', ')}`] : []),
  ].join('\n');
}
