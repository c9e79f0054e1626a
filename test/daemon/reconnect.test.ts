// One IpcClient across daemon restarts: a real toondbd is SIGKILLed and restarted (and stopped
// gracefully and restarted) under a connected client, which must carry on by itself: calls fail
// while no daemon runs (UNAVAILABLE, one connect attempt each), the next call after the restart
// connects again and sees every acknowledged write, and what lived on the old connection (an
// open transaction) is gone with it rather than answered by the new one.
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { IpcClient, type ToonDBError } from '../../ipc-client/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { CLIENT_MODULE } from '../helpers/paths.js';

/** A client process with a 'reconnect' listener that throws: says when it is connected, waits
 * for a line on stdin (the daemon restarted), then makes a call that reconnects and prints how
 * it went and what reached process 'uncaughtException'. */
const THROWING_LISTENER = `
const { IpcClient } = await import(process.env.CLIENT_MODULE);
const caught = [];
process.on('uncaughtException', (error) => caught.push(error.message));
const client = await IpcClient.connect(process.env.SOCKET);
client.on('reconnect', () => { throw new Error('a bug in a listener'); });
await client.put('before', '1');
process.stdout.write('ready\\n');
await new Promise((resolve) => process.stdin.once('data', resolve));
let result;
try { await client.put('after', '2'); result = 'ok'; } catch (error) { result = error.code ?? error.message; }
await new Promise((resolve) => setTimeout(resolve, 50));
process.stdout.write(JSON.stringify({ result, caught }) + '\\n');
await client.close();
process.stdin.destroy();
`;

let daemon: TestDaemon | undefined;
let client: IpcClient | undefined;

afterEach(async () => {
  await client?.close();
  await daemon?.dispose();
  client = undefined;
  daemon = undefined;
});

function settle<T>(promise: Promise<T>): Promise<{ value?: T; error?: ToonDBError }> {
  return promise.then((value) => ({ value }), (error: ToonDBError) => ({ error }));
}

describe('a client across daemon restarts', () => {
  // Review: a 'reconnect' listener that threw made the calls waiting on the reconnect reject
  // with its plain Error (the new connection kept); it now surfaces on its own, uncaught.
  it('keeps a throwing event listener out of the calls that reconnect', async () => {
    daemon = await startDaemon();
    const child = execa('node', ['--input-type=module', '-e', THROWING_LISTENER], {
      env: { CLIENT_MODULE, SOCKET: daemon.socketPath }, stdin: 'pipe', reject: false,
    });
    const lines: string[] = [];
    child.stdout!.on('data', (chunk: Buffer) => lines.push(...chunk.toString().split('\n').filter(Boolean)));
    await expect.poll(() => lines.includes('ready'), { timeout: 10_000 }).toBe(true);
    await daemon.kill();
    await daemon.start();
    child.stdin!.write('go\n');
    await child;
    expect(JSON.parse(lines.at(-1)!)).toEqual({ result: 'ok', caught: ['a bug in a listener'] });
  });

  it('after SIGKILL: fails while the daemon is down, then reconnects and reads what was acknowledged', async () => {
    daemon = await startDaemon({ args: ['--durability', 'sync'] });
    client = await IpcClient.connect(daemon.socketPath);
    const events: string[] = [];
    client.on('disconnect', (reason) => events.push(`disconnect ${reason.code}`));
    client.on('reconnect', () => events.push('reconnect'));
    const firstHello = client.serverInfo;
    await client.put('kept', 'before the crash');
    const txn = await client.beginTransaction();
    await txn.put('uncommitted', 'never');
    await client.putBatch(Array.from({ length: 8 }, (_, i) => [`scan/${i}`, 'v'] as [string, string]));
    const scan = client.scan('scan/', { batchSize: 2 })[Symbol.asyncIterator]();
    expect((await scan.next()).done).toBe(false); // its next batch is asked for at once

    await daemon.kill();
    // The client learns of the loss from its socket, in its own time; a call made before that
    // goes out on the dead connection and fails UNKNOWN_RESULT.
    while (client.connected) await new Promise((resolve) => setTimeout(resolve, 5));
    const down = await settle(client.get('kept'));
    expect(down.error?.code).toBe('UNAVAILABLE');
    expect(client.closed).toBe(false);

    await daemon.start();
    expect((await client.get('kept'))?.toString()).toBe('before the crash');
    expect(await client.get('uncommitted')).toBeNull();
    // Regression (review): ids restarted at 1 on the new connection, so the alias commit of the
    // lost transaction's id committed a new transaction that had been given the same number.
    const newer = await client.beginTransaction();
    await newer.put('newer', 'not yet');
    expect(newer.id).not.toBe(txn.id);
    expect((await settle(client.commit(txn.id))).error?.code).toBe('NOT_IN_TRANSACTION');
    expect(await client.get('newer')).toBeNull();
    await newer.abort();
    expect((await settle(txn.commit())).error?.code).toBe('CONNECTION_CLOSED');
    // Entries that had arrived are served; the first batch that had not fails the scan.
    let lost: Awaited<ReturnType<typeof settle>> = {};
    for (let i = 0; i < 8 && lost.error === undefined; i++) lost = await settle(scan.next());
    expect(lost.error?.code).toBe('CONNECTION_CLOSED');
    expect(events).toEqual(['disconnect CONNECTION_CLOSED', 'reconnect']);
    expect(client.connected).toBe(true);
    expect(client.serverInfo).not.toBe(firstHello); // the new daemon's hello

    // Transactions and scans work on the new connection.
    await client.withTransaction(async (fresh) => {
      await fresh.put('after', 'the restart');
    });
    expect((await client.scan('').toArray()).map(([key]) => key.toString())).toEqual(['after', 'kept', ...Array.from({ length: 8 }, (_, i) => `scan/${i}`)]);
  });

  it('after a graceful restart: the next call reaches the new daemon without an error', async () => {
    daemon = await startDaemon();
    client = await IpcClient.connect(daemon.socketPath);
    await client.put('k', 'v');
    await daemon.restart();
    expect((await client.get('k'))?.toString()).toBe('v');
    expect((await client.ping()).version).toBe(client.serverInfo.server);
  });

  it('with reconnect off, stays closed after the restart', async () => {
    daemon = await startDaemon();
    client = await IpcClient.connect(daemon.socketPath, { reconnect: false });
    const closed = new Promise<ToonDBError | null>((resolve) => client!.once('close', resolve));
    await daemon.restart();
    expect((await closed)?.code).toMatch(/^(SHUTTING_DOWN|CONNECTION_CLOSED)$/);
    expect((await settle(client.get('k'))).error?.code).toBe('CONNECTION_CLOSED');
    expect(client.closed).toBe(true);
  });
});
