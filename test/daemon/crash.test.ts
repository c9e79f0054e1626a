// Crash safety: writers with many requests in flight record every acknowledgement; the daemon
// is SIGKILLed at a random moment and restarted. Every acknowledged write must be present with
// its exact value, and no transaction may be half-applied. Guards against acknowledging before
// the journal write/fsync, and against torn multi-key commits.
//
// Runs in each durability mode. A kill -9 is not a power loss: the README promises every mode
// survives it, since even `interval` and `off` acknowledge a write only once it was written to
// the OS (what they give up is the fsync, which only a power loss or a kernel crash needs).
//
// Knobs: TOONDB_CRASH_ROUNDS (rounds per mode; default 2 for sync, 1 for interval and off in
// CI), TOONDB_CRASH_SEED (printed on every run).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa, type ResultPromise } from 'execa';
import { IpcClient } from '../../ipc-client/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { CLIENT_MODULE } from '../helpers/paths.js';
import { mulberry32 } from '../helpers/rng.js';

const roundsOf = (durability: string) => Number(process.env.TOONDB_CRASH_ROUNDS ?? (durability === 'sync' ? 2 : 1));
const SEED = Number(process.env.TOONDB_CRASH_SEED ?? Date.now() % 1_000_000);
const WRITERS = 2;
const IN_FLIGHT = 32;

// Each writer: IN_FLIGHT concurrent loops alternating single puts and two-key transactions,
// printing "P key value" / "T n" after each acknowledgement, until the daemon goes away.
const WRITER = `
const { IpcClient } = await import(process.env.CLIENT_MODULE);
const name = process.env.NAME;
const client = await IpcClient.connect(process.env.SOCKET, { timeoutMs: 10000 });
let next = 0;
let alive = true;
async function loop() {
  while (alive) {
    const n = next++;
    try {
      if (n % 2 === 0) {
        const key = name + '/p/' + n;
        const value = 'v' + n + '-' + 'x'.repeat(n % 50);
        await client.put(key, value);
        process.stdout.write('P ' + key + ' ' + value + '\\n');
      } else {
        const txn = await client.beginTransaction();
        await txn.put(name + '/t/' + n + '/a', String(n));
        await txn.put(name + '/t/' + n + '/b', String(n));
        await txn.commit();
        process.stdout.write('T ' + n + '\\n');
      }
    } catch (error) {
      if (error.code !== 'TXN_CONFLICT') alive = false;
    }
  }
}
await Promise.all(Array.from({ length: Number(process.env.IN_FLIGHT) }, loop));
process.stdout.write('ATTEMPTED ' + next + '\\n');
await client.close().catch(() => {});
`;


const FIRST_ACK_MS_MAX = 30_000;

/** Resolves when any writer prints an acknowledgement line (or after `boundMs`). */
function firstAcknowledgement(writers: ResultPromise[], boundMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, boundMs);
    for (const writer of writers) {
      writer.stdout?.on('data', (chunk: Buffer) => {
        if (/^[PT] /m.test(chunk.toString())) {
          clearTimeout(timer);
          resolve();
        }
      });
    }
  });
}

describe.each(['sync', 'interval', 'off'])('crash safety under SIGKILL, durability %s', (durability) => {
  const ROUNDS = roundsOf(durability);
  let daemon: TestDaemon;
  beforeAll(async () => {
    console.log(`crash test (${durability}): TOONDB_CRASH_ROUNDS=${ROUNDS} TOONDB_CRASH_SEED=${SEED}`);
    daemon = await startDaemon({ args: ['--durability', durability] });
  });
  afterAll(async () => {
    await daemon?.dispose();
  });

  it(`keeps every acknowledged write over ${ROUNDS} kill -9 rounds`, async () => {
    const probe = await IpcClient.connect(daemon.socketPath);
    expect((await probe.stats()).durability).toBe(durability);
    await probe.close();
    const random = mulberry32(SEED);
    for (let round = 0; round < ROUNDS; round++) {
      const writers: ResultPromise[] = Array.from({ length: WRITERS }, (_, w) => execa('node', ['--input-type=module', '-e', WRITER], {
        env: { CLIENT_MODULE, SOCKET: daemon.socketPath, NAME: `r${round}w${w}`, IN_FLIGHT: String(IN_FLIGHT) },
        reject: false,
      }));
      // Arm the kill once some write was acknowledged: on a loaded machine node start-up and
      // connecting can eat a fixed delay, and a round without acknowledgements checks nothing.
      await firstAcknowledgement(writers, FIRST_ACK_MS_MAX);
      await new Promise((resolve) => setTimeout(resolve, 100 + Math.floor(random() * 600)));
      await daemon.kill();
      const outputs = await Promise.all(writers);
      await daemon.start();
      const client = await IpcClient.connect(daemon.socketPath);
      let acked = 0;
      for (const [w, output] of outputs.entries()) {
        const lines = String(output.stdout).split('\n').filter(Boolean);
        const attempted = Number(lines.find((l) => l.startsWith('ATTEMPTED'))?.split(' ')[1] ?? 0);
        const puts = lines.filter((l) => l.startsWith('P ')).map((l) => l.split(' '));
        const values = await client.getBatch(puts.map(([, key]) => key));
        puts.forEach(([, key, value], i) => expect(values[i]?.toString(), `acknowledged ${key}`).toBe(value));
        const ackedTxns = new Set(lines.filter((l) => l.startsWith('T ')).map((l) => Number(l.split(' ')[1])));
        for (let n = 1; n < attempted; n += 2) {
          const [a, b] = await client.getBatch([`r${round}w${w}/t/${n}/a`, `r${round}w${w}/t/${n}/b`]);
          expect(a === null, `transaction ${n} half-applied`).toBe(b === null);
          if (ackedTxns.has(n)) expect(a?.toString(), `acknowledged transaction ${n}`).toBe(String(n));
        }
        acked += puts.length + ackedTxns.size;
      }
      expect(acked, 'writers made progress before the kill').toBeGreaterThan(0);
      await client.close();
    }
  });
});

describe('restarts without writes', () => {
  it('reopens a data dir whose daemons never wrote, after SIGTERM and after SIGKILL', async () => {
    // Creating the engine's keyspaces moves its seqno without a journal entry; a stop with no
    // write in between used to record that seqno as durable, and the next start refused the
    // data dir as damaged (CORRUPTION).
    const daemon = await startDaemon();
    try {
      expect(await daemon.stop('SIGTERM')).toBe(0);
      await daemon.start();
      await daemon.stop('SIGKILL');
      await daemon.start();
      expect(await daemon.stop('SIGTERM')).toBe(0);
      await daemon.start();
      const client = await IpcClient.connect(daemon.socketPath);
      await client.put('after', 'restarts');
      expect((await client.get('after'))?.toString()).toBe('restarts');
      await client.close();
    } finally {
      await daemon.dispose();
    }
  });
});
