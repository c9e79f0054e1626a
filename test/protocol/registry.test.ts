// Registry agreement (as Fastify does for its errors). Guards against PROTOCOL.md drifting from
// the code: an error code, op or limit added in code but not documented (or documented but gone),
// a retryable flag that says one thing in code and another in the spec, and worked examples that
// no longer match what the codec produces.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ALL_ERROR_CODES, ERROR_CODES } from '../../protocol/errors.js';
import { MessageCodec } from '../../protocol/codec.js';
import { DEFAULT_SERVER_LIMITS } from '../../protocol/limits.js';
import { OP_FAMILIES, OP_NAMES } from '../../protocol/messages.js';
import { encodePath, pathPrefix } from '../../protocol/paths.js';
import * as publicApi from '../../protocol/index.js';

const DOC = readFileSync(fileURLToPath(new URL('../../protocol/PROTOCOL.md', import.meta.url)), 'utf8');

/** The text of a `## Title` section, up to the next `## ` heading. */
function section(title: string): string {
  const start = DOC.indexOf(`\n## ${title}\n`);
  expect(start, `PROTOCOL.md has a "## ${title}" section`).toBeGreaterThanOrEqual(0);
  const end = DOC.indexOf('\n## ', start + 1);
  return DOC.slice(start, end === -1 ? undefined : end);
}

/** Table rows whose first cell is a `code`-quoted name: name -> remaining cells. */
function tableRows(text: string): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const match = /^\| `([^`]+)` \|(.*)\|\s*$/.exec(line);
    if (match) rows.set(match[1], match[2].split(' | ').map((cell) => cell.trim()));
  }
  return rows;
}

const hexOf = (bytes: Buffer): string => bytes.toString('hex').replace(/(..)(?!$)/g, '$1 ');

describe('PROTOCOL.md agrees with the code', () => {
  it('lists exactly the registry error codes, with the same retryable flag and description', () => {
    const rows = tableRows(section('Error codes'));
    expect([...rows.keys()].sort()).toEqual([...ALL_ERROR_CODES].sort());
    for (const code of ALL_ERROR_CODES) {
      const [retryable, description] = rows.get(code) ?? [];
      expect(retryable, code).toBe(ERROR_CODES[code].retryable ? 'yes' : 'no');
      expect(description, code).toBe(ERROR_CODES[code].description);
    }
  });

  it('documents every op with a heading and an ops-table row with the right family', () => {
    const ops = section('Operations');
    const rows = tableRows(ops);
    const headings = [...ops.matchAll(/^### `([^`]+)`$/gm)].map((m) => m[1]);
    expect([...headings].sort()).toEqual([...OP_NAMES].sort());
    expect([...rows.keys()].sort()).toEqual([...OP_NAMES].sort());
    for (const op of OP_NAMES) expect(rows.get(op)?.[0], op).toBe(OP_FAMILIES[op]);
  });

  it('lists every advertised limit with its default value', () => {
    const rows = tableRows(section('Limits'));
    expect([...rows.keys()].sort()).toEqual(Object.keys(DEFAULT_SERVER_LIMITS).sort());
    for (const [name, value] of Object.entries(DEFAULT_SERVER_LIMITS)) {
      expect(rows.get(name)?.[0].split(' ')[0], name).toBe(String(value));
      expect(section('Handshake'), name).toContain(`\`${name}\``);
    }
  });

  it('shows worked examples exactly as the codec encodes them', () => {
    const codec = new MessageCodec();
    const examples: object[] = [
      { id: 2, op: 'put', key: Buffer.from('user:1'), value: Buffer.from('alice') },
      { id: 2, result: null },
      { id: 3, result: { txn: 7n } },
      { id: 4, error: { code: 'TXN_CONFLICT', message: 'conflict' } },
    ];
    const worked = section('Worked examples');
    for (const message of examples) expect(worked).toContain(hexOf(codec.encode(message)));
  });

  it('shows the path-key example exactly as encodePath produces it', () => {
    const paths = section('Path keys');
    expect(paths).toContain(hexOf(encodePath(['users', 'a\u0000b'])));
    expect(paths).toContain(hexOf(pathPrefix('users')));
    expect(paths).toContain(hexOf(encodePath(['a', 'b'])));
  });
});

describe('protocol/index.ts', () => {
  it('re-exports the public API of every module', () => {
    for (const name of ['FrameDecoder', 'encodeFrame', 'writeFrameHeader', 'MessageCodec', 'parseRequest', 'requestIdOf',
      'encodePath', 'pathPrefix', 'decodeSegment', 'decodePath', 'ToonDBError', 'TransactionConflictError', 'errorFromWire',
      'ERROR_CODES', 'OP_FAMILIES', 'REQUEST_ID_MAX', 'CONNECTION_ERROR_ID', 'DEFAULT_SERVER_LIMITS', 'FRAME_BYTES_MAX',
      'PROTOCOL_VERSION', 'checkPlainMessagePack']) {
      expect(publicApi, name).toHaveProperty(name);
    }
  });
});
