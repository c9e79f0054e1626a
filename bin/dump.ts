/**
 * `toondb dump FILE` / `toondb load FILE`: a portable snapshot of every key and value.
 *
 * File format (version 1), a sequence of frames in the wire protocol's framing (4-byte
 * big-endian length + one MessagePack map), so any language with MessagePack can read it:
 *   1. header  { format: 'toondb-dump', version: 1, createdAt: ISO-8601 string, server: string }
 *   2. batches { entries: [[key bin, value bin], ...] }   (zero or more, in key order)
 *   3. trailer { end: true, count: <entries written> }
 * A file without the trailer is truncated: `load` reports it (entries before the damage are
 * already written) and checks the trailer count against what it read.
 *
 * Consistency: the dump is one scan cursor, which reads one snapshot: concurrent writes never
 * produce a mix of versions. TTLs are not carried (keys are written back without expiry).
 * Memory: both directions stream one batch at a time.
 */

import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import type { IpcClient } from '../ipc-client/index.js';
import { MessageCodec } from '../protocol/codec.js';
import { ToonDBError } from '../protocol/errors.js';
import { FrameDecoder } from '../protocol/frame.js';

export const DUMP_FORMAT = 'toondb-dump';
export const DUMP_VERSION = 1;
const DUMP_BATCH_ITEMS = 1_000;
const DUMP_BATCH_BYTES = 4 * 1024 * 1024;

export type Progress = (entries: number, bytes: number, done: boolean) => void;

export async function dump(client: IpcClient, file: string, progress: Progress): Promise<number> {
  const codec = new MessageCodec();
  const out = createWriteStream(file, { mode: 0o600 });
  const write = async (message: object) => {
    if (!out.write(codec.encode(message))) await once(out, 'drain');
  };
  await write({ format: DUMP_FORMAT, version: DUMP_VERSION, createdAt: new Date().toISOString(), server: client.serverInfo.server });
  let count = 0;
  let bytes = 0;
  let batch: [Buffer, Buffer][] = [];
  let batchBytes = 0;
  for await (const [key, value] of client.scan(Buffer.alloc(0), { batchSize: DUMP_BATCH_ITEMS })) {
    batch.push([key, value]);
    batchBytes += key.length + value.length;
    if (batch.length >= DUMP_BATCH_ITEMS || batchBytes >= DUMP_BATCH_BYTES) {
      await write({ entries: batch });
      count += batch.length;
      bytes += batchBytes;
      progress(count, bytes, false);
      batch = [];
      batchBytes = 0;
    }
  }
  if (batch.length > 0) await write({ entries: batch });
  count += batch.length;
  bytes += batchBytes;
  await write({ end: true, count });
  out.end();
  await once(out, 'finish');
  progress(count, bytes, true);
  return count;
}

function corrupt(file: string, why: string): ToonDBError {
  return new ToonDBError('INVALID_ARGUMENT', `${file} is not a valid toondb dump: ${why}`);
}

export async function load(client: IpcClient, file: string, progress: Progress): Promise<number> {
  const codec = new MessageCodec();
  const decoder = new FrameDecoder();
  let header = false;
  let trailer: number | null = null;
  let count = 0;
  let bytes = 0;
  const limits = client.serverInfo.limits;
  for await (const chunk of createReadStream(file)) {
    for (const body of decoder.push(chunk as Buffer)) {
      const message = codec.decode(body);
      if (!header) {
        if (message.format !== DUMP_FORMAT || message.version !== DUMP_VERSION) throw corrupt(file, 'unknown header');
        header = true;
      } else if (message.end === true) {
        trailer = Number(message.count);
      } else if (trailer !== null) {
        throw corrupt(file, 'data after the trailer');
      } else if (Array.isArray(message.entries)) {
        const entries = message.entries as [Buffer, Buffer][];
        // Respect the daemon's batch limits even if the file was written with larger batches.
        for (let i = 0; i < entries.length; i += limits.batchItemsMax) {
          await client.putBatch(entries.slice(i, i + limits.batchItemsMax));
        }
        count += entries.length;
        for (const [k, v] of entries) bytes += k.length + v.length;
        progress(count, bytes, false);
      } else {
        throw corrupt(file, 'unexpected frame');
      }
    }
  }
  if (!header) throw corrupt(file, 'empty file');
  if (trailer === null) throw corrupt(file, `truncated after ${count} entries (no trailer)`);
  if (trailer !== count) throw corrupt(file, `trailer says ${trailer} entries, read ${count}`);
  progress(count, bytes, true);
  return count;
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
