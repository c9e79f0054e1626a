// `toondbd status` / `stop` tell the truth about a socket, and agree with `toondb`: nothing
// there is 3 ("not running", with JSON under --json), a bad socket path is a usage error (2)
// for both programs, and a socket this user may not connect to is 1 for status (something may
// be running: a start-if-not-running script must not start a second daemon) and a failure for
// toondb. Every line carries its error code. Real daemons and CLI processes.
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { FakeServer } from '../ipc-client/fake-server.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { TOONDB_BIN, TOONDBD_BIN } from '../helpers/paths.js';

const NOBODY_UID = 65534;
const isRoot = process.getuid?.() === 0;

const run = (bin: string, args: string[], options: { uid?: number } = {}) =>
  execa('node', [bin, ...args], { reject: false, stdin: 'ignore', timeout: 30_000, ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid }) });
const toondbd = (args: string[], options: { uid?: number } = {}) => run(TOONDBD_BIN, args, options);

describe('toondbd status and stop outcomes', () => {
  const daemons: TestDaemon[] = [];
  afterEach(async () => {
    for (const d of daemons.splice(0)) await d.dispose();
  });

  it('says "not running" with exit 3, and JSON under --json, when nothing is there', async () => {
    const socket = join(makeTempDir(), 'none.sock');
    const plain = await toondbd(['status', '--socket', socket]);
    expect(plain.exitCode).toBe(3);
    expect(plain.stderr).toBe(`toondbd: UNAVAILABLE: not running: no toondb daemon at ${socket} (ENOENT); start one with \`toondbd start\``);
    const json = await toondbd(['status', '--json', '--socket', socket]);
    expect(json.exitCode).toBe(3);
    expect(JSON.parse(json.stdout)).toEqual({ running: false, code: 'UNAVAILABLE', message: `no toondb daemon at ${socket} (ENOENT); start one with \`toondbd start\`` });
    const stop = await toondbd(['stop', '--socket', socket]);
    expect(stop.exitCode).toBe(3);
  });

  it('treats a socket path that is too long as a usage error, as toondb does', async () => {
    const socket = join(makeTempDir(), 'x'.repeat(120));
    for (const result of [await toondbd(['status', '--socket', socket]), await toondbd(['stop', '--socket', socket]), await run(TOONDB_BIN, ['ping', '--socket', socket])]) {
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toMatch(/^toondbd?: SOCKET_PATH_TOO_LONG: socket path .* longer than the 103-byte limit$/);
      expect(result.stderr).not.toContain('not running');
    }
  });

  it('puts the error code on config and option errors too', async () => {
    const dir = makeTempDir();
    writeFileSync(join(dir, 'bad.json'), '{ not json');
    const badFile = await toondbd(['start', '--config', join(dir, 'bad.json')]);
    expect(badFile.exitCode).toBe(2);
    expect(badFile.stderr).toMatch(/^toondbd: INVALID_ARGUMENT: config file .*bad\.json is not valid JSON/);
    const badTimeout = await toondbd(['stop', '--timeout-ms', 'soon', '--socket', join(dir, 'none.sock')]);
    expect(badTimeout.exitCode).toBe(2);
    expect(badTimeout.stderr).toBe('toondbd: INVALID_ARGUMENT: --timeout-ms must be a positive integer, got soon');
    const unknown = await toondbd(['status', '--no-such-option']);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toBe("toondbd: INVALID_ARGUMENT: unknown option '--no-such-option' (--help shows the usage)");
  });

  it.skipIf(!isRoot)('exits 1, not "not running", for a socket this user may not connect to', async () => {
    const dir = makeTempDir();
    chmodSync(dir, 0o755); // nobody may reach the socket, whose own mode (0600) then refuses
    const daemon = await startDaemon({ dir });
    daemons.push(daemon);
    const status = await toondbd(['status', '--socket', daemon.socketPath], { uid: NOBODY_UID });
    expect(status.exitCode).toBe(1);
    expect(status.stderr).toMatch(/^toondbd: UNAVAILABLE: cannot use the socket \(something may be running there\): no permission to connect .*\(EACCES\)/);
    expect(status.stderr).not.toContain('not running');
    const json = await toondbd(['status', '--json', '--socket', daemon.socketPath], { uid: NOBODY_UID });
    expect(json.exitCode).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ running: true, usable: false, code: 'UNAVAILABLE' });
    expect((await toondbd(['stop', '--socket', daemon.socketPath], { uid: NOBODY_UID })).exitCode).toBe(1);
    const ping = await run(TOONDB_BIN, ['ping', '--socket', daemon.socketPath], { uid: NOBODY_UID });
    expect(ping.exitCode).toBe(4);
    expect(ping.stderr).toMatch(/^toondb: UNAVAILABLE: no permission to connect/);
    // And it still runs: the refused stop did not stop it.
    expect((await toondbd(['status', '--socket', daemon.socketPath])).exitCode).toBe(0);
  });
  if (!isRoot) console.log('skipping the EACCES status test: it needs root to run the CLI as another uid');

  // Regression: a daemon that answered the handshake but failed `stats` made status --json
  // exit 1 with nothing on stdout, though it promises one JSON object whenever it found out.
  it('reports a daemon that answers but cannot give its stats as running and unusable (exit 1)', async () => {
    const fake = await FakeServer.start({ script: (request) => (request.op === 'stats' ? { error: { code: 'SHUTTING_DOWN', message: 'stopping' } } : undefined) });
    try {
      const json = await toondbd(['status', '--json', '--socket', fake.path]);
      expect(json.exitCode).toBe(1);
      expect(JSON.parse(json.stdout)).toEqual({ running: true, usable: false, code: 'SHUTTING_DOWN', message: 'stopping' });
      const plain = await toondbd(['status', '--socket', fake.path]);
      expect(plain.exitCode).toBe(1);
      expect(plain.stderr).toMatch(/^toondbd: SHUTTING_DOWN: running, but its stats failed: stopping/);
    } finally {
      await fake.close();
    }
  });
});
