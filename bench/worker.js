/**
 * Child-process runner for the multi-process trials (forked by trial.js).
 *
 * Protocol over the IPC channel: parent sends `setup` {target, kind, inFlight, connections,
 * keyCount, seconds, warmupSeconds, seed}; the worker connects its own drivers (`connections`
 * of them, its slots spread over them), builds its keys and ops, and
 * answers `ready`; on `go` it runs the closed loop and answers `result` {ops, elapsedNs, counts}
 * (histogram buckets), or `error`. All set-up happens before `ready`, so the parent's barrier
 * lines the workers' measured windows up. It exits when the parent disconnects, so a dying
 * bench leaves no workers behind.
 */

import { makeDriver } from './drivers.js';
import { closedLoop, openOps } from './trial.js';
import { makeEnv } from './workloads.js';

let setup = null;
let opened = null;

process.on('disconnect', () => process.exit(0));

process.on('message', async (message) => {
  try {
    if (message.type === 'setup') {
      setup = message;
      opened = await openOps(makeDriver, message.target, setup.kind, makeEnv(setup.keyCount, setup.seed), setup.connections);
      process.send({ type: 'ready' });
    } else if (message.type === 'go') {
      const { ops, elapsedNs, histogram } = await closedLoop(opened.ops, setup);
      await opened.close();
      process.send({ type: 'result', ops, elapsedNs, counts: histogram.toJSON() }, () => process.exit(0));
    }
  } catch (error) {
    process.send({ type: 'error', error: String(error?.stack ?? error) }, () => process.exit(1));
  }
});
