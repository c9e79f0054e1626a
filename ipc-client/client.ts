/**
 * IpcClient: the public toondb client — one multiplexed connection to the local toondbd.
 *
 * Responsibility: the client's API surface (README, "Using it from Node"). Data calls (get/put/.../scan/listPath) come from
 * DataOperations; this class adds connect, transactions, admin calls, close and events, and
 * wires them to the Connection.
 *
 * Invariants:
 * - Every error a call rejects with is a ToonDBError with a registry code (daemon errors via
 *   errorFromWire, so TXN_CONFLICT is a TransactionConflictError).
 * - Transaction ids, commit timestamps and LSNs are bigint.
 * - When the connection ends (a daemon restart), the requests in flight fail (UNKNOWN_RESULT if
 *   sent), and so do later calls of transactions and scans begun on it (CONNECTION_CLOSED); the
 *   next other call connects again (link.ts), and 'disconnect' and 'reconnect' say when. With
 *   `reconnect: false`, every call after the end fails with CONNECTION_CLOSED instead.
 * - After close() every call fails with CONNECTION_CLOSED and `closed` is true. close() is
 *   idempotent and graceful (in-flight replies get up to CLOSE_DRAIN_MS_MAX to arrive).
 * - 'close' is emitted once: with null after close(), or with the reason when the connection
 *   ended and `reconnect` is off. 'error' (each lost connection) is emitted only when a listener
 *   exists (an unheard 'error' must not crash the host process).
 * - An idle client does not keep the process alive (see connection.ts for why).
 */

import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { ToonDBError } from '../protocol/errors.js';
import { TXN_ID_CHOSEN_MAX, type ServerLimits } from '../protocol/limits.js';
import type { Isolation, StatsResult } from '../protocol/messages.js';
import { openConnection, resolveConnectOptions, type ConnectOptions, type ResolvedConnectOptions } from './connect.js';
import type { Connection, RequestMessage } from './connection.js';
import { Link, type Opened } from './link.js';
import { DataOperations, type DataRequest } from './operations.js';
import { parseCheckpoint, parsePing, parseStats, parseTxnId } from './results.js';
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
  /** The connection ended; the next call connects again. */
  disconnect: [reason: ToonDBError];
  /** A new connection is up (its hello reply). */
  reconnect: [info: ServerInfo];
}

const ISOLATIONS: readonly Isolation[] = ['serializable', 'snapshot'];

/** A transaction id as the wire wants it: a positive 64-bit integer, sent as bigint. */
/** How long past txnIdleMsMax a transaction left neither committed nor aborted is kept for the
 * aliases: the daemon aborts idle ones at its next sweep (every second), measured from when it
 * handled their last request. */
const TXN_FORGET_MARGIN_MS = 10_000;

function toTxnId(txnId: bigint): bigint {
  const id = typeof txnId === 'number' && Number.isSafeInteger(txnId) ? BigInt(txnId) : txnId;
  if (typeof id !== 'bigint' || id < 1n || id >= 2n ** 64n) {
    throw new ToonDBError('INVALID_ARGUMENT', `a transaction id must be a positive 64-bit bigint, got ${String(txnId)}`);
  }
  return id;
}

export class IpcClient extends DataOperations {
  /** The socket path this client connected to. */
  readonly socketPath: string;
  readonly #link: Link;
  readonly #events = new EventEmitter();
  /** The last transaction id this client chose. Never reset, not even by a reconnect: an id
   * names one transaction for the client's whole life, so the alias commit(id) of one lost with
   * an earlier connection cannot commit a newer one that reused its number. */
  #lastTxnId = 0;
  /** Transactions begun on the current connection and not over (TransactionHost.ended), by id:
   * what the alias commit(id) / abort(id) act on. */
  readonly #openTxns = new Map<bigint, Transaction>();

  private constructor(opened: Opened, options: ResolvedConnectOptions) {
    super();
    this.socketPath = options.socketPath;
    this.#link = new Link(opened, options, {
      disconnected: (reason) => {
        this.#emitError(reason);
        this.#emit('disconnect', reason);
      },
      reconnected: (info) => {
        this.#openTxns.clear(); // they died with the connection they were begun on
        this.#emit('reconnect', info);
      },
      ended: (reason) => {
        if (reason !== null) this.#emitError(reason);
        this.#emit('close', reason);
      },
    });
  }

  /** The daemon's hello reply on the current connection: version, connection id, and the
   * limits it enforces. */
  get serverInfo(): ServerInfo {
    return this.#link.info;
  }

  /**
   * Connects to the daemon at `socketPath` (default: $TOONDB_SOCKET, then /tmp/toondb.sock) and
   * completes the hello handshake.
   */
  static async connect(socketPath?: string, options?: ConnectOptions | null): Promise<IpcClient> {
    const resolved = resolveConnectOptions(socketPath, options);
    return new IpcClient(await openConnection(resolved), resolved);
  }

  /** True once close() was called, or the connection ended with `reconnect` off. */
  get closed(): boolean {
    return this.#link.closed;
  }

  /** True while the connection is open (false between a loss and the next call's reconnect). */
  get connected(): boolean {
    return this.#link.connected;
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
  async beginTransaction(options?: BeginOptions | null): Promise<Transaction> {
    const isolation = options?.isolation ?? 'serializable';
    if (!ISOLATIONS.includes(isolation)) {
      throw new ToonDBError('INVALID_ARGUMENT', `isolation must be 'serializable' or 'snapshot', got ${String(isolation)}`);
    }
    // The transaction lives on this connection: if it ends, so does the transaction.
    const connection = await this.#link.live();
    // Closed for good (close(), or lost with reconnect off): no transaction to hand out, and
    // withTransaction must not run its function (review: it did, then every call failed).
    if (connection.closed) {
      throw new ToonDBError('CONNECTION_CLOSED', 'beginTransaction refused: the client is closed');
    }
    // The id is ours to choose (protocol 2), so the transaction's first requests follow the
    // begin at once instead of a round trip later; a failed begin is their error (Transaction).
    const id = this.#lastTxnId += 1;
    if (id > TXN_ID_CHOSEN_MAX) throw new ToonDBError('LIMIT_EXCEEDED', 'this client has used every transaction id; create another');
    const message: RequestMessage = { op: 'begin', txn: id };
    if (options?.isolation !== undefined) message.isolation = isolation;
    const txnId = BigInt(id);
    const begun = connection.request(message, (result) => {
      if (parseTxnId(result) !== txnId) throw new ToonDBError('PROTOCOL_ERROR', `begin answered with another transaction id than ${id}`);
    });
    const open = this.#openTxns;
    const host: TransactionHost = {
      request: (request, map) => connection.request(request, map),
      limits: this.serverInfo.limits,
      ended: (txn) => {
        if (open.get(txn.id) === txn) open.delete(txn.id);
      },
    };
    this.#forgetIdleTxns();
    const txn = new Transaction(host, txnId, isolation, begun);
    open.set(txnId, txn);
    return txn;
  }

  /** Drops, once there are more than the daemon lets one connection hold open, the transactions
   * idle well past txnIdleMsMax (TXN_FORGET_MARGIN_MS more, beyond the daemon's sweep and the
   * requests' travel), which the daemon has aborted: left neither committed nor aborted by their
   * callers, they would otherwise stay for the connection's life. */
  #forgetIdleTxns(): void {
    const { txnsPerConnectionMax, txnIdleMsMax } = this.serverInfo.limits;
    if (this.#openTxns.size < txnsPerConnectionMax) return;
    const idleSince = Date.now() - txnIdleMsMax - TXN_FORGET_MARGIN_MS;
    for (const [id, txn] of this.#openTxns) if (txn.lastActiveMs < idleSince) this.#openTxns.delete(id);
  }

  /** The transaction `txnId` this client began on its current connection and has not committed
   * or aborted, for the aliases. */
  #openTxn(txnId: bigint, op: 'commit' | 'abort'): Transaction {
    const id = toTxnId(txnId);
    const txn = this.#openTxns.get(id);
    if (txn === undefined) {
      throw new ToonDBError('NOT_IN_TRANSACTION',
        `transaction ${id} is not open on this client's current connection (already committed or aborted, or lost with an earlier connection; an id names a transaction of the client that began it only); ${op} refused`);
    }
    return txn;
  }

  /** Seed-style alias of `txn.commit()` for the transaction with this id, which this client
   * began on its current connection; resolves with its commit timestamp. */
  async commit(txnId: bigint): Promise<bigint> {
    return this.#openTxn(txnId, 'commit').commit();
  }

  /** Seed-style alias of `txn.abort()` for the transaction with this id. */
  async abort(txnId: bigint): Promise<void> {
    await this.#openTxn(txnId, 'abort').abort();
  }

  /** Runs `fn` in a transaction and commits it, re-running it on TXN_CONFLICT or LIMIT_EXCEEDED
   * (see retry.ts). */
  withTransaction<T>(fn: (txn: Transaction) => Promise<T>, options?: WithTransactionOptions | null): Promise<T> {
    return withTransaction((isolation) => this.beginTransaction({ isolation }), fn, options);
  }

  /** Makes everything acknowledged so far durable in the engine's files. */
  async checkpoint(): Promise<CheckpointInfo> {
    return parseCheckpoint(await this.#link.request({ op: 'checkpoint' }));
  }

  async stats(): Promise<StatsResult> {
    return parseStats(await this.#link.request({ op: 'stats' }));
  }

  /** Round trip to the daemon. */
  async ping(): Promise<PingInfo> {
    const startedMs = performance.now();
    const reply = await this.#link.request({ op: 'ping' });
    return parsePing(reply, performance.now() - startedMs);
  }

  /** Asks the daemon to shut down gracefully (as SIGTERM does); used by `toondbd stop`. */
  async shutdown(): Promise<void> {
    await this.#link.request({ op: 'shutdown' });
  }

  /** Closes the connection after in-flight replies arrive (bounded wait). Idempotent. */
  close(): Promise<void> {
    return this.#link.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  protected send<T = unknown>(request: DataRequest, map?: ResultMap<T>): Promise<T> {
    return this.#link.request(request, map);
  }

  protected serverLimits(): ServerLimits {
    return this.serverInfo.limits;
  }

  /** One cursor's source (scan.ts asks for one per iteration), bound when it opens to the
   * connection it opens on: its cursor id means nothing on another. */
  protected scanSource(): ScanSource {
    let connection: Connection | null = null;
    const close = (cursor: number): void => {
      if (connection === null || connection.closed) return; // the cursor dies with the connection
      connection.request({ op: 'scanClose', cursor }).catch(() => undefined);
    };
    const openOn = (bound: Connection, fields: Record<string, unknown>): Promise<unknown> => {
      connection = bound;
      // A scan that timed out may still open its cursor: its late reply closes it, or the
      // cursor would count against the connection's cursors until the daemon expires it.
      return bound.request({ op: 'scan', ...fields }, undefined, (result) => {
        const batch = result as { cursor?: unknown; done?: unknown } | null;
        if (typeof batch?.cursor === 'number' && batch.cursor > 0 && batch.done !== true) close(batch.cursor);
      });
    };
    return {
      // Sent at once on a live connection, so a scan keeps its place among the calls made in
      // the same tick (operations.ts); after a reconnect otherwise.
      open: (fields) => {
        const now = this.#link.liveNow();
        return now !== null ? openOn(now, fields) : this.#link.live().then((bound) => openOn(bound, fields));
      },
      next: (cursor) => connection === null
        ? Promise.reject(new Error('invariant: scanNext before the scan opened'))
        : connection.request({ op: 'scanNext', cursor }),
      close,
      prefetch: true,
    };
  }

  #emitError(reason: ToonDBError): void {
    if (this.#events.listenerCount('error') > 0) this.#emit('error', reason);
  }

  /** Emits from inside the connection's own bookkeeping (a socket's close, a reconnect that
   * calls wait on): a listener that throws must not fail those calls with its error or leave
   * the link half updated, so its error is thrown again on its own, as an uncaught exception,
   * where a bug in a listener belongs. */
  #emit<E extends keyof ClientEvents>(event: E, ...args: ClientEvents[E]): void {
    try {
      (this.#events.emit as (event: E, ...args: ClientEvents[E]) => boolean)(event, ...args);
    } catch (error) {
      process.nextTick(() => {
        throw error;
      });
    }
  }
}
