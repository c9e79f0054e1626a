// MessageCodec. Guards against: msgpackr-specific encodings leaking onto the wire (records,
// extensions) so other languages cannot read us; bigint silently becoming a float; hostile
// bodies crashing or hanging the daemon (deep nesting, lying lengths, ext types); prototype
// pollution through `__proto__` keys.
import { describe, expect, it } from 'vitest';
import { ToonDBError } from '../../protocol/errors.js';
import { MessageCodec } from '../../protocol/codec.js';
import { checkPlainMessagePack } from '../../protocol/plain-msgpack.js';
import { FRAME_HEADER_BYTES, MESSAGE_DEPTH_MAX, MESSAGE_MAP_ENTRIES_MAX } from '../../protocol/limits.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const bodyOf = (frame: Buffer): Buffer => frame.subarray(FRAME_HEADER_BYTES);

function expectProtocolError(codec: MessageCodec, body: Uint8Array, code = 'PROTOCOL_ERROR'): ToonDBError {
  let thrown: unknown;
  try { codec.decode(body); } catch (error) { thrown = error; }
  expect(thrown).toBeInstanceOf(ToonDBError);
  expect((thrown as ToonDBError).code).toBe(code);
  return thrown as ToonDBError;
}

describe('MessageCodec.encode', () => {
  it('returns a complete frame whose prefix is the body length', () => {
    const frame = new MessageCodec().encode({ id: 1, op: 'ping' });
    expect(frame.readUInt32BE(0)).toBe(frame.length - FRAME_HEADER_BYTES);
    // fixmap(2) "id" 1 "op" "ping": the smallest standard encoding, no msgpackr records.
    expect(bodyOf(frame).toString('hex')).toBe('82a2696401a26f70a470696e67');
  });

  it('round-trips bigint as a 64-bit integer', () => {
    const codec = new MessageCodec();
    for (const value of [1n, 2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n - 1n]) {
      const body = bodyOf(codec.encode({ v: value }));
      expect([0xd3, 0xcf]).toContain(body[3]); // after 81 a1 76
      expect(body.length).toBe(3 + 9);
      expect(codec.decode(body).v).toBe(value);
    }
  });

  it('writes Buffers and Uint8Arrays as bin (0xc4/0xc5/0xc6) and reads them back as Buffers', () => {
    const codec = new MessageCodec();
    for (const [length, marker] of [[0, 0xc4], [255, 0xc4], [256, 0xc5], [65_535, 0xc5], [65_536, 0xc6]] as const) {
      const value = Buffer.alloc(length, 7);
      for (const input of [value, new Uint8Array(value)]) {
        const body = bodyOf(codec.encode({ b: input }));
        expect(body[3]).toBe(marker);
        const out = codec.decode(body).b;
        expect(Buffer.isBuffer(out)).toBe(true);
        expect((out as Buffer).equals(value)).toBe(true);
      }
    }
  });

  it('decodes bins as Buffers even from a plain Uint8Array body', () => {
    const out = new MessageCodec().decode(new Uint8Array(hex('81 a1 62 c4 02 01 02'))).b;
    expect(Buffer.isBuffer(out)).toBe(true);
    expect([...(out as Buffer)]).toEqual([1, 2]);
  });

  it('writes undefined as nil', () => {
    expect(bodyOf(new MessageCodec().encode({ r: undefined })).toString('hex')).toBe('81a172c0');
  });

  it('refuses values msgpackr would write as extensions', () => {
    const codec = new MessageCodec();
    for (const value of [new Date(0), 2n ** 64n, -(2n ** 63n) - 1n]) {
      expect(() => codec.encode({ v: value })).toThrowError(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
    // With moreTypes off msgpackr writes these as plain arrays, which any peer can read.
    expect(codec.decode(bodyOf(codec.encode({ v: new Set([1]) }))).v).toEqual([1]);
  });

  it('refuses a body over frameBytesMax with FRAME_TOO_LARGE', () => {
    const codec = new MessageCodec({ frameBytesMax: 100 });
    expect(() => codec.encode({ v: Buffer.alloc(100) })).toThrowError(expect.objectContaining({ code: 'FRAME_TOO_LARGE' }));
    expect(() => codec.encode({ v: Buffer.alloc(90) })).not.toThrow();
  });

  it('returns frames that stay valid after later encodes', () => {
    const codec = new MessageCodec();
    const first = codec.encode({ id: 1, v: Buffer.from('first') });
    const copy = Buffer.from(first);
    for (let i = 0; i < 2000; i++) codec.encode({ id: i, v: Buffer.alloc(i % 300, i & 0xff) });
    new MessageCodec().encode({ big: Buffer.alloc(1 << 20) });
    expect(first.equals(copy)).toBe(true);
  });
});

describe('MessageCodec.decode', () => {
  const codec = new MessageCodec();

  it('decodes plain MessagePack written by hand (as another language would)', () => {
    // {"id": uint32 7, "op": str8 "get", "key": bin8 00 ff, "txn": uint64 5, "n": int8 -3,
    //  "f": float64 1.5, "ok": true, "nil": nil, "arr": [int16 -300, uint16 300]}
    const body = hex(`89 a2 6964 ce 00000007  a2 6f70 d9 03 676574  a3 6b6579 c4 02 00ff
      a3 74786e cf 0000000000000005  a1 6e d0 fd  a1 66 cb 3ff8000000000000  a2 6f6b c3  a3 6e696c c0
      a3 617272 92 d1 fed4 cd 012c`);
    const message = codec.decode(body);
    expect(message).toEqual({ id: 7, op: 'get', key: Buffer.from([0, 0xff]), txn: 5n, n: -3, f: 1.5, ok: true, nil: null, arr: [-300, 300] });
  });

  it('decodes map16/map32/array32/str32/bin32 headers', () => {
    const message = codec.decode(hex('de 0001 a1 61 dd 00000001 db 00000001 78'));
    expect(message).toEqual({ a: ['x'] });
    expect(codec.decode(hex('df 00000001 a1 62 c6 00000001 09')).b).toEqual(Buffer.from([9]));
  });

  it('rejects a non-map top-level value', () => {
    for (const body of ['91 01', 'c0', '01', 'a1 61', 'c4 01 00']) expectProtocolError(codec, hex(body));
  });

  it('rejects trailing bytes after the value', () => {
    expectProtocolError(codec, hex('80 00'));
    expectProtocolError(codec, hex('81 a1 61 01 81'));
  });

  it('rejects truncated values', () => {
    for (const body of ['81', '81 a1 61', '81 a1 61 cd 01', 'de 00', '81 a5 61', '81 a1 61 d9']) {
      expectProtocolError(codec, hex(body));
    }
  });

  it('rejects declared lengths that exceed the body, without allocating them', () => {
    for (const body of ['81 a1 61 dd ffffffff', 'df ffffffff', '81 a1 61 db ffffffff 41', '81 a1 61 c6 ffffffff 00', '81 a1 61 dc ffff 01']) {
      const error = expectProtocolError(codec, hex(body));
      expect(error.message).toMatch(/remain/);
    }
  });

  it('rejects deep nesting of arrays and maps, at any depth up to 1e6', () => {
    for (const depth of [MESSAGE_DEPTH_MAX, 1000, 1_000_000]) {
      // one map, then `depth` nested arrays: depth + 1 containers
      const arrays = Buffer.concat([hex('81 a1 61'), Buffer.alloc(depth, 0x91), hex('01')]);
      expect(expectProtocolError(codec, arrays).message).toMatch(/nesting/);
      const maps = Buffer.concat([hex('81a161'.repeat(depth + 1)), hex('01')]);
      expect(expectProtocolError(codec, maps).message).toMatch(/nesting/);
    }
    // At the limit: MESSAGE_DEPTH_MAX containers deep in total is accepted.
    const ok = Buffer.concat([hex('81 a1 61'), Buffer.alloc(MESSAGE_DEPTH_MAX - 1, 0x91), hex('01')]);
    expect(() => codec.decode(ok)).not.toThrow();
  });

  // Regression: one 32 MiB frame holding a map of millions of keys held the daemon's thread
  // for ~5 s while msgpackr built the object, stalling every other client.
  it('rejects a map of more than MESSAGE_MAP_ENTRIES_MAX entries before decoding it', () => {
    const mapOf = (n: number) => {
      const entries = Array.from({ length: n }, (_, i) => Buffer.concat([hex('a6'), Buffer.from(`k${String(i).padStart(5, '0')}`), hex('c0')]));
      const header = Buffer.alloc(3);
      header[0] = 0xde;
      header.writeUInt16BE(n, 1);
      return Buffer.concat([header, ...entries]);
    };
    expect(() => codec.decode(mapOf(MESSAGE_MAP_ENTRIES_MAX))).not.toThrow();
    expect(expectProtocolError(codec, mapOf(MESSAGE_MAP_ENTRIES_MAX + 1)).message).toMatch(/map of 257 entries/);
  });

  it('rejects a request of more items than decodeItemsMax, counting every element, key and value', () => {
    const bounded = new MessageCodec({ decodeItemsMax: 10 });
    // { a: [1, 2, 3] } is 1 map + key + array + 3 = 6 items; { a: [1..7] } is 10; { a: [1..8] } is 11.
    const withArray = (n: number) => Buffer.concat([hex('81 a1 61'), Buffer.from([0x90 | n]), Buffer.from(Array.from({ length: n }, (_, i) => i))]);
    expect(bounded.decode(withArray(3))).toEqual({ a: [0, 1, 2] });
    expect(() => bounded.decode(withArray(7))).not.toThrow();
    expect(expectProtocolError(bounded, withArray(8)).message).toMatch(/more than 10 items/);
    expect(() => codec.decode(withArray(8))).not.toThrow();
  });

  it('rejects every ext type, including msgpackr records and timestamps', () => {
    const exts = ['d4 00 00', 'd4 72 40', 'd5 72 40 00', 'd6 ff 00000000', 'd7 ff 0000000000000000',
      'd8 01 ' + '00'.repeat(16), 'c7 01 05 00', 'c8 0001 05 00', 'c9 00000001 05 00', 'c7 00 73'];
    for (const ext of exts) {
      const error = expectProtocolError(codec, hex(`81 a1 61 ${ext}`));
      expect(error.message).toMatch(/extension/);
    }
  });

  it('rejects the never-used byte 0xc1 and non-string map keys', () => {
    expectProtocolError(codec, hex('81 a1 61 c1'));
    expectProtocolError(codec, hex('81 01 01'));
    expectProtocolError(codec, hex('81 c4 01 61 01'));
    expectProtocolError(codec, hex('81 91 01 01'));
  });

  it('does not let __proto__ keys pollute prototypes', () => {
    // {"__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted": true}}}
    const body = hex(`82 a9 5f5f70726f746f5f5f 81 a8 706f6c6c75746564 c3
      ab 636f6e7374727563746f72 81 a9 70726f746f74797065 81 a8 706f6c6c75746564 c3`);
    const message = codec.decode(body);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(message)).toBe(Object.prototype);
    expect((message as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype.hasOwnProperty.call(message, '__proto__')).toBe(false);
  });

  it('rejects a body larger than frameBytesMax', () => {
    expectProtocolError(new MessageCodec({ frameBytesMax: 4 }), hex('81 a1 61 a1 62'), 'FRAME_TOO_LARGE');
  });
});

describe('checkPlainMessagePack', () => {
  it('accepts every plain scalar type', () => {
    for (const value of ['c0', 'c2', 'c3', '7f', 'e0', 'cc ff', 'cd ffff', 'ce ffffffff', 'cf ' + 'ff'.repeat(8),
      'd0 80', 'd1 8000', 'd2 80000000', 'd3 ' + '80'.repeat(8), 'ca 3fc00000', 'cb ' + '00'.repeat(8),
      'a0', 'd9 00', 'da 0000', 'db 00000000', 'c4 00', 'c5 0000', 'c6 00000000', '90', '80', 'dc 0000', 'de 0000']) {
      expect(() => checkPlainMessagePack(hex(value))).not.toThrow();
    }
  });

  it('rejects an empty body', () => {
    expect(() => checkPlainMessagePack(new Uint8Array(0))).toThrowError(expect.objectContaining({ code: 'PROTOCOL_ERROR' }));
  });

  // Regression: a str of bytes that are not UTF-8 was decoded with U+FFFD in place of each bad
  // byte, so `put` of such a key stored a different key and answered OK.
  it('accepts UTF-8 str payloads, short and long, and refuses any that are not UTF-8', () => {
    const str = (payload: Buffer) => Buffer.concat([hex(payload.length < 32 ? (0xa0 | payload.length).toString(16) : 'da ' + payload.length.toString(16).padStart(4, '0')), payload]);
    for (const text of ['key', 'ключ', '鍵🔑', 'x'.repeat(200), 'é'.repeat(100), '\uFFFD']) {
      expect(() => checkPlainMessagePack(str(Buffer.from(text)))).not.toThrow();
    }
    for (const bad of ['ff', 'c3', 'ed a0 80', 'f8 88 80 80 80', 'c0 80', '75 38 ff fe', '78'.repeat(100) + ' 80']) {
      const payload = hex(bad);
      expect(() => checkPlainMessagePack(str(payload)), bad).toThrowError(expect.objectContaining({ code: 'PROTOCOL_ERROR', message: expect.stringMatching(/str is not valid UTF-8/) }));
      // As a map key too, and deep in an array.
      expect(() => checkPlainMessagePack(Buffer.concat([hex('81'), str(payload), hex('c0')]))).toThrow(/not valid UTF-8/);
      expect(() => checkPlainMessagePack(Buffer.concat([hex('91 91'), str(payload)]))).toThrow(/not valid UTF-8/);
    }
  });
});
