// Atomic batches, path keys (including segments that contain '/'), listPath, and TTL expiry.
import { describe, expect, it } from 'vitest';
import { pathPrefix } from '../../protocol/paths.js';
import { suiteClient } from '../helpers/daemon.js';

describe('batches, paths and TTL', () => {
  const { daemon, client } = suiteClient();

  it('putBatch / getBatch / deleteBatch keep positions, with null for missing keys', async () => {
    await client().putBatch([['b/1', 'one'], ['b/2', ''], ['b/3', 'three']]);
    const values = await client().getBatch(['b/1', 'missing', 'b/2', 'b/3']);
    expect(values.map((v) => (v === null ? null : v.toString()))).toEqual(['one', null, '', 'three']);
    await client().deleteBatch(['b/1', 'b/3']);
    expect((await client().getBatch(['b/1', 'b/2', 'b/3'])).map((v) => (v === null ? null : v.toString()))).toEqual([null, '', null]);
  });

  it('rejects a whole batch with an invalid item and applies none of it', async () => {
    const tooBig = Buffer.alloc(client().serverInfo.limits.keyBytesMax + 1);
    await expect(client().putBatch([['atomic/1', 'x'], [tooBig, 'y']])).rejects.toMatchObject({ code: 'KEY_TOO_LARGE' });
    expect(await client().get('atomic/1')).toBeNull();
  });

  it('stores path keys and lists child names', async () => {
    await client().putPath('users/alice/name', 'Alice');
    await client().putPath(['users', 'alice', 'email'], 'a@example.com');
    await client().putPath('users/bob/name', 'Bob');
    await client().putPath(['users', 'carol/dave'], 'slash inside a segment');
    expect((await client().getPath(['users', 'alice', 'name']))?.toString()).toBe('Alice');
    expect((await client().getPath('users/bob/name'))?.toString()).toBe('Bob');
    expect(await client().listPath('users/')).toEqual(['alice', 'bob', 'carol/dave']);
    expect(await client().listPath(['users', 'alice'])).toEqual(['email', 'name']);
    // 'carol/dave' as one segment does not collide with the deeper path carol -> dave.
    expect(await client().getPath('users/carol/dave')).toBeNull();
    await client().deletePath('users/bob/name');
    expect(await client().listPath('users')).toEqual(['alice', 'carol/dave']);
  });

  it('lists names only: a key whose bytes there are not a path segment is left out', async () => {
    const under = pathPrefix('mixed');
    await client().putPath('mixed/ok', '1');
    // Keys of any bytes share the key space: not UTF-8, a 0x00 that is neither escape nor
    // separator, and a binary key at the top level.
    await client().put(Buffer.concat([under, Buffer.from([0x01, 0xff])]), 'x');
    await client().put(Buffer.concat([under, Buffer.from('a\x00\x05b', 'latin1')]), 'x');
    await client().put(Buffer.from([0xde, 0xad, 0xbe, 0xef]), 'x');
    expect(await client().listPath('mixed')).toEqual(['ok']);
    expect(await client().listPath('mixed', { limit: 1 })).toEqual(['ok']); // the limit counts names
    expect(await client().listPath('mixed', null)).toEqual(['ok']);
    expect(await client().listPath('')).toContain('mixed');
  });

  it('hides an expired key from every read at once', async () => {
    await client().put('ttl/short', 'soon gone', { ttlSeconds: 1.5 });
    await client().put('ttl/long', 'stays', { ttlSeconds: 3600 });
    expect((await client().get('ttl/short'))?.toString()).toBe('soon gone');
    await new Promise((resolve) => setTimeout(resolve, 1_600));
    expect(await client().get('ttl/short')).toBeNull();
    expect(await client().exists('ttl/short')).toBe(false);
    expect(await client().getBatch(['ttl/short', 'ttl/long'])).toEqual([null, Buffer.from('stays')]);
    expect((await client().scan('ttl/').toArray()).map(([k]) => k.toString())).toEqual(['ttl/long']);
  });

  it('a put without TTL clears an earlier TTL', async () => {
    await client().put('ttl/reset', 'v1', { ttlSeconds: 0.2 });
    await client().put('ttl/reset', 'v2');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await client().get('ttl/reset'))?.toString()).toBe('v2');
  });
});

// Regression: getBatch and listPath replies had no byte bound. Keys may repeat, so a few keys
// naming one large value made a reply over frameBytesMax (the client refused the frame and lost
// its connection), and ten thousand of them made the daemon build 160 GB and die. Both replies
// are now bounded by batchBytesMax (5 bytes counted per item): a getBatch past it is refused
// with BATCH_TOO_LARGE, a listPath's names come a reply's worth at a time (its pages).
describe('batch replies over batchBytesMax', () => {
  const { client } = suiteClient({ config: { limits: { keyBytesMax: 1024, valueBytesMax: 1024, batchBytesMax: 4096 } } });

  it('refuses a getBatch whose values would not fit, and the connection carries on', async () => {
    await client().put('big', Buffer.alloc(1000, 7));
    expect(await client().getBatch(['big', 'big', 'big', 'big'])).toHaveLength(4); // 4 x 1005 bytes
    const bystander = client().get('big');
    const refused = client().getBatch(['big', 'big', 'big', 'big', 'big']);
    await expect(refused).rejects.toMatchObject({ code: 'BATCH_TOO_LARGE', message: expect.stringContaining('getBatch reply') });
    expect((await bystander)?.length).toBe(1000);
    expect(client().closed).toBe(false);
  });

  it('refuses a transaction\'s getBatch alike', async () => {
    await client().put('big', Buffer.alloc(1000, 7));
    const txn = await client().beginTransaction();
    await expect(txn.getBatch(['big', 'big', 'big', 'big', 'big'])).rejects.toMatchObject({ code: 'BATCH_TOO_LARGE' });
    await txn.abort();
  });

  it('lists a directory whose names fill several replies a reply at a time', async () => {
    const names = Array.from({ length: 300 }, (_, i) => `child-${String(i).padStart(4, '0')}`); // 10 + 5 bytes each
    for (let i = 0; i < names.length; i += 100) {
      await Promise.all(names.slice(i, i + 100).map((name) => client().putPath(['dir', name], 'v')));
    }
    expect(await client().listPath('dir')).toEqual(names);
    expect(await client().listPath('dir', { limit: 250 })).toEqual(names.slice(0, 250));
    const txn = await client().beginTransaction();
    expect(await txn.listPath('dir')).toEqual(names);
    await txn.abort();
  });
});

// The client sizes a hand-written request frame by a bound (strings of up to 64 units count 3
// bytes a unit, not measured), so a request may have a bound over frameBytesMax and an exact
// size under it. Such a request must still be sent (the codec sizes it exactly), not refused.
describe('a batch whose size bound passes the frame limit but whose frame does not', () => {
  const limits = {
    frameBytesMax: 128 * 1024, keyBytesMax: 1024, valueBytesMax: 8192, batchItemsMax: 1500, batchBytesMax: 96 * 1024,
    scanBatchItemsMax: 1000, scanBatchBytesMax: 64 * 1024,
  };
  const { client } = suiteClient({ config: { limits } });

  it('is sent and applied whole', async () => {
    // 1400 entries of 20 + 40 ASCII bytes: an ~91 KB frame, bounded at ~259 KB.
    const entries = Array.from({ length: 1400 }, (_, i): [string, string] => [`bound/${String(i).padStart(14, '0')}`, `v${String(i).padStart(39, '0')}`]);
    expect(client().serverInfo.limits.frameBytesMax).toBe(limits.frameBytesMax);
    await client().putBatch(entries);
    const values = await client().getBatch(entries.map(([key]) => key));
    expect(values.map((value) => value?.toString())).toEqual(entries.map(([, value]) => value));
    expect(client().closed).toBe(false);
  });
});

// Regression: the TTL sweep reclaimed at most 1000 keys a second however large the backlog,
// so keys written with TTLs faster than that never gave their space back. A round that finds
// a full 1000 is now followed by the next at once, not at the sweep's next tick (1 s).
//
// No clock is read: the backlog is one putBatch, so every key expires at the same ms and the
// first round that sees one sees all 3500; and the sweep's next tick is marked in the log by
// the idle sweep, which runs on the same 1 s interval, just before it: a transaction used
// right after the first round is expired (txnIdleMsMax 1 ms) and logged at that next tick.
// Every round of the backlog must be logged before that line.
describe('the expired-key sweep', () => {
  const { daemon, client } = suiteClient({ config: { limits: { txnIdleMsMax: 1 } } });

  it('works through a backlog in rounds that follow each other before its next tick', async () => {
    const keys = Array.from({ length: 3_500 }, (_, i) => [`sweep/${i}`, 'v'] as [string, string]);
    await client().putBatch(keys, { ttlSeconds: 0.2 });
    const isRound = (line: { msg: string }) => line.msg === 'reclaimed expired keys';
    await expect.poll(() => daemon().logs.filter(isRound).length, { timeout: 10_000 }).toBeGreaterThan(0);
    const marker = await client().beginTransaction();
    await marker.get('marker');
    const nextTick = () => daemon().logs.findIndex((line) => line.msg === 'expired idle transactions/cursors');
    await expect.poll(nextTick, { timeout: 10_000 }).toBeGreaterThanOrEqual(0);
    const rounds = daemon().logs.slice(0, nextTick()).filter(isRound).map((line) => Number(line.removed));
    expect(rounds, 'rounds logged before the sweep\'s next tick').toEqual([1_000, 1_000, 1_000, 500]);
    expect(daemon().logs.filter(isRound), 'no round after them').toHaveLength(4);
    expect(await client().getBatch(['sweep/0', 'sweep/3499'])).toEqual([null, null]);
  });

  // Regression: in sync mode the sweep's deletes were never fsynced (no reply waits for them),
  // so stats reported them as writes pending until a client wrote again.
  it('has its deletes fsynced in sync mode, though no reply waits for them', async () => {
    expect((await client().stats()).durability).toBe('sync');
    const rounds = () => daemon().logs.filter((line) => line.msg === 'reclaimed expired keys').length;
    const before = rounds();
    await client().put('sweep-sync', 'v', { ttlSeconds: 0.05 });
    await expect.poll(rounds, { timeout: 10_000 }).toBeGreaterThan(before);
    await expect.poll(async () => (await client().stats()).durable.pendingWrites, { timeout: 5_000 }).toBe(0);
  });
});
