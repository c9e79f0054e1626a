// What an operator meets around a running daemon (from a review of its lifecycle): its files
// are owner-only whatever the data dir's mode, SIGUSR1 opens no debugger, a start that fails
// after listening exits at once (a connected client cannot hold it and its lock) without
// telling systemd it was ready, `stop` works across pid namespaces, `status` does not count
// itself, and an empty HOME is refused instead of putting the data under the working dir.
// Real daemons and CLI processes.
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { execa, execaSync } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { createDaemon, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { TOONDBD_BIN } from '../helpers/paths.js';

const isRoot = process.getuid?.() === 0;
const toondbd = (args: string[], env: Record<string, string> = {}) =>
  execa('node', [TOONDBD_BIN, ...args], { reject: false, stdin: 'ignore', timeout: 30_000, env });

/** Every path under `dir` (itself excluded) with its permission bits. */
function modes(dir: string): [string, number][] {
  const out: [string, number][] = [];
  for (const name of readdirSync(dir, { recursive: true }) as string[]) out.push([name, statSync(join(dir, name)).mode & 0o777]);
  return out;
}

/** Resolves with whether a TCP connect to 127.0.0.1:`port` is accepted. */
function tcpAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

describe('toondbd as an operator meets it', () => {
  const daemons: TestDaemon[] = [];
  afterEach(async () => {
    for (const d of daemons.splice(0)) await d.dispose();
  });

  it('keeps its files owner-only in a data dir that already existed open to others, and warns', async () => {
    const dir = makeTempDir();
    const dataDir = join(dir, 'data');
    mkdirSync(dataDir);
    chmodSync(dataDir, 0o755); // as `mkdir -p` under umask 022 leaves it
    const daemon = await startDaemon({ dir, dataDir });
    daemons.push(daemon);
    const client = await IpcClient.connect(daemon.socketPath);
    await client.put('secret', 'hunter2');
    await client.checkpoint();
    await client.close();
    const open = modes(dataDir).filter(([, mode]) => (mode & 0o077) !== 0);
    expect(open).toEqual([]);
    expect(modes(dataDir).length).toBeGreaterThan(3); // the engine's directories and files are there
    const warning = daemon.logs.find((line) => String(line.msg).startsWith('the data directory is open to other users'));
    expect(warning).toMatchObject({ dataDir, mode: '755' });
  });

  // Security review: a daemon running as root wrote its lock and info files through symlinks
  // another user planted in a data dir it could write, and chowned/chmodded through a link
  // swapped in for the socket in a socket dir it could write. Such directories are refused.
  it('refuses a data dir or socket dir other users can write (or, as root, own), or one inside such a dir', async () => {
    const dir = makeTempDir();
    const start = (socketPath: string, dataDir: string) =>
      toondbd(['start', '--socket', socketPath, '--data-dir', dataDir]);
    const open = join(dir, 'open-data');
    mkdirSync(open);
    chmodSync(open, 0o777);
    const dataRefused = await start(join(dir, 'a.sock'), open);
    expect(dataRefused.exitCode).toBe(2);
    expect(dataRefused.stderr).toMatch(/INVALID_ARGUMENT: the data directory .*open-data is writable by other users \(mode 777\)/);
    expect(readdirSync(open)).toEqual([]); // nothing written there
    const openParent = join(dir, 'open-parent');
    mkdirSync(join(openParent, 'data'), { recursive: true, mode: 0o700 });
    chmodSync(openParent, 0o777);
    const openParentRefused = await start(join(dir, 'h.sock'), join(openParent, 'data'));
    expect(openParentRefused.exitCode).toBe(2);
    expect(openParentRefused.stderr).toMatch(/the data directory .*open-parent\/data is inside .*open-parent, writable by other users and not sticky \(mode 777\)/);
    const sockets = join(dir, 'open-sockets');
    mkdirSync(sockets);
    chmodSync(sockets, 0o777);
    const socketRefused = await start(join(sockets, 'b.sock'), join(dir, 'data-b'));
    expect(socketRefused.exitCode).toBe(2);
    expect(socketRefused.stderr).toMatch(/INVALID_ARGUMENT: the socket's directory .*open-sockets is writable by other users and not sticky/);
    chmodSync(sockets, 0o1777); // sticky, as /tmp: others cannot move the daemon's socket
    const sticky = createDaemon({ dir, socketPath: join(sockets, 'c.sock'), dataDir: join(dir, 'data-c') });
    daemons.push(sticky);
    await sticky.start();
    if (!isRoot) return;
    const owned = join(dir, 'owned-data');
    mkdirSync(owned, { mode: 0o700 });
    chownSync(owned, 65534, 65534);
    const ownerRefused = await start(join(dir, 'd.sock'), owned);
    expect(ownerRefused.exitCode).toBe(2);
    expect(ownerRefused.stderr).toMatch(/the data directory .*owned-data is owned by uid 65534, not by this daemon's uid 0/);
    const theirs = join(dir, 'their-sockets');
    mkdirSync(theirs, { mode: 0o755 });
    chownSync(theirs, 65534, 65534);
    const theirsRefused = await start(join(theirs, 'e.sock'), join(dir, 'data-e'));
    expect(theirsRefused.exitCode).toBe(2);
    expect(theirsRefused.stderr).toMatch(/the socket's directory .*their-sockets is owned by uid 65534/);
    // A directory above it that another user owns could have it swapped after the check.
    const theirParent = join(dir, 'their-parent');
    mkdirSync(theirParent, { mode: 0o755 });
    mkdirSync(join(theirParent, 'data'), { mode: 0o700 });
    chownSync(theirParent, 65534, 65534);
    const parentRefused = await start(join(dir, 'g.sock'), join(theirParent, 'data'));
    expect(parentRefused.exitCode).toBe(2);
    expect(parentRefused.stderr).toMatch(/the data directory .*their-parent\/data is inside .*their-parent, owned by uid 65534/);
    const mine = join(dir, 'mine-data');
    mkdirSync(mine, { mode: 0o700 });
    symlinkSync(mine, join(dir, 'their-link'));
    execaSync('chown', ['-h', '65534:65534', join(dir, 'their-link')]);
    const linkRefused = await start(join(dir, 'f.sock'), join(dir, 'their-link'));
    expect(linkRefused.exitCode).toBe(2);
    expect(linkRefused.stderr).toMatch(/is a symlink owned by uid 65534/);
  });

  // Security review: a stale start-up lock directory with a file in it (another user can make
  // /tmp/toondb.sock.lock so) failed the start with INTERNAL, exit 1, which the unit restarts
  // every 2 s for ever; it is the configuration's problem, exit 2.
  it('refuses a stale start-up lock it cannot take over with exit 2', async () => {
    const dir = makeTempDir();
    const lockDir = join(dir, 's.sock.lock');
    mkdirSync(lockDir);
    writeFileSync(join(lockDir, 'planted'), '');
    const hourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(lockDir, hourAgo, hourAgo);
    const result = await toondbd(['start', '--socket', join(dir, 's.sock'), '--data-dir', join(dir, 'data')]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/INVALID_ARGUMENT: cannot set up the socket .*s\.sock: ENOTEMPTY/);
  });

  it('ignores SIGUSR1 (Node would open its debugger on 127.0.0.1:9229) and keeps serving', async () => {
    const daemon = await startDaemon();
    daemons.push(daemon);
    expect(await tcpAccepts(9229)).toBe(false); // nothing else here listens there
    process.kill(daemon.pid!, 'SIGUSR1');
    await expect.poll(() => daemon.logs.some((line) => String(line.msg).startsWith('SIGUSR1 ignored')), { timeout: 5_000 }).toBe(true);
    expect(await tcpAccepts(9229)).toBe(false);
    expect(daemon.stderr).not.toMatch(/Debugger listening/);
    const client = await IpcClient.connect(daemon.socketPath);
    await client.ping();
    await client.close();
  });

  // Forced by a `toondbd.json` that is a directory with something in it (the rename fails with
  // EISDIR) and by a FIFO at `toondbd.json.tmp`, which holds the start between its listen and
  // the info file until this test reads it, so that a client connects in between.
  it('exits at once when the start fails after its listen, with a client connected, and never says READY', async () => {
    const dir = makeTempDir();
    const dataDir = join(dir, 'data');
    mkdirSync(join(dataDir, 'toondbd.json'), { recursive: true, mode: 0o700 });
    writeFileSync(join(dataDir, 'toondbd.json', 'x'), '');
    await execa('mkfifo', [join(dataDir, 'toondbd.json.tmp')]);
    const notifySocket = join(dir, 'notify.sock');
    const listener = execa('python3', ['-c', `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print('bound', flush=True)
s.settimeout(float(sys.argv[2]))
try:
    while True:
        print(s.recv(4096).decode().replace('\\n', '|'), flush=True)
except socket.timeout:
    pass
`, notifySocket, '60'], { reject: false });
    await new Promise<void>((resolve) => listener.stdout?.on('data', (d: Buffer) => d.toString().includes('bound') && resolve()));
    const daemon = createDaemon({ dir, dataDir, env: { NOTIFY_SOCKET: notifySocket } });
    daemons.push(daemon);
    const started = daemon.start().then(() => 'started', () => 'failed');
    await expect.poll(() => existsSync(daemon.socketPath), { timeout: 15_000 }).toBe(true);
    const client = await IpcClient.connect(daemon.socketPath, { reconnect: false });
    const closed = new Promise((resolve) => client.once('close', resolve));
    await execa('cat', [join(dataDir, 'toondbd.json.tmp')]); // lets the info file's write go on
    expect(await started).toBe('failed');
    const exitCode = await Promise.race([daemon.waitForExit(), new Promise((resolve) => setTimeout(() => resolve('still running'), 10_000))]);
    expect(exitCode).toBe(1);
    await closed; // the daemon cut the client off
    expect(existsSync(daemon.socketPath)).toBe(false);
    listener.kill('SIGTERM'); // it printed each datagram as it came
    const notified = String((await listener).stdout);
    expect(notified).toMatch(/^bound/);
    expect(notified).not.toMatch(/READY=1/);
    // Its lock went with it: a start now gets as far as the same info-file failure, not LOCKED.
    rmSync(join(dataDir, 'toondbd.json.tmp'));
    const again = await toondbd(['start', '--socket', join(dir, 'again.sock'), '--data-dir', dataDir]);
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toMatch(/EISDIR/);
  });

  // Two starts naming one socket through a symlinked directory take turns under one start-up
  // lock (its directory, SOCKET.lock, is created through the same symlink): one runs, the
  // other is refused with ALREADY_RUNNING (exit 2), never a bind failure (exit 1).
  it('lets one of two starts on one socket, named through a symlink, win; the other is ALREADY_RUNNING', async () => {
    for (let round = 0; round < 3; round++) {
      const dir = makeTempDir();
      mkdirSync(join(dir, 'real'));
      symlinkSync(join(dir, 'real'), join(dir, 'link'));
      const starts = ['real', 'link'].map((via) => createDaemon({ dir, socketPath: join(dir, via, 's.sock'), dataDir: join(dir, `data-${via}`) }));
      daemons.push(...starts);
      const outcomes = await Promise.all(starts.map((daemon) => daemon.start().then(() => 'started', () => daemon.stderr)));
      expect(outcomes.filter((outcome) => outcome === 'started'), `round ${round}`).toHaveLength(1);
      const loser = starts[outcomes.findIndex((outcome) => outcome !== 'started')];
      expect(await loser.waitForExit()).toBe(2);
      expect(loser.stderr).toMatch(/ALREADY_RUNNING/);
      for (const daemon of starts) await daemon.stop();
    }
  });

  // The early SIGHUP listener (a reload while `start` loads its modules is ignored) must not
  // keep `status` or `stop` alive after their terminal hangs up.
  it('status ends on SIGHUP while it waits for an answer', async () => {
    const socketPath = join(makeTempDir(), 'mute.sock');
    let connected: () => void = () => undefined;
    const connection = new Promise<void>((resolve) => (connected = resolve));
    const mute = createServer(() => connected()); // accepts, never answers the hello
    await new Promise<void>((resolve) => mute.listen(socketPath, resolve));
    try {
      const status = execa('node', [TOONDBD_BIN, 'status', '--socket', socketPath], { reject: false, stdin: 'ignore', timeout: 30_000 });
      await connection; // loaded and waiting for the hello (its connect gives up after 2 s)
      status.kill('SIGHUP');
      const result = await status;
      expect(result.exitCode).toBe(129);
    } finally {
      mute.close();
    }
  });

  it('status does not count its own connection', async () => {
    const daemon = await startDaemon();
    daemons.push(daemon);
    const quiet = await toondbd(['status', '--json', '--socket', daemon.socketPath]);
    expect(JSON.parse(quiet.stdout)).toMatchObject({ running: true, connections: 0 });
    const client = await IpcClient.connect(daemon.socketPath);
    const busy = await toondbd(['status', '--socket', daemon.socketPath]);
    expect(busy.stdout).toMatch(/, 1 client connection\(s\)$/m);
    await client.close();
  });

  it('refuses to start with no data dir given and an empty HOME, creating nothing', async () => {
    const dir = makeTempDir();
    const cwd = mkdtempSync(join(dir, 'cwd-'));
    const result = await execa('node', [TOONDBD_BIN, 'start', '--socket', join(dir, 's.sock')], {
      reject: false, stdin: 'ignore', timeout: 30_000, cwd, extendEnv: false, env: { PATH: process.env.PATH ?? '', HOME: '' },
    });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/INVALID_ARGUMENT: no data dir: .*HOME is not an absolute path/);
    expect(readdirSync(cwd)).toEqual([]);
  });

  // The daemon reports its pid as its own pid namespace sees it; `stop` in another one judged
  // the exit by that number (a TIMEOUT after the default 60 s, or "stopped" too early).
  it.runIf(isRoot)('stops a daemon running in another pid namespace', async () => {
    const dir = makeTempDir();
    const socketPath = join(dir, 's.sock');
    const proc = execa('unshare', ['--pid', '--fork', 'node', TOONDBD_BIN, 'start', '--socket', socketPath, '--data-dir', join(dir, 'data')], { reject: false, stdin: 'ignore' });
    try {
      await expect.poll(async () => (await toondbd(['status', '--socket', socketPath])).exitCode, { timeout: 20_000, interval: 200 }).toBe(0);
      const status = JSON.parse((await toondbd(['status', '--json', '--socket', socketPath])).stdout) as { pid: number };
      expect(status.pid).toBe(1); // the namespace's first process
      const stopped = await toondbd(['stop', '--socket', socketPath, '--timeout-ms', '15000']);
      expect(stopped.exitCode, stopped.stderr).toBe(0);
      expect(stopped.stdout).toMatch(/stopped/);
      expect((await proc).exitCode).toBe(0);
    } finally {
      proc.kill('SIGKILL');
    }
  });
});
