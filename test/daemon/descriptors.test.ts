// How the daemon shares its open-files limit between client sockets and the engine
// (daemon/descriptors.ts), the limit it reads, and the throttle on its repeated log lines.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { descriptorBudget, OPEN_FILES_LIMIT_MIN } from '../../daemon/descriptors.js';
import { ThrottledLog } from '../../daemon/throttled-log.js';
import { openFilesLimit } from '../../engine/index.js';
import {
  CONNECTIONS_MAX, ENGINE_FD_RESERVE, ENGINE_TABLE_FILES_MAX, ENGINE_TABLE_FILES_MIN, FD_LIMITED_CONNECTIONS_MIN, HANGING_UP_SOCKETS_MIN,
} from '../../protocol/limits.js';

describe('descriptorBudget', () => {
  it('lowers nothing when the limit has room for everything', () => {
    for (const limit of [ENGINE_FD_RESERVE + ENGINE_TABLE_FILES_MAX + CONNECTIONS_MAX + HANGING_UP_SOCKETS_MIN, 65_536, Number.MAX_SAFE_INTEGER]) {
      const budget = descriptorBudget(limit);
      expect(budget.tableFiles).toBe(ENGINE_TABLE_FILES_MAX);
      expect(budget.connectionsLimit).toBeGreaterThanOrEqual(CONNECTIONS_MAX);
    }
  });

  it('never hands out more descriptors than the limit, and keeps room for refusals', () => {
    for (let limit = OPEN_FILES_LIMIT_MIN; limit <= 4096; limit++) {
      const budget = descriptorBudget(limit);
      expect(ENGINE_FD_RESERVE + budget.tableFiles + budget.sockets).toBeLessThanOrEqual(limit);
      expect(budget.connectionsLimit + HANGING_UP_SOCKETS_MIN).toBeLessThanOrEqual(budget.sockets);
      expect(budget.connectionsLimit).toBeGreaterThanOrEqual(FD_LIMITED_CONNECTIONS_MIN);
      expect(budget.tableFiles).toBeGreaterThanOrEqual(ENGINE_TABLE_FILES_MIN);
      expect(budget.tableFiles).toBeLessThanOrEqual(ENGINE_TABLE_FILES_MAX);
      // The thresholds PROTOCOL.md and the README give: connectionsMax is lowered below 1471,
      // the engine's table files below 2020.
      expect(budget.connectionsLimit >= CONNECTIONS_MAX, `limit ${limit}`).toBe(limit >= 1471);
      expect(budget.tableFiles === ENGINE_TABLE_FILES_MAX, `limit ${limit}`).toBe(limit >= 2020);
    }
  });

  it('gives the table files a quarter when the largest connectionsMax wants it all, and what it leaves otherwise', () => {
    // `ulimit -n 1024` (LimitNOFILE=1024): the limit caps connectionsMax 1024.
    expect(descriptorBudget(1024)).toEqual({ openFilesLimit: 1024, tableFiles: 240, sockets: 720, connectionsLimit: 688 });
    // 2048: the table files get what 1024 connections and their refusals leave.
    expect(descriptorBudget(2048)).toEqual({ openFilesLimit: 2048, tableFiles: ENGINE_TABLE_FILES_MAX, sockets: 1084, connectionsLimit: 1052 });
  });

  it('refuses a limit that leaves too few connections, with INVALID_ARGUMENT', () => {
    expect(descriptorBudget(OPEN_FILES_LIMIT_MIN).connectionsLimit).toBe(FD_LIMITED_CONNECTIONS_MIN);
    expect(() => descriptorBudget(OPEN_FILES_LIMIT_MIN - 1)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => descriptorBudget(NaN)).toThrow(/open-files limit/);
  });
});

describe.runIf(process.platform === 'linux')('openFilesLimit', () => {
  it('is the soft RLIMIT_NOFILE of this process', () => {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    expect(openFilesLimit()).toBe(soft === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(soft));
  });
});

describe('ThrottledLog', () => {
  it('lets one line through per interval and counts the ones it held back', () => {
    let now = 1_000;
    const log = new ThrottledLog(10_000, () => now);
    expect(log.take()).toBe(0);
    expect(log.take()).toBeNull();
    now += 9_999;
    expect(log.take()).toBeNull();
    now += 1;
    expect(log.take()).toBe(2);
    expect(log.take()).toBeNull();
    now += 60_000;
    expect(log.take()).toBe(1);
  });
});
