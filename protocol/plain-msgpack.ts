/**
 * A structural check that a byte string is exactly one value of plain MessagePack.
 *
 * Responsibility: decide, before msgpackr sees a body, that it uses only the language-neutral
 * subset toondb speaks, and that decoding it is cheap and safe. "Plain" means: nil, bool, int
 * (all widths), float 32/64, str, bin, array and map with str keys. Rejected: every ext type
 * (fixext, ext 8/16/32 — this covers msgpackr records, structured clone, timestamps, typed
 * arrays, bundled strings), the never-used byte 0xc1, non-str map keys, nesting deeper than the
 * depth limit, declared lengths that the remaining bytes cannot hold, and trailing bytes.
 *
 * Invariants:
 * - Runs in time linear in the number of MessagePack items (str/bin payloads are skipped, not
 *   read) with an explicit stack of at most `depthMax` entries: no recursion, so no stack
 *   overflow, and no allocation proportional to a declared (possibly hostile) length.
 * - Every declared count is checked against the bytes left before it is trusted: each item takes
 *   at least one byte, so a container cannot claim more items than bytes remain.
 * - On success msgpackr reads exactly the checked bytes, so it can neither over-read nor loop.
 */

import { ToonDBError } from './errors.js';
import { MESSAGE_DEPTH_MAX } from './limits.js';

function reject(reason: string, offset: number): never {
  throw new ToonDBError('PROTOCOL_ERROR', `invalid MessagePack at byte ${offset}: ${reason}`);
}

/** What one leading byte announces: a scalar with a payload to skip, or a container. */
interface Item {
  /** Bytes of the length field that follows the leading byte (0 if the length is implied). */
  lengthBytes: number;
  /** For scalars with an implied size, the payload size; ignored when lengthBytes > 0. */
  payloadBytes: number;
  kind: 'scalar' | 'str' | 'bin' | 'array' | 'map';
}

const FIXED: Record<number, Item> = {};
function fixed(kind: Item['kind'], lengthBytes: number, payloadBytes: number, ...codes: number[]): void {
  for (const code of codes) FIXED[code] = { kind, lengthBytes, payloadBytes };
}
fixed('scalar', 0, 0, 0xc0, 0xc2, 0xc3); // nil, false, true
fixed('scalar', 0, 1, 0xcc, 0xd0); // uint8, int8
fixed('scalar', 0, 2, 0xcd, 0xd1); // uint16, int16
fixed('scalar', 0, 4, 0xca, 0xce, 0xd2); // float32, uint32, int32
fixed('scalar', 0, 8, 0xcb, 0xcf, 0xd3); // float64, uint64, int64
fixed('bin', 1, 0, 0xc4);
fixed('bin', 2, 0, 0xc5);
fixed('bin', 4, 0, 0xc6);
fixed('str', 1, 0, 0xd9);
fixed('str', 2, 0, 0xda);
fixed('str', 4, 0, 0xdb);
fixed('array', 2, 0, 0xdc);
fixed('array', 4, 0, 0xdd);
fixed('map', 2, 0, 0xde);
fixed('map', 4, 0, 0xdf);

function describeRejected(byte: number): string {
  if (byte === 0xc1) return 'byte 0xc1 is never used in MessagePack';
  if ((byte >= 0xc7 && byte <= 0xc9) || (byte >= 0xd4 && byte <= 0xd8)) {
    return `extension type (0x${byte.toString(16)}) is not allowed`;
  }
  return `unknown type byte 0x${byte.toString(16)}`;
}

function readLength(bytes: Uint8Array, offset: number, width: number): number {
  let value = 0;
  for (let i = 0; i < width; i++) value = value * 256 + bytes[offset + i];
  return value;
}

/** Decodes the leading byte at `offset` into kind and length; returns [kind, count, headerEnd]. */
function readItemHeader(bytes: Uint8Array, offset: number): [Item['kind'], number, number] {
  const byte = bytes[offset];
  if (byte <= 0x7f || byte >= 0xe0) return ['scalar', 0, offset + 1]; // fixint
  if (byte <= 0x8f) return ['map', byte & 0x0f, offset + 1];
  if (byte <= 0x9f) return ['array', byte & 0x0f, offset + 1];
  if (byte <= 0xbf) return ['str', byte & 0x1f, offset + 1];
  const item = FIXED[byte];
  if (item === undefined) reject(describeRejected(byte), offset);
  const lengthEnd = offset + 1 + item.lengthBytes;
  if (lengthEnd > bytes.length) reject('truncated length field', offset);
  const count = item.lengthBytes > 0 ? readLength(bytes, offset + 1, item.lengthBytes) : item.payloadBytes;
  return [item.kind, count, lengthEnd];
}

/**
 * Throws PROTOCOL_ERROR unless `bytes` is exactly one plain MessagePack value nested at most
 * `depthMax` containers deep.
 */
export function checkPlainMessagePack(bytes: Uint8Array, depthMax: number = MESSAGE_DEPTH_MAX): void {
  const end = bytes.length;
  // pending[d]: items still to read in the container at depth d (a map counts keys and values);
  // isMap[d]: whether that container is a map, so the next item is a key when pending is even.
  const pending: number[] = [1];
  const isMap: boolean[] = [false];
  let depth = 0;
  let offset = 0;
  while (depth >= 0) {
    if (pending[depth] === 0) {
      depth--;
      continue;
    }
    const isKey = isMap[depth] && pending[depth] % 2 === 0;
    pending[depth]--;
    if (offset >= end) reject('truncated: a value is missing', offset);
    const [kind, count, headerEnd] = readItemHeader(bytes, offset);
    if (isKey && kind !== 'str') reject('map keys must be strings', offset);
    if (kind === 'array' || kind === 'map') {
      const items = kind === 'map' ? count * 2 : count;
      if (items > end - headerEnd) reject(`${kind} declares ${count} entries but only ${end - headerEnd} bytes remain`, offset);
      if (depth + 1 > depthMax) reject(`nesting deeper than ${depthMax}`, offset);
      depth++;
      pending[depth] = items;
      isMap[depth] = kind === 'map';
      offset = headerEnd;
    } else {
      if (count > end - headerEnd) reject(`${kind} declares ${count} bytes but only ${end - headerEnd} remain`, offset);
      offset = headerEnd + count;
    }
  }
  if (offset !== end) reject(`${end - offset} trailing bytes after the value`, offset);
}
