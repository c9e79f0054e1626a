// The start-up lock of a socket path is one file whatever spelling names the socket (a
// symlinked directory, `..`), so starts on one socket always take turns. Unit test of
// daemon/socket-path.ts; the race between two real daemons is in test/service/operator.test.ts.
import { mkdirSync, realpathSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startLockPath } from '../../daemon/socket-path.js';
import { makeTempDir } from '../helpers/temp-dir.js';

describe('startLockPath', () => {
  it('is the same for every spelling of one socket path, and beside the socket', async () => {
    const dir = realpathSync(makeTempDir());
    mkdirSync(join(dir, 'real'));
    symlinkSync(join(dir, 'real'), join(dir, 'link'));
    const expected = join(dir, 'real', 's.sock.lock');
    expect(await startLockPath(join(dir, 'real', 's.sock'))).toBe(expected);
    expect(await startLockPath(join(dir, 'link', 's.sock'))).toBe(expected);
    expect(await startLockPath(join(dir, 'link', '..', 'real', 's.sock'))).toBe(expected);
  });

  it('fails for a socket whose directory does not exist', async () => {
    await expect(startLockPath(join(makeTempDir(), 'missing', 's.sock'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
