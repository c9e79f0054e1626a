// Seeded fuzz of FrameDecoder + MessageCodec, in the spirit of TigerBeetle's message_buffer fuzz.
// Guards against: frames lost or reordered under some chunking; any input making the decoding
// path throw something other than a ToonDBError PROTOCOL_ERROR / FRAME_TOO_LARGE (a TypeError or
// RangeError would crash a daemon session instead of closing it cleanly), or hang.
//
// Replay a failure: TOONDB_FUZZ_SEED=<printed seed> npx vitest run test/protocol/fuzz.test.ts
// More work:        TOONDB_FUZZ_ITERATIONS=5000 ...
import { describe, expect, it } from 'vitest';
import { ToonDBError } from '../../protocol/errors.js';
import { MessageCodec } from '../../protocol/codec.js';
import { FrameDecoder } from '../../protocol/frame.js';
import { mulberry32 as prng } from '../helpers/rng.js';

const SEED = Number(process.env.TOONDB_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 32));
const ITERATIONS = Number(process.env.TOONDB_FUZZ_ITERATIONS ?? 1000);
// vitest compares Buffers element by element; comparing them natively keeps the fuzz fast.
expect.addEqualityTesters([
  (a: unknown, b: unknown) => (Buffer.isBuffer(a) && Buffer.isBuffer(b) ? a.equals(b) : undefined),
]);
console.log(`fuzz seed: TOONDB_FUZZ_SEED=${SEED} (iterations ${ITERATIONS})`);


class Gen {
  constructor(readonly random: () => number) {}
  int(max: number): number { return Math.floor(this.random() * max); }
  pick<T>(items: readonly T[]): T { return items[this.int(items.length)]; }
  bytes(max: number): Buffer {
    const out = Buffer.allocUnsafe(this.int(max + 1));
    let x = (this.int(2 ** 32) | 1) >>> 0; // xorshift32 seeded from the main generator: cheap bulk bytes
    for (let i = 0; i < out.length; i++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      out[i] = x & 0xff;
    }
    return out;
  }
  string(max: number): string {
    const points: number[] = [];
    for (let n = this.int(max + 1); n > 0; n--) {
      points.push(this.pick([() => this.int(128), () => 0x80 + this.int(0x780), () => 0x10000 + this.int(0x1000), () => 0]) ());
    }
    return String.fromCodePoint(...points);
  }
  scalar(): unknown {
    switch (this.int(9)) {
      case 0: return null;
      case 1: return this.random() < 0.5;
      case 2: return this.int(2 ** 31) * (this.random() < 0.5 ? 1 : -1) || 0;
      case 3: return this.int(2 ** 53) + 1;
      case 4: return BigInt(this.int(2 ** 32)) * BigInt(this.int(2 ** 31)) * (this.random() < 0.5 ? 1n : -1n);
      case 5: return (this.random() - 0.5) * 10 ** this.int(30);
      case 6: return this.string(40);
      case 7: return this.bytes(this.random() < 0.05 ? 70_000 : 300);
      default: return this.int(128);
    }
  }
  value(depth: number): unknown {
    const kind = depth >= 4 ? 0 : this.int(6);
    if (kind === 4) return Array.from({ length: this.int(6) }, () => this.value(depth + 1));
    if (kind === 5) return this.map(depth + 1, this.int(6));
    return this.scalar();
  }
  map(depth: number, fields: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < fields; i++) out[this.string(8) || `k${i}`] = this.value(depth);
    return out;
  }
  message(): Record<string, unknown> {
    return { id: 1 + this.int(2 ** 32 - 1), op: this.pick(['get', 'put', 'scan', 'x']), ...this.map(1, this.int(8)) };
  }
  /** Splits `stream` into chunks of random sizes, biased to tiny ones. */
  chunks(stream: Buffer): Buffer[] {
    const out: Buffer[] = [];
    for (let offset = 0; offset < stream.length;) {
      const size = this.pick([1, 2, 3, 4, 5, 7, 64, 1500, 65_536, stream.length]);
      out.push(stream.subarray(offset, offset + size));
      offset += size;
    }
    return out;
  }
}

/** Feeds chunks through a fresh decoder + codec. Returns decoded messages; every thrown error
 * must be an acceptable ToonDBError (asserted), after which the stream is abandoned. */
function decodeStream(chunks: Buffer[], frameBytesMax?: number): Record<string, unknown>[] {
  const decoder = new FrameDecoder({ frameBytesMax });
  const codec = new MessageCodec({ frameBytesMax });
  const messages: Record<string, unknown>[] = [];
  for (const chunk of chunks) {
    let bodies: Buffer[];
    try {
      bodies = decoder.push(chunk);
    } catch (error) {
      expectAcceptable(error);
      return messages;
    } finally {
      decoder.invariants();
    }
    for (const body of bodies) {
      try {
        messages.push(codec.decode(body));
      } catch (error) {
        expectAcceptable(error);
      }
    }
  }
  return messages;
}

function expectAcceptable(error: unknown): void {
  if (!(error instanceof ToonDBError) || !['PROTOCOL_ERROR', 'FRAME_TOO_LARGE'].includes(error.code)) {
    throw new Error(`seed ${SEED}: unexpected ${String(error)} (${(error as Error)?.stack})`);
  }
}

describe(`fuzz (seed ${SEED})`, () => {
  it('round-trips random messages through random chunkings', () => {
    const gen = new Gen(prng(SEED));
    const codec = new MessageCodec();
    for (let iteration = 0; iteration < ITERATIONS; iteration++) {
      const sent = Array.from({ length: 1 + gen.int(8) }, () => gen.message());
      const stream = Buffer.concat(sent.map((m) => codec.encode(m)));
      const received = decodeStream(gen.chunks(stream));
      // undefined is never generated; everything else must come back identical.
      expect(received, `seed ${SEED} iteration ${iteration}`).toEqual(sent);
    }
  }, 60_000);

  it('only ever throws PROTOCOL_ERROR or FRAME_TOO_LARGE on corrupted streams', () => {
    const gen = new Gen(prng(SEED ^ 0x5eed));
    const codec = new MessageCodec();
    for (let iteration = 0; iteration < ITERATIONS * 5; iteration++) {
      const stream = Buffer.concat(Array.from({ length: 1 + gen.int(4) }, () => codec.encode(gen.message())));
      const corrupt = Buffer.from(stream);
      const flips = 1 + gen.int(8);
      for (let i = 0; i < flips; i++) {
        const at = gen.int(corrupt.length);
        if (gen.random() < 0.5) corrupt[at] ^= 1 << gen.int(8);
        else corrupt[at] = gen.int(256);
      }
      const truncated = corrupt.subarray(0, gen.random() < 0.2 ? gen.int(corrupt.length) : corrupt.length);
      decodeStream(gen.chunks(truncated), gen.pick([undefined, 1 << 20, 100]));
    }
  }, 60_000);

  it('only ever throws PROTOCOL_ERROR or FRAME_TOO_LARGE on random bytes', () => {
    const gen = new Gen(prng(SEED ^ 0xbad));
    for (let iteration = 0; iteration < ITERATIONS * 5; iteration++) {
      // Mostly small plausible lengths in the header so the body bytes reach the codec.
      const body = gen.bytes(1 + gen.int(200));
      const header = Buffer.alloc(4);
      header.writeUInt32BE(gen.random() < 0.9 ? body.length : gen.int(2 ** 32));
      const codecOnly = new MessageCodec();
      try { codecOnly.decode(body); } catch (error) { expectAcceptable(error); }
      decodeStream(gen.chunks(Buffer.concat([header, body, gen.bytes(20)])));
    }
  }, 60_000);

  it('only ever throws PROTOCOL_ERROR on bodies built from MessagePack type bytes', () => {
    // Random bytes rarely form deep structures; drawing from container and ext headers does.
    const gen = new Gen(prng(SEED ^ 0xc0de));
    const codec = new MessageCodec();
    const alphabet = [0x80, 0x81, 0x90, 0x91, 0x9f, 0xa1, 0xc0, 0xc1, 0xc4, 0xc7, 0xd4, 0xd5, 0xd9, 0xdc, 0xdd, 0xde, 0xdf, 0xcf, 0xd3, 0x00, 0xff, 0x72, 0x40];
    for (let iteration = 0; iteration < ITERATIONS * 10; iteration++) {
      const body = Buffer.from(Array.from({ length: 1 + gen.int(64) }, () => gen.pick(alphabet)));
      try { codec.decode(body); } catch (error) { expectAcceptable(error); }
    }
  }, 60_000);
});
