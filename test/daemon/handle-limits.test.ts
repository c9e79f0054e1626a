// Open transactions and cursors across all connections (txnsDaemonMax, cursorsDaemonMax).
// Before them only each connection was bounded (64 of each), so 1024 connections could pin
// 65536 snapshots of each kind. A daemon with both lowered: the handle past the daemon-wide
// bound is refused with LIMIT_EXCEEDED naming it, though its own connection has room, and
// room comes back as handles end and as connections close.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpcClient, type Transaction } from '../../ipc-client/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';

const LIMITS = { txnsPerConnectionMax: 4, txnsDaemonMax: 6, cursorsPerConnectionMax: 4, cursorsDaemonMax: 6 };

describe('open handles across connections', () => {
  let daemon: TestDaemon;
  let clients: IpcClient[];

  beforeAll(async () => {
    daemon = await startDaemon({ config: { limits: LIMITS } });
    clients = await Promise.all([0, 1, 2].map(() => IpcClient.connect(daemon.socketPath)));
    await clients[0].putBatch(Array.from({ length: 20 }, (_, i) => [`hl/${String(i).padStart(2, '0')}`, 'v']));
  });
  afterAll(async () => {
    await Promise.all((clients ?? []).map((c) => c.close()));
    await daemon?.dispose();
  });

  /** A cursor left open: its first entry read, more to come (batches of 2 over 20 keys). */
  async function openCursor(client: IpcClient): Promise<AsyncIterator<[Buffer, Buffer]>> {
    const cursor = client.scan('hl/', { batchSize: 2 })[Symbol.asyncIterator]() as AsyncIterator<[Buffer, Buffer]>;
    await cursor.next();
    return cursor;
  }

  it('refuse the cursor past cursorsDaemonMax though its connection has room, until others finish', async () => {
    const [a, b, c] = clients;
    const held = [...await Promise.all([0, 1, 2, 3].map(() => openCursor(a))), ...await Promise.all([0, 1].map(() => openCursor(b)))];
    expect((await c.stats()).cursors.open).toBe(6);
    await expect(openCursor(c)).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED', message: expect.stringMatching(/6 open cursors across all connections/) });
    await expect(openCursor(a)).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED', message: expect.stringMatching(/this connection already has 4/) });
    await held[0].return?.(); // a scanClose
    const next = await openCursor(c);
    await next.return?.();
    for (const cursor of held.slice(1)) await cursor.return?.();
    // Closed in the engine once the batches read ahead for them settle.
    await expect.poll(async () => (await c.stats()).cursors.open, { timeout: 5_000 }).toBe(0);
  });

  it('refuse the begin past txnsDaemonMax though its connection has room; a closed connection gives its share back', async () => {
    const [a, b, c] = clients;
    const open: Transaction[] = [];
    for (let i = 0; i < 4; i++) open.push(await a.beginTransaction());
    const spare = await IpcClient.connect(daemon.socketPath);
    for (let i = 0; i < 2; i++) await (await spare.beginTransaction()).get('hl/00');
    const refused = await c.beginTransaction();
    await expect(refused.get('hl/00')).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED', message: expect.stringMatching(/6 open transactions across all connections/) });
    await spare.close(); // its two transactions are aborted, their room given back
    await expect.poll(async () => (await b.stats()).transactions.active, { timeout: 5_000 }).toBe(4);
    const admitted = await c.beginTransaction();
    expect(await admitted.get('hl/01')).toEqual(Buffer.from('v'));
    await admitted.commit();
    for (const txn of open) await txn.abort();
  });

  it('follow a reload (SIGHUP): a lowered bound refuses new handles until enough end', async () => {
    const [a, , c] = clients;
    const open: Transaction[] = [];
    for (let i = 0; i < 3; i++) {
      const txn = await a.beginTransaction();
      await txn.get('hl/00');
      open.push(txn);
    }
    writeFileSync(join(daemon.dir, 'config.json'), JSON.stringify({ limits: { ...LIMITS, txnsDaemonMax: 4 } }));
    process.kill(daemon.pid!, 'SIGHUP');
    await expect.poll(() => daemon.logged('configuration reloaded').length, { timeout: 5_000 }).toBeGreaterThan(0);
    const fourth = await c.beginTransaction();
    await fourth.get('hl/00');
    const fifth = await c.beginTransaction();
    await expect(fifth.get('hl/00')).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED', message: expect.stringMatching(/4 open transactions across all connections/) });
    await open[0].abort();
    const again = await c.beginTransaction();
    await again.get('hl/00');
    for (const txn of [...open.slice(1), fourth, again]) await txn.abort();
  });

  it('are refused at start when under the per-connection maximum', async () => {
    await expect(startDaemon({ config: { limits: { cursorsDaemonMax: 8 } } }))
      .rejects.toThrow(/one connection's open cursors fit under the daemon-wide number/);
  });
});
