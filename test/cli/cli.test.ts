// The admin CLI as a user runs it: compiled bin, real daemon, exit codes and output.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { startDaemon, makeTempDir, type TestDaemon } from '../helpers/daemon.js';
import { TOONDB_BIN } from '../helpers/paths.js';
import { join } from 'node:path';

const toondb = (args: string[], env: Record<string, string> = {}) =>
  execa('node', [TOONDB_BIN, ...args], { reject: false, env, stdin: 'ignore' });

describe('toondb CLI', () => {
  let daemon: TestDaemon;
  beforeAll(async () => {
    daemon = await startDaemon();
  });
  afterAll(async () => {
    await daemon?.dispose();
  });

  it('pings the daemon', async () => {
    const result = await toondb(['ping', '--socket', daemon.socketPath]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toMatch(/^PONG from toondbd \d+\.\d+\.\d+ in \d+\.\d+ ms$/);
  });

  it('honours TOONDB_SOCKET', async () => {
    const result = await toondb(['ping'], { TOONDB_SOCKET: daemon.socketPath });
    expect(result.exitCode).toBe(0);
  });

  it('prints stats as a table and as JSON with real numbers', async () => {
    const table = await toondb(['stats', '--socket', daemon.socketPath]);
    expect(table.exitCode).toBe(0);
    expect(table.stdout).toMatch(/connections\s+\d+ active/);
    const json = await toondb(['stats', '--json', '--socket', daemon.socketPath]);
    const stats = JSON.parse(json.stdout);
    expect(stats.pid).toBe(daemon.pid);
    expect(stats.requests.total).toBeGreaterThan(0);
    expect(stats.durability).toBe('sync');
  });

  it('puts, gets and deletes from the command line', async () => {
    expect((await toondb(['put', 'cli-key', 'cli value', '--socket', daemon.socketPath])).stdout).toBe('OK');
    expect((await toondb(['get', 'cli-key', '--socket', daemon.socketPath])).stdout).toBe('cli value');
    expect((await toondb(['del', 'cli-key', '--socket', daemon.socketPath])).exitCode).toBe(0);
    expect((await toondb(['get', 'cli-key', '--socket', daemon.socketPath])).exitCode).toBe(1);
  });

  it('exits non-zero with one clear line when no daemon is reachable', async () => {
    const socket = join(makeTempDir(), 'none.sock');
    const result = await toondb(['ping', '--socket', socket]);
    expect(result.exitCode).toBe(3);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toContain(socket);
  });
});
