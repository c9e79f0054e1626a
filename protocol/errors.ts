/**
 * The one registry of toondb error codes, and the error classes built on it.
 *
 * Responsibility: every failure that crosses a boundary (engine -> daemon, daemon -> wire,
 * client -> caller) carries one of these stable string codes. The Rust engine returns the same
 * strings (engine/src/core/error.rs); a test keeps that list, this registry and PROTOCOL.md in
 * agreement. Codes are never renamed or reused; new ones are appended.
 *
 * Invariants:
 * - Each code appears once; `retryable` says whether the same request may succeed if simply
 *   sent again (after a backoff), never whether it is safe to resend a write.
 * - `ToonDBError.code` is always a registry code (unknown codes from a newer daemon map to
 *   `INTERNAL` with the original code kept in the message).
 */

export interface ErrorSpec {
  /** One line describing when this error is raised. */
  readonly description: string;
  /** True if sending the same request again later may succeed. */
  readonly retryable: boolean;
}

export const ERROR_CODES = {
  INVALID_ARGUMENT: { description: 'A request field is missing, of the wrong type, or out of range.', retryable: false },
  KEY_TOO_LARGE: { description: 'A key is longer than the keyBytesMax limit.', retryable: false },
  VALUE_TOO_LARGE: { description: 'A value is longer than the valueBytesMax limit.', retryable: false },
  BATCH_TOO_LARGE: { description: 'A batch request has more items or bytes than batchItemsMax / batchBytesMax, or a getBatch / listPath reply would carry more than batchBytesMax bytes.', retryable: false },
  FRAME_TOO_LARGE: { description: 'A frame length prefix exceeds frameBytesMax; the connection is closed.', retryable: false },
  PROTOCOL_ERROR: { description: 'A frame could not be decoded or is not a valid message; the connection is closed.', retryable: false },
  UNKNOWN_OP: { description: 'The request names an operation this daemon does not know.', retryable: false },
  HANDSHAKE_REQUIRED: { description: 'The first request on a connection must be hello.', retryable: false },
  VERSION_MISMATCH: { description: 'Client and daemon speak incompatible protocol versions.', retryable: false },
  TXN_CONFLICT: { description: 'The transaction conflicted with a concurrent commit; nothing of it was applied.', retryable: true },
  NOT_IN_TRANSACTION: { description: 'The transaction id is unknown, already committed or aborted, or owned by another connection.', retryable: false },
  TXN_TOO_LARGE: { description: 'The transaction held more than txnBytesMax bytes of writes and reads; it has been aborted.', retryable: false },
  TXN_WRITE_FAILED: { description: 'The transaction applied a number of write requests other than its commit\'s `writes` (one failed, or more or fewer were sent), so nothing was committed; the transaction has been aborted.', retryable: false },
  TXN_EXPIRED: { description: 'The transaction was idle longer than txnIdleMsMax and has been aborted.', retryable: false },
  CURSOR_NOT_FOUND: { description: 'The scan cursor is unknown, exhausted, closed, or expired.', retryable: false },
  LIMIT_EXCEEDED: { description: 'A limit on open transactions or cursors (per connection, or txnsDaemonMax / cursorsDaemonMax across all connections, of which peers other than the daemon\'s uid and root may hold all but the last 64, at most half) is reached, or a transaction\'s write or read would pass txnBytesDaemonMax, the bytes all open transactions may hold together; that transaction has been aborted.', retryable: true },
  TOO_MANY_CONNECTIONS: { description: 'The daemon already serves connectionsMax clients (lowered to fit its open-files limit: `stats` `connections.max`), or the peer is neither the daemon\'s uid nor root and other users already hold all but the slots kept for those, or its uid holds connectionsPerUidMax.', retryable: true },
  ACCESS_DENIED: { description: 'The peer uid/gid is not on the daemon allow-list; or, answering a shutdown, the peer is neither the uid the daemon runs as nor root.', retryable: false },
  TIMEOUT: { description: 'No reply arrived within the request timeout; the request may or may not have been applied.', retryable: true },
  CONNECTION_CLOSED: { description: 'The connection is closed; the request was never sent.', retryable: true },
  UNKNOWN_RESULT: { description: 'The connection dropped after the request was sent; it may or may not have been applied.', retryable: false },
  UNAVAILABLE: { description: 'The daemon cannot be reached at the socket path.', retryable: true },
  SHUTTING_DOWN: { description: 'The daemon is shutting down and accepts no new requests.', retryable: true },
  DISK_FULL: { description: 'The storage device is full; writes fail until space is freed, reads keep working.', retryable: true },
  IO_ERROR: { description: 'The storage engine hit an I/O error.', retryable: false },
  STORAGE_FAILED: { description: 'A journal write or fsync, or a flush or compaction of the engine, failed; the engine refuses further writes until restarted, and the message names the cause.', retryable: false },
  CORRUPTION: { description: 'On-disk data failed verification; the daemon refuses to serve it.', retryable: false },
  LOCKED: { description: 'Another daemon owns the data directory.', retryable: false },
  ALREADY_RUNNING: { description: 'A live daemon already listens on the socket path.', retryable: false },
  SOCKET_PATH_TOO_LONG: { description: 'The socket path is longer than the 103-byte portable limit.', retryable: false },
  INTERNAL: { description: 'A bug: an invariant was broken. The message says which.', retryable: false },
  SERVER_NOT_TRUSTED: { description: 'The socket is owned by a user the client does not trust to be the daemon (see serverUid); nothing was sent.', retryable: false },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

export const ALL_ERROR_CODES = Object.freeze(Object.keys(ERROR_CODES)) as readonly ErrorCode[];

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, value);
}

/** The wire shape of an error inside a response (see PROTOCOL.md). */
export interface WireError {
  code: string;
  message: string;
}

/** Every error toondb throws at a caller. `code` is stable; `message` is for humans. */
export class ToonDBError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ToonDBError';
    this.code = code;
  }

  get retryable(): boolean {
    return ERROR_CODES[this.code].retryable;
  }

  toWire(): WireError {
    return { code: this.code, message: this.message };
  }
}

/** Thrown by `commit()` when serialization failed; nothing of the transaction was applied. */
export class TransactionConflictError extends ToonDBError {
  constructor(message = 'transaction conflicted with a concurrent commit and was not applied') {
    super('TXN_CONFLICT', message);
    this.name = 'TransactionConflictError';
  }
}

/** Builds the right error class for a code received from the wire or the engine. */
export function errorFromWire(wire: { code?: unknown; message?: unknown }): ToonDBError {
  const message = typeof wire.message === 'string' ? wire.message : 'no message';
  if (!isErrorCode(wire.code)) {
    // Never String() decoded data: a map with a `toString` key of nil makes it throw.
    const shown = typeof wire.code === 'string' ? JSON.stringify(wire.code.slice(0, 64)) : `of type ${typeof wire.code}`;
    return new ToonDBError('INTERNAL', `unknown error code ${shown}: ${message}`);
  }
  if (wire.code === 'TXN_CONFLICT') return new TransactionConflictError(message);
  return new ToonDBError(wire.code, message);
}

/** Wraps anything thrown into a ToonDBError, keeping a registry code if it already has one. */
export function toToonDBError(error: unknown): ToonDBError {
  if (error instanceof ToonDBError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (isErrorCode(code)) return errorFromWire({ code, message });
  return new ToonDBError('INTERNAL', message, { cause: error });
}
