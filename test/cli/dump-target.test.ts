// Where `toondb dump FILE` writes, by what FILE is: `-` is stdout, a FIFO or device is streamed
// into (never replaced), a symlink is followed to the file it names, and an interrupted dump
// leaves no temporary file. Real daemon, real CLI processes; the dump bytes are decoded here.
import { chmodSync, chownSync, lstatSync, readdirSync, readFileSync, symlinkSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { execa, execaSync } from 'execa';
import { describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { MessageCodec } from '../../protocol/codec.js';
import { FrameDecoder } from '../../protocol/frame.js';
import { startDaemon, suiteDaemon } from '../helpers/daemon.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { TOONDB_BIN } from '../helpers/paths.js';

const toondb = (args: string[], options: { cwd?: string; input?: Buffer } = {}) =>
  execa('node', [TOONDB_BIN, ...args], { reject: false, encoding: 'buffer', stdin: options.input === undefined ? 'ignore' : 'pipe', ...options });

const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString();

/** The frames of a dump: header, batches, trailer. */
function frames(bytes: Uint8Array): Record<string, unknown>[] {
  const codec = new MessageCodec();
  return new FrameDecoder().push(Buffer.from(bytes)).map((body) => codec.decode(body));
}

/** Checks `bytes` are a whole dump of `count` keys. */
function expectWholeDump(bytes: Uint8Array, count: number): void {
  const all = frames(bytes);
  expect(all[0]).toMatchObject({ format: 'toondb-dump', version: 3 });
  expect(all.at(-1)).toEqual({ end: true, count });
}

const KEYS = 3;
/** Dumps a large enough database that a poll for the temporary file sees it mid-dump. */
const BIG_BATCHES = 20;
const BIG_BATCH_ITEMS = 1_000;
const BIG_VALUE_BYTES = 500;
/** Dumps started until one is interrupted before it completed. */
const INTERRUPT_ATTEMPTS = 5;

describe('toondb dump targets', () => {
  const daemon = suiteDaemon();
  const socket = () => ['--socket', daemon().socketPath];
  const fill = async () => {
    const client = await IpcClient.connect(daemon().socketPath);
    await client.putBatch(Array.from({ length: KEYS }, (_, i) => [`k${i}`, `v${i}`] as [string, string]));
    await client.close();
  };

  it('writes `-` to stdout, creating no file, and `load -` reads stdin', async () => {
    await fill();
    const cwd = makeTempDir();
    const dumped = await toondb(['dump', '-', ...socket()], { cwd });
    expect(dumped.exitCode, text(dumped.stderr)).toBe(0);
    expectWholeDump(dumped.stdout, KEYS);
    expect(readdirSync(cwd)).toEqual([]);
    expect(text(dumped.stderr)).toBe(`dumped ${KEYS} keys to stdout`);
    const fresh = await startDaemon();
    try {
      const loaded = await toondb(['load', '-', '--socket', fresh.socketPath], { cwd, input: Buffer.from(dumped.stdout) });
      expect(text(loaded.stdout)).toBe(`loaded ${KEYS} keys from stdin`);
      const client = await IpcClient.connect(fresh.socketPath);
      expect((await client.get('k2'))?.toString()).toBe('v2');
      await client.close();
    } finally {
      await fresh.dispose();
    }
  });

  it('refuses to write `-` to a terminal', async () => {
    const script = await execa('script', ['-qec', `node ${TOONDB_BIN} dump - --socket ${daemon().socketPath}`, '/dev/null'], { reject: false, stdin: 'ignore', cwd: makeTempDir() });
    expect(script.exitCode).toBe(2);
    expect(script.stdout).toMatch(/toondb: INVALID_ARGUMENT: not writing a binary dump to a terminal/);
  });

  it('follows a symlink to the file it names, and a dangling one to the file it would name', async () => {
    await fill();
    const [real, links] = [makeTempDir(), makeTempDir()];
    writeFileSync(join(real, 'old.dump'), 'an earlier dump');
    symlinkSync(join(real, 'old.dump'), join(links, 'current'));
    symlinkSync(join('..', real.split('/').at(-1)!, 'new.dump'), join(links, 'dangling')); // relative to the link's dir
    for (const [link, target] of [['current', 'old.dump'], ['dangling', 'new.dump']]) {
      const dumped = await toondb(['dump', join(links, link), ...socket()]);
      expect(dumped.exitCode, text(dumped.stderr)).toBe(0);
      expect(lstatSync(join(links, link)).isSymbolicLink()).toBe(true);
      expectWholeDump(readFileSync(join(real, target)), KEYS);
    }
    expect(readdirSync(links).sort()).toEqual(['current', 'dangling']);
    expect(readdirSync(real).sort()).toEqual(['new.dump', 'old.dump']);
  });

  it('streams into a FIFO and a link to its own stdout instead of replacing them', async () => {
    await fill();
    const dir = makeTempDir();
    const fifo = join(dir, 'fifo');
    await execa('mkfifo', [fifo]);
    const reader = execa('cat', [fifo], { encoding: 'buffer', reject: false, stdin: 'ignore' });
    const dumped = await toondb(['dump', fifo, ...socket()]);
    // Before the reader is awaited: a FIFO replaced by a file leaves `cat` waiting for a writer.
    const isFifo = lstatSync(fifo).isFIFO();
    reader.kill('SIGKILL');
    expect(isFifo).toBe(true);
    expect(dumped.exitCode, text(dumped.stderr)).toBe(0);
    expectWholeDump((await reader).stdout, KEYS);
    expect(text(dumped.stderr)).toBe(`dumped ${KEYS} keys to ${fifo}`); // the summary never joins the data
    // /dev/stdout is such a link: to the process's own fd 1, a pipe realpath cannot name. A shell
    // pipe here: execa's stdout is a socketpair, which no open(2) can write (refused, below).
    const link = join(dir, 'stdout');
    symlinkSync('/proc/self/fd/1', link);
    const piped = await execa('bash', ['-o', 'pipefail', '-c', 'node "$0" dump "$1" --socket "$2" | cat', TOONDB_BIN, link, daemon().socketPath],
      { reject: false, encoding: 'buffer', stdin: 'ignore' });
    expect(piped.exitCode, text(piped.stderr)).toBe(0);
    expectWholeDump(piped.stdout, KEYS);
    const socketpair = await toondb(['dump', link, ...socket()]);
    expect(text(socketpair.stderr)).toBe(`toondb: INVALID_ARGUMENT: cannot write ${link}: it is a socket (for stdout, dump to -)`);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(['fifo', 'stdout']);
  });

  // Security review: a FIFO another user planted under a dump's name (dump opens without
  // O_CREAT, which skips fs.protected_fifos) got every value streamed to them, and their symlink
  // in /tmp made the dump replace whatever file it named (where protected_symlinks is off, as on
  // macOS). Both are refused; this process's own stdout is streamed into whoever made it.
  it.skipIf(process.getuid?.() !== 0)('refuses another user\'s FIFO or symlink in a shared dir; streams into its own stdout of theirs', async () => {
    await fill();
    const NOBODY = 65534;
    const shared = makeTempDir();
    chmodSync(shared, 0o1777);
    const fifo = join(shared, 'backup.dump');
    await execa('mkfifo', ['-m', '622', fifo]);
    chownSync(fifo, NOBODY, NOBODY);
    const refusedFifo = await toondb(['dump', fifo, ...socket()]); // no reader: must not wait for one
    expect(refusedFifo.exitCode).toBe(4);
    expect(text(refusedFifo.stderr)).toBe(`toondb: INVALID_ARGUMENT: cannot write ${fifo}: it is a FIFO owned by uid ${NOBODY}, who would read every value (dump to a new file, or to -)`);
    const victim = join(makeTempDir(), 'victim');
    writeFileSync(victim, 'keep');
    const link = join(shared, 'bk.dump');
    symlinkSync(victim, link);
    execaSync('chown', ['-h', `${NOBODY}:${NOBODY}`, link]);
    const refusedLink = await toondb(['dump', link, ...socket()]);
    expect(refusedLink.exitCode).toBe(4);
    expect(text(refusedLink.stderr)).toMatch(/cannot write .*bk\.dump: it is a symlink of uid 65534 in the shared directory/);
    expect(readFileSync(victim, 'utf8')).toBe('keep');
    // The shell opens their FIFO as the dump's stdout: /dev/stdout is then this process's own.
    const theirs = join(makeTempDir(), 'their-fifo');
    await execa('mkfifo', [theirs]);
    chownSync(theirs, NOBODY, NOBODY);
    const reader = execa('cat', [theirs], { encoding: 'buffer', reject: false, stdin: 'ignore' });
    const own = await execa('bash', ['-c', 'node "$0" dump /dev/stdout --socket "$1" > "$2"', TOONDB_BIN, daemon().socketPath, theirs],
      { reject: false, encoding: 'buffer', stdin: 'ignore' });
    expect(own.exitCode, text(own.stderr)).toBe(0);
    expectWholeDump((await reader).stdout, KEYS);
  });

  it('refuses a directory, writing nothing', async () => {
    const parent = makeTempDir();
    const dir = join(parent, 'd');
    mkdirSync(dir);
    const refused = await toondb(['dump', dir, ...socket()]);
    expect(refused.exitCode).toBe(4);
    expect(text(refused.stderr).trim()).toBe(`toondb: INVALID_ARGUMENT: cannot write ${dir}: it is a directory`);
    expect(readdirSync(parent)).toEqual(['d']);
    expect(readdirSync(dir)).toEqual([]);
  });

  // Review: /dev/stdout naming a file the shell opened for `>>` was taken for that file and
  // replaced by rename: what the file held was gone, the summary line lost.
  it('streams into stdout named as /dev/stdout, appending to a file opened with >>', async () => {
    await fill();
    const dir = makeTempDir();
    const log = join(dir, 'app.log');
    writeFileSync(log, 'important\n');
    const run = await execa('bash', ['-c', `node "$0" dump /dev/stdout --socket "$1" >> "$2"`, TOONDB_BIN, daemon().socketPath, log], { reject: false });
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stderr).toBe(`dumped ${KEYS} keys to /dev/stdout`);
    const bytes = readFileSync(log);
    expect(bytes.subarray(0, 10).toString()).toBe('important\n');
    expectWholeDump(bytes.subarray(10), KEYS);
    expect(readdirSync(dir)).toEqual(['app.log']);
  });

  // Review: the summary line of a streamed dump went to stderr, into the dump when stderr was
  // its target (`dump /dev/stderr 2> file`): the file no longer loaded.
  it('streams into stderr named as /dev/stderr, with the summary on stdout', async () => {
    await fill();
    const dir = makeTempDir();
    const file = join(dir, 'err.dump');
    const run = await execa('bash', ['-c', `node "$0" dump /dev/stderr --socket "$1" 2> "$2"`, TOONDB_BIN, daemon().socketPath, file], { reject: false });
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toBe(`dumped ${KEYS} keys to /dev/stderr`);
    expectWholeDump(readFileSync(file), KEYS);
  });

  // Review: the temporary name was FILE plus a suffix, past the 255-byte name limit for a
  // name that was itself legal.
  it('dumps to a file whose name is as long as names may be', async () => {
    await fill();
    const dir = makeTempDir();
    const file = join(dir, 'd'.repeat(250));
    const dumped = await toondb(['dump', file, ...socket()]);
    expect(dumped.exitCode, text(dumped.stderr)).toBe(0);
    expectWholeDump(readFileSync(file), KEYS);
    expect(readdirSync(dir)).toEqual(['d'.repeat(250)]);
  });

  // Review: bytes after the trailer were ignored when they made no whole frame.
  it('refuses a dump with bytes after its trailer', async () => {
    await fill();
    const dir = makeTempDir();
    const file = join(dir, 'k.dump');
    expect((await toondb(['dump', file, ...socket()])).exitCode).toBe(0);
    for (const extra of ['x', '\0\0\0', 'hello world\n']) {
      writeFileSync(join(dir, 'extra.dump'), Buffer.concat([readFileSync(file), Buffer.from(extra)]));
      const loaded = await toondb(['load', join(dir, 'extra.dump'), ...socket()]);
      expect(loaded.exitCode).toBe(4);
      expect(text(loaded.stderr)).toMatch(/^toondb: INVALID_ARGUMENT: .* is not a valid toondb dump: .*bytes after the trailer/);
    }
  });

  // Review: any stdout error but EPIPE was rethrown from its listener: a stack trace, and exit
  // 1, which means "key not found".
  it.skipIf(!existsSync('/dev/full'))('fails a full stdout with one coded line and exit 4', async () => {
    await fill();
    for (const args of [['get', 'k0'], ['scan'], ['dump', '-']]) {
      const run = await execa('bash', ['-c', `node "$0" "$@" > /dev/full`, TOONDB_BIN, ...args, ...socket()], { reject: false });
      expect(run.exitCode, args.join(' ')).toBe(4);
      expect(run.stderr, args.join(' ')).toMatch(/^toondb: \w+: .*ENOSPC/);
      expect(run.stderr.split('\n')).toHaveLength(1);
    }
  });

  // Review: a streamed dump whose reader stalled past the daemon's cursor idle limit failed
  // with a bare "cursor N is not open on this connection".
  it('says why a streamed dump stopped when its reader stalled past the cursor idle limit', async () => {
    const idle = await startDaemon({ config: { limits: { cursorIdleMsMax: 1_000 } } });
    try {
      const client = await IpcClient.connect(idle.socketPath);
      // More than the daemon reads ahead of a cursor (16 MiB), so the scan still needs its cursor.
      for (let b = 0; b < 24; b++) {
        await client.putBatch(Array.from({ length: 1_000 }, (_, i) => [`stall/${b}/${i}`, 'x'.repeat(1_000)] as [string, string]));
      }
      await client.close();
      const run = await execa('bash', ['-c', 'node "$0" dump - --socket "$1" | (sleep 4; cat > /dev/null); exit ${PIPESTATUS[0]}', TOONDB_BIN, idle.socketPath], { reject: false });
      expect(run.exitCode).toBe(4);
      expect(run.stderr).toMatch(/^toondb: CURSOR_NOT_FOUND: the dump to stdout stopped: its reader took no bytes for longer than the daemon keeps an idle cursor \(cursorIdleMsMax, 1000 ms\)/);
    } finally {
      await idle.dispose();
    }
  }, 30_000);

  it('removes its temporary file when interrupted, and dies of the signal', async () => {
    const big = await startDaemon();
    try {
      const client = await IpcClient.connect(big.socketPath);
      for (let b = 0; b < BIG_BATCHES; b++) {
        await client.putBatch(Array.from({ length: BIG_BATCH_ITEMS }, (_, i) => [`big/${b}/${i}`, 'x'.repeat(BIG_VALUE_BYTES)] as [string, string]));
      }
      await client.close();
      let interrupted = 0;
      for (let attempt = 0; attempt < INTERRUPT_ATTEMPTS && interrupted === 0; attempt++) {
        const dir = makeTempDir();
        const file = join(dir, 'big.dump');
        const proc = execa('node', [TOONDB_BIN, 'dump', file, '--socket', big.socketPath], { reject: false, stdin: 'ignore' });
        const temporary = () => readdirSync(dir).filter((name) => name.startsWith('.toondb-dump-'));
        while (temporary().length === 0 && proc.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 1));
        proc.kill('SIGINT');
        const result = await proc;
        expect(temporary()).toEqual([]);
        if (!existsSync(file)) {
          expect(result.signal).toBe('SIGINT');
          interrupted += 1;
        }
      }
      expect(interrupted, `a dump interrupted before it completed, in ${INTERRUPT_ATTEMPTS} attempts`).toBe(1);
    } finally {
      await big.dispose();
    }
  });
});
