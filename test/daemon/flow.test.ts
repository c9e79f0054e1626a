// Flow's judgement of a client that does not read: the output must stay full with no sign of
// reading for the whole window. Regression: a client that kept reading was cut off because each
// sample caught its buffer refilled to the very same size by the next bounded engine call.
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Flow } from '../../daemon/flow.js';
import { BytesBudget } from '../../daemon/bytes-budget.js';
import { OUTPUT_PAUSE_BYTES } from '../../protocol/limits.js';

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
    socket.writableLength -= 1;
    expect(flow.unreadStalledMs(6_000)).toBe(0);
    socket.writableLength = OUTPUT_PAUSE_BYTES - 1;
    expect(flow.unreadStalledMs(7_000)).toBe(0);
  });
});
