/**
 * toondbd: owns the data directory, the engine and the listening socket; runs sessions.
 *
 * Start order (each step must succeed before the next; READY is announced only at the end):
 *   1. create the data dir, take the kernel lock on it (LOCKED if another daemon owns it);
 *   2. open the engine (journal recovery; its duration is logged);
 *   3. under a start-up lock on the socket path, refuse a live daemon, replace a stale socket
 *      and listen owner-only (daemon/access.ts);
 *   4. write the info file, notify systemd (READY=1).
 * Stop order (SIGTERM, SIGINT, `shutdown` request from an operator): refuse new connections
 * and answer new requests with SHUTTING_DOWN; let in-flight requests finish up to
 * SHUTDOWN_DRAIN_MS_MAX; close connections (their transactions abort), cutting off after
 * SHUTDOWN_FLUSH_MS_MAX the ones whose clients read nothing; checkpoint; close the engine;
 * remove the info file; unlock; close the listener (which removes the socket).
 *
 * Invariants: one daemon per data dir (kernel lock, released by the OS even on kill -9) and
 * per socket path; `stop()` is idempotent and never rejects (failures are logged); the engine is
 * closed exactly once, after every session that could use it is gone.
 */

import { constants } from 'node:fs';
import { access, mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import lockfile from 'proper-lockfile';
import pino, { type Logger } from 'pino';
import { lockDataDir, openEngine, openFilesLimit, sdNotify } from '../engine/index.js';
import type { Engine } from '../engine/types.js';
import { ToonDBError, toToonDBError } from '../protocol/errors.js';
import {
  ENGINE_BLOCK_CACHE_BYTES, ENGINE_CALL_OUTPUT_BYTES_MAX, ENGINE_LANES, ENGINE_TABLE_FILES_MAX, LISTENER_ERROR_LOG_INTERVAL_MS, SCAN_READ_AHEAD_BYTES_MAX,
  SHUTDOWN_DRAIN_MS_MAX, SHUTDOWN_FLUSH_MS_MAX, START_LOCK_RETRY_MS_MAX, START_LOCK_STALE_MS, START_LOCK_WAIT_MS_MAX, type ServerLimits,
} from '../protocol/limits.js';
import { brokenLimitRelation } from '../protocol/limit-relations.js';
import { Acceptor } from './accept.js';
import { listenPrivately, resolveGroupId } from './access.js';
import type { DaemonConfig } from './config.js';
import { Counters } from './counters.js';
import { descriptorBudget, type DescriptorBudget } from './descriptors.js';
import { DurabilityGate } from './durability.js';
import type { DaemonContext } from './handlers/admin.js';
import { ReadAheadBudget } from './read-ahead.js';
import { BytesBudget } from './bytes-budget.js';
import { HandleCount } from './registry.js';
import { Session } from './session.js';
import { CheckpointRuns } from './checkpoints.js';
import { checkDataDirOwner, checkSocketDirOwner } from './path-safety.js';
import { checkSocketPath, claimSocketPath } from './socket-path.js';
import { ThrottledLog } from './throttled-log.js';
import { VERSION } from './version.js';

const IDLE_SWEEP_INTERVAL_MS = 1_000;
const TTL_SWEEP_INTERVAL_MS = 1_000;
const TTL_SWEEP_KEYS_MAX = 1_000;
const DRAIN_POLL_MS = 10;

/** The errors of a path that is not usable as configured. Others (EIO, ENOSPC, EMFILE, a
 * network file system timing out) may pass: they stay INTERNAL, exit 1, retried. */
const SETUP_REFUSALS: ReadonlySet<string> = new Set(['EACCES', 'EPERM', 'ENOENT', 'ENOTDIR', 'EEXIST', 'EROFS', 'ELOOP', 'ENAMETOOLONG', 'ENOTEMPTY']);

/** What the file system refused while `what` was set up: for the socket, a directory that does
 * not exist, is not writable, or holds another user's start-up lock (or a stale one with
 * something in it, which cannot be taken over: ENOTEMPTY), or a --socket-group this
 * user may not give the socket to; for the data directory, a path that is a file, or one this
 * user may not create or write. The configuration's fault, so a coded refusal (exit 2, which
 * the service manager does not retry), not INTERNAL. Anything else passes as it is. */
function setupRefusal(what: string, error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  if (error instanceof ToonDBError || typeof code !== 'string' || !SETUP_REFUSALS.has(code)) return error;
  return new ToonDBError('INVALID_ARGUMENT', `cannot set up ${what}: ${(error as Error).message}`);
}

/** Limits the engine is opened with (Daemon.start), which a reload cannot change. */
const ENGINE_LIMITS = ['keyBytesMax', 'valueBytesMax', 'txnBytesMax', 'txnBytesDaemonMax', 'batchItemsMax', 'batchBytesMax'] as const;
export const INFO_FILE_NAME = 'toondbd.json';
export const ENGINE_DIR_NAME = 'db';

export interface DaemonInfo {
  pid: number;
  version: string;
  socketPath: string;
  dataDir: string;
  startedAt: string;
}

export class Daemon implements DaemonContext {
  readonly version = VERSION;
  readonly counters = new Counters();
  readonly readAheadBudget = new ReadAheadBudget(SCAN_READ_AHEAD_BYTES_MAX);
  readonly requestBudget: BytesBudget;
  readonly replyBudget: BytesBudget;
  readonly txnCount: HandleCount;
  readonly cursorCount: HandleCount;
  readonly gate: DurabilityGate;
  readonly checkpoints: CheckpointRuns;
  /** Engine transaction handles: 1, 2, 3, ... for the daemon's lifetime (never reused; 2^53
   * would take 285 years at a million transactions a second). */
  readonly takeTxnHandle = (): number => ++this.lastTxnHandle;
  /** Resolves once the daemon has fully stopped. */
  readonly stopped: Promise<void>;
  private readonly sessions = new Set<Session>();
  /** Whether an accepted socket may become a session (accept.ts). */
  private readonly acceptor: Acceptor;
  /** Every accepted socket until it closes, refused ones included (shutdown cuts off the ones
   * that do not close). */
  private readonly sockets = new Set<Socket>();
  /** The loggers of open connections (pino children keep the level they were made with). */
  private readonly connectionLogs = new Set<Logger>();
  private readonly timers: NodeJS.Timeout[] = [];
  private nextConnectionId = 1;
  private lastTxnHandle = 0;
  private stopping: Promise<void> | null = null;
  /** Set when storage failed while running or a shutdown step failed: the stop was not clean. */
  private trouble: string | null = null;
  private markStopped!: () => void;
  private ttlSweepRunning = false;
  /** Listener errors (accept failing): logged at most once per LISTENER_ERROR_LOG_INTERVAL_MS,
   * with a count. */
  private readonly listenerErrors = new ThrottledLog(LISTENER_ERROR_LOG_INTERVAL_MS);

  private constructor(
    public config: DaemonConfig,
    readonly engine: Engine,
    readonly log: Logger,
    private readonly server: Server,
    private readonly releaseLock: () => void,
    /** How the open-files limit is shared between sockets and the engine (descriptors.ts). */
    readonly descriptors: DescriptorBudget,
  ) {
    this.requestBudget = new BytesBudget(config.limits.requestBytesInFlightDaemonMax);
    this.replyBudget = new BytesBudget(config.limits.replyBytesDaemonMax);
    this.txnCount = new HandleCount(config.limits.txnsDaemonMax);
    this.cursorCount = new HandleCount(config.limits.cursorsDaemonMax);
    engine.startLanes(ENGINE_LANES, { syncResults: config.durability === 'sync', outputBytesMax: ENGINE_CALL_OUTPUT_BYTES_MAX });
    this.checkpoints = new CheckpointRuns(() => engine.checkpoint());
    this.gate = new DurabilityGate(engine, config.durability, config.syncIntervalMs, (error) => {
      if (this.trouble !== null) return; // logged once already (here, or by the sweep)
      this.trouble = `storage failed: ${error.code}`;
      this.log.fatal({ code: error.code, err: error }, 'storage failed: writes are refused until the daemon is restarted (err names the cause)');
    });
    this.stopped = new Promise((resolve) => (this.markStopped = resolve));
    this.acceptor = new Acceptor(this);
  }

  /** Opens everything in order; on failure releases what was taken and rethrows (coded). */
  static async start(config: DaemonConfig, log: Logger = createLogger(config)): Promise<Daemon> {
    // A configuration error is reported before recovery runs and before anything is created.
    if (config.socketGroup !== null) resolveGroupId(config.socketGroup);
    // So is an open-files limit too low to serve any client (descriptors.ts).
    const descriptors = descriptorBudget(openFilesLimit());
    // (And the socket's directory: the start-up lock in it retries any failure for ~10 s.)
    await access(dirname(config.socketPath), constants.W_OK | constants.X_OK).catch((error: unknown) => {
      throw setupRefusal(`the socket ${config.socketPath}`, error);
    });
    await checkSocketDirOwner(config.socketPath);
    // And a socket path a live daemon serves, before the data directory is made and recovered.
    await checkSocketPath(config.socketPath).catch((error: unknown) => {
      throw setupRefusal(`the socket ${config.socketPath}`, error);
    });
    await mkdir(config.dataDir, { recursive: true, mode: 0o700 })
      .then(() => access(config.dataDir, constants.R_OK | constants.W_OK | constants.X_OK))
      .catch((error: unknown) => {
        throw setupRefusal(`the data directory ${config.dataDir}`, error);
      });
    await checkDataDirOwner(config.dataDir);
    const dirMode = (await stat(config.dataDir)).mode & 0o777;
    if ((dirMode & 0o077) !== 0) {
      log.warn({ dataDir: config.dataDir, mode: dirMode.toString(8) },
        'the data directory is open to other users, who may read the database past the socket\'s access control: chmod 700 it');
    }
    const lock = lockDataDir(config.dataDir);
    let engine: Engine | null = null;
    let server: Server | null = null;
    let daemon: Daemon | null = null;
    try {
      const openedAt = Date.now();
      const opened: Engine = await openEngine({
        path: join(config.dataDir, ENGINE_DIR_NAME),
        cacheBytes: ENGINE_BLOCK_CACHE_BYTES,
        rowCacheBytes: config.rowCacheMib * 1024 * 1024,
        tableFilesMax: descriptors.tableFiles,
        keyBytesMax: config.limits.keyBytesMax,
        valueBytesMax: config.limits.valueBytesMax,
        txnBytesMax: config.limits.txnBytesMax,
        txnBytesDaemonMax: config.limits.txnBytesDaemonMax,
        batchItemsMax: config.limits.batchItemsMax,
        batchBytesMax: config.limits.batchBytesMax,
      });
      engine = opened;
      log.info({ ...opened.recovery, seqno: String(opened.recovery.seqno), openMs: Date.now() - openedAt, dataDir: config.dataDir },
        'storage recovered');
      server = createServer({ allowHalfOpen: false, pauseOnConnect: false });
      daemon = new Daemon(config, opened, log, server, () => lock.release(), descriptors);
      daemon.warnIfDescriptorsBind(config.connectionsMax);
      await daemon.listen();
      return daemon;
    } catch (error) {
      // A listener already bound would leave its socket file behind. Its 'close' waits for every
      // connection accepted meanwhile: they are cut off, or a client that stays connected keeps
      // this failed start alive, holding the data dir's lock, for as long as it stays.
      if (daemon !== null) await daemon.abandonStart();
      else if (server?.listening) await new Promise((resolve) => server!.close(resolve));
      if (engine) await engine.close().catch(() => undefined);
      lock.release();
      throw toToonDBError(error);
    }
  }

  private async listen(): Promise<void> {
    const { socketPath } = this.config;
    // Attached before listen(): a client that connects while the socket's mode and ownership
    // are still being set must be served, not left hanging on an accepted, unhandled socket.
    this.server.on('connection', (socket) => this.onConnection(socket));
    const refused = (error: unknown): unknown => setupRefusal(`the socket ${socketPath}`, error);
    const retry = { minTimeout: START_LOCK_RETRY_MS_MAX / 10, maxTimeout: START_LOCK_RETRY_MS_MAX, retries: Math.ceil(START_LOCK_WAIT_MS_MAX / START_LOCK_RETRY_MS_MAX) };
    const release = await lockfile.lock(socketPath, { realpath: false, stale: START_LOCK_STALE_MS, retries: retry })
      .catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ELOCKED') throw refused(error);
        throw new ToonDBError('ALREADY_RUNNING', `another toondbd is starting on ${socketPath}`);
      });
    let failure: unknown = null;
    try {
      if (await claimSocketPath(socketPath)) this.log.warn({ socketPath }, 'replaced stale socket left by a daemon that died');
      await listenPrivately(() => new Promise<void>((resolve, reject) => {
        this.server.once('error', reject);
        this.server.listen(socketPath, () => {
          this.server.off('error', reject);
          resolve();
        });
      }), socketPath, this.config);
    } catch (error) {
      failure = refused(error);
    }
    // Releasing the start-up lock must not hide why the start failed.
    await release().catch((error: unknown) => {
      failure ??= refused(error);
    });
    if (failure !== null) throw failure;
    // libuv answers EMFILE/ENFILE in accept by accepting and closing the waiting connections
    // itself, unseen; what still reaches here can repeat once per connect attempt.
    this.server.on('error', (error) => {
      const unlogged = this.listenerErrors.take();
      if (unlogged !== null) this.log.error({ err: error, unlogged }, 'listener error');
    });
    this.timers.push(setInterval(() => this.sweepIdle(), IDLE_SWEEP_INTERVAL_MS));
    this.timers.push(setInterval(() => this.sweepExpired(), TTL_SWEEP_INTERVAL_MS));
    for (const timer of this.timers) timer.unref();
    // Atomic (rename): whoever sees the info file sees a daemon that is ready. Written before
    // READY=1, the last step, so that systemd is never told "ready" by a start that then fails.
    const info: DaemonInfo = { pid: process.pid, version: VERSION, socketPath, dataDir: this.config.dataDir, startedAt: new Date().toISOString() };
    const infoPath = join(this.config.dataDir, INFO_FILE_NAME);
    await writeFile(`${infoPath}.tmp`, JSON.stringify(info, null, 2) + '\n', { mode: 0o644 });
    await rename(`${infoPath}.tmp`, infoPath);
    this.log.info({ socketPath, dataDir: this.config.dataDir, durability: this.config.durability, version: VERSION, connectionsMax: this.connectionsMax() }, 'listening');
    this.notify(`READY=1\nSTATUS=listening on ${socketPath}\nMAINPID=${process.pid}`);
  }

  /** Undoes a start that failed after `listen` bound the socket: timers and the durability
   * gate stopped, connections accepted meanwhile cut off, listener closed (which removes the
   * socket file). */
  private async abandonStart(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    this.gate.close(); // its fsync timer and waiters, before the engine closes
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  /** sd_notify; a failure to reach systemd is logged, never fatal. */
  private notify(state: string): void {
    try {
      if (sdNotify(state)) this.log.debug({ state: state.split('\n')[0] }, 'sd_notify sent');
    } catch (error) {
      this.log.warn({ err: error, state: state.split('\n')[0] }, 'sd_notify failed');
    }
  }

  /**
   * SIGHUP: takes the new log level, limits, allow-lists and connection maximum. New connections
   * get the new limits; open ones keep theirs. Socket, data dir, durability and the row cache
   * size need a restart.
   */
  reload(next: DaemonConfig): void {
    const fixed = (['socketPath', 'dataDir', 'durability', 'syncIntervalMs', 'socketGroup', 'rowCacheMib'] as const)
      .filter((key) => next[key] !== this.config[key]);
    if (fixed.length > 0) this.log.warn({ settings: fixed }, 'these settings change only on restart');
    // The engine enforces these as it was opened with them: announcing others would mislead.
    const limits = { ...next.limits };
    const pinned = ENGINE_LIMITS.filter((key) => limits[key] !== this.config.limits[key]);
    for (const key of ENGINE_LIMITS) limits[key] = this.config.limits[key];
    if (pinned.length > 0) this.log.warn({ limits: pinned }, 'these limits change only on restart (the engine enforces them)');
    const broken = brokenLimitRelation(limits);
    if (broken !== null) throw new ToonDBError('INVALID_ARGUMENT', `limits do not fit together with the engine's: ${broken}`);
    // Announced at the level in force until now: a reload to `warn` would hide its own line.
    this.log.info({ logLevel: next.logLevel }, 'configuration reloaded');
    this.log.level = next.logLevel;
    for (const log of this.connectionLogs) log.level = next.logLevel;
    this.requestBudget.setMax(limits.requestBytesInFlightDaemonMax);
    this.replyBudget.setMax(limits.replyBytesDaemonMax);
    this.txnCount.max = limits.txnsDaemonMax;
    this.cursorCount.max = limits.cursorsDaemonMax;
    this.config = { ...this.config, logLevel: next.logLevel, limits, allowUids: next.allowUids, allowGids: next.allowGids, connectionsMax: next.connectionsMax,
      connectionsPerUidMax: next.connectionsPerUidMax };
    this.warnIfDescriptorsBind(next.connectionsMax);
  }

  /** Connections each peer uid holds, for `stats` (bounded: admission.ts). */
  connectionsByUid(): Record<string, number> {
    return this.acceptor.heldByUid();
  }

  sessionsOpen(): number {
    return this.sessions.size;
  }

  socketsHeld(): number {
    return this.sockets.size;
  }

  /** Connections served at once: the configured connectionsMax, lowered to what the open-files
   * limit leaves room for beside the engine (descriptors.ts). */
  connectionsMax(): number {
    return Math.min(this.config.connectionsMax, this.descriptors.connectionsLimit);
  }

  /** Warns when the open-files limit lowers connectionsMax or the engine's open table files. */
  private warnIfDescriptorsBind(configured: number): void {
    const { openFilesLimit, tableFiles, sockets, connectionsLimit } = this.descriptors;
    if (configured <= connectionsLimit && tableFiles >= ENGINE_TABLE_FILES_MAX) return;
    this.log.warn({ openFilesLimit, connectionsMax: this.connectionsMax(), connectionsMaxConfigured: configured, tableFiles, sockets },
      'the open-files limit (RLIMIT_NOFILE) lowers connectionsMax and the table files the engine keeps open, so clients cannot take the descriptors the engine needs: raise it (ulimit -n, systemd LimitNOFILE=) to serve more');
  }

  limits(): ServerLimits {
    return this.config.limits;
  }

  shuttingDown(): boolean {
    return this.stopping !== null;
  }

  requestShutdown(reason: string): void {
    void this.stop(reason);
  }

  private onConnection(socket: Socket): void {
    const id = this.nextConnectionId++;
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    const log = this.log.child({ conn: id });
    const admitted = this.acceptor.admit(socket, log);
    if (admitted === null) return;
    this.counters.connectionsTotal += 1;
    this.counters.connectionsActive += 1;
    this.connectionLogs.add(log);
    const session = new Session(id, socket, this, log, admitted.operator, (closed) => {
      this.sessions.delete(closed);
      admitted.release();
      this.connectionLogs.delete(log);
      this.counters.connectionsActive -= 1;
    });
    this.sessions.add(session);
    log.info({ peer: admitted.peer }, 'connection opened');
  }

  private sweepIdle(): void {
    const now = Date.now();
    for (const session of this.sessions) session.sweepIdle(now);
  }

  /**
   * Deletes expired keys, TTL_SWEEP_KEYS_MAX per engine call, one call at a time: another
   * round follows at once while a round finds a full one (a backlog of keys written with TTLs
   * faster than one round a tick reclaims would otherwise never shrink), else at the next
   * tick. Once storage has failed, writes are refused until restart and so would every sweep
   * be: it stops (the failure was logged once, at fatal level).
   */
  private sweepExpired(): void {
    if (this.ttlSweepRunning || this.stopping || this.trouble !== null) return;
    this.ttlSweepRunning = true;
    this.engine.sweepExpired(TTL_SWEEP_KEYS_MAX).then(
      ({ removed, examined }) => {
        this.ttlSweepRunning = false;
        if (removed > 0) {
          this.log.debug({ removed }, 'reclaimed expired keys');
          if (this.config.durability === 'sync') this.gate.syncIfBehind();
        }
        // A full round, counted in index entries: rounds of out-of-date entries remove fewer
        // keys, and stopping at them left the expired keys behind them for later ticks.
        if (examined >= TTL_SWEEP_KEYS_MAX) setImmediate(() => this.sweepExpired());
      },
      (error: unknown) => {
        this.ttlSweepRunning = false;
        const coded = toToonDBError(error);
        if ((coded.code === 'STORAGE_FAILED' || coded.code === 'DISK_FULL') && this.trouble === null) {
          this.trouble = `storage failed: ${coded.code}`;
          this.log.fatal({ code: coded.code, err: error }, 'storage failed (in the expired-key sweep): writes are refused until the daemon is restarted');
        } else {
          this.log.warn({ err: error }, 'expired-key sweep failed');
        }
      },
    );
  }

  /** Why the daemon did not run and stop cleanly (storage failed while it ran, or a shutdown
   * step failed), or null. `toondbd` exits non-zero when it is set, so a service manager sees
   * the failure. */
  get stopTrouble(): string | null {
    return this.trouble;
  }

  /** Graceful, idempotent shutdown; resolves when everything is released. */
  stop(reason: string): Promise<void> {
    this.stopping ??= this.shutdown(reason);
    return this.stopping;
  }

  private async shutdown(reason: string): Promise<void> {
    this.log.info({ reason }, 'shutting down');
    this.notify('STOPPING=1');
    for (const timer of this.timers) clearInterval(timer);
    // The listener stays open until the data dir is released: a connect meanwhile is refused
    // with SHUTTING_DOWN (accept.ts), and the socket file, which closing the listener removes,
    // keeps saying that a daemon holds the data dir (`toondbd status` never says "not running"
    // while a start would still find it locked).
    const deadline = Date.now() + SHUTDOWN_DRAIN_MS_MAX;
    while ([...this.sessions].some((s) => s.busy) && Date.now() < deadline) {
      await delay(DRAIN_POLL_MS);
    }
    for (const session of [...this.sessions]) session.end();
    // A client that reads no replies keeps its socket open forever: give the replies
    // SHUTDOWN_FLUSH_MS_MAX to go out, then cut such connections off.
    const ended = [...this.sockets];
    const flushWait = new AbortController(); // cancelled once settled: no timer outlives stop()
    const flushed = await Promise.race([
      Promise.all(ended.map((socket) => new Promise((resolve) => socket.once('close', resolve)))).then(() => true),
      delay(SHUTDOWN_FLUSH_MS_MAX, false, { signal: flushWait.signal }).catch(() => false),
    ]);
    flushWait.abort();
    if (!flushed) {
      // The hang-up's own linger (hang-up.ts) may have closed them at the same moment.
      const unread = ended.filter((socket) => !socket.destroyed);
      if (unread.length > 0) this.log.warn({ connections: unread.length }, 'cutting off connections whose replies were not read');
      for (const socket of unread) socket.destroy();
    }
    this.gate.close();
    await this.step('checkpoint', async () => {
      // Straight to the engine, beside a client's checkpoint still running rather than after it:
      // queued, the two could outlast a service manager's stop timeout (60 s).
      const report = await this.engine.checkpoint();
      this.log.info({ lsn: String(report.lsn), durationMs: report.durationMs }, 'checkpoint before exit');
    });
    await this.step('close engine', () => this.engine.close());
    await this.step('remove info file', () => rm(join(this.config.dataDir, INFO_FILE_NAME), { force: true }));
    // The engine is closed: the data dir's lock goes, then the listener and the refusals still
    // lingering (hang-up.ts). The socket file goes last, so a start that finds no socket (after
    // `toondbd stop`, which waits for that) finds no lock either.
    this.releaseLock();
    const closedListener = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closedListener;
    // 'close' comes before libuv has closed the listener's handle, which it does in the loop's
    // close phase: a timer's turn comes after it, so an embedder holds nothing once stop() ends.
    await delay(1);
    this.log.info('stopped');
    this.markStopped();
  }

  private async step(name: string, action: () => Promise<unknown>): Promise<void> {
    try {
      await action();
    } catch (error) {
      this.trouble ??= `shutdown step failed: ${name}`;
      this.log.error({ err: error, step: name }, 'shutdown step failed');
    }
  }
}

/**
 * JSON lines on stdout, written synchronously: the daemon logs per connection and per event,
 * never per request, so a line costs one write(2), and in exchange a line is out before the
 * reply that follows it, and a fatal line is never lost in a buffer to a crash. A stdout that
 * stops being read stalls the daemon instead of growing a buffer without bound.
 */
export function createLogger(config: Pick<DaemonConfig, 'logLevel'>): Logger {
  return pino({
    level: config.logLevel,
    base: { pid: process.pid, name: 'toondbd' },
    timestamp: pino.stdTimeFunctions.isoTime,
    // An error's cause is logged as a nested error; the default serializer appended its message
    // to the error's own, which repeated it (a coded native error's cause is the same message).
    serializers: { err: pino.stdSerializers.errWithCause },
  }, pino.destination({ dest: 1, sync: true }));
}
