/**
 * The MessagePack building blocks the hand-written frames use (simple-replies.ts, simple-requests.ts,
 * packed-array.ts): type tags, the tiered size forms of uint / bin / array headers, writers
 * that pick the smallest form (what msgpackr writes), and a reader of the same forms.
 *
 * Invariants:
 * - Writers write only inside the range their `…Bytes` twin sized.
 * - The reader never reads past its body: every method checks the bytes it needs, and on
 *   anything it does not recognise sets `at` to -1 (after which every method fails), so a
 *   caller checks once at the end instead of after each item.
 * - Pure: no I/O.
 */

import { bufferView } from './views.js';

export const NIL = 0xc0;
export const FALSE = 0xc2;
export const TRUE = 0xc3;
export const BIN8 = 0xc4;
export const BIN16 = 0xc5;
export const BIN32 = 0xc6;
export const FLOAT64 = 0xcb;
export const FIXMAP = 0x80;
export const FIXARRAY = 0x90;
export const FIXSTR = 0xa0;
export const FIXSTR_BYTES_MAX = 31;
const UINT8 = 0xcc;
const UINT16 = 0xcd;
const UINT32 = 0xce;
const ARRAY16 = 0xdc;
const ARRAY32 = 0xdd;

/**
 * The tiered size forms of one MessagePack type: `fix | n` while n < fixLimit (types with a
 * fix form), else a tag with an 8-, 16- or 32-bit big-endian size (tag8 null: no 8-bit form).
 * For uint the "size" is the value itself.
 */
interface SizeForms {
  fix: number;
  fixLimit: number;
  tag8: number | null;
  tag16: number;
  tag32: number;
}
const UINT_FORMS: SizeForms = { fix: 0x00, fixLimit: 0x80, tag8: UINT8, tag16: UINT16, tag32: UINT32 };
const BIN_FORMS: SizeForms = { fix: 0, fixLimit: 0, tag8: BIN8, tag16: BIN16, tag32: BIN32 };
const ARRAY_FORMS: SizeForms = { fix: FIXARRAY, fixLimit: 16, tag8: null, tag16: ARRAY16, tag32: ARRAY32 };

/** Bytes of the header writeHeader writes for `n`. */
function headerBytes(n: number, forms: SizeForms): number {
  if (n < forms.fixLimit) return 1;
  if (n < 0x100 && forms.tag8 !== null) return 2;
  return n < 0x10000 ? 3 : 5;
}

/** Writes the smallest header of `forms` for `n` at `at`; returns the offset after it. */
function writeHeader(target: Buffer, at: number, n: number, forms: SizeForms): number {
  if (n < forms.fixLimit) {
    target[at] = forms.fix | n;
    return at + 1;
  }
  if (n < 0x100 && forms.tag8 !== null) {
    target[at] = forms.tag8;
    target[at + 1] = n;
    return at + 2;
  }
  if (n < 0x10000) {
    target[at] = forms.tag16;
    target.writeUInt16BE(n, at + 1);
    return at + 3;
  }
  target[at] = forms.tag32;
  target.writeUInt32BE(n, at + 1);
  return at + 5;
}

export const uintBytes = (value: number): number => headerBytes(value, UINT_FORMS);
export const writeUint = (target: Buffer, at: number, value: number): number => writeHeader(target, at, value, UINT_FORMS);
export const binBytes = (length: number): number => headerBytes(length, BIN_FORMS) + length;
export const arrayHeaderBytes = (count: number): number => headerBytes(count, ARRAY_FORMS);
export const writeArrayHeader = (target: Buffer, at: number, count: number): number => writeHeader(target, at, count, ARRAY_FORMS);

export function writeBin(target: Buffer, at: number, bytes: Uint8Array): number {
  const start = writeHeader(target, at, bytes.length, BIN_FORMS);
  target.set(bytes, start);
  return start + bytes.length;
}

/** Bytes and text as `bin`: a string is written as the bin of its UTF-8 bytes (not as a str). */
export type BinSource = Uint8Array | string;

/** Strings up to this many UTF-16 units are first tried as ASCII by a loop here: for keys of
 * a few dozen characters it costs a fraction of a native UTF-8 write (getBatch of 100 string
 * keys: ~150 -> ~30 ns per key). Their bin then has an 8-bit size. */
const ASCII_LOOP_UNITS_MAX = 64;

/** Most bytes a UTF-16 unit takes in UTF-8 (a surrogate pair's two units take 4 together). */
const UTF8_BYTES_PER_UNIT_MAX = 3;

/**
 * The most bytes writeBinOf writes for `source`, or -1 if it is neither bytes nor a string.
 * Exact for bytes and for strings longer than ASCII_LOOP_UNITS_MAX units. A shorter string is
 * not measured: its UTF-8 (at most 3 bytes a unit, so at most 192 bytes, always a bin8) is
 * counted by writeBinOf as it writes it. Measuring it here cost more than writing it:
 * Buffer.byteLength takes V8's slow path on a concatenated string (`prefix + id`, as most keys
 * are made), 50-90 ns a call; sizing and writing getBatch frames of 100 such keys went from
 * 93-111 to 64-68 ns per key.
 */
export function binOfBytesMax(source: unknown): number {
  if (typeof source === 'string') {
    const units = source.length;
    return binBytes(units <= ASCII_LOOP_UNITS_MAX ? units * UTF8_BYTES_PER_UNIT_MAX : Buffer.byteLength(source, 'utf8'));
  }
  return Buffer.isBuffer(source) ? binBytes(source.length) : -1;
}

/** Where touchBins leaves what it read, so that the reads are not optimised away. */
let touchedUnits = 0;

/**
 * Reads the last byte or UTF-16 unit of each of `sources` (or of each key and value of
 * `pairs`), before a batch of them is written. The caller's strings and Buffers lie wherever
 * its heap put them, and a key picked at random from a large set is a cache miss or two
 * (a concatenated string is an object that points at its characters): a short loop of
 * independent reads lets the misses of the whole batch overlap, where writeBinOf, one bin at a
 * time with a loop per character, takes them one after another. getBatch of 100 keys picked at
 * random out of 100k strings: the client's CPU per key 0.82-0.97 -> 0.67-0.81 µs.
 */
export function touchBins(sources: readonly unknown[], pairs = false): void {
  let units = 0;
  for (let i = 0; i < sources.length; i++) {
    const source = sources[i];
    if (!pairs) units |= lastUnitOf(source);
    else if (Array.isArray(source)) units |= lastUnitOf(source[0]) | lastUnitOf(source[1]);
  }
  touchedUnits = units;
}

function lastUnitOf(source: unknown): number {
  if (typeof source === 'string') return source.length > 0 ? source.charCodeAt(source.length - 1) : 0;
  return source instanceof Uint8Array && source.length > 0 ? source[source.length - 1] : 0;
}

/** What the last touchBins read (for tests: the reads happened). */
export function lastTouchedUnits(): number {
  return touchedUnits;
}

/** Writes `source` as a bin (see BinSource), in at most binOfBytesMax(source) bytes; returns
 * the offset after it. */
export function writeBinOf(target: Buffer, at: number, source: BinSource): number {
  if (typeof source !== 'string') return writeBin(target, at, source);
  const units = source.length;
  if (units <= ASCII_LOOP_UNITS_MAX) {
    // Written after a bin8 header until a unit is not ASCII. A string's UTF-8 is never shorter
    // than its UTF-16 units, so a partial write stays inside the bytes the UTF-8 write below
    // then overwrites.
    const start = at + 2;
    let i = 0;
    for (; i < units; i++) {
      const unit = source.charCodeAt(i);
      if (unit >= 0x80) break;
      target[start + i] = unit;
    }
    if (i === units) {
      target[at] = BIN8;
      target[at + 1] = units;
      return start + units;
    }
  }
  const length = Buffer.byteLength(source, 'utf8');
  const start = writeHeader(target, at, length, BIN_FORMS);
  return start + target.write(source, start, length, 'utf8');
}

/** Makes the Buffer a reader returns for bytes [start, end) of `body`. */
export type BinMaker = (body: Buffer, start: number, end: number) => Buffer;

/** Views of the body, as MessageCodec returns. A MsgpackReader given this makes its views
 * itself, from the body's memory read once per body (see MsgpackReader.bin). */
export const VIEW_BINS: BinMaker = (body, start, end) => bufferView(body.buffer, body.byteOffset + start, end - start);

/** Reads the forms above from one body at a time (`reset`); `at` is where the next item starts,
 * -1 once something did not match. */
export class MsgpackReader {
  body: Buffer = Buffer.alloc(0);
  at = 0;
  /** What `bin` returns for a bin's bytes. */
  makeBin: BinMaker = VIEW_BINS;
  /** The body's memory and where the body starts in it, while makeBin is VIEW_BINS: a Buffer's
   * `buffer` and `byteOffset` are getters that cost more than the view itself (~50 against
   * ~35 ns), so a request of 100 keys reads them once instead of 100 times. */
  private memory: ArrayBufferLike | null = null;
  private memoryOffset = 0;

  reset(body: Buffer, at: number, makeBin: BinMaker = VIEW_BINS): void {
    this.body = body;
    this.at = at;
    this.makeBin = makeBin;
    this.memory = null;
  }

  /** The size in a header of `forms` (advancing past it), or -1 (and at = -1). */
  private header(forms: SizeForms): number {
    const { body, at } = this;
    if (at < 0 || at >= body.length) return (this.at = -1);
    const tag = body[at];
    if (forms.fixLimit > 0 && tag >= forms.fix && tag < forms.fix + forms.fixLimit) {
      this.at = at + 1;
      return tag - forms.fix;
    }
    if (tag === forms.tag8 && at + 2 <= body.length) {
      this.at = at + 2;
      return body[at + 1];
    }
    if (tag === forms.tag16 && at + 3 <= body.length) {
      this.at = at + 3;
      return body.readUInt16BE(at + 1);
    }
    if (tag === forms.tag32 && at + 5 <= body.length) {
      this.at = at + 5;
      return body.readUInt32BE(at + 1);
    }
    return (this.at = -1);
  }

  /** A uint as writeUint writes it (fixint, uint8/16/32); -1 (and at = -1) otherwise. */
  uint(): number {
    return this.header(UINT_FORMS);
  }

  /** A float64, if one is next (MessageCodec reads any float64 as a number); else undefined,
   * having read nothing. */
  float64(): number | undefined {
    const { body, at } = this;
    if (at < 0 || body[at] !== FLOAT64 || at + 9 > body.length) return undefined;
    this.at = at + 9;
    return body.readDoubleBE(at + 1);
  }

  /** A bin, made by `makeBin`; null (and at = -1) for anything else. */
  bin(): Buffer | null {
    const length = this.header(BIN_FORMS);
    const start = this.at;
    if (start < 0 || start + length > this.body.length) return ((this.at = -1), null);
    this.at = start + length;
    if (this.makeBin !== VIEW_BINS) return this.makeBin(this.body, start, start + length);
    if (this.memory === null) {
      this.memory = this.body.buffer;
      this.memoryOffset = this.body.byteOffset;
    }
    return bufferView(this.memory, this.memoryOffset + start, length);
  }

  /** Steps over a bin without making anything of it; false (and at = -1) for anything else. */
  skipBin(): boolean {
    return this.skipBinLength() >= 0;
  }

  /** Steps over a bin without making anything of it and returns its length; -1 (and at = -1)
   * for anything else. */
  skipBinLength(): number {
    const length = this.header(BIN_FORMS);
    const start = this.at;
    if (start < 0 || start + length > this.body.length) return (this.at = -1);
    this.at = start + length;
    return length;
  }

  /** An array header (fixarray, array16/32) whose count the remaining bytes can hold. */
  arrayHeader(): number {
    const count = this.header(ARRAY_FORMS);
    // Every item takes at least one byte.
    return this.at < 0 || count > this.body.length - this.at ? (this.at = -1) : count;
  }

  /** True if `literal`'s bytes come next (without reading them). */
  sees(literal: Buffer): boolean {
    const { body, at } = this;
    if (at < 0 || at + literal.length > body.length) return false;
    for (let i = 0; i < literal.length; i++) if (body[at + i] !== literal[i]) return false;
    return true;
  }

  /** Reads `literal` if its bytes come next; false (and at = -1) otherwise. */
  literal(literal: Buffer): boolean {
    if (!this.sees(literal)) return ((this.at = -1), false);
    this.at += literal.length;
    return true;
  }

  /** True once the whole body was read, and nothing failed. */
  get done(): boolean {
    return this.at === this.body.length;
  }
}
