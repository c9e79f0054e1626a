// How the CLI prints stored bytes: text only when it shows what is stored, one-to-one; else
// hex. Unit test of bin/text.ts's `display` (the process-level cases are in text.test.ts).
import { describe, expect, it } from 'vitest';
import { display } from '../../bin/text.js';

const hex = (text: string) => `0x${Buffer.from(text).toString('hex')}`;

describe('display', () => {
  it('prints text holding characters that print as nothing (or Hangul fillers) as hex', () => {
    // Each of these would print exactly like 'ab' (or like 'a b' with a blank of its own).
    for (const invisible of ['\u00ad', '\u034f', '\u115f', '\u1160', '\u17b4', '\u17b5', '\u180e', '\u200b', '\u2060', '\u2061', '\u2064', '\u2065', '\u3164', '\ufeff', '\uffa0', '\ufff9', '\ufffb', '\u{1d173}', '\u{1d17a}']) {
      const text = `a${invisible}b`;
      expect(display(Buffer.from(text), {}), `U+${invisible.codePointAt(0)!.toString(16)}`).toBe(hex(text));
    }
  });

  it('prints line and paragraph separators as hex', () => {
    for (const separator of ['\u2028', '\u2029']) expect(display(Buffer.from(`a${separator}b`), {})).toBe(hex(`a${separator}b`));
  });

  it('keeps text written with joiners, variation selectors and tags as text', () => {
    for (const text of [
      'family \u{1F468}\u200D\u{1F469}\u200D\u{1F467}', // zero-width joiners between emoji
      'می\u200Cخواهم', // Persian with a zero-width non-joiner
      'heart \u2764\uFE0F', // variation selector 16
      'prix\u00a0: 5\u00a0€', // no-break spaces, as French typography sets them
      '東京\u3000大阪', // an ideographic space
      'flag \u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}', // tag characters
      'héllo 日本 ✓',
    ]) {
      expect(display(Buffer.from(text), {})).toBe(text);
      expect(display(Buffer.from(text), {}, true)).toBe(text);
    }
  });

  it('prints hex for invalid UTF-8, controls, and text that starts with 0x', () => {
    expect(display(Buffer.from([0x61, 0xff]), {})).toBe('0x61ff');
    expect(display(Buffer.from('a\u001b[31m'), {})).toBe(hex('a\u001b[31m'));
    expect(display(Buffer.from('0x12'), {})).toBe(hex('0x12'));
    expect(display(Buffer.from('a\tb'), {})).toBe('a\tb');
    expect(display(Buffer.from('a\tb'), {}, true)).toBe(hex('a\tb'));
  });
});
