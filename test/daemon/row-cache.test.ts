// The row cache end to end: plain reads answered on the daemon's JS thread must behave exactly
// like storage reads. Across connections, a read that starts after a write was acknowledged
// sees it (or something newer), values never go back, and a getBatch never splits a putBatch
// or a transaction. The same checks run with the cache off (--row-cache-mb 0) as the control.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { IpcClient } from '../../ipc-client/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { RawPeer } from '../helpers/raw.js';
import { TOONDBD_BIN } from '../helpers/paths.js';
import { makeTempDir } from '../helpers/temp-dir.js';

/** Write rounds per run: each round is one putBatch or one transaction over keys a and b. */
const ROUNDS = Number(process.env.TOONDB_ROW_CACHE_ROUNDS ?? 600);
const READERS = 3;

const number = (value: Buffer | null): number => (value === null ? 0 : Number(value.toString()));

async function checkReadsAgainstWrites(daemon: TestDaemon): Promise<void> {
  const writer = await IpcClient.connect(daemon.socketPath);
  const readers = await Promise.all(Array.from({ length: READERS }, () => IpcClient.connect(daemon.socketPath)));
  let acked = 0;
  let done = false;
  const write = async () => {
    for (let i = 1; i <= ROUNDS; i++) {
      const value = String(i);
      if (i % 4 === 0) {
        await writer.withTransaction(async (txn) => {
          await txn.put('a', value);
          await txn.put('b', value);
        });
      } else {
        await writer.putBatch([['a', value], ['b', value], [`other/${i}`, value]]);
      }
      acked = i;
    }
    done = true;
  };
  const read = async (client: IpcClient) => {
    let last = 0;
    let reads = 0;
    while (!done) {
      const floor = acked;
      const seen = number(await client.get('a'));
      expect(seen, 'a read missed an acknowledged write or went back').toBeGreaterThanOrEqual(Math.max(floor, last));
      last = seen;
      const [a, b] = await client.getBatch(['a', 'b']);
      expect(number(a!), 'a getBatch split one commit').toBe(number(b!));
      expect(number(a!)).toBeGreaterThanOrEqual(last);
      last = number(a!);
      reads += 2;
    }
    return reads;
  };
  try {
    const [, ...reads] = await Promise.all([write(), ...readers.map(read)]);
    expect(reads.every((n) => n > 0)).toBe(true);
    expect(number(await readers[0]!.get('a'))).toBe(ROUNDS);
  } finally {
    await Promise.all([writer, ...readers].map((client) => client.close()));
  }
}

describe('row cache', () => {
  const daemons: TestDaemon[] = [];
  afterAll(async () => {
    await Promise.all(daemons.map((daemon) => daemon.dispose()));
  });

  it('serves reads from memory that never miss an acknowledged write, go back, or split a commit', async () => {
    const daemon = await startDaemon({ args: ['--durability', 'interval'] });
    daemons.push(daemon);
    await checkReadsAgainstWrites(daemon);
    const client = await IpcClient.connect(daemon.socketPath);
    const stats = await client.stats();
    await client.close();
    expect(stats.requests.fromMemory, 'the checks above ran through the cache').toBeGreaterThan(ROUNDS);
  });

  it('with --row-cache-mb 0 every read goes to storage, with the same results', async () => {
    const daemon = await startDaemon({ args: ['--durability', 'interval', '--row-cache-mb', '0'] });
    daemons.push(daemon);
    await checkReadsAgainstWrites(daemon);
    const client = await IpcClient.connect(daemon.socketPath);
    const stats = await client.stats();
    await client.close();
    expect(stats.requests.fromMemory).toBe(0);
    expect(stats.engine.rowCacheRows).toBe(0);
  });

  it('answers the reads ahead of a write from memory, and the reads after it only after the write', async () => {
    const daemon = await startDaemon({ args: ['--durability', 'interval'] });
    daemons.push(daemon);
    const client = await IpcClient.connect(daemon.socketPath);
    await client.putBatch([['p/a', '1'], ['p/b', '1']]);
    const before = (await client.stats()).requests.fromMemory;
    // One socket write: the daemon reads the whole pipeline in one chunk, as one queue.
    const peer = await RawPeer.open(daemon.socketPath);
    peer.hello();
    await peer.waitFor(1);
    const frames = [
      { id: 2, op: 'get', key: Buffer.from('p/a') },
      { id: 3, op: 'getBatch', keys: [Buffer.from('p/a'), Buffer.from('p/b')] },
      { id: 4, op: 'putBatch', entries: [[Buffer.from('p/a'), Buffer.from('2')], [Buffer.from('p/b'), Buffer.from('2')]] },
      { id: 5, op: 'get', key: Buffer.from('p/a') },
      { id: 6, op: 'getBatch', keys: [Buffer.from('p/a'), Buffer.from('p/b')] },
    ].map((message) => peer.codec.encode(message));
    peer.send(Buffer.concat(frames));
    const replies = new Map((await peer.waitFor(6)).slice(1).map((m) => [m.id as number, m.result]));
    const text = (value: unknown) => (Array.isArray(value) ? value.map(String).join(',') : String(value));
    expect(text(replies.get(2))).toBe('1');
    expect(text(replies.get(3))).toBe('1,1');
    expect(replies.get(4)).toBeNull();
    expect(text(replies.get(5))).toBe('2');
    expect(text(replies.get(6))).toBe('2,2');
    peer.close();
    expect((await client.stats()).requests.fromMemory - before, 'the two reads ahead of the write came from memory').toBeGreaterThanOrEqual(2);
    await client.close();
  });

  // Temp socket and data dir: a validation that regressed starts a daemon there, never on the
  // default paths; the refusal comes before the data dir is made.
  it('refuses a bad --row-cache-mb with exit 2 and one line', async () => {
    const dir = makeTempDir();
    const result = await execa('node', [TOONDBD_BIN, 'start', '--socket', join(dir, 's.sock'), '--data-dir', join(dir, 'data'), '--row-cache-mb', '-1'],
      { reject: false, stdin: 'ignore', timeout: 30_000 });
    expect(result.exitCode).toBe(2);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/row cache \(MiB\) must be an integer in 0\.\.65536/);
    expect(existsSync(join(dir, 'data'))).toBe(false);
  });
});
