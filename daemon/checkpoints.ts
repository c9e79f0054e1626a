/**
 * The checkpoints clients ask for (`checkpoint`): one at a time, shared by the requests waiting.
 *
 * Why: a checkpoint fsyncs the journal, seals the memtable and waits for its flush (up to 25 s).
 * Run once per request, any client the socket lets in could keep several on the engine's
 * threads at once and seal a memtable per request (security review: 16 connections at ~490
 * checkpoints/s raised `stats`' p50 from 0.5 to 30 ms, each a tiny table for compactions).
 *
 * Invariants: at most one engine checkpoint runs at a time; a request that arrives while one
 * runs is answered by the next one, which starts after it ends (so it covers every write
 * acknowledged before the request), and every request waiting shares that next run; runs start
 * at least CHECKPOINT_INTERVAL_MIN_MS apart. A failed run fails the requests it answers only.
 */

import { setTimeout as delay } from 'node:timers/promises';
import type { CheckpointReport } from '../engine/types.js';

/** Least time between the starts of two checkpoints (a checkpoint-spamming client gets at most
 * ~10 a second, each sealing a memtable). */
export const CHECKPOINT_INTERVAL_MIN_MS = 100;

export class CheckpointRuns {
  #running: Promise<CheckpointReport> | null = null;
  #next: Promise<CheckpointReport> | null = null;
  #lastStartMs = -Infinity;

  constructor(
    private readonly run: () => Promise<CheckpointReport>,
    private readonly intervalMinMs = CHECKPOINT_INTERVAL_MIN_MS,
  ) {}

  /** A checkpoint that starts no earlier than this call (see the header). */
  request(): Promise<CheckpointReport> {
    const running = this.#running;
    if (running === null) return this.#start();
    this.#next ??= running.then(ignore, ignore).then(() => {
      this.#next = null;
      return this.#start();
    });
    return this.#next;
  }

  #start(): Promise<CheckpointReport> {
    const waitMs = Math.max(0, this.#lastStartMs + this.intervalMinMs - Date.now());
    const running = (async () => {
      await delay(waitMs); // also makes the end below come after `this.#running = running`
      this.#lastStartMs = Date.now();
      try {
        return await this.run();
      } finally {
        this.#running = null;
      }
    })();
    this.#running = running;
    return running;
  }
}

const ignore = (): void => undefined;
