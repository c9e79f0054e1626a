/**
 * PendingTable: the requests of one connection that still await a reply, keyed by request id.
 *
 * Responsibility: allocate request ids, hold each request's settle callbacks until its reply
 * (or failure) arrives, and time requests out with ONE timer for the whole table.
 *
 * Invariants:
 * - Ids are 1..REQUEST_ID_MAX, allocated by a counter that wraps; an id still pending, or one
 *   that timed out recently and may still get a late reply, is never handed out again. So a
 *   reply can only ever settle the request it was sent for (a late reply to a timed-out
 *   request finds no entry: it settles nothing, and only its request's `onLateResult`, if
 *   any, sees its result; the connection never desynchronises).
 * - Pending requests live in an IdSlots (protocol/id-slots.ts, which says why not a Map): the
 *   table never holds a settled request.
 * - Every request of a table shares one timeout, so a later request never has an earlier
 *   deadline. One timer, unref()ed, is armed for the earliest deadline while requests are
 *   pending: a sweep expires every request past its deadline and re-arms for the earliest
 *   left, but no sooner than timeoutMs / SWEEPS_PER_TIMEOUT_MAX after itself. A sweep visits
 *   the whole table, so without that gap requests added a ms apart to a stalled connection
 *   each cost a sweep of all of them (quadratic); with it a request is visited by at most ~64
 *   sweeps, and times out at most timeoutMs / 64 after its deadline. No per-request timer. The connection refs its socket while requests are pending;
 *   that is what keeps a waiting process alive.
 * - Requests leave in allocation order whenever several leave at once (a sweep, `drain`).
 * - A request is settled exactly once: `take`/`drain`/the sweep remove it before settling.
 */

import { ToonDBError } from '../protocol/errors.js';
import { IdSlots } from '../protocol/id-slots.js';
import { CLIENT_TIMEOUT_MS_MAX } from '../protocol/limits.js';
import { REQUEST_ID_MAX } from '../protocol/messages.js';

/** Timed-out ids remembered so that a late reply is dropped instead of matching a reused id.
 * Bounded; with a 2^32 id space an evicted id is reused only after ~4 billion requests. */
const TIMED_OUT_IDS_MAX = 65_536;

/** Sweeps per timeout period at most (see the header): the gap a sweep leaves before the next
 * is timeoutMs / this, so that is how late, at most, a request times out. */
const SWEEPS_PER_TIMEOUT_MAX = 64;

/** Turns a reply's result into what the caller's promise resolves with (it may throw, e.g. a
 * PROTOCOL_ERROR for a malformed result: the promise then rejects with that). */
export type ResultMap<T = unknown> = (result: unknown) => T;

/** Called with the result of a request's reply that came after the request timed out (e.g. to
 * close the cursor a timed-out `scan` opened). Must not throw. */
export type LateResult = (result: unknown) => void;

/** What the table needs of a request: its op, to name it in errors. */
export interface NamedRequest {
  readonly op: string;
}

/** One request from its call until it is settled; the connection writes it from here too (one
 * object per request: no separate queue or batch entries). */
export interface Pending<R extends NamedRequest> {
  readonly id: number;
  readonly op: string;
  /** The request until its frame is written (then null: its buffers are not held to the reply). */
  request: R | null;
  /** Its frame if the codec encoded it, until written; null when written by hand from `request`. */
  frame: Buffer | null;
  /** Size of its frame, header included, once sized for writing (0 before): exact for a frame
   * the codec encoded, a bound for one written by hand (simpleRequestBytesMax). */
  frameBytes: number;
  /** performance.now() after which the request times out; Infinity for no timeout. */
  readonly deadlineMs: number;
  /** True once the frame was handed to the socket (decides UNKNOWN_RESULT vs CONNECTION_CLOSED). */
  written: boolean;
  /** False once removed from the table; a settled request is never settled again. */
  live: boolean;
  readonly resolve: (result: unknown) => void;
  readonly reject: (error: ToonDBError) => void;
  /** Applied to the result before `resolve` (no `.then` and microtask hop per request). */
  readonly map: ResultMap | null;
  /** Given a successful reply that arrives after the request timed out. */
  readonly onLateResult: LateResult | null;
}

export class PendingTable<R extends NamedRequest> {
  private readonly byId = new IdSlots<Pending<R>>(REQUEST_ID_MAX);
  /** Timed-out ids still expecting a late reply, with what to do with its result. */
  private readonly timedOut = new Map<number, LateResult | null>();
  private readonly isTimedOut = (id: number): boolean => this.timedOut.size > 0 && this.timedOut.has(id);
  private timer: NodeJS.Timeout | null = null;

  /**
   * @param timeoutMs request timeout; 0 disables timeouts. It may change later (requests added
   *   from then on get the new one): the hello is bounded by the connect deadline instead.
   * @param onExpired called after each sweep that expired requests (already rejected).
   */
  constructor(
    public timeoutMs: number,
    private readonly onExpired: () => void,
  ) {}

  get size(): number {
    return this.byId.size;
  }

  /** Registers a request and returns it with its freshly allocated id. */
  add(request: R, resolve: (result: unknown) => void, reject: (error: ToonDBError) => void, map: ResultMap | null = null,
    onLateResult: LateResult | null = null): Pending<R> {
    if (this.byId.size + this.timedOut.size >= REQUEST_ID_MAX) {
      throw new ToonDBError('INTERNAL', 'request id space exhausted');
    }
    const id = this.byId.allocate(this.isTimedOut);
    const deadlineMs = this.timeoutMs > 0 ? performance.now() + this.timeoutMs : Infinity;
    const pending: Pending<R> = {
      id, op: request.op, request, frame: null, frameBytes: 0, deadlineMs, written: false, live: true, resolve, reject, map, onLateResult,
    };
    this.byId.put(pending);
    // Every deadline pending is no later than this one, so an armed timer is early enough.
    if (this.timer === null) this.arm(deadlineMs);
    return pending;
  }

  /** Removes and returns the request with this id, or undefined (unknown or timed out: then
   * see `takeLate`). */
  take(id: number): Pending<R> | undefined {
    const pending = this.byId.take(id);
    if (pending !== undefined) pending.live = false;
    return pending;
  }

  /** For the late reply to timed-out request `id`: forgets the id (it may be reused now) and
   * returns what to do with the reply's result, or null. */
  takeLate(id: number): LateResult | null {
    const late = this.timedOut.get(id) ?? null;
    this.timedOut.delete(id);
    return late;
  }

  /** Removes every request (in id allocation order) and stops the timer. */
  drain(): Pending<R>[] {
    const all = this.byId.removeWhere(() => true);
    for (const pending of all) pending.live = false;
    this.stopTimer();
    return all;
  }

  stopTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Arms the single timer for `deadlineMs` (nothing for Infinity). */
  private arm(deadlineMs: number): void {
    if (deadlineMs === Infinity) return;
    // At most the timeout itself, which rounding can pass by a fraction of a ms: a delay past
    // setTimeout's bound fires after 1 ms, and the sweep would re-arm it every ms.
    const delayMs = Math.min(CLIENT_TIMEOUT_MS_MAX, Math.max(0, Math.ceil(deadlineMs - performance.now())));
    this.timer = setTimeout(() => this.sweep(), delayMs);
    this.timer.unref();
  }

  private sweep(): void {
    this.timer = null;
    const now = performance.now();
    const expired = this.byId.removeWhere((pending) => pending.deadlineMs <= now);
    for (const pending of expired) {
      pending.live = false;
      if (pending.written) this.rememberTimedOut(pending); // an unsent one gets no reply
    }
    let nextDeadlineMs = Infinity;
    this.byId.forEach((pending) => { nextDeadlineMs = Math.min(nextDeadlineMs, pending.deadlineMs); });
    this.arm(Math.max(nextDeadlineMs, now + this.timeoutMs / SWEEPS_PER_TIMEOUT_MAX));
    for (const pending of expired) {
      pending.reject(new ToonDBError('TIMEOUT', pending.written
        ? `${pending.op} got no reply within ${this.timeoutMs} ms; it may or may not have been applied`
        : `${pending.op} waited ${this.timeoutMs} ms for room in the write queue and was not sent`));
    }
    if (expired.length > 0) this.onExpired();
  }

  private rememberTimedOut(pending: Pending<R>): void {
    if (this.timedOut.size >= TIMED_OUT_IDS_MAX) {
      const oldest = this.timedOut.keys().next();
      if (!oldest.done) this.timedOut.delete(oldest.value);
    }
    this.timedOut.set(pending.id, pending.onLateResult);
  }
}
