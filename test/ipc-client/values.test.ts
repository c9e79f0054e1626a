// Values handed to callers are exact and never pin the socket chunk they arrived in: the
// connection copies them out as it reads each reply (ipc-client/bytes.ts ValueCopier for the
// hand-read shapes, the codec's copyBins for the rest). A kept value pins at most Node's pool
// size (what any small Buffer may pin) or its own length.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { ValueCopier } from '../../ipc-client/bytes.js';
import { PackedEntries } from '../../ipc-client/batch-entries.js';
import { MessageCodec } from '../../protocol/codec.js';
import { FRAME_HEADER_BYTES } from '../../protocol/limits.js';
import { PackedArray } from '../../protocol/packed-array.js';
import { FakeServer } from './fake-server.js';

const SIZES = [0, 1, 100, 4095, 4097, 8192, 70_000];
const valueOf = (size: number) => Buffer.from(Array.from({ length: size }, (_, i) => (i * 31 + size) & 0xff));

/** Bytes of memory `value` keeps alive. */
const pinned = (value: Buffer) => value.buffer.byteLength;

function expectExactAndUnpinned(values: (Buffer | null)[], sizes: number[]): void {
  expect(values).toHaveLength(sizes.length);
  values.forEach((value, i) => {
    expect(value !== null && value.equals(valueOf(sizes[i])), `value of ${sizes[i]} bytes`).toBe(true);
    expect(pinned(value!), `value of ${sizes[i]} bytes pins ${pinned(value!)}`).toBeLessThanOrEqual(Math.max(Buffer.poolSize, sizes[i]));
  });
}

let server: FakeServer;
let client: IpcClient;

beforeEach(async () => {
  server = await FakeServer.start();
  client = await IpcClient.connect(server.path);
  for (const size of SIZES) server.store.set(`v/${String(size).padStart(6, '0')}`, valueOf(size));
});

afterEach(async () => {
  await client.close();
  await server.close();
});

describe('values from replies', () => {
  it('are exact copies that pin no socket chunk, from get, getBatch and scan', async () => {
    const keys = SIZES.map((size) => `v/${String(size).padStart(6, '0')}`);
    expectExactAndUnpinned(await Promise.all(keys.map((key) => client.get(key))), SIZES);
    expectExactAndUnpinned(await client.getBatch(keys), SIZES);
    const scanned = await client.scan('v/', { batchSize: 3 }).toArray();
    expect(scanned.map(([key]) => key.toString())).toEqual(keys);
    expectExactAndUnpinned(scanned.map(([, value]) => value), SIZES);
  });

  it('are exact copies that pin no batch when a scan batch arrives over many reads', async () => {
    // ~390 KB per batch: more than one socket read (CLIENT_READ_BUFFER_BYTES), so the batch's
    // packed entries stay a view of the frame the connection gathered, unpacked one at a time.
    const count = 3000;
    const key = (i: number) => `w/${String(i).padStart(6, '0')}`;
    for (let i = 0; i < count; i++) server.store.set(key(i), valueOf(100 + (i % 50)));
    let seen = 0;
    for await (const [k, value] of client.scan('w/', { batchSize: count })) {
      expect(k.toString()).toBe(key(seen));
      expect(value.equals(valueOf(100 + (seen % 50)))).toBe(true);
      expect(pinned(value)).toBeLessThanOrEqual(Buffer.poolSize);
      expect(pinned(k)).toBeLessThanOrEqual(Buffer.poolSize);
      seen++;
    }
    expect(seen).toBe(count);
  });

  it('are copies too when a reply takes the codec path', async () => {
    // Keys in another order than the daemon writes them: the hand-written reader refuses the
    // reply and the codec decodes it.
    server.script = (request) => (request.op === 'scan'
      ? { result: { done: true, entries: SIZES.map((size) => [Buffer.from(`k${size}`), valueOf(size)]), cursor: 0 } }
      : undefined);
    const scanned = await client.scan('v/').toArray();
    expectExactAndUnpinned(scanned.map(([, value]) => value), SIZES);
    expect(scanned.map(([key]) => key.toString())).toEqual(SIZES.map((size) => `k${size}`));
  });
});

describe('PackedEntries', () => {
  const pairs: [Buffer, Buffer][] = [[Buffer.from('k1'), Buffer.alloc(0)], [Buffer.from('k2'), valueOf(300)], [Buffer.from('k3'), valueOf(5000)]];
  const packedOf = (entries: [Buffer, Buffer][]) => {
    const bytes = new MessageCodec().encode(entries).subarray(FRAME_HEADER_BYTES + 1); // fixarray header off
    return new PackedArray(entries.length, Buffer.from(bytes));
  };

  it('hands out each pair once, as copies that outlive the batch bytes', () => {
    const packed = packedOf(pairs);
    const entries = new PackedEntries(packed);
    const taken = [];
    while (entries.left > 0) taken.push(entries.take());
    packed.bytes.fill(0); // the batch's memory is reused: what was handed out must not change
    expect(taken).toHaveLength(3);
    taken.forEach(([key, value], i) => {
      expect(key.equals(pairs[i][0]) && value.equals(pairs[i][1]), `entry ${i}`).toBe(true);
      expect(value.buffer === packed.bytes.buffer).toBe(false);
    });
  });

  it('treats bytes that are not its count of pairs as a broken invariant', () => {
    const packed = packedOf(pairs);
    const short = new PackedEntries(new PackedArray(4, packed.bytes));
    for (let i = 0; i < 3; i++) short.take();
    expect(() => short.take()).toThrow(/invariant/);
    const damaged = Buffer.from(packed.bytes);
    damaged[0] = 0x93;
    expect(() => new PackedEntries(new PackedArray(3, damaged)).take()).toThrow(/invariant/);
  });
});

describe('ValueCopier', () => {
  it('shares one window among small neighbours, gives large values their own copy, and keeps copies intact', () => {
    const body = Buffer.from(Array.from({ length: 20_000 }, (_, i) => i & 0xff));
    const copier = new ValueCopier();
    const a = copier.copy(body, 10, 20);
    const b = copier.copy(body, 20, 2000);
    const c = copier.copy(body, 9000, 9100); // past the first window: a new one
    const large = copier.copy(body, 4000, 8200);
    copier.reset();
    body.fill(0); // the body's memory is reused: copies must not change
    /** True if `later` lies in the same window copy as `first` (same memory, same distance). */
    const sameWindow = (first: Buffer, later: Buffer, distance: number) => first.buffer === later.buffer && later.byteOffset - first.byteOffset === distance;
    expect(sameWindow(a, b, 10)).toBe(true);
    expect(sameWindow(a, c, 8990)).toBe(false);
    expect(pinned(a)).toBeLessThanOrEqual(Buffer.poolSize);
    expect(pinned(large)).toBe(4200);
    for (const [copy, start] of [[a, 10], [b, 20], [c, 9000], [large, 4000]] as const) {
      expect(copy.equals(Buffer.from(Array.from({ length: copy.length }, (_, i) => (start + i) & 0xff)))).toBe(true);
    }
    // After reset, the same body (by identity) starts a fresh window.
    expect(sameWindow(a, copier.copy(body, 10, 20), 0)).toBe(false);
  });
});
