/**
 * Connection: one Unix socket to toondbd, multiplexing many requests.
 *
 * Responsibility: the socket, the write path (encode, coalesce, bounded queue), the read path
 * (frames -> messages -> replies matched by id), request timeouts (via PendingTable) and what
 * happens to every request when the connection ends. It knows nothing of the op semantics.
 *
 * Invariants:
 * - Every request is settled exactly once: by its reply, its timeout, a local encode failure,
 *   or the end of the connection. After the end, every call fails with CONNECTION_CLOSED.
 * - Frames of requests made in the same tick leave in one socket write (a microtask flush);
 *   small batches are concatenated, large ones go through cork/uncork (one writev, no copy).
 *   get/exists/delete/put/getBatch/deleteBatch frames and `{ id, result }` replies with a nil/bool/bin result take
 *   the hand-written encoding of protocol/simple-frames.ts (same bytes, a fraction of the CPU).
 * - Reads land in one buffer reused by every read (socket-reader.ts): nothing read out of a
 *   chunk outlives onData. Replies are decoded with their values copied (ValueCopier, the
 *   codec's copyBins), and FrameDecoder copies a frame that spans reads (a scan batch's packed
 *   entries may stay a view of such a frame: it is no chunk, but the connection's own copy).
 * - Bounded writes: while the bytes handed to the socket and not yet flushed to the kernel
 *   reach CLIENT_WRITE_QUEUE_BYTES_MAX, new requests wait, in order and unencoded, for 'drain'.
 *   A waiting request still counts against its timeout.
 * - On connection loss a request whose frame was handed to the socket fails UNKNOWN_RESULT (the
 *   daemon may have applied it), one never handed over fails CONNECTION_CLOSED (it was not).
 *   Exception: when the daemon's bytes cannot be decoded (frame or MessagePack error), every
 *   pending request fails with that PROTOCOL_ERROR / FRAME_TOO_LARGE (neither is retryable).
 *   A daemon's connection-level error (id 0) is kept as `daemonError` and as the `cause`.
 *
 * Process lifetime (a deliberate choice): the socket is ref()ed only while requests are
 * pending and unref()ed when idle, and the timeout timer is always unref()ed. So an awaited
 * request keeps the process alive until it settles, but an idle client that the script forgot
 * to close() does not hang the process at exit (like a file handle, unlike a server). The cost:
 * a process kept alive only by an idle client exits, closing the connection and so aborting
 * its open transactions; such a process had no further work scheduled anyway.
 */

import type { Socket } from 'node:net';
import { MessageCodec } from '../protocol/codec.js';
import { ToonDBError, errorFromWire, toToonDBError } from '../protocol/errors.js';
import { FrameDecoder, writeFrames } from '../protocol/frame.js';
import { CLIENT_WRITE_QUEUE_BYTES_MAX, FRAME_BYTES_MAX, FRAME_HEADER_BYTES } from '../protocol/limits.js';
import { CONNECTION_ERROR_ID } from '../protocol/messages.js';
import { VIEW_BINS } from '../protocol/msgpack-forms.js';
import { readSimpleReply } from '../protocol/simple-replies.js';
import { simpleRequestBytesMax, writeSimpleRequest, type SimpleRequest } from '../protocol/simple-requests.js';
import { asBuffer, ValueCopier, type WireBytes } from './bytes.js';
import { PendingTable, type LateResult, type Pending, type ResultMap } from './pending.js';
import type { SocketReader } from './socket-reader.js';

/** A request body without its id: `{ op, ...fields }`. */
export interface RequestMessage {
  op: string;
  [field: string]: unknown;
}

/** How long a graceful close() waits for replies still in flight before it hangs up. */
export const CLOSE_DRAIN_MS_MAX = 2_000;

/** How a connection ended: `passThrough` errors are given to pending requests as they are. */
interface Ending {
  reason: ToonDBError;
  passThrough: boolean;
  graceful: boolean;
}

export class Connection {
  /** Largest request body the daemon accepts; set from its hello reply. */
  frameBytesMax = FRAME_BYTES_MAX;
  /** The daemon's connection-level (id 0) error, if it sent one before hanging up. */
  daemonError: ToonDBError | null = null;
  /** Called once when the connection ends; `null` when it was closed by close(). */
  onClose: (reason: ToonDBError | null) => void = () => undefined;

  /** Decodes what the simple reader does not read, copying values like it (see `values`). */
  private readonly codec = new MessageCodec({ copyBins: true });
  private readonly decoder = new FrameDecoder();
  /** Values of simply-read replies are copied out as they are read (bytes.ts ValueCopier). */
  private readonly values = new ValueCopier();
  private readonly pending: PendingTable<RequestMessage>;
  /** Requests waiting for room in the write queue, unencoded, in order. */
  private readonly waiting: Pending<RequestMessage>[] = [];
  /** This tick's encoded requests, written together by flush(). */
  private batch: Pending<RequestMessage>[] = [];
  private batchBytes = 0;
  private flushScheduled = false;
  private reffed = true;
  private accepting = true;
  private ending: Ending | null = null;
  private closing: Promise<void> | null = null;
  private idleWaiters: (() => void)[] = [];

  private readonly socket: Socket;

  /** The timeout of requests sent from now on (0: none). Set only while no request with a
   * deadline is pending (after the hello): the table's one timer assumes deadlines in order. */
  set requestTimeoutMs(timeoutMs: number) {
    this.pending.timeoutMs = timeoutMs;
  }

  constructor(reader: SocketReader, timeoutMs: number) {
    const socket = (this.socket = reader.socket);
    this.pending = new PendingTable(timeoutMs, () => this.onExpired());
    socket.ref();
    reader.attach((chunk) => this.onData(chunk));
    socket.on('drain', () => this.admitWaiting());
    socket.on('error', (error) => this.end({
      reason: new ToonDBError('CONNECTION_CLOSED', `connection to the toondb daemon failed: ${error.message}`, { cause: error }),
      passThrough: false,
      graceful: false,
    }));
    const closed = (): void => this.end({
      reason: this.daemonError ?? new ToonDBError('CONNECTION_CLOSED', 'the toondb daemon closed the connection'),
      passThrough: false,
      graceful: false,
    });
    socket.on('close', closed);
    // The socket may have ended before these listeners existed (the daemon hung up while the
    // connect checked who serves the socket); its 'close' is then gone, and so is anything a
    // request written to it would wait for. Whatever it sent first was held and read above.
    if (socket.destroyed) closed();
  }

  /** True once close() was called or the connection ended. */
  get closed(): boolean {
    return !this.accepting;
  }

  /** Why the connection ended (null while open or after a graceful close). */
  get endReason(): ToonDBError | null {
    return this.ending && !this.ending.graceful ? this.ending.reason : null;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /** Sends `{ id, ...message }` and resolves with the reply's `result`, through `map` if given;
   * `onLateResult` gets the result of a reply that comes after the request timed out. */
  request<T = unknown>(message: RequestMessage, map?: ResultMap<T>, onLateResult?: LateResult): Promise<T> {
    if (!this.accepting) {
      return Promise.reject(new ToonDBError('CONNECTION_CLOSED',
        `${message.op} was not sent: ${this.ending?.reason.message ?? 'the client is closed'}`, { cause: this.ending?.reason }));
    }
    return new Promise<T>((resolve, reject) => {
      const pending = this.pending.add(message, resolve as (result: unknown) => void, reject, map ?? null, onLateResult ?? null);
      this.updateRef();
      if (this.waiting.length > 0 || this.unflushedBytes() >= CLIENT_WRITE_QUEUE_BYTES_MAX) {
        this.waiting.push(pending);
      } else {
        this.enqueue(pending);
      }
    });
  }

  /** Graceful close: stop accepting, wait (bounded) for replies in flight, then hang up. */
  close(): Promise<void> {
    this.closing ??= this.closeGracefully();
    return this.closing;
  }

  /** Ends the connection now with `reason` (e.g. a connect timeout). */
  destroy(reason: ToonDBError): void {
    this.end({ reason, passThrough: true, graceful: false });
  }

  private async closeGracefully(): Promise<void> {
    this.accepting = false;
    if (this.ending === null && this.pending.size > 0) await this.waitIdle(CLOSE_DRAIN_MS_MAX);
    this.end({ reason: new ToonDBError('CONNECTION_CLOSED', 'the client was closed'), passThrough: false, graceful: true });
    if (!this.socket.closed) await new Promise((resolve) => this.socket.once('close', resolve));
  }

  private waitIdle(boundMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, boundMs);
      timer.unref();
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private unflushedBytes(): number {
    return this.batchBytes + this.socket.writableLength;
  }

  /** Sizes (or, if not simple, encodes) the request's frame and adds it to this tick's batch. */
  private enqueue(pending: Pending<RequestMessage>): void {
    const message = pending.request;
    if (message === null) throw new Error(`invariant: request ${pending.id} enqueued after it was written`);
    // A get/exists/delete/put, getBatch/deleteBatch or putBatch with only its own fields is
    // written by protocol/simple-requests.ts (-1: anything else, encoded by the codec). Its size
    // is a bound (short strings are not measured), so one whose bound passes the daemon's
    // frame limit is encoded by the codec too, and refused only if its exact size does.
    let frameBytes = simpleRequestBytesMax(pending.id, message);
    try {
      if (frameBytes < 0 || frameBytes - FRAME_HEADER_BYTES > this.frameBytesMax) {
        pending.frame = this.codec.encode({ id: pending.id, ...withBinFields(message) });
        frameBytes = pending.frame.length;
      }
      const bodyBytes = frameBytes - FRAME_HEADER_BYTES;
      if (bodyBytes > this.frameBytesMax) {
        throw new ToonDBError('FRAME_TOO_LARGE',
          `${message.op} request of ${bodyBytes} bytes exceeds the daemon's frame limit of ${this.frameBytesMax} bytes`);
      }
    } catch (error) {
      if (this.pending.take(pending.id) !== undefined) this.updateRef();
      pending.reject(toToonDBError(error));
      return;
    }
    pending.frameBytes = frameBytes;
    this.batch.push(pending);
    this.batchBytes += frameBytes;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Hands this tick's frames to the socket in one write. Timed-out requests are not sent. */
  private flush(): void {
    this.flushScheduled = false;
    const batch = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    if (this.ending !== null) return; // end() already failed them
    const live = everyLive(batch) ? batch : batch.filter((pending) => pending.live);
    if (live.length > 0) this.write(live);
    // No 'drain' will come if the socket never filled up (e.g. every frame had timed out).
    if (this.waiting.length > 0 && !this.socket.writableNeedDrain) this.admitWaiting();
  }

  private write(live: Pending<RequestMessage>[]): void {
    let totalBytes = 0;
    for (const pending of live) {
      pending.written = true;
      totalBytes += pending.frameBytes;
    }
    writeFrames(this.socket, {
      count: live.length,
      bytes: (i) => live[i].frameBytes,
      ready: (i) => live[i].frame,
      write: (i, target, at) => writeSimpleRequest(target, at, live[i].id, live[i].request as SimpleRequest, live[i].frameBytes),
    }, totalBytes);
    for (const pending of live) {
      pending.request = null;
      pending.frame = null;
    }
  }

  /** After a timeout sweep: requests that expired while waiting for room leave the wait list
   * with their values (kept there, a daemon that reads nothing let retried timeouts grow the
   * client without bound), and the socket's ref follows what is still pending. */
  private onExpired(): void {
    if (this.waiting.some((pending) => !pending.live)) {
      const live = this.waiting.filter((pending) => pending.live);
      this.waiting.length = 0;
      this.waiting.push(...live);
    }
    this.updateRef();
  }

  /** After 'drain': lets waiting requests in, in order, until the bound is reached again. */
  private admitWaiting(): void {
    while (this.waiting.length > 0 && this.unflushedBytes() < CLIENT_WRITE_QUEUE_BYTES_MAX) {
      const next = this.waiting.shift() as Pending<RequestMessage>;
      if (next.live) this.enqueue(next);
    }
  }

  private onData(chunk: Buffer): void {
    let bodies: Buffer[];
    try {
      bodies = this.decoder.push(chunk);
    } catch (error) {
      this.protocolFailure(error);
      return;
    }
    for (const body of bodies) {
      if (this.ending !== null) return;
      // A body gathered from several reads is this connection's own (FrameDecoder); one that
      // came whole in this read is a view of the reused read buffer. A scan batch's packed
      // entries (copied again, a window at a time, as they are consumed) may view the former.
      const own = body.buffer !== chunk.buffer;
      const simple = readSimpleReply(body, this.values.copy, own ? VIEW_BINS : this.values.copy);
      this.values.reset();
      if (simple !== null) {
        this.settle(simple.id, undefined, simple.result);
        continue;
      }
      try {
        this.dispatch(this.codec.decode(body));
      } catch (error) {
        // A body that does not decode, or decoded data that broke a step of settling it: never
        // an exception out of the socket's read callback (it would end the process, or leave
        // the request unsettled with its timeout gone).
        this.protocolFailure(error);
        return;
      }
    }
  }

  private dispatch(message: Record<string, unknown>): void {
    const rawId = message.id;
    const id = typeof rawId === 'bigint' ? Number(rawId) : rawId;
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      this.protocolFailure(new ToonDBError('PROTOCOL_ERROR', 'the daemon sent a reply without a valid id'));
      return;
    }
    const error = message.error;
    if (id === CONNECTION_ERROR_ID) {
      this.daemonError = errorFromWire(typeof error === 'object' && error !== null ? error : {});
      this.end({ reason: this.daemonError, passThrough: false, graceful: false });
      return;
    }
    this.settle(id, error, message.result);
  }

  /** Settles the request `id` with its reply's error or result. */
  private settle(id: number, error: unknown, result: unknown): void {
    const pending = this.pending.take(id);
    if (pending === undefined) { // a late reply to a request that timed out
      const late = this.pending.takeLate(id);
      if (late !== null && (error === undefined || error === null)) late(result ?? null);
      return;
    }
    this.updateRef();
    if (error !== undefined && error !== null) {
      pending.reject(errorFromWire(typeof error === 'object' ? error : { code: 'INTERNAL', message: String(error) }));
    } else if (result === undefined) {
      // `{ id, result }` always carries result (nil for none): a reply without either is not a
      // success (a get would read as a missing key, a put as written).
      pending.reject(new ToonDBError('PROTOCOL_ERROR', `malformed reply from the toondb daemon: ${pending.op} reply has neither result nor error`));
    } else if (pending.map === null) {
      pending.resolve(result ?? null);
    } else {
      let mapped: unknown;
      try {
        mapped = pending.map(result ?? null);
      } catch (mapError) {
        pending.reject(toToonDBError(mapError));
        return;
      }
      pending.resolve(mapped);
    }
  }

  private protocolFailure(error: unknown): void {
    const coded = toToonDBError(error);
    const reason = coded.code === 'FRAME_TOO_LARGE' || coded.code === 'PROTOCOL_ERROR'
      ? new ToonDBError(coded.code, `bad reply from the toondb daemon, connection closed: ${coded.message}`, { cause: error })
      : new ToonDBError('PROTOCOL_ERROR', `bad reply from the toondb daemon, connection closed: ${coded.message}`, { cause: error });
    this.end({ reason, passThrough: true, graceful: false });
  }

  /** The one way a connection ends: fail every request, hang up, tell the owner once. */
  private end(ending: Ending): void {
    if (this.ending !== null) return;
    this.ending = ending;
    this.accepting = false;
    this.socket.destroy();
    this.waiting.length = 0;
    this.batch = [];
    this.batchBytes = 0;
    for (const pending of this.pending.drain()) pending.reject(lossError(pending, ending));
    this.updateRef();
    this.onClose(ending.graceful ? null : ending.reason);
  }

  /** Keeps the process alive exactly while requests are pending (see the header). */
  private updateRef(): void {
    const busy = this.pending.size > 0;
    if (busy !== this.reffed) {
      this.reffed = busy;
      if (busy) this.socket.ref();
      else this.socket.unref();
    }
    if (!busy && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const wake of waiters) wake();
    }
  }
}

function everyLive(batch: readonly Pending<RequestMessage>[]): boolean {
  for (const pending of batch) if (!pending.live) return false;
  return true;
}

/** `message` for the codec: string keys and values (kept as strings for the simple writer,
 * bytes.ts WireBytes) become Buffers, so they go out as `bin` like every key and value. */
function withBinFields(message: RequestMessage): RequestMessage {
  const { key, value } = message;
  const keys = message.keys as WireBytes[] | undefined;
  const entries = message.entries as [WireBytes, WireBytes][] | undefined;
  const stringKeys = keys?.some((k) => typeof k === 'string') ?? false;
  const stringEntries = entries?.some(([k, v]) => typeof k === 'string' || typeof v === 'string') ?? false;
  if (typeof key !== 'string' && typeof value !== 'string' && !stringKeys && !stringEntries) return message;
  const converted: RequestMessage = { ...message };
  if (typeof key === 'string') converted.key = asBuffer(key);
  if (typeof value === 'string') converted.value = asBuffer(value);
  if (stringKeys) converted.keys = keys?.map(asBuffer);
  if (stringEntries) converted.entries = entries?.map(([k, v]) => [asBuffer(k), asBuffer(v)]);
  return converted;
}

function lossError(pending: Pending<RequestMessage>, ending: Ending): ToonDBError {
  const { reason } = ending;
  if (ending.passThrough) return reason;
  if (pending.written) {
    return new ToonDBError('UNKNOWN_RESULT',
      `${pending.op} was sent but the connection ended before its reply (${reason.code}: ${reason.message}); it may or may not have been applied`,
      { cause: reason });
  }
  return new ToonDBError('CONNECTION_CLOSED', `${pending.op} was not sent: ${reason.message}`, { cause: reason });
}
