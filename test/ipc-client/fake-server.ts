/**
 * Test helper: a fake toondbd on a temporary Unix socket, for testing the client without the
 * engine. It speaks the real framing and codec (FrameDecoder + MessageCodec), answers hello,
 * and runs a tiny in-memory model of the data ops (kv, batches, cursors, transactions without
 * isolation) so that ordinary calls work. A test scripts anything else through `script`:
 * out-of-order, late or missing replies, dropped connections, garbage, id-0 errors.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MessageCodec } from '../../protocol/codec.js';
import { FrameDecoder } from '../../protocol/frame.js';
import { DEFAULT_SERVER_LIMITS, PROTOCOL_VERSION, type ServerLimits } from '../../protocol/limits.js';

/** The real clock, kept before any test can fake it. */
const realSetTimeout = globalThis.setTimeout;
const realDateNow = Date.now.bind(Date);

export type Request = Record<string, unknown> & { id: number; op: string };
export type Reply = { result: unknown } | { error: { code: string; message: string } };
/** Returned by a script: send nothing now (the script may reply later through the connection). */
export const NO_REPLY = Symbol('no reply');
/** A script returns a reply, NO_REPLY, or undefined to let the model answer. */
export type Script = (request: Request, connection: FakeConnection) => Reply | typeof NO_REPLY | undefined;

export class FakeConnection {
  readonly requests: Request[] = [];
  /** Number of 'data' events, to see how the client coalesces its writes. */
  chunks = 0;
  readonly codec = new MessageCodec();
  private readonly decoder = new FrameDecoder();

  constructor(readonly socket: Socket, private readonly server: FakeServer) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks++;
      for (const body of this.decoder.push(chunk)) this.onRequest(this.codec.decode(body) as Request);
    });
    socket.on('error', () => undefined);
  }

  send(message: Record<string, unknown>): void {
    if (!this.socket.destroyed) this.socket.write(this.codec.encode(message));
  }

  reply(id: number, result: unknown): void {
    this.send({ id, result });
  }

  fail(id: number, code: string, message = code.toLowerCase()): void {
    this.send({ id, error: { code, message } });
  }

  drop(): void {
    this.socket.destroy();
  }

  private onRequest(request: Request): void {
    request.id = Number(request.id);
    this.requests.push(request);
    this.server.requests.push(request);
    const scripted = this.server.script?.(request, this);
    if (scripted === NO_REPLY) return;
    const reply = scripted ?? this.server.model(request);
    this.send({ id: request.id, ...reply });
  }
}

interface Cursor {
  entries: [Buffer, Buffer][];
  batchSize: number;
}

export class FakeServer {
  readonly requests: Request[] = [];
  readonly connections: FakeConnection[] = [];
  readonly store = new Map<string, Buffer>();
  limits: ServerLimits;
  script: Script | undefined;
  private readonly cursors = new Map<number, Cursor>();
  private nextCursor = 1;
  private nextTxn = 100n;
  private commitTs = 1000n;

  private constructor(private readonly server: Server, readonly path: string, private readonly dir: string, limits: ServerLimits) {
    this.limits = limits;
  }

  static async start(options: { limits?: Partial<ServerLimits>; script?: Script } = {}): Promise<FakeServer> {
    const dir = mkdtempSync(join(tmpdir(), 'toondb-fake-'));
    const path = join(dir, 's.sock');
    const server = createServer();
    const fake = new FakeServer(server, path, dir, { ...DEFAULT_SERVER_LIMITS, ...options.limits });
    fake.script = options.script;
    server.on('connection', (socket) => fake.connections.push(new FakeConnection(socket, fake)));
    await new Promise<void>((resolve) => server.listen(path, resolve));
    return fake;
  }

  /** Requests of one op, in arrival order. */
  ops(op: string): Request[] {
    return this.requests.filter((request) => request.op === op);
  }

  get last(): FakeConnection {
    const connection = this.connections.at(-1);
    if (!connection) throw new Error('no connection yet');
    return connection;
  }

  async close(): Promise<void> {
    for (const connection of this.connections) connection.drop();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The default answers: a tiny model of the daemon. */
  model(request: Request): Reply {
    const key = (bytes: unknown) => Buffer.from(bytes as Uint8Array).toString('latin1');
    switch (request.op) {
      case 'hello':
        return { result: { protocol: PROTOCOL_VERSION, server: '9.9.9-fake', connectionId: 6 + this.connections.length, limits: this.limits } };
      case 'ping':
        return { result: { version: '9.9.9-fake', timeMs: Date.now() } };
      case 'get':
        return { result: this.store.get(key(request.key)) ?? null };
      case 'exists':
        return { result: this.store.has(key(request.key)) };
      case 'put':
        this.store.set(key(request.key), Buffer.from(request.value as Uint8Array));
        return { result: null };
      case 'delete':
        this.store.delete(key(request.key));
        return { result: null };
      case 'getBatch':
        return { result: (request.keys as Uint8Array[]).map((k) => this.store.get(key(k)) ?? null) };
      case 'putBatch':
        for (const [k, v] of request.entries as [Uint8Array, Uint8Array][]) this.store.set(key(k), Buffer.from(v));
        return { result: null };
      case 'deleteBatch':
        for (const k of request.keys as Uint8Array[]) this.store.delete(key(k));
        return { result: null };
      case 'scan':
        return { result: this.openCursor(request) };
      case 'scanNext':
        return this.pull(Number(request.cursor));
      case 'scanClose':
        return this.cursors.delete(Number(request.cursor)) ? { result: null } : { error: { code: 'CURSOR_NOT_FOUND', message: 'gone' } };
      case 'listPath':
        return { result: this.children(Buffer.from(request.prefix as Uint8Array)) };
      case 'begin': // the id the client chose (protocol 2), else one of ours
        return { result: { txn: request.txn ?? this.nextTxn++ } };
      case 'commit':
        return { result: { commitTs: this.commitTs++ } };
      case 'abort':
        return { result: null };
      case 'checkpoint':
        return { result: { lsn: 42n, durationMs: 3 } };
      default:
        return { error: { code: 'UNKNOWN_OP', message: `unknown op ${request.op}` } };
    }
  }

  private sorted(): [Buffer, Buffer][] {
    return [...this.store.entries()]
      .map(([k, v]): [Buffer, Buffer] => [Buffer.from(k, 'latin1'), v])
      .sort((a, b) => Buffer.compare(a[0], b[0]));
  }

  private openCursor(request: Request): { cursor: number; entries: [Buffer, Buffer][]; done: boolean } {
    let entries = this.sorted();
    if (request.prefix !== undefined) {
      const prefix = Buffer.from(request.prefix as Uint8Array);
      entries = entries.filter(([k]) => k.subarray(0, prefix.length).equals(prefix));
    } else {
      const start = request.start as Uint8Array | undefined;
      const end = request.end as Uint8Array | undefined;
      entries = entries.filter(([k]) => (start === undefined || Buffer.compare(k, start) >= 0) && (end === undefined || Buffer.compare(k, end) < 0));
    }
    if (request.reverse === true) entries.reverse();
    if (typeof request.limit === 'number' && request.limit > 0) entries = entries.slice(0, request.limit);
    const id = this.nextCursor++;
    this.cursors.set(id, { entries, batchSize: Number(request.batchSize ?? 256) });
    const first = this.pull(id);
    return 'result' in first ? first.result as { cursor: number; entries: [Buffer, Buffer][]; done: boolean } : { cursor: 0, entries: [], done: true };
  }

  private pull(id: number): Reply {
    const cursor = this.cursors.get(id);
    if (!cursor) return { error: { code: 'CURSOR_NOT_FOUND', message: `cursor ${id}` } };
    const batch = cursor.entries.splice(0, cursor.batchSize);
    const done = cursor.entries.length === 0;
    if (done) this.cursors.delete(id);
    return { result: { cursor: done ? 0 : id, entries: batch, done } };
  }

  private children(prefix: Buffer): Buffer[] {
    const out: Buffer[] = [];
    for (const [k] of this.sorted()) {
      if (!k.subarray(0, prefix.length).equals(prefix)) continue;
      const rest = k.subarray(prefix.length);
      let end = rest.length;
      for (let i = 0; i + 1 < rest.length; i++) {
        if (rest[i] === 0x00 && rest[i + 1] === 0x01) {
          end = i;
          break;
        }
        if (rest[i] === 0x00) i++;
      }
      const child = rest.subarray(0, end);
      if (!out.some((seen) => seen.equals(child))) out.push(child);
    }
    return out;
  }

  /** Waits until `predicate` holds (polling), or throws after `timeoutMs`. Real time, also
   * while a test fakes the client's clock (vi.useFakeTimers). */
  async until(predicate: () => boolean, timeoutMs = 2_000): Promise<void> {
    const deadline = realDateNow() + timeoutMs;
    while (!predicate()) {
      if (realDateNow() > deadline) throw new Error('condition not reached in time');
      await new Promise((resolve) => realSetTimeout(resolve, 2));
    }
  }
}
