/**
 * Request validation: a decoded message body -> a typed `Request` (messages.ts).
 *
 * Responsibility: the single gate between untrusted wire data and the daemon's handlers. Every
 * field a handler reads has been type-checked and bounded here, so handlers never re-check.
 *
 * Invariants:
 * - A body without a valid `id` (integer 1..REQUEST_ID_MAX) cannot be answered: PROTOCOL_ERROR.
 *   Every other failure is a ToonDBError the daemon answers under `requestIdOf(body)`.
 * - Keys and values come out as Node Buffers (bin as is — a view, no copy; str as its UTF-8
 *   bytes); transaction ids as bigint; every other integer as a safe-integer number, whichever
 *   MessagePack integer width the peer chose (a 64-bit width decodes to bigint and is narrowed).
 * - Sizes are checked against the limits passed in, never against constants, so the daemon can
 *   reload them: key -> KEY_TOO_LARGE, value -> VALUE_TOO_LARGE, batch -> BATCH_TOO_LARGE.
 * - An optional field may be absent or nil; unknown fields are ignored (forward compatibility).
 * - Messages name the op and field and the expected type, e.g. "put.ttlSeconds must be ...".
 */

import { ToonDBError } from './errors.js';
import { PackedArray } from './packed-array.js';
import { CLIENT_NAME_BYTES_MAX, LIST_PATH_NEXT_BYTES_PAST_KEY, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN, TXN_ID_CHOSEN_MAX, type ServerLimits } from './limits.js';
import {
  REQUEST_ID_MAX, isOpName,
  type Isolation, type OpName, type Request, type RequestOf, type WireBytes,
} from './messages.js';

type Body = Record<string, unknown>;

const TXN_ID_MAX = 0xffff_ffff_ffff_ffffn;

/** Returns the request id of `body` if it is a valid one (1..REQUEST_ID_MAX), else undefined. */
export function requestIdOf(body: Body): number | undefined {
  const id = body.id;
  const value = typeof id === 'bigint' && id >= 1n && id <= BigInt(REQUEST_ID_MAX) ? Number(id) : id;
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= REQUEST_ID_MAX
    ? value
    : undefined;
}

/** A value as the wire names it (MessagePack's types, not JavaScript's). */
function describe(value: unknown): string {
  if (value === undefined) return 'nothing (the field is absent)';
  if (value === null) return 'nil';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value instanceof Uint8Array) return 'bin';
  if (typeof value === 'object') return 'a map';
  if (typeof value === 'number' && !Number.isInteger(value)) return `float ${value}`;
  // Past 2^53 a double is whole but was not sent as an integer (msgpackr decodes int 64 as bigint).
  if (typeof value === 'number' && !Number.isSafeInteger(value)) return `float ${value}`;
  if (typeof value === 'number' || typeof value === 'bigint') return `integer ${value}`;
  return typeof value;
}

/** Reads and checks the fields of one request body. */
class Fields {
  constructor(readonly body: Body, readonly op: OpName, readonly limits: ServerLimits) {}

  fail(name: string, expected: string, value: unknown = this.body[name]): never {
    throw new ToonDBError('INVALID_ARGUMENT', `${this.op}.${name} must be ${expected}, got ${describe(value)}`);
  }

  has(name: string): boolean {
    const value = this.body[name];
    return value !== undefined && value !== null;
  }

  /** Bytes from bin (as a Buffer view) or str (UTF-8). `what` names the field in messages. */
  bytesOf(value: unknown, what: string): Buffer {
    if (value instanceof Uint8Array) {
      return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    }
    if (typeof value === 'string') return Buffer.from(value, 'utf8');
    return this.fail(what, 'bin or str', value);
  }

  /** A non-empty key of at most keyBytesMax bytes. */
  keyOf(value: unknown, what: string): Buffer {
    const key = this.bytesOf(value, what);
    if (key.length === 0) throw new ToonDBError('INVALID_ARGUMENT', `${this.op}.${what} must not be an empty key`);
    return this.checkKeyLength(key, what);
  }

  /** A key bound or prefix: like a key, but may be empty (an empty prefix matches everything). */
  boundOf(value: unknown, what: string): Buffer {
    return this.checkKeyLength(this.bytesOf(value, what), what);
  }

  checkKeyLength(key: Buffer, what: string): Buffer {
    if (key.length > this.limits.keyBytesMax) {
      throw new ToonDBError('KEY_TOO_LARGE', `${this.op}.${what} is ${key.length} bytes, over the limit of ${this.limits.keyBytesMax}`);
    }
    return key;
  }

  valueOf(value: unknown, what: string): Buffer {
    const bytes = this.bytesOf(value, what);
    if (bytes.length > this.limits.valueBytesMax) {
      throw new ToonDBError('VALUE_TOO_LARGE', `${this.op}.${what} is ${bytes.length} bytes, over the limit of ${this.limits.valueBytesMax}`);
    }
    return bytes;
  }

  key(name: string): Buffer {
    return this.keyOf(this.body[name], name);
  }

  optionalBound(name: string): Buffer | undefined {
    return this.has(name) ? this.boundOf(this.body[name], name) : undefined;
  }

  /** An integer in min..max (number or bigint on the wire), as a number. */
  integer(name: string, min: number, max: number): number {
    const raw = this.body[name];
    const value = typeof raw === 'bigint' && raw >= BigInt(min) && raw <= BigInt(max) ? Number(raw) : raw;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      return this.fail(name, `an integer in ${min}..${max}`);
    }
    return value;
  }

  optionalInteger(name: string, min: number, max: number): number | undefined {
    return this.has(name) ? this.integer(name, min, max) : undefined;
  }

  /** A transaction id: a positive 64-bit integer, as bigint. */
  txnId(name: string): bigint {
    const raw = this.body[name];
    const value = typeof raw === 'number' && Number.isSafeInteger(raw) ? BigInt(raw) : raw;
    if (typeof value !== 'bigint' || value < 1n || value > TXN_ID_MAX) {
      return this.fail(name, 'a positive 64-bit integer transaction id');
    }
    return value;
  }

  optionalTxn(): bigint | undefined {
    return this.has('txn') ? this.txnId('txn') : undefined;
  }

  optionalBoolean(name: string): boolean | undefined {
    if (!this.has(name)) return undefined;
    const value = this.body[name];
    return typeof value === 'boolean' ? value : this.fail(name, 'a boolean');
  }

  /** Seconds to live: a positive finite number (fractions allowed) up to ttlSecondsMax. */
  optionalTtl(): number | undefined {
    if (!this.has('ttlSeconds')) return undefined;
    const raw = this.body.ttlSeconds;
    const value = typeof raw === 'bigint' && raw > 0n && raw <= BigInt(this.limits.ttlSecondsMax) ? Number(raw) : raw;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > this.limits.ttlSecondsMax) {
      return this.fail('ttlSeconds', `a number of seconds in (0, ${this.limits.ttlSecondsMax}]`);
    }
    return value;
  }

  /** An array of at most batchItemsMax items (the item count is checked before any item). */
  batch(name: string, value: unknown = this.body[name]): unknown[] {
    if (!Array.isArray(value)) return this.fail(name, 'an array');
    if (value.length > this.limits.batchItemsMax) {
      throw new ToonDBError('BATCH_TOO_LARGE', `${this.op}.${name} has ${value.length} items, over the limit of ${this.limits.batchItemsMax}`);
    }
    return value;
  }

  /** True for a Buffer that keyOf would return as it is: lets batch loops skip building an
   * item name (`keys[7]`) per item, which only an error needs. */
  isPlainKey(value: unknown): value is Buffer {
    return Buffer.isBuffer(value) && value.length > 0 && value.length <= this.limits.keyBytesMax;
  }

  /** True for a Buffer that valueOf would return as it is (see isPlainKey). */
  isPlainValue(value: unknown): value is Buffer {
    return Buffer.isBuffer(value) && value.length <= this.limits.valueBytesMax;
  }

  checkBatchBytes(name: string, bytes: number): void {
    if (bytes > this.limits.batchBytesMax) {
      throw new ToonDBError('BATCH_TOO_LARGE', `${this.op}.${name} carries more than ${this.limits.batchBytesMax} bytes`);
    }
  }
}

/** The keys of a getBatch or deleteBatch: as they came when they came packed and pass the
 * checks below as they are (no Buffer per key); otherwise checked one by one, which is also
 * how a packed list that fails gets its coded error, the same as for an array. */
function batchKeys(f: Fields): WireBytes[] | PackedArray {
  const packed = f.body.keys;
  if (packed instanceof PackedArray && packed.count <= f.limits.batchItemsMax) {
    const bytes = packed.binBytesWithin(1, f.limits.keyBytesMax);
    if (bytes >= 0 && bytes <= f.limits.batchBytesMax) return packed;
  }
  const items = packed instanceof PackedArray ? f.batch('keys', packed.toValues()) : f.batch('keys');
  const keys = new Array<Buffer>(items.length);
  let bytes = 0;
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    keys[i] = f.isPlainKey(item) ? item : f.keyOf(item, `keys[${i}]`);
    bytes += keys[i].length;
    f.checkBatchBytes('keys', bytes);
  }
  return keys;
}

function batchEntries(f: Fields): [WireBytes, WireBytes][] {
  const items = f.batch('entries');
  const entries = new Array<[Buffer, Buffer]>(items.length);
  let bytes = 0;
  for (let i = 0; i < items.length; i++) {
    const pair = items[i];
    if (!Array.isArray(pair) || pair.length !== 2) f.fail(`entries[${i}]`, 'a [key, value] array', pair);
    const key = f.isPlainKey(pair[0]) ? pair[0] : f.keyOf(pair[0], `entries[${i}][0]`);
    const value = f.isPlainValue(pair[1]) ? pair[1] : f.valueOf(pair[1], `entries[${i}][1]`);
    entries[i] = [key, value];
    bytes += key.length + value.length;
    f.checkBatchBytes('entries', bytes);
  }
  return entries;
}

function parseHello(id: number, f: Fields): RequestOf<'hello'> {
  if (!f.has('protocol')) return f.fail('protocol', 'a protocol version (uint)');
  // Any value but a version the daemon serves is a version mismatch (PROTOCOL.md Handshake),
  // including ones no version could be ("2", 2.5, 2^64).
  const given = f.body.protocol;
  // Any integer width is accepted (PROTOCOL.md Integers): a uint 64 arrives as a bigint.
  const protocol = typeof given === 'bigint' && given >= 0n && given <= BigInt(REQUEST_ID_MAX) ? Number(given) : given;
  if (typeof protocol !== 'number' || !Number.isInteger(protocol) || protocol < 0 || protocol > REQUEST_ID_MAX) {
    throw new ToonDBError('VERSION_MISMATCH', `hello.protocol must be a protocol version this daemon speaks (${PROTOCOL_VERSION_MIN}..${PROTOCOL_VERSION}), got ${describe(given)}`);
  }
  if (!f.has('client')) return { id, op: 'hello', protocol };
  const client = f.body.client;
  if (typeof client !== 'string' || Buffer.byteLength(client, 'utf8') > CLIENT_NAME_BYTES_MAX) {
    return f.fail('client', `a str of at most ${CLIENT_NAME_BYTES_MAX} bytes`);
  }
  return { id, op: 'hello', protocol, client };
}

function parseScan(id: number, f: Fields): RequestOf<'scan'> {
  const prefix = f.optionalBound('prefix');
  const start = f.optionalBound('start');
  const end = f.optionalBound('end');
  if (prefix !== undefined && (start !== undefined || end !== undefined)) {
    throw new ToonDBError('INVALID_ARGUMENT', 'scan takes either prefix or start/end, not both');
  }
  return withOptional<RequestOf<'scan'>>({ id, op: 'scan' }, {
    txn: f.optionalTxn(),
    prefix, start, end,
    reverse: f.optionalBoolean('reverse'),
    withExpiry: f.optionalBoolean('withExpiry'),
    limit: f.optionalInteger('limit', 0, Number.MAX_SAFE_INTEGER),
    batchSize: f.optionalInteger('batchSize', 1, f.limits.scanBatchItemsMax),
  });
}

function parseIsolation(f: Fields): Isolation | undefined {
  if (!f.has('isolation')) return undefined;
  const value = f.body.isolation;
  if (value === 'serializable' || value === 'snapshot') return value;
  return f.fail('isolation', "'serializable' or 'snapshot'");
}

/** Adds the optional members only when present, so handlers can test `=== undefined`. Runs
 * once per request: a `for...in` over the literal allocates nothing (Object.entries made an
 * array per member, ~8 % of the daemon's JS time under durable PUT-256). */
function withOptional<T extends Request>(request: T, optional: Partial<T>): T {
  const target = request as unknown as Record<string, unknown>;
  const members = optional as Record<string, unknown>;
  for (const name in members) {
    const value = members[name];
    if (value !== undefined) target[name] = value;
  }
  return request;
}

type Parser = (id: number, f: Fields) => Request;

/** A listPath's `resume`: a previous page's `next`, which with the prefix names a key of at most
 * keyBytesMax + LIST_PATH_NEXT_BYTES_PAST_KEY bytes. */
function listPathResume(f: Fields): Buffer | undefined {
  if (!f.has('resume')) return undefined;
  const resume = f.bytesOf(f.body.resume, 'resume');
  const bytes = f.boundOf(f.body.prefix, 'prefix').length + resume.length;
  const max = f.limits.keyBytesMax + LIST_PATH_NEXT_BYTES_PAST_KEY;
  if (bytes > max) throw new ToonDBError('KEY_TOO_LARGE', `listPath.prefix and resume are ${bytes} bytes together, over the limit of ${max}`);
  return resume;
}

const PARSERS: { [Op in OpName]: Parser } = {
  hello: parseHello,
  ping: (id) => ({ id, op: 'ping' }),
  stats: (id) => ({ id, op: 'stats' }),
  checkpoint: (id) => ({ id, op: 'checkpoint' }),
  shutdown: (id) => ({ id, op: 'shutdown' }),
  get: (id, f) => withOptional<RequestOf<'get'>>({ id, op: 'get', key: f.key('key') }, { txn: f.optionalTxn() }),
  exists: (id, f) => withOptional<RequestOf<'exists'>>({ id, op: 'exists', key: f.key('key') }, { txn: f.optionalTxn() }),
  put: (id, f) => withOptional<RequestOf<'put'>>(
    { id, op: 'put', key: f.key('key'), value: f.valueOf(f.body.value, 'value') },
    { txn: f.optionalTxn(), ttlSeconds: f.optionalTtl() }),
  delete: (id, f) => withOptional<RequestOf<'delete'>>({ id, op: 'delete', key: f.key('key') }, { txn: f.optionalTxn() }),
  getBatch: (id, f) => withOptional<RequestOf<'getBatch'>>({ id, op: 'getBatch', keys: batchKeys(f) }, { txn: f.optionalTxn() }),
  deleteBatch: (id, f) => withOptional<RequestOf<'deleteBatch'>>({ id, op: 'deleteBatch', keys: batchKeys(f) }, { txn: f.optionalTxn() }),
  putBatch: (id, f) => withOptional<RequestOf<'putBatch'>>(
    { id, op: 'putBatch', entries: batchEntries(f) },
    { txn: f.optionalTxn(), ttlSeconds: f.optionalTtl() }),
  scan: parseScan,
  scanNext: (id, f) => ({ id, op: 'scanNext', cursor: f.integer('cursor', 1, Number.MAX_SAFE_INTEGER) }),
  scanClose: (id, f) => ({ id, op: 'scanClose', cursor: f.integer('cursor', 1, Number.MAX_SAFE_INTEGER) }),
  listPath: (id, f) => withOptional<RequestOf<'listPath'>>(
    { id, op: 'listPath', prefix: f.boundOf(f.body.prefix, 'prefix') },
    {
      txn: f.optionalTxn(),
      limit: f.optionalInteger('limit', 0, Number.MAX_SAFE_INTEGER),
      paged: f.optionalBoolean('paged'),
      resume: listPathResume(f),
    }),
  begin: (id, f) => withOptional<RequestOf<'begin'>>({ id, op: 'begin' }, {
    isolation: parseIsolation(f),
    txn: f.has('txn') ? BigInt(f.integer('txn', 1, TXN_ID_CHOSEN_MAX)) : undefined,
  }),
  commit: (id, f) => withOptional<RequestOf<'commit'>>({ id, op: 'commit', txn: f.txnId('txn') }, {
    writes: f.optionalInteger('writes', 0, Number.MAX_SAFE_INTEGER),
  }),
  abort: (id, f) => ({ id, op: 'abort', txn: f.txnId('txn') }),
};

/** The transaction a `commit` or `abort` body names, if its `txn` is a valid id whatever its
 * other fields: a commit refused for them still ends that transaction (PROTOCOL.md, commit). */
export function txnEndedBy(body: Body): bigint | undefined {
  if (body.op !== 'commit' && body.op !== 'abort') return undefined;
  const raw = body.txn;
  const value = typeof raw === 'number' && Number.isSafeInteger(raw) ? BigInt(raw) : raw;
  return typeof value === 'bigint' && value >= 1n && value <= TXN_ID_MAX ? value : undefined;
}

/**
 * Validates a decoded request body. Throws PROTOCOL_ERROR when the body has no valid id (no
 * reply is possible), otherwise UNKNOWN_OP / INVALID_ARGUMENT / KEY_TOO_LARGE /
 * VALUE_TOO_LARGE / BATCH_TOO_LARGE, to be answered under `requestIdOf(body)`.
 */
export function parseRequest(body: Body, limits: ServerLimits): Request {
  const id = requestIdOf(body);
  if (id === undefined) {
    throw new ToonDBError('PROTOCOL_ERROR', `request id must be an integer in 1..${REQUEST_ID_MAX}, got ${describe(body.id)}`);
  }
  const op = body.op;
  if (typeof op !== 'string') {
    throw new ToonDBError('INVALID_ARGUMENT', `request op must be a str, got ${describe(op)}`);
  }
  if (!isOpName(op)) throw new ToonDBError('UNKNOWN_OP', `unknown op "${op.slice(0, 64)}"`);
  return PARSERS[op](id, new Fields(body, op, limits));
}
