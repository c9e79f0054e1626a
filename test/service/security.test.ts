// Socket security: owner-only socket file (0660 with a group), peer credentials checked against
// the allow-list before a single operation runs, and sd_notify readiness.
import { chmodSync, chownSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { execa, type ResultPromise } from 'execa';
import { IpcClient } from '../../ipc-client/index.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { CLIENT_MODULE, TOONDBD_BIN } from '../helpers/paths.js';

const isRoot = process.getuid?.() === 0;
const NOBODY_UID = 65534;

const PROBE = `
const { IpcClient } = await import(process.env.CLIENT_MODULE);
try {
  const client = await IpcClient.connect(process.env.SOCKET);
  await client.put('from-' + process.getuid(), 'x');
  process.stdout.write('OK');
  await client.close();
} catch (error) {
  process.stdout.write(String(error.code));
}`;

/** Opens COUNT connections, prints how each went as a JSON array, and holds the open ones
 * until its stdin ends. */
const HOLD = `
const { IpcClient } = await import(process.env.CLIENT_MODULE);
const outcomes = [];
const held = [];
for (let i = 0; i < Number(process.env.COUNT); i++) {
  try {
    held.push(await IpcClient.connect(process.env.SOCKET));
    outcomes.push('OK');
  } catch (error) {
    outcomes.push(String(error.code));
  }
}
process.stdout.write(JSON.stringify(outcomes) + '\\n');
process.stdin.resume();
process.stdin.on('end', async () => {
  await Promise.all(held.map((client) => client.close()));
  process.exit(0);
});`;

/** Runs `script` (an ES module) as `uid`, with CLIENT_MODULE and SOCKET (and `env`) set. */
function asUid(uid: number, script: string, socketPath: string, env: Record<string, string> = {}): ResultPromise {
  return execa('node', ['--input-type=module', '-e', script], { uid, gid: uid, env: { CLIENT_MODULE, SOCKET: socketPath, ...env }, reject: false });
}

/** The first chunk `child` writes to stdout, as text (the scripts above write one line, then wait). */
function firstLine(child: ResultPromise): Promise<string> {
  return new Promise<string>((resolve) => child.stdout?.once('data', (d: Buffer) => resolve(d.toString())));
}

describe('socket security', () => {
  const daemons: TestDaemon[] = [];
  afterEach(async () => {
    for (const d of daemons.splice(0)) await d.dispose();
  });

  it('creates the socket owner-only by default', async () => {
    const daemon = await startDaemon();
    daemons.push(daemon);
    expect(statSync(daemon.socketPath).mode & 0o777).toBe(0o600);
  });

  it('opens the socket to a configured group with 0660', async () => {
    const gid = process.getgid!();
    const daemon = await startDaemon({ args: ['--socket-group', String(gid)] });
    daemons.push(daemon);
    const stats = statSync(daemon.socketPath);
    expect(stats.mode & 0o777).toBe(0o660);
    expect(stats.gid).toBe(gid);
  });

  it.skipIf(!isRoot)('refuses a peer outside --allow-uid and admits one inside it', async () => {
    const dir = makeTempDir();
    chmodSync(dir, 0o755);
    const daemon = await startDaemon({ dir, args: ['--allow-uid', '4242'] });
    daemons.push(daemon);
    chmodSync(daemon.socketPath, 0o666); // file mode would stop the peer first; test the allow-list itself
    const asNobody = () => asUid(NOBODY_UID, PROBE, daemon.socketPath);
    expect((await asNobody()).stdout).toBe('ACCESS_DENIED');
    // Log lines reach this process through a pipe of their own: they can trail the reply.
    await expect.poll(() => daemon.logs.some((l) => l.msg === 'refused peer not on the allow-list' && (l.peer as { uid: number }).uid === NOBODY_UID), { timeout: 5_000 }).toBe(true);
    // A flood of refused connects is logged once per interval, not once each (review: 300
    // connects wrote 300 lines, synchronously).
    for (let i = 0; i < 3; i++) expect((await asNobody()).stdout).toBe('ACCESS_DENIED');
    await expect.poll(async () => (await IpcClient.connect(daemon.socketPath).then((c) => c.stats().finally(() => c.close()))).connections.refused).toBe(4);
    await daemon.stop(); // every line it wrote has been read
    expect(daemon.logs.filter((l) => l.msg === 'refused peer not on the allow-list')).toHaveLength(1);

    const allowed = await startDaemon({ dir: makeTempDir(), args: ['--allow-uid', String(NOBODY_UID)] });
    daemons.push(allowed);
    chmodSync(allowed.dir, 0o755);
    chmodSync(allowed.socketPath, 0o666);
    const ok = await asUid(NOBODY_UID, PROBE, allowed.socketPath);
    expect(ok.stdout).toBe('OK');
    // Let in, but not an operator: it may not stop the daemon for everyone (review: it could).
    const stop = await execa('node', [TOONDBD_BIN, 'stop', '--socket', allowed.socketPath], { uid: NOBODY_UID, gid: NOBODY_UID, reject: false });
    expect(stop.exitCode).toBe(1);
    expect(stop.stderr).toMatch(/^toondbd: ACCESS_DENIED: shutdown is for the daemon's own user/);
    const operator = await IpcClient.connect(allowed.socketPath);
    expect((await operator.stats()).pid).toBe(allowed.pid);
    await operator.close();
    expect(allowed.logs.some((l) => l.msg === 'shutting down')).toBe(false);
  });
  if (!isRoot) console.log('skipping allow-uid test: it needs root to run a client as another uid');

  // Security review: with an allow-list set, root was refused (ACCESS_DENIED) by a daemon run as
  // another user, although root is one of its operators (it may stop it, and has slots kept).
  it.skipIf(!isRoot)('admits root to a daemon run by another user whatever its allow-list says', async () => {
    const dir = makeTempDir();
    chmodSync(dir, 0o755);
    const home = join(dir, 'nobody');
    mkdirSync(home, { mode: 0o700 });
    chownSync(home, NOBODY_UID, NOBODY_UID);
    const socketPath = join(home, 's.sock');
    const proc = execa('setpriv', [`--reuid=${NOBODY_UID}`, `--regid=${NOBODY_UID}`, '--clear-groups', 'node', TOONDBD_BIN, 'start',
      '--socket', socketPath, '--data-dir', join(home, 'data'), '--allow-uid', '4242'], { reject: false, stdin: 'ignore', env: { HOME: home } });
    try {
      const trusted = { serverUid: NOBODY_UID, reconnect: false } as const;
      await expect.poll(async () => IpcClient.connect(socketPath, trusted).then(async (c) => { await c.close(); return 'OK'; }, (e: { code?: string }) => e.code),
        { timeout: 20_000, interval: 200 }).toBe('OK');
      const client = await IpcClient.connect(socketPath, trusted);
      expect((await client.stats()).connections.byUid).toMatchObject({ 0: 1 });
      await client.close();
      const stop = await execa('node', [TOONDBD_BIN, 'stop', '--socket', socketPath], { reject: false, env: { TOONDB_SERVER_UID: String(NOBODY_UID) } });
      expect(stop.exitCode, stop.stderr).toBe(0);
      expect((await proc).exitCode).toBe(0);
    } finally {
      proc.kill('SIGKILL');
    }
  });

  // Regression: --allow-gid matched the peer's primary group only, so a user added to a group
  // (`usermod -aG`) was refused. The probe drops to nobody keeping one supplementary group.
  it.skipIf(!isRoot)('admits a peer by a supplementary group on --allow-gid, and no other', async () => {
    const asNobodyIn = (socketPath: string, group: number) => execa('node', ['--input-type=module', '-e',
      `process.setgroups([${group}]); process.setgid(${NOBODY_UID}); process.setuid(${NOBODY_UID});\n${PROBE}`],
    { env: { CLIENT_MODULE, SOCKET: socketPath }, reject: false });
    const open = async (args: string[]) => {
      const dir = makeTempDir();
      chmodSync(dir, 0o755);
      const daemon = await startDaemon({ dir, args });
      daemons.push(daemon);
      chmodSync(daemon.socketPath, 0o666);
      return daemon;
    };
    const daemon = await open(['--allow-gid', '4243']);
    expect((await asNobodyIn(daemon.socketPath, 4243)).stdout).toBe('OK');
    expect((await asNobodyIn(daemon.socketPath, 4244)).stdout).toBe('ACCESS_DENIED');
    // Log lines reach this process through a pipe of their own: they can trail the reply.
    const openedPeer = () => daemon.logs.find((l) => l.msg === 'connection opened' && (l.peer as { uid: number }).uid === NOBODY_UID)?.peer;
    await expect.poll(openedPeer, { timeout: 5_000 }).toMatchObject({ gid: NOBODY_UID, groups: [4243] });
  });


  // Security review: under a low open-files limit the socket budget was checked before the
  // peer was known, so another user's connect flood (each refusal lingering up to 2 s) got the
  // operator cut off too. Non-operators now leave the operators' share of that budget free.
  it.skipIf(!isRoot)('lets the operator in while another user floods a daemon at its open-files limit', async () => {
    const dir = makeTempDir();
    chmodSync(dir, 0o755);
    const daemon = await startDaemon({ dir, openFilesLimit: 256 });
    daemons.push(daemon);
    chmodSync(daemon.socketPath, 0o666);
    const FLOOD = `
const net = await import('node:net');
const held = [];
for (let i = 0; i < 200; i++) held.push(net.connect(process.env.SOCKET).on('error', () => undefined));
await new Promise((resolve) => setTimeout(resolve, 300));
process.stdout.write('flooding\\n');
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));`;
    const flood = asUid(NOBODY_UID, FLOOD, daemon.socketPath);
    try {
      await firstLine(flood);
      const outcomes: string[] = [];
      for (let i = 0; i < 4; i++) {
        try {
          const client = await IpcClient.connect(daemon.socketPath, { reconnect: false });
          await client.ping();
          await client.close();
          outcomes.push('OK');
        } catch (error) {
          outcomes.push(String((error as { code?: string }).code));
        }
      }
      expect(outcomes).toEqual(['OK', 'OK', 'OK', 'OK']);
    } finally {
      flood.stdin?.end();
      await flood;
    }
  });

  // Regression: another user's clients could hold every transaction and cursor of the daemon-wide
  // maximums, and the operator could then neither dump nor run a transaction until they ended.
  it.skipIf(!isRoot)('keeps the last transactions and cursors of the daemon-wide maximums for its own user', async () => {
    const dir = makeTempDir();
    chmodSync(dir, 0o755);
    const limits = { txnsDaemonMax: 4, txnsPerConnectionMax: 4, cursorsDaemonMax: 4, cursorsPerConnectionMax: 4 };
    const daemon = await startDaemon({ dir, config: { limits } });
    daemons.push(daemon);
    chmodSync(daemon.socketPath, 0o666);
    const OPEN_ALL = `
const { IpcClient } = await import(process.env.CLIENT_MODULE);
const client = await IpcClient.connect(process.env.SOCKET);
await client.putBatch(Array.from({ length: 10 }, (_, i) => ['k' + i, 'v']));
const outcomes = [];
const attempt = async (open) => {
  try { await open(); outcomes.push('OK'); } catch (error) { outcomes.push(error.code + ': ' + error.message); }
};
for (let i = 0; i < 3; i++) await attempt(async () => (await client.beginTransaction()).get('k0'));
for (let i = 0; i < 3; i++) await attempt(() => client.scan('', { batchSize: 1 })[Symbol.asyncIterator]().next());
process.stdout.write(JSON.stringify(outcomes) + '\\n');
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));`;
    const holder = asUid(NOBODY_UID, OPEN_ALL, daemon.socketPath);
    try {
      const line = await firstLine(holder);
      // A daemon-wide maximum of 4 keeps 2 (half of it, below OWNER_HANDLES_RESERVED) for operators.
      expect(JSON.parse(line)).toEqual(['OK', 'OK',
        'LIMIT_EXCEEDED: the daemon already has 2 open transactions across all connections; it keeps the last 2 of its 4 for its own user and root; retry once some end',
        'OK', 'OK',
        'LIMIT_EXCEEDED: the daemon already has 2 open cursors across all connections; it keeps the last 2 of its 4 for its own user and root; retry once some finish']);
      const operator = await IpcClient.connect(daemon.socketPath);
      const txns = [await operator.beginTransaction(), await operator.beginTransaction()];
      for (const txn of txns) await txn.get('k0');
      await expect((await operator.beginTransaction()).get('k0')).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED', message: expect.stringMatching(/already has 4 open transactions .* its maximum \(4\)/) });
      const cursors = [operator.scan('', { batchSize: 1 })[Symbol.asyncIterator](), operator.scan('', { batchSize: 1 })[Symbol.asyncIterator]()];
      for (const cursor of cursors) expect((await cursor.next()).done).toBe(false);
      const stats = await operator.stats();
      expect([stats.transactions.active, stats.cursors.open]).toEqual([4, 4]);
      for (const cursor of cursors) await cursor.return!();
      for (const txn of txns) await txn.abort();
      await operator.close();
    } finally {
      holder.stdin?.end();
      await holder;
    }
  });

  // Regression: one local user's idle clients could take every connectionsMax slot, leaving the
  // operator no way to connect and look. Two other uids fill their share; root still connects.
  it.skipIf(!isRoot)('keeps slots for the daemon\'s own user and caps the connections of one uid', async () => {
    const dir = makeTempDir();
    chmodSync(dir, 0o755);
    const daemon = await startDaemon({ dir, config: { connectionsMax: 8, connectionsPerUidMax: 3 } });
    daemons.push(daemon);
    chmodSync(daemon.socketPath, 0o666);
    const holders: ResultPromise[] = [];
    const holdAs = async (uid: number, count: number): Promise<string[]> => {
      const holder = asUid(uid, HOLD, daemon.socketPath, { COUNT: String(count) });
      holders.push(holder);
      return JSON.parse(await firstLine(holder)) as string[];
    };
    try {
      // connectionsMax 8 keeps 4 for operators: other users share 4, one uid holds at most 3.
      expect(await holdAs(NOBODY_UID, 4)).toEqual(['OK', 'OK', 'OK', 'TOO_MANY_CONNECTIONS']);
      // The operator learns why (one warning per 10 s, counting the refusals it did not log).
      await expect.poll(() => daemon.logged('refused a connection: no slot left for it')[0], { timeout: 5_000 })
        .toMatchObject({ peer: { uid: NOBODY_UID }, reason: expect.stringMatching(/uid 65534 already holds 3 connections/), unlogged: 0 });
      expect(await holdAs(4242, 2)).toEqual(['OK', 'TOO_MANY_CONNECTIONS']);
      const operators: IpcClient[] = [];
      for (let i = 0; i < 4; i++) operators.push(await IpcClient.connect(daemon.socketPath));
      const stats = await operators[0]!.stats();
      expect(stats.connections).toMatchObject({ active: 8, refused: 2, byUid: { [NOBODY_UID]: 3, 4242: 1, 0: 4 } });
      await expect(IpcClient.connect(daemon.socketPath)).rejects.toMatchObject({ code: 'TOO_MANY_CONNECTIONS' });
      await Promise.all(operators.map((client) => client.close()));
    } finally {
      for (const holder of holders) holder.stdin?.end();
      await Promise.all(holders);
    }
    // Their slots are given back as they close, and a reload (SIGHUP) moves the cap.
    const checker = await IpcClient.connect(daemon.socketPath);
    await expect.poll(async () => (await checker.stats()).connections.active, { timeout: 5_000 }).toBe(1);
    writeFileSync(join(daemon.dir, 'config.json'), JSON.stringify({ connectionsMax: 8, connectionsPerUidMax: 2 }));
    process.kill(daemon.pid!, 'SIGHUP');
    await expect.poll(() => daemon.logged('configuration reloaded').length, { timeout: 5_000 }).toBeGreaterThan(0);
    expect(await holdAs(NOBODY_UID, 3)).toEqual(['OK', 'OK', 'TOO_MANY_CONNECTIONS']);
    holders.at(-1)!.stdin?.end();
    await holders.at(-1);
    await checker.close();
  });

  it('logs peer credentials on connect', async () => {
    const daemon = await startDaemon();
    daemons.push(daemon);
    await execa('node', ['--input-type=module', '-e', PROBE], { env: { CLIENT_MODULE, SOCKET: daemon.socketPath } });
    await expect.poll(() => daemon.logged('connection opened').length, { timeout: 5_000 }).toBeGreaterThan(0);
    const opened = daemon.logs.find((l) => l.msg === 'connection opened');
    expect(opened?.peer).toMatchObject({ uid: process.getuid!(), gid: expect.any(Number), pid: expect.any(Number) });
  });

  it('sends READY=1 to NOTIFY_SOCKET only after it listens', async () => {
    const dir = makeTempDir();
    const notifySocket = join(dir, 'notify.sock');
    // Node has no Unix datagram sockets; a tiny python listener records what systemd would see.
    const listener = execa('python3', ['-c', `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print('bound', flush=True)
s.settimeout(30)
while True:
    msg = s.recv(4096).decode()
    print(msg.replace('\\n', '|'), flush=True)
    if msg.startswith('STOPPING=1'):
        break
`, notifySocket], { reject: false });
    await new Promise<void>((resolve) => listener.stdout?.on('data', (d: Buffer) => d.toString().includes('bound') && resolve()));
    const daemon = await startDaemon({ dir, env: { NOTIFY_SOCKET: notifySocket } });
    daemons.push(daemon);
    const pid = daemon.pid;
    await daemon.stop();
    const out = (await listener).stdout;
    const lines = String(out).split('\n');
    expect(lines.find((l) => l.startsWith('READY=1'))).toContain(`MAINPID=${pid}`);
    expect(lines.some((l) => l.startsWith('STOPPING=1'))).toBe(true);
    expect(lines.findIndex((l) => l.startsWith('READY=1'))).toBeLessThan(lines.findIndex((l) => l.startsWith('STOPPING=1')));
  });
});
