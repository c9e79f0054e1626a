// A daemon started inside another Node process (Daemon.start, as tests and embedders do) must
// leave nothing behind once stop() resolves: regression, a 2 s shutdown timer (the flush wait
// raced against the listener's close) was never cancelled and kept the process alive.
import { execa } from 'execa';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { makeTempDir } from '../helpers/temp-dir.js';

const DAEMON_MODULE = pathToFileURL(join(import.meta.dirname, '../../dist/daemon/index.js')).href;

const EMBEDDER = `
import { Daemon, createLogger, resolveConfig } from ${JSON.stringify(DAEMON_MODULE)};
const dir = process.env.DIR;
const config = resolveConfig({ socket: dir + '/s.sock', dataDir: dir + '/data', logLevel: 'warn' });
const daemon = await Daemon.start(config, createLogger(config));
await daemon.stop('test');
const { writeFileSync } = await import('node:fs');
setImmediate(() => writeFileSync(dir + '/active.json', JSON.stringify(process.getActiveResourcesInfo())));
`;

describe('an embedded daemon', () => {
  it('holds no timer or handle once stop() resolves', async () => {
    const dir = makeTempDir();
    // Output goes to files: a piped stdout or stderr would be a handle of its own.
    const stderrFile = join(dir, 'stderr.log');
    const stderrFd = openSync(stderrFile, 'w');
    const run = await execa('node', ['--input-type=module', '-e', EMBEDDER], {
      env: { DIR: dir }, stdio: ['ignore', 'ignore', stderrFd], timeout: 30_000, reject: false,
    }).finally(() => closeSync(stderrFd));
    expect(run.exitCode, readFileSync(stderrFile, 'utf8')).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, 'active.json'), 'utf8'))).toEqual([]);
  });
});
