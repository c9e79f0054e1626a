// PackedArray.without: a scan batch less the entries that expired after the engine read it
// (daemon/handlers/scan.ts), by the byte ranges the engine reports for entries with a TTL.
import { describe, expect, it } from 'vitest';
import { PackedArray } from '../../protocol/packed-array.js';

/** A `bin` in its smallest form, as the engine writes it (wire.rs). */
function bin(text: string): Buffer {
  const bytes = Buffer.from(text);
  if (bytes.length < 256) return Buffer.concat([Buffer.from([0xc4, bytes.length]), bytes]);
  const header = Buffer.from([0xc5, 0, 0]);
  header.writeUInt16BE(bytes.length, 1);
  return Buffer.concat([header, bytes]);
}

/** Packs `entries` as the engine does, and the byte range of each. */
function pack(entries: [string, string][]): { packed: PackedArray; ranges: { start: number; end: number }[] } {
  const parts = entries.map(([key, value]) => Buffer.concat([Buffer.from([0x92]), bin(key), bin(value)]));
  const ranges: { start: number; end: number }[] = [];
  let at = 0;
  for (const part of parts) {
    ranges.push({ start: at, end: at + part.length });
    at += part.length;
  }
  return { packed: new PackedArray(entries.length, Buffer.concat(parts)), ranges };
}

describe('PackedArray.without', () => {
  const entries: [string, string][] = [['a', '1'], ['b', '2'.repeat(300)], ['c', '3'], ['d', '4']];
  const text = (packed: PackedArray) => packed.toEntries().map(([k, v]) => `${k}=${v.length}`);

  it('drops the entries whose byte ranges it is given, first, middle and last alike', () => {
    const { packed, ranges } = pack(entries);
    expect(text(packed.without([ranges[0], ranges[2]]))).toEqual(['b=300', 'd=1']);
    expect(text(packed.without([ranges[1], ranges[3]]))).toEqual(['a=1', 'c=1']);
    expect(packed.without(ranges).count).toBe(0);
    expect(packed.without(ranges).bytes.length).toBe(0);
    expect(packed.without([])).toBe(packed);
    expect(text(packed)).toEqual(['a=1', 'b=300', 'c=1', 'd=1']); // the original is untouched
  });

  it('refuses ranges out of order or past its bytes', () => {
    const { packed, ranges } = pack(entries);
    expect(() => packed.without([ranges[2], ranges[0]])).toThrow(/invariant/);
    expect(() => packed.without([{ start: 0, end: packed.bytes.length + 1 }])).toThrow(/invariant/);
  });
});
