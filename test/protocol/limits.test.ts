// The relations between limits that every message relies on (brokenLimitRelation), for a
// daemon's configured limits as for the compiled-in ones.
import { describe, expect, it } from 'vitest';
import { DEFAULT_SERVER_LIMITS } from '../../protocol/limits.js';
import { brokenLimitRelation } from '../../protocol/limit-relations.js';

describe('brokenLimitRelation', () => {
  it('holds for the defaults', () => {
    expect(brokenLimitRelation(DEFAULT_SERVER_LIMITS)).toBeNull();
  });

  // Regression: valueBytesMax equal to batchBytesMax passed, yet a maximal value always comes
  // with a key, so no batch could carry it: a dump of such a daemon could not be loaded back.
  it('needs a batch to carry one maximal key and value together', () => {
    const limits = { ...DEFAULT_SERVER_LIMITS, keyBytesMax: 1_000, valueBytesMax: 1_000, batchBytesMax: 1_999 };
    expect(brokenLimitRelation(limits)).toMatch(/a batch can carry at least one maximal entry/);
    expect(brokenLimitRelation({ ...limits, batchBytesMax: 2_000, txnBytesMax: 2_000 })).toBeNull();
  });
});
