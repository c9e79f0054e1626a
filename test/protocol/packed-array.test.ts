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

describe('PackedArray.binBytesWithin', () => {
  const bins = (...texts: string[]) => new PackedArray(texts.length, Buffer.concat(texts.map(bin)));

  it('totals the bins when every one is within the lengths, in any bin form', () => {
    expect(bins('a', 'bc', 'x'.repeat(300)).binBytesWithin(1, 300)).toBe(303);
    expect(bins().binBytesWithin(1, 8)).toBe(0);
  });

  it('is -1 for a bin out of the lengths, a nil, another type, or a count that does not fit the bytes', () => {
    expect(bins('a', '').binBytesWithin(1, 8)).toBe(-1);
    expect(bins('a', 'x'.repeat(9)).binBytesWithin(1, 8)).toBe(-1);
    const packed = bins('a', 'b');
    expect(new PackedArray(2, Buffer.concat([bin('a'), Buffer.from([0xc0])])).binBytesWithin(0, 8)).toBe(-1);
    expect(new PackedArray(1, Buffer.from([0xa1, 0x61])).binBytesWithin(0, 8)).toBe(-1); // a str
    expect(new PackedArray(1, packed.bytes).binBytesWithin(1, 8)).toBe(-1); // a bin left over
    expect(new PackedArray(3, packed.bytes).binBytesWithin(1, 8)).toBe(-1); // one missing
    expect(new PackedArray(1, packed.bytes.subarray(0, 2)).binBytesWithin(1, 8)).toBe(-1); // cut short
  });
});
