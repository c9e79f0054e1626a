// Careless and stuck clients, and floods: every per-connection and per-daemon bound holds with a
// clear coded refusal, the offender is cut off, and a well-behaved client is unaffected.
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { RawPeer } from '../helpers/raw.js';

describe('slow, stuck and greedy clients', () => {
  let daemon: TestDaemon;
  let good: IpcClient;

  beforeAll(async () => {
    daemon = await startDaemon({
      config: { connectionsMax: 12, limits: { txnIdleMsMax: 600, cursorIdleMsMax: 600, partialFrameMsMax: 800, unreadRepliesMsMax: 800, txnsPerConnectionMax: 8, cursorsPerConnectionMax: 8 } },
    });
    good = await IpcClient.connect(daemon.socketPath);
    await good.put('probe', 'ok');
  });
  afterAll(async () => {
    await good?.close();
    await daemon?.dispose();
  });

  const probe = async () => expect((await good.get('probe'))?.toString()).toBe('ok');

  it('closes a connection that sends half a frame and goes silent', async () => {
    const peer = await RawPeer.open(daemon.socketPath);
    peer.hello();
    await peer.waitFor(1);
    const frame = peer.codec.encode({ id: 2, op: 'get', key: Buffer.from('probe') });
    peer.send(frame.subarray(0, frame.length - 2));
    const started = Date.now();
    await peer.closed;
    expect(Date.now() - started).toBeGreaterThanOrEqual(700);
    expect(peer.messages.at(-1)).toMatchObject({ id: 0, error: { code: 'PROTOCOL_ERROR' } });
    await probe();
  });

  // Regression: the clock restarted at every byte, so a client trickling a byte at a time was
  // never closed, holding its frame's announced length in the daemon-wide request budget: eight
  // of them announcing 32 MiB each wedged every other client's requests.
  it('closes a connection that trickles a frame for longer than partialFrameMsMax', async () => {
    const peer = await RawPeer.open(daemon.socketPath);
    peer.hello();
    await peer.waitFor(1);
    const frame = peer.codec.encode({ id: 2, op: 'put', key: Buffer.from('trickled'), value: Buffer.alloc(4096, 1) });
    const started = Date.now();
    let sent = 0;
    const trickle = setInterval(() => { if (!peer.socket.destroyed) peer.send(frame.subarray(sent, ++sent)); }, 100);
    try {
      const closed = await Promise.race([peer.closed.then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 6_000))]);
      expect(closed).toBe(true);
    } finally {
      clearInterval(trickle);
    }
    expect(Date.now() - started).toBeGreaterThanOrEqual(700);
    expect(sent).toBeLessThan(frame.length);
    expect(peer.messages.at(-1)).toMatchObject({ id: 0, error: { code: 'PROTOCOL_ERROR', message: expect.stringMatching(/^incomplete frame for \d+ ms/) } });
    expect(await good.get('trickled')).toBeNull();
    await probe();
  });

  it('closes a connection that never completes the handshake', async () => {
    const peer = await RawPeer.open(daemon.socketPath);
    await peer.closed; // HANDSHAKE_TIMEOUT_MS (5 s)
    expect(peer.messages.at(-1)).toMatchObject({ id: 0, error: { code: 'HANDSHAKE_REQUIRED' } });
    await probe();
  }, 15_000);

  it('cuts off a client that sends requests but never reads the replies', async () => {
    await good.put('big', Buffer.alloc(1024 * 1024, 7));
    const peer = await RawPeer.open(daemon.socketPath);
    peer.hello();
    await peer.waitFor(1);
    peer.socket.pause(); // stop reading: replies pile up in the daemon
    for (let i = 0; i < 400; i++) peer.request({ id: 10 + i, op: 'get', key: Buffer.from('big') });
    // A paused socket never reads the EOF, so watch the daemon's log, then read to see the close.
    const cutOff = () => daemon.logs.some((l) => l.msg === 'closing connection that does not read its replies');
    for (let waitedMs = 0; !cutOff() && waitedMs < 20_000; waitedMs += 50) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(cutOff()).toBe(true);
    peer.socket.resume();
    const closed = await Promise.race([peer.closed.then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 10_000))]);
    expect(closed).toBe(true);
    // It was cut off well before all 400 MiB of replies could have been buffered for it.
    expect(peer.messages.length).toBeLessThan(400);
    await probe();
  }, 30_000);

  // Regression: replies were bounded only by cutting the connection off past 64 MiB unread, so
  // a client that reads everything but pipelined five gets of a 16 MiB value lost them all
  // (UNKNOWN_RESULT), and one engine call could build a reply batch of any size. Calls of plain
  // reads now end early past 16 MiB of results, and no new work starts past 8 MiB unread.
  it('serves a reader that pipelines many reads of large values, without cutting it off', async () => {
    // A daemon of its own, with the default unreadRepliesMsMax (as below): this suite's 800 ms
    // could cut off a test process that a loaded machine leaves unscheduled for that long.
    const own = await startDaemon();
    try {
      const client = await IpcClient.connect(own.socketPath);
      const value = Buffer.alloc(4 * 1024 * 1024, 3);
      await client.put('large', value);
      const gets = await Promise.all(Array.from({ length: 40 }, () => client.get('large')));
      expect(gets.every((got) => got !== null && got.equals(value))).toBe(true);
      const batches = await Promise.all(Array.from({ length: 8 }, () => client.getBatch(['large', 'large', 'large', 'large', 'nope'])));
      expect(batches.flat().filter((got) => got !== null && got.equals(value))).toHaveLength(32);
      expect(client.closed).toBe(false);
      expect(own.logs.some((l) => l.msg === 'closing connection that does not read its replies')).toBe(false);
      await client.close();
    } finally {
      await own.dispose();
    }
  }, 30_000);

  // Regression: only calls of plain reads ended early, so pipelined requests mixing writes with
  // reads of a large value ran as lane calls whose results (every value read) were all built in
  // memory before a reply left. Every engine call now ends early past 16 MiB of results, and the
  // rest of one that writes runs once its replies were read, before anything sent after it.
  it('bounds the replies of calls that mix writes with reads of large values', async () => {
    // A daemon of its own, with the default unreadRepliesMsMax: this suite's 800 ms could cut off
    // a test process that a loaded machine leaves unscheduled for that long.
    const own = await startDaemon();
    try {
      const client = await IpcClient.connect(own.socketPath);
      const value = Buffer.alloc(8 * 1024 * 1024, 5);
      await client.put('mixed/large', value);
      const pipeline = async (rounds: number) => {
        const calls: Promise<Buffer | null | void>[] = [];
        for (let i = 0; i < rounds; i++) {
          calls.push(client.put(`mixed/${i}`, String(i)), client.get('mixed/large'), client.get(`mixed/${i}`));
        }
        const results = await Promise.all(calls);
        for (let i = 0; i < rounds; i++) {
          expect((results[3 * i + 1] as Buffer).equals(value)).toBe(true);
          expect((results[3 * i + 2] as Buffer).toString()).toBe(String(i)); // each read sees the write before it
        }
      };
      await pipeline(6); // fills the caches and buffers a bounded call uses
      const peakBefore = own.peakRssBytes();
      await pipeline(48); // 48 gets of 8 MiB: 384 MiB if one call held them all
      expect(own.peakRssBytes() - peakBefore).toBeLessThan(128 * 1024 * 1024);
      // A pipelined transaction whose reads end a call early: the rest of the call (more reads,
      // the commit) runs as prepared, after them.
      const txn = await client.beginTransaction();
      const steps = [txn.put('mixed/txn', 'committed'), txn.get('mixed/large'), txn.get('mixed/large'), txn.get('mixed/large'), txn.get('mixed/txn')];
      const commit = txn.commit();
      const read = await Promise.all(steps);
      expect(read.slice(1, 4).every((got) => (got as Buffer).equals(value))).toBe(true);
      expect((read[4] as Buffer).toString()).toBe('committed');
      await commit;
      expect((await client.get('mixed/txn'))?.toString()).toBe('committed');
      expect(own.logs.some((l) => l.msg === 'closing connection that does not read its replies')).toBe(false);
      await client.close();
    } finally {
      await own.dispose();
    }
  }, 30_000);

  // The idle sweep runs every second and aborts a transaction idle past txnIdleMsMax (600 ms):
  // wait for it to happen (transactions.active back to 0, and its log line) instead of for a
  // fixed time that a slow machine could outlast.
  it('aborts a transaction held open past txnIdleMsMax and says so', async () => {
    const client = await IpcClient.connect(daemon.socketPath);
    try {
      const expiries = () => daemon.logs.filter((l) => l.msg === 'expired idle transactions/cursors').length;
      const expiriesBefore = expiries();
      const txn = await client.beginTransaction();
      await txn.put('idle/1', 'x');
      expect((await good.stats()).transactions.active).toBe(1);
      await expect.poll(async () => (await good.stats()).transactions.active, { timeout: 10_000 }).toBe(0);
      await expect.poll(expiries, { timeout: 5_000 }).toBe(expiriesBefore + 1);
      await expect(txn.put('idle/2', 'y')).rejects.toMatchObject({ code: 'TXN_EXPIRED' });
      expect(await good.get('idle/1')).toBeNull();
      expect((await good.stats()).transactions.aborted).toBeGreaterThanOrEqual(1);
    } finally {
      await client.close();
    }
  });

  // Regression: pulling a transaction's cursor did not count as using the transaction, so a
  // transactional scan consumed slowly was aborted as idle in the middle (TXN_EXPIRED).
  // No fixed duration: a witness transaction, last used right after the scanning one's put,
  // stays idle while the scan is pulled (an entry every 20 ms or so, far below txnIdleMsMax;
  // 300 of them take at least 6 s, past its expiry and the sweep after it). Once
  // the idle sweep has expired the witness, it has passed the moment when the scanning
  // transaction, idle at least as long but for its pulls, would have expired too.
  it('keeps a transaction alive while its scan is being pulled', async () => {
    // A daemon of its own with a 3 s txnIdleMsMax: under the suite's 600 ms, a loaded machine
    // that left this process unscheduled that long between two pulls expired the scanning one.
    const own = await startDaemon({ config: { limits: { txnIdleMsMax: 3_000 } } });
    onTestFinished(() => own.dispose());
    const client = await IpcClient.connect(own.socketPath);
    try {
      await client.putBatch(Array.from({ length: 300 }, (_, i) => [`tscan/${String(i).padStart(3, '0')}`, 'v'] as [string, string]));
      const expiries = () => own.logs.filter((l) => l.msg === 'expired idle transactions/cursors');
      const expiriesBefore = expiries().length;
      const txn = await client.beginTransaction();
      await txn.put('tscan-result', 'x');
      const witness = await client.beginTransaction();
      await witness.get('tscan/000');
      let pulled = 0;
      for await (const _ of txn.scan('tscan/', { batchSize: 1 })) {
        pulled++;
        if (expiries().length > expiriesBefore) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(expiries().length, `the witness expired within ${pulled} of the 300 pulls`).toBeGreaterThan(expiriesBefore);
      expect(expiries().slice(expiriesBefore).map((l) => l.txns), 'only the witness expired').toEqual([1]);
      await expect(witness.get('tscan/000')).rejects.toMatchObject({ code: 'TXN_EXPIRED' });
      await txn.commit();
      expect((await client.get('tscan-result'))?.toString()).toBe('x');
    } finally {
      await client.close();
    }
  });

  it('refuses transactions and cursors past the per-connection limits', async () => {
    // The suite's per-connection limits, without its 600 ms idle expiry, which a loaded machine
    // could let pass between these round trips (the held transactions would then be gone).
    const own = await startDaemon({ config: { limits: { txnsPerConnectionMax: 8, cursorsPerConnectionMax: 8 } } });
    onTestFinished(() => own.dispose());
    const client = await IpcClient.connect(own.socketPath);
    await client.putBatch(Array.from({ length: 50 }, (_, i) => [`c/${i}`, 'v'] as [string, string]));
    const txns = await Promise.all(Array.from({ length: 8 }, () => client.beginTransaction()));
    const over = await client.beginTransaction(); // pipelined: the refusal is its first call's error
    await expect(over.get('c/0')).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED' });
    await txns[0].abort();
    const again = await client.beginTransaction();
    const iterators = Array.from({ length: 8 }, () => client.scan('c/', { batchSize: 1 })[Symbol.asyncIterator]());
    for (const it of iterators) await it.next(); // each holds an open cursor
    const extra = client.scan('c/', { batchSize: 1 })[Symbol.asyncIterator]();
    await expect(extra.next()).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED' });
    for (const it of iterators) await it.return?.();
    await again.abort();
    for (const txn of txns.slice(1)) await txn.abort();
    await client.close();
    await probe();
  });

  it('refuses connections beyond connectionsMax with TOO_MANY_CONNECTIONS and recovers', async () => {
    // Earlier tests' connections (closed) must be gone from the daemon's count first.
    await expect.poll(async () => (await good.stats()).connections.active, { timeout: 5_000 }).toBe(1);
    const clients: IpcClient[] = [];
    const refused: string[] = [];
    for (let i = 0; i < 16; i++) {
      try {
        clients.push(await IpcClient.connect(daemon.socketPath, { connectTimeoutMs: 2_000 }));
      } catch (error) {
        refused.push((error as { code: string }).code);
      }
    }
    expect(clients.length).toBe(11); // 12 minus `good`
    expect(refused).toHaveLength(5);
    expect(new Set(refused)).toEqual(new Set(['TOO_MANY_CONNECTIONS']));
    await probe();
    await Promise.all(clients.map((c) => c.close()));
    await expect.poll(async () => (await good.stats()).connections.active, { timeout: 5_000 }).toBe(1);
    const later = await IpcClient.connect(daemon.socketPath);
    await later.close();
    expect((await good.stats()).connections.refused).toBeGreaterThanOrEqual(5);
  });
});
