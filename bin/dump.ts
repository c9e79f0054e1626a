/**
 * `toondb dump FILE` / `toondb load FILE`: a portable snapshot of every key and value.
 *
 * File format (version 3), a sequence of frames in the wire protocol's framing (4-byte
 * big-endian length + one MessagePack map), so any language with MessagePack can read it:
 *   1. header  { format: 'toondb-dump', version: 3, createdAt: ISO-8601 string, server: string }
 *   2. batches { entries: [entry, ...], crc32: uint }   (zero or more, in key order). An entry
 *      is [key bin, value bin] for a key without TTL and [key bin, value bin, expiresAtMs] for
 *      one with (ms since the Unix epoch, a number). crc32 (zlib's) runs over each entry as
 *      keyLength u32 BE, key, valueLength u32 BE, value, then, for a triple only, the expiry as
 *      a u64 BE, in order.
 *   3. trailer { end: true, count: <entries written> }
 * `load` also reads versions 2 (pairs only) and 1 (pairs, no crc32; a batch that has a crc32
 * anyway is checked, so a header damaged to say 1 does not skip checks). A batch whose checksum
 * does not match is refused before anything of it is written; a file without the trailer is
 * truncated. Either way `load` says how many entries it had written (the batches before the
 * damage).
 *
 * TTLs: `load` gives a key its original expiry (as a TTL of what is left of it, so to within
 * the few ms the put takes); a key whose expiry passed before its load is not written, and
 * counts as expired, not loaded.
 *
 * Consistency: the dump is one scan cursor, which reads one snapshot: concurrent writes never
 * produce a mix of versions.
 * Where the bytes go (stdout for `-`, a device or FIFO streamed into, a symlink's target, a
 * temporary file renamed over FILE only when complete) is dump-target.ts's; `load -` reads
 * stdin. Memory: both directions stream one batch at a time.
 */

import { createReadStream } from 'node:fs';
import { crc32 } from 'node:zlib';
import type { IpcClient } from '../ipc-client/index.js';
import { MessageCodec } from '../protocol/codec.js';
import { toToonDBError, ToonDBError } from '../protocol/errors.js';
import { FrameDecoder } from '../protocol/frame.js';
import { FRAME_HEADER_BYTES } from '../protocol/limits.js';
import { openDumpTarget, STDIO_NAME, writeError, type DumpTarget } from './dump-target.js';

export const DUMP_FORMAT = 'toondb-dump';
export const DUMP_VERSION = 3;
const DUMP_VERSIONS_READ = [1, 2, 3];
const DUMP_BATCH_ITEMS = 1_000;
const DUMP_BATCH_BYTES = 4 * 1024 * 1024;
/** Puts of keys with a TTL `load` sends at once (see putAll). */
const TTL_PUTS_AT_ONCE = 64;
/** Longest header frame body `load` accepts (a real one is ~100 bytes). Checked before the
 * frame is read, so a file that is not a dump is named as such from its first bytes: a log
 * file's first four bytes read as a frame length of ~2 GB. */
const DUMP_HEADER_BYTES_MAX = 4096;

export type Progress = (entries: number, bytes: number, done: boolean) => void;

/** A dump entry: a key without TTL, or one with its expiry (ms since the Unix epoch). */
type DumpEntry = [Buffer, Buffer] | [Buffer, Buffer, number];

/** crc32 of a batch's entries as the header describes. */
function entriesCrc(entries: readonly DumpEntry[]): number {
  let crc = 0;
  const length = Buffer.alloc(4);
  const expiry = Buffer.alloc(8);
  for (const entry of entries) {
    const [key, value] = entry;
    length.writeUInt32BE(key.length);
    crc = crc32(key, crc32(length, crc));
    length.writeUInt32BE(value.length);
    crc = crc32(value, crc32(length, crc));
    if (entry.length === 3) {
      expiry.writeBigUInt64BE(BigInt(entry[2]));
      crc = crc32(expiry, crc);
    }
  }
  return crc;
}

/** What a dump wrote: how many entries, and where (dump-target.ts). */
export interface Dumped {
  count: number;
  target: Pick<DumpTarget, 'name' | 'streamed' | 'summary'>;
}

/** Dumps every key and value to `file` (see the header; `-` is stdout). */
export async function dump(client: IpcClient, file: string, progress: Progress): Promise<Dumped> {
  const target = await openDumpTarget(file);
  try {
    const count = await dumpTo(client, (bytes) => target.write(bytes), progress);
    await target.finish();
    return { count, target };
  } catch (error) {
    await target.abandon();
    if (target.streamed && (error as { code?: unknown }).code === 'CURSOR_NOT_FOUND') {
      // Writes to a pipe block this process: a reader that stalls (a slow link, a password
      // prompt behind `| ssh`) leaves the dump's cursor idle until the daemon closes it.
      throw new ToonDBError('CURSOR_NOT_FOUND', `the dump to ${target.name} stopped: its reader took no bytes for longer than the ` +
        `daemon keeps an idle cursor (cursorIdleMsMax, ${client.serverInfo.limits.cursorIdleMsMax} ms); dump to a file first, then copy that`, { cause: error });
    }
    throw writeError(target.name, error);
  }
}

async function dumpTo(client: IpcClient, writeBytes: (bytes: Buffer) => Promise<void>, progress: Progress): Promise<number> {
  const codec = new MessageCodec();
  const write = (message: object) => writeBytes(codec.encode(message));
  await write({ format: DUMP_FORMAT, version: DUMP_VERSION, createdAt: new Date().toISOString(), server: client.serverInfo.server });
  let count = 0;
  let bytes = 0;
  let batch: DumpEntry[] = [];
  let batchBytes = 0;
  // The scan's own batches (no batchSize: they grow, within the daemon's scanBatchItemsMax).
  for await (const [key, value, expiresAtMs] of client.scan(Buffer.alloc(0), { withExpiry: true })) {
    batch.push(typeof expiresAtMs === 'number' ? [key, value, expiresAtMs] : [key, value]);
    batchBytes += key.length + value.length;
    if (batch.length >= DUMP_BATCH_ITEMS || batchBytes >= DUMP_BATCH_BYTES) {
      await write({ entries: batch, crc32: entriesCrc(batch) });
      count += batch.length;
      bytes += batchBytes;
      progress(count, bytes, false);
      batch = [];
      batchBytes = 0;
    }
  }
  if (batch.length > 0) await write({ entries: batch, crc32: entriesCrc(batch) });
  count += batch.length;
  bytes += batchBytes;
  await write({ end: true, count });
  progress(count, bytes, true);
  return count;
}

function corrupt(file: string, why: string): ToonDBError {
  return new ToonDBError('INVALID_ARGUMENT', `${file} is not a valid toondb dump: ${why}`);
}

function notADump(file: string, why: string): ToonDBError {
  return new ToonDBError('INVALID_ARGUMENT', `${file} is not a toondb dump: ${why}`);
}

/** The dump version and the header frame's length (prefix included) if `head`, the first
 * bytes of `file`, hold a whole dump header; null if more bytes are needed to tell. Throws
 * "not a toondb dump" as soon as the bytes cannot start one. */
function readHeader(head: Buffer, file: string, codec: MessageCodec): { version: number; bytes: number } | null {
  if (head.length < FRAME_HEADER_BYTES) return null;
  const length = head.readUInt32BE(0);
  const noHeader = () => notADump(file, 'it does not start with a dump header');
  if (length === 0 || length > DUMP_HEADER_BYTES_MAX) throw noHeader();
  if (head.length < FRAME_HEADER_BYTES + length) return null;
  let header: Record<string, unknown>;
  try {
    header = codec.decode(head.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length));
  } catch {
    throw noHeader();
  }
  if (header.format !== DUMP_FORMAT) throw noHeader();
  if (!DUMP_VERSIONS_READ.includes(header.version as number)) {
    const version = typeof header.version === 'number' ? header.version : JSON.stringify(String(header.version));
    throw new ToonDBError('INVALID_ARGUMENT', `${file} is a toondb dump of format version ${version}; this toondb reads versions ${DUMP_VERSIONS_READ.join(', ')}`);
  }
  return { version: header.version as number, bytes: FRAME_HEADER_BYTES + length };
}

/** What a load did: entries read from the file, of them those written to the daemon (counted
 * as each call that wrote them succeeds) and those not written because their expiry had
 * passed. */
export interface Loaded {
  count: number;
  written: number;
  expired: number;
  bytes: number;
}

/** Writes every entry of dump `file` into the daemon (see the header). */
export async function load(client: IpcClient, file: string, progress: Progress): Promise<Loaded> {
  const loaded: Loaded = { count: 0, written: 0, expired: 0, bytes: 0 };
  const name = loadSourceName(file);
  try {
    await loadFrom(client, file, name, loaded, progress);
  } catch (error) {
    const coded = toToonDBError(error);
    const where = loaded.written > 0 ? ` (${loaded.written} entries were written before it)` : ' (nothing was written)';
    const message = coded.message.includes(name) ? coded.message : `${name}: ${coded.message}`;
    throw new ToonDBError(coded.code, message + where, { cause: error });
  }
  progress(loaded.count, loaded.bytes, true);
  return loaded;
}

/** What messages call a load's source: the FILE argument, or `stdin` for `-`. */
export function loadSourceName(file: string): string {
  return file === STDIO_NAME ? 'stdin' : file;
}

async function loadFrom(client: IpcClient, source: string, file: string, loaded: Loaded, progress: Progress): Promise<void> {
  const codec = new MessageCodec();
  const decoder = new FrameDecoder();
  let version = 0;
  let head: Buffer = Buffer.alloc(0);
  let trailer: number | null = null;
  for await (const chunk of readFile(source, file)) {
    let bytes: Buffer = chunk;
    if (version === 0) {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const header = readHeader(head, file, codec);
      if (header === null) continue;
      version = header.version;
      bytes = head.subarray(header.bytes);
    }
    let bodies: Buffer[];
    try {
      bodies = decoder.push(bytes);
    } catch (error) {
      // A length prefix no frame of a dump has: damage, or bytes after the trailer (the frames
      // a chunk completes are only seen once it is decoded whole, so the trailer may be among them).
      const why = toToonDBError(error).message;
      throw corrupt(file, trailer !== null ? `bytes after the trailer (${why})` : `a bad frame after ${loaded.count} entries, or bytes after the trailer (${why})`);
    }
    for (const body of bodies) {
      const message = codec.decode(body);
      if (trailer !== null) {
        throw corrupt(file, 'data after the trailer');
      } else if (message.end === true) {
        trailer = Number(message.count);
      } else if (Array.isArray(message.entries)) {
        const entries = checkedEntries(message.entries, version, file, loaded.count);
        // Version 1 batches carry no checksum; one that does is checked whatever the header
        // says, so a header damaged to say 1 does not switch checking off.
        const checked = version >= 2 || message.crc32 !== undefined;
        if (checked && message.crc32 !== entriesCrc(entries)) throw corrupt(file, `a batch fails its checksum after ${loaded.count} entries`);
        await putAll(client, entries, loaded, file);
        loaded.count += entries.length;
        for (const [k, v] of entries) loaded.bytes += k.length + v.length;
        progress(loaded.count, loaded.bytes, false);
      } else {
        throw corrupt(file, 'unexpected frame');
      }
    }
  }
  if (version === 0) throw notADump(file, head.length === 0 ? 'it is empty' : `${head.length} bytes, too short for a dump header`);
  if (trailer === null) throw corrupt(file, `truncated after ${loaded.count} entries (no trailer)`);
  // Part of a frame after the trailer (a file with bytes appended, or two dumps run together).
  if (decoder.bufferedBytes > 0) throw corrupt(file, `${decoder.bufferedBytes} bytes after the trailer`);
  if (trailer !== loaded.count) throw corrupt(file, `trailer says ${trailer} entries, read ${loaded.count}`);
}

/** The chunks of `source` (stdin for `-`); one that cannot be read is a coded error naming it
 * as `file`. */
async function* readFile(source: string, file: string): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of source === STDIO_NAME ? process.stdin : createReadStream(source)) yield chunk as Buffer;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === undefined) throw error;
    throw new ToonDBError('INVALID_ARGUMENT', `cannot read ${file}: ${code}`);
  }
}

/** A batch's entries, each checked to be a pair (any version) or a triple (version 3). */
function checkedEntries(entries: unknown[], version: number, file: string, before: number): DumpEntry[] {
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    // An expiry another writer stored as uint 64 decodes as a bigint: taken as the same number.
    if (Array.isArray(entry) && entry.length === 3 && typeof entry[2] === 'bigint' && entry[2] <= BigInt(Number.MAX_SAFE_INTEGER)) entry[2] = Number(entry[2]);
    const fits = Array.isArray(entry) && Buffer.isBuffer(entry[0]) && Buffer.isBuffer(entry[1])
      && (entry.length === 2 || (version >= 3 && entry.length === 3 && Number.isSafeInteger(entry[2]) && entry[2] >= 0));
    if (!fits) throw corrupt(file, `entry ${before + i + 1} is not a [key, value] or [key, value, expiresAtMs] entry`);
  }
  return entries as DumpEntry[];
}

/** Writes a batch of the file (its entries follow the `loaded.count` read before it): keys
 * without TTL in putBatch calls, keys with one in puts with what is left of it; counts in
 * `loaded` what was written and what had expired. An entry the daemon's limits refuse is
 * named by its number in the file, before anything of the batch is sent. */
async function putAll(client: IpcClient, entries: DumpEntry[], loaded: Loaded, file: string): Promise<void> {
  checkFits(client, entries, loaded.count, file);
  const plain = entries.filter((entry): entry is [Buffer, Buffer] => entry.length === 2);
  await putBatches(client, plain, loaded);
  if (plain.length === entries.length) return;
  const expiring = entries.filter((entry): entry is [Buffer, Buffer, number] => entry.length === 3);
  // In groups, each given what is left of its TTLs as it is sent: a put carries a TTL, not an
  // instant, so a key's expiry moves later by the time its put waits behind the others of its
  // group (20-40 ms behind a thousand, in review; ~1 ms behind TTL_PUTS_AT_ONCE).
  for (let from = 0; from < expiring.length; from += TTL_PUTS_AT_ONCE) {
    const nowMs = Date.now();
    const group = expiring.slice(from, from + TTL_PUTS_AT_ONCE);
    const live = group.filter((entry) => entry[2] > nowMs);
    loaded.expired += group.length - live.length;
    const outcomes = await Promise.allSettled(live.map(([key, value, expiresAtMs]) => client.put(key, value, { ttlSeconds: (expiresAtMs - nowMs) / 1000 })));
    loaded.written += outcomes.filter((outcome) => outcome.status === 'fulfilled').length;
    const failed = outcomes.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }
}

/** Refuses, naming its number in the file, an entry whose key or value passes the daemon's
 * limits (it would be refused inside a putBatch, by its index there). */
function checkFits(client: IpcClient, entries: readonly DumpEntry[], before: number, file: string): void {
  const { keyBytesMax, valueBytesMax } = client.serverInfo.limits;
  for (let i = 0; i < entries.length; i++) {
    const [key, value] = entries[i];
    if (key.length > keyBytesMax) {
      throw new ToonDBError('KEY_TOO_LARGE', `${file}: entry ${before + i + 1} has a key of ${key.length} bytes, over the daemon's limit of ${keyBytesMax}`);
    }
    if (value.length > valueBytesMax) {
      throw new ToonDBError('VALUE_TOO_LARGE', `${file}: entry ${before + i + 1} has a value of ${value.length} bytes, over the daemon's limit of ${valueBytesMax}`);
    }
  }
}

/** putBatch calls within the daemon's batch limits (items and bytes), whatever the file's
 * batches were written with; each one counted in `loaded.written` once it succeeded. */
async function putBatches(client: IpcClient, entries: [Buffer, Buffer][], loaded: Loaded): Promise<void> {
  const { batchItemsMax, batchBytesMax } = client.serverInfo.limits;
  const write = async (batch: [Buffer, Buffer][]): Promise<void> => {
    await client.putBatch(batch);
    loaded.written += batch.length;
  };
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < entries.length; i++) {
    const entryBytes = entries[i][0].length + entries[i][1].length;
    if (i > start && (i - start >= batchItemsMax || bytes + entryBytes > batchBytesMax)) {
      await write(entries.slice(start, i));
      start = i;
      bytes = 0;
    }
    bytes += entryBytes;
  }
  if (start < entries.length) await write(entries.slice(start));
}

/** A progress reporter: a redrawn bar on a terminal, silence otherwise. */
export function progressReporter(verb: string, stream: NodeJS.WriteStream = process.stderr): Progress & { interrupted(): void } {
  if (!stream.isTTY) return Object.assign(() => undefined, { interrupted: () => undefined });
  let lastDrawMs = 0;
  let lineOpen = false;
  const report: Progress = (entries, bytes, done) => {
    const now = Date.now();
    if (!done && now - lastDrawMs < 100) return;
    lastDrawMs = now;
    const spinner = '|/-\\'[Math.floor(now / 100) % 4];
    stream.write(`\r${done ? '✔' : spinner} ${verb} ${entries.toLocaleString()} keys, ${(bytes / 1048576).toFixed(1)} MiB${done ? '\n' : ''}`);
    lineOpen = !done;
  };
  // A failure's line must not be printed onto the progress line.
  return Object.assign(report, { interrupted: () => { if (lineOpen) stream.write('\n'); lineOpen = false; } });
}
