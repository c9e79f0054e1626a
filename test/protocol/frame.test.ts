// FrameDecoder / encodeFrame / writeFrames. Guards against the classic framing bugs: a header split across
// chunks, several frames in one chunk, a returned body overwritten by a later push, buffering a
// hostile announced length, and quietly continuing after a bad prefix.
import { describe, expect, it } from 'vitest';
import { ToonDBError } from '../../protocol/errors.js';
import { FrameDecoder, encodeFrame, writeFrameHeader, writeFrames } from '../../protocol/frame.js';
import { FRAME_BYTES_MAX, FRAME_HEADER_BYTES, WRITE_COALESCE_BYTES_MAX } from '../../protocol/limits.js';

function body(length: number, seed: number): Buffer {
  const bytes = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed * 7) & 0xff;
  return bytes;
}

/** Bodies chosen to hit edges: the smallest legal body (1 byte; 0 is refused, tested below),
 * bodies whose header straddles chunk boundaries, a 1 MiB body, and a body of header size. */
const FIXTURES: Buffer[] = [
  body(1, 1), body(3, 2), body(4, 3), body(5, 4), body(300, 5), body(1024 * 1024, 6), body(1, 7), body(65_537, 8),
];
const STREAM = Buffer.concat(FIXTURES.map((b) => encodeFrame(b)));

function feed(decoder: FrameDecoder, chunks: Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  for (const chunk of chunks) {
    out.push(...decoder.push(chunk));
    decoder.invariants();
    expect(decoder.bufferedBytes).toBeLessThanOrEqual(FRAME_HEADER_BYTES + decoder.frameBytesMax);
  }
  return out;
}

function expectBodies(actual: Buffer[]): void {
  expect(actual.length).toBe(FIXTURES.length);
  actual.forEach((b, i) => expect(b.equals(FIXTURES[i])).toBe(true));
}

function chunkAt(stream: Buffer, cuts: number[]): Buffer[] {
  const points = [0, ...cuts.filter((c) => c > 0 && c < stream.length).sort((a, b) => a - b), stream.length];
  // Copy each chunk, as a socket would hand us fresh buffers.
  return points.slice(1).map((end, i) => Buffer.from(stream.subarray(points[i], end)));
}

describe('FrameDecoder', () => {
  it('decodes the fixture stream pushed as one chunk', () => {
    const decoder = new FrameDecoder();
    expectBodies(feed(decoder, [Buffer.from(STREAM)]));
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('decodes the fixture stream pushed one byte at a time', () => {
    const decoder = new FrameDecoder();
    const out: Buffer[] = [];
    for (let i = 0; i < STREAM.length; i++) {
      out.push(...decoder.push(STREAM.subarray(i, i + 1)));
      if ((i & 0xfff) === 0 || i > STREAM.length - 70_000) decoder.invariants();
    }
    decoder.invariants();
    expectBodies(out);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('handles a split at every offset within and around each header', () => {
    let frameStart = 0;
    for (const fixture of FIXTURES) {
      for (let delta = -1; delta <= FRAME_HEADER_BYTES + 1; delta++) {
        const decoder = new FrameDecoder();
        expectBodies(feed(decoder, chunkAt(STREAM, [frameStart + delta])));
      }
      frameStart += FRAME_HEADER_BYTES + fixture.length;
    }
  });

  it('decodes random chunkings', () => {
    for (let round = 0; round < 20; round++) {
      const cuts = Array.from({ length: 1 + (round * 7) % 50 }, () => Math.floor(Math.random() * STREAM.length));
      const decoder = new FrameDecoder();
      expectBodies(feed(decoder, chunkAt(STREAM, cuts)));
    }
  });

  it('returns zero-copy views when a body is inside one chunk, and bodies survive later pushes', () => {
    const decoder = new FrameDecoder();
    const chunk = Buffer.concat([encodeFrame(Buffer.from('abc')), encodeFrame(Buffer.from('de')).subarray(0, 5)]);
    const [first] = decoder.push(chunk);
    expect(first.buffer).toBe(chunk.buffer);
    expect(first.toString()).toBe('abc');
    // 'de' spans chunks: gathered into a decoder-owned buffer, which must not be reused.
    const [second] = decoder.push(Buffer.from('e'));
    expect(second.toString()).toBe('de');
    decoder.push(encodeFrame(Buffer.from('XY')).subarray(0, 5)); // header + 'X'
    const [third] = decoder.push(Buffer.from('Y'));
    expect(third.toString()).toBe('XY');
    expect(second.toString()).toBe('de');
  });

  it('accepts a plain Uint8Array chunk', () => {
    const decoder = new FrameDecoder();
    const frame = encodeFrame(Buffer.from('hello'));
    const [out] = decoder.push(new Uint8Array(frame));
    expect(Buffer.isBuffer(out)).toBe(true);
    expect(out.toString()).toBe('hello');
  });

  it('refuses an oversize length from the 4 header bytes alone, before any body byte', () => {
    const decoder = new FrameDecoder();
    const header = Buffer.from([0xff, 0xff, 0xff, 0xff]); // 4 GiB - 1
    let thrown: unknown;
    try { decoder.push(header); } catch (error) { thrown = error; }
    expect(thrown).toBeInstanceOf(ToonDBError);
    expect((thrown as ToonDBError).code).toBe('FRAME_TOO_LARGE');
    expect(decoder.bufferedBytes).toBe(0);
    decoder.invariants();
  });

  it('refuses a header split over chunks as soon as its last byte arrives', () => {
    const decoder = new FrameDecoder({ frameBytesMax: 10 });
    expect(decoder.push(Buffer.from([0, 0]))).toEqual([]);
    expect(decoder.bufferedBytes).toBe(2);
    expect(decoder.push(Buffer.from([0]))).toEqual([]);
    expect(() => decoder.push(Buffer.from([11]))).toThrowError(expect.objectContaining({ code: 'FRAME_TOO_LARGE' }));
  });

  it('accepts a body of exactly frameBytesMax', () => {
    const decoder = new FrameDecoder({ frameBytesMax: 10 });
    const [out] = feed(decoder, [encodeFrame(body(10, 9), 10)]);
    expect(out.equals(body(10, 9))).toBe(true);
  });

  it('refuses a zero length as an empty frame', () => {
    const decoder = new FrameDecoder();
    expect(() => decoder.push(Buffer.from([0, 0, 0, 0, 1]))).toThrowError(
      expect.objectContaining({ code: 'PROTOCOL_ERROR', message: 'empty frame' }));
    decoder.invariants();
  });

  it('delivers the frames before an empty one when they arrive in earlier pushes, then refuses it', () => {
    const stream = Buffer.concat([STREAM, Buffer.from([0, 0, 0, 0]), encodeFrame(Buffer.from('after'))]);
    // Byte by byte: every fixture comes out before the empty frame's header is complete.
    const decoder = new FrameDecoder();
    const out: Buffer[] = [];
    let thrown: unknown;
    try {
      for (let i = 0; i < stream.length; i++) out.push(...decoder.push(stream.subarray(i, i + 1)));
    } catch (error) { thrown = error; }
    expectBodies(out);
    expect((thrown as ToonDBError).code).toBe('PROTOCOL_ERROR');
    // One chunk: the push throws; frames completed in that same push are dropped with it
    // (the connection is closed on this error anyway).
    expect(() => new FrameDecoder().push(stream)).toThrowError(expect.objectContaining({ code: 'PROTOCOL_ERROR' }));
  });

  it('stays poisoned after an error, even for valid input', () => {
    const decoder = new FrameDecoder({ frameBytesMax: 100 });
    const good = encodeFrame(Buffer.from('ok'));
    expect(decoder.push(good)).toHaveLength(1);
    let first: unknown;
    try { decoder.push(Buffer.from([0, 0, 1, 0])); } catch (error) { first = error; }
    expect((first as ToonDBError).code).toBe('FRAME_TOO_LARGE');
    let again: unknown;
    try { decoder.push(good); } catch (error) { again = error; }
    expect(again).toBe(first);
    decoder.invariants();
  });

  it('handles an empty push', () => {
    const decoder = new FrameDecoder();
    expect(decoder.push(new Uint8Array(0))).toEqual([]);
    decoder.invariants();
  });

  it('rejects a nonsensical frameBytesMax option', () => {
    expect(() => new FrameDecoder({ frameBytesMax: 0 })).toThrowError(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => new FrameDecoder({ frameBytesMax: 2 ** 32 })).toThrowError(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(new FrameDecoder().frameBytesMax).toBe(FRAME_BYTES_MAX);
  });

  it('keeps memory bounded while a large frame trickles in', () => {
    const decoder = new FrameDecoder({ frameBytesMax: 1 << 20 });
    const frame = encodeFrame(body(1 << 20, 3), 1 << 20);
    for (let offset = 0; offset < frame.length - 1; offset += 4096) {
      decoder.push(frame.subarray(offset, Math.min(offset + 4096, frame.length - 1)));
      decoder.invariants();
      expect(decoder.bufferedBytes).toBe(Math.min(offset + 4096, frame.length - 1));
    }
    const [out] = decoder.push(frame.subarray(frame.length - 1));
    expect(out.equals(body(1 << 20, 3))).toBe(true);
    expect(decoder.bufferedBytes).toBe(0);
  });
});

describe('encodeFrame / writeFrameHeader', () => {
  it('writes a big-endian length prefix followed by the body', () => {
    const frame = encodeFrame(Buffer.from([0xaa, 0xbb, 0xcc]));
    expect(frame.toString('hex')).toBe('00000003aabbcc');
    const target = new Uint8Array(6);
    writeFrameHeader(target, 2, 0x01020304);
    expect(Buffer.from(target).toString('hex')).toBe('000001020304');
  });

  it('refuses empty bodies, oversize bodies and out-of-range headers', () => {
    expect(() => encodeFrame(new Uint8Array(0))).toThrowError(expect.objectContaining({ code: 'PROTOCOL_ERROR' }));
    expect(() => encodeFrame(new Uint8Array(11), 10)).toThrowError(expect.objectContaining({ code: 'FRAME_TOO_LARGE' }));
    expect(() => writeFrameHeader(new Uint8Array(4), 0, 2 ** 32)).toThrowError(expect.objectContaining({ code: 'FRAME_TOO_LARGE' }));
    expect(() => writeFrameHeader(new Uint8Array(4), 1, 5)).toThrowError(expect.objectContaining({ code: 'INTERNAL' }));
  });
});

describe('writeFrames', () => {
  function sink() {
    const calls: string[] = [];
    const chunks: Buffer[] = [];
    return {
      calls, chunks,
      write(chunk: Buffer) { calls.push('write'); chunks.push(chunk); },
      cork() { calls.push('cork'); },
      uncork() { calls.push('uncork'); },
    };
  }
  // Frame 0 is ready-made; frames 1.. are written on demand (filled with 0xbb), each sized
  // `boundBytes` and taking `writtenBytes` of it (a client request's size is a bound).
  const source = (readyFrame: Buffer, writtenBytes: number, boundBytes = writtenBytes, written = 1) => ({
    count: 1 + written,
    bytes: (i: number) => (i === 0 ? readyFrame.length : boundBytes),
    ready: (i: number) => (i === 0 ? readyFrame : null),
    write: (_i: number, target: Buffer, at: number) => {
      target.fill(0xbb, at, at + writtenBytes);
      return at + writtenBytes;
    },
  });

  it('coalesces a small batch into one write, in order', () => {
    const out = sink();
    const ready = Buffer.alloc(10, 0xaa);
    writeFrames(out, source(ready, 6), 16);
    expect(out.calls).toEqual(['write']);
    expect(out.chunks[0]).toEqual(Buffer.concat([ready, Buffer.alloc(6, 0xbb)]));
  });

  it('writes a large batch corked, one buffer per frame, passing ready frames through uncopied', () => {
    const out = sink();
    const ready = Buffer.alloc(WRITE_COALESCE_BYTES_MAX, 0xaa);
    writeFrames(out, source(ready, 6), WRITE_COALESCE_BYTES_MAX + 6);
    expect(out.calls).toEqual(['cork', 'write', 'write', 'uncork']);
    expect(out.chunks[0]).toBe(ready);
    expect(out.chunks[1]).toEqual(Buffer.alloc(6, 0xbb));
  });

  it('sends only the bytes written when frames take less than their bound', () => {
    const ready = Buffer.alloc(10, 0xaa);
    const small = sink();
    writeFrames(small, source(ready, 6, 9, 2), 28);
    expect(small.calls).toEqual(['write']);
    expect(small.chunks[0]).toEqual(Buffer.concat([ready, Buffer.alloc(12, 0xbb)]));
    const large = sink();
    const readyLarge = Buffer.alloc(WRITE_COALESCE_BYTES_MAX, 0xaa);
    writeFrames(large, source(readyLarge, 6, 9), WRITE_COALESCE_BYTES_MAX + 9);
    expect(large.calls).toEqual(['cork', 'write', 'write', 'uncork']);
    expect(large.chunks[1]).toEqual(Buffer.alloc(6, 0xbb));
  });

  it('refuses a frame written past its bound (a broken invariant)', () => {
    // (a total of 19 bytes leaves the target room for the overrun, so the check is what fails)
    expect(() => writeFrames(sink(), source(Buffer.alloc(10, 0xaa), 9, 6), 19)).toThrow(/invariant/);
  });
});
