/**
 * Writing a batch of replies to a connection's socket.
 *
 * Responsibility: turn replies (a request id and its outcome) into frames and hand them to the
 * socket in one write (protocol/frame.ts writeFrames). Replies of the simple shapes
 * (protocol/simple-frames.ts) are written straight into the outgoing buffer; others, and every
 * error, are encoded by the codec. Records each reply's latency, the bytes sent and the errors.
 *
 * Invariants: every reply becomes exactly one frame, never over frameBytesMax; a result the
 * codec cannot encode (or too large a one, which the limits rule out) becomes that request's
 * coded error instead of failing the batch; nothing here closes the socket (the
 * session decides what to do about a reader that falls behind).
 */

import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { MessageCodec } from '../protocol/codec.js';
import { toToonDBError, ToonDBError } from '../protocol/errors.js';
import { writeFrames } from '../protocol/frame.js';
import { FRAME_HEADER_BYTES } from '../protocol/limits.js';
import { encodableResult } from '../protocol/packed-array.js';
import { simpleReplyBytes, writeSimpleReply, type SimpleResult } from '../protocol/simple-replies.js';
import type { Counters } from './counters.js';
import { fail, type Outcome } from './handlers/scope.js';

export interface Reply {
  id: number;
  outcome: Outcome;
  /** performance.now() when the request arrived (for the latency histogram). */
  receivedAt: number;
  /** The request's frame body bytes the session counts as in flight until this reply. */
  requestBytes: number;
}

/** Writes `replies` to `socket` with one socket write; returns the bytes written. */
export function writeReplies(socket: Socket, replies: Reply[], codec: MessageCodec, counters: Counters): number {
  const now = performance.now();
  const frames = new Array<Buffer | null>(replies.length);
  const sizes = new Array<number>(replies.length);
  let totalBytes = 0;
  for (let i = 0; i < replies.length; i++) {
    const reply = replies[i];
    counters.latency.record(now - reply.receivedAt);
    let bytes = reply.outcome.ok ? simpleReplyBytes(reply.id, reply.outcome.result) : -1;
    if (bytes - FRAME_HEADER_BYTES > codec.frameBytesMax) bytes = -1; // the codec refuses it, below
    let frame: Buffer | null = null;
    if (bytes < 0) {
      frame = encodeReply(reply, codec, counters);
      bytes = frame.length;
    }
    frames[i] = frame;
    sizes[i] = bytes;
    totalBytes += bytes;
  }
  counters.bytesOut += totalBytes;
  writeFrames(socket, {
    count: replies.length,
    bytes: (i) => sizes[i],
    ready: (i) => frames[i],
    write: (i, target, at) => writeSimpleReply(target, at, replies[i].id, (replies[i].outcome as { result: SimpleResult }).result, sizes[i]),
  }, totalBytes);
  return totalBytes;
}

/** The codec's frame for a reply the simple writers do not handle (and for every error). */
function encodeReply(reply: Reply, codec: MessageCodec, counters: Counters): Buffer {
  if (reply.outcome.ok) {
    try {
      return codec.encode({ id: reply.id, result: encodableResult(reply.outcome.result) });
    } catch (error) {
      const coded = toToonDBError(error);
      // Every reply is bounded to fit a frame (protocol/limits.ts): one that does not is a bug,
      // reported to its request alone; the client must never receive a frame it refuses.
      reply = { ...reply, outcome: fail(coded.code === 'FRAME_TOO_LARGE' ? new ToonDBError('INTERNAL', `invariant: ${coded.message}`) : coded) };
    }
  }
  counters.requestErrors += 1;
  const error = (reply.outcome as { error: ToonDBError }).error;
  // toWellFormed: a message quoting text with a lone surrogate would otherwise be written as
  // bytes that are not UTF-8, which the codec refuses, and this encode must not throw.
  return codec.encode({ id: reply.id, error: { code: error.code, message: error.message.toWellFormed() } });
}
