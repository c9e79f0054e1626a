// Dumps carry TTLs: `toondb dump` writes each expiring key with its expiry (format 3), and
// `toondb load` gives it back the same expiry, skipping keys whose expiry passed since the dump.
// Real daemons on both sides; the file is read back and hand-made as the dump format describes.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { MessageCodec } from '../../protocol/codec.js';
import { FrameDecoder } from '../../protocol/frame.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { TOONDB_BIN } from '../helpers/paths.js';

const toondb = (args: string[]) => execa('node', [TOONDB_BIN, ...args], { reject: false, stdin: 'ignore' });
const codec = new MessageCodec();

type Entry = [Buffer, Buffer] | [Buffer, Buffer, number];

/** Every key's value and expiry (null: none), through a scan that carries expiries. */
async function contents(daemon: TestDaemon): Promise<Map<string, [string, number | null]>> {
  const client = await IpcClient.connect(daemon.socketPath);
  try {
    const out = new Map<string, [string, number | null]>();
    for await (const [key, value, expiresAtMs] of client.scan('', { withExpiry: true })) out.set(key.toString(), [value.toString(), expiresAtMs ?? null]);
    return out;
  } finally {
    await client.close();
  }
}

/** The dump format's batch checksum (bin/dump.ts header), computed independently. */
function batchCrc(entries: Entry[]): number {
  let crc = 0;
  for (const entry of entries) {
    const head = Buffer.alloc(4);
    head.writeUInt32BE(entry[0].length);
    crc = crc32(entry[0], crc32(head, crc));
    head.writeUInt32BE(entry[1].length);
    crc = crc32(entry[1], crc32(head, crc));
    if (entry.length === 3) {
      const expiry = Buffer.alloc(8);
      expiry.writeBigUInt64BE(BigInt(entry[2]));
      crc = crc32(expiry, crc);
    }
  }
  return crc;
}

/** Writes a dump of one batch at `path` as the format describes; returns the path. */
function handMadeDump(path: string, version: number, entries: Entry[]): string {
  writeFileSync(path, Buffer.concat([
    codec.encode({ format: 'toondb-dump', version, createdAt: new Date().toISOString(), server: 'test' }),
    codec.encode({ entries, crc32: batchCrc(entries) }),
    codec.encode({ end: true, count: entries.length }),
  ]));
  return path;
}

describe('dump and load with TTLs', () => {
  let source: TestDaemon;
  let target: TestDaemon;
  const dir = makeTempDir();

  beforeAll(async () => {
    [source, target] = await Promise.all([startDaemon(), startDaemon()]);
    const client = await IpcClient.connect(source.socketPath);
    await client.put('forever', 'f');
    await client.put('long', 'l', { ttlSeconds: 3600 });
    await client.put('gone', 'g', { ttlSeconds: 0.001 });
    await client.close();
    await new Promise((resolve) => setTimeout(resolve, 20));
  });

  afterAll(async () => {
    await Promise.all([source?.dispose(), target?.dispose()]);
  });

  it('dumps each expiring key with its expiry and loads it back with the same one', async () => {
    const file = join(dir, 'ttl.dump');
    const dumped = await toondb(['dump', file, '--socket', source.socketPath]);
    expect(dumped.stdout).toBe(`dumped 2 keys to ${file}`);

    const frames = new FrameDecoder().push(readFileSync(file)).map((body) => codec.decode(body));
    expect(frames[0]).toMatchObject({ format: 'toondb-dump', version: 3 });
    const entries = frames[1].entries as Entry[];
    const original = await contents(source);
    const longExpiry = original.get('long')![1]!;
    expect(longExpiry).toBeGreaterThan(Date.now() + 3500_000);
    expect(entries.map((entry) => entry.map((part) => (Buffer.isBuffer(part) ? part.toString() : part)))).toEqual([
      ['forever', 'f'],
      ['long', 'l', longExpiry],
    ]);
    expect(frames[1].crc32).toBe(batchCrc(entries));

    const loaded = await toondb(['load', file, '--socket', target.socketPath]);
    expect(loaded.stdout, loaded.stderr).toBe(`loaded 2 keys from ${file}`);
    const restored = await contents(target);
    expect(restored.get('forever')).toEqual(['f', null]);
    expect(restored.get('long')?.[0]).toBe('l');
    expect(Math.abs(restored.get('long')![1]! - longExpiry)).toBeLessThan(1_000);
    expect(restored.has('gone')).toBe(false);
  });

  it('does not load a key whose expiry passed after the dump, and says so', async () => {
    const entries: Entry[] = [
      [Buffer.from('hand/expired'), Buffer.from('x'), Date.now() - 1_000],
      [Buffer.from('hand/live'), Buffer.from('y'), Date.now() + 600_000],
    ];
    const file = handMadeDump(join(dir, 'hand.dump'), 3, entries);
    const loaded = await toondb(['load', file, '--socket', target.socketPath]);
    expect(loaded.stdout, loaded.stderr).toBe(`loaded 1 keys from ${file} (1 more had expired since the dump)`);
    const restored = await contents(target);
    expect(restored.has('hand/expired')).toBe(false);
    expect(restored.get('hand/live')?.[0]).toBe('y');
  });

  // Regression (review): an expiry written as uint 64 (as another writer may) decodes as a
  // bigint, and the load refused the file as if the entry were malformed.
  it('loads an expiry written as a 64-bit integer', async () => {
    const expiresAtMs = Date.now() + 600_000;
    const entries = [[Buffer.from('u64/live'), Buffer.from('z'), BigInt(expiresAtMs)]] as unknown as Entry[];
    const file = handMadeDump(join(dir, 'u64.dump'), 3, entries);
    const bytes = readFileSync(file);
    expect(bytes.includes(Buffer.concat([Buffer.from([0xcf]), Buffer.from(BigInt(expiresAtMs).toString(16).padStart(16, '0'), 'hex')]))
      || bytes.includes(Buffer.concat([Buffer.from([0xd3]), Buffer.from(BigInt(expiresAtMs).toString(16).padStart(16, '0'), 'hex')])), 'written as a 64-bit integer').toBe(true);
    const loaded = await toondb(['load', file, '--socket', target.socketPath]);
    expect(loaded.stdout, loaded.stderr).toBe(`loaded 1 keys from ${file}`);
    const restored = (await contents(target)).get('u64/live');
    expect(restored?.[0]).toBe('z');
    expect(Math.abs((restored?.[1] ?? 0) - expiresAtMs)).toBeLessThan(1_000);
  });

  it('refuses an expiry in a version 2 file, before writing anything of its batch', async () => {
    const entries: Entry[] = [[Buffer.from('v2/a'), Buffer.from('a'), Date.now() + 60_000]];
    const file = handMadeDump(join(dir, 'v2.dump'), 2, entries);
    const refused = await toondb(['load', file, '--socket', target.socketPath]);
    expect(refused.exitCode).toBe(4);
    expect(refused.stderr).toMatch(/entry 1 is not a \[key, value\] or \[key, value, expiresAtMs\] entry \(nothing was written\)/);
    expect((await contents(target)).has('v2/a')).toBe(false);
  });
});
