// Edges of the daemon-wide request budget (daemon/bytes-budget.ts), its holder (flow.ts Flow)
// and the decoder's admission (protocol/frame.ts): random chunking and refusals, grants around a
// close, and a bound lowered by a reload below a frame an open connection may still send.
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Flow } from '../../daemon/flow.js';
import { BytesBudget, type BudgetHolder } from '../../daemon/bytes-budget.js';
import { encodeFrame, FrameDecoder } from '../../protocol/frame.js';
import { SOLO_FRAME_BYTES_MAX } from '../../protocol/limits.js';
import { mulberry32 } from '../helpers/rng.js';

describe('FrameDecoder admission under random chunking and refusals', () => {
  it('returns every body once, in order, and takes no body byte before its frame is admitted', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const rand = mulberry32(seed);
      const sizes = Array.from({ length: 1 + Math.floor(rand() * 12) }, () => 1 + Math.floor(rand() * 300));
      const bodies = sizes.map((n, i) => Buffer.alloc(n, (i * 31 + n) & 0xff));
      const stream = Buffer.concat(bodies.map((b) => encodeFrame(b)));
      const decoder = new FrameDecoder({ frameBytesMax: 512 });
      const out: Buffer[] = [];
      const offered: number[] = [];
      const admit = (bytes: number): boolean => {
        if (rand() < 0.4) return false;
        offered.push(bytes);
        return true;
      };
      let at = 0;
      while (at < stream.length || decoder.stalled) {
        if (at < stream.length && (!decoder.stalled || rand() < 0.5)) {
          const n = Math.min(stream.length - at, Math.floor(rand() * 40)); // 0-byte chunks too
          out.push(...decoder.push(stream.subarray(at, at + n), admit));
          at += n;
        } else if (decoder.stalled) {
          offered.push(-1); // the refused frame is granted (counted by its caller)
          out.push(...decoder.resumeAdmitted(admit));
        }
        decoder.invariants();
      }
      expect(out.map((b) => b.length)).toEqual(sizes);
      for (let i = 0; i < bodies.length; i++) expect(out[i].equals(bodies[i])).toBe(true);
      expect(decoder.bufferedBytes).toBe(0);
    }
  });
});

function fakeSocket() {
  const s = { writableLength: 0, paused: false, pauses: 0, resumes: 0,
    pause() { s.paused = true; s.pauses += 1; }, resume() { s.paused = false; s.resumes += 1; } };
  return s;
}

/** A Flow past its handshake: its first frame (a hello, small: admitted without waiting) was answered. */
function afterHello(flow: Flow): Flow {
  expect(flow.admit(1)).toBe(true);
  flow.bodyDropped(1);
  return flow;
}

/** Frames of more than SOLO_FRAME_BYTES_MAX: they never go in alone, so they wait their turn. */
const U = SOLO_FRAME_BYTES_MAX + 1;

describe('Flow as a budget holder', () => {
  it('admits a small frame without waiting while its connection holds nothing else, and no other', async () => {
    const budget = new BytesBudget(100 * U);
    const other = afterHello(new Flow(fakeSocket() as unknown as Socket, 4096, budget, new BytesBudget(1 << 30), () => undefined));
    expect(other.admit(100 * U)).toBe(true);
    expect(other.admit(10)).toBe(false); // it holds a frame: small or not, this one waits
    let grants = 0;
    const fresh = new Flow(fakeSocket() as unknown as Socket, 4096, budget, new BytesBudget(1 << 30), () => { grants += 1; });
    expect(fresh.admit(200)).toBe(true); // alone and small (a hello, a small get): counted, past the bound and the queue
    expect(budget.heldBytes).toBe(100 * U + 200);
    expect(fresh.admit(1)).toBe(false); // its next frame, pipelined behind it, waits its turn
    // Once its first is answered the connection holds nothing: the waiting frame goes in alone,
    // ahead of the older waiter, which still waits for room.
    fresh.answered([{ requestBytes: 200 }]);
    expect(fresh.daemonHeldBytes).toBe(1);
    expect(budget.heldBytes).toBe(100 * U + 1);
    expect(budget.waiters).toBe(1);
    await Promise.resolve();
    expect(grants).toBe(1);
    const big = new Flow(fakeSocket() as unknown as Socket, 4096, budget, new BytesBudget(1 << 30), () => undefined);
    expect(big.admit(SOLO_FRAME_BYTES_MAX + 1)).toBe(false); // too large to go in alone
    fresh.closed();
    big.closed();
    expect(budget.heldBytes).toBe(100 * U);
    other.answered([{ requestBytes: 100 * U }]);
    expect(other.daemonHeldBytes).toBe(10); // granted in its turn
  });

  // Review: small frames going in alone were counted against the bound, so under a tight
  // budget (frameBytesMax near requestBytesInFlightDaemonMax) busy clients' small frames kept a
  // large waiter at the head of the queue out for seconds. They are counted apart now.
  it('lets a large waiter in once other frames leave, whatever small frames hold meanwhile', async () => {
    const budget = new BytesBudget(100 * U);
    const a = afterHello(new Flow(fakeSocket() as unknown as Socket, 4096, budget, new BytesBudget(1 << 30), () => undefined));
    let bGranted = 0;
    const b = afterHello(new Flow(fakeSocket() as unknown as Socket, 4096, budget, new BytesBudget(1 << 30), () => { bGranted += 1; }));
    const c = new Flow(fakeSocket() as unknown as Socket, 4096, budget, new BytesBudget(1 << 30), () => undefined);
    expect(a.admit(60 * U)).toBe(true);
    expect(b.admit(100 * U)).toBe(false); // a whole budget's frame: waits for a
    expect(c.admit(SOLO_FRAME_BYTES_MAX)).toBe(true); // alone and small: in at once
    expect(budget.heldBytes).toBe(60 * U + SOLO_FRAME_BYTES_MAX);
    a.answered([{ requestBytes: 60 * U }]);
    expect(b.daemonHeldBytes).toBe(100 * U); // in, though c's small frame is still held
    await Promise.resolve();
    expect(bGranted).toBe(1);
    expect(budget.heldBytes).toBe(100 * U + SOLO_FRAME_BYTES_MAX); // past the bound by solo bytes only
    c.answered([{ requestBytes: SOLO_FRAME_BYTES_MAX }]);
    b.closed();
    expect(budget.heldBytes).toBe(0);
  });

  it('a grant while its own bound holds it keeps it paused; the connection resumes when both let go', async () => {
    const budget = new BytesBudget(100 * U);
    const other = afterHello(new Flow(fakeSocket() as unknown as Socket, 4096, budget, new BytesBudget(1 << 30), () => undefined));
    expect(other.admit(100 * U)).toBe(true);
    const socket = fakeSocket();
    let grants = 0;
    const flow = afterHello(new Flow(socket as unknown as Socket, 2, budget, new BytesBudget(1 << 30), () => { grants += 1; }));
    expect(flow.admit(10 * U)).toBe(false);
    expect(socket.paused).toBe(true);
    flow.requestRead();
    flow.requestRead();
    flow.pauseIfFull(); // its own bound too
    other.answered([{ requestBytes: 100 * U }]);
    await Promise.resolve();
    expect(grants).toBe(1);
    expect(socket.paused).toBe(true); // still held by the connection's bound
    flow.answered([{ requestBytes: 0 }, { requestBytes: 0 }]);
    flow.maybeResume();
    expect(socket.paused).toBe(false);
    expect(flow.daemonHeldBytes).toBe(10 * U);
    expect(budget.heldBytes).toBe(10 * U);
  });

  it('gives back once when closed between its grant and the grant\'s microtask, and never after', async () => {
    const budget = new BytesBudget(130 * U);
    const other = afterHello(new Flow(fakeSocket() as unknown as Socket, 4096, budget, new BytesBudget(1 << 30), () => undefined));
    expect(other.admit(80 * U)).toBe(true);
    const socket = fakeSocket();
    let grants = 0;
    const flow = afterHello(new Flow(socket as unknown as Socket, 4096, budget, new BytesBudget(1 << 30), () => { grants += 1; }));
    expect(flow.admit(30 * U)).toBe(true);
    expect(flow.admit(50 * U)).toBe(false);
    other.answered([{ requestBytes: 80 * U }]); // grants 50 U to flow, synchronously counted
    expect(budget.heldBytes).toBe(80 * U);
    flow.closed();
    expect(budget.heldBytes).toBe(0);
    await Promise.resolve();
    expect(grants).toBe(0); // closed: the session is not called
    expect(socket.resumes).toBe(0);
    flow.answered([{ requestBytes: 30 * U }]); // a reply of an engine call still running at close
    flow.bodyDropped(50 * U);
    flow.closed();
    expect(budget.heldBytes).toBe(0);
  });

  it('closing while waiting leaves the queue, and the next waiter gets in', async () => {
    const budget = new BytesBudget(100 * U);
    const a = afterHello(new Flow(fakeSocket() as unknown as Socket, 4096, budget, new BytesBudget(1 << 30), () => undefined));
    const b = afterHello(new Flow(fakeSocket() as unknown as Socket, 4096, budget, new BytesBudget(1 << 30), () => undefined));
    let cGranted = 0;
    const c = afterHello(new Flow(fakeSocket() as unknown as Socket, 4096, budget, new BytesBudget(1 << 30), () => { cGranted += 1; }));
    expect(a.admit(60 * U)).toBe(true);
    expect(b.admit(90 * U)).toBe(false);
    expect(c.admit(30 * U)).toBe(false);
    b.closed();
    await Promise.resolve();
    expect(cGranted).toBe(1);
    expect(budget.heldBytes).toBe(90 * U);
    expect(budget.waiters).toBe(0);
  });
});

describe('BytesBudget after a reload lowered it', () => {
  it('still admits a frame larger than the new bound once nothing else is held', () => {
    // An open connection keeps the frameBytesMax it was accepted with (server.ts reload), so it
    // may send a frame larger than a requestBytesInFlightDaemonMax lowered by a reload (which
    // only has to be >= the new frameBytesMax). Such a waiter must not block the queue forever.
    const budget = new BytesBudget(64);
    const grants: number[] = [];
    const old: BudgetHolder = { granted: (bytes) => grants.push(bytes) };
    const next: BudgetHolder = { granted: (bytes) => grants.push(bytes) };
    expect(budget.tryTake(10, next)).toBe(true);
    budget.setMax(32);
    expect(budget.tryTake(48, old)).toBe(false); // 10 held: waits
    expect(budget.tryTake(5, next)).toBe(false); // behind it
    budget.release(10);
    expect(grants).toEqual([48]); // alone, it gets in
    expect(budget.heldBytes).toBe(48);
    budget.release(48);
    expect(grants).toEqual([48, 5]);
    const lone = new BytesBudget(32);
    expect(lone.tryTake(48, old)).toBe(true); // nothing held, nobody waits
  });
});
