/**
 * Transaction: a handle on one open transaction of the daemon, bound to the connection that
 * began it.
 *
 * Responsibility: add `txn: id` to every data request, and track the lifecycle locally:
 * 'active' -> 'committed' | 'aborted'. The id is chosen by the client (IpcClient), so the
 * begin is pipelined: the transaction's requests go out right behind it, without waiting for
 * its reply. Writes may be pipelined too: the commit tells the daemon how many write requests
 * it covers, and the daemon aborts instead of committing if one of them failed.
 *
 * Invariants:
 * - Once commit() or abort() has been called, every further call (including a second commit or
 *   abort, and pulling a scan opened inside it) fails locally with NOT_IN_TRANSACTION and sends
 *   nothing: the daemon forgets the transaction at commit/abort whatever the outcome.
 * - A failed begin is the error of every call of the transaction (including commit): the
 *   daemon never opened it, and its own answers would only say NOT_IN_TRANSACTION. A begin
 *   whose connection dropped before its reply (UNKNOWN_RESULT) makes later calls fail with
 *   CONNECTION_CLOSED, as for any transaction of a lost connection; requests already sent
 *   keep their UNKNOWN_RESULT. A begin that timed out may open it late, so the client then
 *   aborts it at once; a commit sent before that (pipelined behind the begin) may still have
 *   committed it, which its TIMEOUT leaves open, as any timeout does.
 * - A commit applies every write request of the transaction or nothing: one refused here (an
 *   argument error, nothing sent) or by the daemon makes the commit fail with
 *   TXN_WRITE_FAILED, even if the write's promise was never awaited — or, if the daemon ended
 *   the transaction with it (TXN_TOO_LARGE, LIMIT_EXCEEDED), with that error, so that
 *   withTransaction retries a held limit. Such a promise never counts as an unhandled
 *   rejection (the commit reports it), nor does a write refused because the begin failed.
 * - A commit that fails for any reason leaves the state 'aborted' (nothing usable is left). With
 *   TXN_CONFLICT or TXN_WRITE_FAILED nothing was applied; with UNKNOWN_RESULT or TIMEOUT the
 *   outcome is unknown, and the error says so.
 * - `await using txn = ...` (Symbol.asyncDispose) aborts a still-active transaction and never
 *   throws; committing inside the block is how its work is kept.
 */

import { ToonDBError, toToonDBError } from '../protocol/errors.js';
import type { ServerLimits } from '../protocol/limits.js';
import { isWriteOp, type Isolation } from '../protocol/messages.js';
import type { RequestMessage } from './connection.js';
import { DataOperations, type DataOp, type DataRequest } from './operations.js';
import type { ResultMap } from './pending.js';
import { parseCommitTs } from './results.js';
import type { ScanSource } from './scan.js';

export type TransactionState = 'active' | 'committed' | 'aborted';

/** What a transaction needs from the client that began it. */
export interface TransactionHost {
  request<T = unknown>(message: RequestMessage, map?: ResultMap<T>): Promise<T>;
  readonly limits: ServerLimits;
  /** commit() or abort() was called: the client's alias commit/abort no longer finds it. Until
   * then the alias reaches it whatever happened to it (a failed begin, an error that ended it
   * in the daemon), so it answers exactly as the transaction's own commit() would. */
  ended(txn: Transaction): void;
}

const ignore = (): void => undefined;

export class Transaction extends DataOperations {
  readonly #host: TransactionHost;
  #state: TransactionState = 'active';
  /** True from the moment commit() or abort() is called. */
  #ending = false;
  /** The first commit() or abort() called (kept once settled): see `endStarted`. */
  #end: Promise<unknown> | null = null;
  /** Run by withTransaction, which awaits `#end`: its rejection is never unhandled. */
  #managed = false;
  /** The begin's reply until it has succeeded (then null: calls skip the check). */
  #begin: Promise<unknown> | null;
  /** Why the begin failed, once it has. */
  #beginError: ToonDBError | null = null;
  /** Write requests sent: the commit says it covers this many. */
  #writesSent = 0;
  /** The first write refused before it was sent (an argument error). */
  #writeRefused: ToonDBError | null = null;
  /** The first error of a request that may have ended the transaction in the daemon (a commit
   * that finds it gone, NOT_IN_TRANSACTION, reports this instead). */
  #endedBy: ToonDBError | null = null;
  /** Date.now() of its last request: one idle past txnIdleMsMax is gone in the daemon. */
  #lastActiveMs = Date.now();

  /** @internal created by IpcClient.beginTransaction with the begin request `begin` sent. */
  constructor(host: TransactionHost, readonly id: bigint, readonly isolation: Isolation, begin: Promise<unknown>) {
    super();
    this.#host = host;
    this.#begin = begin;
    begin.then(
      () => { this.#begin = null; },
      (error: unknown) => {
        const coded = toToonDBError(error);
        // Dropped with its connection before the begin's reply: whether it opened or not, the
        // transaction died with that connection (the daemon aborts a closed connection's
        // transactions), so calls made from now on, never sent, fail as CONNECTION_CLOSED.
        this.#beginError = coded.code !== 'UNKNOWN_RESULT' ? coded
          : new ToonDBError('CONNECTION_CLOSED', `transaction ${id} died with the connection it was begun on (${coded.message})`, { cause: coded });
        // A begin that timed out was sent and may still open the transaction, with the
        // requests pipelined behind it: discard it, or it would hold one of the connection's
        // transactions until txnIdleMsMax. The daemon runs the abort after the begin (one
        // connection's requests apply in order); NOT_IN_TRANSACTION if it never opened.
        if (coded.code === 'TIMEOUT') host.request({ op: 'abort', txn: id }).catch(ignore);
      },
    );
  }

  get state(): TransactionState {
    return this.#state;
  }

  /** When it last sent a request (Date.now()). */
  get lastActiveMs(): number {
    return this.#lastActiveMs;
  }

  /** @internal The first commit or abort called, settled or not (null if none): withTransaction
   * takes its outcome as the attempt's instead of committing again. */
  get endStarted(): Promise<unknown> | null {
    return this.#end;
  }

  /** @internal withTransaction owns this transaction and awaits `endStarted`: a commit or abort
   * its function leaves unawaited is then no unhandled rejection, even one that settles before
   * the function returns. */
  markManaged(): void {
    this.#managed = true;
  }

  #noteEnd(end: Promise<unknown>): void {
    if (this.#end !== null) return;
    this.#end = end;
    if (this.#managed) end.catch(ignore);
  }

  /** Commits; resolves with the commit timestamp. TransactionConflictError on TXN_CONFLICT;
   * TXN_WRITE_FAILED (nothing applied) if a write request of the transaction failed. */
  commit(): Promise<bigint> {
    const committing = this.#commit();
    this.#noteEnd(committing);
    return committing;
  }

  async #commit(): Promise<bigint> {
    this.#markEnding('commit');
    try {
      if (this.#writeRefused !== null) {
        this.#request({ op: 'abort', txn: this.id }).catch(ignore);
        const refused = this.#writeRefused;
        throw new ToonDBError('TXN_WRITE_FAILED',
          `transaction ${this.id} was aborted, not committed: one of its writes was refused before it was sent (${refused.code}: ${refused.message})`);
      }
      const commitTs = parseCommitTs(await this.#request({ op: 'commit', txn: this.id, writes: this.#writesSent }));
      this.#state = 'committed';
      return commitTs;
    } catch (error) {
      this.#state = 'aborted';
      const ended = this.#endedBy;
      if (ended !== null && (error as { code?: unknown }).code === 'NOT_IN_TRANSACTION') {
        throw new ToonDBError(ended.code, `transaction ${this.id} was aborted, not committed: the daemon ended it after one of its requests failed (${ended.code}: ${ended.message})`, { cause: error });
      }
      throw error;
    }
  }

  /** Discards every write of the transaction. */
  abort(): Promise<void> {
    const aborting = this.#abort();
    this.#noteEnd(aborting);
    return aborting;
  }

  async #abort(): Promise<void> {
    if (this.#beginError !== null && !this.#ending) {
      this.#host.ended(this);
      this.#ending = true; // never opened: nothing to discard
      this.#state = 'aborted';
      return;
    }
    this.#markEnding('abort');
    try {
      await this.#request({ op: 'abort', txn: this.id });
    } catch (error) {
      if (this.#beginError === null) throw error; // else there was nothing to discard
    } finally {
      this.#state = 'aborted';
    }
  }

  /** Aborts if still active; never throws (for `await using` and cleanup paths). */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#ending) return;
    await this.abort().catch(ignore);
  }

  protected send<T = unknown>(request: DataRequest, map?: ResultMap<T>): Promise<T> {
    const refused = this.#refusal(request.op);
    if (refused) {
      const rejected = Promise.reject(refused);
      // The begin's failure: the commit reports it, as it reports a failed write.
      if (refused === this.#beginError && isWriteOp(request.op)) rejected.catch(ignore);
      return rejected;
    }
    request.txn = this.id;
    const reply = this.#request(request, map);
    if (!isWriteOp(request.op)) return reply;
    this.#writesSent += 1;
    reply.catch(ignore); // a failure the caller leaves unawaited is reported by the commit
    return reply;
  }

  protected override refuse(op: DataOp, error: unknown): Promise<never> {
    const refused = Promise.reject(error);
    if (isWriteOp(op)) {
      this.#writeRefused ??= toToonDBError(error);
      refused.catch(ignore);
    }
    return refused;
  }

  protected serverLimits(): ServerLimits {
    return this.#host.limits;
  }

  protected scanSource(): ScanSource {
    return {
      open: (fields) => this.send({ op: 'scan', ...fields }),
      next: (cursor) => {
        const refused = this.#refusal('scanNext');
        return refused ? Promise.reject(refused) : this.#request({ op: 'scanNext', cursor });
      },
      close: (cursor) => {
        if (this.#ending) return; // the daemon closed the cursor with the transaction
        this.#host.request({ op: 'scanClose', cursor }).catch(ignore);
      },
      // A later batch must show the transaction's writes made while this one is consumed.
      prefetch: false,
    };
  }

  /** Sends a request of this transaction; while the begin is unsettled, a failure is reported
   * as the begin's if the begin failed. */
  #request<T>(message: RequestMessage, map?: ResultMap<T>): Promise<T> {
    this.#lastActiveMs = Date.now();
    const reply = this.#host.request(message, map).catch((error: unknown) => {
      this.#noteEnding(error);
      throw error;
    });
    const begin = this.#begin;
    if (begin === null) return reply;
    return reply.catch(async (error: unknown) => {
      await begin.catch(ignore);
      // A request sent before the connection dropped keeps its own UNKNOWN_RESULT: a commit
      // pipelined behind the begin may have been applied.
      if ((error as { code?: unknown }).code === 'UNKNOWN_RESULT') throw error;
      throw this.#beginError ?? error;
    });
  }

  /** Remembers the first error with which the daemon may have ended the transaction:
   * TXN_TOO_LARGE, or LIMIT_EXCEEDED (txnBytesDaemonMax does; a scan's cursor limit does not,
   * but a commit that then finds the transaction gone was ended by some such error). */
  #noteEnding(error: unknown): void {
    const code = (error as { code?: unknown }).code;
    if (code === 'TXN_TOO_LARGE' || code === 'LIMIT_EXCEEDED') this.#endedBy ??= toToonDBError(error);
  }

  #markEnding(op: 'commit' | 'abort'): void {
    this.#host.ended(this);
    const refused = this.#refusal(op);
    if (refused !== null && refused === this.#beginError) {
      this.#ending = true;
      this.#state = 'aborted';
    }
    if (refused) throw refused;
    this.#ending = true;
  }

  #refusal(op: string): ToonDBError | null {
    if (this.#beginError !== null && !this.#ending) return this.#beginError;
    if (!this.#ending) return null;
    const where = this.#state === 'active' ? 'is being committed or aborted' : `is already ${this.#state}`;
    return new ToonDBError('NOT_IN_TRANSACTION', `transaction ${this.id} ${where}; ${op} refused`);
  }
}
