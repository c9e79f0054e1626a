// Reply reservations (daemon/reply-budget.ts): sized from the requests, taken in turn, turned
// into unread bytes as replies are written (flow.ts noteUnread), given back exactly once.
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { BytesBudget } from '../../daemon/bytes-budget.js';
import { Flow } from '../../daemon/flow.js';
import { ReplyReservation, ReplyReserver, replyBytesFor, replyBytesOfResults } from '../../daemon/reply-budget.js';
import { DEFAULT_SERVER_LIMITS, ENVELOPE_BYTES_MAX, FRAME_HEADER_BYTES } from '../../protocol/limits.js';
import { engineCallReplyBytesMax, replyBytesMaxOf } from '../../protocol/limit-relations.js';
import { encodeFrame } from '../../protocol/frame.js';
import { MessageCodec } from '../../protocol/codec.js';
import type { Request } from '../../protocol/messages.js';

const limits = DEFAULT_SERVER_LIMITS;
const req = (op: string): { req: Request } => ({ req: { id: 1, op } as Request });

describe('replyBytesFor', () => {
  it('sums the largest replies of data requests, counts admin requests as nothing, and caps an engine-bounded call', () => {
    const gets = [req('get'), req('get')];
    expect(replyBytesFor(gets, 0, 2, limits, true)).toBe(2 * replyBytesMaxOf('get', limits));
    expect(replyBytesFor([req('stats'), req('ping'), req('put')], 0, 3, limits, false)).toBe(replyBytesMaxOf('put', limits));
    const many = Array.from({ length: 64 }, () => req('getBatch'));
    expect(replyBytesFor(many, 0, 64, limits, true)).toBe(engineCallReplyBytesMax(limits));
    expect(replyBytesFor(many, 0, 64, limits, false)).toBe(64 * replyBytesMaxOf('getBatch', limits));
    expect(replyBytesMaxOf('scanNext', limits)).toBe(4 + limits.frameBytesMax);
  });
});

describe('replyBytesOfResults', () => {
  it('is at least the frames the results become, counting their data and an envelope each', () => {
    const codec = new MessageCodec();
    const results = [{ value: Buffer.alloc(1000, 1), seq: 0 }, { value: null, seq: 0 }, { keys: [Buffer.from('a'), Buffer.from('bcd')], seq: 0 }];
    const bytes = replyBytesOfResults(results);
    expect(bytes).toBe(3 * (FRAME_HEADER_BYTES + ENVELOPE_BYTES_MAX) + 1000 + 1 + 3 + 2 * 5);
    const framed = results.reduce((sum, result, i) => sum + encodeFrame(codec.encode({ id: 4_000_000_000 + i, result })).length, 0);
    expect(framed).toBeLessThanOrEqual(bytes);
  });
});

describe('ReplyReservation', () => {
  it('covers unread bytes from what it reserved and gives back the rest once its last holder is done', () => {
    const budget = new BytesBudget(100);
    expect(budget.takeNow(60)).toBe(true);
    const reservation = new ReplyReservation(budget, 60);
    reservation.hold(); // a reply group waiting for an fsync
    expect(reservation.cover(25)).toBe(0);
    expect(reservation.cover(50)).toBe(15); // 35 left to cover: 15 must be charged
    reservation.drop(); // the call is done; the reply group still holds it
    expect(budget.heldBytes).toBe(60);
    reservation.drop();
    expect(budget.heldBytes).toBe(60); // everything was covered: nothing left to give back
    expect(() => reservation.drop()).toThrow(/invariant/);
  });
});

describe('ReplyReserver', () => {
  it('reserves at once while it fits, then in turn behind earlier waiters, and resolves waiters empty when its connection closes', async () => {
    const budget = new BytesBudget(100);
    const a = new ReplyReserver(budget);
    const b = new ReplyReserver(budget);
    const first = a.reserve(80);
    expect(first).toBeInstanceOf(ReplyReservation);
    expect(b.tryReserve(30)).toBeNull(); // does not fit, and tryReserve queues nothing
    expect(budget.waiters).toBe(0);
    const second = b.reserve(30);
    expect(second).toBeInstanceOf(Promise);
    expect(a.tryReserve(5)).toBeNull(); // fits, but b waits first: no overtaking
    const third = a.reserve(50);
    expect(budget.waiters).toBe(2);
    (first as ReplyReservation).drop();
    const granted = await second;
    expect(budget.heldBytes).toBe(30 + 50); // both granted, in order
    const closedWaiter = b.reserve(100); // 180 > 100: waits
    expect(budget.waiters).toBe(1);
    b.closed();
    expect(budget.waiters).toBe(0);
    const empty = await closedWaiter;
    empty.drop();
    granted.drop();
    (await third).drop();
    expect(budget.heldBytes).toBe(0);
    expect(b.reserve(10)).toBeInstanceOf(ReplyReservation); // closed: nothing taken, nothing waits
    expect(budget.heldBytes).toBe(0);
  });
});

describe('Flow.noteUnread', () => {
  it('holds what the socket holds: covered by the reservation of the replies written, charged beyond it, given back as read and at close', () => {
    const socket = { writableLength: 0, pause() {}, resume() {} };
    const requests = new BytesBudget(1 << 30);
    const replies = new BytesBudget(1000);
    const flow = new Flow(socket as unknown as Socket, 4096, requests, replies, () => undefined);
    expect(replies.takeNow(300)).toBe(true);
    const reservation = new ReplyReservation(replies, 300);
    socket.writableLength = 200; // a write the kernel did not take whole
    flow.noteUnread(reservation);
    expect(replies.heldBytes).toBe(300); // 200 unread, 100 still reserved
    socket.writableLength = 250; // an admin reply, reserved by nothing
    flow.noteUnread();
    expect(replies.heldBytes).toBe(350);
    reservation.drop();
    expect(replies.heldBytes).toBe(250);
    socket.writableLength = 40; // the client read
    flow.noteUnread();
    expect(replies.heldBytes).toBe(40);
    flow.closed();
    expect(replies.heldBytes).toBe(0);
    socket.writableLength = 500;
    flow.noteUnread(); // closed: nothing more is counted
    expect(replies.heldBytes).toBe(0);
  });
});
