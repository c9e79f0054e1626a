// Keys and values as text at the CLI's edges: an argument whose bytes are not UTF-8 is refused
// (Node would have read them as U+FFFD and stored that). Real daemon, real CLI.
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { suiteDaemon } from '../helpers/daemon.js';
import { TOONDB_BIN } from '../helpers/paths.js';

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
      expect(result.stderr, script).toMatch(/^toondb: .*is not valid UTF-8 .*--hex or --base64/);
    }
    const client = await IpcClient.connect(daemon().socketPath);
    expect(await client.get('bad-value')).toBeNull();
    expect(await client.scan('bad-key').toArray()).toEqual([]);
    await client.close();
  });
});
