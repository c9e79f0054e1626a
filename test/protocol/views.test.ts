// How the protocol's readers and writers reach bytes. bufferView makes ordinary Buffers over
// given memory, through Node's own Buffer class when `Buffer[Symbol.species]` is it, and through
// Buffer.from when it is anything else; the MessagePack reader views the body it was last reset
// to; touchBins reads the last unit of each key it is given.
import { describe, expect, it } from 'vitest';
import { lastTouchedUnits, MsgpackReader, touchBins } from '../../protocol/msgpack-forms.js';
import { bufferView, viewMaker } from '../../protocol/views.js';

function expectView(view: Buffer, memory: ArrayBuffer, offset: number, length: number): void {
  expect(Buffer.isBuffer(view)).toBe(true);
  expect(Object.getPrototypeOf(view)).toBe(Buffer.prototype);
  expect(view.buffer).toBe(memory);
  expect([view.byteOffset, view.length]).toEqual([offset, length]);
  new Uint8Array(memory)[offset] = 0xab; // a view, not a copy
  expect(view[0]).toBe(0xab);
  expect(view.toString('latin1', 1)).toBe(Buffer.from(memory, offset + 1, length - 1).toString('latin1'));
}

describe('bufferView', () => {
  it('views the given bytes of memory as an ordinary Buffer', () => {
    const memory = new ArrayBuffer(64);
    Buffer.from(memory).write('0123456789abcdef', 'latin1');
    expectView(bufferView(memory, 3, 9), memory, 3, 9);
    expect(bufferView(memory, 64, 0).length).toBe(0);
  });

  it('falls back to Buffer.from when the species is not a Buffer class', () => {
    for (const species of [undefined, Uint8Array, () => 1, class { constructor() { throw new Error('no'); } }]) {
      const memory = new ArrayBuffer(16);
      expectView(viewMaker(species)(memory, 2, 5), memory, 2, 5);
    }
  });
});

describe('MsgpackReader views', () => {
  it('views the body it was last reset to, not the one before it', () => {
    const reader = new MsgpackReader();
    const bodies = [Buffer.from([0xc4, 2, 1, 2]), Buffer.concat([Buffer.alloc(5), Buffer.from([0xc4, 1, 9])]).subarray(5)];
    for (const body of [...bodies, ...bodies]) {
      reader.reset(body, 0);
      const bin = reader.bin()!;
      expect(bin.buffer).toBe(body.buffer);
      expect(bin.byteOffset).toBe(body.byteOffset + 2);
      expect([...bin]).toEqual([...body.subarray(2)]);
      // A maker other than VIEW_BINS is still called with the body and the bin's bounds.
      const made = Buffer.alloc(1);
      const calls: unknown[][] = [];
      reader.reset(body, 0, (...args) => (calls.push(args), made));
      expect(reader.bin()).toBe(made);
      expect(calls).toEqual([[body, 2, body.length]]);
    }
  });
});

describe('touchBins', () => {
  it('reads the last unit or byte of every key, or of every key and value of pairs, and skips the rest', () => {
    touchBins(['ab', Buffer.from([0x10]), '', Buffer.alloc(0), 7, null]);
    expect(lastTouchedUnits()).toBe(0x62 | 0x10);
    touchBins([['k', Buffer.from([0x04])], ['\u0100', ''], null, 'x'], true);
    expect(lastTouchedUnits()).toBe(0x6b | 0x04 | 0x100);
    touchBins([]);
    expect(lastTouchedUnits()).toBe(0);
  });
});
