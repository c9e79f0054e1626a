/**
 * withTransaction: run a function in a transaction, retrying the whole transaction on conflict
 * or on a limit that other work holds.
 *
 * Responsibility: begin, run `fn`, commit; on TXN_CONFLICT or LIMIT_EXCEEDED (from begin or
 * commit, or thrown out of `fn` by anything it called) abort and start over after a jittered
 * exponential backoff, at most `retries` times, then rethrow that error. LIMIT_EXCEEDED is
 * taken by what other transactions or cursors hold (the daemon-wide txnBytesDaemonMax, or this
 * connection's open transactions or cursors), so it passes once they finish, as a conflict
 * does. Any other error aborts and is rethrown at once.
 *
 * Invariants:
 * - A conflict means nothing of that attempt was applied (PROTOCOL.md), and an attempt that hit
 *   a limit is aborted before the next, so re-running `fn` is safe as long as `fn` has no side
 *   effects outside the transaction.
 * - Every attempt's transaction is finished (committed, or aborted) before the next begins or
 *   the call settles; an abort failure never hides the error that caused it.
 * - If `fn` commits or aborts the transaction itself, awaited or not, that commit or abort is
 *   the attempt's outcome (never a second commit): on success `fn`'s result is returned; a
 *   conflict is retried like any other, even one `fn` caught, since nothing was applied.
 * - Backoff is "full jitter": uniform in [0, min(BACKOFF_MS_MAX, backoffMs * 2^attempt)], so
 *   conflicting clients spread out instead of colliding again in lockstep.
 */

import { ToonDBError } from '../protocol/errors.js';
import type { Isolation } from '../protocol/messages.js';
import type { Transaction } from './transaction.js';

export const WITH_TRANSACTION_RETRIES_DEFAULT = 3;
export const BACKOFF_MS_DEFAULT = 10;
/** Cap on one backoff sleep, however many attempts conflicted. */
export const BACKOFF_MS_MAX = 250;

export interface WithTransactionOptions {
  /** Re-runs after a conflict or LIMIT_EXCEEDED (so at most retries + 1 attempts); default 3. */
  retries?: number;
  isolation?: Isolation;
  /** Base of the exponential backoff in ms; default 10. */
  backoffMs?: number;
}

/** An error that another attempt, a little later, may not meet (see the file header). */
function isTransient(error: unknown): boolean {
  return error instanceof ToonDBError && (error.code === 'TXN_CONFLICT' || error.code === 'LIMIT_EXCEEDED');
}

function checkCount(value: number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new ToonDBError('INVALID_ARGUMENT', `${what} must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}

export function backoffDelayMs(attempt: number, backoffMs: number): number {
  return Math.random() * Math.min(BACKOFF_MS_MAX, backoffMs * 2 ** attempt);
}

export async function withTransaction<T>(
  begin: (isolation: Isolation | undefined) => Promise<Transaction>,
  fn: (txn: Transaction) => Promise<T>,
  options?: WithTransactionOptions | null,
): Promise<T> {
  const retries = checkCount(options?.retries, WITH_TRANSACTION_RETRIES_DEFAULT, 'retries');
  const backoffMs = checkCount(options?.backoffMs, BACKOFF_MS_DEFAULT, 'backoffMs');
  for (let attempt = 0; ; attempt++) {
    let txn: Transaction | null = null;
    try {
      txn = await begin(options?.isolation);
      txn.markManaged();
      const result = await fn(txn);
      // A commit or abort fn started, awaited or not and settled or not, is the attempt's end:
      // a conflict it met is retried, never returned as a success.
      const end = txn.endStarted;
      if (end !== null) await end;
      else if (txn.state === 'active') await txn.commit();
      return result;
    } catch (error) {
      // One fn started before throwing is finished before the next attempt begins.
      await txn?.endStarted?.catch(() => undefined);
      await txn?.[Symbol.asyncDispose]();
      if (!isTransient(error) || attempt >= retries) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, backoffDelayMs(attempt, backoffMs)));
  }
}
