// Process lifetime: a script that forgets close() must still exit once it is idle, but a request
// still awaiting its reply must keep the process alive until it settles. Runs the compiled client
// in child processes, since only a real process exit shows what keeps the event loop alive.
import { execFile, spawn } from 'node:child_process';
import { symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeServer, NO_REPLY } from './fake-server.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

let server: FakeServer;
let CLIENT_MODULE: string;

// The client is compiled from its current source into this file's temp dir (removed after the
// file's tests, test/setup.ts), whose node_modules is a link to the repo's, so that the
// compiled client resolves msgpackr (removing the dir removes the link, not what it names).
beforeAll(async () => {
  const OUT_DIR = makeTempDir('tdb-plt-');
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(OUT_DIR, 'node_modules'), 'dir');
  CLIENT_MODULE = join(OUT_DIR, 'ipc-client', 'index.js');
  await promisify(execFile)(process.execPath, [
    join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), join(REPO_ROOT, 'ipc-client', 'index.ts'),
    '--outDir', OUT_DIR, '--rootDir', REPO_ROOT, '--module', 'nodenext', '--moduleResolution', 'nodenext',
    '--target', 'es2022', '--lib', 'es2023,es2024.string,esnext.disposable', '--types', 'node', '--skipLibCheck', '--strict',
  ], { cwd: REPO_ROOT });
  server = await FakeServer.start();
}, 60_000);

afterAll(async () => {
  await server?.close();
});

/** Runs `body` as an ES module with `client` connected; resolves with exit code, output, time. */
function run(body: string, timeoutMs = 8_000, requestTimeoutMs = 400): Promise<{ code: number | null; stdout: string; elapsedMs: number }> {
  const source = `const { IpcClient } = await import(${JSON.stringify(CLIENT_MODULE)});
const client = await IpcClient.connect(${JSON.stringify(server.path)}, { timeoutMs: ${requestTimeoutMs} });
${body}`;
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', source], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
    const killer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child still running after ${timeoutMs} ms; output so far: ${stdout}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, elapsedMs: Date.now() - started });
    });
  });
}

describe('process lifetime', () => {
  it('an idle client that was never closed does not keep the process alive', async () => {
    const result = await run(`await client.put('k', 'v'); console.log('done');`);
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe('done');
  });

  it('a pending request keeps the process alive until its reply arrives', async () => {
    server.script = (request, connection) => {
      if (request.op !== 'get') return undefined;
      setTimeout(() => connection.reply(request.id, Buffer.from('late')), 250);
      return NO_REPLY;
    };
    // Not awaited: only the pending request can keep this process running.
    // A request timeout well past the 250 ms reply: a loaded machine must not turn it into TIMEOUT.
    const result = await run(`client.get('k').then((v) => console.log('got ' + v));`, 8_000, 5_000);
    expect(result.stdout.trim()).toBe('got late');
    expect(result.code).toBe(0);
  });

  it('a request that never gets a reply ends with TIMEOUT, then the process exits', async () => {
    server.script = (request) => (request.op === 'get' ? NO_REPLY : undefined);
    const result = await run(`client.get('k').catch((e) => console.log(e.code));`);
    expect(result.stdout.trim()).toBe('TIMEOUT');
    expect(result.code).toBe(0);
    expect(result.elapsedMs).toBeGreaterThanOrEqual(400);
  });
});
