/**
 * `toondb dump FILE` / `toondb load FILE`: a portable snapshot of every key and value.
 *
 * File format (version 2), a sequence of frames in the wire protocol's framing (4-byte
 * big-endian length + one MessagePack map), so any language with MessagePack can read it:
 *   1. header  { format: 'toondb-dump', version: 2, createdAt: ISO-8601 string, server: string }
 *   2. batches { entries: [[key bin, value bin], ...], crc32: uint }   (zero or more, in key
 *      order; crc32 (zlib's) runs over each entry as keyLength u32 BE, key, valueLength u32 BE,
 *      value, in order)
 *   3. trailer { end: true, count: <entries written> }
 * `load` also reads version 1 (the same without crc32). A batch whose checksum does not match
 * is refused before anything of it is written; a file without the trailer is truncated. Either
 * way `load` says how many entries it had written (the batches before the damage).
 *
 * Consistency: the dump is one scan cursor, which reads one snapshot: concurrent writes never
 * produce a mix of versions. TTLs are not carried (keys are written back without expiry).
 * A dump is written to a temporary file, fsynced and renamed over FILE only when complete, so
 * a failed dump never destroys an earlier one. Memory: both directions stream one batch at a
 * time.
 */

import { createReadStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import type { IpcClient } from '../ipc-client/index.js';
import { MessageCodec } from '../protocol/codec.js';
import { toToonDBError, ToonDBError } from '../protocol/errors.js';
import { FrameDecoder } from '../protocol/frame.js';

export const DUMP_FORMAT = 'toondb-dump';
export const DUMP_VERSION = 2;
const DUMP_VERSIONS_READ = [1, 2];
const DUMP_BATCH_ITEMS = 1_000;
const DUMP_BATCH_BYTES = 4 * 1024 * 1024;

export type Progress = (entries: number, bytes: number, done: boolean) => void;

/** crc32 of a batch's entries as the header describes. */
function entriesCrc(entries: readonly [Uint8Array, Uint8Array][]): number {
  let crc = 0;
  const length = Buffer.alloc(4);
  for (const [key, value] of entries) {
    length.writeUInt32BE(key.length);
    crc = crc32(key, crc32(length, crc));
    length.writeUInt32BE(value.length);
    crc = crc32(value, crc32(length, crc));
  }
  return crc;
}

/** Dumps every key and value to `file` (see the header); returns how many entries. */
export async function dump(client: IpcClient, file: string, progress: Progress): Promise<number> {
  const temporary = `${file}.tmp-${process.pid}`;
  const out = await open(temporary, 'w', 0o600).catch((error: NodeJS.ErrnoException) => {
    throw new ToonDBError('INVALID_ARGUMENT', `cannot write ${file}: ${error.code ?? error.message}`);
  });
  try {
    const count = await dumpTo(client, (bytes) => out.writeFile(bytes), progress);
    await out.sync();
    await out.close();
    await rename(temporary, file);
    return count;
  } catch (error) {
    await out.close().catch(() => undefined);
    await rm(temporary, { force: true });
    const code = (error as NodeJS.ErrnoException).code;
    throw typeof code === 'string' && !(error instanceof ToonDBError) ? new ToonDBError('INVALID_ARGUMENT', `cannot write ${file}: ${code}`) : error;
  }
}

async function dumpTo(client: IpcClient, writeBytes: (bytes: Buffer) => Promise<void>, progress: Progress): Promise<number> {
  const codec = new MessageCodec();
  const write = (message: object) => writeBytes(codec.encode(message));
  await write({ format: DUMP_FORMAT, version: DUMP_VERSION, createdAt: new Date().toISOString(), server: client.serverInfo.server });
  let count = 0;
  let bytes = 0;
  let batch: [Buffer, Buffer][] = [];
  let batchBytes = 0;
  for await (const [key, value] of client.scan(Buffer.alloc(0), { batchSize: DUMP_BATCH_ITEMS })) {
    batch.push([key, value]);
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

/** Writes every entry of dump `file` into the daemon (see the header); returns how many. */
export async function load(client: IpcClient, file: string, progress: Progress): Promise<number> {
  const loaded = { count: 0, bytes: 0 };
  try {
    await loadFrom(client, file, loaded, progress);
  } catch (error) {
    const coded = toToonDBError(error);
    const where = loaded.count > 0 ? ` (${loaded.count} entries before it were written)` : ' (nothing was written)';
    const message = coded.message.includes(file) ? coded.message : `${file}: ${coded.message}`;
    throw new ToonDBError(coded.code, message + where, { cause: error });
  }
  progress(loaded.count, loaded.bytes, true);
  return loaded.count;
}

async function loadFrom(client: IpcClient, file: string, loaded: { count: number; bytes: number }, progress: Progress): Promise<void> {
  const codec = new MessageCodec();
  const decoder = new FrameDecoder();
  let version = 0;
  let trailer: number | null = null;
  for await (const chunk of readFile(file)) {
    for (const body of decoder.push(chunk)) {
      const message = codec.decode(body);
      if (version === 0) {
        if (message.format !== DUMP_FORMAT || !DUMP_VERSIONS_READ.includes(message.version as number)) throw corrupt(file, 'unknown header');
        version = message.version as number;
      } else if (message.end === true) {
        trailer = Number(message.count);
      } else if (trailer !== null) {
        throw corrupt(file, 'data after the trailer');
      } else if (Array.isArray(message.entries)) {
        const entries = message.entries as [Buffer, Buffer][];
        if (version >= 2 && message.crc32 !== entriesCrc(entries)) throw corrupt(file, `a batch fails its checksum after ${loaded.count} entries`);
        await putAll(client, entries);
        loaded.count += entries.length;
        for (const [k, v] of entries) loaded.bytes += k.length + v.length;
        progress(loaded.count, loaded.bytes, false);
      } else {
        throw corrupt(file, 'unexpected frame');
      }
    }
  }
  if (version === 0) throw corrupt(file, 'empty file');
  if (trailer === null) throw corrupt(file, `truncated after ${loaded.count} entries (no trailer)`);
  if (trailer !== loaded.count) throw corrupt(file, `trailer says ${trailer} entries, read ${loaded.count}`);
}

/** The file's chunks; a file that cannot be read is a coded error naming it. */
async function* readFile(file: string): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of createReadStream(file)) yield chunk as Buffer;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === undefined) throw error;
    throw new ToonDBError('INVALID_ARGUMENT', `cannot read ${file}: ${code}`);
  }
}

/** putBatch calls within the daemon's batch limits (items and bytes), whatever the file's
 * batches were written with. */
async function putAll(client: IpcClient, entries: [Buffer, Buffer][]): Promise<void> {
  const { batchItemsMax, batchBytesMax } = client.serverInfo.limits;
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < entries.length; i++) {
    const entryBytes = entries[i][0].length + entries[i][1].length;
    if (i > start && (i - start >= batchItemsMax || bytes + entryBytes > batchBytesMax)) {
      await client.putBatch(entries.slice(start, i));
      start = i;
      bytes = 0;
    }
    bytes += entryBytes;
  }
  if (start < entries.length) await client.putBatch(entries.slice(start));
}

/** A progress reporter: a redrawn bar on a terminal, silence otherwise. */
export function progressReporter(verb: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY) return () => undefined;
  let lastDrawMs = 0;
  return (entries, bytes, done) => {
    const now = Date.now();
    if (!done && now - lastDrawMs < 100) return;
    lastDrawMs = now;
    const spinner = '|/-\\'[Math.floor(now / 100) % 4];
    stream.write(`\r${done ? '✔' : spinner} ${verb} ${entries.toLocaleString()} keys, ${(bytes / 1048576).toFixed(1)} MiB${done ? '\n' : ''}`);
  };
}
