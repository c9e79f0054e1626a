// Flow's judgement of a client that does not read: the output must stay full with no sign of
// reading for the whole window. Regression: a client that kept reading was cut off because each
// sample caught its buffer refilled to the very same size by the next bounded engine call.
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Flow } from '../../daemon/flow.js';
import { BytesBudget } from '../../daemon/bytes-budget.js';
import { OUTPUT_PAUSE_BYTES, UNREAD_PROGRESS_BYTES_MIN } from '../../protocol/limits.js';

function flowOver(bytes: { writableLength: number }): Flow {
  return new Flow(bytes as unknown as Socket, 4096, new BytesBudget(1 << 30), new BytesBudget(1 << 30), () => undefined);
}

describe('Flow.unreadStalledMs', () => {
  it('counts the time the output stays full and unchanged', () => {
    const socket = { writableLength: OUTPUT_PAUSE_BYTES + 100 };
    const flow = flowOver(socket);
    expect(flow.unreadStalledMs(1_000)).toBe(0);
    expect(flow.unreadStalledMs(2_000)).toBe(1_000);
    expect(flow.unreadStalledMs(3_000)).toBe(2_000);
  });

  it('starts again when the output shrinks or drained between samples, or is no longer full', () => {
    const socket = { writableLength: OUTPUT_PAUSE_BYTES + 100 };
    const flow = flowOver(socket);
    flow.unreadStalledMs(1_000);
    expect(flow.unreadStalledMs(2_000)).toBe(1_000);
    // Drained and refilled to the same size: the client read everything in between.
    flow.drained();
    expect(flow.unreadStalledMs(3_000)).toBe(0);
    expect(flow.unreadStalledMs(4_000)).toBe(0); // a new window starts
    expect(flow.unreadStalledMs(5_000)).toBe(1_000);
    socket.writableLength -= UNREAD_PROGRESS_BYTES_MIN;
    expect(flow.unreadStalledMs(6_000)).toBe(0);
    socket.writableLength = OUTPUT_PAUSE_BYTES - 1;
    expect(flow.unreadStalledMs(7_000)).toBe(0);
  });

  // Regression (review): any shrink counted as reading, so a client that read a few bytes a
  // second was never cut off, and kept its unread replies and its requests' bytes held.
  it('does not count a client that reads a few bytes a second as reading', () => {
    const socket = { writableLength: OUTPUT_PAUSE_BYTES + 100_000 };
    const flow = flowOver(socket);
    flow.unreadStalledMs(1_000);
    for (let second = 2; second <= 31; second++) {
      socket.writableLength -= 100; // a trickle
      expect(flow.unreadStalledMs(second * 1_000)).toBe((second - 1) * 1_000);
    }
  });
});

// Regression: the clock of an incomplete frame restarted at every chunk, so a client trickling
// one byte at a time was never closed (partialFrameMsMax) and held its frame's announced
// length in the daemon-wide request budget for ever.
describe('Flow.incompleteFrameMs', () => {
  function pausable(): Socket {
    return { writableLength: 0, pause: () => undefined, resume: () => undefined } as unknown as Socket;
  }

  /** performance.now() (which Flow reads) under the test's control. */
  let nowMs = 0;
  const advance = (ms: number): void => { nowMs += ms; };
  beforeEach(() => {
    nowMs = 1_000;
    vi.spyOn(performance, 'now').mockImplementation(() => nowMs);
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('runs from the frame\'s first byte, not its last, and restarts only at a frame boundary', () => {
    const flow = new Flow(pausable(), 4096, new BytesBudget(1 << 30), new BytesBudget(1 << 30), () => undefined);
    expect(flow.incompleteFrameMs()).toBe(0);
    flow.framesRead(0, 3); // part of a header
    advance(500);
    flow.framesRead(0, 4); // one more byte of the same frame
    advance(300);
    expect(flow.incompleteFrameMs()).toBe(800);
    flow.framesRead(2, 10); // two frames completed; the chunk began a third
    expect(flow.incompleteFrameMs()).toBe(0);
    advance(200);
    expect(flow.incompleteFrameMs()).toBe(200);
    flow.framesRead(1, 0); // at a boundary
    advance(5_000);
    expect(flow.incompleteFrameMs()).toBe(0);
  });

  it('stops while the daemon does not read (a frame waiting for the budget)', async () => {
    const budget = new BytesBudget(64);
    expect(budget.tryTake(60, { granted: () => undefined })).toBe(true); // another connection's frame
    const flow = new Flow(pausable(), 4096, budget, new BytesBudget(1 << 30), () => undefined);
    expect(flow.admit(10)).toBe(true); // the hello
    flow.framesRead(1, 4); // a header arrived with the hello
    advance(100);
    expect(flow.admit(1_000)).toBe(false); // refused: reading pauses
    advance(10_000);
    expect(flow.incompleteFrameMs()).toBe(0);
    flow.granted(1_000);
    await Promise.resolve(); // granted resumes reading in a microtask
    advance(50);
    expect(flow.incompleteFrameMs()).toBe(150);
  });
});
