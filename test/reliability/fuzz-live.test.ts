// Protocol fuzz against a live daemon: random bytes, absurd lengths (0 and 4 GiB), valid lengths
// with garbage, deeply nested MessagePack, wrong field types, unknown ops, huge declared arrays,
// truncated frames. The daemon must stay up, keep answering a well-behaved client with unchanged
// results, and keep its memory bounded.
// Knobs: TOONDB_LIVE_FUZZ_FRAMES (default 20000, ~1 s; raise it to soak, the timeout grows with
// it), TOONDB_LIVE_FUZZ_SEED (printed).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { RawPeer } from '../helpers/raw.js';

const FRAMES = Number(process.env.TOONDB_LIVE_FUZZ_FRAMES ?? 20_000);
const SEED = Number(process.env.TOONDB_LIVE_FUZZ_SEED ?? Date.now() % 1_000_000);

function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s % n;
  };
}

function frame(body: Buffer): Buffer {
  const out = Buffer.alloc(4 + body.length);
  out.writeUInt32BE(body.length);
  body.copy(out, 4);
  return out;
}

/** Frames that are well-formed MessagePack but wrong as requests: the connection survives them. */
function semanticGarbage(peer: RawPeer, rand: (n: number) => number, id: number): Buffer {
  const ops = ['get', 'put', 'delete', 'getBatch', 'putBatch', 'scan', 'scanNext', 'begin', 'commit', 'nope', ''];
  const values: unknown[] = [null, true, -1, 2 ** 40, 1.5, 'str', Buffer.alloc(rand(64)), [], {}, [1, [2, [3]]], { a: { b: 1 } }];
  const body: Record<string, unknown> = { id, op: ops[rand(ops.length)] };
  for (const field of ['key', 'value', 'keys', 'entries', 'txn', 'cursor', 'limit', 'batchSize', 'ttlSeconds', 'prefix']) {
    if (rand(3) === 0) body[field] = values[rand(values.length)];
  }
  return peer.codec.encode(body);
}

/** Frames that break the protocol: the daemon answers (if it can) and hangs up. */
function fatalGarbage(rand: (n: number) => number): Buffer {
  switch (rand(6)) {
    case 0: return Buffer.from(Array.from({ length: 1 + rand(300) }, () => rand(256)));
    case 1: { const b = Buffer.alloc(4); b.writeUInt32BE(rand(2) ? 0xffff_ffff : 0); return b; }
    case 2: return frame(Buffer.alloc(1 + rand(100), 0xc1));
    case 3: return frame(Buffer.concat([Buffer.alloc(1000, 0x91), Buffer.from([0xc0])])); // 1000-deep nested arrays
    case 4: return frame(Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff, 0x01])); // array32 claiming 4G items
    default: return frame(Buffer.from([0x81, 0xa2, 0x69, 0x64, 0xd9, 0x10])); // truncated str8
  }
}

describe('live protocol fuzz', () => {
  let daemon: TestDaemon;
  let good: IpcClient;
  beforeAll(async () => {
    console.log(`live fuzz: TOONDB_LIVE_FUZZ_FRAMES=${FRAMES} TOONDB_LIVE_FUZZ_SEED=${SEED}`);
    daemon = await startDaemon({ args: ['--log-level', 'warn'] });
    good = await IpcClient.connect(daemon.socketPath);
    await good.putBatch([['fz/a', 'alpha'], ['fz/b', Buffer.alloc(0)]]);
  });
  afterAll(async () => {
    await good?.close();
    await daemon?.dispose();
  });

  it(`survives ${FRAMES} hostile frames with a good client's results unchanged and memory bounded`, async () => {
    const rand = rng(SEED);
    let sent = 0;
    let rssAfterWarmup = 0;
    while (sent < FRAMES) {
      const peer = await RawPeer.open(daemon.socketPath);
      peer.hello();
      // A burst of surviving garbage, then usually one fatal frame that ends the connection.
      const burst = 200 + rand(800);
      const chunks: Buffer[] = [];
      for (let i = 0; i < burst && sent < FRAMES; i++, sent++) chunks.push(semanticGarbage(peer, rand, 2 + i));
      if (rand(4) !== 0 && sent < FRAMES) {
        chunks.push(fatalGarbage(rand));
        sent++;
      }
      peer.send(Buffer.concat(chunks));
      peer.socket.end();
      await Promise.race([peer.closed, new Promise((resolve) => setTimeout(resolve, 3_000))]);
      peer.close();
      const [a, b] = await good.getBatch(['fz/a', 'fz/b']);
      expect(a?.toString()).toBe('alpha');
      expect(b?.length).toBe(0);
      if (rssAfterWarmup === 0 && sent > FRAMES / 5) rssAfterWarmup = daemon.rssBytes();
    }
    const rssEnd = daemon.rssBytes();
    console.log(`live fuzz: ${sent} frames; daemon RSS ${(rssAfterWarmup / 2 ** 20).toFixed(1)} -> ${(rssEnd / 2 ** 20).toFixed(1)} MiB`);
    expect(rssEnd - rssAfterWarmup).toBeLessThan(64 * 2 ** 20);
    await expect.poll(async () => (await good.stats()).connections.active, { timeout: 5_000 }).toBe(1);
    const stats = await good.stats();
    expect(stats.requests.errors).toBeGreaterThan(0);
  }, 60_000 + FRAMES);
});
