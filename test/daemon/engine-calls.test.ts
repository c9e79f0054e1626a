// Where a session's small calls run (daemon/engine-calls.ts): small plain writes commit on the
// daemon's thread only while the daemon allows it (not while replies wait for a fsync in sync
// mode: the lanes then take them), memory-only transaction steps always may.
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { EngineCalls } from '../../daemon/engine-calls.js';
import { OpKind, type Engine, type EngineOp, type EngineResult } from '../../engine/types.js';

/** An engine whose synchronous calls record themselves and succeed. */
function recordingEngine(calls: string[]): Engine {
  const answer = (name: string) => (ops: EngineOp[]): EngineResult[] => {
    calls.push(name);
    return ops.map(() => ({ seq: 1 }));
  };
  return { writeNow: answer('writeNow'), runInMemory: answer('runInMemory') } as unknown as Engine;
}

describe('EngineCalls.now', () => {
  const put: EngineOp = { kind: OpKind.put, key: Buffer.from('k'), value: Buffer.from('v') };
  const putInTxn: EngineOp = { kind: OpKind.put, key: Buffer.from('k'), value: Buffer.from('v'), txn: 7 };
  const get: EngineOp = { kind: OpKind.get, key: Buffer.from('k') };

  it('commits a small plain write here only while writes here are allowed', () => {
    const calls: string[] = [];
    let allowed = true;
    const engineCalls = new EngineCalls(recordingEngine(calls), pino({ level: 'silent' }), () => allowed);
    expect(engineCalls.now([put])).toHaveLength(1);
    allowed = false; // replies wait for a fsync: other writers are active
    expect(engineCalls.now([put])).toBeNull();
    // A transaction's memory-only step writes no journal: it still runs here.
    expect(engineCalls.now([putInTxn])).toHaveLength(1);
    // A read never runs here, allowed or not.
    allowed = true;
    expect(engineCalls.now([get])).toBeNull();
    expect(calls).toEqual(['writeNow', 'runInMemory']);
  });
});
