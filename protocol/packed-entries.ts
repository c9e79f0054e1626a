/**
 * PackedEntries: the elements of a scan batch's `entries` array, already encoded, as the engine
 * returns them (engine/src/core/wire.rs).
 *
 * Responsibility: carry `count` pairs, each a fixarray of 2 followed by two `bin`s in their
 * smallest form, which is exactly what MessageCodec writes for `[Buffer, Buffer]` pairs, so the
 * daemon copies `bytes` into its reply as one block instead of handling each entry
 * (simple-frames.ts writes it); and turn them back into pairs where something needs them.
 *
 * Invariants: `toPairs` accepts exactly `count` well-formed pairs and nothing after them; the
 * pairs are views of `bytes`. Pure: no I/O.
 */

import { FIXARRAY, MsgpackReader } from './msgpack-forms.js';

export class PackedEntries {
  constructor(
    readonly count: number,
    readonly bytes: Buffer,
  ) {}

  /** The pairs, as views of `bytes` (for tests, diagnostics and the codec path; the daemon
   * never needs them). Throws if `bytes` is not exactly `count` such pairs. */
  toPairs(): [Buffer, Buffer][] {
    const reader = new MsgpackReader();
    reader.reset(this.bytes, 0);
    const pairs = new Array<[Buffer, Buffer]>(this.count);
    for (let i = 0; i < this.count; i++) {
      const isPair = reader.literal(PAIR_HEADER);
      const key = isPair ? reader.bin() : null;
      const value = key !== null ? reader.bin() : null;
      if (key === null || value === null) throw new Error(`invariant: packed entry ${i} of ${this.count} is not a [bin, bin] pair`);
      pairs[i] = [key, value];
    }
    if (!reader.done) throw new Error(`invariant: packed entries have ${this.bytes.length - reader.at} trailing bytes`);
    return pairs;
  }
}

const PAIR_HEADER = Buffer.from([FIXARRAY | 2]);

/** `result` as MessageCodec can encode it: a scan batch's PackedEntries become pairs. For the
 * rare reply the hand-written writers refuse; the pairs are views of the packed bytes. */
export function encodableResult(result: unknown): unknown {
  if (typeof result !== 'object' || result === null || !('entries' in result)) return result;
  const { entries } = result as { entries: unknown };
  return entries instanceof PackedEntries ? { ...result, entries: entries.toPairs() } : result;
}
