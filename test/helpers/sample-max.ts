/**
 * Test helper: the largest value a daemon-wide figure reaches while something runs, read
 * from `stats` every few milliseconds (a bound that holds is never seen above its limit).
 */

import type { IpcClient } from '../../ipc-client/index.js';
import type { StatsResult } from '../../protocol/messages.js';

export interface MaxSampler {
  /** Stops sampling; resolves to the largest value seen. */
  stop(): Promise<number>;
}

/** Samples `read(stats)` through `client` until stopped. */
export function sampleMax(client: IpcClient, read: (stats: StatsResult) => number): MaxSampler {
  let seenMax = 0;
  let sampling = true;
  const done = (async () => {
    while (sampling) {
      seenMax = Math.max(seenMax, read(await client.stats()));
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    return seenMax;
  })();
  return {
    stop: () => {
      sampling = false;
      return done;
    },
  };
}
