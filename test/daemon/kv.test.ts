// Black-box key/value round trips against a real toondbd over its Unix socket: the contract's
// byte-level promises (binary keys, empty values, large values) and survival across restarts.
import { describe, expect, it } from 'vitest';
import { suiteClient } from '../helpers/daemon.js';

describe('kv over IPC', () => {
  const { daemon, client, reconnect } = suiteClient();

  it('puts, gets, checks and deletes a key', async () => {
    expect(await client().get('greeting')).toBeNull();
    expect(await client().exists('greeting')).toBe(false);
    await client().put('greeting', 'hello');
    expect((await client().get('greeting'))?.toString()).toBe('hello');
    expect(await client().exists('greeting')).toBe(true);
    await client().put('greeting', 'hello again');
    expect((await client().get('greeting'))?.toString()).toBe('hello again');
    await client().delete('greeting');
    expect(await client().get('greeting')).toBeNull();
    expect(await client().exists('greeting')).toBe(false);
  });

  it('keeps binary keys with 0x00 bytes and invalid UTF-8 distinct', async () => {
    const keys = [Buffer.from([0]), Buffer.from([0, 0]), Buffer.from([0, 1, 0]), Buffer.from([0xff, 0xfe, 0x00]), Buffer.from([0xc3])];
    for (const [i, key] of keys.entries()) await client().put(key, Buffer.from([i, 0, 255]));
    for (const [i, key] of keys.entries()) expect(await client().get(key)).toEqual(Buffer.from([i, 0, 255]));
  });

  it('returns an empty Buffer, not null, for an empty value', async () => {
    await client().put('empty', Buffer.alloc(0));
    const value = await client().get('empty');
    expect(value).not.toBeNull();
    expect(Buffer.isBuffer(value)).toBe(true);
    expect(value?.length).toBe(0);
    expect(await client().exists('empty')).toBe(true);
  });

  it('round-trips a 1 MiB value byte for byte', async () => {
    const big = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
    await client().put('big', big);
    const back = await client().get('big');
    expect(back?.length).toBe(big.length);
    expect(back?.equals(big)).toBe(true);
  });

  it('answers many pipelined requests, each with its own value', async () => {
    const n = 500;
    await Promise.all(Array.from({ length: n }, (_, i) => client().put(`pipe/${i}`, `v${i}`)));
    const values = await Promise.all(Array.from({ length: n }, (_, i) => client().get(`pipe/${i}`)));
    expect(values.map((v) => v?.toString())).toEqual(Array.from({ length: n }, (_, i) => `v${i}`));
  });

  it('never lets a pipelined read pass an earlier write of the same connection', async () => {
    // Plain reads may run in concurrent engine calls; a read must still see every write that
    // was sent before it on its connection, and none sent after it.
    const pending: Promise<unknown>[] = [];
    const reads: Promise<Buffer | null>[] = [];
    for (let i = 0; i < 600; i++) {
      pending.push(client().put('order/k', String(i)));
      reads.push(client().get('order/k'));
      if (i % 3 === 0) reads.push(client().getBatch(['order/k']).then(([v]) => v));
    }
    await Promise.all(pending);
    const seen = (await Promise.all(reads)).map((v) => Number(v?.toString()));
    let expected = 0;
    for (let r = 0, i = 0; i < 600; i++) {
      expect(seen[r++]).toBe(expected);
      if (i % 3 === 0) expect(seen[r++]).toBe(expected);
      expected = i + 1;
    }
  });

  it('refuses an oversize key with a coded error and keeps the connection usable', async () => {
    const key = Buffer.alloc(client().serverInfo.limits.keyBytesMax + 1, 1);
    await expect(client().put(key, 'x')).rejects.toMatchObject({ code: 'KEY_TOO_LARGE' });
    expect(await client().ping()).toMatchObject({ version: expect.any(String) });
  });

  it('keeps acknowledged data across SIGTERM and restart', async () => {
    await client().put('durable/a', 'alpha');
    await client().put('durable/b', Buffer.alloc(0));
    await client().put('durable/big', Buffer.alloc(1024 * 1024, 9));
    await client().close();
    expect(await daemon().stop('SIGTERM')).toBe(0);
    await daemon().start();
    await reconnect();
    expect((await client().get('durable/a'))?.toString()).toBe('alpha');
    expect((await client().get('durable/b'))?.length).toBe(0);
    expect((await client().get('durable/big'))?.equals(Buffer.alloc(1024 * 1024, 9))).toBe(true);
  });
});
