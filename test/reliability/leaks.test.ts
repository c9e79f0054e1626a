// Leak check in the spirit of @napi-rs/snappy's: many operations, failing ones included
// (conflicts, bad arguments, closed cursors, missing transactions), must leave the daemon's and
// the client's RSS flat, and nothing held in its daemon-wide budgets. Knob: TOONDB_LEAK_OPS (default 25000, ~3 s: catches a leak of a few KB
// per operation, and any transaction or cursor left open; raise it, e.g. to 300000, to soak).
// The timeout grows with it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { CLIENT_MODULE } from '../helpers/paths.js';

const OPS = Number(process.env.TOONDB_LEAK_OPS ?? 25_000);

// Runs in a child process so the client's RSS is its own, not vitest's.
const WORKLOAD = `
const { IpcClient } = await import(process.env.CLIENT_MODULE);
const client = await IpcClient.connect(process.env.SOCKET);
const total = Number(process.env.OPS);
const rss = () => process.memoryUsage().rss;
const heap = () => { const m = process.memoryUsage(); return m.heapUsed + m.arrayBuffers; };
// One oversized key, reused: a fresh 20 KB Buffer per op would measure glibc's arenas, not us.
const TOO_LARGE_KEY = Buffer.alloc(20000);
let done = 0;
let rssWarm = 0;
let heapWarm = 0;
async function round(i) {
  const key = 'leak/' + (i % 1000);
  switch (i % 10) {
    case 0: await client.put(key, 'x'.repeat(100)); break;
    case 1: await client.get(key); break;
    case 2: await client.get(TOO_LARGE_KEY).catch(() => {}); break;                 // KEY_TOO_LARGE
    case 3: await client.commit(123456789n).catch(() => {}); break;                  // NOT_IN_TRANSACTION
    case 4: { const t = await client.beginTransaction(); await t.get(key); await t.put(key, 'y'); await t.commit().catch(() => {}); break; }
    case 5: { const t = await client.beginTransaction(); await t.put(key, 'z'); await t.abort(); break; }
    case 6: { // early close: fixed small batches, or growing ones read ahead
      const options = i % 20 === 6 ? { batchSize: 5 } : {};
      let seen = 0;
      for await (const _ of client.scan('leak/', options)) if (++seen === 300) break;
      break;
    }
    case 7: await client.getBatch([key, 'missing']); break;
    case 8: await client.delete(key); break;
    default: await (i % 20 === 9 ? client.listPath('', { limit: 10 }) : client.exists(key));
  }
}
while (done < total) {
  await Promise.all(Array.from({ length: 50 }, (_, j) => round(done + j)));
  done += 50;
  // Warm-up: allocator arenas and the V8 heap grow to their working size before the first
  // sample; a leak keeps growing after it.
  if (!rssWarm && done >= total * 0.4) { globalThis.gc?.(); rssWarm = rss(); heapWarm = heap(); process.stdout.write('WARM\\n'); }
}
globalThis.gc?.();
process.stdout.write(JSON.stringify({ rssWarm, rssEnd: rss(), heapWarm, heapEnd: heap() }) + '\\n');
await client.close();
`;

describe(`no leaks over ${OPS} operations`, () => {
  let daemon: TestDaemon;
  beforeAll(async () => {
    daemon = await startDaemon({ args: ['--log-level', 'warn', '--durability', 'interval'] });
  });
  afterAll(async () => {
    await daemon?.dispose();
  });

  it(`keeps daemon and client RSS flat over ${OPS} operations`, async () => {
    let daemonWarm = 0;
    const child = execa('node', ['--expose-gc', '--input-type=module', '-e', WORKLOAD], {
      env: { CLIENT_MODULE, SOCKET: daemon.socketPath, OPS: String(OPS) },
    });
    child.stdout?.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('WARM') && daemonWarm === 0) daemonWarm = daemon.rssBytes();
    });
    const result = await child;
    const { rssWarm, rssEnd, heapWarm, heapEnd } = JSON.parse(String(result.stdout).trim().split('\n').at(-1)!);
    const daemonEnd = daemon.rssBytes();
    const mib = (n: number) => (n / 2 ** 20).toFixed(1);
    console.log(`leaks: daemon ${mib(daemonWarm)} -> ${mib(daemonEnd)} MiB, client ${mib(rssWarm)} -> ${mib(rssEnd)} MiB (JS heap + ArrayBuffers after GC ${mib(heapWarm)} -> ${mib(heapEnd)} MiB)`);
    expect(daemonWarm).toBeGreaterThan(0);
    expect(daemonEnd - daemonWarm).toBeLessThan(48 * 2 ** 20);
    // The client's RSS also holds V8's young generation, which grows under a high allocation
    // rate up to two 16 MiB semi-spaces whatever is live: the bound leaves room for that, and
    // the live JS heap plus ArrayBuffers after GC is the leak check proper.
    expect(rssEnd - rssWarm).toBeLessThan(48 * 2 ** 20);
    expect(heapEnd - heapWarm).toBeLessThan(8 * 2 ** 20);
    const stats = await (await import('../../ipc-client/index.js')).IpcClient.connect(daemon.socketPath).then(async (c) => {
      const s = await c.stats();
      await c.close();
      return s;
    });
    expect(stats.transactions.active).toBe(0);
    expect(stats.cursors.open).toBe(0);
    // The daemon-wide budgets got everything back: only this stats request is in flight, and
    // no reservation or unread reply was left behind (each would hold at least 4 KiB).
    expect(stats.bytes.inFlight).toBeLessThan(1024);
    expect(stats.bytes.replies).toBeLessThan(4096);
  }, 60_000 + OPS * 2);
});
