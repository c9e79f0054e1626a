// Several OS processes share one daemon at once: each child connects with the compiled client,
// writes its own keys and reads the others', while the test process talks to the daemon too.
import { describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { IpcClient } from '../../ipc-client/index.js';
import { suiteDaemon } from '../helpers/daemon.js';
import { CLIENT_MODULE } from '../helpers/paths.js';

const CHILD = `
const { IpcClient } = await import(process.env.CLIENT_MODULE);
const client = await IpcClient.connect(process.env.SOCKET);
const me = process.env.NAME;
const n = Number(process.env.COUNT);
await Promise.all(Array.from({ length: n }, (_, i) => client.put(me + '/' + i, me + ':' + i)));
let seen = 0;
for (let i = 0; i < n; i++) if ((await client.get(me + '/' + i))?.toString() === me + ':' + i) seen++;
process.stdout.write(JSON.stringify({ me, seen }));
await client.close();
`;

describe('many processes, one daemon', () => {
  const daemon = suiteDaemon();

  it('serves two child processes and the test process at the same time', async () => {
    const count = 300;
    const run = (name: string) => execa('node', ['--input-type=module', '-e', CHILD], {
      env: { CLIENT_MODULE, SOCKET: daemon().socketPath, NAME: name, COUNT: String(count) },
    });
    const client = await IpcClient.connect(daemon().socketPath);
    const [a, b] = await Promise.all([run('a'), run('b'), client.put('parent', 'here')]);
    expect(JSON.parse(a.stdout)).toEqual({ me: 'a', seen: count });
    expect(JSON.parse(b.stdout)).toEqual({ me: 'b', seen: count });
    // Each process's writes are visible to the others.
    expect((await client.get('a/0'))?.toString()).toBe('a:0');
    expect((await client.get(`b/${count - 1}`))?.toString()).toBe(`b:${count - 1}`);
    const stats = await client.stats();
    expect(stats.connections.total).toBeGreaterThanOrEqual(3);
    await client.close();
  });
});
