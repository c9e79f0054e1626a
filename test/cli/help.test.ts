// What toondb's help and options offer: --hex / --base64 only on the commands that read or
// print keys and values, and --socket before or after the command. Real CLI processes (and a
// real daemon to ping).
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SOCKET_PATH } from '../../ipc-client/index.js';
import { suiteDaemon } from '../helpers/daemon.js';
import { TOONDB_BIN } from '../helpers/paths.js';

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
      expect(refused.stderr.split('\n')[0], name).toBe("toondb: INVALID_ARGUMENT: unknown option '--hex'");
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
});
