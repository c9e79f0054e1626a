/**
 * One client connection: framing, handshake, batched execution, durable replies, cleanup.
 *
 * Request path (designed for batching): every complete frame in a socket chunk is decoded and
 * queued; a bounded slice of the queue (ENGINE_BATCH_REQUESTS_MAX requests, and a bound on keys
 * that is larger for calls that write, batching.ts) goes to the engine in ONE call: `execute`
 * on the libuv pool for plain reads, `executeOrdered` on the connection's ordered lane for a
 * call that may write (several of those may be in flight; the lane runs them in order). The
 * replies of a call are written with one corked socket write once the durability gate
 * releases them. While a batch executes, newly arrived requests queue up and form the next
 * batch, so a busy connection gets larger batches, not more engine calls, and a very busy one
 * gets its first replies out while the rest execute. A slice of plain reads is first offered
 * to the engine's row cache (`readCached`: memory only, on this thread, no pool round trip);
 * only if a row is not in memory does it become an `execute` call. Likewise a call of plain
 * writes with nothing of its connection running is committed on this thread when the commit
 * can start at once (`writeNow`), and goes to the lane otherwise.
 * A snapshot scan's next batches are read as soon as one is answered (read-ahead.ts), and the
 * client's scanNext requests take them.
 *
 * Invariants:
 * - Requests of one connection execute in the order received, except that plain reads (no
 *   transaction) may run concurrently with other plain reads; a read never runs before or
 *   beside an earlier request that could write. Replies may leave in any order (matched by id).
 * - In `sync` mode no reply leaves before the fsync covering every write it could show.
 * - Memory per connection is bounded: one partial frame (FrameDecoder), at most
 *   inFlightPerConnectionMax requests and about REQUEST_BYTES_IN_FLIGHT_MAX of their bodies
 *   (reading pauses past either: what one socket read completed gets in), and unread replies: no new work
 *   starts past OUTPUT_PAUSE_BYTES, an engine call ends early past ENGINE_CALL_OUTPUT_BYTES_MAX
 *   (plain reads: the rest runs later; a call that may write: once its replies were read), and
 *   a client that leaves more than OUTPUT_BUFFER_BYTES_MAX unread, or reads nothing for
 *   unreadRepliesMsMax, is cut off (flow.ts, outbox.ts).
 * - A closed connection's transactions are aborted and its cursors freed, including ones the
 *   engine created while the connection was closing.
 * - Nothing a client sends can throw out of this class: every failure becomes a coded reply or
 *   a coded connection-level error followed by a close.
 */

import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { OpKind, type EngineOp, type EngineResult } from '../engine/types.js';
import { MessageCodec } from '../protocol/codec.js';
import { ToonDBError, toToonDBError } from '../protocol/errors.js';
import { FrameDecoder } from '../protocol/frame.js';
import {
  ENGINE_CALL_OUTPUT_BYTES_MAX, ENGINE_CALLS_PER_CONNECTION_MAX, HANDSHAKE_TIMEOUT_MS, REQUEST_ITEMS_MAX,
} from '../protocol/limits.js';
import { CONNECTION_ERROR_ID, OP_FAMILIES, type Request } from '../protocol/messages.js';
import { readSimpleRequest } from '../protocol/simple-frames.js';
import { parseRequest, requestIdOf } from '../protocol/validate.js';
import { countCall, nextBatch, routeOf, type RunningCalls } from './batching.js';
import { EngineCalls } from './engine-calls.js';
import { Flow } from './flow.js';
import { hangUp } from './hang-up.js';
import * as admin from './handlers/admin.js';
import { isDataRequest, prepareBatch, repliesOf, requestsCovered, type PreparedBatch as Prepared } from './handlers/index.js';
import { fail, forgetCursorsOf, ok, type Outcome, type SessionScope } from './handlers/scope.js';
import { readAheadCursor, scanNextOp } from './handlers/scan.js';
import { leavesCursorOpen, ScanReadAhead } from './read-ahead.js';
import { HandleRegistry } from './registry.js';
import { Outbox } from './outbox.js';

const ignore = (): void => undefined;

/** True if a scanNext or scanClose in batch[from, to) names cursor `cursor`. */
function namesCursor(batch: readonly Queued[], from: number, to: number, cursor: number): boolean {
  for (let i = from; i < to; i++) {
    const req = batch[i].req;
    if ((req.op === 'scanNext' || req.op === 'scanClose') && req.cursor === cursor) return true;
  }
  return false;
}

interface Queued {
  req: Request;
  receivedAt: number;
  /** Its frame body's bytes, in flight until its reply (REQUEST_BYTES_IN_FLIGHT_MAX). */
  bytes: number;
}

export class Session {
  readonly scope: SessionScope;
  private readonly decoder: FrameDecoder;
  private readonly codec: MessageCodec;
  private helloSeen = false;
  private queue: Queued[] = [];
  /** Engine calls (batches) in progress (batching.ts). */
  private readonly running: RunningCalls = { all: 0, writes: 0, onLane: 0, replaying: 0 };
  /** Settles when the last lane call started has finished (all of it: runData). */
  private laneTail: Promise<void> = Promise.resolve();
  private closed = false;
  private handshakeTimer: NodeJS.Timeout | null;
  private readonly calls: EngineCalls;
  /** Next batches of snapshot cursors, read while earlier ones travel. */
  private readonly readAhead: ScanReadAhead;
  /** Reading paused or not, and the replies the client has not read yet (flow.ts). */
  private readonly flow: Flow;
  /** Replies held for durability, written, or waited on to be read (outbox.ts). */
  private readonly outbox: Outbox;

  constructor(
    readonly id: number,
    private readonly socket: Socket,
    private readonly ctx: admin.DaemonContext,
    private readonly log: Logger,
    private readonly onClosed: (session: Session) => void,
  ) {
    const limits = ctx.limits();
    this.calls = new EngineCalls(ctx.engine, log);
    this.flow = new Flow(socket, limits.inFlightPerConnectionMax);
    this.readAhead = new ScanReadAhead(
      async (cursor) => (await this.calls.run([scanNextOp(cursor, this.scope)]))[0],
      ctx.readAheadBudget,
      () => this.scope.limits.scanBatchBytesMax,
    );
    this.decoder = new FrameDecoder({ frameBytesMax: limits.frameBytesMax });
    this.codec = new MessageCodec({ frameBytesMax: limits.frameBytesMax, decodeItemsMax: REQUEST_ITEMS_MAX });
    this.outbox = new Outbox(socket, this.flow, this.codec, ctx.gate, ctx.counters, {
      onSent: (replies) => {
        this.flow.answered(replies);
        this.maybeResume();
      },
      isClosed: () => this.closed,
      cutOff: (reason) => this.cutOff(reason),
    });
    this.scope = {
      txns: new HandleRegistry(limits.txnsPerConnectionMax, limits.txnIdleMsMax),
      cursors: new HandleRegistry(limits.cursorsPerConnectionMax, limits.cursorIdleMsMax),
      counters: ctx.counters,
      limits,
      takeTxnHandle: ctx.takeTxnHandle,
      releaseTxn: (handle) => this.abandon([handle], [], false),
      nowMs: Date.now(),
    };
    this.handshakeTimer = setTimeout(() => {
      this.failConnection(new ToonDBError('HANDSHAKE_REQUIRED', `no hello within ${HANDSHAKE_TIMEOUT_MS} ms`));
    }, HANDSHAKE_TIMEOUT_MS);
    this.handshakeTimer.unref();
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => {
      this.outbox.releaseWaiters();
      this.maybeResume();
      if (this.flow.drained()) this.pump();
    });
    socket.on('error', (error) => this.log.debug({ err: error }, 'connection error'));
    socket.on('close', () => this.close('peer closed'));
  }

  /** True while requests are queued, executing, or waiting for an fsync, or a scan batch is
   * being read ahead. */
  get busy(): boolean {
    return this.queue.length > 0 || this.running.all > 0 || this.outbox.awaiting > 0 || this.readAhead.busy;
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.ctx.counters.bytesIn += chunk.length;
    let bodies: Buffer[];
    try {
      bodies = this.decoder.push(chunk);
    } catch (error) {
      this.failConnection(toToonDBError(error));
      return;
    }
    const receivedAt = performance.now();
    this.flow.dataArrived(receivedAt);
    for (const body of bodies) {
      if (!this.accept(body, receivedAt)) return;
    }
    this.flow.pauseIfFull();
    this.pump();
  }

  /** Decodes and queues one request; false if the connection had to be closed. */
  private accept(body: Buffer, receivedAt: number): boolean {
    let raw: Record<string, unknown>;
    try {
      raw = readSimpleRequest(body) ?? this.codec.decode(body);
    } catch (error) {
      this.failConnection(toToonDBError(error));
      return false;
    }
    const id = requestIdOf(raw);
    if (id === undefined) {
      this.failConnection(new ToonDBError('PROTOCOL_ERROR', 'request has no valid id (an integer in 1..2^32-1)'));
      return false;
    }
    this.flow.requestRead();
    this.ctx.counters.requestsTotal += 1;
    // Before its hello a connection gets nothing else, not even a parse error.
    if (!this.helloSeen && raw.op !== 'hello') {
      this.outbox.send([{ id, outcome: fail(new ToonDBError('HANDSHAKE_REQUIRED', 'the first request on a connection must be hello')), receivedAt, requestBytes: 0 }]);
      this.close('no handshake');
      return false;
    }
    let req: Request;
    try {
      req = parseRequest(raw, this.scope.limits);
    } catch (error) {
      this.outbox.send([{ id, outcome: fail(toToonDBError(error)), receivedAt, requestBytes: 0 }]);
      // A hello refused for its fields closes the connection, like one refused for its version
      // (a later hello too: PROTOCOL.md Handshake).
      if (raw.op === 'hello') {
        this.close('handshake refused');
        return false;
      }
      return !this.closed;
    }
    this.ctx.counters.requestsByFamily[OP_FAMILIES[req.op]] += 1;
    if (req.op === 'hello') this.helloSeen = true;
    else if (this.ctx.shuttingDown()) {
      this.outbox.send([{ id, outcome: fail(new ToonDBError('SHUTTING_DOWN', 'daemon is shutting down; retry against its successor')), receivedAt, requestBytes: 0 }]);
      return !this.closed;
    }
    this.flow.bodyHeld(body.length);
    this.queue.push({ req, receivedAt, bytes: body.length });
    return true;
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
  private pump(): void {
    while (!this.closed && this.queue.length > 0) {
      if (this.flow.full()) return; // resumed on 'drain' (see the constructor)
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
      const call = route === 'lane' ? this.runData(batch, 0, batch.length, prepared!, { lane: this.id, behind, previous: this.laneTail })
        : prepared !== null ? this.runReads(batch, prepared) : this.runBatch(batch);
      if (route === 'lane') this.laneTail = call.then(ignore, ignore);
      call
        .catch((error: unknown) => {
          this.log.error({ err: error }, 'batch failed unexpectedly');
          this.failConnection(new ToonDBError('INTERNAL', `batch failed: ${(error as Error).message}`));
        })
        .finally(() => {
          countCall(this.running, route, mayWrite, -1);
          if (this.closed && this.running.all === 0) this.releaseHandles();
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
      if (this.closed) return;
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
    const prepared = this.prepare(batch, i, i + 1);
    const isNext = batch[i].req.op === 'scanNext';
    if (prepared.ops.length === 0 && isNext && leavesCursorOpen(result)) this.abandon([], [(batch[i].req as { cursor: number }).cursor]);
    this.ctx.counters.scanBatchesReadAhead += isNext ? 1 : 0;
    this.complete(batch, i, i + 1, prepared, [isNext ? result : { seq: 0 }]);
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
        const results: EngineResult[] = ops.length === 0 ? [] : (on.behind || replaying ? null : this.calls.now(ops)) ?? await this.calls.run(ops, on.lane, resume);
        if (!replaying && results.length < ops.length) this.running.replaying += 1;
        replaying ||= results.length < ops.length;
        if (results.length === 0 && ops.length > 0) {
          // Only a call behind one that ended early is skipped, and only until that one is done.
          if (on.previous === undefined || ++skipped > 1) throw new Error('invariant: a lane call was skipped with no halted call before it');
          await on.previous;
          resume = false;
          continue;
        }
        const { covered, sent } = this.completePrefix(batch, from, prepared, results, to);
        if (from + covered === to) return;
        from += covered;
        prepared = { each: prepared.each.slice(covered), ops: ops.slice(results.length) };
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
    const results = prepared.ops.length === 0 ? [] : await this.calls.run(prepared.ops);
    const answered = this.completePrefix(batch, 0, prepared, results).covered;
    if (answered < batch.length) this.queue = batch.slice(answered).concat(this.queue);
  }

  /**
   * Answers a batch of plain reads from the engine's row cache, on this thread (no pool round
   * trip, no storage work): all of them, or the first ones once their results are large
   * (ENGINE_CALL_OUTPUT_BYTES_MAX). Returns how many requests it answered: 0, having done
   * nothing, if a read needs storage.
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
    const answered = this.completePrefix(batch, 0, prepared, results).covered;
    this.ctx.counters.requestsFromMemory += answered;
    return answered;
  }

  /** Completes the requests of batch[from, ...) (prepared as `prepared`) that `results`, one per
   * op of a prefix of `prepared.ops` (at least one, or all), answer, with the refused ones among
   * them; returns how many, and when their replies are sent. `runTo`: the end of the call these
   * results come from (see complete). */
  private completePrefix(batch: Queued[], from: number, prepared: Prepared, results: EngineResult[], runTo?: number): { covered: number; sent: Promise<void> } {
    const { each, ops } = prepared;
    if (results.length === ops.length) return { covered: each.length, sent: this.complete(batch, from, from + each.length, prepared, results) };
    if (results.length === 0 || results.length > ops.length) {
      throw new Error(`invariant: the engine answered ${results.length} of ${ops.length} ops`);
    }
    const covered = requestsCovered(prepared, results.length);
    const part = { each: each.slice(0, covered), ops: ops.slice(0, results.length) };
    return { covered, sent: this.complete(batch, from, from + covered, part, results, runTo) };
  }
  /** Engine ops for batch[from, to), with a validation failure in place of each refused one. */
  private prepare(batch: Queued[], from: number, to: number): Prepared {
    return prepareBatch(batch, from, to, this.scope);
  }

  /** Turns the engine results of batch[from, to) into replies, sent once durable; resolves when
   * they are. batch[to, runTo) is the rest of an engine call that ended early, still to run
   * (runData): a cursor it names is not read ahead yet, as the read would race its own
   * scanNext / scanClose in the engine (batches out of order, or lost); the last of them
   * starts it instead. */
  private complete(batch: Queued[], from: number, to: number, prepared: Prepared, results: EngineResult[], runTo = to): Promise<void> {
    const { replies, maxSeq } = repliesOf(batch, from, to, prepared, results, this.scope, (req, result, outcome) => {
      if (result.code === 'DISK_FULL' || result.code === 'STORAGE_FAILED') {
        this.ctx.gate.reportStorageFailure(new ToonDBError(result.code, result.message ?? result.code));
      }
      const readAhead = this.closed ? 0 : readAheadCursor(req, outcome, this.scope);
      if (readAhead > 0 && !namesCursor(batch, to, runTo, readAhead)) this.readAhead.start(readAhead);
    });
    return this.outbox.sendWhenDurable(replies, maxSeq);
  }

  private async runAdmin(item: Queued): Promise<void> {
    const req = item.req;
    let outcome: Outcome;
    try {
      outcome = ok(await admin.answer(req, this.ctx, this.id, this.scope.limits));
    } catch (error) {
      outcome = fail(toToonDBError(error));
    }
    if (req.op === 'hello' && this.handshakeTimer !== null) {
      clearTimeout(this.handshakeTimer);
      this.handshakeTimer = null;
    }
    this.outbox.send([{ id: req.id, outcome, receivedAt: item.receivedAt, requestBytes: item.bytes }]);
    if (req.op === 'hello' && !outcome.ok) this.close('handshake refused');
  }

  /** Closes a connection whose client does not read its replies (flow.ts). */
  private cutOff(reason: string): void {
    this.log.warn({ bufferedBytes: this.flow.unreadBytes, reason }, 'closing connection that does not read its replies');
    this.socket.destroy();
    this.close(reason);
  }

  private maybeResume(): void {
    if (!this.closed) this.flow.maybeResume();
  }

  /** Sends a connection-level error (request id 0) and closes. */
  failConnection(error: ToonDBError): void {
    if (this.closed) return;
    this.log.warn({ code: error.code, reason: error.message }, 'closing connection after protocol error');
    try {
      this.socket.end(this.codec.encode({ id: CONNECTION_ERROR_ID, error: { code: error.code, message: error.message } }));
    } catch {
      this.socket.destroy();
    }
    this.close(error.code);
  }

  /**
   * Called periodically by the server: closes a connection stuck on an incomplete frame, aborts
   * idle transactions and closes idle cursors.
   */
  sweepIdle(nowMs: number): void {
    const stalledMs = this.flow.incompleteFrameMs();
    if (this.decoder.bufferedBytes > 0 && stalledMs > this.scope.limits.partialFrameMsMax) {
      this.failConnection(new ToonDBError('PROTOCOL_ERROR', `incomplete frame for ${Math.round(stalledMs)} ms`));
      return;
    }
    const unreadMs = this.flow.unreadStalledMs(nowMs);
    if (unreadMs > this.scope.limits.unreadRepliesMsMax) {
      this.cutOff(`replies unread for ${unreadMs} ms`);
      return;
    }
    const txnIds = new Set<number>();
    const txns = this.scope.txns.takeIdle(nowMs, txnIds);
    const cursors = this.scope.cursors.takeIdle(nowMs);
    // An expired transaction's cursors go with it (txnIdleMsMax may be below cursorIdleMsMax).
    forgetCursorsOf(this.scope, txnIds, true);
    if (txns.length + cursors.length === 0) return;
    this.log.info({ txns: txns.length, cursors: cursors.length }, 'expired idle transactions/cursors');
    this.abandon(txns, cursors);
  }

  private releaseHandles(): void {
    this.abandon(this.scope.txns.takeAll(), this.scope.cursors.takeAll());
  }

  /** Aborts `txns` (counted as aborted unless they were already) and closes `cursors` in the
   * engine; a cursor being read ahead is closed once its read-ahead settles, if that left it open. */
  private abandon(txns: number[], cursors: number[], countAborts = true): void {
    const idle = this.readAhead.closable(cursors, (cursor) => this.abandon([], [cursor]));
    if (txns.length + idle.length === 0) return;
    const ops: EngineOp[] = [
      ...idle.map((cursor): EngineOp => ({ kind: OpKind.scanClose, cursor })),
      ...txns.map((txn): EngineOp => ({ kind: OpKind.abort, txn })),
    ];
    if (countAborts) this.ctx.counters.txnsAborted += txns.length;
    this.ctx.engine.execute(ops).catch((error: unknown) => this.log.warn({ err: error }, 'could not release handles'));
  }

  /** Idempotent. Frees everything the connection owned. */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    hangUp(this.socket);
    this.queue = [];
    this.outbox.releaseWaiters();
    if (this.running.all === 0) this.releaseHandles();
    this.log.info({ reason }, 'connection closed');
    this.onClosed(this);
  }

  /** Ends the connection politely (shutdown): the socket is closed once replies are flushed. */
  end(): void {
    if (this.closed) return;
    this.socket.end();
    this.close('daemon shutdown');
  }
}
