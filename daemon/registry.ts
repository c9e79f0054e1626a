/**
 * Per-connection registry of engine handles (open transactions or scan cursors).
 *
 * Responsibility: remember which handles a connection owns, under the id the connection names
 * each by (a cursor's id is its engine handle; a transaction's is the id its client chose at
 * `begin`, or else its engine handle), refuse a new one past the per-connection maximum, find
 * the ones idle for too long, and remember recently expired ids so that a late request on one
 * gets an "expired" error rather than "unknown".
 *
 * Invariants: `size + reserved <= max` at all times (a cursor's handle is reserved while the
 * engine creates it; a transaction is added before its begin runs, so pipelined `begin`s cannot
 * overshoot); the expired set is bounded; ids are unique within a registry.
 */

const EXPIRED_REMEMBERED_MAX = 256;

export interface HandleEntry {
  /** The engine's handle. */
  handle: number;
  lastUsedMs: number;
  /** For cursors: the transaction they read through, if any. */
  txn?: number;
}

export class HandleRegistry {
  private readonly entries = new Map<number, HandleEntry>();
  private readonly expired = new Set<number>();
  private reserved = 0;

  constructor(readonly max: number, readonly idleMsMax: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** Reserves room for a handle about to be created; false when the connection is at its max. */
  reserve(): boolean {
    if (this.entries.size + this.reserved >= this.max) return false;
    this.reserved += 1;
    return true;
  }

  /** Registers engine handle `handle` under `id` at once; false when the connection is at its
   * max. The caller makes sure `id` is not in use (`has`). */
  add(id: number, handle: number, nowMs: number): boolean {
    if (this.entries.size + this.reserved >= this.max) return false;
    if (this.entries.has(id)) throw new Error(`invariant: id ${id} added twice`);
    this.entries.set(id, { handle, lastUsedMs: nowMs });
    this.expired.delete(id);
    return true;
  }

  /** Gives back a reservation, and registers the handle (as its own id) if the engine created one. */
  settle(handle: number | undefined, nowMs: number, txn?: number): void {
    if (this.reserved <= 0) throw new Error('invariant: settle without reserve');
    this.reserved -= 1;
    if (handle !== undefined && handle > 0) this.entries.set(handle, { handle, lastUsedMs: nowMs, txn });
  }

  /** Looks an id up and marks it used. */
  touch(id: number, nowMs: number): HandleEntry | undefined {
    const entry = this.entries.get(id);
    if (entry) entry.lastUsedMs = nowMs;
    return entry;
  }

  has(id: number): boolean {
    return this.entries.has(id);
  }

  delete(id: number): boolean {
    return this.entries.delete(id);
  }

  /** Deletes `id` if it still names engine handle `handle` (a client may reuse a finished
   * transaction's id, so a late result about the old one must not drop the new one). */
  forget(id: number, handle: number | undefined): void {
    if (this.entries.get(id)?.handle === handle) this.entries.delete(id);
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
    return taken;
  }

  /** Removes every entry (connection closing); returns their engine handles. */
  takeAll(): number[] {
    const all = [...this.entries.values()].map((entry) => entry.handle);
    this.entries.clear();
    return all;
  }

  private rememberExpired(id: number): void {
    if (this.expired.size >= EXPIRED_REMEMBERED_MAX) {
      const oldest = this.expired.values().next().value;
      if (oldest !== undefined) this.expired.delete(oldest);
    }
    this.expired.add(id);
  }
}
