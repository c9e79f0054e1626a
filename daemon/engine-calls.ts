/**
 * A session's engine calls: where they run, and what a whole-call failure becomes.
 *
 * Responsibility: run a call's ops on the libuv pool (`execute`), on the connection's ordered
 * lane (`executeOrdered`), or, for memory-only transaction steps, on this thread
 * (`runInMemory`), and turn a failure of the whole call into one coded result per op, so the
 * session always has a result for every op it sent.
 *
 * Invariants: never rejects; an INTERNAL failure is logged once per call; an engine that
 * returns a different number of results than ops breaks an invariant and throws.
 */

import type { Logger } from 'pino';
import { isMemoryStepCall, type Engine, type EngineOp, type EngineResult } from '../engine/types.js';
import { toToonDBError } from '../protocol/errors.js';

export class EngineCalls {
  constructor(
    private readonly engine: Engine,
    private readonly log: Logger,
  ) {}

  /**
   * Runs a call of memory-only transaction steps (begin, abort, writes inside a transaction)
   * here on this thread when the engine can take it without waiting, which saves the engine
   * round trip: a read-modify-write transaction makes two trips instead of four. Null when the
   * call is not such a call or the engine declined it. The caller makes sure no earlier call
   * of the connection is still running (this one would pass it).
   */
  inMemory(ops: EngineOp[]): EngineResult[] | null {
    if (!isMemoryStepCall(ops)) return null;
    try {
      return checked(ops, this.engine.runInMemory(ops));
    } catch (error) {
      return this.failed(ops, error);
    }
  }

  /** Runs the call on the pool, or after every earlier call of `lane` on that lane. */
  async run(ops: EngineOp[], lane?: number): Promise<EngineResult[]> {
    try {
      const results = lane === undefined ? await this.engine.execute(ops) : await this.engine.executeOrdered(lane, ops);
      return checked(ops, results)!;
    } catch (error) {
      return this.failed(ops, error);
    }
  }

  private failed(ops: EngineOp[], error: unknown): EngineResult[] {
    const coded = toToonDBError(error);
    if (coded.code === 'INTERNAL') this.log.error({ err: error }, 'engine batch failed');
    return ops.map(() => ({ code: coded.code, message: coded.message, seq: 0 }));
  }
}

function checked(ops: EngineOp[], results: EngineResult[] | null): EngineResult[] | null {
  if (results !== null && results.length !== ops.length) {
    throw new Error(`invariant: engine returned ${results.length} results for ${ops.length} ops`);
  }
  return results;
}
