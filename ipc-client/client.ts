/**
 * IpcClient: the public toondb client — one multiplexed connection to the local toondbd.
 *
 * Responsibility: the API surface of DESIGN.md. Data calls (get/put/.../scan/listPath) come from
 * DataOperations; this class adds connect, transactions, admin calls, close and events, and
 * wires them to the Connection.
 *
 * Invariants:
 * - Every error a call rejects with is a ToonDBError with a registry code (daemon errors via
 *   errorFromWire, so TXN_CONFLICT is a TransactionConflictError).
 * - Transaction ids, commit timestamps and LSNs are bigint.
 * - After close() (or once the connection has ended) every call fails with CONNECTION_CLOSED
 *   and `closed` is true. close() is idempotent and graceful (in-flight replies get up to
 *   CLOSE_DRAIN_MS_MAX to arrive).
 * - 'close' is emitted once, with the reason unless close() was called; 'error' is emitted
 *   only when a listener exists (an unheard 'error' must not crash the host process).
 * - An idle client does not keep the process alive (see connection.ts for why).
 */

import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { ToonDBError } from '../protocol/errors.js';
import { TXN_ID_CHOSEN_MAX, type ServerLimits } from '../protocol/limits.js';
import type { Isolation, StatsResult } from '../protocol/messages.js';
import { openConnection, resolveConnectOptions, type ConnectOptions } from './connect.js';
import type { Connection, RequestMessage } from './connection.js';
import { DataOperations, type DataRequest } from './operations.js';
import { parseCheckpoint, parseCommitTs, parsePing, parseStats, parseTxnId } from './results.js';
import type { ResultMap } from './pending.js';
import type { CheckpointInfo, PingInfo, ServerInfo } from './results.js';
import { withTransaction, type WithTransactionOptions } from './retry.js';
import type { ScanSource } from './scan.js';
import { Transaction, type TransactionHost } from './transaction.js';

export interface BeginOptions {
  /** 'serializable' (default) also catches write skew and phantoms; 'snapshot' checks only
   * write-write conflicts. */
  isolation?: Isolation;
}

export interface ClientEvents {
  close: [reason: ToonDBError | null];
  error: [error: ToonDBError];
}

const ISOLATIONS: readonly Isolation[] = ['serializable', 'snapshot'];

/** A transaction id as the wire wants it: a positive 64-bit integer, sent as bigint. */
function toTxnId(txnId: bigint): bigint {
  const id = typeof txnId === 'number' && Number.isSafeInteger(txnId) ? BigInt(txnId) : txnId;
  if (typeof id !== 'bigint' || id < 1n || id >= 2n ** 64n) {
    throw new ToonDBError('INVALID_ARGUMENT', `a transaction id must be a positive 64-bit bigint, got ${String(txnId)}`);
  }
  return id;
}

export class IpcClient extends DataOperations {
  /** The daemon's hello reply: version, connection id, and the limits it enforces. */
  readonly serverInfo: ServerInfo;
  /** The socket path this client connected to. */
  readonly socketPath: string;
  readonly #connection: Connection;
  readonly #events = new EventEmitter();
  readonly #host: TransactionHost;
  /** The last transaction id this connection chose (ids are per connection). */
  #lastTxnId = 0;

  private constructor(connection: Connection, serverInfo: ServerInfo, socketPath: string) {
    super();
    this.#connection = connection;
    this.serverInfo = serverInfo;
    this.socketPath = socketPath;
    this.#host = { request: (message, map) => connection.request(message, map), limits: serverInfo.limits };
    connection.onClose = (reason) => this.#onClose(reason);
  }

  /**
   * Connects to the daemon at `socketPath` (default: $TOONDB_SOCKET, then /tmp/toondb.sock) and
   * completes the hello handshake.
   */
  static async connect(socketPath?: string, options: ConnectOptions = {}): Promise<IpcClient> {
    const resolved = resolveConnectOptions(socketPath, options);
    const { connection, info } = await openConnection(resolved);
    return new IpcClient(connection, info, resolved.socketPath);
  }

  /** True once close() was called or the connection ended. */
  get closed(): boolean {
    return this.#connection.closed;
  }

  on<E extends keyof ClientEvents>(event: E, listener: (...args: ClientEvents[E]) => void): this {
    this.#events.on(event, listener as (...args: unknown[]) => void);
    return this;
  }

  once<E extends keyof ClientEvents>(event: E, listener: (...args: ClientEvents[E]) => void): this {
    this.#events.once(event, listener as (...args: unknown[]) => void);
    return this;
  }

  off<E extends keyof ClientEvents>(event: E, listener: (...args: ClientEvents[E]) => void): this {
    this.#events.off(event, listener as (...args: unknown[]) => void);
    return this;
  }

  /**
   * Begins a transaction. Resolves at once, without waiting for the daemon: the begin goes out
   * with the transaction's first request, and if the daemon refuses it (LIMIT_EXCEEDED, ...)
   * that error is the first call's (see Transaction).
   */
  async beginTransaction(options: BeginOptions = {}): Promise<Transaction> {
    const isolation = options.isolation ?? 'serializable';
    if (!ISOLATIONS.includes(isolation)) {
      throw new ToonDBError('INVALID_ARGUMENT', `isolation must be 'serializable' or 'snapshot', got ${String(isolation)}`);
    }
    // The id is ours to choose (protocol 2), so the transaction's first requests follow the
    // begin at once instead of a round trip later; a failed begin is their error (Transaction).
    const id = this.#lastTxnId += 1;
    if (id > TXN_ID_CHOSEN_MAX) throw new ToonDBError('LIMIT_EXCEEDED', 'this connection has used every transaction id; reconnect');
    const message: RequestMessage = { op: 'begin', txn: id };
    if (options.isolation !== undefined) message.isolation = isolation;
    const txnId = BigInt(id);
    const begun = this.#connection.request(message, (result) => {
      if (parseTxnId(result) !== txnId) throw new ToonDBError('PROTOCOL_ERROR', `begin answered with another transaction id than ${id}`);
    });
    return new Transaction(this.#host, txnId, isolation, begun);
  }

  /** Seed-style alias: commits the transaction with this id; resolves with its commit timestamp. */
  async commit(txnId: bigint): Promise<bigint> {
    return parseCommitTs(await this.#connection.request({ op: 'commit', txn: toTxnId(txnId) }));
  }

  /** Seed-style alias: aborts the transaction with this id. */
  async abort(txnId: bigint): Promise<void> {
    await this.#connection.request({ op: 'abort', txn: toTxnId(txnId) });
  }

  /** Runs `fn` in a transaction and commits it, re-running it on TXN_CONFLICT (see retry.ts). */
  withTransaction<T>(fn: (txn: Transaction) => Promise<T>, options: WithTransactionOptions = {}): Promise<T> {
    return withTransaction((isolation) => this.beginTransaction({ isolation }), fn, options);
  }

  /** Makes everything acknowledged so far durable in the engine's files. */
  async checkpoint(): Promise<CheckpointInfo> {
    return parseCheckpoint(await this.#connection.request({ op: 'checkpoint' }));
  }

  async stats(): Promise<StatsResult> {
    return parseStats(await this.#connection.request({ op: 'stats' }));
  }

  /** Round trip to the daemon. */
  async ping(): Promise<PingInfo> {
    const startedMs = performance.now();
    const reply = await this.#connection.request({ op: 'ping' });
    return parsePing(reply, performance.now() - startedMs);
  }

  /** Asks the daemon to shut down gracefully (as SIGTERM does); used by `toondbd stop`. */
  async shutdown(): Promise<void> {
    await this.#connection.request({ op: 'shutdown' });
  }

  /** Closes the connection after in-flight replies arrive (bounded wait). Idempotent. */
  close(): Promise<void> {
    return this.#connection.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  protected send<T = unknown>(request: DataRequest, map?: ResultMap<T>): Promise<T> {
    return this.#connection.request(request, map);
  }

  protected serverLimits(): ServerLimits {
    return this.serverInfo.limits;
  }

  protected scanSource(): ScanSource {
    const close = (cursor: number): void => {
      if (this.#connection.closed) return; // the cursor dies with the connection
      this.#connection.request({ op: 'scanClose', cursor }).catch(() => undefined);
    };
    return {
      // A scan that timed out may still open its cursor: its late reply closes it, or the
      // cursor would count against the connection's cursors until the daemon expires it.
      open: (fields) => this.#connection.request({ op: 'scan', ...fields }, undefined, (result) => {
        const batch = result as { cursor?: unknown; done?: unknown } | null;
        if (typeof batch?.cursor === 'number' && batch.cursor > 0 && batch.done !== true) close(batch.cursor);
      }),
      next: (cursor) => this.#connection.request({ op: 'scanNext', cursor }),
      close,
    };
  }

  #onClose(reason: ToonDBError | null): void {
    if (reason !== null && this.#events.listenerCount('error') > 0) this.#events.emit('error', reason);
    this.#events.emit('close', reason);
  }
}
