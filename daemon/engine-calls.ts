/**
 * A session's engine calls: where they run, and what a whole-call failure becomes.
 *
 * Responsibility: run a call's ops on the libuv pool (`executeBounded`) or on the connection's
 * ordered lane (`executeOrdered`), either of which may answer only a prefix once the results
 * are large (ENGINE_CALL_OUTPUT_BYTES_MAX),
 * or on this thread: memory-only transaction steps (`runInMemory`) and small plain writes whose
 * commit can start at once (`writeNow`); and turn a failure of the whole call into one coded
 * result per op, so the session always has a result for every op it sent.
 *
 * Invariants: never rejects; an INTERNAL failure is logged once per call; an engine that
 * returns a different number of results than ops (for `run`: none, or more than ops) breaks an
 * invariant.
 */

import type { Logger } from 'pino';
import { isMemoryStepCall, plainWriteKeys, type Engine, type EngineOp, type EngineResult } from '../engine/types.js';
import { toToonDBError } from '../protocol/errors.js';
import { ENGINE_CALL_OUTPUT_BYTES_MAX, ENGINE_WRITE_NOW_KEYS_MAX } from '../protocol/limits.js';

export class EngineCalls {
  constructor(
    private readonly engine: Engine,
    private readonly log: Logger,
    /** Whether small plain writes may commit on this thread now (see `now`). */
    private readonly writesHereAllowed: () => boolean,
  ) {}

  /**
   * Runs the call here on this thread when the engine can take it without waiting, which saves
   * the engine round trip (two cross-CPU wake-ups): memory-only transaction steps (begin,
   * abort, writes inside a transaction; a read-modify-write transaction makes two trips
   * instead of four) and small calls of plain writes (ENGINE_WRITE_NOW_KEYS_MAX) whose commit
   * can start at once, while `writesHereAllowed` says so (not while replies wait for a fsync:
   * then other writers are active, and their commits are cheaper on the lanes, which go from
   * call to call without sleeping and hand back every outcome that finished in one notice,
   * than one by one on this thread, which then has every connection's requests to read).
   * Null when the call is none of these or the engine declined it. The caller makes sure no
   * earlier call of the connection is still running (this one would pass it).
   */
  now(ops: EngineOp[]): EngineResult[] | null {
    const memoryOnly = isMemoryStepCall(ops);
    if (!memoryOnly && !(isSmallWriteCall(ops) && this.writesHereAllowed())) return null;
    try {
      return checked(ops, memoryOnly ? this.engine.runInMemory(ops) : this.engine.writeNow(ops));
    } catch (error) {
      return this.failed(ops, error);
    }
  }

  /** Runs the call on the pool, or after every earlier call of `lane` on that lane (`resume`: the
   * rest of a lane call that ended early). It may end early once its results are large
   * (ENGINE_CALL_OUTPUT_BYTES_MAX), with results for a prefix of `ops`, at least one: the caller
   * runs the rest. A lane call may also come back with none, skipped behind an earlier call of
   * `lane` that ended early (Engine.executeOrdered): the caller runs it again after that one. */
  async run(ops: EngineOp[], lane?: number, resume = false): Promise<EngineResult[]> {
    try {
      const results = lane === undefined ? await this.engine.executeBounded(ops, ENGINE_CALL_OUTPUT_BYTES_MAX)
        : await this.engine.executeOrdered(lane, ops, resume);
      if ((results.length === 0 && (lane === undefined || resume)) || results.length > ops.length) {
        throw new Error(`invariant: engine returned ${results.length} results for a prefix of ${ops.length} ops`);
      }
      return results;
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

function isSmallWriteCall(ops: EngineOp[]): boolean {
  const keys = plainWriteKeys(ops);
  return keys > 0 && keys <= ENGINE_WRITE_NOW_KEYS_MAX;
}

function checked(ops: EngineOp[], results: EngineResult[] | null): EngineResult[] | null {
  if (results !== null && results.length !== ops.length) {
    throw new Error(`invariant: engine returned ${results.length} results for ${ops.length} ops`);
  }
  return results;
}
