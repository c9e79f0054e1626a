/**
 * A daemon-wide budget of bytes, shared by every connection, handed out first come first served.
 * The daemon keeps two: request bytes in flight (frames read and not yet answered) and reply
 * bytes (replies written and not yet read by their clients, plus room reserved for the replies
 * of engine calls running). One connection is bounded on its own (REQUEST_BYTES_IN_FLIGHT_MAX,
 * OUTPUT_BUFFER_BYTES_MAX); without these bounds 1024 connections could hold 64 MiB each of
 * both, 64 GiB apiece.
 *
 * Responsibility: give `bytes` now if what all holders hold fits under the bound with them
 * (`tryTake`), else queue the holder, and grant the queued ones in the order they were refused
 * as bytes come back (`release`). Bytes that already exist and must be counted whatever the
 * bound (a reply written beyond what was reserved for it) are added with `charge`: they delay
 * the waiters, never fail.
 *
 * Solo bytes (`chargeSolo`, the request budget's frames of at most SOLO_FRAME_BYTES_MAX from a
 * connection holding nothing else, flow.ts) are counted apart: they never wait and never make
 * anyone wait, so a large frame at the head of the queue gets in once the other bytes leave
 * room, however many small ones keep passing it.
 *
 * Invariants:
 * - `heldBytes` (solo bytes included) never exceeds `bytesMax` but by what was `charge`d or
 *   `chargeSolo`d (and for one take granted
 *   alone after a reload lowered `bytesMax` below it, `fits`). Whatever a holder takes or is
 *   charged it gives back exactly once: when its request is answered, its reply read, its call
 *   done, or its connection closes.
 * - First come, first served: while any holder waits, a new take is queued behind it however
 *   small, and waiters are granted strictly in order. The first waiter always fits once enough
 *   comes back (a take is at most what the limits relate to the bound, and a lone take is
 *   granted whatever its size), and bytes always come back: requests get answered, engine calls
 *   finish, clients read, or the connection is cut off (partialFrameMsMax, unreadRepliesMsMax).
 *   So no holder waits forever and the daemon never deadlocks on a budget.
 * - A waiter is told by `granted`, with the bytes already counted for it; one that gives up
 *   (its connection closed) is dropped from the queue with `forget`, and the next ones are
 *   considered.
 */

/** What waits for bytes: a connection's reading (flow.ts Flow), an engine call's replies
 * (reply-budget.ts). */
export interface BudgetHolder {
  /** Its refused take of `bytes` was granted (and counted). */
  granted(bytes: number): void;
}

export class BytesBudget {
  /** Held bytes that count against the bound (everything but solo bytes). */
  private bytes = 0;
  private soloBytes = 0;
  /** Holders whose take did not fit, oldest first, with its bytes. */
  private readonly waiting = new Map<BudgetHolder, number>();

  constructor(private max: number) {}

  get heldBytes(): number {
    return this.bytes + this.soloBytes;
  }

  get bytesMax(): number {
    return this.max;
  }

  /** Holders waiting for room. */
  get waiters(): number {
    return this.waiting.size;
  }

  /** Takes `bytes` now if nobody waits and they fit; else queues `holder` (which must wait for
   * `granted`) and returns false. */
  tryTake(bytes: number, holder: BudgetHolder): boolean {
    if (this.takeNow(bytes)) return true;
    this.enqueue(bytes, holder);
    return false;
  }

  /** Queues `holder` for `bytes` behind every waiter, to be told by `granted`; for a take that
   * `takeNow` has just refused (nothing changes in between, so it cannot fit yet). */
  enqueue(bytes: number, holder: BudgetHolder): void {
    this.waiting.set(holder, bytes);
  }

  /** Takes `bytes` now if nobody waits and they fit; else takes nothing and queues nobody. */
  takeNow(bytes: number): boolean {
    if (this.waiting.size > 0 || !this.fits(bytes)) return false;
    this.bytes += bytes;
    return true;
  }

  /** Counts `bytes` that exist already (no waiting, whatever the bound). */
  charge(bytes: number): void {
    this.bytes += bytes;
  }

  /** Counts solo bytes (see the header): no waiting, and no waiter waits for them. */
  chargeSolo(bytes: number): void {
    this.soloBytes += bytes;
  }

  /** Gives back solo bytes. */
  releaseSolo(bytes: number): void {
    if (bytes === 0) return;
    this.soloBytes -= bytes;
    if (this.soloBytes < 0) throw new Error(`invariant: a daemon-wide byte budget's solo bytes went negative (${this.soloBytes})`);
  }

  /** Gives back `bytes` and grants the waiters that fit now, in order. */
  release(bytes: number): void {
    if (bytes === 0) return;
    this.bytes -= bytes;
    if (this.bytes < 0) throw new Error(`invariant: a daemon-wide byte budget went negative (${this.bytes})`);
    if (this.waiting.size > 0) this.admitWaiting(); // per reply batch: no iterator when nobody waits
  }

  /** Forgets a waiter (it gave up: its connection closed). */
  forget(holder: BudgetHolder): void {
    if (this.waiting.delete(holder)) this.admitWaiting();
  }

  /** A reload changed the bound; waiters that fit under a higher one are admitted. */
  setMax(max: number): void {
    this.max = max;
    this.admitWaiting();
  }

  /** Whether a take of `bytes` may be granted now: it fits under the bound, or nothing else is
   * held. The second case only arises after a reload lowered the bound: an open connection
   * keeps the frameBytesMax it was accepted with, so its frame (or its reply) may be larger
   * than the new bound, and refusing it forever would stop every holder queued behind it. */
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
