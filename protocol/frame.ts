/**
 * Framing: how one MessagePack body travels over a byte stream.
 *
 *   0               1               2               3               4
 *   +---------------+---------------+---------------+---------------+==================+
 *   |        body length N, unsigned 32-bit, big-endian (1 .. max)  |  body: N bytes   |
 *   +---------------+---------------+---------------+---------------+==================+
 *                                                                    exactly one MessagePack
 *                                                                    value (see codec.ts)
 *
 * Responsibility: turn an arbitrarily chunked byte stream into whole frame bodies (FrameDecoder),
 * put the length prefix in front of a body (encodeFrame / writeFrameHeader), and hand a batch
 * of outgoing frames to a sink in one write (writeFrames; the sink, a socket, does the I/O). Pure: no I/O,
 * no timers, no MessagePack knowledge.
 *
 * Invariants (FrameDecoder, checked by `invariants()`):
 * - At most one partial frame is held: 0..3 header bytes, or a complete header plus fewer than N
 *   body bytes. So `bufferedBytes <= FRAME_HEADER_BYTES + frameBytesMax - 1` at all times.
 * - A length above `frameBytesMax` is refused from the header alone, before any body byte is
 *   buffered; a length of 0 is refused (no MessagePack value is empty).
 * - Once a push has thrown, the decoder is poisoned: every later push throws the same error.
 *   Frames completed earlier in the failing chunk are dropped with it; the connection is being
 *   closed anyway.
 * - A returned body is never written to again by the decoder: it is either a view of the chunk
 *   it arrived in (the caller hands chunks over and must not mutate them afterwards) or a fresh
 *   buffer that the decoder forgets as soon as it is returned.
 * - Work is linear in the bytes pushed: a body split over many chunks is gathered into one buffer
 *   that grows by doubling (capped at N), never by re-concatenating everything seen so far.
 * - With an `admit` callback, no byte of a body is taken before `admit(N)` returned true for its
 *   frame: a refused frame stalls the decoder at its header, keeping the rest of the chunk as it
 *   arrived (`pending`, the caller stops reading) until `resumeAdmitted()` says the frame got in.
 */

import { ToonDBError } from './errors.js';
import { FRAME_BYTES_MAX, FRAME_HEADER_BYTES, WRITE_COALESCE_BYTES_MAX } from './limits.js';

/** Largest value the 4-byte prefix can carry. */
const FRAME_LENGTH_PREFIX_MAX = 0xffff_ffff;

/** First allocation for a body that arrives in pieces. Large enough that typical request bodies
 * need no regrowth, small enough that a peer announcing a huge frame and then stalling does not
 * make us allocate the whole announced length up front. */
const PARTIAL_BYTES_INITIAL = 64 * 1024;

/** Sentinel for "the header of the next frame is not complete yet". */
const LENGTH_UNKNOWN = -1;

export interface FrameDecoderOptions {
  /** Largest body accepted; defaults to FRAME_BYTES_MAX. */
  frameBytesMax?: number;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function assert(condition: boolean, what: string): void {
  if (!condition) throw new ToonDBError('INTERNAL', `FrameDecoder invariant broken: ${what}`);
}

/** Splits a byte stream into frame bodies. One per connection. */
export class FrameDecoder {
  readonly frameBytesMax: number;

  /** Header bytes of the next frame, while fewer than FRAME_HEADER_BYTES have arrived. */
  private readonly header = Buffer.alloc(FRAME_HEADER_BYTES);
  private headerFilled = 0;
  /** Body length of the current frame, or LENGTH_UNKNOWN while the header is incomplete. */
  private bodyBytes = LENGTH_UNKNOWN;
  /** Gathers a body that spans chunks; its length never exceeds bodyBytes. */
  private partial: Buffer | null = null;
  private partialFilled = 0;
  private poisoned: ToonDBError | null = null;
  /** The current frame (its length known) was admitted: its body bytes may be taken. */
  private admitted = false;
  /** While stalled (a frame refused by `admit`): the bytes that arrived behind its header. */
  private pending: Buffer[] | null = null;

  constructor(options: FrameDecoderOptions = {}) {
    const max = options.frameBytesMax ?? FRAME_BYTES_MAX;
    if (!Number.isSafeInteger(max) || max < 1 || max > FRAME_LENGTH_PREFIX_MAX) {
      throw new ToonDBError('INVALID_ARGUMENT', `frameBytesMax must be an integer in 1..${FRAME_LENGTH_PREFIX_MAX}, got ${max}`);
    }
    this.frameBytesMax = max;
  }

  /** Bytes held for the frame in progress (header and body so far). */
  get bufferedBytes(): number {
    return this.headerFilled + this.partialFilled;
  }

  /** True while a frame refused by `admit` waits for `resumeAdmitted()`. */
  get stalled(): boolean {
    return this.pending !== null;
  }

  /**
   * Appends `chunk` and returns every frame body completed by it, in stream order. Throws
   * FRAME_TOO_LARGE or PROTOCOL_ERROR (and stays poisoned) on a bad length prefix. With
   * `admit`, each frame is offered to it once its header is read; a refusal stalls the decoder
   * there (see `stalled`), and a push while stalled only keeps its chunk.
   */
  push(chunk: Uint8Array, admit?: (bodyBytes: number) => boolean): Buffer[] {
    if (this.poisoned) throw this.poisoned;
    const bytes = asBuffer(chunk);
    if (this.pending !== null) {
      if (bytes.length > 0) this.pending.push(bytes);
      return [];
    }
    return this.decode(bytes, [], admit);
  }

  /** The frame `push` stalled at was admitted (its caller counted its length): decodes the
   * bytes kept behind it, offering later frames to `admit` again. */
  resumeAdmitted(admit?: (bodyBytes: number) => boolean): Buffer[] {
    if (this.poisoned) throw this.poisoned;
    const pending = this.pending;
    if (pending === null || this.bodyBytes === LENGTH_UNKNOWN || this.admitted) {
      throw new ToonDBError('INTERNAL', 'FrameDecoder invariant broken: resumeAdmitted only while stalled');
    }
    this.pending = null;
    this.admitted = true;
    const bytes = pending.length === 1 ? pending[0] : Buffer.concat(pending);
    return this.decode(bytes, [], admit);
  }

  private decode(bytes: Buffer, bodies: Buffer[], admit: ((bodyBytes: number) => boolean) | undefined): Buffer[] {
    let offset = 0;
    for (;;) {
      if (this.bodyBytes !== LENGTH_UNKNOWN && !this.admitted) {
        if (admit !== undefined && !admit(this.bodyBytes)) {
          this.pending = [bytes.subarray(offset)];
          return bodies;
        }
        this.admitted = true;
      }
      if (offset >= bytes.length) return bodies;
      offset = this.bodyBytes === LENGTH_UNKNOWN
        ? this.readHeader(bytes, offset)
        : this.readBody(bytes, offset, bodies);
    }
  }

  /** Consumes header bytes from `bytes` at `offset`; returns the new offset. */
  private readHeader(bytes: Buffer, offset: number): number {
    let length: number;
    if (this.headerFilled === 0 && bytes.length - offset >= FRAME_HEADER_BYTES) {
      length = bytes.readUInt32BE(offset); // fast path: the whole header is in this chunk
      offset += FRAME_HEADER_BYTES;
    } else {
      const take = Math.min(FRAME_HEADER_BYTES - this.headerFilled, bytes.length - offset);
      bytes.copy(this.header, this.headerFilled, offset, offset + take);
      this.headerFilled += take;
      offset += take;
      if (this.headerFilled < FRAME_HEADER_BYTES) return offset;
      length = this.header.readUInt32BE(0);
    }
    this.headerFilled = FRAME_HEADER_BYTES;
    this.checkLength(length);
    this.bodyBytes = length;
    return offset;
  }

  private checkLength(length: number): void {
    if (length === 0) this.poison(new ToonDBError('PROTOCOL_ERROR', 'empty frame'));
    if (length > this.frameBytesMax) {
      this.poison(new ToonDBError('FRAME_TOO_LARGE',
        `frame of ${length} bytes exceeds the limit of ${this.frameBytesMax} bytes`));
    }
  }

  private poison(error: ToonDBError): never {
    this.poisoned = error;
    this.headerFilled = 0;
    this.bodyBytes = LENGTH_UNKNOWN;
    this.partial = null;
    this.partialFilled = 0;
    this.admitted = false;
    this.pending = null;
    throw error;
  }

  /** Consumes body bytes from `bytes` at `offset`, appending a completed body to `bodies`. */
  private readBody(bytes: Buffer, offset: number, bodies: Buffer[]): number {
    const needed = this.bodyBytes - this.partialFilled;
    const available = bytes.length - offset;
    if (this.partialFilled === 0 && available >= needed) {
      bodies.push(bytes.subarray(offset, offset + needed)); // zero-copy: whole body in this chunk
      this.reset();
      return offset + needed;
    }
    const take = Math.min(needed, available);
    this.reserve(this.partialFilled + take);
    const partial = this.partial as Buffer;
    bytes.copy(partial, this.partialFilled, offset, offset + take);
    this.partialFilled += take;
    if (this.partialFilled === this.bodyBytes) {
      bodies.push(partial); // reserve() capped the capacity at bodyBytes, so this is exact
      this.reset();
    }
    return offset + take;
  }

  /** Makes `partial` hold at least `bytesNeeded` bytes, doubling but never beyond bodyBytes. */
  private reserve(bytesNeeded: number): void {
    const capacity = this.partial?.length ?? 0;
    if (capacity >= bytesNeeded) return;
    const grown = Math.min(this.bodyBytes, Math.max(PARTIAL_BYTES_INITIAL, capacity * 2, bytesNeeded));
    // allocUnsafe is fine: only filled bytes are ever returned (the body is returned when full).
    const next = Buffer.allocUnsafe(grown);
    if (this.partial) this.partial.copy(next, 0, 0, this.partialFilled);
    this.partial = next;
  }

  /** Forgets the completed frame; the next byte starts a header. */
  private reset(): void {
    this.headerFilled = 0;
    this.admitted = false;
    this.bodyBytes = LENGTH_UNKNOWN;
    this.partial = null;
    this.partialFilled = 0;
  }

  /** Asserts internal consistency; cheap enough to call after every push in tests. */
  invariants(): void {
    const max = this.frameBytesMax;
    assert(this.headerFilled >= 0 && this.headerFilled <= FRAME_HEADER_BYTES, 'header fill in range');
    if (this.poisoned) {
      assert(this.bufferedBytes === 0 && this.partial === null, 'a poisoned decoder holds nothing');
      return;
    }
    if (this.bodyBytes === LENGTH_UNKNOWN) {
      assert(this.headerFilled < FRAME_HEADER_BYTES, 'a complete header has a known length');
      assert(this.partial === null && this.partialFilled === 0, 'no body before the header');
      assert(!this.admitted && this.pending === null, 'only a frame with a known length is admitted or stalled');
    } else {
      assert(this.headerFilled === FRAME_HEADER_BYTES, 'a known length means a complete header');
      assert(this.bodyBytes >= 1 && this.bodyBytes <= max, 'body length within 1..frameBytesMax');
      assert(this.partialFilled < this.bodyBytes, 'a complete body is never kept');
      const capacity = this.partial?.length ?? 0;
      assert(capacity >= this.partialFilled && capacity <= this.bodyBytes, 'partial capacity within bounds');
      assert(this.admitted || this.partialFilled === 0, 'no body byte is taken before its frame is admitted');
      assert(this.pending === null || !this.admitted, 'a stalled frame is not admitted');
    }
    assert(this.bufferedBytes <= FRAME_HEADER_BYTES + max - 1, 'at most one partial frame is buffered');
  }
}

/** Writes the 4-byte length prefix for a body of `bodyBytes` bytes at `target[offset]`. */
export function writeFrameHeader(target: Uint8Array, offset: number, bodyBytes: number): void {
  if (!Number.isInteger(bodyBytes) || bodyBytes < 0) {
    throw new ToonDBError('INTERNAL', `frame body length must be a non-negative integer, got ${bodyBytes}`);
  }
  if (bodyBytes === 0) throw new ToonDBError('PROTOCOL_ERROR', 'empty frame');
  if (bodyBytes > FRAME_LENGTH_PREFIX_MAX) {
    throw new ToonDBError('FRAME_TOO_LARGE', `frame of ${bodyBytes} bytes does not fit the 4-byte length prefix`);
  }
  if (!Number.isInteger(offset) || offset < 0 || offset + FRAME_HEADER_BYTES > target.length) {
    throw new ToonDBError('INTERNAL', `no room for a frame header at offset ${offset} of ${target.length} bytes`);
  }
  target[offset] = bodyBytes >>> 24;
  target[offset + 1] = (bodyBytes >>> 16) & 0xff;
  target[offset + 2] = (bodyBytes >>> 8) & 0xff;
  target[offset + 3] = bodyBytes & 0xff;
}

/** Returns a new buffer holding the length prefix followed by `body` (one copy of the body).
 * Throws FRAME_TOO_LARGE if the body exceeds `frameBytesMax` (default FRAME_BYTES_MAX). */
export function encodeFrame(body: Uint8Array, frameBytesMax: number = FRAME_BYTES_MAX): Buffer {
  if (body.length > frameBytesMax) {
    throw new ToonDBError('FRAME_TOO_LARGE', `frame of ${body.length} bytes exceeds the limit of ${frameBytesMax} bytes`);
  }
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.length);
  writeFrameHeader(frame, 0, body.length);
  frame.set(body, FRAME_HEADER_BYTES);
  return frame;
}

/** A batch of outgoing frames, some already encoded, some written on demand. */
export interface FrameSource {
  readonly count: number;
  /** Bytes of frame i, length prefix included: exact for a ready frame, at most this many for
   * one `write` writes (a client request's size is a bound, simple-requests.ts). */
  bytes(i: number): number;
  /** Frame i if it is already encoded, else null (then `write` writes it). */
  ready(i: number): Buffer | null;
  /** Writes frame i at `at` of `target`, in at most `bytes(i)` bytes; returns the offset after
   * it. */
  write(i: number, target: Buffer, at: number): number;
}

/** Where writeFrames puts a batch: a net.Socket, or anything with its write/cork/uncork. */
export interface FrameSink {
  write(chunk: Buffer): unknown;
  cork(): void;
  uncork(): void;
}

/**
 * Hands a batch of frames to `sink` as one write: a single buffer holding them all when they
 * total at most WRITE_COALESCE_BYTES_MAX (small copies, one write call), else one buffer per
 * frame inside cork/uncork (one writev, no copy of an encoded large frame).
 */
export function writeFrames(sink: FrameSink, source: FrameSource, totalBytes: number): void {
  if (totalBytes <= WRITE_COALESCE_BYTES_MAX) {
    const out = Buffer.allocUnsafe(totalBytes);
    let at = 0;
    for (let i = 0; i < source.count; i++) {
      const frame = source.ready(i);
      const end = frame !== null ? at + frame.copy(out, at) : source.write(i, out, at);
      if (end > at + source.bytes(i)) throw new Error(`invariant: frame ${i} took ${end - at} of ${source.bytes(i)} bytes`);
      at = end;
    }
    sink.write(at === totalBytes ? out : out.subarray(0, at));
    return;
  }
  sink.cork();
  for (let i = 0; i < source.count; i++) {
    let frame = source.ready(i);
    if (frame === null) {
      frame = Buffer.allocUnsafe(source.bytes(i));
      const end = source.write(i, frame, 0);
      if (end < frame.length) frame = frame.subarray(0, end);
    }
    sink.write(frame);
  }
  sink.uncork();
}
