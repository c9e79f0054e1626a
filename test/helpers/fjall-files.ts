/**
 * Test helper: find and damage the files fjall 3 keeps under `<dataDir>/db`, and read its
 * journal format, so corruption tests can say exactly which field a flipped bit landed in.
 *
 * Layout (fjall 3.1 / lsm-tree 3.1):
 *   db/version                       4 bytes, "FJL" + format version 3
 *   db/lock                          empty lock file
 *   db/<n>.jnl                       journals; the highest id is the active one. A new journal
 *                                    is set_len() to 64 MiB (sparse), so everything after the
 *                                    last entry reads as zeros.
 *   db/keyspaces/<id>/current        u64 LE current version id + u128 xxh3 + u8 checksum type
 *   db/keyspaces/<id>/v<n>           version ("manifest"): sfa archive listing the tables
 *   db/keyspaces/<id>/tables/<n>     table files (checksummed blocks + sfa trailer)
 * Keyspace 0 is fjall's meta keyspace; toondb's "data" and "ttl" keyspaces come next.
 *
 * Journal entries (little-endian), one batch per commit: Start, N x Item (or Clear), End.
 *   Start  01 | u32 item_count | u64 seqno                                  (13 bytes)
 *   Item   02 | u8 value_type | u8 compression | u64 keyspace_id | u16 key_len
 *             | u32 value_len | u32 on_disk_value_len | key | value         (21 + key + value)
 *   End    03 | u64 xxh3 of the batch's encoded items | "FJL" 03           (13 bytes)
 *   Clear  04 | u64 keyspace_id                                             (9 bytes)
 * Only the items are covered by the End checksum: the Start marker (count and seqno), the tags
 * and the trailer magic are not.
 */

import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync, truncateSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export interface JournalItem {
  offset: number;
  end: number;
  keyspaceId: bigint;
  key: Buffer;
  value: Buffer;
  valueType: number;
}

export interface JournalBatch {
  /** Offset of the Start marker. */
  offset: number;
  /** Offset just past the End marker. */
  end: number;
  seqno: bigint;
  itemCount: number;
  items: JournalItem[];
  endOffset: number;
}

export interface ParsedJournal {
  batches: JournalBatch[];
  /** Offset just past the last complete batch: where the zero padding (or garbage) starts. */
  validEnd: number;
}

const START = 1;
const ITEM = 2;
const END = 3;
const CLEAR = 4;
const ITEM_HEADER = 21;

/** Parses complete batches from the start of a journal; stops at the first thing that is not one. */
export function parseJournal(buf: Buffer): ParsedJournal {
  const batches: JournalBatch[] = [];
  let pos = 0;
  for (;;) {
    if (pos + 13 > buf.length || buf[pos] !== START) break;
    const batch: JournalBatch = { offset: pos, end: 0, seqno: buf.readBigUInt64LE(pos + 5), itemCount: buf.readUInt32LE(pos + 1), items: [], endOffset: 0 };
    let p = pos + 13;
    let ok = true;
    for (let i = 0; i < batch.itemCount; i++) {
      if (buf[p] === CLEAR && p + 9 <= buf.length) {
        p += 9;
        continue;
      }
      if (buf[p] !== ITEM || p + ITEM_HEADER > buf.length) {
        ok = false;
        break;
      }
      const keyLen = buf.readUInt16LE(p + 11);
      const diskLen = buf.readUInt32LE(p + 17);
      const end = p + ITEM_HEADER + keyLen + diskLen;
      if (end > buf.length) {
        ok = false;
        break;
      }
      batch.items.push({
        offset: p,
        end,
        keyspaceId: buf.readBigUInt64LE(p + 3),
        valueType: buf[p + 1],
        key: buf.subarray(p + ITEM_HEADER, p + ITEM_HEADER + keyLen),
        value: buf.subarray(p + ITEM_HEADER + keyLen, end),
      });
      p = end;
    }
    if (!ok || p + 13 > buf.length || buf[p] !== END || buf.toString('latin1', p + 9, p + 12) !== 'FJL' || buf[p + 12] !== 3) break;
    batch.endOffset = p;
    batch.end = p + 13;
    batches.push(batch);
    pos = batch.end;
  }
  return { batches, validEnd: pos };
}

/** Reads the first `bytes` of a (sparse, 64 MiB) journal without reading all of it. */
export function readJournalHead(path: string, bytes = 4 * 1024 * 1024): Buffer {
  const fd = openSync(path, 'r');
  try {
    const size = Math.min(bytes, statSync(path).size);
    const buf = Buffer.alloc(size);
    readSync(fd, buf, 0, size, 0);
    return buf;
  } finally {
    closeSync(fd);
  }
}

/**
 * Which journal field holds byte `offset`: e.g. "batch 7 start.seqno". Fields not covered by
 * the batch checksum are the interesting ones (see the file comment).
 */
export function journalField(journal: ParsedJournal, offset: number): { batch: number; field: string } {
  const index = journal.batches.findIndex((b) => offset >= b.offset && offset < b.end);
  if (index < 0) return { batch: -1, field: offset >= journal.validEnd ? 'after-last-batch' : 'unparsed' };
  const batch = journal.batches[index];
  const at = offset - batch.offset;
  if (at === 0) return { batch: index, field: 'start.tag' };
  if (at < 5) return { batch: index, field: 'start.itemCount' };
  if (at < 13) return { batch: index, field: 'start.seqno' };
  if (offset >= batch.endOffset) {
    const e = offset - batch.endOffset;
    return { batch: index, field: e === 0 ? 'end.tag' : e < 9 ? 'end.checksum' : 'end.magic' };
  }
  const item = batch.items.find((i) => offset >= i.offset && offset < i.end);
  if (!item) return { batch: index, field: 'clear' };
  const i = offset - item.offset;
  const names: [number, string][] = [[1, 'item.tag'], [2, 'item.valueType'], [3, 'item.compression'], [11, 'item.keyspaceId'], [13, 'item.keyLen'], [17, 'item.valueLen'], [21, 'item.diskLen']];
  for (const [limit, name] of names) if (i < limit) return { batch: index, field: name };
  return { batch: index, field: i < ITEM_HEADER + item.key.length ? 'item.key' : 'item.value' };
}

/** Fields whose damage the End checksum cannot see. */
export const UNCHECKED_JOURNAL_FIELDS = new Set(['start.tag', 'start.itemCount', 'start.seqno', 'item.tag', 'item.compression', 'item.keyLen', 'item.valueLen', 'item.diskLen', 'end.tag', 'end.magic']);

export interface EngineFiles {
  journals: string[];
  tables: string[];
  /** The version file each keyspace's `current` points at. */
  versions: string[];
  currents: string[];
  formatVersion: string;
}

function numericEntries(dir: string, suffix = ''): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => new RegExp(`^\\d+${suffix.replace('.', '\\.')}$`).test(name))
    .sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10))
    .map((name) => join(dir, name));
}

export function engineFiles(dbDir: string): EngineFiles {
  const files: EngineFiles = { journals: numericEntries(dbDir, '.jnl'), tables: [], versions: [], currents: [], formatVersion: join(dbDir, 'version') };
  for (const keyspace of numericEntries(join(dbDir, 'keyspaces'))) {
    files.tables.push(...numericEntries(join(keyspace, 'tables')));
    const current = join(keyspace, 'current');
    if (!existsSync(current)) continue;
    files.currents.push(current);
    const version = join(keyspace, `v${readFileSync(current).readBigUInt64LE(0)}`);
    if (existsSync(version)) files.versions.push(version);
  }
  return files;
}

/** XORs bit `bit` of the byte at `offset`; returns [before, after]. */
export function flipBit(path: string, offset: number, bit: number): [number, number] {
  const fd = openSync(path, 'r+');
  try {
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, offset);
    const before = byte[0];
    byte[0] ^= 1 << bit;
    writeSync(fd, byte, 0, 1, offset);
    return [before, byte[0]];
  } finally {
    closeSync(fd);
  }
}

export function truncateFile(path: string, length: number): void {
  truncateSync(path, length);
}

export function fileSize(path: string): number {
  return statSync(path).size;
}

/**
 * The bytes a torn, never-acknowledged commit leaves behind: the first `keep` bytes of a copy of
 * `batch` (from `journal`) renumbered to `seqno`, with `rewrite` applied to each item value.
 */
export function tornBatch(journal: Buffer, batch: JournalBatch, seqno: bigint, keep: number, rewrite: (value: Buffer) => Buffer = (v) => v): Buffer {
  const copy = Buffer.from(journal.subarray(batch.offset, batch.end));
  copy.writeBigUInt64LE(seqno, 5);
  for (const item of batch.items) {
    const at = item.end - item.value.length - batch.offset;
    const value = rewrite(Buffer.from(item.value));
    if (value.length !== item.value.length) throw new Error('rewrite must keep the value length');
    value.copy(copy, at);
  }
  return copy.subarray(0, keep);
}

/** Writes `bytes` at `offset` (into the zero padding of a preallocated journal). */
export function writeAt(path: string, offset: number, bytes: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

export interface VersionTable {
  level: number;
  id: bigint;
  /** Offset of the table's u64 global seqno, added to every seqno read from the table. */
  globalSeqnoOffset: number;
  globalSeqno: bigint;
}

export interface ParsedVersion {
  /** Section name -> [start, end) in the file (from the sfa table of contents). */
  sections: Map<string, [number, number]>;
  tocOffset: number;
  tables: VersionTable[];
}

/**
 * Parses an lsm-tree version file ("v<n>"): an sfa archive whose table of contents ("TOC!", u32
 * count, then per section u64 pos, u64 len, u16 name length, name) is checksummed, while the
 * section bytes are not. The "tables" section: u8 level count; per level u8 run count; per run
 * u32 table count; per table u64 id, u8 checksum type, u128 checksum, u64 global seqno.
 */
export function parseVersion(buf: Buffer): ParsedVersion {
  const tocOffset = buf.lastIndexOf('TOC!');
  if (tocOffset < 0) throw new Error('no sfa table of contents');
  const sections = new Map<string, [number, number]>();
  let p = tocOffset + 8;
  for (let i = 0, n = buf.readUInt32LE(tocOffset + 4); i < n; i++) {
    const pos = Number(buf.readBigUInt64LE(p));
    const len = Number(buf.readBigUInt64LE(p + 8));
    const nameLen = buf.readUInt16LE(p + 16);
    sections.set(buf.toString('latin1', p + 18, p + 18 + nameLen), [pos, pos + len]);
    p += 18 + nameLen;
  }
  const tables: VersionTable[] = [];
  const range = sections.get('tables');
  if (range) {
    let q = range[0];
    const levels = buf[q++];
    for (let level = 0; level < levels; level++) {
      const runs = buf[q++];
      for (let r = 0; r < runs; r++) {
        const count = buf.readUInt32LE(q);
        q += 4;
        for (let t = 0; t < count; t++) {
          tables.push({ level, id: buf.readBigUInt64LE(q), globalSeqnoOffset: q + 25, globalSeqno: buf.readBigUInt64LE(q + 25) });
          q += 33;
        }
      }
    }
  }
  return { sections, tocOffset, tables };
}

/** Which part of a version file holds byte `offset`, e.g. "tables.globalSeqno" or "toc". */
export function versionField(version: ParsedVersion, offset: number): string {
  for (const table of version.tables) {
    const start = table.globalSeqnoOffset - 25;
    if (offset >= start && offset < start + 33) {
      const at = offset - start;
      return at < 8 ? 'tables.id' : at < 9 ? 'tables.checksumType' : at < 25 ? 'tables.checksum' : 'tables.globalSeqno';
    }
  }
  for (const [name, [from, to]] of version.sections) if (offset >= from && offset < to) return name;
  return offset >= version.tocOffset ? 'toc+trailer' : 'unknown';
}
