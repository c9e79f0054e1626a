/**
 * Wire results -> API values.
 *
 * Responsibility: check the shape of each reply the client relies on and convert it to the
 * public types: 64-bit ids, timestamps and sequence numbers become bigint whatever integer
 * width the daemon used, values are checked to be Buffers (the connection already copied them
 * out of the socket chunk), the hello limits become a complete
 * ServerLimits. A reply of the wrong shape fails its call with PROTOCOL_ERROR instead of
 * surfacing as a TypeError somewhere in the caller.
 */

import { ToonDBError } from '../protocol/errors.js';
import { DEFAULT_SERVER_LIMITS, type ServerLimits } from '../protocol/limits.js';
import type { StatsResult } from '../protocol/messages.js';
import { ReadScanBatch } from '../protocol/simple-replies.js';
import { ListedEntries, PackedEntries, type BatchEntries } from './batch-entries.js';
import type { ScanEntry } from './scan.js';

/** What the daemon said about itself in its hello reply. */
export interface ServerInfo {
  /** Protocol version spoken. */
  protocol: number;
  /** Daemon version. */
  server: string;
  connectionId: number;
  /** The limits this daemon enforces; the client checks requests against them locally. */
  limits: Readonly<ServerLimits>;
}

export interface CheckpointInfo {
  lsn: bigint;
  durationMs: number;
}

export interface PingInfo {
  latencyMs: number;
  version: string;
}

export interface ScanBatch {
  cursor: number;
  /** `[key, value]`, or `[key, value, expiresAtMs | null]` for a scan opened `withExpiry`. */
  entries: BatchEntries;
  done: boolean;
}

function malformed(op: string, what: string): ToonDBError {
  return new ToonDBError('PROTOCOL_ERROR', `malformed ${op} reply from the toondb daemon: ${what}`);
}

function record(value: unknown, op: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    throw malformed(op, 'expected a map');
  }
  return value as Record<string, unknown>;
}

export function toBigInt(value: unknown, op: string, field: string): bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt(value);
  throw malformed(op, `${field} is not an integer`);
}

function toNumber(value: unknown, op: string, field: string): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  throw malformed(op, `${field} is not a number`);
}

/** A value as the connection decoded it: already a copy of its own (connection.ts). */
function toBytes(value: unknown, op: string, field: string): Buffer {
  if (!Buffer.isBuffer(value)) throw malformed(op, `${field} is not bin`);
  return value;
}

export function parseHello(value: unknown): ServerInfo {
  const result = record(value, 'hello');
  const limitsIn = record(result.limits ?? {}, 'hello');
  const limits: ServerLimits = { ...DEFAULT_SERVER_LIMITS };
  for (const name of Object.keys(DEFAULT_SERVER_LIMITS) as (keyof ServerLimits)[]) {
    const announced = limitsIn[name];
    if (announced === undefined || announced === null) continue; // an older daemon: keep the default
    const number = toNumber(announced, 'hello', `limits.${name}`);
    if (!Number.isSafeInteger(number) || number < 1) throw malformed('hello', `limits.${name} is not a positive integer`);
    limits[name] = number;
  }
  return {
    protocol: toNumber(result.protocol, 'hello', 'protocol'),
    server: typeof result.server === 'string' ? result.server : 'unknown',
    connectionId: toNumber(result.connectionId ?? 0, 'hello', 'connectionId'),
    limits: Object.freeze(limits),
  };
}

export function parseValue(value: unknown, op: string): Buffer | null {
  return value === null || value === undefined ? null : toBytes(value, op, 'value');
}

export function parseValues(value: unknown, op: string, count: number): (Buffer | null)[] {
  if (!Array.isArray(value) || value.length !== count) throw malformed(op, `expected an array of ${count} values`);
  return value.map((item) => parseValue(item, op));
}

export function parseBoolean(value: unknown, op: string): boolean {
  if (typeof value !== 'boolean') throw malformed(op, 'expected a bool');
  return value;
}

export function parseScanBatch(value: unknown, op: string): ScanBatch {
  // Read by the simple reader: its entries are checked pairs, unpacked as they are consumed.
  if (value instanceof ReadScanBatch) return checkedCursor(value.cursor, new PackedEntries(value.entries), value.done, op);
  const result = record(value, op);
  if (!Array.isArray(result.entries)) throw malformed(op, 'entries is not an array');
  // The entries as the connection decoded them, checked in place (their values are already copies).
  const entries = result.entries as ScanEntry[];
  for (let index = 0; index < entries.length; index++) {
    const entry: unknown = entries[index];
    if (!Array.isArray(entry) || (entry.length !== 2 && entry.length !== 3)) {
      throw malformed(op, `entries[${index}] is not a [key, value] pair or a [key, value, expiresAtMs] triple`);
    }
    toBytes(entry[0], op, `entries[${index}][0]`);
    toBytes(entry[1], op, `entries[${index}][1]`);
    if (entry.length === 3 && entry[2] !== null && !Number.isSafeInteger(entry[2])) {
      throw malformed(op, `entries[${index}][2] is neither an expiry in ms nor null`);
    }
  }
  return checkedCursor(toNumber(result.cursor ?? 0, op, 'cursor'), new ListedEntries(entries), result.done === true, op);
}

function checkedCursor(cursor: number, entries: BatchEntries, done: boolean, op: string): ScanBatch {
  if (!done && (!Number.isSafeInteger(cursor) || cursor < 1)) throw malformed(op, 'an unfinished scan needs a cursor');
  return { cursor, entries, done };
}

export function parseSegments(value: unknown, op: string): Buffer[] {
  if (!Array.isArray(value)) throw malformed(op, 'expected an array of segments');
  return value.map((item, index) => toBytes(item, op, `[${index}]`));
}

/** One page of a `paged` listPath: its child segments, and where the listing goes on (null
 * when complete). A daemon that does not page answers the whole listing as an array. */
export function parseListPathPage(value: unknown): { children: Buffer[]; next: Buffer | null } {
  if (Array.isArray(value)) return { children: parseSegments(value, 'listPath'), next: null };
  const page = record(value, 'listPath');
  const next = page.next === null || page.next === undefined ? null : toBytes(page.next, 'listPath', 'next');
  return { children: parseSegments(page.children, 'listPath'), next };
}

export function parseTxnId(value: unknown): bigint {
  return toBigInt(record(value, 'begin').txn, 'begin', 'txn');
}

export function parseCommitTs(value: unknown): bigint {
  return toBigInt(record(value, 'commit').commitTs, 'commit', 'commitTs');
}

export function parseCheckpoint(value: unknown): CheckpointInfo {
  const result = record(value, 'checkpoint');
  return { lsn: toBigInt(result.lsn, 'checkpoint', 'lsn'), durationMs: toNumber(result.durationMs, 'checkpoint', 'durationMs') };
}

export function parsePing(value: unknown, latencyMs: number): PingInfo {
  const result = record(value, 'ping');
  return { latencyMs, version: typeof result.version === 'string' ? result.version : 'unknown' };
}

/** Stats pass through as sent, except the 64-bit fields, which become bigint. */
export function parseStats(value: unknown): StatsResult {
  const result = record(value, 'stats');
  const engine = record(result.engine, 'stats');
  const checkpoint = record(result.checkpoint ?? { last: null }, 'stats');
  const last = checkpoint.last === null || checkpoint.last === undefined ? null : record(checkpoint.last, 'stats');
  return {
    ...(result as unknown as StatsResult),
    engine: { ...(engine as unknown as StatsResult['engine']), seqno: toBigInt(engine.seqno ?? 0, 'stats', 'engine.seqno') },
    checkpoint: {
      last: last === null ? null : {
        atMs: toNumber(last.atMs, 'stats', 'checkpoint.last.atMs'),
        lsn: toBigInt(last.lsn, 'stats', 'checkpoint.last.lsn'),
        durationMs: toNumber(last.durationMs, 'stats', 'checkpoint.last.durationMs'),
      },
    },
  };
}
