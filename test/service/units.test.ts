// The service files: the systemd unit verifies and its ExecStart really starts the daemon;
// the launchd plist parses and runs the same command line.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { IpcClient } from '../../ipc-client/index.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { REPO_ROOT, TOONDBD_BIN } from '../helpers/paths.js';

const UNIT = readFileSync(join(REPO_ROOT, 'systemd', 'toondbd.service'), 'utf8');
const PLIST = join(REPO_ROOT, 'launchd', 'com.toondb.toondbd.plist');
const hasSystemdAnalyze = (await execa('sh', ['-c', 'command -v systemd-analyze'], { reject: false })).exitCode === 0;

function unitValue(key: string): string {
  const line = UNIT.split('\n').find((l) => l.startsWith(`${key}=`));
  if (!line) throw new Error(`unit has no ${key}=`);
  return line.slice(key.length + 1);
}

/** Runs a daemon command line with the installed paths swapped for test ones; expects it to serve. */
async function runCommandLine(argv: string[]): Promise<void> {
  const dir = makeTempDir();
  const socket = join(dir, 's.sock');
  const rewritten = argv.map((arg) => arg
    .replace('/usr/local/bin/toondbd', TOONDBD_BIN)
    .replace('/tmp/toondb.sock', socket)
    .replace(/^\/var\/lib\/toondb$|^\/usr\/local\/var\/toondb$/, join(dir, 'data')));
  // The unit's group (toondb/staff) may not exist here: keep the command line, use our own gid.
  const groupAt = rewritten.indexOf('--socket-group');
  if (groupAt >= 0) rewritten[groupAt + 1] = String(process.getgid!());
  expect(rewritten[0]).toBe(TOONDBD_BIN);
  const proc = execa('node', rewritten, { reject: false, stdin: 'ignore' });
  try {
    await expect.poll(async () => {
      try {
        const client = await IpcClient.connect(socket, { connectTimeoutMs: 500 });
        await client.close();
        return true;
      } catch {
        return false;
      }
    }, { timeout: 20_000, interval: 100 }).toBe(true);
  } finally {
    proc.kill('SIGTERM');
    expect((await proc).exitCode).toBe(0);
  }
}

describe('systemd unit', () => {
  it('declares notify readiness, reload, restart, a state dir and hardening', () => {
    expect(unitValue('Type')).toBe('notify');
    expect(unitValue('ExecReload')).toBe('/bin/kill -HUP $MAINPID');
    expect(unitValue('Restart')).toBe('on-failure');
    expect(unitValue('RestartPreventExitStatus')).toBe('2'); // configuration errors do not loop
    expect(unitValue('StateDirectory')).toBe('toondb');
    expect(unitValue('ProtectSystem')).toBe('strict');
    expect(unitValue('RestrictAddressFamilies')).toBe('AF_UNIX');
    expect(unitValue('NoNewPrivileges')).toBe('yes');
    expect(unitValue('PrivateTmp')).toBe('no'); // the client default /tmp/toondb.sock must stay visible
  });

  it.skipIf(!hasSystemdAnalyze)('passes systemd-analyze verify', async () => {
    const dir = makeTempDir();
    const unitPath = join(dir, 'toondbd.service');
    // verify checks that ExecStart exists: point it at the built binary.
    writeFileSync(unitPath, UNIT.replace('/usr/local/bin/toondbd', TOONDBD_BIN));
    const result = await execa('systemd-analyze', ['verify', unitPath], { reject: false });
    const complaints = `${result.stdout}\n${result.stderr}`.split('\n')
      .filter((line) => line.includes('toondbd.service'))
      // Users/groups are created at install time by sysusers; their absence here is expected.
      .filter((line) => !/user|group/i.test(line));
    expect(complaints).toEqual([]);
  });

  it('ExecStart starts a daemon that serves clients', async () => {
    await runCommandLine(unitValue('ExecStart').split(/\s+/));
  });
});

describe('launchd plist', () => {
  it('parses and its ProgramArguments start a daemon that serves clients', async () => {
    mkdirSync(makeTempDir(), { recursive: true });
    const parsed = await execa('python3', ['-c', 'import plistlib,json,sys; print(json.dumps(plistlib.load(open(sys.argv[1],"rb"))))', PLIST]);
    const plist = JSON.parse(parsed.stdout) as { Label: string; ProgramArguments: string[]; RunAtLoad: boolean; KeepAlive: unknown; StandardOutPath: string };
    expect(plist.Label).toBe('com.toondb.toondbd');
    expect(plist.RunAtLoad).toBe(true);
    expect(plist.KeepAlive).toEqual({ SuccessfulExit: false });
    expect(plist.StandardOutPath).toMatch(/toondbd\.log$/);
    await runCommandLine(plist.ProgramArguments);
  });
});
