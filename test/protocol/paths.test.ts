// Path keys. Guards against two paths sharing a key (a '/' or 0x00 inside a segment colliding
// with a separator, a deeper path colliding with a shallower one) and against listing order
// differing from segment order.
import { describe, expect, it } from 'vitest';
import { KEY_BYTES_MAX, PATH_SEGMENTS_MAX } from '../../protocol/limits.js';
import { decodePath, decodeSegment, encodePath, pathPrefix, pathSegments } from '../../protocol/paths.js';

const hex = (b: Buffer): string => b.toString('hex');

describe('encodePath', () => {
  it('splits strings on / and drops empty segments', () => {
    expect(pathSegments('/users//alice/')).toEqual(['users', 'alice']);
    expect(encodePath('users/alice').equals(encodePath(['users', 'alice']))).toBe(true);
    expect(hex(encodePath('a/b'))).toBe('61000162');
    expect(hex(encodePath('/a/'))).toBe('61');
  });

  it('round-trips arbitrary segments, including 0x00, 0xff-like text and non-ASCII', () => {
    const paths = [['a'], ['a', 'b', 'c'], ['\u0000'], ['a\u0000b', '\u0000\u0001'], ['ÿ', '😀', 'a/b'], ['\u0001', '\u00ff']];
    for (const path of paths) {
      const key = encodePath(path);
      expect(decodePath(key)).toEqual(path);
    }
  });

  it('escapes 0x00 as 0x00 0xff', () => {
    expect(hex(encodePath(['a\u0000']))).toBe('6100ff');
    expect(hex(encodePath(['\u0000\u0000']))).toBe('00ff00ff');
  });

  it('keeps / inside an array segment as one segment, distinct from the deeper path', () => {
    const flat = encodePath(['a/b']);
    const deep = encodePath(['a', 'b']);
    expect(flat.equals(deep)).toBe(false);
    expect(decodePath(flat)).toEqual(['a/b']);
    expect(flat.includes(Buffer.from([0x00, 0x01]))).toBe(false);
    expect(deep.includes(Buffer.from([0x00, 0x01]))).toBe(true);
  });

  it('never collides, over many small paths built from awkward characters', () => {
    const alphabet = ['a', '/', '\u0000', '\u0001', '\u00ff', 'é'];
    const seen = new Map<string, string>();
    const segments: string[] = [];
    for (const x of alphabet) {
      segments.push(x);
      for (const y of alphabet) segments.push(x + y);
    }
    for (const s1 of segments) {
      for (const path of [[s1], ...segments.slice(0, 20).map((s2) => [s1, s2])]) {
        const key = hex(encodePath(path));
        const label = JSON.stringify(path);
        expect(seen.get(key) ?? label).toBe(label);
        seen.set(key, label);
      }
    }
  });

  it('refuses empty paths, empty segments, non-strings and lone surrogates', () => {
    for (const path of ['', '/', '//', [], ['a', ''], ['a', 5 as unknown as string], ['\uD800']]) {
      expect(() => encodePath(path)).toThrowError(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });

  it('enforces PATH_SEGMENTS_MAX and KEY_BYTES_MAX', () => {
    expect(() => encodePath(Array(PATH_SEGMENTS_MAX).fill('a'))).not.toThrow();
    expect(() => encodePath(Array(PATH_SEGMENTS_MAX + 1).fill('a'))).toThrowError(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => encodePath(['x'.repeat(KEY_BYTES_MAX)])).not.toThrow();
    expect(() => encodePath(['x'.repeat(KEY_BYTES_MAX + 1)])).toThrowError(expect.objectContaining({ code: 'KEY_TOO_LARGE' }));
    // Escaping counts: half the limit of NULs doubles to just over it.
    expect(() => encodePath(['\u0000'.repeat(KEY_BYTES_MAX / 2 + 1)])).toThrowError(expect.objectContaining({ code: 'KEY_TOO_LARGE' }));
  });
});

describe('pathPrefix', () => {
  it('is the encoded path plus a trailing separator; empty for the root', () => {
    expect(hex(pathPrefix('users/'))).toBe('75736572730001');
    expect(hex(pathPrefix(['a', 'b']))).toBe('610001620001');
    expect(pathPrefix('').length).toBe(0);
    expect(pathPrefix([]).length).toBe(0);
    expect(pathPrefix('/').length).toBe(0);
  });

  it('prefixes exactly the descendants of a path', () => {
    const prefix = pathPrefix('a');
    expect(encodePath('a/b').subarray(0, prefix.length).equals(prefix)).toBe(true);
    expect(encodePath('a/b/c').subarray(0, prefix.length).equals(prefix)).toBe(true);
    for (const other of ['a', 'ab', 'ab/c', ['a/b'], ['a\u0000', 'b']]) {
      expect(encodePath(other).subarray(0, prefix.length).equals(prefix)).toBe(false);
    }
  });
});

describe('ordering', () => {
  it('sorts keys in segment-by-segment order, children contiguous under their parent', () => {
    const paths = [['a'], ['a', 'a'], ['a', 'b'], ['a', 'b', 'c'], ['a', 'c'], ['a\u0000'], ['a\u0000', 'x'], ['a\u0001'], ['a/b'], ['aa'], ['b']];
    const compareSegments = (x: string[], y: string[]): number => {
      for (let i = 0; i < Math.min(x.length, y.length); i++) {
        const c = Buffer.compare(Buffer.from(x[i]), Buffer.from(y[i]));
        if (c !== 0) return c;
      }
      return x.length - y.length;
    };
    const bySegments = [...paths].sort(compareSegments);
    const byKey = [...paths].sort((x, y) => Buffer.compare(encodePath(x), encodePath(y)));
    expect(byKey).toEqual(bySegments);
    const prefix = pathPrefix('a');
    const underA = byKey.filter((p) => encodePath(p).subarray(0, prefix.length).equals(prefix));
    expect(underA).toEqual([['a', 'a'], ['a', 'b'], ['a', 'b', 'c'], ['a', 'c']]);
  });
});

describe('decodeSegment', () => {
  it('unescapes 0x00 0xff and decodes UTF-8', () => {
    expect(decodeSegment(Buffer.from('6100ff62', 'hex'))).toBe('a\u0000b');
    expect(decodeSegment(Buffer.from('😀'))).toBe('😀');
    // Regression: a leading U+FEFF was dropped as a byte-order mark, so listPath named a child
    // ('name') that getPath could not find ('\uFEFFname').
    expect(decodeSegment(Buffer.from('\uFEFFname'))).toBe('\uFEFFname');
    expect(decodePath(encodePath(['dir', '\uFEFFname']))).toEqual(['dir', '\uFEFFname']);
  });

  it('refuses bad escapes, separators and invalid UTF-8', () => {
    for (const bytes of ['6100', '610001', '0002', 'ff', 'c3']) {
      expect(() => decodeSegment(Buffer.from(bytes, 'hex'))).toThrowError(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });
});
