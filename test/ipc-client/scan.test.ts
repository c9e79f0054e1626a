// Scans: cursors are pulled lazily (one batch held at a time), closed when the consumer stops
// early, and every iteration starts a fresh cursor.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { FakeServer, NO_REPLY } from './fake-server.js';

let server: FakeServer;
let client: IpcClient;

beforeEach(async () => {
  server = await FakeServer.start();
  client = await IpcClient.connect(server.path);
  for (let i = 0; i < 10; i++) server.store.set(`s/${i}`, Buffer.from(`v${i}`));
  server.store.set('t/other', Buffer.from('x'));
});

afterEach(async () => {
  await client.close();
  await server.close();
});

const keys = (entries: [Buffer, Buffer][]) => entries.map(([k]) => k.toString());

describe('scan', () => {
  // (Audit: this was named "pulls the next batch only once the current one is drained" and
  // read the server's count before the prefetch could arrive; the client prefetches one.)
  it('sends nothing until iterated, then asks for one batch ahead of the consumer, never more', async () => {
    const scan = client.scan('s/', { batchSize: 3 });
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(server.ops('scan')).toHaveLength(0);
    const seen: string[] = [];
    const iterator = scan[Symbol.asyncIterator]();
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      const [key, value] = next.value;
      seen.push(`${key.toString()}=${value.toString()}`);
      if (seen.length === 1) {
        // Batch 1 (s/0-s/2) is being consumed: batch 2's scanNext goes out, batch 3's does not.
        await server.until(() => server.ops('scanNext').length === 1);
        await new Promise((resolve) => setTimeout(resolve, 20));
        expect(server.ops('scanNext')).toHaveLength(1);
      }
    }
    expect(seen).toEqual(Array.from({ length: 10 }, (_, i) => `s/${i}=v${i}`));
    expect(server.ops('scanNext')).toHaveLength(3); // s/3-5, s/6-8, s/9
    expect(server.ops('scan')[0]).toMatchObject({ prefix: Buffer.from('s/'), batchSize: 3 });
    expect(server.ops('scanClose')).toHaveLength(0); // finished cursors need no close
  });

  it('sends scanClose when the loop breaks early, pulls at most one batch ahead, and never again', async () => {
    for await (const [key] of client.scan('s/', { batchSize: 2 })) {
      if (key.toString() === 's/2') break;
    }
    await server.until(() => server.ops('scanClose').length === 1);
    // Batch 2 (s/2, s/3) was prefetched while batch 1 was consumed, and batch 3 while batch 2 was.
    expect(server.ops('scanNext')).toHaveLength(2);
    expect(server.ops('scanClose')[0].cursor).toBe(server.ops('scanNext')[0].cursor);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(server.ops('scanNext')).toHaveLength(2);
  });

  it('inside a transaction asks for each batch only when the consumer reaches it', async () => {
    const txn = await client.beginTransaction();
    const iterator = txn.scan('s/', { batchSize: 2 })[Symbol.asyncIterator]();
    expect((await iterator.next()).value?.[0].toString()).toBe('s/0');
    expect((await iterator.next()).value?.[0].toString()).toBe('s/1');
    // Outside a transaction the next batch would be on its way by now (the test above).
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(server.ops('scanNext')).toHaveLength(0);
    expect((await iterator.next()).value?.[0].toString()).toBe('s/2');
    expect(server.ops('scanNext')).toHaveLength(1);
    await iterator.return?.();
    await txn.abort();
  });

  it('closes the cursor when the loop body throws', async () => {
    await expect((async () => {
      for await (const _entry of client.scan('s/', { batchSize: 2 })) throw new Error('consumer failed');
    })()).rejects.toThrow('consumer failed');
    await server.until(() => server.ops('scanClose').length === 1);
  });

  it('a failing scanClose causes no unhandled rejection', async () => {
    server.script = (request) => (request.op === 'scanClose' ? { error: { code: 'CURSOR_NOT_FOUND', message: 'gone' } } : undefined);
    const iterator = client.scan('s/', { batchSize: 2 })[Symbol.asyncIterator]();
    expect((await iterator.next()).done).toBe(false);
    expect(await iterator.return?.()).toEqual({ done: true, value: undefined });
    await server.until(() => server.ops('scanClose').length === 1);
    expect(await iterator.next()).toEqual({ done: true, value: undefined });
    await new Promise((resolve) => setTimeout(resolve, 10)); // vitest fails the file on an unhandled rejection
  });

  it('takes null options as no options', async () => {
    expect(keys(await client.scan('s/', null).toArray())).toHaveLength(10);
    expect(keys(await client.scanRange('s/2', 's/4', null).toArray())).toEqual(['s/2', 's/3']);
  });

  it('toArray collects everything, honouring limit and reverse', async () => {
    expect(keys(await client.scan('s/').toArray())).toHaveLength(10);
    expect(keys(await client.scan('s/', { limit: 3, reverse: true }).toArray())).toEqual(['s/9', 's/8', 's/7']);
    expect(server.ops('scan')[1]).toMatchObject({ limit: 3, reverse: true });
  });

  it('each for-await starts a fresh scan', async () => {
    const scan = client.scan('t/');
    expect(keys(await scan.toArray())).toEqual(['t/other']);
    server.store.set('t/new', Buffer.from('y'));
    expect(keys(await scan.toArray())).toEqual(['t/new', 't/other']);
    expect(server.ops('scan')).toHaveLength(2);
  });

  it('scanRange sends [start, end) and omits open bounds', async () => {
    expect(keys(await client.scanRange('s/3', 's/6').toArray())).toEqual(['s/3', 's/4', 's/5']);
    expect(keys(await client.scanRange(null, 's/2').toArray())).toEqual(['s/0', 's/1']);
    expect(keys(await client.scanRange('t', undefined).toArray())).toEqual(['t/other']);
    const [, open, openEnd] = server.ops('scan');
    expect('start' in open).toBe(false);
    expect('end' in openEnd).toBe(false);
    expect('prefix' in open).toBe(false);
  });

  it('an error mid-scan rejects the iteration', async () => {
    server.script = (request) => (request.op === 'scanNext' ? { error: { code: 'CURSOR_NOT_FOUND', message: 'expired' } } : undefined);
    const seen: string[] = [];
    await expect((async () => {
      for await (const [key] of client.scan('s/', { batchSize: 4 })) seen.push(key.toString());
    })()).rejects.toMatchObject({ code: 'CURSOR_NOT_FOUND' });
    expect(seen).toHaveLength(4);
    expect(server.ops('scanClose')).toHaveLength(0); // the daemon already forgot it
  });

  // A batch that is not done may hold fewer entries than batchSize, even none: the daemon bounds
  // the entries one batch steps through, so a run of expired keys not yet swept ends batches
  // early. The iterator asks again until a batch is done, in and out of a transaction.
  it('keeps pulling through short and empty batches that are not done', async () => {
    const pair = (i: number): [Buffer, Buffer] => [Buffer.from(`s/${i}`), Buffer.from(`v${i}`)];
    const batches: [Buffer, Buffer][][] = [[], [pair(0)], [], [], [pair(1), pair(2)]];
    let replies = 0;
    server.script = (request) => {
      if (request.op !== 'scan' && request.op !== 'scanNext') return undefined;
      const entries = batches[replies++ % batches.length];
      const done = replies % batches.length === 0;
      return { result: { cursor: done ? 0 : 7, entries, done } };
    };
    expect(keys(await client.scan('s/', { batchSize: 5 }).toArray())).toEqual(['s/0', 's/1', 's/2']);
    expect(server.ops('scanNext').map((request) => request.cursor)).toEqual([7, 7, 7, 7]);
    const txn = await client.beginTransaction();
    expect(keys(await txn.scan('s/', { batchSize: 5 }).toArray())).toEqual(['s/0', 's/1', 's/2']);
    await txn.abort();
    expect(server.ops('scanNext')).toHaveLength(8);
    expect(server.ops('scanClose')).toHaveLength(0);
  });

  it('overlapping next() calls keep entries in order', async () => {
    const iterator = client.scan('s/', { batchSize: 1 })[Symbol.asyncIterator]();
    const results = await Promise.all(Array.from({ length: 11 }, () => iterator.next()));
    expect(results.slice(0, 10).map((r) => (r.value as [Buffer, Buffer])[0].toString())).toEqual(Array.from({ length: 10 }, (_, i) => `s/${i}`));
    expect(results[10].done).toBe(true);
  });

  // The scanNext itself fails UNKNOWN_RESULT; the iteration reports the cursor lost with its
  // connection (review: "may have been applied" meant nothing for a read, and the README says a
  // lost connection's scans fail CONNECTION_CLOSED).
  it('close() gives a stalled scanNext the drain bound, then fails the scan CONNECTION_CLOSED', async () => {
    server.script = (request) => (request.op === 'scanNext' ? NO_REPLY : undefined);
    const iterator = client.scan('s/', { batchSize: 2 })[Symbol.asyncIterator]();
    await iterator.next();
    await iterator.next();
    // The first batch's arrival sent the next scanNext ahead (read-ahead): that one stalls.
    await server.until(() => server.ops('scanNext').length === 1);
    const third = iterator.next();
    await client.ping(); // answered after any request sent before it: no second scanNext went out
    expect(server.ops('scanNext')).toHaveLength(1);
    await client.close().catch(() => undefined);
    await expect(third).rejects.toMatchObject({ code: 'CONNECTION_CLOSED', cause: { code: 'UNKNOWN_RESULT' } });
  }, 10_000);
});
