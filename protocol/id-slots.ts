/**
 * IdSlots: things in flight, keyed by ids from a wrapping counter (a client's request ids, the
 * engine's lane call ids), in a power-of-two array instead of a Map.
 *
 * Why not a Map: both tables sit on a hot path (every request, every engine call), and each
 * value holds the settle functions of a pending promise. Keyed by a Map, dead entries were kept
 * through V8's young-generation GCs and then promoted: with 256 requests in flight ~2.4 MB
 * survived each scavenge of the client (the daemon's lane calls: ~0.5 MB), against ~0.3 MB (0.1
 * MB) with this array, and each scavenge took about twice as long (V8's --trace-gc-nvp; the
 * sampling heap profiler, asked for objects that outlive minor GCs, named the Map's values and
 * backing tables). Why V8 kept them is not pinned down: a Map churned the same way in isolation
 * did not show it. Numbers per table are in the commits that moved them here.
 *
 * Invariants:
 * - `allocate` hands out ids 1..idMax from a counter that wraps, skipping every id whose slot is
 *   taken and every id `reserved` names (e.g. timed-out request ids that may still get a late
 *   reply), so no two entries ever share an id.
 * - The entry with id `id` sits in slot `id & mask`, and no two entries share a slot. The
 *   array doubles before it is half full, so a free slot is a few steps from the counter; moved
 *   entries cannot collide (equal low bits under the larger mask would have been equal under
 *   the smaller one). An emptied array larger than SLOTS_KEPT_MAX goes back to SLOTS_INITIAL.
 * - A slot is cleared when its entry leaves, so the table never holds an entry that left it.
 * - Entries that leave together (`removeWhere`) come out in allocation order, across the wrap.
 * - Pure data structure: no I/O, no timers.
 */

/** Slots of a new table (a power of two); 1024 slots hold 512 entries before it grows. */
const SLOTS_INITIAL = 1024;
/** An emptied table with more slots than this shrinks back to SLOTS_INITIAL. */
const SLOTS_KEPT_MAX = 16_384;

/** What the table needs of an entry: the id `allocate` gave it. */
export interface Identified {
  readonly id: number;
}

export class IdSlots<T extends Identified> {
  private slots: (T | undefined)[] = emptySlots<T>(SLOTS_INITIAL);
  private mask = SLOTS_INITIAL - 1;
  private count = 0;

  /**
   * @param idMax the largest id (at most 2^32 - 1, so ids fit an unsigned 32-bit field).
   * @param lastId the counter starts after this id (0: the first id is 1).
   */
  constructor(private readonly idMax: number, private lastId = 0) {
    if (!Number.isInteger(idMax) || idMax < 1 || idMax > 0xffff_ffff) throw new Error(`invariant: idMax ${idMax} out of range`);
    if (!Number.isInteger(lastId) || lastId < 0 || lastId > idMax) throw new Error(`invariant: lastId ${lastId} out of range`);
  }

  get size(): number {
    return this.count;
  }

  /**
   * The next free id, for an entry the caller then `put`s before allocating again (or drops,
   * leaving its slot free). The caller checks first that a free id exists: fewer than idMax
   * entries and reserved ids together.
   */
  allocate(reserved?: (id: number) => boolean): number {
    if ((this.count + 1) * 2 > this.slots.length) this.resize(this.slots.length * 2);
    let id = this.lastId;
    do {
      id = id >= this.idMax ? 1 : id + 1;
    } while (this.slots[id & this.mask] !== undefined || (reserved !== undefined && reserved(id)));
    this.lastId = id;
    return id;
  }

  /** Adds `entry` under the id `allocate` just gave it. */
  put(entry: T): void {
    const slot = entry.id & this.mask;
    if (this.slots[slot] !== undefined) throw new Error(`invariant: id ${entry.id} put into a taken slot`);
    this.slots[slot] = entry;
    this.count += 1;
  }

  /** Removes and returns the entry with this id, or undefined. */
  take(id: number): T | undefined {
    const slot = id & this.mask;
    const entry = this.slots[slot];
    if (entry === undefined || entry.id !== id) return undefined;
    this.slots[slot] = undefined;
    this.count -= 1;
    if (this.count === 0) this.shrinkIfLarge();
    return entry;
  }

  /** Removes the entries `leaves` picks and returns them in allocation order. */
  removeWhere(leaves: (entry: T) => boolean): T[] {
    const removed: T[] = [];
    for (let slot = 0; slot < this.slots.length; slot += 1) {
      const entry = this.slots[slot];
      if (entry === undefined || !leaves(entry)) continue;
      this.slots[slot] = undefined;
      removed.push(entry);
    }
    this.count -= removed.length;
    if (this.count === 0) this.shrinkIfLarge();
    // The ids just after lastId were handed out longest ago (the counter wraps).
    const age = (id: number): number => (id > this.lastId ? id - this.lastId : id + this.idMax - this.lastId);
    return removed.sort((a, b) => age(a.id) - age(b.id));
  }

  /** Calls `visit` for every entry, in slot order. */
  forEach(visit: (entry: T) => void): void {
    for (const entry of this.slots) if (entry !== undefined) visit(entry);
  }

  /** Moves every entry into a table of `length` slots (see the header: none can collide). */
  private resize(length: number): void {
    const slots = emptySlots<T>(length);
    const mask = length - 1;
    for (const entry of this.slots) {
      if (entry === undefined) continue;
      if (slots[entry.id & mask] !== undefined) throw new Error(`invariant: id ${entry.id} shares a slot after resizing`);
      slots[entry.id & mask] = entry;
    }
    this.slots = slots;
    this.mask = mask;
  }

  /** Gives an emptied table's memory back after a burst grew it. */
  private shrinkIfLarge(): void {
    if (this.slots.length > SLOTS_KEPT_MAX) {
      this.slots = emptySlots<T>(SLOTS_INITIAL);
      this.mask = SLOTS_INITIAL - 1;
    }
  }
}

function emptySlots<T>(length: number): (T | undefined)[] {
  return new Array<T | undefined>(length).fill(undefined);
}
