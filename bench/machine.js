/**
 * What the bench ran on: CPU, cores, RAM, OS, Node, Redis and toondb versions.
 *
 * Responsibility: describe the machine once, as data (for BENCH_JSON) and as the lines printed
 * above the table, so every published number carries its context.
 */

import { readFileSync } from 'node:fs';
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

export function describeMachine(redisVersion) {
  const cpuList = cpus();
  return {
    cpuModel: cpuList[0]?.model?.trim() || 'unknown',
    logicalCores: availableParallelism(),
    ramGiB: totalmem() / 2 ** 30,
    os: osName(),
    node: process.version,
    redis: redisVersion ?? 'not installed',
    toondb: toondbVersion(),
  };
}

export function formatMachine(machine) {
  return [
    `CPU:    ${machine.cpuModel}, ${machine.logicalCores} logical cores`,
    `RAM:    ${machine.ramGiB.toFixed(1)} GiB`,
    `OS:     ${machine.os}`,
    `Node:   ${machine.node}`,
    `Redis:  ${machine.redis}`,
    `toondb: ${machine.toondb}`,
  ].join('\n');
}
