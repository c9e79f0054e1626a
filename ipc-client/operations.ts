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
  checkKeyLength, toBound, toCount, toEntryBatch, toKey, toKeyBatch, toTtl, toValue, type Bytes, type WireBytes,
} from './bytes.js';
import type { ResultMap } from './pending.js';
import { parseBoolean, parseListPathPage, parseValue, parseValues } from './results.js';
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

function withTtl(request: DataRequest, options: PutOptions | undefined, limits: ServerLimits): DataRequest {
  const ttlSeconds = toTtl(options?.ttlSeconds, limits);
  if (ttlSeconds !== undefined) request.ttlSeconds = ttlSeconds;
  return request;
}

function scanFields(fields: Fields, options: ScanOptions | null | undefined, limits: ServerLimits): Fields {
  if (options === null || options === undefined) return fields;
  if (options.reverse !== undefined) {
    if (typeof options.reverse !== 'boolean') throw new ToonDBError('INVALID_ARGUMENT', 'reverse must be a boolean');
    if (options.reverse) fields.reverse = true;
  }
  const limit = toCount(options.limit, 'limit', 0, Number.MAX_SAFE_INTEGER);
  if (limit !== undefined && limit > 0) fields.limit = limit;
  const batchSize = toCount(options.batchSize, 'batchSize', 1, limits.scanBatchItemsMax);
  if (batchSize !== undefined) fields.batchSize = batchSize;
  if (options.withExpiry !== undefined) {
    if (typeof options.withExpiry !== 'boolean') throw new ToonDBError('INVALID_ARGUMENT', 'withExpiry must be a boolean');
    if (options.withExpiry) fields.withExpiry = true;
  }
  return fields;
}

function pathKey(path: PathLike, limits: ServerLimits): Buffer {
  return checkKeyLength(encodePath(path), limits, 'encoded path');
}

/** How a single-key call names its key: as bytes (get/put/...) or as a path (getPath/...). */
const BYTES_KEY = 0;
const PATH_KEY = 1;
type KeyForm = typeof BYTES_KEY | typeof PATH_KEY;

function wireKeyOf(key: Bytes | PathLike, keyForm: KeyForm, limits: ServerLimits): WireBytes {
  return keyForm === PATH_KEY ? pathKey(key as PathLike, limits) : toKey(key as Bytes, limits);
}

/** A data request as sent: its op first, then its fields (a Transaction adds `txn`). */
export interface DataRequest {
  op: DataOp;
  [field: string]: unknown;
}

// Each single-request method builds its request inside try (an argument error becomes a
// rejected promise and sends nothing) and returns `send(request, mapper)`, which applies the
// mapper as the reply settles: not an async function (a coroutine frame and an await per
// call), nor `.then(mapper)` (a second promise and a microtask hop per call).
const toVoid = (): void => undefined;
const toValueResult = (result: unknown): Buffer | null => parseValue(result, 'get');
const toExistsResult = (result: unknown): boolean => parseBoolean(result, 'exists');

/*
 * Every key and value given as a Uint8Array is referenced, not copied, until its request is
 * written to the socket (a microtask after the call, later while the write queue is full): the
 * caller must not change its bytes before the call settles (bytes.ts), or the changed bytes are
 * what is sent. Strings are immutable and need no such care.
 */
export abstract class DataOperations {
  /** Sends one data request and resolves with its result through `map` (the raw result
   * without one). Never throws synchronously. */
  protected abstract send<T = unknown>(request: DataRequest, map?: ResultMap<T>): Promise<T>;
  /** The limits the daemon announced (client-side checks use them). */
  protected abstract serverLimits(): ServerLimits;
  /** Where one scan cursor of this object opens and pulls its batches (one per iteration). */
  protected abstract scanSource(): ScanSource;

  /** The rejected promise of a call of `op` whose arguments were refused (nothing was sent);
   * a Transaction also remembers a refused write, which its commit must not pass over. */
  protected refuse(_op: DataOp, error: unknown): Promise<never> {
    return Promise.reject(error);
  }

  /** The value of `key`, or null if absent. An empty value is an empty Buffer, not null. */
  get(key: Bytes): Promise<Buffer | null> {
    return this.sendKeyed('get', key, BYTES_KEY, toValueResult);
  }

  exists(key: Bytes): Promise<boolean> {
    return this.sendKeyed('exists', key, BYTES_KEY, toExistsResult);
  }

  /** Writes `value` under `key`. A Uint8Array key or value is sent as it is when the request is
   * written, not copied here: do not change its bytes until the returned promise settles. */
  put(key: Bytes, value: Bytes, options?: PutOptions): Promise<void> {
    return this.sendPut(key, BYTES_KEY, value, options);
  }

  /** Deletes `key`; resolves also when it was absent. */
  delete(key: Bytes): Promise<void> {
    return this.sendKeyed('delete', key, BYTES_KEY, toVoid);
  }

  /** Values of `keys` in order, null where absent; read from one consistent snapshot. */
  getBatch(keys: readonly Bytes[]): Promise<(Buffer | null)[]> {
    try {
      const wireKeys = toKeyBatch(keys, this.serverLimits());
      return this.send({ op: 'getBatch', keys: wireKeys }, (result) => parseValues(result, 'getBatch', wireKeys.length));
    } catch (error) {
      return this.refuse('getBatch', error);
    }
  }

  /** Writes every entry atomically (all or nothing). Uint8Array keys and values are not copied:
   * do not change their bytes until the returned promise settles. */
  putBatch(entries: readonly (readonly [Bytes, Bytes])[], options?: PutOptions): Promise<void> {
    try {
      const limits = this.serverLimits();
      return this.send(withTtl({ op: 'putBatch', entries: toEntryBatch(entries, limits) }, options, limits), toVoid);
    } catch (error) {
      return this.refuse('putBatch', error);
    }
  }

  /** Deletes every key atomically. */
  deleteBatch(keys: readonly Bytes[]): Promise<void> {
    try {
      return this.send({ op: 'deleteBatch', keys: toKeyBatch(keys, this.serverLimits()) }, toVoid);
    } catch (error) {
      return this.refuse('deleteBatch', error);
    }
  }

  getPath(path: PathLike): Promise<Buffer | null> {
    return this.sendKeyed('get', path, PATH_KEY, toValueResult);
  }

  putPath(path: PathLike, value: Bytes, options?: PutOptions): Promise<void> {
    return this.sendPut(path, PATH_KEY, value, options);
  }

  deletePath(path: PathLike): Promise<void> {
    return this.sendKeyed('delete', path, PATH_KEY, toVoid);
  }

  /** Names of the children directly under `path` ('' or [] for the top level), in key order.
   * Keys that are not path keys (binary keys whose bytes there are not a UTF-8 name) are left
   * out. Read in pages (the daemon examines at most 16384 keys per request), each its own
   * request: a long listing, or one over many keys that are not names, never holds the daemon
   * for long in one piece. Pages of one call may read different snapshots (a transaction's
   * read its own). */
  async listPath(path: PathLike, options?: ListPathOptions | null): Promise<string[]> {
    const prefix = checkKeyLength(pathPrefix(path), this.serverLimits(), 'encoded path prefix');
    const limit = toCount(options?.limit, 'limit', 0, Number.MAX_SAFE_INTEGER) ?? 0;
    const segments: Buffer[] = [];
    for (let resume: Buffer | null = null; ;) {
      const request: DataRequest = { op: 'listPath', prefix, paged: true };
      if (limit > 0) request.limit = limit - segments.length;
      if (resume !== null) request.resume = resume;
      const page = parseListPathPage(await this.send(request));
      segments.push(...page.children);
      if (page.next === null || (limit > 0 && segments.length >= limit)) break;
      // Each page goes on past where it started; a daemon whose did not would loop us forever.
      if (resume !== null && Buffer.compare(page.next, resume) <= 0) {
        throw new ToonDBError('PROTOCOL_ERROR', 'listPath answered a page whose next does not go past its resume');
      }
      resume = page.next;
    }
    return segments.map((segment) => {
      try {
        return decodeSegment(segment);
      } catch (error) {
        // The daemon lists names only (PROTOCOL.md listPath): this is its fault, not the call's.
        throw new ToonDBError('PROTOCOL_ERROR', `listPath answered with a child that is not a path segment: ${(error as Error).message}`);
      }
    });
  }

  /** Every entry whose key starts with `prefix` (empty = all keys), streamed in batches. */
  scan(prefix: Bytes, options?: ScanOptions | null): ScanIterable {
    return new ScanIterable(() => this.scanSource(), () => {
      const limits = this.serverLimits();
      return scanFields({ prefix: toBound(prefix, limits, 'prefix') }, options, limits);
    });
  }

  /** Every entry with start <= key < end; a null or undefined bound is open. */
  scanRange(start: Bytes | null | undefined, end: Bytes | null | undefined, options?: ScanOptions | null): ScanIterable {
    return new ScanIterable(() => this.scanSource(), () => {
      const limits = this.serverLimits();
      const fields: Fields = {};
      if (start !== null && start !== undefined) fields.start = toBound(start, limits, 'start');
      if (end !== null && end !== undefined) fields.end = toBound(end, limits, 'end');
      return scanFields(fields, options, limits);
    });
  }

  /** A get, exists or delete of `key` (bytes, or a path when `keyForm` is PATH_KEY). */
  private sendKeyed<T>(op: 'get' | 'exists' | 'delete', key: Bytes | PathLike, keyForm: KeyForm,
    toResult: ResultMap<T>): Promise<T> {
    try {
      return this.send({ op, key: wireKeyOf(key, keyForm, this.serverLimits()) }, toResult);
    } catch (error) {
      return this.refuse(op, error);
    }
  }

  /** A put of `key` (bytes, or a path when `keyForm` is PATH_KEY). */
  private sendPut(key: Bytes | PathLike, keyForm: KeyForm, value: Bytes, options: PutOptions | undefined): Promise<void> {
    try {
      const limits = this.serverLimits();
      const wireKey = wireKeyOf(key, keyForm, limits);
      return this.send(withTtl({ op: 'put', key: wireKey, value: toValue(value, limits) }, options, limits), toVoid);
    } catch (error) {
      return this.refuse('put', error);
    }
  }
}
