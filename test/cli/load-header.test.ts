// `toondb load` of a file that is not a dump says so, with a coded error, before writing
// anything: a log file, a 2-byte file, an empty file, another program's MessagePack frame and a
// dump of a version this toondb does not read. Real daemon and CLI processes.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { MessageCodec } from '../../protocol/codec.js';
import { suiteDaemon } from '../helpers/daemon.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { TOONDB_BIN } from '../helpers/paths.js';

const toondb = (args: string[]) => execa('node', [TOONDB_BIN, ...args], { reject: false, stdin: 'ignore' });

describe('toondb load of a file that is not a dump', () => {
  const daemon = suiteDaemon();

  it('refuses each with INVALID_ARGUMENT saying what it is, writing nothing', async () => {
    const dir = makeTempDir();
    const codec = new MessageCodec();
    const cases: [string, Buffer | string, string][] = [
      ['daemon.log', '{"level":30,"time":1732700000000,"msg":"listening"}\n'.repeat(100), 'is not a toondb dump: it does not start with a dump header'],
      ['two-bytes', 'hi', 'is not a toondb dump: 2 bytes, too short for a dump header'],
      ['empty', '', 'is not a toondb dump: it is empty'],
      ['other.msgpack', codec.encode({ format: 'something-else', version: 1 }), 'is not a toondb dump: it does not start with a dump header'],
      ['future.dump', codec.encode({ format: 'toondb-dump', version: 99, createdAt: '', server: '' }),
        'is a toondb dump of format version 99; this toondb reads versions 1, 2, 3'],
    ];
    for (const [name, bytes, why] of cases) {
      writeFileSync(join(dir, name), bytes);
      const result = await toondb(['load', join(dir, name), '--socket', daemon().socketPath]);
      expect(result.exitCode, name).toBe(4);
      expect(result.stderr, name).toBe(`toondb: INVALID_ARGUMENT: ${join(dir, name)} ${why} (nothing was written)`);
    }
    const client = await IpcClient.connect(daemon().socketPath);
    expect(await client.scan('').toArray()).toEqual([]);
    await client.close();
  });
});
