// The admin CLI as a user runs it: compiled bin, real daemon, exit codes and output.
import { describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { IpcClient } from '../../ipc-client/index.js';
import { startDaemon, suiteDaemon } from '../helpers/daemon.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { TOONDB_BIN, TOONDBD_BIN } from '../helpers/paths.js';
import { spawn } from 'node:child_process';
import { join } from 'node:path';

const toondb = (args: string[], env: Record<string, string> = {}) =>
  execa('node', [TOONDB_BIN, ...args], { reject: false, env, stdin: 'ignore' });

describe('toondb CLI', () => {
  const daemon = suiteDaemon();

  it('prints its version, the package version the daemon reports too', async () => {
    const result = await toondb(['--version']);
    expect(result.exitCode).toBe(0);
    const ping = await toondb(['ping', '--socket', daemon().socketPath]);
    expect(ping.stdout).toContain(`toondbd ${result.stdout} in`);
  });

  it('pings the daemon', async () => {
    const result = await toondb(['ping', '--socket', daemon().socketPath]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toMatch(/^PONG from toondbd \d+\.\d+\.\d+ in \d+\.\d+ ms$/);
  });

  it('honours TOONDB_SOCKET', async () => {
    const result = await toondb(['ping'], { TOONDB_SOCKET: daemon().socketPath });
    expect(result.exitCode).toBe(0);
  });

  it('refuses a daemon whose socket owner TOONDB_SERVER_UID does not name, and honours one it does', async () => {
    const self = process.getuid?.() ?? 0;
    const stranger = { TOONDB_SERVER_UID: String(self + 1) };
    const refused = await toondb(['ping', '--socket', daemon().socketPath], stranger);
    expect(refused.exitCode).toBe(4);
    expect(refused.stderr).toContain(`SERVER_NOT_TRUSTED: the socket ${daemon().socketPath} is owned by uid ${self}`);
    const status = await execa('node', [TOONDBD_BIN, 'status', '--socket', daemon().socketPath], { reject: false, env: stranger, stdin: 'ignore' });
    expect(status.exitCode, 'something runs there: not "not running" (3)').toBe(1);
    expect(status.stderr).toContain('SERVER_NOT_TRUSTED');
    expect((await toondb(['ping', '--socket', daemon().socketPath], { TOONDB_SERVER_UID: String(self) })).exitCode).toBe(0);
  });

  it('prints stats as a table and as JSON with real numbers', async () => {
    const table = await toondb(['stats', '--socket', daemon().socketPath]);
    expect(table.exitCode).toBe(0);
    expect(table.stdout).toMatch(/connections\s+\d+ active/);
    expect(table.stdout).toMatch(/cursors\s+0 open, \d+ batches read ahead, 0 bytes held ahead/);
    const json = await toondb(['stats', '--json', '--socket', daemon().socketPath]);
    const stats = JSON.parse(json.stdout);
    expect(stats.pid).toBe(daemon().pid);
    expect(stats.cursors).toEqual({ open: 0, readAhead: expect.any(Number), readAheadBytes: 0 });
    expect(stats.requests.total).toBeGreaterThan(0);
    expect(stats.durability).toBe('sync');
  });

  it('puts, gets and deletes from the command line', async () => {
    expect((await toondb(['put', 'cli-key', 'cli value', '--socket', daemon().socketPath])).stdout).toBe('OK');
    expect((await toondb(['get', 'cli-key', '--socket', daemon().socketPath])).stdout).toBe('cli value');
    expect((await toondb(['del', 'cli-key', '--socket', daemon().socketPath])).exitCode).toBe(0);
    expect((await toondb(['get', 'cli-key', '--socket', daemon().socketPath])).exitCode).toBe(1);
  });

  it('scans a prefix as text, JSON, reversed and limited', async () => {
    for (const k of ['scan/a', 'scan/b', 'scan/c']) await toondb(['put', k, `value of ${k}`, '--socket', daemon().socketPath]);
    const plain = await toondb(['scan', 'scan/', '--socket', daemon().socketPath]);
    expect(plain.stdout.split('\n')).toEqual(['scan/a\tvalue of scan/a', 'scan/b\tvalue of scan/b', 'scan/c\tvalue of scan/c']);
    const reversed = await toondb(['scan', 'scan/', '--reverse', '--limit', '2', '--json', '--socket', daemon().socketPath]);
    expect(reversed.stdout.split('\n').map((l) => JSON.parse(l).key)).toEqual(['scan/c', 'scan/b']);
  });

  it('reads and writes binary keys and values with --hex and --base64', async () => {
    expect((await toondb(['put', '00ff', '0001fe', '--hex', '--socket', daemon().socketPath])).exitCode).toBe(0);
    expect((await toondb(['get', '00ff', '--hex', '--socket', daemon().socketPath])).stdout).toBe('0001fe');
    expect((await toondb(['get', 'AP8=', '--base64', '--socket', daemon().socketPath])).stdout).toBe('AAH+');
    // Without a flag, non-text bytes print as marked hex instead of raw control bytes.
    expect((await toondb(['get', 'AP8=', '--base64', '--socket', daemon().socketPath])).stdout).not.toContain('\u0000');
  });

  // The expiry is read back through an in-process client, and the short TTL's end is polled
  // for: no TTL has to outlast a CLI process start.
  it('stores a key with --ttl that expires', async () => {
    const client = await IpcClient.connect(daemon().socketPath);
    try {
      const before = Date.now();
      expect((await toondb(['put', 'ttl-cli/long', 'x', '--ttl', '3600', '--socket', daemon().socketPath])).exitCode).toBe(0);
      const after = Date.now();
      const [[, , expiresAtMs]] = await client.scan('ttl-cli/long', { withExpiry: true }).toArray();
      expect(expiresAtMs).toBeGreaterThanOrEqual(before + 3_600_000);
      expect(expiresAtMs).toBeLessThanOrEqual(after + 3_600_000);
      expect((await toondb(['put', 'ttl-cli/short', 'x', '--ttl', '0.2', '--socket', daemon().socketPath])).exitCode).toBe(0);
      await expect.poll(() => client.get('ttl-cli/short'), { timeout: 10_000 }).toBeNull();
      expect((await toondb(['get', 'ttl-cli/short', '--socket', daemon().socketPath])).exitCode).toBe(1);
    } finally {
      await client.close();
    }
  });

  it('checkpoints', async () => {
    const result = await toondb(['checkpoint', '--socket', daemon().socketPath]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toMatch(/^checkpoint at lsn \d+ in \d+\.\d ms$/);
  });

  it('redraws stats with --watch until stopped', async () => {
    const proc = execa('node', [TOONDB_BIN, 'stats', '--json', '--watch', '0.2', '--socket', daemon().socketPath], { reject: false, buffer: false });
    let stdout = '';
    proc.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const complete = () => stdout.split('\n').slice(0, -1).filter(Boolean);
    await expect.poll(() => complete().length, { timeout: 30_000 }).toBeGreaterThanOrEqual(2);
    proc.kill('SIGINT');
    await proc;
    const lines = complete();
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(JSON.parse(lines[1]).uptimeMs).toBeGreaterThan(JSON.parse(lines[0]).uptimeMs);
  });

  // DESIGN.md has `toondb stats [--json] [--watch]`: a bare --watch was a usage error.
  it('watches every 2 s with a bare --watch, also before another option', async () => {
    const proc = execa('node', [TOONDB_BIN, 'stats', '--watch', '--json', '--socket', daemon().socketPath], { reject: false, buffer: false });
    try {
      let stdout = '';
      proc.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      const complete = () => stdout.split('\n').slice(0, -1).filter(Boolean);
      await expect.poll(() => complete().length, { timeout: 30_000 }).toBeGreaterThanOrEqual(1);
      expect(JSON.parse(complete()[0]).uptimeMs).toBeGreaterThan(0); // --json applied
      expect(proc.exitCode).toBeNull(); // still watching
    } finally {
      proc.kill('SIGINT');
    }
    expect((await proc).exitCode).not.toBe(2);
  });

  it('keeps watching stats across a daemon restart', async () => {
    const own = await startDaemon();
    const proc = execa('node', [TOONDB_BIN, 'stats', '--json', '--watch', '0.1', '--socket', own.socketPath], { reject: false });
    try {
      let stdout = '';
      proc.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      const rounds = (n: number) => expect.poll(() => stdout.split('\n').filter(Boolean).length, { timeout: 20_000 }).toBeGreaterThanOrEqual(n);
      await rounds(1);
      await own.kill();
      await new Promise((resolve) => setTimeout(resolve, 300));
      await own.start();
      const before = stdout.split('\n').filter(Boolean).length;
      await rounds(before + 1);
      proc.kill('SIGINT');
      const result = await proc;
      const printed = stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { uptimeMs: number });
      // The new daemon's uptime starts again from zero.
      expect(printed.some((stats, i) => i > 0 && stats.uptimeMs < printed[i - 1].uptimeMs)).toBe(true);
      expect(String(result.stderr)).toMatch(/retrying every 0\.1 s/);
    } finally {
      proc.kill('SIGKILL'); // a no-op once it exited; a watcher left by a failure must not run on
      await own.dispose();
    }
  });

  it('dumps every key and loads them into an empty daemon', async () => {
    // Its own keys (the suite's other tests add more): binary, an empty value, a TTL, plain text.
    const binary = Buffer.from([0, 1, 2, 255]);
    await toondb(['put', binary.toString('hex'), 'ff00', '--hex', '--socket', daemon().socketPath]);
    await toondb(['put', 'empty-value', '', '--socket', daemon().socketPath]);
    await toondb(['put', 'dump/ttl', 'soon gone', '--ttl', '3600', '--socket', daemon().socketPath]);
    for (const n of [1, 2, 3]) await toondb(['put', `dump/${n}`, `v${n}`, '--socket', daemon().socketPath]);
    const file = join(makeTempDir(), 'all.dump');
    const dumped = await toondb(['dump', file, '--socket', daemon().socketPath]);
    expect(dumped.exitCode).toBe(0);
    expect(dumped.stderr).toBe(''); // no progress bar when stderr is not a terminal
    const source = (await toondb(['scan', '--json', '--base64', '--socket', daemon().socketPath])).stdout.split('\n').length;
    expect(source).toBeGreaterThan(5);
    const fresh = await startDaemon();
    try {
      const loaded = await toondb(['load', file, '--socket', fresh.socketPath]);
      expect(loaded.exitCode).toBe(0);
      const before = (await toondb(['scan', '--json', '--base64', '--socket', daemon().socketPath])).stdout;
      const after = (await toondb(['scan', '--json', '--base64', '--socket', fresh.socketPath])).stdout;
      expect(after).toBe(before);
      expect(after.split('\n')).toHaveLength(source);
      expect(dumped.stdout).toBe(`dumped ${source} keys to ${file}`);
      expect(loaded.stdout).toBe(`loaded ${source} keys from ${file}`);
    } finally {
      await fresh.dispose();
    }
  });

  it('refuses a truncated dump with a clear error', async () => {
    const file = join(makeTempDir(), 'cut.dump');
    await toondb(['dump', file, '--socket', daemon().socketPath]);
    const { truncateSync, statSync } = await import('node:fs');
    truncateSync(file, statSync(file).size - 3);
    const fresh = await startDaemon();
    try {
      const result = await toondb(['load', file, '--socket', fresh.socketPath]);
      expect(result.exitCode).toBe(4);
      expect(result.stderr).toMatch(/not a valid toondb dump: truncated/);
    } finally {
      await fresh.dispose();
    }
  });

  // Regressions from review: load split batches by item count only (BATCH_TOO_LARGE halfway
  // into a daemon with a smaller batchBytesMax), a flipped byte in a batch loaded silently, and
  // a dump wrote its file in place (a failed dump destroyed the previous one).
  it('loads into a daemon with smaller batches, refuses a damaged batch, and writes dumps whole', async () => {
    for (let i = 0; i < 20; i++) await toondb(['put', `big/${i}`, 'x'.repeat(900), '--socket', daemon().socketPath]);
    const dir = makeTempDir();
    const file = join(dir, 'all.dump');
    expect((await toondb(['dump', file, '--socket', daemon().socketPath])).exitCode).toBe(0);
    const { readdirSync, readFileSync, writeFileSync } = await import('node:fs');
    expect(readdirSync(dir)).toEqual(['all.dump']); // written to a temporary file, then renamed
    const small = await startDaemon({ config: { limits: { keyBytesMax: 1024, valueBytesMax: 1024, batchBytesMax: 4096 } } });
    try {
      const loaded = await toondb(['load', file, '--socket', small.socketPath]);
      expect(loaded.exitCode, loaded.stderr).toBe(0);
      const bytes = readFileSync(file);
      const at = bytes.indexOf('x'.repeat(900));
      bytes[at + 100] ^= 0x01;
      writeFileSync(join(dir, 'bad.dump'), bytes);
      const refused = await toondb(['load', join(dir, 'bad.dump'), '--socket', small.socketPath]);
      expect(refused.exitCode).toBe(4);
      expect(refused.stderr).toMatch(/fails its checksum after 0 entries \(nothing was written\)/);
    } finally {
      await small.dispose();
    }
    const failed = await toondb(['dump', join(dir, 'no-such-dir', 'x.dump'), '--socket', daemon().socketPath]);
    expect(failed.exitCode).toBe(4);
    expect(failed.stderr.trim()).toMatch(/^toondb: INVALID_ARGUMENT: cannot write .*x\.dump: ENOENT$/);
  });

  // Regressions from review: a load that failed partway said '(nothing was written)' after
  // writing whole putBatch calls of the file's batch, and named the refused entry by its index
  // in one of those calls; a dump asked for scan batches larger than a daemon may be
  // configured to send (scanBatchItemsMax) and failed.
  it('names the entry a load refuses by its number in the file and says what it wrote; dumps a daemon with small scan batches', async () => {
    const source = await startDaemon({ config: { limits: { scanBatchItemsMax: 500 } } });
    const target = await startDaemon({ config: { limits: { batchItemsMax: 100, keyBytesMax: 1000, valueBytesMax: 1000, batchBytesMax: 4096 } } });
    try {
      const client = await IpcClient.connect(source.socketPath);
      const keys = Array.from({ length: 1500 }, (_, i) => `k${String(i).padStart(4, '0')}`);
      await client.putBatch(keys.slice(0, 1000).map((key) => [key, 'v'] as [string, string]));
      await client.putBatch(keys.slice(1000, 1499).map((key) => [key, 'v'] as [string, string]));
      await client.put(keys[1499], 'x'.repeat(2000)); // over the target's valueBytesMax
      await client.close();
      const file = join(makeTempDir(), 'x.dump');
      const dumped = await toondb(['dump', file, '--socket', source.socketPath]);
      expect(dumped.exitCode, dumped.stderr).toBe(0);
      const loaded = await toondb(['load', file, '--socket', target.socketPath]);
      expect(loaded.exitCode).toBe(4);
      // The file's first batch (1000 entries) went in ten putBatch calls; the second was refused
      // before anything of it was sent.
      expect(loaded.stderr).toMatch(/VALUE_TOO_LARGE: .*x\.dump: entry 1500 has a value of 2000 bytes, over the daemon's limit of 1000 \(1000 entries were written before it\)/);
      const check = await IpcClient.connect(target.socketPath);
      expect(await check.scan('').toArray()).toHaveLength(1000);
      await check.close();
    } finally {
      await source.dispose();
      await target.dispose();
    }
  });

  // Regression: `toondb scan | head -1` died with an unhandled EPIPE stack and exit 1.
  it('exits quietly when the reader of its output goes away', async () => {
    const client = await IpcClient.connect(daemon().socketPath);
    await client.putBatch(Array.from({ length: 5_000 }, (_, i) => [`pipe/${i}`, 'v'.repeat(100)] as [string, string]));
    await client.close();
    const scan = spawn('node', [TOONDB_BIN, 'scan', 'pipe/', '--socket', daemon().socketPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    scan.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    await new Promise((resolve) => scan.stdout.once('data', resolve));
    scan.stdout.destroy(); // as head does after its first line
    const code = await new Promise((resolve) => scan.on('exit', resolve));
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
  });

  it('refuses malformed --hex, --base64 and numeric options with a usage error', async () => {
    // Also (review): non-canonical base64 ('AB==' read as 0x00, like 'AA=='), and --hex with
    // --base64 (hex silently won).
    for (const args of [['put', 'abc', '01', '--hex'], ['get', 'YQ', '--base64'], ['get', 'AB==', '--base64'], ['get', '00', '--hex', '--base64'],
      ['put', 'k', 'v', '--ttl', 'soon'], ['scan', '--limit', 'all'], ['stats', '--watch', 'abc']]) {
      const result = await toondb([...args, '--socket', daemon().socketPath]);
      expect(result.exitCode, args.join(' ')).toBe(2);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
    }
  });

  it('prints text that looks like hex as hex, so 0x… output is always hex', async () => {
    await toondb(['put', '0x00', 'text key', '--socket', daemon().socketPath]);
    await toondb(['put', '00', Buffer.from('binary key').toString('hex'), '--hex', '--socket', daemon().socketPath]);
    const lines = (await toondb(['scan', '', '--socket', daemon().socketPath])).stdout.split('\n');
    expect(lines).toContain('0x00\tbinary key');
    expect(lines).toContain('0x30783030\ttext key');
  });

  it('exits non-zero with one clear line when no daemon is reachable', async () => {
    const socket = join(makeTempDir(), 'none.sock');
    const result = await toondb(['ping', '--socket', socket]);
    expect(result.exitCode).toBe(3);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toContain(socket);
  });
});
