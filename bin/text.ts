/**
 * Keys and values at the CLI's edges: arguments in, bytes out.
 *
 * In: an argument is UTF-8 text, or with --hex / --base64 that encoding of the bytes. Node
 * decodes argv as UTF-8 and turns each invalid byte into U+FFFD, so an argument holding U+FFFD
 * is refused (a usage error pointing to --hex / --base64) rather than stored as something the
 * user never typed. A path (a dump file, the socket) holding U+FFFD is refused the same way: it
 * would name another file than the one meant.
 *
 * Out: bytes print as text only when they are valid UTF-8 and printable, else as `0x` and hex
 * (text that itself starts with `0x` prints as hex too, so `0x…` output is always hex). Not
 * printable: C0 controls other than tab and line breaks, DEL, C1 controls (U+0080–U+009F: U+009B
 * is a CSI, a terminal escape without ESC), the bidirectional controls (U+061C, U+200E,
 * U+200F, U+202A–U+202E, U+2066–U+2069) that make a terminal show text in another order than
 * it is stored, the line and paragraph separators (U+2028, U+2029), and the characters that
 * print as nothing, so that a key holding one would print like one without it: soft hyphen
 * U+00AD, U+034F, U+17B4, U+17B5, U+180E, zero-width space U+200B, U+2060–U+2065, U+FEFF,
 * U+1D173–U+1D17A, the interlinear annotation marks U+FFF9–U+FFFB, and the Hangul fillers
 * (U+115F, U+1160, U+3164, U+FFA0), blanks used to spoof names. Zero-width (non-)joiners,
 * variation selectors and tag characters stay text: emoji and several scripts are written with
 * them; so do the blanks other than U+0020 (no-break space, U+3000 in CJK text), which print as
 * a visible space, and look-alike letters: text output shows what is stored when it can, not a
 * proof that two keys differ. --hex / --base64 choose an encoding for output too.
 */

import { usage } from './cli-exit.js';

export interface Encoding {
  hex?: boolean;
  base64?: boolean;
}

/** Code points that never print raw (see the header). */
const NOT_PRINTABLE = /[\x00-\x08\x0e-\x1f\x7f-\x9f\xad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200e\u200f\u2028\u2029\u202a-\u202e\u2060-\u2069\u3164\ufeff\uffa0\ufff9-\ufffb\u{1d173}-\u{1d17a}]/u;
/** What `oneLine` output (scan's `key<TAB>value` lines) also sends to hex. */
const LINE_BREAKING = /[\t\n\r\v\f]/;
/** What Node puts in argv for each byte that is not UTF-8. */
const REPLACEMENT_CHARACTER = '\uFFFD';

/** Bytes as text, hex or base64 (see the header). `oneLine` also sends text with tabs or line
 * breaks to hex. */
export function display(bytes: Buffer, flags: Encoding, oneLine = false): string {
  checkEncodings(flags);
  if (flags.hex) return bytes.toString('hex');
  if (flags.base64) return bytes.toString('base64');
  const text = bytes.toString('utf8');
  const printable = Buffer.from(text, 'utf8').equals(bytes) && !NOT_PRINTABLE.test(text)
    && !text.startsWith('0x') && !(oneLine && LINE_BREAKING.test(text));
  return printable ? text : `0x${bytes.toString('hex')}`;
}

/** --hex and --base64 name one encoding each: both at once is a usage error, not hex. */
export function checkEncodings(flags: Encoding): void {
  if (flags.hex && flags.base64) usage('--hex and --base64 exclude each other');
}

/** The bytes an argument stands for; `what` names it in errors (KEY, VALUE, PREFIX). */
export function parseInput(text: string, flags: Encoding, what: string): Buffer {
  checkEncodings(flags);
  if (flags.hex) {
    if (!/^([0-9a-fA-F]{2})*$/.test(text)) usage(`--hex input must be an even number of hex digits, got "${text}"`);
    return Buffer.from(text, 'hex');
  }
  if (flags.base64) {
    const bytes = Buffer.from(text, 'base64');
    // Canonical only: 'AB==' would read as 0x00 as 'AA==' does, one key under two spellings.
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0 || bytes.toString('base64') !== text) {
      usage(`--base64 input must be padded, canonical base64, got "${text}"`);
    }
    return bytes;
  }
  if (text.includes(REPLACEMENT_CHARACTER)) {
    usage(`${what} is not valid UTF-8 (Node reads each invalid byte as U+FFFD, and would store that); `
      + 'give binary keys and values with --hex or --base64 (U+FFFD itself is --hex efbfbd)');
  }
  return Buffer.from(text, 'utf8');
}

/** A KEY argument: as parseInput, and not empty (the daemon refuses an empty key; a usage error
 * is found before connecting, whether or not a daemon runs). */
export function parseKey(text: string, flags: Encoding): Buffer {
  const key = parseInput(text, flags, 'KEY');
  if (key.length === 0) usage('KEY must not be empty');
  return key;
}

/** A path argument (or TOONDB_SOCKET, which Node decodes the same way); `what` names it in the
 * error. Refused if it holds U+FFFD: see the header. */
export function parsePath(text: string, what: string): string {
  if (text.includes(REPLACEMENT_CHARACTER)) {
    usage(`${what} is not valid UTF-8 (Node reads each invalid byte as U+FFFD, which names another file): ${JSON.stringify(text)}`);
  }
  return text;
}
