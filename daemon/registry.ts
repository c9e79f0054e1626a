/**
 * Per-connection registry of engine handles (open transactions or scan cursors).
 *
 * Responsibility: remember which handles a connection owns, under the id the connection names
 * each by (a cursor's id is its engine handle; a transaction's is the id its client chose at
 * `begin`, or else its engine handle), refuse a new one past the per-connection maximum or the
 * daemon-wide one (`HandleCount`, shared by the registries of one kind on every connection),
 * find the ones idle for too long, and remember recently expired ids so that a late request on
 * one gets an "expired" error rather than "unknown".
 *
 * The daemon's own uid and root (operators) may take every handle of the daemon-wide maximum;
 * other peers' registries are refused once `max - ownerReserve` are held, so that another
 * user's clients cannot leave an operator without a transaction or a cursor (as admission.ts
 * keeps it connection slots).
 *
 * Invariants: `size + reserved <= max` at all times (a cursor's handle is reserved while the
 * engine creates it; a transaction is added before its begin runs, so pipelined `begin`s cannot
 * overshoot), and the shared count is the sum of every registry's `size + reserved`, updated
 * by each change (`sync`), so it too stays within its max (but for a reload lowering it: new
 * handles are refused until enough end); the expired set is bounded; ids are unique within a
 * registry.
 */

import { OWNER_HANDLES_RESERVED } from '../protocol/limits.js';

const EXPIRED_REMEMBERED_MAX = 256;

export interface HandleEntry {
  /** The engine's handle. */
  handle: number;
  lastUsedMs: number;
  /** For cursors: the transaction they read through, if any. */
  txn?: number;
  /** For cursors of a scan that named no batchSize: how its batches grow. */
  growth?: BatchGrowth;
}

/** How a cursor's batches grow as the client takes them (daemon/handlers/scan.ts). */
export interface BatchGrowth {
  /** Most entries of the next batch read. */
  batchItems: number;
  /** What batchItems grows towards. */
  batchItemsMax: number;
}

/** Handles of one kind open across all connections, against a daemon-wide maximum (a reload
 * may change `max`). */
export class HandleCount {
  held = 0;

  constructor(public max: number) {}

  /** Of `max`, the handles kept for operators: OWNER_HANDLES_RESERVED, never more than half. */
  get ownerReserve(): number {
    return Math.min(OWNER_HANDLES_RESERVED, Math.floor(this.max / 2));
  }

  /** Most handles held across the daemon under which a peer (operator or not) may take one. */
  maxFor(operator: boolean): number {
    return operator ? this.max : this.max - this.ownerReserve;
  }
}

export class HandleRegistry {
  private readonly entries = new Map<number, HandleEntry>();
  private readonly expired = new Set<number>();
  private reserved = 0;
  /** What this registry counts in `shared` (its size + reserved when last synced). */
  private counted = 0;

  constructor(
    readonly max: number,
    readonly idleMsMax: number,
    private readonly shared: HandleCount = new HandleCount(Number.POSITIVE_INFINITY),
    /** The connection's peer is the daemon's own uid or root: it may use the operators' share. */
    private readonly operator = false,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Why the daemon-wide maximum, not this connection's, refuses new handles (`what`: e.g.
   * "open transactions"), or null when it does not. */
  refusedAcrossDaemon(what: string): string | null {
    if (this.entries.size + this.reserved >= this.max || this.shared.held < this.shared.maxFor(this.operator)) return null;
    const { held, max, ownerReserve } = this.shared;
    return held >= max
      ? `the daemon already has ${held} ${what} across all connections, its maximum (${max})`
      : `the daemon already has ${held} ${what} across all connections; it keeps the last ${ownerReserve} of its ${max} for its own user and root`;
  }

  /** Reserves room for a handle about to be created; false when the connection or the daemon is
   * at its max. */
  reserve(): boolean {
    if (!this.hasRoom()) return false;
    this.reserved += 1;
    this.sync();
    return true;
  }

  /** Registers engine handle `handle` under `id` at once; false when the connection or the
   * daemon is at its max. The caller makes sure `id` is not in use (`has`). */
  add(id: number, handle: number, nowMs: number): boolean {
    if (!this.hasRoom()) return false;
    if (this.entries.has(id)) throw new Error(`invariant: id ${id} added twice`);
    this.entries.set(id, { handle, lastUsedMs: nowMs });
    this.expired.delete(id);
    this.sync();
    return true;
  }

  /** Gives back a reservation, and registers the handle (as its own id) if the engine created
   * one, with the transaction it reads through and how its batches grow, if they do. */
  settle(handle: number | undefined, nowMs: number, txn?: number, growth?: BatchGrowth): void {
    if (this.reserved <= 0) throw new Error('invariant: settle without reserve');
    this.reserved -= 1;
    if (handle !== undefined && handle > 0) this.entries.set(handle, { handle, lastUsedMs: nowMs, txn, growth });
    this.sync();
  }

  /** Looks an id up and marks it used. */
  touch(id: number, nowMs: number): HandleEntry | undefined {
    const entry = this.entries.get(id);
    if (entry) entry.lastUsedMs = nowMs;
    return entry;
  }

  /** Looks an id up without marking it used (a read ahead is not the client's use). */
  peek(id: number): HandleEntry | undefined {
    return this.entries.get(id);
  }

  has(id: number): boolean {
    return this.entries.has(id);
  }

  delete(id: number): boolean {
    const deleted = this.entries.delete(id);
    this.sync();
    return deleted;
  }

  /** Deletes `id` if it still names engine handle `handle` (a client may reuse a finished
   * transaction's id, so a late result about the old one must not drop the new one). */
  forget(id: number, handle: number | undefined): void {
    if (this.entries.get(id)?.handle === handle) this.entries.delete(id);
    this.sync();
  }

  wasExpired(id: number): boolean {
    return this.expired.has(id);
  }

  /** Removes the entries idle for longer than idleMsMax; returns their engine handles, and
   * adds their ids to `ids` if given. */
  takeIdle(nowMs: number, ids?: Set<number>): number[] {
    return this.takeWhere((entry, id) => {
      const idle = nowMs - entry.lastUsedMs > this.idleMsMax;
      if (idle) ids?.add(id);
      return idle;
    }, true);
  }

  /** Removes the entries matching `predicate` (e.g. cursors of a finished transaction), and
   * remembers their ids as expired if `expired`; returns their engine handles. */
  takeWhere(predicate: (entry: HandleEntry, id: number) => boolean, expired = false): number[] {
    const taken: number[] = [];
    for (const [id, entry] of this.entries) {
      if (!predicate(entry, id)) continue;
      taken.push(entry.handle);
      this.entries.delete(id); // deleting the visited entry keeps a Map's iteration valid
      if (expired) this.rememberExpired(id);
    }
    this.sync();
    return taken;
  }

  /** Removes every entry (connection closing); returns their engine handles. */
  takeAll(): number[] {
    const all = [...this.entries.values()].map((entry) => entry.handle);
    this.entries.clear();
    this.sync();
    return all;
  }

  private hasRoom(): boolean {
    return this.entries.size + this.reserved < this.max && this.shared.held < this.shared.maxFor(this.operator);
  }

  /** Brings the shared count up to date with this registry's size + reserved. */
  private sync(): void {
    const now = this.entries.size + this.reserved;
    this.shared.held += now - this.counted;
    this.counted = now;
    if (this.shared.held < 0) throw new Error(`invariant: a daemon-wide handle count went negative (${this.shared.held})`);
  }

  private rememberExpired(id: number): void {
    if (this.expired.size >= EXPIRED_REMEMBERED_MAX) {
      const oldest = this.expired.values().next().value;
      if (oldest !== undefined) this.expired.delete(oldest);
    }
    this.expired.add(id);
  }
}
