// Clients' checkpoints run one at a time and are shared: a request made while one runs is
// answered by the next run, which starts after it; every request waiting shares that run; runs
// start at least an interval apart. Unit test of daemon/checkpoints.ts (the `checkpoint` op
// itself is tested against real daemons in admin.test.ts).
import { describe, expect, it } from 'vitest';
import { CheckpointRuns } from '../../daemon/checkpoints.js';
import type { CheckpointReport } from '../../engine/types.js';

/** A fake engine checkpoint: counts runs and how many ran at once; each takes `ms`. */
function fakeRun(ms: number, failRun?: number) {
  const state = { runs: 0, active: 0, maxActive: 0, startsMs: [] as number[] };
  const run = async (): Promise<CheckpointReport> => {
    state.runs += 1;
    const n = state.runs;
    state.startsMs.push(Date.now());
    state.active += 1;
    state.maxActive = Math.max(state.maxActive, state.active);
    await new Promise((resolve) => setTimeout(resolve, ms));
    state.active -= 1;
    if (n === failRun) throw new Error(`run ${n} failed`);
    return { lsn: BigInt(n), durationMs: ms };
  };
  return { state, run };
}

describe('CheckpointRuns', () => {
  it('runs one at a time, and the requests made during a run share the next', async () => {
    const { state, run } = fakeRun(30);
    const runs = new CheckpointRuns(run, 0);
    const first = runs.request();
    const during = Array.from({ length: 16 }, () => runs.request());
    const reports = await Promise.all([first, ...during]);
    expect(reports.map((r) => Number(r.lsn))).toEqual([1, ...Array<number>(16).fill(2)]);
    expect(state).toMatchObject({ runs: 2, maxActive: 1 });
    expect(Number((await runs.request()).lsn)).toBe(3); // idle again: a new run at once
  });

  it('starts runs at least the interval apart', async () => {
    const { state, run } = fakeRun(5);
    const runs = new CheckpointRuns(run, 100);
    for (let i = 0; i < 3; i++) await runs.request();
    const gaps = state.startsMs.slice(1).map((at, i) => at - state.startsMs[i]);
    expect(gaps.every((gap) => gap >= 95)).toBe(true); // timers may fire a ms early
  });

  it('fails only the requests a failed run answers', async () => {
    const { run } = fakeRun(20, 1);
    const runs = new CheckpointRuns(run, 0);
    const first = runs.request();
    const second = runs.request();
    await expect(first).rejects.toThrow('run 1 failed');
    expect(Number((await second).lsn)).toBe(2);
  });
});
