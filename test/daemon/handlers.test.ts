// The data handlers as pure functions of (request, scope) -> engine op -> reply
// (daemon/handlers/), with a scope made by hand: what a batch's prepared form covers when an
// engine call answers only its first ops, and how a commit the engine never reached is let go.
import { describe, expect, it } from 'vitest';
import { OpKind, type EngineResult } from '../../engine/types.js';
import { Counters } from '../../daemon/counters.js';
import { finish, prepareBatch, requestsCovered } from '../../daemon/handlers/index.js';
import type { SessionScope } from '../../daemon/handlers/scope.js';
import { HandleRegistry } from '../../daemon/registry.js';
import { DEFAULT_SERVER_LIMITS } from '../../protocol/limits.js';
import type { Request } from '../../protocol/messages.js';

function scopeOf(released: number[]): SessionScope {
  let handle = 100;
  return {
    txns: new HandleRegistry(8, 60_000),
    cursors: new HandleRegistry(8, 60_000),
    counters: new Counters(),
    limits: DEFAULT_SERVER_LIMITS,
    takeTxnHandle: () => ++handle,
    releaseTxn: (h) => released.push(h),
    nowMs: 0,
  };
}

const queued = (...reqs: object[]): { req: Request }[] => reqs.map((req, i) => ({ req: { id: i + 1, ...req } as Request }));
const key = Buffer.from('k');

describe('requestsCovered', () => {
  it('counts the requests whose ops ran, with the refused ones right after them', () => {
    const refused = { op: 'get', key, txn: 99n }; // no such transaction: answered without the engine
    const prepared = prepareBatch(queued({ op: 'get', key }, refused, { op: 'get', key }, refused, refused, { op: 'get', key }), 0, 6, scopeOf([]));
    expect(prepared.ops).toHaveLength(3);
    expect(requestsCovered(prepared, 1)).toBe(2);
    expect(requestsCovered(prepared, 2)).toBe(5);
    expect(requestsCovered(prepared, 3)).toBe(6);
  });
});

describe('txn handlers', () => {
  it('releases in the engine a transaction whose commit call failed as a whole, and only then', () => {
    const released: number[] = [];
    const scope = scopeOf(released);
    const begin = queued({ op: 'begin', txn: 7n }, { op: 'commit', txn: 7n }, { op: 'begin', txn: 8n }, { op: 'commit', txn: 8n });
    const first = prepareBatch(begin, 0, 2, scope);
    const handle = first.ops[0].txn!;
    expect(first.ops[1]).toMatchObject({ kind: OpKind.commit, txn: handle });
    const internal: EngineResult = { code: 'INTERNAL', message: 'engine call failed', seq: 0 };
    expect(finish(begin[1].req as never, internal, scope, first.ops[1])).toMatchObject({ ok: false, error: { code: 'INTERNAL' } });
    expect(released).toEqual([handle]);
    const second = prepareBatch(begin, 2, 4, scope);
    const conflict: EngineResult = { code: 'TXN_CONFLICT', message: 'conflict', seq: 0 };
    expect(finish(begin[3].req as never, conflict, scope, second.ops[1])).toMatchObject({ ok: false, error: { code: 'TXN_CONFLICT' } });
    expect(released).toEqual([handle]);
  });
});
