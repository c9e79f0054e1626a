/**
 * Shared pieces of the two suites (closed-loop and big): A/B ordering, the progress log, and
 * turning a failure into an error that says what failed and what the server was doing.
 *
 * Invariants:
 * - Round r runs the systems rotated by r (A B C, B C A, C A B), and reversed in every second
 *   full cycle (C B A, A C B, B A C); with two systems that is A B, B A, B A, A B. Over n rounds
 *   each of n systems runs once in each position, so drift over time (page cache, compaction, heat) does not
 *   systematically favour whichever system runs first or last, and over 2n rounds each follows
 *   each other system as often as it precedes it.
 * - A failure is never swallowed: `failure()` wraps it with the workload, system and round,
 *   whether the server process is still alive, and the tail of the server's log; the original
 *   error stays attached as `cause`.
 * - Progress goes to stderr; stdout carries only the report.
 */

import { readFileSync } from 'node:fs';
import { exited, tail } from './servers.js';

/** pino's numeric level for warn (error 50, fatal 60). */
const WARN_LEVEL = 40;

export function abOrder(systems, round) {
  const n = systems.length;
  const rotated = [...systems.slice(round % n), ...systems.slice(0, round % n)];
  return Math.floor(round / n) % 2 === 0 ? rotated : rotated.reverse();
}

export function progress(line) {
  process.stderr.write(`${line}\n`);
}

function serverState(server) {
  if (!server) return '';
  const { child } = server;
  const state = exited(child) ? `; the ${server.kind} server had exited (${child.exitCode ?? child.signalCode})` : '';
  return state + (server.logFile ? tail(server.logFile, 20) : '');
}

/** How long a failing trial waits for a dying server's exit to be observed, so the message can
 * say that it died (the client usually sees the closed socket first). */
const EXIT_SETTLE_MS_MAX = 300;

/** Resolves once `server` has exited or EXIT_SETTLE_MS_MAX has passed. */
function settled(server) {
  const child = server?.child;
  if (!child || exited(child)) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, EXIT_SETTLE_MS_MAX);
    child.once('exit', () => { clearTimeout(timer); resolve(); });
  });
}

/** `failure()` after giving a dying server a moment to be seen as exited. */
export async function failureSettled(what, server, error) {
  await settled(server);
  return failure(what, server, error);
}

/** An Error naming `what` failed on `server`, with the server's state and log appended. */
export function failure(what, server, error) {
  const reason = error instanceof Error ? `${error.code ? `${error.code}: ` : ''}${error.message}` : String(error);
  return new Error(`${what} failed: ${reason}${serverState(server)}`, { cause: error });
}

/** Runs `fn(driver)` on a fresh connection to `server`, closing it whatever happens. */
export async function withDriver(makeDriver, server, fn) {
  const driver = await makeDriver({ kind: server.kind, socketPath: server.socketPath });
  let result;
  try {
    result = await fn(driver);
  } catch (error) {
    await driver.close().catch(() => undefined); // the error that matters is `error`
    throw error;
  }
  await driver.close();
  return result;
}

/** What a toondbd logged at level warn or above (pino JSON lines), grouped by message:
 * [{ message, count, level }]. Read before the server's dir is removed. */
export function toondbWarnings(server) {
  if (server.kind !== 'toondb' || !server.logFile) return [];
  let text;
  try {
    text = readFileSync(server.logFile, 'utf8');
  } catch {
    return [];
  }
  const groups = new Map();
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let entry;
    try {
      entry = JSON.parse(line);
    } catch {
      entry = { level: 50, msg: line }; // not pino: stderr output such as a crash trace
    }
    if (!(entry.level >= WARN_LEVEL)) continue;
    const message = `${entry.msg ?? ''}${entry.code ? ` (${entry.code})` : ''}${entry.err?.message ? `: ${entry.err.message}` : ''}`;
    const group = groups.get(message) ?? { message, count: 0, level: entry.level };
    group.count++;
    groups.set(message, group);
  }
  return [...groups.values()];
}

/** A note when a server accepted readiness probes and never answered them (see waitReady);
 * waits for the server's last probes to finish first (bounded by the probe timeout). */
export async function hungProbeNote(server, when) {
  if (!server?.probes) return null;
  await server.probes.settled();
  if (server.probes.hung === 0) return null;
  return `${server.kind} ${when}: ${server.probes.hung} readiness probe(s) connected but got no reply within the probe timeout `
    + '(the server accepted the connection and never answered it)';
}
