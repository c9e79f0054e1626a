/**
 * DataOperations: the key/value, batch, path and scan calls, written once for both the client
 * (auto-commit) and a Transaction (every request carries `txn`).
 *
 * Responsibility: validate and normalise arguments against the daemon's announced limits, build
 * the request fields, convert the replies. How a request is sent (and whether a `txn` is bound
 * to it) is the subclass's `send`.
 *
 * Invariants:
 * - Argument checks run synchronously before anything is sent; they surface as a rejected
 *   promise with the same code the daemon would use, and send nothing.
 * - Each method calls `send` synchronously (before its first await), so requests made in the
 *   same tick keep their call order on the wire and share one socket write.
 * - Absent optional fields are omitted from the request, not sent as nil.
 */

import { ToonDBError } from '../protocol/errors.js';
import type { ServerLimits } from '../protocol/limits.js';
import type { OpName } from '../protocol/messages.js';
import { decodeSegment, encodePath, pathPrefix } from '../protocol/paths.js';
import {
  checkKeyLength, toBound, toCount, toEntryBatch, toKey, toKeyBatch, toTtl, toValue, type Bytes,
} from './bytes.js';
import { parseBoolean, parseSegments, parseValue, parseValues } from './results.js';
import { ScanIterable, type ScanOptions, type ScanSource } from './scan.js';

/** A hierarchical name: 'users/alice/name' (split on '/') or ['users', 'alice', 'name']. */
export type PathLike = string | readonly string[];

export interface PutOptions {
  /** Seconds until the key reads as absent; fractions allowed, up to ttlSecondsMax. */
  ttlSeconds?: number;
}

export interface ListPathOptions {
  /** Most children returned; 0 or absent = all. */
  limit?: number;
}

/** Ops a DataOperations subclass may be asked to send. */
export type DataOp = Extract<OpName, 'get' | 'exists' | 'put' | 'delete' | 'getBatch' | 'putBatch' | 'deleteBatch' | 'scan' | 'listPath'>;

type Fields = Record<string, unknown>;

function withTtl(fields: Fields, options: PutOptions | undefined, limits: ServerLimits): Fields {
  const ttlSeconds = toTtl(options?.ttlSeconds, limits);
  if (ttlSeconds !== undefined) fields.ttlSeconds = ttlSeconds;
  return fields;
}

function scanFields(fields: Fields, options: ScanOptions, limits: ServerLimits): Fields {
  if (options.reverse !== undefined) {
    if (typeof options.reverse !== 'boolean') throw new ToonDBError('INVALID_ARGUMENT', 'reverse must be a boolean');
    if (options.reverse) fields.reverse = true;
  }
  const limit = toCount(options.limit, 'limit', 0, Number.MAX_SAFE_INTEGER);
  if (limit !== undefined && limit > 0) fields.limit = limit;
  const batchSize = toCount(options.batchSize, 'batchSize', 1, limits.scanBatchItemsMax);
  if (batchSize !== undefined) fields.batchSize = batchSize;
  return fields;
}

function pathKey(path: PathLike, limits: ServerLimits): Buffer {
  return checkKeyLength(encodePath(path), limits, 'encoded path');
}

export abstract class DataOperations {
  /** Sends one data request and resolves with its raw result. */
  protected abstract send(op: DataOp, fields: Fields): Promise<unknown>;
  /** The limits the daemon announced (client-side checks use them). */
  protected abstract serverLimits(): ServerLimits;
  /** Where this object's scans open and pull their cursors. */
  protected abstract scanSource(): ScanSource;

  /** The value of `key`, or null if absent. An empty value is an empty Buffer, not null. */
  async get(key: Bytes): Promise<Buffer | null> {
    return parseValue(await this.send('get', { key: toKey(key, this.serverLimits()) }), 'get');
  }

  async exists(key: Bytes): Promise<boolean> {
    return parseBoolean(await this.send('exists', { key: toKey(key, this.serverLimits()) }), 'exists');
  }

  async put(key: Bytes, value: Bytes, options?: PutOptions): Promise<void> {
    const limits = this.serverLimits();
    await this.send('put', withTtl({ key: toKey(key, limits), value: toValue(value, limits) }, options, limits));
  }

  /** Deletes `key`; resolves also when it was absent. */
  async delete(key: Bytes): Promise<void> {
    await this.send('delete', { key: toKey(key, this.serverLimits()) });
  }

  /** Values of `keys` in order, null where absent; read from one consistent snapshot. */
  async getBatch(keys: readonly Bytes[]): Promise<(Buffer | null)[]> {
    const wireKeys = toKeyBatch(keys, this.serverLimits());
    return parseValues(await this.send('getBatch', { keys: wireKeys }), 'getBatch', wireKeys.length);
  }

  /** Writes every entry atomically (all or nothing). */
  async putBatch(entries: readonly (readonly [Bytes, Bytes])[], options?: PutOptions): Promise<void> {
    const limits = this.serverLimits();
    await this.send('putBatch', withTtl({ entries: toEntryBatch(entries, limits) }, options, limits));
  }

  /** Deletes every key atomically. */
  async deleteBatch(keys: readonly Bytes[]): Promise<void> {
    await this.send('deleteBatch', { keys: toKeyBatch(keys, this.serverLimits()) });
  }

  async getPath(path: PathLike): Promise<Buffer | null> {
    return parseValue(await this.send('get', { key: pathKey(path, this.serverLimits()) }), 'get');
  }

  async putPath(path: PathLike, value: Bytes, options?: PutOptions): Promise<void> {
    const limits = this.serverLimits();
    await this.send('put', withTtl({ key: pathKey(path, limits), value: toValue(value, limits) }, options, limits));
  }

  async deletePath(path: PathLike): Promise<void> {
    await this.send('delete', { key: pathKey(path, this.serverLimits()) });
  }

  /** Names of the children directly under `path` ('' or [] for the top level), in key order. */
  async listPath(path: PathLike, options: ListPathOptions = {}): Promise<string[]> {
    const fields: Fields = { prefix: checkKeyLength(pathPrefix(path), this.serverLimits(), 'encoded path prefix') };
    const limit = toCount(options.limit, 'limit', 0, Number.MAX_SAFE_INTEGER);
    if (limit !== undefined && limit > 0) fields.limit = limit;
    const segments = parseSegments(await this.send('listPath', fields), 'listPath');
    return segments.map((segment) => decodeSegment(segment));
  }

  /** Every entry whose key starts with `prefix` (empty = all keys), streamed in batches. */
  scan(prefix: Bytes, options: ScanOptions = {}): ScanIterable {
    return new ScanIterable(this.scanSource(), () => {
      const limits = this.serverLimits();
      return scanFields({ prefix: toBound(prefix, limits, 'prefix') }, options, limits);
    });
  }

  /** Every entry with start <= key < end; a null or undefined bound is open. */
  scanRange(start: Bytes | null | undefined, end: Bytes | null | undefined, options: ScanOptions = {}): ScanIterable {
    return new ScanIterable(this.scanSource(), () => {
      const limits = this.serverLimits();
      const fields: Fields = {};
      if (start !== null && start !== undefined) fields.start = toBound(start, limits, 'start');
      if (end !== null && end !== undefined) fields.end = toBound(end, limits, 'end');
      return scanFields(fields, options, limits);
    });
  }
}
