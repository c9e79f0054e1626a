/**
 * Request bytes in flight across the whole daemon: one budget that every connection's frames
 * take from before they are read, and give back when they are answered.
 *
 * Responsibility: admit a frame (its body length, known from its header) if the bytes all
 * connections hold fit under requestBytesInFlightDaemonMax, else queue its connection, which
 * stops reading, and admit the queued frames in the order they were refused as bytes come back.
 * REQUEST_BYTES_IN_FLIGHT_MAX bounds one connection; without this bound 1024 connections could
 * hold 64 MiB each, 64 GiB in all.
 *
 * Invariants:
 * - `heldBytes` never exceeds `bytesMax` (but for one frame admitted alone after a reload
 *   lowered `bytesMax` below an open connection's frameBytesMax, `fits`): a frame's length is
 *   added when it is admitted, before any byte of its body is taken from the socket
 *   (FrameDecoder's `admit`), and taken back when its request is answered or dropped, or its
 *   connection closes (each connection keeps what it holds, and gives all of it back once, at
 *   close).
 * - First come, first served: while any connection waits, a new frame is queued behind it
 *   however small, and waiting frames are admitted strictly in order. The first waiter always
 *   fits once enough comes back (a frame is at most frameBytesMax, and frameBytesMax <=
 *   bytesMax is checked with the limits), and bytes always come back: every admitted frame is
 *   a request that gets answered, or a connection that completes or loses its partial frame
 *   (partialFrameMsMax) or is cut off for not reading its replies (unreadRepliesMsMax). So no
 *   connection waits forever and the daemon never deadlocks on its own budget.
 * - A waiter is told of its admission by `granted`, with the bytes already counted for it; one
 *   that closes while waiting is dropped from the queue, and the next ones are considered.
 */

/** A connection as the budget sees it (flow.ts Flow). */
export interface BudgetHolder {
  /** Its refused frame of `bytes` was admitted (and counted): it may read again. */
  granted(bytes: number): void;
}

export class RequestBytesBudget {
  private bytes = 0;
  /** Connections whose next frame did not fit, oldest first, with that frame's length. */
  private readonly waiting = new Map<BudgetHolder, number>();

  constructor(private max: number) {}

  get heldBytes(): number {
    return this.bytes;
  }

  get bytesMax(): number {
    return this.max;
  }

  /** Connections waiting for room. */
  get waiters(): number {
    return this.waiting.size;
  }

  /** Admits a frame of `bytes` now if nobody waits and it fits; else queues `holder` (which
   * must stop reading) and returns false. */
  tryTake(bytes: number, holder: BudgetHolder): boolean {
    if (this.waiting.size === 0 && this.fits(bytes)) {
      this.bytes += bytes;
      return true;
    }
    this.waiting.set(holder, bytes);
    return false;
  }

  /** Gives back `bytes` and admits the waiters that fit now, in order. */
  release(bytes: number): void {
    if (bytes === 0) return;
    this.bytes -= bytes;
    if (this.bytes < 0) throw new Error(`invariant: request bytes in flight went negative (${this.bytes})`);
    if (this.waiting.size > 0) this.admitWaiting(); // per reply batch: no iterator when nobody waits
  }

  /** Forgets a waiter (its connection closed). */
  forget(holder: BudgetHolder): void {
    if (this.waiting.delete(holder)) this.admitWaiting();
  }

  /** A reload changed the bound; waiters that fit under a higher one are admitted. */
  setMax(max: number): void {
    this.max = max;
    this.admitWaiting();
  }

  /** Whether a frame of `bytes` may be admitted now: it fits under the bound, or nothing else
   * is held. The second case only arises after a reload lowered the bound: an open connection
   * keeps the frameBytesMax it was accepted with, so its frame may be larger than the new
   * bound, and refusing it forever would stop every connection queued behind it. */
  private fits(bytes: number): boolean {
    return this.bytes + bytes <= this.max || this.bytes === 0;
  }

  private admitWaiting(): void {
    for (const [holder, bytes] of this.waiting) {
      if (!this.fits(bytes)) return;
      this.waiting.delete(holder);
      this.bytes += bytes;
      holder.granted(bytes);
    }
  }
}
