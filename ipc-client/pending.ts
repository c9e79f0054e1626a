/**
 * PendingTable: the requests of one connection that still await a reply, keyed by request id.
 *
 * Responsibility: allocate request ids, hold each request's settle callbacks until its reply
 * (or failure) arrives, and time requests out with ONE timer for the whole table.
 *
 * Why an array of slots and not a Map: every request passes through this table, so it is the
 * client's hottest structure. Keyed by a Map, with 256 requests in flight ~2.4 MB survived
 * each young-generation GC of the client (V8's --trace-gc-nvp), ~80 % of it promoted, and a
 * scavenge took ~5 ms; the sampling heap profiler, asked for objects that outlive minor GCs,
 * put the Pending objects and the Map's backing tables first. Why V8 kept them is not pinned
 * down (a Map churned the same way in isolation did not show it). With slots ~0.3 MB survives,
 * a scavenge takes 2-3 ms, and the client's CPU per request fell by a third (see the commit).
 *
 * Invariants:
 * - Ids are 1..REQUEST_ID_MAX, allocated by a counter that wraps; an id still pending, or one
 *   that timed out recently and may still get a late reply, is never handed out again. So a
 *   reply can only ever settle the request it was sent for (a late reply to a timed-out
 *   request finds no entry: it settles nothing, and only its request's `onLateResult`, if
 *   any, sees its result; the connection never desynchronises).
 * - A pending request lives in slot `id & mask` of a power-of-two array, and no two pending
 *   requests share a slot: the counter skips ids whose slot is taken. The array doubles before
 *   it is half full (moved entries cannot collide: equal low bits under the larger mask would
 *   have been equal under the smaller one), and an emptied array larger than SLOTS_KEPT_MAX
 *   goes back to SLOTS_INITIAL. A slot is cleared when its request leaves the table, so the
 *   table never holds a settled request.
 * - Every request of a table shares one timeout, so a later request never has an earlier
 *   deadline. One timer, unref()ed, is armed for the earliest deadline while requests are
 *   pending: a sweep expires every request past its deadline and re-arms for the earliest
 *   left. No per-request timer. The connection refs its socket while requests are pending;
 *   that is what keeps a waiting process alive.
 * - Requests leave in allocation order whenever several leave at once (a sweep, `drain`).
 * - A request is settled exactly once: `take`/`drain`/the sweep remove it before settling.
 */

import { ToonDBError } from '../protocol/errors.js';
import { REQUEST_ID_MAX } from '../protocol/messages.js';

/** Timed-out ids remembered so that a late reply is dropped instead of matching a reused id.
 * Bounded; with a 2^32 id space an evicted id is reused only after ~4 billion requests. */
const TIMED_OUT_IDS_MAX = 65_536;
/** Slots of a new table (a power of two); 1024 slots hold 512 requests before it grows. */
const SLOTS_INITIAL = 1024;
/** An emptied table with more slots than this shrinks back to SLOTS_INITIAL. */
const SLOTS_KEPT_MAX = 16_384;

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
  /** Size of its frame, header included, once sized for writing (0 before). */
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
  /** Slot `id & mask` holds the pending request with that id, if any. */
  private slots: (Pending<R> | undefined)[] = emptySlots<Pending<R>>(SLOTS_INITIAL);
  private mask = SLOTS_INITIAL - 1;
  private count = 0;
  /** Timed-out ids still expecting a late reply, with what to do with its result. */
  private readonly timedOut = new Map<number, LateResult | null>();
  private lastId = 0;
  private timer: NodeJS.Timeout | null = null;

  /**
   * @param timeoutMs request timeout; 0 disables timeouts.
   * @param onExpired called after each sweep that expired requests (already rejected).
   */
  constructor(
    private readonly timeoutMs: number,
    private readonly onExpired: () => void,
  ) {}

  get size(): number {
    return this.count;
  }

  /** Registers a request and returns it with its freshly allocated id. */
  add(request: R, resolve: (result: unknown) => void, reject: (error: ToonDBError) => void, map: ResultMap | null = null,
    onLateResult: LateResult | null = null): Pending<R> {
    const id = this.allocateId();
    const deadlineMs = this.timeoutMs > 0 ? performance.now() + this.timeoutMs : Infinity;
    const pending: Pending<R> = {
      id, op: request.op, request, frame: null, frameBytes: 0, deadlineMs, written: false, live: true, resolve, reject, map, onLateResult,
    };
    this.slots[id & this.mask] = pending;
    this.count += 1;
    // Every deadline pending is no later than this one, so an armed timer is early enough.
    if (this.timer === null) this.arm(deadlineMs);
    return pending;
  }

  /** Removes and returns the request with this id, or undefined (unknown or timed out: then
   * see `takeLate`). */
  take(id: number): Pending<R> | undefined {
    const slot = id & this.mask;
    const pending = this.slots[slot];
    if (pending === undefined || pending.id !== id) return undefined;
    this.slots[slot] = undefined;
    pending.live = false;
    this.count -= 1;
    if (this.count === 0) this.shrinkIfLarge();
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
    const all = this.removeWhere(() => true);
    this.stopTimer();
    return all;
  }

  stopTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private allocateId(): number {
    if (this.count + this.timedOut.size >= REQUEST_ID_MAX) {
      throw new ToonDBError('INTERNAL', 'request id space exhausted');
    }
    // At most half the slots are taken after this add, so a free one is a few steps away.
    if ((this.count + 1) * 2 > this.slots.length) this.resize(this.slots.length * 2);
    let id = this.lastId;
    do {
      id = id >= REQUEST_ID_MAX ? 1 : id + 1;
    } while (this.slots[id & this.mask] !== undefined || (this.timedOut.size > 0 && this.timedOut.has(id)));
    this.lastId = id;
    return id;
  }

  /** Moves every pending request into a table of `length` slots (a power of two that holds
   * them all without sharing a slot: see the header). */
  private resize(length: number): void {
    const slots = emptySlots<Pending<R>>(length);
    const mask = length - 1;
    for (const pending of this.slots) {
      if (pending === undefined) continue;
      if (slots[pending.id & mask] !== undefined) throw new Error(`invariant: request ${pending.id} shares a slot after resizing`);
      slots[pending.id & mask] = pending;
    }
    this.slots = slots;
    this.mask = mask;
  }

  /** Gives an emptied table's memory back after a burst of requests grew it. */
  private shrinkIfLarge(): void {
    if (this.slots.length > SLOTS_KEPT_MAX) {
      this.slots = emptySlots<Pending<R>>(SLOTS_INITIAL);
      this.mask = SLOTS_INITIAL - 1;
    }
  }

  /** Removes the requests `leaves` picks and returns them in allocation order. */
  private removeWhere(leaves: (pending: Pending<R>) => boolean): Pending<R>[] {
    const removed: Pending<R>[] = [];
    for (let slot = 0; slot < this.slots.length; slot += 1) {
      const pending = this.slots[slot];
      if (pending === undefined || !leaves(pending)) continue;
      this.slots[slot] = undefined;
      pending.live = false;
      removed.push(pending);
    }
    this.count -= removed.length;
    if (this.count === 0) this.shrinkIfLarge();
    // Allocation order: the ids after lastId were handed out longest ago (the counter wraps).
    const age = (id: number): number => (id > this.lastId ? id - this.lastId : id + REQUEST_ID_MAX - this.lastId);
    return removed.sort((a, b) => age(a.id) - age(b.id));
  }

  /** Arms the single timer for `deadlineMs` (nothing for Infinity). */
  private arm(deadlineMs: number): void {
    if (deadlineMs === Infinity) return;
    const delayMs = Math.max(0, Math.ceil(deadlineMs - performance.now()));
    this.timer = setTimeout(() => this.sweep(), delayMs);
    this.timer.unref();
  }

  private sweep(): void {
    this.timer = null;
    const now = performance.now();
    const expired = this.removeWhere((pending) => pending.deadlineMs <= now);
    for (const pending of expired) {
      if (pending.written) this.rememberTimedOut(pending); // an unsent one gets no reply
    }
    let nextDeadlineMs = Infinity;
    for (const pending of this.slots) {
      if (pending !== undefined && pending.deadlineMs < nextDeadlineMs) nextDeadlineMs = pending.deadlineMs;
    }
    this.arm(nextDeadlineMs);
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

function emptySlots<T>(length: number): (T | undefined)[] {
  return new Array<T | undefined>(length).fill(undefined);
}
