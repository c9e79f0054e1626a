/**
 * Per-connection registry of engine handles (open transactions or scan cursors).
 *
 * Responsibility: remember which handles a connection owns, refuse a new one past the
 * per-connection maximum, find the ones idle for too long, and remember recently expired
 * handles so that a late request on one gets an "expired" error rather than "unknown".
 *
 * Invariants: `size + reserved <= max` at all times (a handle is reserved while the engine
 * creates it, so pipelined `begin`s cannot overshoot); the expired set is bounded.
 */

const EXPIRED_REMEMBERED_MAX = 256;

export interface HandleEntry {
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

  /** Gives back a reservation, and registers the handle if the engine created one. */
  settle(handle: number | undefined, nowMs: number, txn?: number): void {
    if (this.reserved <= 0) throw new Error('invariant: settle without reserve');
    this.reserved -= 1;
    if (handle !== undefined && handle > 0) this.entries.set(handle, { handle, lastUsedMs: nowMs, txn });
  }

  /** Looks a handle up and marks it used. */
  touch(handle: number, nowMs: number): HandleEntry | undefined {
    const entry = this.entries.get(handle);
    if (entry) entry.lastUsedMs = nowMs;
    return entry;
  }

  has(handle: number): boolean {
    return this.entries.has(handle);
  }

  delete(handle: number): boolean {
    return this.entries.delete(handle);
  }

  wasExpired(handle: number): boolean {
    return this.expired.has(handle);
  }

  /** Removes and returns the handles idle for longer than idleMsMax. */
  takeIdle(nowMs: number): number[] {
    const idle: number[] = [];
    for (const entry of this.entries.values()) {
      if (nowMs - entry.lastUsedMs > this.idleMsMax) idle.push(entry.handle);
    }
    for (const handle of idle) {
      this.entries.delete(handle);
      this.rememberExpired(handle);
    }
    return idle;
  }

  /** Removes the entries matching `predicate` (e.g. cursors of a finished transaction). */
  takeWhere(predicate: (entry: HandleEntry) => boolean): number[] {
    const taken: number[] = [];
    for (const entry of this.entries.values()) if (predicate(entry)) taken.push(entry.handle);
    for (const handle of taken) this.entries.delete(handle);
    return taken;
  }

  /** Removes and returns every handle (connection closing). */
  takeAll(): number[] {
    const all = [...this.entries.keys()];
    this.entries.clear();
    return all;
  }

  private rememberExpired(handle: number): void {
    if (this.expired.size >= EXPIRED_REMEMBERED_MAX) {
      const oldest = this.expired.values().next().value;
      if (oldest !== undefined) this.expired.delete(oldest);
    }
    this.expired.add(handle);
  }
}
