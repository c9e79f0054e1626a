/**
 * Test helper: run a real `toondbd` (the compiled bin, as users run it) on a private temp socket
 * and data dir, wait until it listens, and stop, kill or restart it.
 *
 * Every test gets its own directory under os.tmpdir(), kept short so the socket path stays far
 * below the 103-byte limit. The daemon's JSON log lines are captured for assertions and printed
 * when a start fails.
 */

import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll } from 'vitest';
import { IpcClient } from '../../ipc-client/index.js';
import { TOONDBD_BIN } from './paths.js';
import { makeTempDir } from './temp-dir.js';

export interface DaemonOptions {
  dir?: string;
  socketPath?: string;
  dataDir?: string;
  args?: string[];
  env?: Record<string, string>;
  /** Written to DIR/config.json and passed with --config (e.g. tighter limits). */
  config?: Record<string, unknown>;
  /** --log-level (default debug); null passes none, so the config file's level applies (a flag
   * wins over the file, also on reload). */
  logLevel?: string | null;
  /** Runs the daemon under `ulimit -n` of this (soft and hard: Node raises the soft limit to
   * the hard one at startup). */
  openFilesLimit?: number;
}

export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

export class TestDaemon {
  readonly logs: LogLine[] = [];
  stderr = '';
  private proc: ResultPromise | null = null;
  private exited: Promise<number | null> | null = null;

  constructor(
    readonly dir: string, readonly socketPath: string, readonly dataDir: string, private readonly args: string[], private readonly env: Record<string, string>,
    /** `ulimit -n` for the daemon, or null for this process's limit. */
    public openFilesLimit: number | null = null,
    /** --log-level, or null for none (see DaemonOptions). */
    private readonly logLevel: string | null = 'debug',
  ) {}

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Resident set size of the daemon process, in bytes (Linux /proc). */
  rssBytes(): number {
    return this.statusBytes('VmRSS');
  }

  /** The most the daemon's resident set has been since it started, in bytes (Linux /proc). */
  peakRssBytes(): number {
    return this.statusBytes('VmHWM');
  }

  private statusBytes(field: string): number {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const kb = Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1]);
    if (!Number.isFinite(kb)) throw new Error(`cannot read ${field} of the daemon`);
    return kb * 1024;
  }

  /** How many of the daemon's threads carry each name (Linux /proc). */
  threadNames(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const tid of readdirSync(`/proc/${this.pid}/task`)) {
      const name = readFileSync(`/proc/${this.pid}/task/${tid}/comm`, 'utf8').trim();
      counts.set(name, (counts.get(name) ?? 0) + 1);
    }
    return counts;
  }

  /** Starts the daemon and resolves once it logs "listening"; rejects if it exits first. */
  async start(): Promise<void> {
    const level = this.logLevel === null ? [] : ['--log-level', this.logLevel];
    const command = ['node', TOONDBD_BIN, 'start', '--socket', this.socketPath, '--data-dir', this.dataDir, ...level, ...this.args];
    // The shell execs node, so the pid (signals, /proc) is the daemon's.
    const [file, ...args] = this.openFilesLimit === null ? command : ['sh', '-c', 'ulimit -n "$0" && exec "$@"', String(this.openFilesLimit), ...command];
    const proc = execa(file, args, {
      env: { ...this.env },
      reject: false,
      buffer: false,
      stdin: 'ignore',
    });
    this.proc = proc;
    this.stderr = '';
    proc.stderr?.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    let pending = '';
    let onListening: () => void = () => undefined;
    const listening = new Promise<void>((resolve) => (onListening = resolve));
    proc.stdout?.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.trim()) continue;
        try {
          const parsed = JSON.parse(line) as LogLine;
          this.logs.push(parsed);
          if (parsed.msg === 'listening') onListening();
        } catch {
          this.logs.push({ level: 0, msg: line });
        }
      }
    });
    this.exited = proc.then((result) => result.exitCode ?? null);
    const exitedFirst = this.exited.then((code) => {
      throw new Error(`toondbd exited with ${code} before listening\nstderr: ${this.stderr}\nlogs: ${this.logs.map((l) => JSON.stringify(l)).join('\n')}`);
    });
    // The "listening" line is info level; with a quieter --log-level, the info file the daemon
    // writes right after listen (naming this very pid) is the signal.
    let starting = true;
    const connectable = (async () => {
      while (starting && !this.infoFileNamesUs(proc.pid)) await sleep(READY_POLL_MS);
    })();
    try {
      await Promise.race([listening, connectable, exitedFirst]);
    } finally {
      starting = false;
    }
    exitedFirst.catch(() => undefined);
  }

  private infoFileNamesUs(pid: number | undefined): boolean {
    try {
      return (JSON.parse(readFileSync(join(this.dataDir, 'toondbd.json'), 'utf8')) as { pid?: number }).pid === pid;
    } catch {
      return false;
    }
  }

  /** Sends a signal and resolves with the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (!this.proc || !this.exited) return null;
    this.proc.kill(signal);
    const code = await this.exited;
    this.proc = null;
    return code;
  }

  /** SIGKILL: no cleanup at all, as in a crash. */
  async kill(): Promise<void> {
    await this.stop('SIGKILL');
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Resolves with the exit code once the process exits on its own. */
  waitForExit(): Promise<number | null> {
    return this.exited ?? Promise.resolve(null);
  }

  logged(message: string): LogLine[] {
    return this.logs.filter((line) => line.msg === message);
  }

  /**
   * The fatal "storage failed" alarms received so far. Log lines reach this process through a
   * pipe of their own, so one can arrive after a reply the daemon sent later: poll for it.
   */
  storageAlarms(): LogLine[] {
    return this.logs.filter((line) => line.level === 60 && String(line.msg).startsWith('storage failed'));
  }

  async dispose(): Promise<void> {
    if (this.proc) await this.stop('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const READY_POLL_MS = 25;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));



/** Creates (but does not start) a daemon with its own temp dir. */
export function createDaemon(options: DaemonOptions = {}): TestDaemon {
  const dir = options.dir ?? makeTempDir();
  const args = [...(options.args ?? [])];
  if (options.config) {
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify(options.config));
    args.push('--config', file);
  }
  return new TestDaemon(dir, options.socketPath ?? join(dir, 's.sock'), options.dataDir ?? join(dir, 'data'), args, options.env ?? {}, options.openFilesLimit ?? null, options.logLevel === undefined ? 'debug' : options.logLevel);
}

/** Creates and starts a daemon. */
export async function startDaemon(options: DaemonOptions = {}): Promise<TestDaemon> {
  const daemon = createDaemon(options);
  try {
    await daemon.start();
  } catch (error) {
    await daemon.dispose();
    throw error;
  }
  return daemon;
}

/**
 * A daemon shared by the tests of one describe block: started before them, disposed after them
 * (also when one fails). Call it in the block's body; the returned function gives the daemon.
 */
export function suiteDaemon(options: DaemonOptions = {}): () => TestDaemon {
  let daemon: TestDaemon | undefined;
  beforeAll(async () => {
    daemon = await startDaemon(options);
  });
  afterAll(async () => {
    await daemon?.dispose();
  });
  return () => {
    if (daemon === undefined) throw new Error('the suite daemon is used before it started');
    return daemon;
  };
}

/** A describe block's shared daemon and a client connected to it (see suiteClient). */
export interface SuiteClient {
  daemon(): TestDaemon;
  client(): IpcClient;
  /** Replaces the client (closing the old one) by a new connection, e.g. after a restart. */
  reconnect(): Promise<IpcClient>;
}

/**
 * A suite daemon (suiteDaemon) and one client connected to it before the block's tests and
 * closed after them. Hooks run as a stack (vitest's default), so the client connects after the
 * daemon starts and closes before it is disposed. Call it in the block's body.
 */
export function suiteClient(options: DaemonOptions = {}): SuiteClient {
  const daemon = suiteDaemon(options);
  let client: IpcClient | undefined;
  beforeAll(async () => {
    client = await IpcClient.connect(daemon().socketPath);
  });
  afterAll(async () => {
    await client?.close();
  });
  const connected = (): IpcClient => {
    if (client === undefined) throw new Error('the suite client is used before it connected');
    return client;
  };
  return {
    daemon,
    client: connected,
    reconnect: async () => {
      await connected().close();
      client = await IpcClient.connect(daemon().socketPath);
      return client;
    },
  };
}
