// What the two programs' help offers: --hex / --base64 only on the commands that read or print
// keys and values, --socket before or after the command, every exit code of `toondbd status`,
// and the defaults the daemon really uses (from the constants it uses them from). Real CLI
// processes (and a real daemon to ping).
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SOCKET_PATH } from '../../ipc-client/index.js';
import { SYNC_INTERVAL_MS_DEFAULT } from '../../protocol/limits.js';
import { suiteDaemon } from '../helpers/daemon.js';
import { TOONDB_BIN, TOONDBD_BIN } from '../helpers/paths.js';

const run = (bin: string, args: string[]) => execa('node', [bin, ...args], { reject: false, stdin: 'ignore' });

const WITH_ENCODINGS = ['get', 'put', 'del', 'scan'];
const WITHOUT_ENCODINGS = ['ping', 'stats', 'checkpoint', 'dump', 'load'];

describe('CLI help and options', () => {
  const daemon = suiteDaemon();

  it('offers --hex and --base64 only where keys or values are read or printed', async () => {
    for (const name of WITH_ENCODINGS) {
      const help = await run(TOONDB_BIN, [name, '--help']);
      expect(help.stdout, name).toMatch(/--hex/);
      expect(help.stdout, name).toMatch(/--base64/);
    }
    for (const name of WITHOUT_ENCODINGS) {
      const help = await run(TOONDB_BIN, [name, '--help']);
      expect(help.stdout, name).not.toMatch(/--hex|--base64/);
      expect(help.stdout, name).toMatch(/--socket/); // shown as a global option
      const refused = await run(TOONDB_BIN, [name, ...(name === 'dump' || name === 'load' ? ['f'] : []), '--hex', '--socket', daemon().socketPath]);
      expect(refused.exitCode, name).toBe(2);
      expect(refused.stderr, name).toMatch(/^toondb: INVALID_ARGUMENT: unknown option '--hex'( \(Did you mean --help\?\))? \(--help shows the usage\)$/);
    }
  });

  it('takes --socket before the command as well as after it', async () => {
    const before = await run(TOONDB_BIN, ['--socket', daemon().socketPath, 'ping']);
    expect(before.exitCode, before.stderr).toBe(0);
    expect(before.stdout).toMatch(/^PONG from toondbd /);
    const after = await run(TOONDB_BIN, ['ping', '--socket', daemon().socketPath]);
    expect(after.exitCode, after.stderr).toBe(0);
    const help = await run(TOONDB_BIN, ['--help']);
    expect(help.stdout).toContain(`--socket <path>`);
    expect(help.stdout).toContain(DEFAULT_SOCKET_PATH);
  });

  it('lists every exit code of toondbd status, and the defaults toondbd uses', async () => {
    const status = (await run(TOONDBD_BIN, ['status', '--help'])).stdout.replace(/\s+/g, ' ');
    for (const meaning of ['0 if a daemon answers', '1 if something holds the socket', '2 for a usage error', '3 if none runs there']) expect(status).toContain(meaning);
    const start = (await run(TOONDBD_BIN, ['start', '--help'])).stdout.replace(/\s+/g, ' ');
    expect(start).toContain('~/.local/share/toondb');
    expect(start).toContain('(default: sync)');
    expect(start).toContain(`(default: ${SYNC_INTERVAL_MS_DEFAULT})`);
    expect(start).toContain('(default: info)');
    expect(start).toContain(DEFAULT_SOCKET_PATH);
    const stop = (await run(TOONDBD_BIN, ['stop', '--help'])).stdout.replace(/\s+/g, ' ');
    expect(stop).toContain('(default: 60000)');
  });
});
