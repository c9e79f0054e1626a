// IpcClient.connect: path resolution, the errors a caller sees when there is no daemon, and the
// hello handshake (limits kept, refusals passed through, timeouts).
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_SOCKET_PATH, IpcClient, ToonDBError } from '../../ipc-client/index.js';
import { resolveConnectOptions } from '../../ipc-client/connect.js';
import { createServer } from 'node:net';
import { MessageCodec } from '../../protocol/codec.js';
import { DEFAULT_SERVER_LIMITS, PROTOCOL_VERSION, type ServerLimits } from '../../protocol/limits.js';
import { FakeServer, NO_REPLY } from './fake-server.js';
import { makeTempDir } from '../helpers/temp-dir.js';

let server: FakeServer | undefined;
let client: IpcClient | undefined;
const savedEnv = process.env.TOONDB_SOCKET;

afterEach(async () => {
  await client?.close();
  await server?.close();
  client = undefined;
  server = undefined;
  if (savedEnv === undefined) delete process.env.TOONDB_SOCKET;
  else process.env.TOONDB_SOCKET = savedEnv;
});

describe('IpcClient.connect', () => {
  it('uses $TOONDB_SOCKET when no path is given and sends hello first', async () => {
    server = await FakeServer.start();
    process.env.TOONDB_SOCKET = server.path;
    client = await IpcClient.connect();
    expect(client.socketPath).toBe(server.path);
    const hello = server.requests[0];
    expect(hello).toMatchObject({ op: 'hello', protocol: PROTOCOL_VERSION });
    expect(hello.client).toMatch(/^toondb-node\/\d+\.\d+\.\d+/);
    expect(client.serverInfo).toMatchObject({ protocol: PROTOCOL_VERSION, server: '9.9.9-fake', connectionId: 7 });
  });

  it('falls back to /tmp/toondb.sock when given no path and no (or an empty) $TOONDB_SOCKET', () => {
    delete process.env.TOONDB_SOCKET;
    expect(resolveConnectOptions(undefined).socketPath).toBe('/tmp/toondb.sock');
    process.env.TOONDB_SOCKET = '';
    expect(resolveConnectOptions(undefined).socketPath).toBe('/tmp/toondb.sock');
    expect(DEFAULT_SOCKET_PATH).toBe('/tmp/toondb.sock');
  });

  // Connects to the real default path, so it runs only where nothing is there (a developer
  // machine may run a daemon on it); vitest reports the skip.
  it.skipIf(existsSync(DEFAULT_SOCKET_PATH))('names /tmp/toondb.sock in the error when nothing is there', async () => {
    delete process.env.TOONDB_SOCKET;
    const error = await IpcClient.connect(undefined, { connectTimeoutMs: 1_000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ToonDBError);
    expect((error as ToonDBError).code).toBe('UNAVAILABLE');
    expect((error as ToonDBError).message).toContain('/tmp/toondb.sock');
  });

  it('passes the client name to the daemon', async () => {
    server = await FakeServer.start();
    client = await IpcClient.connect(server.path, { clientName: 'my-app' });
    expect(server.requests[0].client).toMatch(/^my-app \(toondb-node\//);
  });

  it('says UNAVAILABLE, naming the path and the fix, when the socket does not exist', async () => {
    const path = join(makeTempDir('toondb-client-'), 'missing.sock');
    const error = await IpcClient.connect(path).catch((e: unknown) => e) as ToonDBError;
    expect(error).toBeInstanceOf(ToonDBError);
    expect(error.code).toBe('UNAVAILABLE');
    expect(error.message).toBe(`no toondb daemon at ${path} (ENOENT); start one with \`toondbd start\``);
    expect(error.message).not.toContain('\n');
  });

  it('says UNAVAILABLE (ECONNREFUSED) when nothing listens on the path', async () => {
    const dir = makeTempDir('toondb-client-');
    const path = join(dir, 'stale.sock');
    writeFileSync(path, ''); // connect() to a non-listening file is refused, like a stale socket
    const error = await IpcClient.connect(path).catch((e: unknown) => e) as ToonDBError;
    expect(error.code).toBe('UNAVAILABLE');
    expect(error.message).toContain(`no toondb daemon at ${path} (ECONNREFUSED)`);
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a socket path over 103 bytes before connecting', async () => {
    const path = join(makeTempDir('toondb-client-'), 'x'.repeat(120) + '.sock');
    await expect(IpcClient.connect(path)).rejects.toMatchObject({ code: 'SOCKET_PATH_TOO_LONG' });
    // 103 bytes exactly is allowed (and then simply not there).
    const dir = makeTempDir();
    const exact = `${dir}/${'y'.repeat(103 - dir.length - 1)}`;
    expect(Buffer.byteLength(exact)).toBe(103);
    await expect(IpcClient.connect(exact)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('rejects invalid options with INVALID_ARGUMENT', async () => {
    await expect(IpcClient.connect('/tmp/x.sock', { timeoutMs: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(IpcClient.connect('/tmp/x.sock', { connectTimeoutMs: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(IpcClient.connect('/tmp/x.sock', { clientName: 'n'.repeat(300) })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    // A lone surrogate has no UTF-8 form: refused up front, not by the hello's encoder.
    await expect(IpcClient.connect('/tmp/x.sock', { clientName: 'app\ud800' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/well-formed/) });
  });

  it('times out connect + hello after connectTimeoutMs', async () => {
    server = await FakeServer.start({ script: (request) => (request.op === 'hello' ? NO_REPLY : undefined) });
    const started = Date.now();
    const error = await IpcClient.connect(server.path, { connectTimeoutMs: 150 }).catch((e: unknown) => e) as ToonDBError;
    expect(error.code).toBe('TIMEOUT');
    expect(error.message).toContain(server.path);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    await server.until(() => server!.last.socket.destroyed || server!.last.socket.readableEnded);
  });

  // Regression (review against DESIGN.md): the hello was bounded by the request timeout too,
  // so timeoutMs below the daemon's hello latency made every connect fail TIMEOUT.
  it('bounds the hello by connectTimeoutMs only; requests after it by timeoutMs', async () => {
    server = await FakeServer.start({
      script: (request, connection) => {
        if (request.op === 'hello') {
          setTimeout(() => connection.send({ id: request.id, ...server!.model(request) }), 80);
          return NO_REPLY;
        }
        return request.op === 'get' ? NO_REPLY : undefined;
      },
    });
    client = await IpcClient.connect(server.path, { timeoutMs: 20, connectTimeoutMs: 5_000 });
    const error = await client.get('k').catch((e: unknown) => e) as ToonDBError;
    expect(error.code).toBe('TIMEOUT');
    expect(error.message).toMatch(/within 20 ms/);
  });

  it('passes a connection-level refusal (id 0) through with its own code', async () => {
    server = await FakeServer.start({
      script: (_request, connection) => {
        connection.send({ id: 0, error: { code: 'TOO_MANY_CONNECTIONS', message: 'daemon already serves 1 connections' } });
        connection.socket.end();
        return NO_REPLY;
      },
    });
    const error = await IpcClient.connect(server.path).catch((e: unknown) => e) as ToonDBError;
    expect(error.code).toBe('TOO_MANY_CONNECTIONS');
    expect(error.message).toContain('1 connections');
  });

  it('keeps a refusal the daemon sends at accept, before the client has read anything', async () => {
    const dir = makeTempDir('toondb-client-');
    const path = join(dir, 'refuses.sock');
    const refusing = createServer((socket) => {
      // Read (and drop) whatever the client sends: the client's hello can arrive before it
      // reads the refusal, and bytes nobody reads keep this socket from seeing the client's
      // close, so refusing.close() below would wait for ever.
      socket.resume();
      socket.end(new MessageCodec().encode({ id: 0, error: { code: 'TOO_MANY_CONNECTIONS', message: 'at accept' } }));
    });
    await new Promise<void>((resolve) => refusing.listen(path, resolve));
    try {
      const error = await IpcClient.connect(path).catch((e: unknown) => e) as ToonDBError;
      expect(error.code).toBe('TOO_MANY_CONNECTIONS');
      expect(error.message).toBe('at accept');
    } finally {
      await new Promise((resolve) => refusing.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports VERSION_MISMATCH from the daemon', async () => {
    server = await FakeServer.start({
      script: (request) => (request.op === 'hello' ? { error: { code: 'VERSION_MISMATCH', message: 'protocol 1 not supported' } } : undefined),
    });
    await expect(IpcClient.connect(server.path)).rejects.toMatchObject({ code: 'VERSION_MISMATCH' });
  });

  it('says UNAVAILABLE when the daemon hangs up during the handshake', async () => {
    server = await FakeServer.start({
      script: (_request, connection) => {
        connection.drop();
        return NO_REPLY;
      },
    });
    const error = await IpcClient.connect(server.path).catch((e: unknown) => e) as ToonDBError;
    expect(error.code).toBe('UNAVAILABLE');
    expect(error.message).toContain('during the handshake');
  });

  it('says UNAVAILABLE at once, not TIMEOUT, when the daemon hangs up before the handshake starts', async () => {
    // The hang-up lands while the client checks who serves the socket, before it has a
    // Connection listening for 'close': each attempt must still fail at once.
    const dir = makeTempDir('toondb-client-');
    const path = join(dir, 'hangs-up.sock');
    const hangingUp = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => hangingUp.listen(path, resolve));
    try {
      const codes: string[] = [];
      for (let attempt = 0; attempt < 20; attempt++) {
        const error = await IpcClient.connect(path, { connectTimeoutMs: 3000 }).catch((e: unknown) => e) as ToonDBError;
        codes.push(error.code);
      }
      expect(new Set(codes)).toEqual(new Set(['UNAVAILABLE']));
    } finally {
      await new Promise((resolve) => hangingUp.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('takes null options as no options', async () => {
    server = await FakeServer.start();
    client = await IpcClient.connect(server.path, null);
    expect(client.closed).toBe(false);
  });

  it('keeps the announced limits, filling in any the daemon did not send', async () => {
    server = await FakeServer.start();
    // An older or leaner daemon that announces only two limits.
    server.limits = { keyBytesMax: 10, valueBytesMax: 20 } as unknown as ServerLimits;
    client = await IpcClient.connect(server.path);
    expect(Object.keys((server.model({ id: 1, op: 'hello' }) as { result: { limits: object } }).result.limits)).toEqual(['keyBytesMax', 'valueBytesMax']);
    expect(client.serverInfo.limits).toEqual({ ...DEFAULT_SERVER_LIMITS, keyBytesMax: 10, valueBytesMax: 20 });
    // The announced ones are enforced by the client before sending.
    await expect(client.put('k'.repeat(11), 'v')).rejects.toMatchObject({ code: 'KEY_TOO_LARGE' });
    expect(server.ops('put')).toHaveLength(0);
  });
});
