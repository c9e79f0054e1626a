// Configuration: flags over file, and every setting checked before the daemon starts.
// Regressions from review: a misspelt key in the file was dropped silently (an allow-list
// that is not applied), list items that are not numbers became uid 0 (`--allow-uid 1000,`),
// a single number was refused, empty paths resolved to the current directory, and a path
// given as bytes that are not UTF-8 (read by Node as U+FFFD) named another directory.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readConfigFile, resolveConfig } from '../../daemon/config.js';
import { CONNECTIONS_MAX } from '../../protocol/limits.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const env = { TOONDB_SOCKET: '/tmp/config-test.sock', TOONDB_DATA_DIR: '/tmp/config-test-data' };
const refusal = (run: () => unknown) => {
  try {
    run();
  } catch (error) {
    return (error as { code: string; message: string });
  }
  throw new Error('accepted');
};

describe('daemon configuration', () => {
  it('refuses a config file with a setting it does not know, naming it', () => {
    const file = join(makeTempDir(), 'config.json');
    writeFileSync(file, JSON.stringify({ socketGroup: 'staff', allowUids: [1000] }));
    expect(refusal(() => readConfigFile(file))).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('unknown setting "allowUids"') });
    writeFileSync(file, JSON.stringify({ socketGroup: 'staff', allowUid: [1000] }));
    expect(readConfigFile(file)).toEqual({ socketGroup: 'staff', allowUid: [1000] });
  });

  // Review: relative paths in the file resolved against the daemon's working directory (`/`
  // under systemd), and `~` named a directory called `~` there.
  it('takes relative socket and data dir paths in a config file from the file\'s directory, and refuses ~', () => {
    const dir = makeTempDir();
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ socket: 'run/s.sock', dataDir: '../data', logLevel: 'info' }));
    expect(readConfigFile(file)).toEqual({ socket: join(dir, 'run', 's.sock'), dataDir: join(dir, '..', 'data'), logLevel: 'info' });
    writeFileSync(file, JSON.stringify({ socket: '/abs/s.sock' }));
    expect(readConfigFile(file)).toEqual({ socket: '/abs/s.sock' });
    for (const dataDir of ['~/toondb', '~', '~toondb/data']) {
      writeFileSync(file, JSON.stringify({ dataDir }));
      expect(refusal(() => readConfigFile(file))).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining(`dataDir "${dataDir}": ~ is not expanded here`) });
    }
  });

  // Regression (review): `"limits": 5` started with the defaults (Object.entries(5) is empty),
  // and `"limits": "abc"` was refused as `unknown limit "0"`.
  it('refuses limits that are not an object of names to integers', () => {
    for (const limits of [5, 'abc', [1, 2], true]) {
      expect(refusal(() => resolveConfig({ limits } as never, {}, env))).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^limits must be an object/) });
    }
    // Names every object inherits are not limits (review: toString and valueOf were kept and
    // announced in hello, and __proto__ was refused with a garbled range).
    for (const name of ['toString', 'valueOf', '__proto__', 'hasOwnProperty']) {
      const limits = JSON.parse(`{"${name}": 5}`);
      expect(refusal(() => resolveConfig({}, { limits }, env)), name).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining(`unknown limit "${name}"`) });
    }
    expect(resolveConfig({ limits: { txnIdleMsMax: 1000 } }, {}, env).limits.txnIdleMsMax).toBe(1000);
    expect(resolveConfig({}, {}, env).limits.txnIdleMsMax).toBeGreaterThan(1000);
  });

  it('reads id lists from a flag, an array or one number, and refuses items that are not ids', () => {
    expect(resolveConfig({ allowUid: '1000, 1001' }, {}, env).allowUids).toEqual([1000, 1001]);
    expect(resolveConfig({}, { allowUid: [1000] }, env).allowUids).toEqual([1000]);
    expect(resolveConfig({}, { allowGid: 50 as unknown as number[] }, env).allowGids).toEqual([50]);
    for (const bad of ['1000,', '', ' ', 'abc', '1e3']) {
      expect(refusal(() => resolveConfig({ allowUid: bad }, {}, env)), JSON.stringify(bad)).toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    for (const bad of [[null], [true], ['']]) {
      expect(refusal(() => resolveConfig({}, { allowUid: bad as unknown as number[] }, env)), JSON.stringify(bad)).toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
  });

  it('refuses empty paths and numbers instead of taking them as the current directory or 0', () => {
    expect(refusal(() => resolveConfig({ dataDir: '' }, {}, env))).toMatchObject({ message: expect.stringContaining('data dir must be a non-empty string') });
    expect(refusal(() => resolveConfig({ socket: '' }, {}, env))).toMatchObject({ message: expect.stringContaining('socket path must be a non-empty string') });
    expect(refusal(() => resolveConfig({ socketGroup: '' }, {}, env))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(refusal(() => resolveConfig({ rowCacheMb: '' }, {}, env))).toMatchObject({ message: expect.stringContaining('row cache (MiB) must be an integer') });
    expect(resolveConfig({ rowCacheMb: '0' }, {}, env).rowCacheMib).toBe(0);
  });

  it('takes connectionsPerUidMax from 1 to CONNECTIONS_MAX, defaulting to no cap beyond connectionsMax', () => {
    expect(resolveConfig({}, {}, env).connectionsPerUidMax).toBe(CONNECTIONS_MAX);
    expect(resolveConfig({}, { connectionsPerUidMax: 16 }, env).connectionsPerUidMax).toBe(16);
    for (const bad of [0, CONNECTIONS_MAX + 1, 1.5, '']) {
      expect(refusal(() => resolveConfig({}, { connectionsPerUidMax: bad }, env)), JSON.stringify(bad))
        .toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('connections per uid max') });
    }
  });

  it('refuses a path Node read from bytes that are not UTF-8, wherever it came from', () => {
    const bad = '/tmp/data-\uFFFD';
    const notUtf8 = (name: string) => ({ code: 'INVALID_ARGUMENT', message: expect.stringContaining(`${name} is not valid UTF-8`) });
    expect(refusal(() => resolveConfig({ dataDir: bad }, {}, env))).toMatchObject(notUtf8('data dir'));
    expect(refusal(() => resolveConfig({}, { socket: '/tmp/\uFFFD.sock' }, env))).toMatchObject(notUtf8('socket path'));
    expect(refusal(() => resolveConfig({}, {}, { ...env, TOONDB_DATA_DIR: bad }))).toMatchObject(notUtf8('data dir'));
    expect(refusal(() => resolveConfig({}, {}, { ...env, TOONDB_SOCKET: '/tmp/\uFFFD.sock' }))).toMatchObject(notUtf8('socket path'));
    expect(refusal(() => readConfigFile(join(makeTempDir(), '\uFFFD.json')))).toMatchObject(notUtf8('config file path'));
    expect(resolveConfig({ dataDir: '/tmp/données-日本' }, {}, env).dataDir).toBe('/tmp/données-日本');
  });
});
