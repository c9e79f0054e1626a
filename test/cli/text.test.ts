// Keys and values as text at the CLI's edges: an argument whose bytes are not UTF-8 is refused
// (Node would have read them as U+FFFD and stored that, or named another file), and text that would steer the terminal
// (C1 controls such as CSI, bidirectional overrides) prints as hex. Real daemon, real CLI.
import { readdirSync } from 'node:fs';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { suiteDaemon } from '../helpers/daemon.js';
import { TOONDB_BIN } from '../helpers/paths.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const toondb = (args: string[]) => execa('node', [TOONDB_BIN, ...args], { reject: false, stdin: 'ignore' });

describe('toondb text handling', () => {
  const daemon = suiteDaemon();

  it('refuses a key or value argument that is not UTF-8, pointing to --hex and --base64', async () => {
    // Through a shell: Node's own spawn can only pass UTF-8 arguments.
    const shell = (script: string) => execa('bash', ['-c', script, TOONDB_BIN, daemon().socketPath], { reject: false, stdin: 'ignore' });
    for (const script of [
      `node "$0" put bad-value "$(printf 'a\\xff\\xfe')" --socket "$1"`,
      `node "$0" put "$(printf 'bad-key\\xff')" v --socket "$1"`,
      `node "$0" get "$(printf '\\xc3')" --socket "$1"`,
    ]) {
      const result = await shell(script);
      expect(result.exitCode, script).toBe(2);
      expect(result.stderr, script).toMatch(/^toondb: INVALID_ARGUMENT: (KEY|VALUE) is not valid UTF-8 .*--hex or --base64/);
    }
    const client = await IpcClient.connect(daemon().socketPath);
    expect(await client.get('bad-value')).toBeNull();
    expect(await client.scan('bad-key').toArray()).toEqual([]);
    await client.close();
  });

  it('refuses a dump or load file, or a socket path, that is not UTF-8, and touches no other file', async () => {
    const dir = makeTempDir();
    // Node would read `dump-\xff` as `dump-\uFFFD` and write that file instead.
    const shell = (script: string, extraEnv: Record<string, string> = {}) =>
      execa('bash', ['-c', script, TOONDB_BIN, daemon().socketPath, dir], { reject: false, stdin: 'ignore', env: extraEnv });
    for (const script of [
      `node "$0" dump "$2/$(printf 'dump-\\xff')" --socket "$1"`,
      `node "$0" load "$2/$(printf 'dump-\\xff')" --socket "$1"`,
      `node "$0" ping --socket "$(printf '/tmp/\\xfe.sock')"`,
    ]) {
      const result = await shell(script);
      expect(result.exitCode, script).toBe(2);
      expect(result.stderr, script).toMatch(/^toondb: INVALID_ARGUMENT: (FILE|--socket) is not valid UTF-8 /);
    }
    const fromEnv = await shell(`TOONDB_SOCKET="$(printf '/tmp/\\xfe.sock')" node "$0" ping`);
    expect(fromEnv.exitCode).toBe(2);
    expect(fromEnv.stderr).toMatch(/^toondb: INVALID_ARGUMENT: TOONDB_SOCKET is not valid UTF-8 /);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('prints C1 controls and bidirectional controls as hex, other non-ASCII text as text', async () => {
    const values: [string, string][] = [
      ['c1', 'a\u009b31mred'], // CSI as one code point: a terminal escape without ESC
      ['c1-nel', 'a\u0085b'],
      ['bidi-rlo', 'user\u202Egnp.exe'],
      ['bidi-isolate', 'x\u2066y\u2069'],
      ['bidi-mark', 'x\u200Fy'],
      ['text', 'héllo 日本 ✓'],
    ];
    for (const [key, value] of values) {
      expect((await toondb(['put', Buffer.from(key).toString('hex'), Buffer.from(value).toString('hex'), '--hex', '--socket', daemon().socketPath])).exitCode).toBe(0);
    }
    for (const [key, value] of values) {
      const got = await toondb(['get', key, '--socket', daemon().socketPath]);
      expect(got.stdout, key).toBe(key === 'text' ? value : `0x${Buffer.from(value).toString('hex')}`);
    }
    const scan = await toondb(['scan', 'bidi', '--socket', daemon().socketPath]);
    expect(scan.stdout.split('\n')).toEqual([
      `bidi-isolate\t0x${Buffer.from('x\u2066y\u2069').toString('hex')}`,
      `bidi-mark\t0x${Buffer.from('x\u200Fy').toString('hex')}`,
      `bidi-rlo\t0x${Buffer.from('user\u202Egnp.exe').toString('hex')}`,
    ]);
  });
});
