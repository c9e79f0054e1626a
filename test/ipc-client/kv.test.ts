// Data and admin calls: what goes on the wire, what comes back (bytes, nulls, bigints), and the
// client-side limit checks that refuse a request without sending it.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { encodePath, pathPrefix } from '../../protocol/paths.js';
import { FakeServer } from './fake-server.js';

let server: FakeServer;
let client: IpcClient;

beforeEach(async () => {
  server = await FakeServer.start({ limits: { keyBytesMax: 8, valueBytesMax: 16, batchItemsMax: 3, batchBytesMax: 40, scanBatchItemsMax: 5 } });
  client = await IpcClient.connect(server.path);
});

afterEach(async () => {
  await client.close();
  await server.close();
});

describe('key/value calls', () => {
  it('sends keys and values as bytes (strings as UTF-8) and reads them back', async () => {
    await client.put('k1', 'héllo');
    await client.put(new Uint8Array([0, 1, 0xff]), new Uint8Array([9, 8]));
    const put = server.ops('put')[0];
    expect(Buffer.isBuffer(put.key)).toBe(true);
    expect(put.value).toEqual(Buffer.from('héllo', 'utf8'));
    expect((await client.get('k1'))?.toString()).toBe('héllo');
    expect(await client.get(Buffer.from([0, 1, 0xff]))).toEqual(Buffer.from([9, 8]));
    expect(await client.get('absent')).toBeNull();
  });

  it('sends string keys and values as the bin of their UTF-8 bytes, also when the codec writes the request', async () => {
    await client.getBatch(['é1', 'ü2']);
    const txn = await client.beginTransaction();
    await txn.put('ß', 'wert'); // a transaction field: the codec path
    await txn.get('ß');
    await txn.getBatch(['ß', 'x']);
    await txn.abort();
    const sent = [...server.ops('getBatch'), ...server.ops('put'), ...server.ops('get')];
    expect(sent).toHaveLength(4);
    for (const request of sent) {
      for (const bytes of [request.key, request.value, ...((request.keys as unknown[]) ?? [])].filter((b) => b !== undefined)) {
        expect(Buffer.isBuffer(bytes), `${String(request.op)} sent ${typeof bytes}`).toBe(true);
      }
    }
    expect(server.ops('getBatch')[0].keys).toEqual([Buffer.from('é1'), Buffer.from('ü2')]);
    expect(server.ops('put')[0].key).toEqual(Buffer.from('ß'));
  });

  it('returns an empty Buffer for an empty value, not null', async () => {
    await client.put('empty', '');
    const value = await client.get('empty');
    expect(value).not.toBeNull();
    expect(value?.length).toBe(0);
    expect(await client.exists('empty')).toBe(true);
  });

  it('delete and exists', async () => {
    await client.put('d', 'x');
    expect(await client.exists('d')).toBe(true);
    await client.delete('d');
    expect(await client.exists('d')).toBe(false);
    expect(await client.get('d')).toBeNull();
  });

  it('sends ttlSeconds only when given, and checks it', async () => {
    await client.put('t1', 'x', { ttlSeconds: 1.5 });
    await client.put('t2', 'x');
    const [withTtl, without] = server.ops('put');
    expect(withTtl.ttlSeconds).toBe(1.5);
    expect('ttlSeconds' in without).toBe(false);
    await expect(client.put('t3', 'x', { ttlSeconds: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(client.put('t3', 'x', { ttlSeconds: Number.NaN })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(server.ops('put')).toHaveLength(2);
  });

  it('batches round-trip in order, with nulls for absent keys', async () => {
    await client.putBatch([['a', '1'], ['b', '']]);
    expect(await client.getBatch(['a', 'zz', 'b'])).toEqual([Buffer.from('1'), null, Buffer.alloc(0)]);
    await client.deleteBatch(['a', 'b']);
    expect(await client.getBatch(['a', 'b'])).toEqual([null, null]);
    await client.putBatch([['c', '3']], { ttlSeconds: 5 });
    expect(server.ops('putBatch')[1].ttlSeconds).toBe(5);
  });

  it('putBatch sends string and Buffer entries as bin, on both frame paths, and copies the caller\'s array', async () => {
    const entries: [string | Buffer, string | Buffer][] = [['s/é', 'ü'], [Buffer.from('s/b'), Buffer.from([0, 255])], ['s/c', Buffer.alloc(0)]];
    const sent = client.putBatch(entries);
    entries.length = 0; // reused before the frame is written (the write happens in a microtask)
    entries.push(['s/x', 'changed']);
    await sent;
    await client.putBatch([['s/t', 'é']], { ttlSeconds: 5 }); // with a ttl: encoded by the codec
    expect(await client.getBatch(['s/é', 's/b', 's/c'])).toEqual([Buffer.from('ü'), Buffer.from([0, 255]), Buffer.alloc(0)]);
    expect(await client.getBatch(['s/x', 's/t'])).toEqual([null, Buffer.from('é')]);
    for (const request of server.ops('putBatch')) {
      for (const [key, value] of request.entries as unknown[][]) expect(Buffer.isBuffer(key) && Buffer.isBuffer(value)).toBe(true);
    }
  });
});

describe('client-side limit checks use the limits from hello', () => {
  it('refuses with the daemon codes and sends nothing', async () => {
    const before = server.requests.length;
    await expect(client.put('123456789', 'v')).rejects.toMatchObject({ code: 'KEY_TOO_LARGE' });
    // Strings are measured in UTF-8 bytes: 5 characters, 10 bytes.
    await expect(client.get('ééééé')).rejects.toMatchObject({ code: 'KEY_TOO_LARGE', message: expect.stringContaining('10 bytes') });
    await expect(client.getBatch(['a', 'ééééé'])).rejects.toMatchObject({ code: 'KEY_TOO_LARGE' });
    await expect(client.put('k', 'é'.repeat(9))).rejects.toMatchObject({ code: 'VALUE_TOO_LARGE' });
    await expect(client.putBatch([['k', 'v'], ['k2', 'é'.repeat(9)]])).rejects.toMatchObject({ code: 'VALUE_TOO_LARGE', message: expect.stringContaining('entries[1][1]') });
    await expect(client.putBatch([['ééééé', 'v']])).rejects.toMatchObject({ code: 'KEY_TOO_LARGE', message: expect.stringContaining('entries[0][0]') });
    await expect(client.get(Buffer.alloc(9))).rejects.toMatchObject({ code: 'KEY_TOO_LARGE' });
    await expect(client.put('k', 'x'.repeat(17))).rejects.toMatchObject({ code: 'VALUE_TOO_LARGE' });
    await expect(client.put('', 'v')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(client.get(42 as unknown as string)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(client.exists(null as unknown as string)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(client.delete({} as unknown as string)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(client.put('k', 7 as unknown as string)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(client.put('k', 'v', { ttlSeconds: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(client.getBatch(['a', 'b', 'c', 'd'])).rejects.toMatchObject({ code: 'BATCH_TOO_LARGE' });
    await expect(client.putBatch([['a', 'x'.repeat(16)], ['b', 'x'.repeat(16)], ['c', 'x'.repeat(16)]]))
      .rejects.toMatchObject({ code: 'BATCH_TOO_LARGE' });
    // Key checked before batch bytes, as the daemon does.
    await expect(client.putBatch([['a', 'v'], ['123456789', 'v']])).rejects.toMatchObject({ code: 'KEY_TOO_LARGE' });
    await expect(client.scan('123456789').toArray()).rejects.toMatchObject({ code: 'KEY_TOO_LARGE' });
    await expect(client.scan('a', { batchSize: 6 }).toArray()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(server.requests.length).toBe(before);
    await expect(client.put('12345678', 'x'.repeat(16))).resolves.toBeUndefined(); // exactly at the limits
    await expect(client.put('1234567é', 'v')).rejects.toMatchObject({ code: 'KEY_TOO_LARGE' }); // 8 units, 9 bytes
  });

  // Regression: a string with a lone surrogate was written as the UTF-8 of U+FFFD in its
  // place, so 'a\uD800' read and wrote the key of 'a\uFFFD' without a word.
  it('refuses strings with a lone surrogate as keys, values and bounds, and sends nothing', async () => {
    const before = server.requests.length;
    const lone = expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/well-formed Unicode/) });
    await expect(client.put('a\uD800', 'v')).rejects.toEqual(lone);
    await expect(client.get('\uDC00b')).rejects.toEqual(lone);
    await expect(client.put('k', 'v\uD800')).rejects.toEqual(lone);
    await expect(client.putBatch([['a', 'v'], ['b', '\uDFFF']])).rejects.toEqual(expect.objectContaining({ message: expect.stringContaining('entries[1][1]') }));
    await expect(client.getBatch(['a', '\uD83D'])).rejects.toEqual(expect.objectContaining({ message: expect.stringContaining('keys[1]') }));
    await expect(client.scan('p\uD800').toArray()).rejects.toEqual(lone);
    const txn = await client.beginTransaction();
    await expect(txn.put('t\uD800', 'v')).rejects.toEqual(lone);
    await txn.abort();
    expect(server.requests.filter((r) => r.op !== 'begin' && r.op !== 'abort').length).toBe(before);
    await expect(client.put('🔑', 'é🔑')).resolves.toBeUndefined(); // surrogate pairs are fine
  });

  it('counts batch bytes in UTF-8: a string bound over the limit is then measured', async () => {
    // 'é' is 2 bytes: at 3 bytes per unit these entries would be 54 bytes, measured they are 33.
    const fits: [string, string][] = [['a', 'ééééé'], ['b', 'ééééé'], ['c', 'ééééé']];
    const sent = server.ops('putBatch').length;
    await expect(client.putBatch(fits)).resolves.toBeUndefined();
    expect(server.ops('putBatch').length).toBe(sent + 1);
    // Measured 45 bytes: over the limit of 40.
    await expect(client.putBatch([['a', 'ééééééé'], ['b', 'ééééééé'], ['c', 'ééééééé']]))
      .rejects.toMatchObject({ code: 'BATCH_TOO_LARGE' });
    await expect(client.getBatch(['éééé', 'éééé', 'éééé'])).resolves.toHaveLength(3);
    expect(server.ops('putBatch').length).toBe(sent + 1);
  });
});

describe('paths', () => {
  it('encodes paths with the protocol encoding and decodes listPath children', async () => {
    await client.putPath('u/al', 'A');
    await client.putPath(['u', 'bo'], 'B');
    expect(server.ops('put')[0].key).toEqual(encodePath(['u', 'al']));
    expect((await client.getPath(['u', 'al']))?.toString()).toBe('A');
    expect(await client.listPath('u/')).toEqual(['al', 'bo']);
    expect(server.ops('listPath')[0].prefix).toEqual(pathPrefix('u'));
    await client.deletePath('u/al');
    expect(await client.getPath('u/al')).toBeNull();
    expect(await client.listPath(['u'])).toEqual(['bo']);
  });

  it('refuses a path whose encoded key exceeds keyBytesMax', async () => {
    await expect(client.putPath('abcd/efgh', 'x')).rejects.toMatchObject({ code: 'KEY_TOO_LARGE' });
    await expect(client.getPath('')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('admin calls', () => {
  it('ping measures latency and reports the daemon version', async () => {
    const ping = await client.ping();
    expect(ping.version).toBe('9.9.9-fake');
    expect(ping.latencyMs).toBeGreaterThanOrEqual(0);
  });

  it('checkpoint returns the lsn as bigint', async () => {
    expect(await client.checkpoint()).toEqual({ lsn: 42n, durationMs: 3 });
  });

  it('stats converts the 64-bit fields to bigint whatever width they came in', async () => {
    server.script = (request) => (request.op === 'stats' ? {
      result: {
        version: '9.9.9', pid: 1, uptimeMs: 5, engine: { approximateKeys: 3, seqno: 17 },
        checkpoint: { last: { atMs: 1, lsn: 99, durationMs: 2 } }, transactions: { active: 0 },
      },
    } : undefined);
    const stats = await client.stats();
    expect(stats.engine.seqno).toBe(17n);
    expect(stats.checkpoint.last?.lsn).toBe(99n);
    expect(stats.engine.approximateKeys).toBe(3);
    expect(stats.transactions.active).toBe(0);
  });

  it('a malformed reply fails that call with PROTOCOL_ERROR', async () => {
    server.script = (request) => (request.op === 'checkpoint' ? { result: { lsn: 'soon' } } : undefined);
    await expect(client.checkpoint()).rejects.toMatchObject({ code: 'PROTOCOL_ERROR' });
    server.script = (request) => (request.op === 'get' ? { result: 'not bytes' } : undefined);
    await expect(client.get('k')).rejects.toMatchObject({ code: 'PROTOCOL_ERROR' });
    // Mapped as the reply settles: a result of the wrong length rejects that call alone.
    server.script = (request) => (request.op === 'getBatch' ? { result: [Buffer.from('v')] } : undefined);
    const [short, next] = await Promise.allSettled([client.getBatch(['a', 'b']), client.checkpoint()]);
    expect(short).toMatchObject({ status: 'rejected', reason: { code: 'PROTOCOL_ERROR' } });
    expect(next.status).toBe('fulfilled');
    // Scan batches, in the shape the fast reader takes (it checks the entries) and in others.
    const batches = [
      { cursor: 0, entries: [], done: false },
      { cursor: 5, entries: [['k', Buffer.from('v')]], done: false },
      { cursor: 5, entries: [[Buffer.from('k')]], done: true },
    ];
    for (const batch of batches) {
      server.script = (request) => (request.op === 'scan' ? { result: batch } : undefined);
      await expect(client.scan('p').toArray(), JSON.stringify(batch)).rejects.toMatchObject({ code: 'PROTOCOL_ERROR' });
    }
  });

  it('shutdown sends the shutdown op', async () => {
    server.script = (request) => (request.op === 'shutdown' ? { result: null } : undefined);
    await client.shutdown();
    expect(server.ops('shutdown')).toHaveLength(1);
  });
});
