/**
 * Loader of the native storage engine (engine/index.node, built from engine/src by
 * `npm run build:engine`).
 *
 * Responsibility: the only module that loads the `.node` binary. It gives the addon real types
 * (the `Engine` contract of types.ts) and turns the addon's `[CODE] message` rejections into
 * `ToonDBError`s with registry codes, so nothing above this file sees a napi "GenericFailure".
 *
 * Invariants:
 * - Every function exported here either returns a typed value or throws/rejects a ToonDBError.
 * - Per-op failures of `execute` are results (`code`/`message` set), never rejections.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isErrorCode, ToonDBError } from '../protocol/errors.js';
import { IdSlots } from '../protocol/id-slots.js';
import { LANE_WAKE_SHARED_OPS_MAX } from '../protocol/limits.js';
import { decodeDone, decodeResults, encodeOps } from './abi.js';
import type {
  CheckpointReport,
  Engine,
  EngineOp,
  EngineOpenOptions,
  EngineResult,
  EngineStats,
  RecoveryReport,
  SweepReport,
} from './types.js';

export * from './types.js';

/** The addon's own surface (see engine/src/binding.rs): the Engine contract, except that
 * calls take and return the binary layout of engine/abi.ts, lane calls are submitted and
 * collected separately, and failures reach callbacks as `[CODE] message` text. */
type NativeEngine = Omit<Engine, 'execute' | 'executeBounded' | 'readCached' | 'runInMemory' | 'writeNow' | 'startSyncer' | 'startLanes' | 'executeOrdered'> & {
  execute(ops: Buffer): Promise<Buffer>;
  executeBounded(ops: Buffer, outputBytesMax: number): Promise<Buffer>;
  readCached(ops: Buffer, outputBytesMax: number): Buffer | null;
  runInMemory(ops: Buffer): Buffer | null;
  writeNow(ops: Buffer): Buffer | null;
  startSyncer(onSynced: (error: string | null) => void): void;
  startLanes(count: number, syncResults: boolean, outputBytesMax: number, onDone: () => void): void;
  submit(lane: number, call: number, ops: Buffer, resume: boolean, wake: boolean): void;
  wakeLanes(): void;
  takeDone(): Buffer;
};

interface NativeDataDirLock {
  readonly path: string;
  release(): void;
}

export interface PeerCredentials {
  uid: number;
  gid: number;
  /** 0 when the platform cannot tell. */
  pid: number;
  /** Supplementary groups, as the kernel recorded them when the peer connected (may include
   * `gid`; empty where the kernel cannot tell). */
  groups: number[];
}

interface NativeBinding {
  openEngine(options: EngineOpenOptions): Promise<NativeEngine>;
  lockDataDir(dir: string): NativeDataDirLock;
  peerCredentials(fd: number): PeerCredentials;
  sdNotify(state: string): boolean;
  openFilesLimit(): number;
  nativeErrorCodes(): string[];
}

const ADDON_FILE = 'index.node';

/** engine/index.node seen from engine/ (sources, tests) or from dist/engine/ (compiled). */
function addonPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, ADDON_FILE), join(here, '..', '..', 'engine', ADDON_FILE)];
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) {
    throw new ToonDBError('INTERNAL', `native engine not built (looked for ${candidates.join(', ')}); run "npm run build:engine"`);
  }
  return found;
}

const native = createRequire(import.meta.url)(addonPath()) as NativeBinding;

const CODED_MESSAGE = /^\[([A-Z_]+)\] ([\s\S]*)$/;

/** Maps an addon failure to a ToonDBError with its registry code. */
export function fromNative(error: unknown): ToonDBError {
  if (error instanceof ToonDBError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const match = CODED_MESSAGE.exec(message);
  // A coded native error carries nothing beyond its code and message: no cause to repeat it.
  if (match !== null && isErrorCode(match[1])) return new ToonDBError(match[1], match[2] ?? '');
  return new ToonDBError('INTERNAL', `native engine: ${message}`, { cause: error });
}

async function coded<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw fromNative(error);
  }
}

function codedSync<T>(call: () => T): T {
  try {
    return call();
  } catch (error) {
    throw fromNative(error);
  }
}

/** A lane call waiting for its outcome, under the call id it was submitted with. */
interface LaneCall {
  readonly id: number;
  resolve: (results: EngineResult[]) => void;
  reject: (error: ToonDBError) => void;
}

/** Lane call ids wrap here; far more than can be in flight (the daemon bounds them). */
const LANE_CALL_ID_MAX = 0xffff_ffff;

class LoadedEngine implements Engine {
  readonly recovery: RecoveryReport;
  /** Lane calls submitted and not yet settled (IdSlots: protocol/id-slots.ts says why not a Map). */
  private readonly laneCalls = new IdSlots<LaneCall>(LANE_CALL_ID_MAX);
  /** Small lane calls were queued without waking their lane; `wakeLanes` runs at the end of
   * this event-loop turn (setImmediate: after the turn's socket reads). */
  private wakeScheduled = false;
  /** The highest ticket the group-commit thread was asked to fsync, by `requestSync` or by the
   * lanes themselves (`syncResults`); 0 until the thread runs. The thread keeps the highest it
   * was asked for and fsyncs until it is durable, so asking again for less does nothing. */
  private syncAskedSeq = 0;
  private syncerStarted = false;
  private lanesAskForSync = false;
  private readonly wakeLanes = (): void => {
    this.wakeScheduled = false;
    this.inner.wakeLanes();
  };

  constructor(private readonly inner: NativeEngine) {
    this.recovery = inner.recovery;
  }

  async execute(ops: EngineOp[]): Promise<EngineResult[]> {
    return decodeResults(await coded(() => this.inner.execute(encodeOps(ops))));
  }

  async executeBounded(ops: EngineOp[], outputBytesMax: number): Promise<EngineResult[]> {
    return decodeResults(await coded(() => this.inner.executeBounded(encodeOps(ops), outputBytesMax)));
  }

  startLanes(count: number, options: { syncResults?: boolean; outputBytesMax?: number } = {}): void {
    const outputBytesMax = options.outputBytesMax ?? Infinity;
    codedSync(() => this.inner.startLanes(count, options.syncResults ?? false, outputBytesMax, () => this.settleLaneCalls()));
    this.lanesAskForSync = options.syncResults ?? false;
  }

  /** A call of at most LANE_WAKE_SHARED_OPS_MAX ops leaves a sleeping lane asleep until the
   * end of this event-loop turn, when one wake-up serves every small call the turn queued: with
   * many connections each sending one write, waking a lane per write cost the JS thread more
   * than the write (a futex syscall, then often losing its CPU to the woken lane). */
  executeOrdered(lane: number, ops: EngineOp[], resume = false): Promise<EngineResult[]> {
    const call = this.laneCalls.allocate();
    const wakeNow = ops.length > LANE_WAKE_SHARED_OPS_MAX;
    try {
      this.inner.submit(lane, call, encodeOps(ops), resume, wakeNow);
    } catch (error) {
      return Promise.reject(fromNative(error)); // the id is dropped: its slot stays free
    }
    if (!wakeNow && !this.wakeScheduled) {
      this.wakeScheduled = true;
      setImmediate(this.wakeLanes);
    }
    return new Promise<EngineResult[]>((resolve, reject) => this.laneCalls.put({ id: call, resolve, reject }));
  }

  private settleLaneCalls(): void {
    for (const done of decodeDone(this.inner.takeDone())) {
      const waiting = this.laneCalls.take(done.call);
      if (waiting === undefined) throw new Error(`invariant: lane call ${done.call} finished twice or was never made`);
      if (done.results !== undefined) {
        const results = decodeResults(done.results);
        // The lane asked for a fsync covering these before handing them back (or found them durable).
        if (this.lanesAskForSync && this.syncerStarted) {
          for (const result of results) if (result.seq > this.syncAskedSeq) this.syncAskedSeq = result.seq;
        }
        waiting.resolve(results);
      } else waiting.reject(fromNative(done.failure));
    }
  }

  readCached(ops: EngineOp[], outputBytesMax = Infinity): EngineResult[] | null {
    const encoded = codedSync(() => this.inner.readCached(encodeOps(ops), outputBytesMax));
    return encoded === null ? null : decodeResults(encoded);
  }

  runInMemory(ops: EngineOp[]): EngineResult[] | null {
    const encoded = codedSync(() => this.inner.runInMemory(encodeOps(ops)));
    return encoded === null ? null : decodeResults(encoded);
  }

  writeNow(ops: EngineOp[]): EngineResult[] | null {
    const encoded = codedSync(() => this.inner.writeNow(encodeOps(ops)));
    return encoded === null ? null : decodeResults(encoded);
  }

  sync(): Promise<number> {
    return coded(() => this.inner.sync());
  }

  startSyncer(onSynced: (error: ToonDBError | null) => void): void {
    codedSync(() => this.inner.startSyncer((error) => onSynced(error === null ? null : fromNative(error))));
    this.syncerStarted = true;
    this.syncAskedSeq = 0; // a new thread has been asked for nothing yet
  }

  requestSync(seq: number): void {
    if (seq <= this.syncAskedSeq) return;
    if (this.syncerStarted) this.syncAskedSeq = seq;
    this.inner.requestSync(seq);
  }

  durableSeq(): number {
    return this.inner.durableSeq();
  }

  writtenSeq(): number {
    return this.inner.writtenSeq();
  }

  checkpoint(): Promise<CheckpointReport> {
    return coded(() => this.inner.checkpoint());
  }

  sweepExpired(limit: number): Promise<SweepReport> {
    return coded(() => this.inner.sweepExpired(limit));
  }

  async stats(): Promise<EngineStats> {
    const stats = await coded(() => this.inner.stats());
    // napi leaves an absent Option out of the object; EngineStats says null.
    return { ...stats, lastJournalSyncMs: stats.lastJournalSyncMs ?? null };
  }

  close(): Promise<void> {
    return coded(() => this.inner.close());
  }
}

/** Opens (and recovers) the database at `options.path`. */
export async function openEngine(options: EngineOpenOptions): Promise<Engine> {
  return new LoadedEngine(await coded(() => native.openEngine(options)));
}

export interface DataDirLock {
  readonly path: string;
  /** Drops the lock now; also dropped by the OS when the process exits. Idempotent. */
  release(): void;
}

/** Takes the exclusive kernel lock (`flock`) on `<dir>/toondbd.lock`; LOCKED if it is held. */
export function lockDataDir(dir: string): DataDirLock {
  const lock = codedSync(() => native.lockDataDir(dir));
  return { path: lock.path, release: () => lock.release() };
}

/** uid/gid/pid/groups of the process at the other end of a connected Unix socket. */
export function peerCredentials(fd: number): PeerCredentials {
  return codedSync(() => native.peerCredentials(fd));
}

/** Sends a state string to systemd (NOTIFY_SOCKET); false when not under systemd, IO_ERROR
 * when the datagram could not be sent. */
export function sdNotify(state: string): boolean {
  return codedSync(() => native.sdNotify(state));
}

/** The process's soft open-files limit (RLIMIT_NOFILE, which Node raised to the hard limit at
 * startup): descriptors it may hold at once. Number.MAX_SAFE_INTEGER when unlimited. */
export function openFilesLimit(): number {
  return codedSync(() => native.openFilesLimit());
}

/** Every error code the native engine can produce (all registry codes). */
export function nativeErrorCodes(): string[] {
  return native.nativeErrorCodes();
}
