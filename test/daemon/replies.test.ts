// Replies leave the daemon as frames any client can decode, error messages included.
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Counters } from '../../daemon/counters.js';
import { fail } from '../../daemon/handlers/scope.js';
import { writeReplies } from '../../daemon/replies.js';
import { MessageCodec } from '../../protocol/codec.js';
import { ToonDBError } from '../../protocol/errors.js';
import { FrameDecoder } from '../../protocol/frame.js';

describe('writeReplies', () => {
  // Regression: the codec checks that what it encodes is plain MessagePack, str as UTF-8, and
  // msgpackr writes a lone surrogate of a short string as bytes that are not UTF-8: an error
  // message quoting such text made the encode throw out of the reply path.
  it('writes an error whose message holds a lone surrogate, with U+FFFD in its place', () => {
    const written: Buffer[] = [];
    const socket = { write: (chunk: Buffer) => written.push(chunk), cork: () => undefined, uncork: () => undefined } as unknown as Socket;
    const codec = new MessageCodec();
    const reply = { id: 7, outcome: fail(new ToonDBError('INVALID_ARGUMENT', 'bad \uD800 text')), receivedAt: 0, requestBytes: 0 };
    expect(() => writeReplies(socket, [reply], codec, new Counters())).not.toThrow();
    const [body] = new FrameDecoder().push(Buffer.concat(written));
    expect(codec.decode(body)).toEqual({ id: 7, error: { code: 'INVALID_ARGUMENT', message: 'bad \uFFFD text' } });
  });
});
