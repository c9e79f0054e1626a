/**
 * How one connection's replies leave: held until the fsync covering them, written together, and
 * not produced faster than the client reads them.
 *
 * Responsibility: `sendWhenDurable` releases a call's replies once the durability gate says the
 * writes they could show are durable (at once in `interval` and `off` modes), or fails them all
 * with the gate's error; `send` writes replies with one socket write (replies.ts), unless the
 * client has left more than OUTPUT_BUFFER_BYTES_MAX unread, which cuts it off (flow.ts), and
 * has the daemon-wide reply budget count what the client has not read yet (flow.ts noteUnread);
 * `whenWritable` lets the session wait for the client to read before producing more.
 *
 * Invariants: every reply handed to `send` or `sendWhenDurable` is counted once through
 * `onSent`, written or not (a closed or cut-off connection writes nothing); `awaiting` counts
 * the reply groups held for a fsync, each holding its reply reservation until it is sent; a
 * waiter of `whenWritable` is released by the next drain or by `releaseWaiters` (the
 * connection closed), never left hanging.
 */

import type { Socket } from 'node:net';
import { toToonDBError } from '../protocol/errors.js';
import type { MessageCodec } from '../protocol/codec.js';
import type { Counters } from './counters.js';
import type { DurabilityGate } from './durability.js';
import type { Flow } from './flow.js';
import { fail } from './handlers/scope.js';
import type { ReplyReservation } from './reply-budget.js';
import { writeReplies, type Reply } from './replies.js';

/** A settled promise: what nothing to wait for returns. */
const SETTLED: Promise<void> = Promise.resolve();

export interface OutboxHooks {
  /** `replies` left the session's hands (written, or dropped on a closed connection). */
  onSent(replies: readonly Reply[]): void;
  isClosed(): boolean;
  /** The client left too much unread: close the connection. */
  cutOff(reason: string): void;
}

export class Outbox {
  /** Reply groups waiting for the fsync that covers them. */
  awaiting = 0;
  private writableWaiters: (() => void)[] = [];

  constructor(
    private readonly socket: Socket,
    private readonly flow: Flow,
    private readonly codec: MessageCodec,
    private readonly gate: DurabilityGate,
    private readonly counters: Counters,
    private readonly hooks: OutboxHooks,
  ) {}

  /** Sends `replies` once every write up to ticket `maxSeq` is durable; resolves when sent.
   * `reservation`: the room reserved for them in the reply budget, kept until they are sent. */
  sendWhenDurable(replies: Reply[], maxSeq: number, reservation: ReplyReservation | null = null): Promise<void> {
    const wait = this.gate.waitFor(maxSeq);
    if (wait === null) {
      this.send(replies, reservation);
      return SETTLED;
    }
    this.awaiting += 1;
    reservation?.hold();
    return wait.then(
      () => this.send(replies, reservation),
      (error: unknown) => {
        const coded = toToonDBError(error);
        this.send(replies.map((reply) => ({ ...reply, outcome: fail(coded) })), reservation);
      },
    ).finally(() => {
      this.awaiting -= 1;
      reservation?.drop();
    });
  }

  /** Writes replies with one socket write; cuts off a client that does not read. What the
   * write leaves unread is covered by `reservation` or charged to the reply budget. */
  send(replies: Reply[], reservation: ReplyReservation | null = null): void {
    if (this.hooks.isClosed()) {
      // dropped: the client is gone
    } else if (this.flow.overflowing()) {
      this.hooks.cutOff('output buffer limit');
    } else {
      writeReplies(this.socket, replies, this.codec, this.counters);
      this.flow.noteUnread(reservation);
    }
    this.hooks.onSent(replies);
  }

  /** Resolves once the client has read its replies below OUTPUT_PAUSE_BYTES (at once if it
   * has), or the connection closed. */
  whenWritable(): Promise<void> {
    if (this.hooks.isClosed() || !this.flow.full()) return SETTLED;
    return new Promise((resolve) => this.writableWaiters.push(resolve));
  }

  /** On the socket's 'drain', and when the connection closes. */
  releaseWaiters(): void {
    const waiters = this.writableWaiters;
    this.writableWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
