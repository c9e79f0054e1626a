/**
 * bufferView: a Buffer over bytes of existing memory, made the cheapest way Node allows.
 *
 * Responsibility: the readers make a view per key or value they read (the daemon of every key of
 * a request, the client of every key and value of a reply); `Buffer.from(arrayBuffer, offset,
 * length)` checks its arguments on each call and `buffer.subarray` looks up the species
 * constructor, ~55-110 ns a view here, where constructing Node's own Buffer class (the one
 * `Buffer[Symbol.species]` names, which every Buffer is an instance of) takes ~30 ns.
 *
 * Invariants: what it returns is an ordinary Buffer (`Buffer.isBuffer`, Buffer.prototype) over
 * exactly [offset, offset + length) of `memory`; callers pass ranges inside it. If this Node's
 * species constructor does not make such Buffers, it falls back to `Buffer.from`. Pure.
 */

type ViewConstructor = new (memory: ArrayBufferLike, offset: number, length: number) => Buffer;
type ViewMaker = (memory: ArrayBufferLike, offset: number, length: number) => Buffer;

/** The view maker for `species` (what `Buffer[Symbol.species]` holds): it, if it constructs
 * ordinary Buffers over given memory, else `Buffer.from`. Exported for tests. */
export function viewMaker(species: unknown): ViewMaker {
  if (typeof species === 'function') {
    try {
      const memory = new ArrayBuffer(4);
      const probe = new (species as ViewConstructor)(memory, 1, 2);
      if (Buffer.isBuffer(probe) && Object.getPrototypeOf(probe) === Buffer.prototype
        && probe.buffer === memory && probe.byteOffset === 1 && probe.length === 2) {
        const NodeBuffer = species as ViewConstructor;
        return (memory, offset, length) => new NodeBuffer(memory, offset, length);
      }
    } catch {
      // not a constructor of views: the fallback below
    }
  }
  return (memory, offset, length) => Buffer.from(memory as ArrayBuffer, offset, length);
}

/** A Buffer over `length` bytes of `memory` from `offset`. */
export const bufferView: ViewMaker = viewMaker((Buffer as unknown as Record<symbol, unknown>)[Symbol.species]);
