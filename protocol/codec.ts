/**
 * MessageCodec: one message <-> one frame of plain MessagePack.
 *
 * Responsibility: the only place toondb calls msgpackr. `encode` turns a message object into a
 * complete frame (length prefix + body); `decode` turns one frame body into a plain object.
 * One codec per connection (msgpackr keeps per-instance state; we keep it that way even though
 * the options below disable everything stateful).
 *
 * Invariants:
 * - What goes on the wire is plain, language-neutral MessagePack (see plain-msgpack.ts): no
 *   msgpackr records, bundled strings, structured clone or other extensions. `encode` checks its
 *   own output, so a JS value msgpackr would write as an extension (a Date) is refused with
 *   INVALID_ARGUMENT instead of reaching a peer; so is a bigint beyond 64 bits.
 * - bigint is written as a 64-bit integer; 64-bit integers are read back as bigint. Other
 *   integers are read as number. A JS number that is not a 32-bit integer is written as float64.
 * - `undefined` is written as nil (optional request fields may be nil or absent).
 * - `decode` throws only ToonDBError('PROTOCOL_ERROR') for bad input: the body is checked
 *   structurally first (depth, declared lengths, ext types, trailing bytes), so msgpackr never
 *   sees hostile structure, and any exception it still raises is wrapped with its reason.
 * - A decoded `bin` is a Node Buffer that is a view of the body (no copy), valid as long as the
 *   body's memory is: for the daemon, whose bodies are views of socket chunks that are never
 *   reused, for good; the client reads into one reused buffer and decodes with `copyBins`.
 * - `__proto__` keys cannot pollute prototypes: msgpackr stores them as the own key `__proto_`.
 * - A frame returned by `encode` stays valid after later calls (msgpackr advances past it in its
 *   shared buffer instead of reusing it).
 */

import { Packr, RESERVE_START_SPACE, type Options } from 'msgpackr';
import { ToonDBError } from './errors.js';
import { writeFrameHeader } from './frame.js';
import { FRAME_BYTES_MAX, FRAME_HEADER_BYTES, MESSAGE_DEPTH_MAX } from './limits.js';
import { checkPlainMessagePack } from './plain-msgpack.js';

export interface MessageCodecOptions {
  /** Largest body `encode` produces; defaults to FRAME_BYTES_MAX. */
  frameBytesMax?: number;
  /** Decode each `bin` as a copy (its own memory) instead of a view of the body: for a caller
   * that hands decoded values out while the body's memory is reused (the client's read buffer). */
  copyBins?: boolean;
  /** Most MessagePack items `decode` accepts in one body (the daemon: REQUEST_ITEMS_MAX);
   * unbounded by default. */
  decodeItemsMax?: number;
}

/** msgpackr settings that keep the wire plain. `useBigInt64` is not in msgpackr 1.12's typings
 * (that version always writes bigint as int64/uint64); it documents the intent and is honoured
 * by versions that read it. */
const PACKR_OPTIONS: Options & { useBigInt64: boolean } = {
  useRecords: false,
  mapsAsObjects: true,
  useBigInt64: true,
  int64AsType: 'bigint',
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
  encodeUndefinedAsNil: true,
  variableMapSize: true, // fixmap for small objects: the smallest standard encoding
  copyBuffers: false,
  useFloat32: 0,
  largeBigIntToFloat: false,
  largeBigIntToString: false,
  useBigIntExtension: false,
};

function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value)
    && !(value instanceof Uint8Array) && Object.getPrototypeOf(value) === Object.prototype;
}

export class MessageCodec {
  readonly frameBytesMax: number;
  // Packr extends Unpackr: one instance both packs and unpacks with the same options.
  private readonly packr: Packr;
  private readonly decodeItemsMax: number;

  constructor(options: MessageCodecOptions = {}) {
    this.decodeItemsMax = options.decodeItemsMax ?? Infinity;
    // A copy of the options each: msgpackr may write to them.
    this.packr = new Packr({ ...PACKR_OPTIONS, copyBuffers: options.copyBins === true });
    const max = options.frameBytesMax ?? FRAME_BYTES_MAX;
    if (!Number.isSafeInteger(max) || max < 1 || max > 0xffff_ffff) {
      throw new ToonDBError('INVALID_ARGUMENT', `frameBytesMax must be an integer in 1..${0xffff_ffff}, got ${max}`);
    }
    this.frameBytesMax = max;
  }

  /** Encodes `message` as a complete frame: 4-byte length prefix, then the MessagePack body. */
  encode(message: object): Buffer {
    let frame: Buffer;
    try {
      // msgpackr writes the body after FRAME_HEADER_BYTES reserved bytes: no copy to prefix it.
      frame = this.packr.pack(message, RESERVE_START_SPACE | FRAME_HEADER_BYTES);
    } catch (error) {
      throw new ToonDBError('INVALID_ARGUMENT', `message cannot be encoded as MessagePack: ${reason(error)}`, { cause: error });
    }
    const bodyBytes = frame.length - FRAME_HEADER_BYTES;
    if (bodyBytes > this.frameBytesMax) {
      throw new ToonDBError('FRAME_TOO_LARGE', `message of ${bodyBytes} bytes exceeds the frame limit of ${this.frameBytesMax} bytes`);
    }
    try {
      checkPlainMessagePack(frame.subarray(FRAME_HEADER_BYTES), MESSAGE_DEPTH_MAX);
    } catch (error) {
      throw new ToonDBError('INVALID_ARGUMENT', `message is not plain MessagePack: ${reason(error)}`, { cause: error });
    }
    writeFrameHeader(frame, 0, bodyBytes);
    return frame;
  }

  /** Decodes one frame body into a message object. Throws PROTOCOL_ERROR for anything else. */
  decode(body: Uint8Array): Record<string, unknown> {
    // A Buffer view, so msgpackr hands out `bin` values as Buffers rather than Uint8Arrays.
    const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    if (bytes.length > this.frameBytesMax) {
      throw new ToonDBError('FRAME_TOO_LARGE', `body of ${bytes.length} bytes exceeds the frame limit of ${this.frameBytesMax} bytes`);
    }
    checkPlainMessagePack(bytes, MESSAGE_DEPTH_MAX, this.decodeItemsMax);
    let value: unknown;
    try {
      value = this.packr.unpack(bytes);
    } catch (error) {
      throw new ToonDBError('PROTOCOL_ERROR', `MessagePack decoding failed: ${reason(error)}`, { cause: error });
    }
    if (!isPlainObject(value)) {
      throw new ToonDBError('PROTOCOL_ERROR', `a message must be a MessagePack map, got ${describe(value)}`);
    }
    return value;
  }
}

function describe(value: unknown): string {
  if (value === null) return 'nil';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Uint8Array) return 'bin';
  return typeof value;
}
