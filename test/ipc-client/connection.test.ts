// The multiplexed connection: replies matched by id whatever their order, timeouts that never
// desynchronise later requests, what each pending request fails with when the connection ends,
// write coalescing, and close. (The write-queue bound: write-queue.test.ts.)
import { Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { IpcClient, ToonDBError } from '../../ipc-client/index.js';
import { FakeServer, NO_REPLY, type FakeConnection, type Request } from './fake-server.js';

let server: FakeServer | undefined;
let client: IpcClient | undefined;

afterEach(async () => {
  vi.useRealTimers();
  vi.restoreAllMocks();
  await client?.close();
  await server?.close();
  client = undefined;
  server = undefined;
});

async function setup(script?: (request: Request, connection: FakeConnection) => ReturnType<NonNullable<FakeServer['script']>>,
  timeoutMs?: number, reconnect?: boolean, options: { fakeClock?: boolean } = {}): Promise<{ server: FakeServer; client: IpcClient }> {
  server = await FakeServer.start({ script });
  if (options.fakeClock) fakeClientClock();
  client = await IpcClient.connect(server.path, { timeoutMs, reconnect });
  return { server, client };
}

function settle<T>(promise: Promise<T>): Promise<{ value?: T; error?: ToonDBError }> {
  return promise.then((value) => ({ value }), (error: ToonDBError) => ({ error }));
}

/** A call's outcome, and whether it has settled yet (asked after the pending callbacks ran). */
function track<T>(promise: Promise<T>): { outcome: Promise<{ value?: T; error?: ToonDBError }>; state: () => Promise<'pending' | 'settled'> } {
  let settled = false;
  const outcome = settle(promise).then((result) => ((settled = true), result));
  return { outcome, state: () => new Promise((resolve) => setImmediate(() => resolve(settled ? 'settled' : 'pending'))) };
}

/** Fakes the clock the client's request deadlines use (restored in afterEach), from before it
 * connects, so that every timer of its deadlines is a fake one. The socket I/O and the fake
 * server's polling stay real. */
function fakeClientClock(): void {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
}

/** A script that answers every `op` request with nothing, keeping them in `held` (the model
 * answers the rest). */
function holding(op: string): { script: NonNullable<FakeServer['script']>; held: Request[] } {
  const held: Request[] = [];
  return {
    held,
    script: (request) => {
      if (request.op !== op) return undefined;
      held.push(request);
      return NO_REPLY;
    },
  };
}

describe('multiplexing', () => {
  it('matches out-of-order replies by id', async () => {
    const { script, held } = holding('get');
    const { server, client } = await setup(script);
    const gets = ['a', 'b', 'c', 'd'].map((key) => client.get(key));
    await server.until(() => held.length === 4);
    expect(new Set(held.map((r) => r.id)).size).toBe(4);
    for (const request of [...held].reverse()) {
      server.last.reply(request.id, Buffer.from(`value-of-${Buffer.from(request.key as Uint8Array).toString()}`));
    }
    expect((await Promise.all(gets)).map((v) => v?.toString())).toEqual(['value-of-a', 'value-of-b', 'value-of-c', 'value-of-d']);
  });

  // The client's deadlines run on performance.now() and one setTimeout, both faked from here on
  // (fakeClientClock): a request times out exactly when the test moves the clock past its
  // deadline, and the calls that must succeed afterwards cannot time out, however slow the
  // machine is, because nothing moves the clock while they run.
  it('times a request out with TIMEOUT, drops its late reply, and keeps later requests right', async () => {
    let first: Request | undefined;
    const { server, client } = await setup((request) => {
      if (request.op === 'get' && first === undefined) {
        first = request;
        return NO_REPLY;
      }
      return undefined;
    }, 100, undefined, { fakeClock: true });
    server.store.set('k', Buffer.from('right'));
    const timedOut = track(client.get('slow'));
    await server.until(() => first !== undefined);
    vi.advanceTimersByTime(99);
    expect(await timedOut.state(), 'before its deadline').toBe('pending');
    vi.advanceTimersByTime(1);
    const { error } = await timedOut.outcome;
    expect(error?.code).toBe('TIMEOUT');
    expect(error?.message).toContain('may or may not have been applied');
    // The late reply arrives while the next request is in flight: it must not be taken for it.
    const next = client.get('k');
    server.last.reply(first!.id, Buffer.from('WRONG'));
    expect((await next)?.toString()).toBe('right');
    expect((await client.get('k'))?.toString()).toBe('right');
    expect(client.closed).toBe(false);
  });

  // Regression (review): a first `scan` that timed out left the cursor its late reply opened at
  // the daemon, counted against the connection's cursors until the daemon expired it.
  it('closes the cursor that a timed-out scan opens when its reply comes late', async () => {
    const { script, held: opened } = holding('scan');
    const { server, client } = await setup(script, 100, undefined, { fakeClock: true });
    const iterator = client.scan('p/')[Symbol.asyncIterator]();
    const first = settle(iterator.next());
    await server.until(() => opened.length === 1);
    vi.advanceTimersByTime(100);
    expect((await first).error?.code).toBe('TIMEOUT');
    server.last.reply(opened[0].id, { cursor: 42, entries: [], done: false });
    await server.until(() => server.ops('scanClose').length > 0);
    expect(server.ops('scanClose').map((r) => Number(r.cursor))).toEqual([42]);
    // A late reply of a scan that finished at once leaves nothing to close.
    const finished = client.scan('q/')[Symbol.asyncIterator]();
    const second = settle(finished.next());
    await server.until(() => opened.length === 2);
    vi.advanceTimersByTime(100);
    expect((await second).error?.code).toBe('TIMEOUT');
    server.last.reply(opened[1].id, { cursor: 0, entries: [], done: true });
    expect((await client.ping()).version).toBeTruthy();
    expect(server.ops('scanClose')).toHaveLength(1);
  });

  it('times out many requests with one timer and keeps ids unique', async () => {
    const { server, client } = await setup((request) => (request.op === 'exists' ? NO_REPLY : undefined), 50, undefined, { fakeClock: true });
    const pending = Promise.all(Array.from({ length: 50 }, (_, i) => settle(client.exists(`k${i}`))));
    await server.until(() => server.ops('exists').length === 50);
    expect(vi.getTimerCount(), 'timers for 50 requests in flight').toBe(1);
    vi.advanceTimersByTime(50);
    const results = await pending;
    expect(results.map((r) => r.error?.code)).toEqual(Array(50).fill('TIMEOUT'));
    const ids = server.ops('exists').map((r) => r.id);
    expect(new Set(ids).size).toBe(50);
    expect(await client.get('absent')).toBeNull();
  });

  it('does not time out when timeoutMs is 0', async () => {
    const { script, held } = holding('ping');
    const { server, client } = await setup(script, 0, undefined, { fakeClock: true });
    const ping = track(client.ping());
    await server.until(() => held.length > 0);
    expect(vi.getTimerCount(), 'no deadline is armed').toBe(0);
    vi.advanceTimersByTime(24 * 60 * 60 * 1000);
    expect(await ping.state()).toBe('pending');
    server.last.reply(held[0].id, { version: 'v', timeMs: 1 });
    expect((await ping.outcome).value?.version).toBe('v');
  });

  // What reaches the socket is counted on the client's side: the fake server's 'data' events
  // say nothing (the kernel may merge or split writes, and it reads after the tick anyway).
  // Every write the stream hands to the kernel goes through Socket#_write (one chunk) or
  // Socket#_writev (several, e.g. after cork/uncork).
  it('hands the frames of one tick to the socket in one write, small or large', async () => {
    const { server, client } = await setup();
    const write = vi.spyOn(Socket.prototype, '_write');
    const writev = vi.spyOn(Socket.prototype, '_writev');
    const clientWrites = () => [...write.mock.contexts, ...writev.mock.contexts]
      .filter((socket) => !server.connections.some((connection) => connection.socket === socket)).length;
    // 200 small frames: copied into one buffer.
    await Promise.all(Array.from({ length: 200 }, (_, i) => client.put(`k${i}`, 'v')));
    expect(server.ops('put')).toHaveLength(200);
    expect(clientWrites(), 'writes for 200 small frames of one tick').toBe(1);
    // 4 frames of 1 MiB (past WRITE_COALESCE_BYTES_MAX): written corked, one writev.
    const big = Buffer.alloc(1024 * 1024, 7);
    await Promise.all(Array.from({ length: 4 }, (_, i) => client.put(`big${i}`, big)));
    expect(server.ops('put')).toHaveLength(204);
    expect(clientWrites(), 'writes for 4 large frames of one tick').toBe(2);
    expect(writev.mock.contexts.filter((socket) => !server.connections.some((c) => c.socket === socket))).toHaveLength(1);
    // Calls in two ticks are two writes: the spies do see every write.
    const first = client.put('t1', 'v');
    await new Promise((resolve) => setImmediate(resolve));
    await Promise.all([first, client.put('t2', 'v')]);
    expect(clientWrites(), 'two ticks').toBe(4);
  });

  it('keeps call order on the wire for requests of one tick', async () => {
    const { server, client } = await setup();
    await Promise.all([client.put('a', '1'), client.delete('a'), client.exists('a')]);
    expect(server.requests.slice(1).map((r) => r.op)).toEqual(['put', 'delete', 'exists']);
    expect(server.store.has('a')).toBe(false);
  });

  it('maps daemon errors to coded errors and keeps the connection', async () => {
    const { client } = await setup((request) =>
      request.op === 'get' ? { error: { code: 'IO_ERROR', message: 'disk said no' } } : undefined);
    await expect(client.get('x')).rejects.toMatchObject({ code: 'IO_ERROR', message: 'disk said no' });
    expect(await client.exists('x')).toBe(false);
  });

  it('maps an unknown daemon error code to INTERNAL', async () => {
    const { client } = await setup((request) =>
      request.op === 'get' ? { error: { code: 'BRAND_NEW_CODE', message: 'from the future' } } : undefined);
    const error = (await settle(client.get('x'))).error!;
    expect(error.code).toBe('INTERNAL');
    expect(error.message).toContain('BRAND_NEW_CODE');
  });
});

describe('connection loss', () => {
  it('fails sent requests with UNKNOWN_RESULT, unsent ones with CONNECTION_CLOSED, later ones too (no reconnect)', async () => {
    let seen = 0;
    const { server, client } = await setup((request, connection) => {
      if (request.op !== 'put') return undefined;
      if (++seen === 3) connection.drop();
      return NO_REPLY;
    }, undefined, false);
    const closeEvents: (ToonDBError | null)[] = [];
    client.on('close', (reason) => closeEvents.push(reason));
    const sent = [client.put('a', '1'), client.put('b', '2'), client.put('c', '3')].map(settle);
    const results = await Promise.all(sent);
    expect(results.map((r) => r.error?.code)).toEqual(['UNKNOWN_RESULT', 'UNKNOWN_RESULT', 'UNKNOWN_RESULT']);
    expect(results[0].error?.message).toContain('may or may not have been applied');
    expect(client.closed).toBe(true);
    expect((await settle(client.get('a'))).error?.code).toBe('CONNECTION_CLOSED');
    expect(closeEvents).toHaveLength(1);
    expect(closeEvents[0]?.code).toBe('CONNECTION_CLOSED');
    expect(server.ops('get')).toHaveLength(0);
  });

  it('rejects every pending request with PROTOCOL_ERROR when the daemon sends garbage', async () => {
    const { server, client } = await setup((request) => (request.op === 'hello' ? undefined : NO_REPLY), undefined, false);
    const pending = [settle(client.get('a')), settle(client.get('b')), settle(client.exists('c'))];
    await server.until(() => server.requests.length === 4); // hello + 3
    server.last.socket.write(Buffer.from([0, 0, 0, 3, 0xc1, 0xc1, 0xc1]));
    const results = await Promise.all(pending);
    expect(results.map((r) => r.error?.code)).toEqual(['PROTOCOL_ERROR', 'PROTOCOL_ERROR', 'PROTOCOL_ERROR']);
    expect(client.closed).toBe(true);
    expect((await settle(client.ping())).error?.code).toBe('CONNECTION_CLOSED');
  });

  it('treats an oversized frame prefix as FRAME_TOO_LARGE for every pending request', async () => {
    const { server, client } = await setup((request) => (request.op === 'get' ? NO_REPLY : undefined));
    const pending = settle(client.get('a'));
    await server.until(() => server.ops('get').length === 1);
    server.last.socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    expect((await pending).error?.code).toBe('FRAME_TOO_LARGE');
  });

  it('treats a reply that is not a map as a protocol error', async () => {
    const { server, client } = await setup((request) => (request.op === 'get' ? NO_REPLY : undefined));
    const pending = settle(client.get('a'));
    await server.until(() => server.ops('get').length === 1);
    server.last.socket.write(Buffer.from([0, 0, 0, 1, 0x01]));
    expect((await pending).error?.code).toBe('PROTOCOL_ERROR');
  });

  it('on an id-0 error fails sent requests with UNKNOWN_RESULT and keeps the reason as cause', async () => {
    const { server, client } = await setup((request) => (request.op === 'put' ? NO_REPLY : undefined), undefined, false);
    const errors: ToonDBError[] = [];
    client.on('error', (error) => errors.push(error));
    const pending = settle(client.put('a', '1'));
    await server.until(() => server.ops('put').length === 1);
    server.last.send({ id: 0, error: { code: 'SHUTTING_DOWN', message: 'daemon is shutting down' } });
    const { error } = await pending;
    expect(error?.code).toBe('UNKNOWN_RESULT');
    expect(error?.message).toContain('SHUTTING_DOWN');
    expect((error?.cause as ToonDBError).code).toBe('SHUTTING_DOWN');
    expect(errors.map((e) => e.code)).toEqual(['SHUTTING_DOWN']);
    expect(client.closed).toBe(true);
  });
});

describe('reconnect (the default)', () => {
  it('connects again on the next call after a loss, once for all the calls waiting on it', async () => {
    const { server, client } = await setup((request, connection) => {
      if (request.op === 'put' && Buffer.from(request.key as Uint8Array).toString() === 'doomed') {
        connection.drop();
        return NO_REPLY;
      }
      return undefined;
    });
    const events: string[] = [];
    client.on('disconnect', (reason) => events.push(`disconnect ${reason.code}`));
    client.on('reconnect', (info) => events.push(`reconnect ${info.connectionId}`));
    client.on('close', () => events.push('close'));
    expect(client.serverInfo.connectionId).toBe(7);
    expect((await settle(client.put('doomed', 'x'))).error?.code).toBe('UNKNOWN_RESULT');
    expect(client.connected).toBe(false);
    expect(client.closed).toBe(false);
    await client.put('k', 'v');
    const values = await Promise.all([client.get('k'), client.get('k'), client.exists('k')]);
    expect(values.map(String)).toEqual(['v', 'v', 'true']);
    expect(server.ops('hello')).toHaveLength(2);
    expect(events).toEqual(['disconnect CONNECTION_CLOSED', 'reconnect 8']);
    expect(client.connected).toBe(true);
    expect(client.serverInfo.connectionId).toBe(8);
    // The request that was lost in flight is never sent again.
    expect(server.ops('put').map((r) => Buffer.from(r.key as Uint8Array).toString())).toEqual(['doomed', 'k']);
  });

  it('fails later calls of a transaction or a scan begun on the lost connection, sending nothing', async () => {
    const { server, client } = await setup();
    server.store.set('a', Buffer.from('1'));
    server.store.set('b', Buffer.from('2'));
    const txn = await client.beginTransaction();
    await txn.put('t', 'x');
    const cursor = client.scan('', { batchSize: 1 })[Symbol.asyncIterator]();
    expect((await cursor.next()).value?.[0].toString()).toBe('a');
    server.last.drop();
    await server.until(() => !client.connected);
    const afterLoss = server.requests.length;
    expect((await settle(txn.get('t'))).error?.code).toBe('CONNECTION_CLOSED');
    expect((await settle(txn.commit())).error?.code).toBe('CONNECTION_CLOSED');
    expect((await settle(cursor.next())).error?.code).toMatch(/^(CONNECTION_CLOSED|UNKNOWN_RESULT)$/);
    expect(server.requests.length).toBe(afterLoss);
    // The client itself carries on, with new transactions and scans on the new connection.
    const fresh = await client.beginTransaction();
    await fresh.put('t', 'y');
    await fresh.commit();
    expect(server.store.get('t')?.toString()).toBe('y');
    expect((await client.scan('').toArray()).map(([key]) => key.toString())).toEqual(['a', 'b', 't']);
  });

  it('fails the waiting calls with the connect error when the daemon is gone, and tries again on the next call', async () => {
    const { server, client } = await setup();
    const path = server.path;
    await server.close();
    // Until the client has seen the close, a call would go out on the dead socket (UNKNOWN_RESULT).
    await expect.poll(() => client.connected).toBe(false);
    const attempts = await Promise.all([settle(client.get('a')), settle(client.ping())]);
    expect(attempts.map((r) => r.error?.code)).toEqual(['UNAVAILABLE', 'UNAVAILABLE']);
    expect(attempts[0].error?.message).toContain(path);
    expect(client.closed).toBe(false);
    const second = await settle(client.get('a'));
    expect(second.error?.code).toBe('UNAVAILABLE');
  });

  it('does not reconnect after close(), and emits close once with null', async () => {
    const { server, client } = await setup();
    const closes: (ToonDBError | null)[] = [];
    client.on('close', (reason) => closes.push(reason));
    server.last.drop();
    await server.until(() => !client.connected);
    await client.close();
    await client.close();
    expect((await settle(client.get('a'))).error?.code).toBe('CONNECTION_CLOSED');
    // Review: it resolved (its calls failing), so withTransaction ran its function after close().
    await expect(client.beginTransaction()).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
    let ran = false;
    await expect(client.withTransaction(async () => { ran = true; })).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
    expect(ran).toBe(false);
    expect(server.ops('hello')).toHaveLength(1);
    expect(client.closed).toBe(true);
    expect(closes).toEqual([null]);
  });

  it('closes a connection that a reconnect opens after close() was called', async () => {
    const { server, client } = await setup();
    server.last.drop();
    await server.until(() => !client.connected);
    const waiting = settle(client.get('a'));
    const closing = client.close();
    expect((await waiting).error?.code).toBe('CONNECTION_CLOSED');
    await closing;
    await server.until(() => server.connections.every((connection) => connection.socket.destroyed || connection.socket.readableEnded));
    expect(client.closed).toBe(true);
  });

  it('refuses a reconnect option that is not a boolean', async () => {
    server = await FakeServer.start();
    await expect(IpcClient.connect(server.path, { reconnect: 'yes' as unknown as boolean })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

// Regressions (review): a malformed reply from a buggy daemon must fail its request, never
// crash the process from the socket's read callback or pass as a success.
describe('malformed replies', () => {
  it('an error code that cannot be shown as text fails the request with INTERNAL, not the process', async () => {
    const { server, client } = await setup((request, connection) => {
      if (request.op !== 'get') return undefined;
      connection.send({ id: request.id, error: { code: { toString: null }, message: 'odd' } });
      return NO_REPLY;
    });
    const got = await settle(client.get('k'));
    expect(got.error?.code).toBe('INTERNAL');
    expect(got.error?.message).toContain('unknown error code of type object: odd');
    expect((await client.ping()).version).toBeTruthy(); // the connection carries on
    expect(server.connections).toHaveLength(1);
  });

  it('a reply with neither result nor error fails its request with PROTOCOL_ERROR', async () => {
    const { client } = await setup((request, connection) => {
      if (request.op !== 'put') return undefined;
      connection.send({ id: request.id, reslt: null });
      return NO_REPLY;
    });
    expect((await settle(client.put('k', 'v'))).error?.code).toBe('PROTOCOL_ERROR');
  });
});

describe('close', () => {
  it('waits for in-flight replies, then refuses new calls; close is idempotent', async () => {
    const { script, held } = holding('get');
    const { server, client } = await setup(script);
    const get = client.get('k');
    await server.until(() => held.length > 0);
    const closing = client.close();
    expect(client.closed).toBe(true);
    await expect(client.put('x', 'y')).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
    server.last.reply(held[0].id, Buffer.from('late but fine'));
    expect((await get)?.toString()).toBe('late but fine');
    await closing;
    await client.close();
    await server.until(() => server.last.socket.readableEnded || server.last.socket.destroyed);
  });

  it('closes through Symbol.asyncDispose (await using)', async () => {
    server = await FakeServer.start();
    let escaped: IpcClient;
    {
      await using scoped = await IpcClient.connect(server.path);
      escaped = scoped;
      expect(scoped.closed).toBe(false);
    }
    expect(escaped.closed).toBe(true);
    await expect(escaped.ping()).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
  });

  it('emits close with null after close()', async () => {
    const { client } = await setup();
    const reasons: (ToonDBError | null)[] = [];
    client.on('close', (reason) => reasons.push(reason));
    await client.close();
    expect(reasons).toEqual([null]);
  });

  it('emits close with null after close() even if the daemon hangs up while close() drains', async () => {
    const { script, held } = holding('get');
    const { server, client } = await setup(script);
    const reasons: (ToonDBError | null)[] = [];
    client.on('close', (reason) => reasons.push(reason));
    const get = settle(client.get('k'));
    await server.until(() => held.length > 0);
    const closing = client.close();
    server.last.drop();
    expect((await get).error?.code).toBe('UNKNOWN_RESULT');
    await closing;
    expect(reasons).toEqual([null]);
  });
});
