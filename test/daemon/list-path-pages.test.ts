// listPath examines at most LIST_PATH_STEPS_MAX keys under its prefix per request (a long run of
// keys that are not path names, or of expired keys, held a pool thread or a transaction's lane
// for seconds in one request: 1.2M such keys, 7.4 s), and answers the rest in pages: a `paged`
// request gets `{ children, next }` and goes on from `resume: next`, one that is not paged
// gets BATCH_TOO_LARGE once the listing does not fit one request, and the client library pages
// for its caller, losing and repeating no name.
import { beforeAll, describe, expect, it } from 'vitest';
import { LIST_PATH_STEPS_MAX } from '../../protocol/limits.js';
import { encodePath, pathPrefix } from '../../protocol/paths.js';
import { suiteClient, type TestDaemon } from '../helpers/daemon.js';
import { RawPeer } from '../helpers/raw.js';

const NAMES = ['a', 'k', 'zz'];
const JUNK = LIST_PATH_STEPS_MAX + 500;
const EXPIRING = 3_000;
const prefix = pathPrefix(['p']);

describe('listPath over a run of keys that are not path names', () => {
  const { daemon, client } = suiteClient();

  beforeAll(async () => {
    // Children of p that are not names (0x00 not followed by 0xFF), sorting between `a` and `k`.
    const junk = (i: number) => Buffer.concat([prefix, Buffer.from([0x6a, 0x00, 0x07]), Buffer.from(String(i).padStart(6, '0'))]);
    for (let i = 0; i < JUNK; i += 2000) {
      await client().putBatch(Array.from({ length: Math.min(2000, JUNK - i) }, (_, j) => [junk(i + j), 'x'] as [Buffer, string]));
    }
    // Names that expire, between `k` and `zz` (the sweep may have deleted them by the listing:
    // the engine's tests cover a walk that stops among expired keys).
    const expiring = Array.from({ length: EXPIRING }, (_, i) => [encodePath(['p', `m${String(i).padStart(5, '0')}`]), 'gone'] as [Buffer, string]);
    await client().putBatch(expiring, { ttlSeconds: 0.3 });
    for (const name of NAMES) await client().putPath(['p', name, 'leaf'], 'v');
    await new Promise((resolve) => setTimeout(resolve, 400));
  });

  it('lists every name through the client, a page at a time, in and out of a transaction', async () => {
    expect(await client().listPath(['p'])).toEqual(NAMES);
    expect(await client().listPath(['p'], { limit: 2 })).toEqual(NAMES.slice(0, 2));
    const txn = await client().beginTransaction({ isolation: 'snapshot' });
    expect(await txn.listPath(['p'])).toEqual(NAMES);
    await txn.abort();
  });

  it('answers a paged request with where the listing goes on, and goes on from there', async () => {
    const first = await rawListPath(daemon(), { prefix, paged: true });
    const page = first.result as { children: Buffer[]; next: Buffer | null };
    expect(page.children.map(String)).toEqual(['a']);
    expect(Buffer.isBuffer(page.next)).toBe(true);
    const names: string[] = [];
    let next: Buffer | null = null;
    let pages = 0;
    do {
      const reply = await rawListPath(daemon(), { prefix, paged: true, ...(next === null ? {} : { resume: next }) });
      const result = reply.result as { children: Buffer[]; next: Buffer | null };
      names.push(...result.children.map(String));
      next = result.next;
      pages++;
    } while (next !== null);
    expect(names).toEqual(NAMES);
    expect(pages).toBeGreaterThanOrEqual(2);
    expect(pages).toBeLessThanOrEqual(3);
  });

  it('refuses a request that is not paged once the listing does not fit one, unless a limit ends it first', async () => {
    const [whole, limited] = [await rawListPath(daemon(), { prefix }), await rawListPath(daemon(), { prefix, limit: 1 })];
    expect(whole.error).toMatchObject({ code: 'BATCH_TOO_LARGE' });
    expect(String((whole.error as { message: string }).message)).toContain(`at most ${LIST_PATH_STEPS_MAX} keys`);
    expect((limited.result as Buffer[]).map(String)).toEqual(['a']);
  });
});

// Regression: a page's `next` names the first key still to examine, which may be a key and two
// bytes long (past a child's subtree): the daemon refused it back as `resume` (over
// keyBytesMax), so a listing whose step bound fell on a maximal key could not be finished.
describe('listPath resuming past a maximal key', () => {
  const KEY_BYTES_MAX = 64;
  const { daemon, client } = suiteClient({ config: { limits: { keyBytesMax: KEY_BYTES_MAX } } });

  it('takes back as resume a next longer than keyBytesMax, and refuses one longer still', async () => {
    const small = Array.from({ length: LIST_PATH_STEPS_MAX - 1 }, (_, i) => `k${String(i).padStart(5, '0')}`);
    for (let i = 0; i < small.length; i += 1000) {
      await client().putBatch(small.slice(i, i + 1000).map((key) => [key, 'v'] as [string, string]));
    }
    const maximal = `l${'x'.repeat(KEY_BYTES_MAX - 1)}`; // the step bound's last key
    await client().putBatch([[maximal, 'v'], ['m', 'v']]);
    expect(await client().listPath('')).toEqual([...small, maximal, 'm']);
    const reply = await rawListPath(daemon(), { prefix: Buffer.alloc(0), paged: true, resume: Buffer.alloc(KEY_BYTES_MAX + 3, 0x6c) });
    expect(reply.error).toMatchObject({ code: 'KEY_TOO_LARGE' });
  });
});

/** A listPath's reply on a raw connection (a validation error may come before hello's). */
async function rawListPath(daemon: TestDaemon, request: Record<string, unknown>): Promise<Record<string, unknown>> {
  const peer = await RawPeer.open(daemon.socketPath);
  try {
    peer.hello();
    peer.request({ id: 2, op: 'listPath', ...request });
    return (await peer.waitFor(2)).find((message) => message.id === 2)!;
  } finally {
    peer.close();
  }
}
