/**
 * One client connection, its socket side: framing, handshake, flow control, cleanup.
 *
 * Responsibility: decode every complete frame of a socket chunk, check the handshake and each
 * request's fields, and queue the request for the connection's RequestRunner (runner.ts),
 * which runs the queue as batched engine calls and sends the replies; pause reading while the
 * connection holds too much (flow.ts); expire idle transactions and cursors; free everything
 * the connection owned when it closes.
 *
 * Invariants:
 * - Memory per connection is bounded: one partial frame (FrameDecoder), at most
 *   inFlightPerConnectionMax requests and about REQUEST_BYTES_IN_FLIGHT_MAX of their bodies
 *   (reading pauses past either: what one socket read completed gets in), and unread replies: no new work
 *   starts past OUTPUT_PAUSE_BYTES, an engine call ends early past ENGINE_CALL_OUTPUT_BYTES_MAX
 *   (plain reads: the rest runs later; a call that may write: once its replies were read), and
 *   a client that leaves more than OUTPUT_BUFFER_BYTES_MAX unread, or reads nothing for
 *   unreadRepliesMsMax, is cut off (flow.ts, outbox.ts).
 * - Memory across connections is bounded too: no body byte is read before the daemon-wide
 *   request budget admitted its frame (bytes-budget.ts, requestBytesInFlightDaemonMax); a
 *   refused frame stops reading, the rest of its socket read kept in the decoder, until the
 *   budget grants it (`onGranted`). Every admitted body is given back: by its reply, by
 *   `bodyDropped` when it gets none that counts it, or at close. Likewise no engine call of
 *   data requests starts before the daemon-wide reply budget reserved room for its replies
 *   (reply-budget.ts, replyBytesDaemonMax), and the unread replies count there until read
 *   (flow.ts noteUnread) or the connection closes; a client that leaves any unread for
 *   unreadRepliesMsMax while others wait for that room is cut off.
 * - Before its hello a connection gets nothing but a HANDSHAKE_REQUIRED reply and a close.
 * - A closed connection's transactions are aborted and its cursors freed, including ones the
 *   engine created while the connection was closing (released once its last call is done).
 * - Nothing a client sends can throw out of this class: every failure becomes a coded reply or
 *   a coded connection-level error followed by a close.
 */

import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { OpKind, type EngineOp } from '../engine/types.js';
import { MessageCodec } from '../protocol/codec.js';
import { ToonDBError, toToonDBError } from '../protocol/errors.js';
import { FrameDecoder } from '../protocol/frame.js';
import { HANDSHAKE_TIMEOUT_MS, REQUEST_ITEMS_MAX } from '../protocol/limits.js';
import { CONNECTION_ERROR_ID, OP_FAMILIES, type Request } from '../protocol/messages.js';
import { readSimpleRequest } from '../protocol/simple-requests.js';
import { parseRequest, requestIdOf, txnEndedBy } from '../protocol/validate.js';
import { Flow } from './flow.js';
import { hangUp } from './hang-up.js';
import type * as admin from './handlers/admin.js';
import { fail, forgetCursorsOf, type SessionScope } from './handlers/scope.js';
import { HandleRegistry } from './registry.js';
import { Outbox } from './outbox.js';
import { RequestRunner } from './runner.js';

export class Session {
  readonly scope: SessionScope;
  private readonly decoder: FrameDecoder;
  private readonly codec: MessageCodec;
  private helloSeen = false;
  /** The protocol version the first accepted hello set; later hellos change nothing. */
  private protocol: number | undefined;
  private closed = false;
  private handshakeTimer: NodeJS.Timeout | null;
  /** Runs the queued requests as engine calls and sends their replies (runner.ts). */
  private readonly runner: RequestRunner;
  /** Reading paused or not, and the replies the client has not read yet (flow.ts). */
  private readonly flow: Flow;
  /** Replies held for durability, written, or waited on to be read (outbox.ts). */
  private readonly outbox: Outbox;

  constructor(
    readonly id: number,
    private readonly socket: Socket,
    private readonly ctx: admin.DaemonContext,
    private readonly log: Logger,
    /** The peer is the daemon's own uid or root (accept.ts): it may shut the daemon down. */
    operator: boolean,
    private readonly onClosed: (session: Session) => void,
  ) {
    const limits = ctx.limits();
    this.flow = new Flow(socket, limits.inFlightPerConnectionMax, ctx.requestBudget, ctx.replyBudget, () => this.onGranted());
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
      txns: new HandleRegistry(limits.txnsPerConnectionMax, limits.txnIdleMsMax, ctx.txnCount, operator),
      cursors: new HandleRegistry(limits.cursorsPerConnectionMax, limits.cursorIdleMsMax, ctx.cursorCount, operator),
      counters: ctx.counters,
      limits,
      takeTxnHandle: ctx.takeTxnHandle,
      releaseTxn: (handle) => this.abandon([handle], [], false),
      nowMs: Date.now(),
    };
    this.runner = new RequestRunner({
      id,
      operator,
      isClosed: () => this.closed,
      failConnection: (error) => this.failConnection(error),
      protocol: () => this.protocol,
      helloAnswered: (protocol, client) => this.helloAnswered(protocol, client),
      abandonCursors: (cursors) => this.abandon([], cursors),
      lastCallDone: () => this.releaseHandles(),
    }, ctx, this.scope, this.flow, this.outbox, log);
    this.handshakeTimer = setTimeout(() => {
      this.failConnection(new ToonDBError('HANDSHAKE_REQUIRED', `no hello within ${HANDSHAKE_TIMEOUT_MS} ms`));
    }, HANDSHAKE_TIMEOUT_MS);
    this.handshakeTimer.unref();
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => {
      this.flow.noteUnread();
      this.outbox.releaseWaiters();
      this.maybeResume();
      if (this.flow.drained()) this.runner.pump();
    });
    socket.on('error', (error) => this.log.debug({ err: error }, 'connection error'));
    socket.on('close', () => this.close('peer closed'));
  }

  /** True while requests are queued, executing, or waiting for an fsync, or a scan batch is
   * being read ahead. */
  get busy(): boolean {
    return this.runner.busy || this.outbox.awaiting > 0;
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.ctx.counters.bytesIn += chunk.length;
    let bodies: Buffer[];
    try {
      bodies = this.decoder.push(chunk, this.flow.admit);
    } catch (error) {
      this.failConnection(toToonDBError(error));
      return;
    }
    const receivedAt = performance.now();
    this.flow.framesRead(bodies.length, this.decoder.bufferedBytes);
    this.acceptAll(bodies, receivedAt);
  }

  /** The daemon-wide budget admitted the frame the decoder stalled at: decode what it kept. */
  private onGranted(): void {
    if (this.closed) return;
    let bodies: Buffer[];
    try {
      bodies = this.decoder.resumeAdmitted(this.flow.admit);
    } catch (error) {
      this.failConnection(toToonDBError(error));
      return;
    }
    this.flow.framesRead(bodies.length, this.decoder.bufferedBytes);
    this.acceptAll(bodies, performance.now());
  }

  private acceptAll(bodies: Buffer[], receivedAt: number): void {
    for (let i = 0; i < bodies.length; i++) {
      if (!this.accept(bodies[i], receivedAt)) return;
    }
    this.flow.pauseIfFull();
    this.runner.pump();
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
      const ending = txnEndedBy(raw);
      if (ending !== undefined && !this.ctx.shuttingDown()) {
        // A commit or abort refused for its other fields still ends its transaction, in order
        // behind the requests before it: an abort, answered with the refusal.
        this.flow.bodyHeld(body.length);
        this.runner.enqueue({ req: { id, op: 'abort', txn: ending }, receivedAt, bytes: body.length, refusal: toToonDBError(error) });
        return true;
      }
      this.flow.bodyDropped(body.length); // answered now, not queued (a close gives back all)
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
      this.flow.bodyDropped(body.length);
      this.outbox.send([{ id, outcome: fail(new ToonDBError('SHUTTING_DOWN', 'daemon is shutting down; retry against its successor')), receivedAt, requestBytes: 0 }]);
      return !this.closed;
    }
    this.flow.bodyHeld(body.length);
    this.runner.enqueue({ req, receivedAt, bytes: body.length });
    return true;
  }

  /** Ends the handshake timer and keeps the first accepted version; a refused hello closes the
   * connection (PROTOCOL.md Handshake). */
  /** `client`: the name the hello gave, logged once (PROTOCOL.md: "for logs"). */
  private helloAnswered(protocol: number | null, client: string | undefined): void {
    if (this.handshakeTimer !== null) {
      clearTimeout(this.handshakeTimer);
      this.handshakeTimer = null;
    }
    if (protocol === null) {
      this.close('handshake refused');
      return;
    }
    if (this.protocol === undefined) this.log.info({ protocol, client }, 'handshake');
    this.protocol ??= protocol;
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
    this.flow.noteUnread(); // what the client read since the last write goes back to the reply budget
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
    const idle = this.runner.readAhead.closable(cursors, (cursor) => this.abandon([], [cursor]));
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
    this.flow.closed();
    this.runner.clear();
    this.outbox.releaseWaiters();
    if (this.runner.idle) this.releaseHandles();
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
