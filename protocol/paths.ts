/**
 * Path keys: hierarchical names ('users/alice/name') mapped onto flat byte keys.
 *
 * Encoding (normative; PROTOCOL.md "Path keys" repeats it):
 *
 *   key     = segment *( SEP segment )        SEP = 0x00 0x01
 *   segment = 1*( byte other than 0x00  |  0x00 0xFF )   ; UTF-8 of the name, 0x00 escaped
 *   prefix  = *( segment SEP )                ; children of a path: the path, then SEP
 *
 * Why two different paths never share a key: inside an encoded segment every 0x00 is followed by
 * 0xFF, so the pair 0x00 0x01 occurs only where a separator was written. Splitting on it is
 * therefore unambiguous and decoding is the inverse of encoding. In particular a '/' inside an
 * array segment stays the byte 0x2F and never produces a separator (['a/b'] != ['a','b']), and a
 * deeper path always contains one more 0x00 0x01 than its parent.
 *
 * Ordering: SEP sorts below every byte a segment can start its continuation with (0x01..0xFF, or
 * the escape 0x00 0xFF), so byte order of keys equals segment-by-segment order of names, and all
 * children of a path are contiguous under `pathPrefix(path)`.
 *
 * Invariants: at most PATH_SEGMENTS_MAX segments, no empty segment, names are well-formed UTF-16
 * (a lone surrogate would be replaced during UTF-8 encoding and collide with U+FFFD), and an
 * encoded key is at most KEY_BYTES_MAX bytes. Violations throw INVALID_ARGUMENT / KEY_TOO_LARGE.
 */

import { ToonDBError } from './errors.js';
import { KEY_BYTES_MAX, PATH_SEGMENTS_MAX } from './limits.js';

/** The two bytes written between encoded segments. */
export const PATH_SEPARATOR_BYTES = Object.freeze([0x00, 0x01] as const);
const PATH_SEPARATOR = Buffer.from(PATH_SEPARATOR_BYTES);
const ESCAPE_BYTE = 0xff;

// ignoreBOM: a name may start with U+FEFF, which the decoder would otherwise drop, so that
// listPath named a child that getPath could not find.
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Splits a path into segments: a string on '/', dropping empty segments; an array as is. */
export function pathSegments(path: string | readonly string[]): string[] {
  if (typeof path === 'string') return path.split('/').filter((segment) => segment.length > 0);
  if (!Array.isArray(path)) {
    throw new ToonDBError('INVALID_ARGUMENT', 'a path must be a string or an array of strings');
  }
  return path.map((segment, index) => {
    if (typeof segment !== 'string') {
      throw new ToonDBError('INVALID_ARGUMENT', `path segment ${index} must be a string, got ${typeof segment}`);
    }
    if (segment.length === 0) throw new ToonDBError('INVALID_ARGUMENT', `path segment ${index} is empty`);
    return segment;
  });
}

function encodeSegment(segment: string): Buffer {
  if (!segment.isWellFormed()) {
    throw new ToonDBError('INVALID_ARGUMENT', 'a path segment must be well-formed Unicode (it has a lone surrogate)');
  }
  const utf8 = Buffer.from(segment, 'utf8');
  let zeros = 0;
  for (const byte of utf8) if (byte === 0x00) zeros++;
  if (zeros === 0) return utf8;
  const escaped = Buffer.allocUnsafe(utf8.length + zeros);
  let out = 0;
  for (const byte of utf8) {
    escaped[out++] = byte;
    if (byte === 0x00) escaped[out++] = ESCAPE_BYTE;
  }
  return escaped;
}

/** Encodes segments, each followed by SEP when `trailingSeparator`, else SEP between them. */
function join(segments: string[], trailingSeparator: boolean): Buffer {
  if (segments.length > PATH_SEGMENTS_MAX) {
    throw new ToonDBError('INVALID_ARGUMENT', `a path has at most ${PATH_SEGMENTS_MAX} segments, got ${segments.length}`);
  }
  const parts: Uint8Array[] = [];
  segments.forEach((segment, index) => {
    if (index > 0) parts.push(PATH_SEPARATOR);
    parts.push(encodeSegment(segment));
  });
  if (trailingSeparator && segments.length > 0) parts.push(PATH_SEPARATOR);
  const key = Buffer.concat(parts);
  if (key.length > KEY_BYTES_MAX) {
    throw new ToonDBError('KEY_TOO_LARGE', `encoded path is ${key.length} bytes, over the key limit of ${KEY_BYTES_MAX}`);
  }
  return key;
}

/** The key of a path. A path needs at least one segment. */
export function encodePath(path: string | readonly string[]): Buffer {
  const segments = pathSegments(path);
  if (segments.length === 0) throw new ToonDBError('INVALID_ARGUMENT', 'a path needs at least one non-empty segment');
  return join(segments, false);
}

/** The key prefix under which the children of `path` live; the empty path gives an empty
 * prefix (the children of the root are the first segments of all keys). */
export function pathPrefix(path: string | readonly string[]): Buffer {
  return join(pathSegments(path), true);
}

/** Decodes one encoded segment (as returned by `listPath`) back to its name. Throws
 * INVALID_ARGUMENT if it contains a separator, a bad escape, or invalid UTF-8. */
export function decodeSegment(bytes: Uint8Array): string {
  const out = Buffer.allocUnsafe(bytes.length);
  let length = 0;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i];
    out[length++] = byte;
    if (byte !== 0x00) continue;
    if (bytes[i + 1] !== ESCAPE_BYTE) {
      throw new ToonDBError('INVALID_ARGUMENT', `not an encoded path segment: 0x00 at byte ${i} is not followed by 0xff`);
    }
    i++;
  }
  try {
    return STRICT_UTF8.decode(out.subarray(0, length));
  } catch {
    throw new ToonDBError('INVALID_ARGUMENT', 'path segment is not valid UTF-8');
  }
}

/** Decodes a whole path key into its segment names (inverse of `encodePath`). */
export function decodePath(key: Uint8Array): string[] {
  const segments: string[] = [];
  let start = 0;
  for (let i = 0; i < key.length; i++) {
    if (key[i] !== 0x00) continue;
    if (key[i + 1] === ESCAPE_BYTE) {
      i++;
      continue;
    }
    if (key[i + 1] !== PATH_SEPARATOR[1]) {
      throw new ToonDBError('INVALID_ARGUMENT', `not a path key: 0x00 at byte ${i} is neither an escape nor a separator`);
    }
    segments.push(decodeSegment(key.subarray(start, i)));
    start = i + 2;
    i++;
  }
  segments.push(decodeSegment(key.subarray(start)));
  if (segments.some((segment) => segment.length === 0)) {
    throw new ToonDBError('INVALID_ARGUMENT', 'not a path key: it has an empty segment');
  }
  return segments;
}
