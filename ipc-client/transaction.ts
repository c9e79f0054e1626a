/**
 * Transaction: a handle on one open transaction of the daemon, bound to the connection that
 * began it.
 *
 * Responsibility: add `txn: id` to every data request, and track the lifecycle locally:
 * 'active' -> 'committed' | 'aborted'.
 *
 * Invariants:
 * - Once commit() or abort() has been called, every further call (including a second commit or
 *   abort, and pulling a scan opened inside it) fails locally with NOT_IN_TRANSACTION and sends
 *   nothing: the daemon forgets the transaction at commit/abort whatever the outcome.
 * - A commit that fails for any reason leaves the state 'aborted' (nothing usable is left). With
 *   TXN_CONFLICT nothing was applied; with UNKNOWN_RESULT or TIMEOUT the outcome is unknown,
 *   and the error says so.
 * - `await using txn = ...` (Symbol.asyncDispose) aborts a still-active transaction and never
 *   throws; committing inside the block is how its work is kept.
 */

import { ToonDBError } from '../protocol/errors.js';
import type { ServerLimits } from '../protocol/limits.js';
import type { Isolation } from '../protocol/messages.js';
import type { RequestMessage } from './connection.js';
import { DataOperations, type DataRequest } from './operations.js';
import type { ResultMap } from './pending.js';
import { parseCommitTs } from './results.js';
import type { ScanSource } from './scan.js';

export type TransactionState = 'active' | 'committed' | 'aborted';

/** What a transaction needs from the client that began it. */
export interface TransactionHost {
  request<T = unknown>(message: RequestMessage, map?: ResultMap<T>): Promise<T>;
  readonly limits: ServerLimits;
}

export class Transaction extends DataOperations {
  readonly #host: TransactionHost;
  #state: TransactionState = 'active';
  /** True from the moment commit() or abort() is called. */
  #ending = false;

  /** @internal created by IpcClient.beginTransaction. */
  constructor(host: TransactionHost, readonly id: bigint, readonly isolation: Isolation) {
    super();
    this.#host = host;
  }

  get state(): TransactionState {
    return this.#state;
  }

  /** Commits; resolves with the commit timestamp. TransactionConflictError on TXN_CONFLICT. */
  async commit(): Promise<bigint> {
    this.#markEnding('commit');
    try {
      const commitTs = parseCommitTs(await this.#host.request({ op: 'commit', txn: this.id }));
      this.#state = 'committed';
      return commitTs;
    } catch (error) {
      this.#state = 'aborted';
      throw error;
    }
  }

  /** Discards every write of the transaction. */
  async abort(): Promise<void> {
    this.#markEnding('abort');
    try {
      await this.#host.request({ op: 'abort', txn: this.id });
    } finally {
      this.#state = 'aborted';
    }
  }

  /** Aborts if still active; never throws (for `await using` and cleanup paths). */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#ending) return;
    await this.abort().catch(() => undefined);
  }

  protected send<T = unknown>(request: DataRequest, map?: ResultMap<T>): Promise<T> {
    const refused = this.#refusal(request.op);
    if (refused) return Promise.reject(refused);
    request.txn = this.id;
    return this.#host.request(request, map);
  }

  protected serverLimits(): ServerLimits {
    return this.#host.limits;
  }

  protected scanSource(): ScanSource {
    return {
      open: (fields) => this.send({ op: 'scan', ...fields }),
      next: (cursor) => {
        const refused = this.#refusal('scanNext');
        return refused ? Promise.reject(refused) : this.#host.request({ op: 'scanNext', cursor });
      },
      close: (cursor) => {
        if (this.#ending) return; // the daemon closed the cursor with the transaction
        this.#host.request({ op: 'scanClose', cursor }).catch(() => undefined);
      },
    };
  }

  #markEnding(op: 'commit' | 'abort'): void {
    const refused = this.#refusal(op);
    if (refused) throw refused;
    this.#ending = true;
  }

  #refusal(op: string): ToonDBError | null {
    if (!this.#ending) return null;
    const where = this.#state === 'active' ? 'is being committed or aborted' : `is already ${this.#state}`;
    return new ToonDBError('NOT_IN_TRANSACTION', `transaction ${this.id} ${where}; ${op} refused`);
  }
}
