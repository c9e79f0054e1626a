/**
 * Flow control of one connection, both ways: when its session reads requests, when it may start
 * new work given the replies its client has not read, and when a stuck client is cut off.
 *
 * Responsibility: the input side counts the requests in flight (read and not yet answered) and
 * their body bytes, pauses the socket while either is over its bound, and tells how long a
 * frame has stayed incomplete through no fault of the daemon; the output side
 * judges the bytes the socket still holds for the client (`writableLength`: replies written by
 * the session and not yet taken by the kernel, which the client empties by reading).
 *
 * Invariants:
 * - Reading pauses at inFlightPerConnectionMax requests or REQUEST_BYTES_IN_FLIGHT_MAX of their
 *   bodies, and resumes below half of both with less than a quarter of OUTPUT_BUFFER_BYTES_MAX
 *   unread. A frame left incomplete while reading was paused is not counted against the client.
 * - Across the daemon, every frame is admitted by the shared BytesBudget (bytes-budget.ts)
 *   before its body is read (`admit`); one of at most SOLO_FRAME_BYTES_MAX while the connection
 *   holds nothing else there is counted without waiting (also a refused one that becomes so
 *   while it waits: it leaves the queue), so a few connections that announce large frames and
 *   send nothing cannot stall everyone's small requests; a refused one pauses reading until the
 *   budget grants it. What the connection holds there (`daemonHeldBytes`:
 *   admitted frames not yet answered or dropped) is given back as replies leave (`answered`),
 *   bodies are dropped unanswered (`bodyDropped`), and all at once when it closes (`closed`),
 *   never twice.
 *   The socket reads only while neither this connection's bounds nor the budget hold it.
 * - Across the daemon, the reply budget (reply-budget.ts) holds this connection's unread reply
 *   bytes as last noted (`noteUnread`: after each write, on 'drain', at each sweep, all given
 *   back at close); bytes a write adds are covered by the reservation of the replies written,
 *   if they had one, else charged.
 * - From OUTPUT_PAUSE_BYTES of unread replies the output is `full`: the session starts no engine
 *   work (its requests wait in its bounded queue) until the socket reports 'drain', i.e. the
 *   client read everything. Work already running still adds its replies, which engine calls
 *   bound in bytes (ENGINE_CALL_OUTPUT_BYTES_MAX, batchBytesMax).
 * - `overflowing` past OUTPUT_BUFFER_BYTES_MAX: replies about to be written would pile onto a
 *   client that has not kept up with what it already asked for.
 * - `incompleteFrameMs` runs from the first byte of the frame the decoder holds part of, and
 *   stops while reading is paused: a frame's bytes trickling in do not restart it.
 * - `unreadStalledMs` is how long the output has stayed full (or held any unread bytes while
 *   calls wait for the reply budget) with no sign that the client reads
 *   (it neither shrank by UNREAD_PROGRESS_BYTES_MIN between two samples of the periodic sweep
 *   nor drained in between); 0 when
 *   it is not full or the client read. A drain counts because a client that keeps reading may
 *   be sampled at the same size each time: drained, then refilled by the next bounded call.
 */

import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { OUTPUT_BUFFER_BYTES_MAX, OUTPUT_PAUSE_BYTES, REQUEST_BYTES_IN_FLIGHT_MAX, SOLO_FRAME_BYTES_MAX, UNREAD_PROGRESS_BYTES_MIN } from '../protocol/limits.js';
import type { BudgetHolder, BytesBudget } from './bytes-budget.js';
import type { ReplyReservation } from './reply-budget.js';

export class Flow implements BudgetHolder {
  /** The socket is paused (for either reason below). */
  private paused = false;
  /** This connection's own bounds hold reading (in-flight requests, their bytes, unread replies). */
  private heldByConnection = false;
  /** The daemon-wide budget refused its next frame and has not granted it yet. */
  private heldByBudget = false;
  /** Bytes of admitted frames not yet answered or dropped, counted in the daemon budget. */
  private budgetBytes = 0;
  /** Of those, the solo frame's (admitted alone, bytes-budget.ts `chargeSolo`): given back
   * first, whichever reply leaves first, so both parts stay exact in total. */
  private soloBytes = 0;
  /** The length of the frame the budget refused and has not granted yet; 0 when none waits. */
  private waitingBytes = 0;
  /** Unread reply bytes counted in the daemon-wide reply budget (the socket's writableLength
   * when last noted). */
  private unreadNoted = 0;
  private isClosed = false;
  /** Requests read and not yet answered, and the body bytes of those queued among them. */
  private requests = 0;
  private requestBytes = 0;
  /** On the reading clock (`readingMs`): when the frame the decoder holds part of began (the
   * chunk that brought its first byte); -1 at a frame boundary. */
  private partialSinceMs = -1;
  /** performance.now() when reading was last paused, and the time spent paused before that. */
  private pausedAtMs = 0;
  private pausedTotalMs = 0;
  /** Whether `full` held work back since the last drain. */
  private heldWork = false;
  /** When the output was first seen full and not shrinking; -1 when it is not. */
  private stalledSinceMs = -1;
  private sampledBytes = 0;
  /** The socket drained (the client read everything) since the last sample. */
  private drainedSinceSample = false;

  /** `inFlightMax`: the connection's inFlightPerConnectionMax; `budget`: the daemon's request
   * bytes in flight; `replyBudget`: the daemon's reply bytes; `onGranted`: a frame the budget
   * refused was admitted (called later, never from inside the budget), so the session decodes
   * what it kept behind that frame's header. */
  constructor(
    private readonly socket: Socket,
    private readonly inFlightMax: number,
    private readonly budget: BytesBudget,
    private readonly replyBudget: BytesBudget,
    private readonly onGranted: () => void,
  ) {}

  /** Bytes this connection holds in the daemon-wide budget. */
  get daemonHeldBytes(): number {
    return this.budgetBytes;
  }

  /** FrameDecoder's `admit`: true if a frame of `bytes` fits the daemon-wide budget now; else
   * reading stops until `granted`. */
  readonly admit = (bytes: number): boolean => {
    if (this.isClosed) return false;
    if (this.budgetBytes === 0 && bytes <= SOLO_FRAME_BYTES_MAX) {
      this.takeSolo(bytes); // counted, but never queued behind others
      return true;
    }
    if (this.budget.tryTake(bytes, this)) {
      this.budgetBytes += bytes;
      return true;
    }
    this.waitingBytes = bytes;
    this.heldByBudget = true;
    this.applyPause();
    return false;
  };

  private takeSolo(bytes: number): void {
    this.budget.chargeSolo(bytes);
    this.soloBytes += bytes;
    this.budgetBytes += bytes;
  }

  /** BudgetHolder: the refused frame got in. */
  granted(bytes: number): void {
    this.grantedAfterWait(bytes);
    this.budgetBytes += bytes;
  }

  /** The waiting frame got in (its bytes already counted): decode on, outside the budget. */
  private grantedAfterWait(bytes: number): void {
    this.waitingBytes = 0;
    queueMicrotask(() => {
      if (this.isClosed) return;
      this.heldByBudget = false;
      this.onGranted(); // may refuse a later frame, which holds reading again
      this.applyPause();
    });
  }

  /** A body admitted and dropped without a reply that counts it (refused before its queue). */
  bodyDropped(bytes: number): void {
    this.giveBack(bytes);
  }

  /** The connection closed: everything it holds goes back to the budgets, once. */
  closed(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.budget.forget(this);
    const held = this.budgetBytes;
    const solo = this.soloBytes;
    this.budgetBytes = 0;
    this.soloBytes = 0;
    this.budget.releaseSolo(solo);
    this.budget.release(held - solo);
    const unread = this.unreadNoted;
    this.unreadNoted = 0;
    this.replyBudget.release(unread);
  }

  /** After replies were written (`reservation`: the one made for them, if any), on 'drain', and
   * at each sweep: the reply budget holds what the socket holds now. */
  noteUnread(reservation: ReplyReservation | null = null): void {
    if (this.isClosed) return;
    const bytes = this.socket.writableLength;
    const added = bytes - this.unreadNoted;
    if (added === 0) return;
    this.unreadNoted = bytes;
    if (added < 0) {
      this.replyBudget.release(-added);
      return;
    }
    const uncovered = reservation === null ? added : reservation.cover(added);
    if (uncovered > 0) this.replyBudget.charge(uncovered);
  }

  private giveBack(bytes: number): void {
    if (this.isClosed || bytes === 0) return;
    const solo = Math.min(bytes, this.soloBytes);
    this.soloBytes -= solo;
    this.budgetBytes -= bytes;
    this.budget.releaseSolo(solo);
    this.budget.release(bytes - solo); // may grant this connection's waiting frame
    const waiting = this.waitingBytes;
    if (waiting > 0 && waiting <= SOLO_FRAME_BYTES_MAX && this.budgetBytes === 0) {
      // Its frame waits behind others though the connection now holds nothing: it goes in alone.
      this.budget.forget(this);
      this.takeSolo(waiting);
      this.grantedAfterWait(waiting);
    }
  }

  /** Pauses or resumes the socket to match what holds it. */
  private applyPause(): void {
    const hold = this.heldByConnection || this.heldByBudget;
    if (hold === this.paused || this.isClosed) return;
    this.paused = hold;
    if (hold) {
      this.pausedAtMs = performance.now();
      this.socket.pause();
    } else {
      this.pausedTotalMs += performance.now() - this.pausedAtMs;
      this.socket.resume();
    }
  }

  /** Time that passed while the daemon read this connection (ms): the clock of an incomplete
   * frame, which stops while reading is paused (that wait is the daemon's, not the client's). */
  private readingMs(): number {
    return (this.paused ? this.pausedAtMs : performance.now()) - this.pausedTotalMs;
  }

  /** The decoder took a chunk (or resumed after an admission), completing `completed` frames,
   * and now holds `bufferedBytes` of the next one: a frame begun in this chunk starts its
   * clock now; one still incomplete keeps the clock it had. */
  framesRead(completed: number, bufferedBytes: number): void {
    if (bufferedBytes === 0) this.partialSinceMs = -1;
    else if (completed > 0 || this.partialSinceMs < 0) this.partialSinceMs = this.readingMs();
  }

  /** A request was read: in flight until its reply. */
  requestRead(): void {
    this.requests += 1;
  }

  /** Its body is held until its reply (`Reply.requestBytes`): a request queued for work. */
  bodyHeld(bytes: number): void {
    this.requestBytes += bytes;
  }

  /** Replies left (written, or dropped on a closed connection); their requests are no longer
   * in flight. */
  answered(replies: readonly { requestBytes: number }[]): void {
    this.requests -= replies.length;
    let bytes = 0;
    for (const reply of replies) bytes += reply.requestBytes;
    this.requestBytes -= bytes;
    this.giveBack(bytes);
  }

  /** Pauses reading if the requests in flight are at either bound. */
  pauseIfFull(): void {
    if (this.requests < this.inFlightMax && this.requestBytes < REQUEST_BYTES_IN_FLIGHT_MAX) return;
    this.heldByConnection = true;
    this.applyPause();
  }

  /** Resumes reading if this connection's bounds held it and it is back under them (the
   * daemon-wide budget may still hold it). */
  maybeResume(): void {
    if (!this.heldByConnection || this.requests >= this.inFlightMax / 2 || this.requestBytes >= REQUEST_BYTES_IN_FLIGHT_MAX / 2
      || this.socket.writableLength >= OUTPUT_BUFFER_BYTES_MAX / 4) return;
    this.heldByConnection = false;
    this.applyPause();
  }

  /** How long the decoder's partial frame has been incomplete since its first byte, not
   * counting time the daemon did not read; 0 while it does not read, or at a frame boundary.
   * From the first byte, not the last: a client trickling a byte at a time would otherwise
   * hold its frame's length in the daemon-wide request budget for ever. */
  incompleteFrameMs(): number {
    return this.paused || this.partialSinceMs < 0 ? 0 : this.readingMs() - this.partialSinceMs;
  }

  get unreadBytes(): number {
    return this.socket.writableLength;
  }

  /** True while new work must wait for the client to read. */
  full(): boolean {
    if (this.socket.writableLength < OUTPUT_PAUSE_BYTES) return false;
    this.heldWork = true;
    return true;
  }

  /** Called on the socket's 'drain': whether work was held back and may start now. */
  drained(): boolean {
    this.drainedSinceSample = true;
    const held = this.heldWork;
    this.heldWork = false;
    return held;
  }

  overflowing(): boolean {
    return this.socket.writableLength > OUTPUT_BUFFER_BYTES_MAX;
  }

  unreadStalledMs(nowMs: number): number {
    const bytes = this.socket.writableLength;
    // Shrinking by a few bytes is not reading (UNREAD_PROGRESS_BYTES_MIN); with less than that
    // unread, any shrink counts.
    const progressMin = Math.max(1, Math.min(UNREAD_PROGRESS_BYTES_MIN, this.sampledBytes));
    const read = this.drainedSinceSample || this.sampledBytes - bytes >= progressMin;
    this.sampledBytes = bytes;
    this.drainedSinceSample = false;
    // Below the pause bytes a client is stuck only if others wait for the reply bytes it holds.
    if ((bytes < OUTPUT_PAUSE_BYTES && (bytes === 0 || this.replyBudget.waiters === 0)) || read) {
      this.stalledSinceMs = -1;
      return 0;
    }
    if (this.stalledSinceMs < 0) this.stalledSinceMs = nowMs;
    return nowMs - this.stalledSinceMs;
  }
}
