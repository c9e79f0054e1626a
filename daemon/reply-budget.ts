/**
 * Reply bytes across the whole daemon: room reserved for an engine call's replies before the
 * call starts, turned into unread bytes as the replies are written, given back as the client
 * reads them.
 *
 * Responsibility: size a call's reservation (`replyBytesFor`: the largest replies its requests
 * can get, capped for a call the engine bounds), take it from the daemon-wide BytesBudget
 * (replyBytesDaemonMax) for one connection, at once or in its turn (`ReplyReserver`), and keep
 * it (`ReplyReservation`) until the call and every reply group it produced are done. The
 * unread side is Flow's (`noteUnread`): the bytes its socket still holds, covered by the
 * reservation of the replies just written, or charged.
 *
 * Invariants:
 * - What the budget holds is the sum over connections of their unread reply bytes (as last
 *   noted: after each write, on 'drain' and at each idle sweep, so a residue under the socket's
 *   high-water mark that the kernel takes with no 'drain' stays counted until the next of
 *   those, at most a second) and of the reservations not yet turned into them; replies written
 *   beyond any reservation (admin requests, errors found before engine work) are charged, so it
 *   may pass replyBytesDaemonMax by those only.
 * - A reservation gives back exactly once what it did not cover: when its last holder (the call,
 *   or a reply group waiting for an fsync) is done. A waiting one is granted in turn or, if its
 *   connection closes first, resolved empty, so the call it was for finishes like any call of a
 *   closed connection (its replies are dropped).
 */

import type { EngineResult } from '../engine/types.js';
import { ENVELOPE_BYTES_MAX, FRAME_HEADER_BYTES, type ServerLimits } from '../protocol/limits.js';
import { engineCallReplyBytesMax, replyBytesMaxOf } from '../protocol/limit-relations.js';
import { OP_FAMILIES, type Request } from '../protocol/messages.js';
import type { BudgetHolder, BytesBudget } from './bytes-budget.js';

/** The largest replies requests[from, to) can get; at most engineCallReplyBytesMax when one
 * engine call runs them (`engineBounded`: it ends early once its data are large). Admin
 * requests count nothing: their replies are small and never wait. */
export function replyBytesFor(requests: readonly { req: Request }[], from: number, to: number, limits: ServerLimits, engineBounded: boolean): number {
  let bytes = 0;
  for (let i = from; i < to; i++) {
    const op = requests[i].req.op;
    if (OP_FAMILIES[op] !== 'admin') bytes += replyBytesMaxOf(op, limits);
  }
  return engineBounded ? Math.min(bytes, engineCallReplyBytesMax(limits)) : bytes;
}

/** At most the reply bytes `results` make, known once a call has returned: for reads answered
 * on the daemon's thread, which reserve what they produced instead of what they could have. */
export function replyBytesOfResults(results: readonly EngineResult[]): number {
  let bytes = 0;
  for (const result of results) {
    bytes += FRAME_HEADER_BYTES + ENVELOPE_BYTES_MAX;
    if (result.value) bytes += result.value.length;
    if (result.values) bytes += result.values.bytes.length;
    if (result.entries) bytes += result.entries.bytes.length;
    if (result.keys) for (const key of result.keys) bytes += key.length + 5;
  }
  return bytes;
}

/** Room in the reply budget held for one engine call's replies. */
export class ReplyReservation {
  /** The call, and each reply group of it not yet written. */
  private holders = 1;

  constructor(
    private readonly budget: BytesBudget,
    private bytes: number,
  ) {}

  /** A reply group of the call is on its way (written now, or after an fsync): it keeps the
   * reservation until `drop`. */
  hold(): void {
    this.holders += 1;
  }

  /** Of `bytes` just left unread on the socket by this call's replies, covers what is still
   * reserved; returns the rest, which the caller charges. */
  cover(bytes: number): number {
    const covered = Math.min(bytes, this.bytes);
    this.bytes -= covered;
    return bytes - covered;
  }

  /** One holder is done; the last gives back what was not covered. */
  drop(): void {
    this.holders -= 1;
    if (this.holders < 0) throw new Error('invariant: a reply reservation was dropped more often than held');
    if (this.holders > 0 || this.bytes === 0) return;
    const bytes = this.bytes;
    this.bytes = 0;
    this.budget.release(bytes);
  }
}

/** A take of the budget in its turn. */
interface Waiter extends BudgetHolder {
  resolve(reservation: ReplyReservation): void;
}

/** One connection's access to the reply budget. */
export class ReplyReserver {
  private readonly waiters = new Set<Waiter>();
  private isClosed = false;

  constructor(private readonly budget: BytesBudget) {}

  /** A reservation of `bytes` now, or null if it has to wait (nothing is queued). */
  tryReserve(bytes: number): ReplyReservation | null {
    return this.budget.takeNow(bytes) ? new ReplyReservation(this.budget, bytes) : null;
  }

  /** A reservation of `bytes`, in its turn behind every call waiting already. */
  reserve(bytes: number): ReplyReservation | Promise<ReplyReservation> {
    if (this.isClosed) return new ReplyReservation(this.budget, 0);
    return this.tryReserve(bytes) ?? new Promise((resolve) => {
      const waiter: Waiter = {
        resolve,
        granted: (granted) => {
          this.waiters.delete(waiter);
          resolve(new ReplyReservation(this.budget, granted));
        },
      };
      this.waiters.add(waiter);
      this.budget.enqueue(bytes, waiter); // tryReserve refused it just now
    });
  }

  /** The connection closed: its waiting calls go on with nothing reserved (and send nothing). */
  closed(): void {
    this.isClosed = true;
    for (const waiter of this.waiters) {
      this.budget.forget(waiter);
      waiter.resolve(new ReplyReservation(this.budget, 0));
    }
    this.waiters.clear();
  }
}
