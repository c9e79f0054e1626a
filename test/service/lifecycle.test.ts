// toondbd as a service: status exit codes, one daemon per data dir and per socket (also right
// after kill -9), stale-socket recovery, graceful SIGTERM under load, SIGHUP without dropping
// clients, a stdout whose reader went away, config validation (paths that are not UTF-8
// included), and stop.
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { RawPeer } from '../helpers/raw.js';
import { IpcClient } from '../../ipc-client/index.js';
import { createDaemon, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { TOONDBD_BIN } from '../helpers/paths.js';
import { START_LOCK_STALE_MS } from '../../protocol/limits.js';

const toondbd = (args: string[], env: Record<string, string> = {}) =>
  execa('node', [TOONDBD_BIN, ...args], { reject: false, env, stdin: 'ignore', timeout: 30_000 });

describe('daemon lifecycle', () => {
  const daemons: TestDaemon[] = [];
  const track = (d: TestDaemon) => (daemons.push(d), d);
  afterEach(async () => {
    for (const d of daemons.splice(0)) await d.dispose();
  });

  it('status exits 0 with details when running and 3 when not', async () => {
    const daemon = track(await startDaemon());
    const running = await toondbd(['status', '--socket', daemon.socketPath]);
    expect(running.exitCode).toBe(0);
    expect(running.stdout).toContain(`pid ${daemon.pid}`);
    expect(running.stdout).toContain(daemon.dataDir);
    const json = JSON.parse((await toondbd(['status', '--json', '--socket', daemon.socketPath])).stdout);
    expect(json).toMatchObject({ running: true, pid: daemon.pid, socket: daemon.socketPath, dataDir: daemon.dataDir });
    await daemon.stop();
    const stopped = await toondbd(['status', '--socket', daemon.socketPath]);
    expect(stopped.exitCode).toBe(3);
  });

  it('refuses a second daemon on the same data dir, and on the same live socket', async () => {
    const first = track(await startDaemon());
    const sameDir = track(createDaemon({ dataDir: first.dataDir, socketPath: join(first.dir, 'other.sock') }));
    await expect(sameDir.start()).rejects.toThrow(/LOCKED/);
    // Logged once, not repeated by its cause (pino appended a cause's message to the error's).
    const fatal = sameDir.logs.find((l) => l.msg === 'cannot start');
    expect((fatal?.err as { message: string }).message).toMatch(/^data directory /);
    expect((fatal?.err as { message: string }).message).not.toMatch(/\[LOCKED\]/);
    const sameSocket = track(createDaemon({ socketPath: first.socketPath }));
    await expect(sameSocket.start()).rejects.toThrow(/ALREADY_RUNNING/);
    // Refused before its data dir was made and recovered (review: it was made, and opened).
    expect(existsSync(sameSocket.dataDir)).toBe(false);
    // The first daemon is untouched.
    const client = await IpcClient.connect(first.socketPath);
    expect((await client.ping()).version).toBeTruthy();
    await client.close();
  });

  it('reclaims a stale socket after kill -9 and keeps the data', async () => {
    const daemon = track(await startDaemon());
    const client = await IpcClient.connect(daemon.socketPath);
    await client.put('survivor', 'yes');
    await client.close();
    await daemon.kill();
    expect(existsSync(daemon.socketPath)).toBe(true); // left behind by the crash
    await daemon.start();
    await expect.poll(() => daemon.logged('replaced stale socket left by a daemon that died').length, { timeout: 5_000 }).toBe(1);
    const again = await IpcClient.connect(daemon.socketPath);
    expect((await again.get('survivor'))?.toString()).toBe('yes');
    await again.close();
  });

  // Regression (review): the start-up lock (a directory beside the socket) of a daemon killed
  // while starting made every start for the next 10 s wait ~10 s and then exit 2
  // (ALREADY_RUNNING), which systemd does not restart: a start now waits longer than the lock
  // takes to go stale (START_LOCK_WAIT_MS_MAX), and takes it over.
  it('takes over the start-up lock of a daemon killed while starting', async () => {
    const daemon = track(createDaemon());
    const lock = `${daemon.socketPath}.lock`;
    mkdirSync(lock); // its holder died just now: the lock goes stale in START_LOCK_STALE_MS
    const startedMs = Date.now();
    await daemon.start();
    expect(Date.now() - startedMs).toBeGreaterThanOrEqual(START_LOCK_STALE_MS - 500);
    const client = await IpcClient.connect(daemon.socketPath);
    expect((await client.ping()).version).toBeTruthy();
    await client.close();
  }, 30_000);

  // README, The daemon: on SIGTERM it stops accepting, answers new requests with SHUTTING_DOWN
  // and gives in-flight requests up to 10 s to finish. To hold that window open, a raw peer
  // pipelines gets of a 1 MiB value and reads none of the replies: past 8 MiB unread the daemon
  // starts no more of its work, so the connection stays busy (the rest queued, a put behind
  // them) until the peer reads. Every one of those requests was read by the daemon before the
  // SIGTERM, so every one must finish ok; a request sent meanwhile on another open connection
  // must get SHUTTING_DOWN.
  it('drains on SIGTERM: requests already read finish ok, new ones get SHUTTING_DOWN; exits 0 and removes the socket', async () => {
    const daemon = track(await startDaemon());
    const big = Buffer.alloc(1024 * 1024, 0x62);
    const client = await IpcClient.connect(daemon.socketPath, { timeoutMs: 30_000 });
    const other = await IpcClient.connect(daemon.socketPath, { timeoutMs: 30_000, reconnect: false });
    const peer = await RawPeer.open(daemon.socketPath);
    try {
      await client.put('big', big);
      peer.hello();
      await peer.waitFor(1);
      peer.socket.pause(); // reads nothing from here on
      // requests.total counts each request as the daemon reads it, these stats calls included.
      let statsCalls = 0;
      const requestsRead = async () => (statsCalls++, (await client.stats()).requests.total - statsCalls);
      const before = await requestsRead();
      const GETS = 40;
      for (let id = 2; id < 2 + GETS; id++) peer.request({ id, op: 'get', key: Buffer.from('big') });
      const putId = 2 + GETS;
      peer.request({ id: putId, op: 'put', key: Buffer.from('drained'), value: Buffer.from('yes') });
      // The daemon has read all of them, and holds work back: the put, last in the queue, has
      // not been applied.
      await expect.poll(async () => (await requestsRead()) - before, { timeout: 10_000 }).toBe(GETS + 1);
      expect(await client.exists('drained'), 'the put behind the unread replies is held').toBe(false);
      await client.close();

      const stopped = daemon.stop('SIGTERM');
      await expect.poll(() => daemon.logged('shutting down').length, { timeout: 10_000 }).toBe(1);
      // The drain is open (the peer still reads nothing): a new request on another connection
      // is refused, and that connection is not dropped for it.
      await expect(other.get('big')).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
      await expect(other.put('late', 'x')).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
      expect(other.connected).toBe(true);
      // The socket file stays until the daemon lets go of its data dir: a new connection is
      // told SHUTTING_DOWN, and status says a daemon runs there (it removed the socket at the
      // start of the shutdown before, and status said "not running" while a start still found
      // the data dir locked).
      expect(existsSync(daemon.socketPath)).toBe(true);
      await expect(IpcClient.connect(daemon.socketPath)).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
      const status = await toondbd(['status', '--json', '--socket', daemon.socketPath]);
      expect(status.exitCode).toBe(1);
      expect(JSON.parse(status.stdout)).toMatchObject({ running: true, usable: false, code: 'SHUTTING_DOWN' });
      // stop waits for a daemon already stopping to be gone: the paused peer holds the daemon's
      // drain until it resumes, so a stop that waits cannot end before that.
      let resumed = false;
      let stopEndedAfterResume: boolean | null = null;
      const stopCommand = toondbd(['stop', '--socket', daemon.socketPath]);
      void stopCommand.then(() => (stopEndedAfterResume = resumed));
      await new Promise((resolve) => setTimeout(resolve, 500));

      resumed = true;
      peer.socket.resume();
      const replies = await peer.waitFor(2 + GETS, 10_000);
      const byId = new Map(replies.map((m) => [Number(m.id), m]));
      for (let id = 2; id < 2 + GETS; id++) {
        const reply = byId.get(id);
        expect(reply?.error, `get ${id}`).toBeUndefined();
        expect(Buffer.compare(reply?.result as Buffer, big), `get ${id} value`).toBe(0);
      }
      expect(byId.get(putId), 'the put read before the SIGTERM').toMatchObject({ result: null });
      expect(byId.get(putId)?.error).toBeUndefined();

      expect(await stopped).toBe(0);
      expect(existsSync(daemon.socketPath)).toBe(false);
      const stopResult = await stopCommand;
      expect(stopResult.exitCode).toBe(0);
      expect(stopResult.stdout).toMatch(/already shutting down/);
      expect(stopEndedAfterResume).toBe(true);
      // The drained write was applied and checkpointed; the refused one never was.
      await daemon.start();
      const check = await IpcClient.connect(daemon.socketPath);
      expect((await check.getBatch(['drained', 'late'])).map((v) => v?.toString() ?? null)).toEqual(['yes', null]);
      await check.close();
    } finally {
      peer.close();
      await client.close();
      await other.close();
    }
  });

  it('stops cleanly on a SIGTERM that arrives while it is still starting', async () => {
    // Regression: signal handlers were installed only after startup, so a SIGTERM between
    // listen and "ready" killed the daemon with the default action and left its socket behind.
    const dir = makeTempDir();
    const socketPath = join(dir, 's.sock');
    const proc = execa('node', [TOONDBD_BIN, 'start', '--socket', socketPath, '--data-dir', join(dir, 'data')], { reject: false, stdin: 'ignore' });
    try {
      while (!existsSync(socketPath) && proc.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 1));
      proc.kill('SIGTERM');
      const result = await proc;
      expect(result.signal).toBeUndefined();
      expect(result.exitCode).toBe(0);
      expect(existsSync(socketPath)).toBe(false);
    } finally {
      proc.kill('SIGKILL'); // a no-op once it exited; one the SIGTERM did not stop must not outlive the test
    }
  });

  it('a SIGTERM or SIGINT while its modules still load: start exits 0 having created nothing, status exits as killed', async () => {
    // A preload sends the signal at the first timer tick after toondbd's first signal handler
    // (SIGHUP's, set before its imports) exists: while the daemon's modules are still loading.
    const dir = makeTempDir();
    const signalDuringLoad = (signal: string) => join(dir, `${signal}.mjs`);
    for (const signal of ['SIGTERM', 'SIGINT']) {
      writeFileSync(signalDuringLoad(signal), `const t = setInterval(() => { if (process.listenerCount('SIGHUP') > 0) { clearInterval(t); process.kill(process.pid, '${signal}'); } }, 0);\n`);
    }
    for (const signal of ['SIGTERM', 'SIGINT']) {
      const socketPath = join(dir, `${signal}.sock`);
      const dataDir = join(dir, `${signal}-data`);
      const started = await execa('node', ['--import', signalDuringLoad(signal), TOONDBD_BIN, 'start', '--socket', socketPath, '--data-dir', dataDir],
        { reject: false, stdin: 'ignore', timeout: 30_000 });
      expect(started.signal, `start, ${signal}: ${started.stderr}`).toBeUndefined();
      expect(started.exitCode, `start, ${signal}: ${started.stderr}`).toBe(0);
      expect(started.stdout).toContain('stopped before starting');
      expect(existsSync(socketPath)).toBe(false);
      expect(existsSync(dataDir)).toBe(false);
    }
    // Commands other than start keep the default action's outcome: killed by the signal.
    const status = await execa('node', ['--import', signalDuringLoad('SIGTERM'), TOONDBD_BIN, 'status', '--socket', join(dir, 'none.sock')],
      { reject: false, stdin: 'ignore', timeout: 30_000 });
    expect({ exitCode: status.exitCode, signal: status.signal }, status.stderr).toEqual({ exitCode: 128 + 15, signal: undefined });
  });

  it('serves every connection accepted while it is still starting', async () => {
    // Regression: the connection handler was attached only after chmod and the socket lock were
    // done, so a client that connected in that gap was accepted and never answered.
    const dir = makeTempDir();
    const socketPath = join(dir, 's.sock');
    const proc = execa('node', [TOONDBD_BIN, 'start', '--socket', socketPath, '--data-dir', join(dir, 'data')], { reject: false, stdin: 'ignore' });
    const outcomes: string[] = [];
    let served = 0;
    const prober = async () => {
      while (served < 20 && proc.exitCode === null) {
        try {
          const client = await IpcClient.connect(socketPath, { connectTimeoutMs: 3_000 });
          served += 1;
          await client.close();
        } catch (error) {
          outcomes.push((error as { code?: string }).code ?? String(error));
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: 8 }, prober));
      proc.kill('SIGTERM');
      await proc;
    } finally {
      proc.kill('SIGKILL'); // as above
    }
    expect(served).toBeGreaterThanOrEqual(20);
    expect(outcomes.filter((code) => code !== 'UNAVAILABLE')).toEqual([]);
  });

  it('keeps connections across SIGHUP and applies the new log level', async () => {
    const dir = makeTempDir();
    const configFile = join(dir, 'config.json');
    writeFileSync(configFile, JSON.stringify({ logLevel: 'info' }));
    // No --log-level: a flag would win over the file's, on reload too (the test passed so).
    const daemon = track(await startDaemon({ dir, args: ['--config', configFile], logLevel: null }));
    const client = await IpcClient.connect(daemon.socketPath);
    await client.put('before-hup', '1');
    writeFileSync(configFile, JSON.stringify({ logLevel: 'warn' }));
    process.kill(daemon.pid!, 'SIGHUP');
    await expect.poll(() => daemon.logs.some((l) => l.msg === 'configuration reloaded'), { timeout: 5_000 }).toBe(true);
    expect((await client.get('before-hup'))?.toString()).toBe('1');
    // The new level applies: a connection (logged at info) is no longer logged. A failed reload
    // (logged at error) marks the point in the log by which it would have been.
    const opened = () => daemon.logs.filter((l) => l.msg === 'connection opened').length;
    const openedBefore = opened();
    expect(openedBefore).toBeGreaterThan(0); // at info, the first connection was
    const second = await IpcClient.connect(daemon.socketPath);
    await second.ping();
    writeFileSync(configFile, '{ not json');
    process.kill(daemon.pid!, 'SIGHUP');
    await expect.poll(() => daemon.logs.some((l) => l.msg === 'reload failed; keeping the running configuration'), { timeout: 5_000 }).toBe(true);
    expect(opened()).toBe(openedBefore);
    await second.close();
    await client.close();
  });

  // Regression: a reload announced new engine limits (key, value, batch, transaction sizes)
  // that the engine, opened with the old ones, went on enforcing.
  it('keeps the limits the engine enforces across SIGHUP, and applies the others', async () => {
    const dir = makeTempDir();
    const configFile = join(dir, 'config.json');
    writeFileSync(configFile, JSON.stringify({ limits: { valueBytesMax: 1024 * 1024, txnIdleMsMax: 60_000 } }));
    const daemon = track(await startDaemon({ dir, args: ['--config', configFile] }));
    writeFileSync(configFile, JSON.stringify({ limits: { txnIdleMsMax: 30_000 } }));
    process.kill(daemon.pid!, 'SIGHUP');
    await expect.poll(() => daemon.logs.some((l) => l.msg === 'configuration reloaded'), { timeout: 5_000 }).toBe(true);
    expect(daemon.logs.some((l) => l.msg === 'these limits change only on restart (the engine enforces them)')).toBe(true);
    const client = await IpcClient.connect(daemon.socketPath);
    expect(client.serverInfo.limits).toMatchObject({ valueBytesMax: 1024 * 1024, txnIdleMsMax: 30_000 });
    await client.close();
  });

  // Regression: shutdown waited for every connection to flush its replies, so one client that
  // stopped reading kept the daemon (and its data-dir lock) alive forever after SIGTERM.
  it('stops on SIGTERM even while a client reads none of its replies', async () => {
    const daemon = track(await startDaemon());
    const client = await IpcClient.connect(daemon.socketPath);
    await client.put('big', Buffer.alloc(1024 * 1024, 1));
    await client.close();
    const peer = await RawPeer.open(daemon.socketPath);
    peer.hello();
    await peer.waitFor(1);
    peer.socket.pause();
    for (let i = 0; i < 200; i++) peer.request({ id: 10 + i, op: 'get', key: Buffer.from('big') });
    await new Promise((resolve) => setTimeout(resolve, 300));
    process.kill(daemon.pid!, 'SIGTERM');
    // The connection is hung up on within HANG_UP_LINGER_MS_MAX, or cut off at
    // SHUTDOWN_FLUSH_MS_MAX ('cutting off connections ...'), whichever comes first.
    expect(await daemon.waitForExit()).toBe(0);
    peer.socket.destroy();
  }, 30_000);

  it('stop asks the daemon to exit and waits for it', async () => {
    const daemon = track(await startDaemon());
    const result = await toondbd(['stop', '--socket', daemon.socketPath]);
    expect(result.exitCode).toBe(0);
    expect(await daemon.waitForExit()).toBe(0);
    expect((await toondbd(['stop', '--socket', daemon.socketPath])).exitCode).toBe(3);
  });

  it('keeps serving when the reader of its stdout goes away, and still stops cleanly', async () => {
    // Its log lines are written synchronously (daemon/server.ts createLogger): a write to a
    // stdout nobody reads any more fails (EPIPE) and must not take the daemon down.
    const dir = makeTempDir();
    const socketPath = join(dir, 'd.sock');
    const proc = execa('node', [TOONDBD_BIN, 'start', '--socket', socketPath, '--data-dir', join(dir, 'data'), '--log-level', 'info'], {
      reject: false, buffer: false, stdin: 'ignore', stdout: 'pipe',
    });
    try {
      await new Promise((resolve) => proc.stdout!.once('data', resolve));
      await expect.poll(() => existsSync(socketPath), { timeout: 10_000 }).toBe(true);
      proc.stdout!.destroy();
      for (let i = 0; i < 5; i++) {
        // Each connection logs when it opens and closes.
        const client = await IpcClient.connect(socketPath);
        await client.put(`k${i}`, 'v');
        await client.close();
      }
      const client = await IpcClient.connect(socketPath);
      expect((await client.get('k4'))?.toString()).toBe('v');
      await client.close();
      expect(proc.exitCode).toBeNull();
      proc.kill('SIGTERM');
      expect((await proc).exitCode).toBe(0);
    } finally {
      proc.kill('SIGKILL');
      await proc;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // Regression: a socket directory that does not exist made start fail with INTERNAL
  // (ENOENT creating the start-up lock), exit 1, which the unit restarts every 2 s.
  it('refuses a socket in a directory that does not exist with exit 2 and one line', async () => {
    const dir = makeTempDir();
    const result = await toondbd(['start', '--socket', join(dir, 'missing', 's.sock'), '--data-dir', join(dir, 'data')]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/INVALID_ARGUMENT: cannot set up the socket .*missing\/s\.sock: ENOENT/);
  });

  // Regression: a data directory that is a file, or that this user may not write, made start
  // fail with INTERNAL (EEXIST from mkdir) or IO_ERROR (the lock file), exit 1, which the unit
  // restarts every 2 s; neither is fixed by a restart.
  it('refuses a data directory it cannot use with exit 2 and one line', async (ctx) => {
    const dir = makeTempDir();
    writeFileSync(join(dir, 'file'), '');
    const onFile = await toondbd(['start', '--socket', join(dir, 's.sock'), '--data-dir', join(dir, 'file')]);
    expect(onFile.exitCode).toBe(2);
    expect(onFile.stderr.trim().split('\n')).toHaveLength(1);
    expect(onFile.stderr).toMatch(/INVALID_ARGUMENT: cannot set up the data directory .*file: EEXIST/);
    if (process.getuid?.() !== 0) ctx.skip('needs root, to run the daemon as a user who may not write the data directory');
    const setpriv = await execa('setpriv', ['--version'], { reject: false });
    if (setpriv.exitCode !== 0) ctx.skip('needs setpriv (util-linux) to run the daemon as another user');
    chmodSync(dir, 0o1777); // sticky, as /tmp: a socket dir others may write must be
    const data = join(dir, 'roots');
    mkdirSync(data, { mode: 0o755 });
    const NOBODY = 65534;
    const asNobody = await execa('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'node', TOONDBD_BIN, 'start', '--socket', join(dir, 'n.sock'), '--data-dir', data],
      { reject: false, stdin: 'ignore', timeout: 30_000, env: { HOME: dir } });
    expect(asNobody.exitCode).toBe(2);
    expect(asNobody.stderr.trim().split('\n')).toHaveLength(1);
    expect(asNobody.stderr).toMatch(/INVALID_ARGUMENT: cannot set up the data directory .*roots: EACCES/);
  });

  // Regression: a dead socket another user left in a sticky directory (not ours to unlink)
  // made the daemon exit 1 with INTERNAL, which the unit restarts every 2 s forever.
  it('refuses a stale socket of another user in a sticky directory with exit 2 and one line', async (ctx) => {
    const NOBODY = 65534;
    if (process.getuid?.() !== 0) ctx.skip('needs root, to run the daemon as another user than the socket\'s owner');
    const setpriv = await execa('setpriv', ['--version'], { reject: false });
    if (setpriv.exitCode !== 0) ctx.skip('needs setpriv (util-linux) to run the daemon as another user');
    const dir = makeTempDir();
    chmodSync(dir, 0o755);
    const sockets = join(dir, 'sockets');
    mkdirSync(sockets);
    chmodSync(sockets, 0o1777); // like /tmp
    const socketPath = join(sockets, 's.sock');
    // A socket left by a process of root's that died: bound, never unlinked, open to all.
    await execa('node', ['-e', `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`], { reject: false });
    chmodSync(socketPath, 0o777);
    const data = join(dir, 'data');
    mkdirSync(data);
    chownSync(data, NOBODY, NOBODY);
    const result = await execa('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'node', TOONDBD_BIN, 'start', '--socket', socketPath, '--data-dir', join(data, 'd')],
      { reject: false, stdin: 'ignore', timeout: 30_000, env: { HOME: dir } });
    expect(result.exitCode).toBe(2);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/INVALID_ARGUMENT: .* stale socket this user may not remove \(EPERM\)/);
    expect(existsSync(socketPath)).toBe(true);
  });

  // Every start here names a temp socket and data dir, so that a validation that regressed
  // would start a daemon there, never on /tmp/toondb.sock or in ~/.local/share/toondb; and a
  // refusal must come before the data dir is made.
  it('refuses a data dir or socket path that is not UTF-8 with exit 2, creating nothing', async () => {
    const dir = makeTempDir();
    // Through a shell: Node's own spawn can only pass UTF-8 arguments. Node would read the
    // byte 0xff as U+FFFD and create `data-\uFFFD` instead.
    const shell = (script: string) => execa('bash', ['-c', script, TOONDBD_BIN, dir], { reject: false, stdin: 'ignore', timeout: 30_000 });
    for (const [script, name] of [
      [`node "$0" start --socket "$1/s.sock" --data-dir "$1/$(printf 'data-\\xff')"`, 'data dir'],
      [`TOONDB_DATA_DIR="$1/$(printf 'data-\\xff')" node "$0" start --socket "$1/s.sock"`, 'data dir'],
      [`node "$0" start --socket "$1/$(printf '\\xfe').sock" --data-dir "$1/data"`, 'socket path'],
      [`node "$0" status --socket "$1/$(printf '\\xfe').sock"`, 'socket path'],
    ]) {
      const result = await shell(script);
      expect(result.exitCode, script).toBe(2);
      expect(result.stderr, script).toMatch(new RegExp(`^toondbd: INVALID_ARGUMENT: ${name} is not valid UTF-8 `));
    }
    expect(readdirSync(dir)).toEqual([]);
  });

  it('rejects an over-long socket path and invalid configuration with exit 2 and one line', async () => {
    const dir = makeTempDir();
    const data = join(dir, 'data');
    const paths = ['--socket', join(dir, 's.sock'), '--data-dir', data];
    const longPath = join(dir, 'x'.repeat(120) + '.sock');
    const result = await toondbd(['start', '--socket', longPath, '--data-dir', data]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/longer than the 103-byte limit/);
    const badMode = await toondbd(['start', ...paths, '--durability', 'sometimes']);
    expect(badMode.exitCode).toBe(2);
    expect(badMode.stderr).toMatch(/sometimes/);
    writeFileSync(join(dir, 'bad.json'), '{ not json');
    const badFile = await toondbd(['start', ...paths, '--config', join(dir, 'bad.json')]);
    expect(badFile.exitCode).toBe(2);
    expect(badFile.stderr.trim().split('\n')).toHaveLength(1);
    // Each limit may be lowered, but not so that a maximal put or reply outgrows a frame.
    writeFileSync(join(dir, 'limits.json'), JSON.stringify({ limits: { frameBytesMax: 1024 * 1024 } }));
    const badLimits = await toondbd(['start', ...paths, '--config', join(dir, 'limits.json')]);
    expect(badLimits.exitCode).toBe(2);
    expect(badLimits.stderr).toMatch(/limits do not fit together: a maximal put must fit in one frame/);
    expect(existsSync(data), 'refused before the data dir was made').toBe(false);
    expect(existsSync(join(dir, 's.sock'))).toBe(false);
    // An unknown socket group was found only after recovery and bind, leaving the socket file.
    const socket = join(dir, 'group.sock');
    const badGroup = await toondbd(['start', '--socket', socket, '--data-dir', join(dir, 'data'), '--socket-group', 'no-such-group-here']);
    expect(badGroup.exitCode).toBe(2);
    expect(badGroup.stderr).toMatch(/unknown group "no-such-group-here"/);
    expect(existsSync(socket)).toBe(false);
    expect(existsSync(join(dir, 'data'))).toBe(false);
    await expect(IpcClient.connect(longPath)).rejects.toMatchObject({ code: 'SOCKET_PATH_TOO_LONG' });
  });
});
