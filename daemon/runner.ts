/**
 * A connection's requests, from its queue to their replies: batched engine calls in order.
 *
 * Responsibility: take the requests the session decoded (`enqueue`), and run them as engine
 * calls. A bounded slice of the queue (ENGINE_BATCH_REQUESTS_MAX requests, and a bound on keys
 * that is larger for calls that write, batching.ts) goes to the engine in ONE call: `execute`
 * on the libuv pool for plain reads, `executeOrdered` on the connection's ordered lane for a
 * call that may write (several of those may be in flight; the lane runs them in order). The
 * replies of a call are written with one corked socket write once the durability gate
 * releases them (outbox.ts). While a batch executes, newly arrived requests queue up and form
 * the next batch, so a busy connection gets larger batches, not more engine calls, and a very
 * busy one gets its first replies out while the rest execute. A slice of plain reads is first
 * offered to the engine's row cache (`readCached`: memory only, on this thread, no pool round
 * trip); only if a row is not in memory does it become an `execute` call. Likewise a call of
 * plain writes with nothing of its connection running is committed on this thread when the
 * commit can start at once (`writeNow`) and no reply waits for a fsync (`sync` mode: other
 * writers are active), and goes to the lane otherwise. A snapshot scan's
 * next batches are read as soon as one is answered (read-ahead.ts), and the client's scanNext
 * requests take them.
 *
 * Invariants:
 * - Requests of one connection execute in the order received, except that plain reads (no
 *   transaction) may run concurrently with other plain reads; a read never runs before or
 *   beside an earlier request that could write. Replies may leave in any order (matched by id).
 * - In `sync` mode no reply leaves before the fsync covering every write it could show.
 * - No new engine call starts while the connection's unread replies are past
 *   OUTPUT_PAUSE_BYTES (flow.ts), and a call that ends early (ENGINE_CALL_OUTPUT_BYTES_MAX)
 *   runs its rest only once its replies were read.
 * - No engine call of data requests runs, and no reply read ahead is sent, before the reply
 *   budget reserved room for its largest replies (reply-budget.ts; a call the engine bounds, and
 *   each rest of one, reserves at most engineCallReplyBytesMax); the reservation lasts until the
 *   replies are written. Admin requests reserve nothing.
 * - Every request taken from the queue gets exactly one reply, unless the connection closes.
 * - Nothing here throws out to the socket's callbacks: an unexpected failure of a call closes
 *   the connection with INTERNAL (RunnerHost.failConnection).
 */

import type { Logger } from 'pino';
import type { EngineResult } from '../engine/types.js';
import { ToonDBError, toToonDBError } from '../protocol/errors.js';
import { ENGINE_CALL_OUTPUT_BYTES_MAX, ENGINE_CALLS_PER_CONNECTION_MAX, ENVELOPE_BYTES_MAX, FRAME_HEADER_BYTES } from '../protocol/limits.js';
import type { HelloResult, Request } from '../protocol/messages.js';
import { countCall, nextBatch, routeOf, type RunningCalls } from './batching.js';
import { EngineCalls } from './engine-calls.js';
import type { Flow } from './flow.js';
import * as admin from './handlers/admin.js';
import { isDataRequest, prepareBatch, repliesOf, requestsCovered, type PreparedBatch as Prepared } from './handlers/index.js';
import { fail, ok, type Outcome, type SessionScope } from './handlers/scope.js';
import { readAheadCursor, scanNextOp } from './handlers/scan.js';
import type { Outbox } from './outbox.js';
import { leavesCursorOpen, ScanReadAhead } from './read-ahead.js';
import { ReplyReservation, ReplyReserver, replyBytesFor, replyBytesOfResults } from './reply-budget.js';

const ignore = (): void => undefined;

/** A decoded request waiting for (or in) an engine call. */
export interface Queued {
  req: Request;
  receivedAt: number;
  /** Its frame body's bytes, in flight until its reply (REQUEST_BYTES_IN_FLIGHT_MAX). */
  bytes: number;
  /** Set on the abort that stands for a commit or abort refused by validation: it runs, and
   * this is its reply (session.ts). */
  refusal?: ToonDBError;
}

/** What the runner needs of the connection it runs for (session.ts). */
export interface RunnerHost {
  /** The connection's id, which names its ordered lane in the engine. */
  readonly id: number;
  /** Its peer is the daemon's own uid or root (daemon/admission.ts). */
  readonly operator: boolean;
  isClosed(): boolean;
  /** Sends a connection-level error and closes. */
  failConnection(error: ToonDBError): void;
  /** The protocol version the connection's first accepted hello set, or undefined. */
  protocol(): number | undefined;
  /** A hello was answered with this version (null: refused, and the connection closed). */
  helloAnswered(protocol: number | null, client: string | undefined): void;
  /** Closes cursors in the engine (a scanNext that found its cursor ended by a close). */
  abandonCursors(cursors: number[]): void;
  /** The connection is closed and its last engine call has finished. */
  lastCallDone(): void;
}

/** True if a scanNext or scanClose in batch[from, to) names cursor `cursor`. */
function namesCursor(batch: readonly Queued[], from: number, to: number, cursor: number): boolean {
  for (let i = from; i < to; i++) {
    const req = batch[i].req;
    if ((req.op === 'scanNext' || req.op === 'scanClose') && req.cursor === cursor) return true;
  }
  return false;
}

export class RequestRunner {
  private queue: Queued[] = [];
  /** Engine calls (batches) in progress (batching.ts). */
  private readonly running: RunningCalls = { all: 0, writes: 0, onLane: 0, replaying: 0, reserving: 0 };
  /** Settles when the last lane call started has finished (all of it: runData). */
  private laneTail: Promise<void> = Promise.resolve();
  private readonly calls: EngineCalls;
  /** Next batches of snapshot cursors, read while earlier ones travel. */
  readonly readAhead: ScanReadAhead;
  /** Room in the daemon-wide reply budget for the replies of this connection's calls. */
  private readonly replies: ReplyReserver;

  constructor(
    private readonly host: RunnerHost,
    private readonly ctx: admin.DaemonContext,
    private readonly scope: SessionScope,
    private readonly flow: Flow,
    private readonly outbox: Outbox,
    private readonly log: Logger,
  ) {
    // Small writes commit on this thread only while no reply waits for a fsync (`sync` mode).
    // While some do, other writers are active and the group commit sets their pace: the lanes
    // take their commits off this thread and hand their outcomes back in bulk (engine-calls.ts `now`).
    this.calls = new EngineCalls(ctx.engine, log, () => ctx.gate.waiting === 0);
    this.replies = new ReplyReserver(ctx.replyBudget);
    this.readAhead = new ScanReadAhead(
      async (cursor) => (await this.calls.run([scanNextOp(cursor, this.scope)]))[0],
      ctx.readAheadBudget,
      () => this.scope.limits.scanBatchBytesMax,
    );
  }

  /** True while requests are queued or executing, or a scan batch is being read ahead. */
  get busy(): boolean {
    return this.queue.length > 0 || this.running.all > 0 || this.readAhead.busy;
  }

  /** True when no engine call of the connection is running. */
  get idle(): boolean {
    return this.running.all === 0;
  }

  enqueue(item: Queued): void {
    this.queue.push(item);
  }

  /** Drops the queued requests (the connection closed: nobody is left to answer); calls
   * waiting for reply room go on with none (their replies are dropped). */
  clear(): void {
    this.queue = [];
    this.replies.closed();
  }

  /**
   * Starts engine calls for queued requests, each where routeOf (batching.ts) sends it: plain
   * reads to the pool, up to ENGINE_CALLS_PER_CONNECTION_MAX side by side, so the pool computes
   * one call while this thread encodes the replies of another; calls that may write to the
   * connection's ordered lane, where further data calls may queue behind them, so the engine
   * works on the next while the replies of the last go out. Reads never pass a write of the
   * same connection. A slice of plain reads answered from the row cache completes here,
   * synchronously, under the same rule (it starts only where a pool call of it could start).
   */
  pump(): void {
    while (!this.host.isClosed() && this.queue.length > 0) {
      if (this.flow.full()) return; // the session pumps again on 'drain'
      const { take, readOnly, readPrefix } = nextBatch(this.queue);
      // Plain reads ahead of a write in the queue: answered from memory on their own if they
      // can be (no write is running, and they precede every write of the batch), so a mixed
      // stream does not send every read through the pool; otherwise they go with the batch.
      if (!readOnly && readPrefix > 0 && this.running.writes === 0 && this.running.all < ENGINE_CALLS_PER_CONNECTION_MAX) {
        const reads = this.queue.slice(0, readPrefix);
        const answered = this.answerFromMemory(reads, this.prepare(reads, 0, readPrefix));
        if (answered > 0) {
          this.queue = this.queue.slice(answered);
          continue;
        }
      }
      const route = routeOf(this.running, this.queue, take, readOnly);
      if (route === null) return;
      const behind = this.running.onLane > 0;
      const batch = take === this.queue.length ? this.queue : this.queue.slice(0, take);
      this.queue = take === this.queue.length ? [] : this.queue.slice(take);
      const mayWrite = !readOnly || route === 'lane';
      const prepared = readOnly || route === 'lane' ? this.prepare(batch, 0, batch.length) : null;
      if (route === 'pool' && prepared !== null) {
        const answered = this.answerFromMemory(batch, prepared);
        if (answered > 0) {
          if (answered < batch.length) this.queue = batch.slice(answered).concat(this.queue);
          continue;
        }
      }
      countCall(this.running, route, mayWrite, 1);
      const call = route === 'lane' ? this.runData(batch, 0, batch.length, prepared!, { lane: this.host.id, behind, previous: this.laneTail })
        : prepared !== null ? this.runReads(batch, prepared) : this.runBatch(batch);
      if (route === 'lane') this.laneTail = call.then(ignore, ignore);
      call
        .catch((error: unknown) => {
          this.log.error({ err: error }, 'batch failed unexpectedly');
          this.host.failConnection(new ToonDBError('INTERNAL', `batch failed: ${(error as Error).message}`));
        })
        .finally(() => {
          countCall(this.running, route, mayWrite, -1);
          if (this.host.isClosed() && this.running.all === 0) this.host.lastCallDone();
          this.pump();
        });
    }
  }

  /**
   * Runs data requests in engine batches, with admin requests, and scan requests on a cursor
   * that was read ahead, as ordering barriers.
   */
  private async runBatch(batch: Queued[]): Promise<void> {
    let start = 0;
    for (let i = 0; i < batch.length; i++) {
      const req = batch[i].req;
      const ahead = req.op === 'scanNext' ? this.readAhead.takeNext(req.cursor)
        : req.op === 'scanClose' ? this.readAhead.takeAll(req.cursor) : undefined;
      if (ahead === undefined && isDataRequest(req)) continue;
      if (i > start) await this.runData(batch, start, i);
      await (ahead === undefined ? this.runAdmin(batch[i]) : this.runReadAhead(batch, i, await ahead));
      // A refused hello closed the connection: what was pipelined behind it must not run.
      if (this.host.isClosed()) return;
      start = i + 1;
    }
    if (start < batch.length) await this.runData(batch, start, batch.length);
  }

  /**
   * Answers batch[i], a scanNext or scanClose of a cursor that was read ahead, given the result
   * of its oldest read (scanNext) or its last one (scanClose): a scanNext gets that batch; a
   * scanClose closes what is still open.
   */
  private async runReadAhead(batch: Queued[], i: number, result: EngineResult): Promise<void> {
    if (batch[i].req.op === 'scanClose' && leavesCursorOpen(result)) {
      await this.runData(batch, i, i + 1);
      return;
    }
    // A scanNext takes the batch read for it; a scanClose of a cursor the read-ahead finished
    // has nothing left to close in the engine (its reply is the plain success of a close).
    const reservation = await this.reserve(batch, i, i + 1, false);
    try {
      const prepared = this.prepare(batch, i, i + 1);
      const isNext = batch[i].req.op === 'scanNext';
      if (prepared.ops.length === 0 && isNext && leavesCursorOpen(result)) this.host.abandonCursors([(batch[i].req as { cursor: number }).cursor]);
      this.ctx.counters.scanBatchesReadAhead += isNext ? 1 : 0;
      this.complete(batch, i, i + 1, prepared, [isNext ? result : { seq: 0 }], i + 1, reservation);
    } finally {
      reservation.drop();
    }
  }

  /** Room in the reply budget for the replies of batch[from, to) (`engineBounded`: run by one
   * engine call that ends early once its data are large); at once if it fits and nobody waits,
   * else in turn. */
  private reserve(batch: Queued[], from: number, to: number, engineBounded: boolean): ReplyReservation | Promise<ReplyReservation> {
    return this.replies.reserve(replyBytesFor(batch, from, to, this.scope.limits, engineBounded));
  }

  /**
   * Runs batch[from, to) as one engine call: on the pool, or on `on.lane`. Memory-only
   * transaction steps, and plain writes whose commit can start at once, run here on this
   * thread instead (EngineCalls.now), unless earlier lane calls are still running
   * (`on.behind`), which they would pass. A call that ends early (its results reached
   * ENGINE_CALL_OUTPUT_BYTES_MAX) has its replies sent and read before the rest of it runs (on
   * a lane: `resume`, which lets the lane run the calls it skipped behind it), and a lane call
   * skipped that way runs again once `on.previous` (the call before it) has finished; the ops
   * prepared are kept (preparing registers and releases transactions). Meanwhile the call is
   * `replaying`, and no new call joins the lane (routeOf).
   */
  private async runData(batch: Queued[], from: number, to: number, prepared = this.prepare(batch, from, to),
    on: { lane?: number; behind: boolean; previous?: Promise<void> } = { behind: false }): Promise<void> {
    let resume = false;
    let replaying = false;
    try {
      for (let skipped = 0; ; ) {
        const ops = prepared.ops;
        const reserved = this.reserve(batch, from, to, true);
        let reservation: ReplyReservation;
        if (reserved instanceof ReplyReservation) {
          reservation = reserved;
        } else {
          // Granted, this call resumes a microtask later; meanwhile no later call may join the
          // lane ahead of it (routeOf). The count drops in the same synchronous run that submits it.
          const lane = on.lane !== undefined;
          if (lane) this.running.reserving += 1;
          try {
            reservation = await reserved;
          } finally {
            if (lane) this.running.reserving -= 1;
          }
        }
        let results: EngineResult[];
        let covered: number;
        let sent: Promise<void>;
        try {
          results = ops.length === 0 ? [] : (on.behind || replaying ? null : this.calls.now(ops)) ?? await this.calls.run(ops, on.lane, resume);
          if (!replaying && results.length < ops.length) this.running.replaying += 1;
          replaying ||= results.length < ops.length;
          if (results.length === 0 && ops.length > 0) {
            // Only a call behind one that ended early is skipped, and only until that one is done.
            if (on.previous === undefined || ++skipped > 1) throw new Error('invariant: a lane call was skipped with no halted call before it');
            covered = -1;
            sent = on.previous;
          } else {
            ({ covered, sent } = this.completePrefix(batch, from, prepared, results, to, reservation));
          }
        } finally {
          reservation.drop();
        }
        if (covered < 0) {
          await sent;
          resume = false;
          continue;
        }
        if (from + covered === to) return;
        from += covered;
        prepared = { each: prepared.each.slice(covered), ops: ops.slice(results.length) };
        // The call's results (views of one engine buffer of up to ENGINE_CALL_OUTPUT_BYTES_MAX)
        // are in their replies by now: let them go before waiting for a slow reader, or each
        // such connection keeps them beside its replies, outside the reply budget.
        results = [];
        await sent;
        await this.outbox.whenWritable();
        resume = on.lane !== undefined;
      }
    } finally {
      if (replaying) this.running.replaying -= 1;
    }
  }

  /**
   * Runs a batch of plain reads on the pool as one engine call, which may end early once its
   * results are large (ENGINE_CALL_OUTPUT_BYTES_MAX): the requests it did not reach go back to
   * the front of the queue, where no write can have passed them (none starts while reads run).
   */
  private async runReads(batch: Queued[], prepared: Prepared): Promise<void> {
    const reserved = this.reserve(batch, 0, batch.length, true);
    const reservation = reserved instanceof ReplyReservation ? reserved : await reserved;
    try {
      const results = prepared.ops.length === 0 ? [] : await this.calls.run(prepared.ops);
      const answered = this.completePrefix(batch, 0, prepared, results, undefined, reservation).covered;
      if (answered < batch.length) this.queue = batch.slice(answered).concat(this.queue);
    } finally {
      reservation.drop();
    }
  }

  /**
   * Answers a batch of plain reads from the engine's row cache, on this thread (no pool round
   * trip, no storage work): all of them, or the first ones once their results are large
   * (ENGINE_CALL_OUTPUT_BYTES_MAX). Returns how many requests it answered: 0, having done
   * nothing, if a read needs storage or the reply budget has no room now for the replies the
   * rows make (the storage path then waits its turn for room). Being done here, it reserves
   * what its results take, not the most they could.
   */
  private answerFromMemory(batch: Queued[], prepared: Prepared): number {
    let results: EngineResult[] | null = [];
    if (prepared.ops.length > 0) {
      try {
        results = this.ctx.engine.readCached(prepared.ops, ENGINE_CALL_OUTPUT_BYTES_MAX);
      } catch (error) {
        this.log.error({ err: error }, 'row cache read failed; using the storage path');
        results = null;
      }
    }
    if (results === null) return 0;
    // Requests refused before the engine (validation) get a coded error each.
    const refused = Math.max(0, batch.length - results.length) * (FRAME_HEADER_BYTES + ENVELOPE_BYTES_MAX);
    const reservation = this.replies.tryReserve(replyBytesOfResults(results) + refused);
    if (reservation === null) return 0;
    try {
      const answered = this.completePrefix(batch, 0, prepared, results, undefined, reservation).covered;
      this.ctx.counters.requestsFromMemory += answered;
      return answered;
    } finally {
      reservation.drop();
    }
  }

  /** Completes the requests of batch[from, ...) (prepared as `prepared`) that `results`, one per
   * op of a prefix of `prepared.ops` (at least one, or all), answer, with the refused ones among
   * them; returns how many, and when their replies are sent. `runTo`: the end of the call these
   * results come from (see complete); `reservation`: the reply room reserved for them. */
  private completePrefix(batch: Queued[], from: number, prepared: Prepared, results: EngineResult[], runTo: number | undefined,
    reservation: ReplyReservation): { covered: number; sent: Promise<void> } {
    const { each, ops } = prepared;
    if (results.length === ops.length) return { covered: each.length, sent: this.complete(batch, from, from + each.length, prepared, results, undefined, reservation) };
    if (results.length === 0 || results.length > ops.length) {
      throw new Error(`invariant: the engine answered ${results.length} of ${ops.length} ops`);
    }
    const covered = requestsCovered(prepared, results.length);
    const part = { each: each.slice(0, covered), ops: ops.slice(0, results.length) };
    return { covered, sent: this.complete(batch, from, from + covered, part, results, runTo, reservation) };
  }

  /** Engine ops for batch[from, to), with a validation failure in place of each refused one. */
  private prepare(batch: Queued[], from: number, to: number): Prepared {
    return prepareBatch(batch, from, to, this.scope);
  }

  /** Turns the engine results of batch[from, to) into replies, sent once durable; resolves when
   * they are. batch[to, runTo) is the rest of an engine call that ended early, still to run
   * (runData): a cursor it names is not read ahead yet, as the read would race its own
   * scanNext / scanClose in the engine (batches out of order, or lost); the last of them
   * starts it instead. The replies are sent under `reservation`, reserved for them. */
  private complete(batch: Queued[], from: number, to: number, prepared: Prepared, results: EngineResult[], runTo = to,
    reservation: ReplyReservation | null = null): Promise<void> {
    const { replies, maxSeq } = repliesOf(batch, from, to, prepared, results, this.scope, (req, result, outcome) => {
      if (result.code === 'DISK_FULL' || result.code === 'STORAGE_FAILED') {
        this.ctx.gate.reportStorageFailure(new ToonDBError(result.code, result.message ?? result.code));
      }
      const readAhead = this.host.isClosed() ? 0 : readAheadCursor(req, outcome, this.scope);
      if (readAhead > 0 && !namesCursor(batch, to, runTo, readAhead)) this.readAhead.start(readAhead);
    });
    return this.outbox.sendWhenDurable(replies, maxSeq, reservation);
  }

  private async runAdmin(item: Queued): Promise<void> {
    const req = item.req;
    let outcome: Outcome;
    try {
      outcome = ok(await admin.answer(req, this.ctx, this.host, this.scope.limits, this.host.protocol()));
    } catch (error) {
      outcome = fail(toToonDBError(error));
    }
    this.outbox.send([{ id: req.id, outcome, receivedAt: item.receivedAt, requestBytes: item.bytes }]);
    if (req.op === 'hello') this.host.helloAnswered(outcome.ok ? (outcome.result as HelloResult).protocol : null, req.client);
  }
}
