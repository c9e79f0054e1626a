/**
 * Starting and stopping the servers under test: toondbd, redis-server and the echo daemon.
 *
 * Responsibility: spawn each server on a Unix socket in its own temp dir, wait until it answers,
 * report its pid (for RSS), and make sure nothing outlives the bench.
 *
 * Invariants:
 * - Every child process and temp dir created here is registered before it can leak; one exit
 *   hook (normal exit, Ctrl-C, SIGTERM, uncaught error) SIGKILLs the children still alive and
 *   removes the dirs. `installCleanup()` must be called once by the entry point.
 * - "Ready" means a real request succeeded (toondb ping, Redis PONG, echo hello), not that the
 *   socket file exists; `readyMs` runs from spawn to the first such success, and `probes.hung`
 *   counts probes the server accepted but never answered.
 * - Redis never snapshots (`save ""`) and never rewrites its AOF (`auto-aof-rewrite-percentage
 *   0`): its durability is the append-only file alone, like toondb's journal.
 */

import { execFileSync, fork, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = dirname(HERE);
export const TOONDBD_BIN = join(ROOT, 'dist/bin/toondbd.js');
export const CLIENT_MODULE = join(ROOT, 'dist/ipc-client/index.js');
const ECHO_BIN = join(HERE, 'echo-server.js');

/** How long a server may take to answer its first request. Restart over 1M keys must fit. */
const READY_MS_MAX = 120_000;
const POLL_MS = 5;
/** Bound on one readiness probe, so a server that accepts but never answers cannot hang it. */
const PROBE_MS_MAX = 2_000;
/** Readiness probes outstanding at once (see waitReady). */
const PROBES_IN_FLIGHT_MAX = 4;

const children = new Set();
const dirs = new Set();

export function installCleanup() {
  const cleanup = () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    dirs.clear();
  };
  process.on('exit', cleanup);
  // SIGHUP too (a lost terminal): uncaught, it killed the bench and left the servers running.
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) process.on(signal, () => process.exit(code));
  process.on('uncaughtException', (error) => { console.error(error); process.exit(1); });
  process.on('unhandledRejection', (error) => { console.error(error); process.exit(1); });
}

export function tempDir(label) {
  const dir = mkdtempSync(join(tmpdir(), `toondb-bench-${label}-`));
  dirs.add(dir);
  return dir;
}

export function removeDir(dir) {
  rmSync(dir, { recursive: true, force: true });
  dirs.delete(dir);
}

/** Registers a child so the exit hook kills it; returns it. */
export function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export function exited(child) {
  return child.exitCode !== null || child.signalCode !== null;
}

export async function killHard(child) {
  if (exited(child)) return;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await gone;
}

/**
 * Launches `probe` every POLL_MS (at most PROBES_IN_FLIGHT_MAX at once) until one resolves
 * 'ok'; resolves { readyMs: spawn (`t0`) to that success, probes }. Probes overlap so that
 * one probe stuck on a connection the server accepted but never answers ('hung') delays
 * nothing: readiness is when a ping first succeeds, not when a stuck probe gives up.
 * `probes.hung` keeps counting probes still out at readiness; `probes.settled()` resolves when
 * none is left (at most PROBE_MS_MAX later). Throws with `describe()` if the child dies or
 * READY_MS_MAX passes.
 */
async function waitReady(child, t0, probe, what, describe) {
  const deadline = Date.now() + READY_MS_MAX;
  let readyAt = null;
  let inFlight = 0;
  let wake = () => undefined;
  const idle = [];
  const probes = {
    hung: 0,
    settled: () => (inFlight === 0 ? Promise.resolve() : new Promise((resolve) => idle.push(resolve))),
  };
  const launch = () => {
    inFlight++;
    probe().catch(() => 'fail').then((outcome) => {
      inFlight--;
      if (outcome === 'ok') { readyAt ??= process.hrtime.bigint(); wake(); }
      if (outcome === 'hung') probes.hung++;
      if (inFlight === 0) for (const resolve of idle.splice(0)) resolve();
    });
  };
  while (readyAt === null) {
    if (exited(child)) throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before it was ready${describe()}`);
    if (Date.now() > deadline) throw new Error(`${what} not ready within ${READY_MS_MAX} ms${describe()}`);
    if (inFlight < PROBES_IN_FLIGHT_MAX) launch();
    await new Promise((resolve) => { wake = resolve; setTimeout(resolve, POLL_MS); });
  }
  return { readyMs: Number(readyAt - t0) / 1e6, probes };
}

/** The last lines of a server's log, as a block to append to an error message ('' if none). */
export function tail(file, lines = 15) {
  try {
    return `\n--- ${file} (tail) ---\n${readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n')}`;
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------- Redis

export function redisVersion() {
  try {
    return /v=(\S+)/.exec(execFileSync('redis-server', ['--version'], { encoding: 'utf8' }))?.[1] ?? 'unknown';
  } catch {
    return null;
  }
}

/** Installs redis-server from Debian when it is missing (apt-get update only if needed). */
export function ensureRedis() {
  if (redisVersion()) return;
  console.error('redis-server not found: installing it with apt-get');
  // apt's output goes to stderr: stdout carries only the report.
  const options = { stdio: ['ignore', 2, 2], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } };
  const install = () => execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'redis-server'], options);
  try {
    install();
  } catch {
    execFileSync('apt-get', ['update'], options);
    install();
  }
  if (!redisVersion()) throw new Error('redis-server is still missing after apt-get install');
}

/** `PING` on a fresh connection: 'ok' on `+PONG` (not `-LOADING`), 'hung' when connected but
 * unanswered within PROBE_MS_MAX, else 'fail'. */
export function redisPing(socketPath) {
  return new Promise((resolve) => {
    const socket = connect({ path: socketPath });
    let reply = '';
    let connected = false;
    const finish = (outcome) => { clearTimeout(timer); socket.destroy(); resolve(outcome); };
    const timer = setTimeout(() => finish(connected ? 'hung' : 'fail'), PROBE_MS_MAX);
    socket.on('connect', () => { connected = true; socket.write('PING\r\n'); });
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) finish(reply.startsWith('+PONG') ? 'ok' : 'fail');
    });
    socket.on('error', () => finish('fail'));
    socket.on('close', () => finish('fail')); // no-op once settled
  });
}

/** Starts redis-server in `dir` (a new temp dir if absent) with the given appendfsync policy. */
export async function startRedis({ fsync, dir = tempDir('redis') }) {
  const socketPath = join(dir, 'redis.sock');
  const logFile = join(dir, 'redis.log');
  const t0 = process.hrtime.bigint();
  const child = track(spawn('redis-server', [
    '--port', '0', '--unixsocket', socketPath, '--unixsocketperm', '700', '--dir', dir,
    '--appendonly', 'yes', '--appendfsync', fsync, '--save', '', '--auto-aof-rewrite-percentage', '0',
    '--daemonize', 'no', '--logfile', logFile,
  ], { stdio: 'ignore' }));
  const { readyMs, probes } = await waitReady(child, t0, () => redisPing(socketPath), 'redis-server', () => tail(logFile));
  return { kind: 'redis', child, pid: child.pid, dir, socketPath, logFile, readyMs, probes, stop: () => stopChild(child, dir) };
}

// ---------------------------------------------------------------- toondbd

let clientModule = null;
/** The compiled toondb client (dist/); throws a clear error when it has not been built. */
export async function loadClient() {
  clientModule ??= await import(CLIENT_MODULE).catch((error) => {
    throw new Error(`cannot load the compiled toondb client ${CLIENT_MODULE} (run \`npm run build:ts\`): ${error.message}`);
  });
  return clientModule;
}

/** connect + hello + ping on a fresh connection; resolves the daemon's version. */
export async function toondbPing(socketPath) {
  const { IpcClient } = await loadClient();
  const client = await IpcClient.connect(socketPath, { connectTimeoutMs: PROBE_MS_MAX, timeoutMs: PROBE_MS_MAX });
  try {
    return (await client.ping()).version;
  } finally {
    await client.close();
  }
}

/** A toondb client call as a readiness outcome: TIMEOUT means the socket accepted us and the
 * daemon never answered ('hung'); anything else that fails is 'fail' (not listening yet). */
async function toondbProbe(call) {
  try {
    await call();
    return 'ok';
  } catch (error) {
    return error?.code === 'TIMEOUT' ? 'hung' : 'fail';
  }
}

/** toondb's `interval` fsyncs every this many ms in the bench: Redis `everysec`'s period, so the
 * two peers of the 'fast' and 'big' configs lose the same window of writes to a power cut (the
 * daemon's default, 100 ms, fsyncs ten times as often). */
const INTERVAL_SYNC_MS = 1_000;

/** Starts toondbd on `dir` (a new temp dir if absent) with the given durability mode. At
 * `logLevel` 'info' its log also says how long opening the engine (journal replay) took. */
export async function startToondb({ durability, dir = tempDir('toondb'), logLevel = 'warn' }) {
  await loadClient(); // a missing build fails here, clearly, not as a readiness timeout
  const socketPath = join(dir, 't.sock');
  const logFile = join(dir, 'toondbd.log');
  const log = openSync(logFile, 'a');
  const t0 = process.hrtime.bigint();
  const child = track(spawn(process.execPath, [
    TOONDBD_BIN, 'start', '--socket', socketPath, '--data-dir', join(dir, 'data'),
    '--durability', durability, '--log-level', logLevel,
    ...(durability === 'interval' ? ['--sync-interval-ms', String(INTERVAL_SYNC_MS)] : []),
  ], { stdio: ['ignore', log, log] }));
  closeSync(log);
  let version = null;
  const probe = () => toondbProbe(async () => { version = await toondbPing(socketPath); });
  const { readyMs, probes } = await waitReady(child, t0, probe, 'toondbd', () => tail(logFile));
  return { kind: 'toondb', child, pid: child.pid, dir, socketPath, logFile, version, readyMs, probes, stop: () => stopChild(child, dir) };
}

// ---------------------------------------------------------------- echo

export async function startEcho({ dir = tempDir('echo') } = {}) {
  const socketPath = join(dir, 'echo.sock');
  const child = track(fork(ECHO_BIN, [socketPath], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  const { IpcClient } = await loadClient();
  const t0 = process.hrtime.bigint();
  const hello = () => toondbProbe(async () => (await IpcClient.connect(socketPath, { connectTimeoutMs: PROBE_MS_MAX })).close());
  const { readyMs, probes } = await waitReady(child, t0, hello, 'echo-server', () => '');
  return { kind: 'echo', child, pid: child.pid, dir, socketPath, logFile: null, readyMs, probes, stop: () => stopChild(child, dir) };
}

/** SIGTERM, then SIGKILL after a grace period; then removes the server's dir. */
async function stopChild(child, dir, graceMs = 10_000) {
  if (!exited(child)) {
    const gone = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await gone;
    clearTimeout(timer);
  }
  removeDir(dir);
}

/** Clock ticks per second of /proc/PID/stat's CPU times (USER_HZ: 100 on every Linux Node runs on). */
const USER_HZ = 100;

/** CPU time a process has used (user + system, all its threads) in ms, from /proc/PID/stat;
 * NaN where there is no /proc (then the bench reports no CPU split). */
export function cpuMs(pid) {
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ').at(-1).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / USER_HZ;
  } catch {
    return NaN;
  }
}

/** Resident set size of a process in bytes, from /proc/PID/status VmRSS (Linux). */
export function rssBytes(pid) {
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  if (!Number.isFinite(kb)) throw new Error(`cannot read VmRSS of pid ${pid}`);
  return kb * 1024;
}
