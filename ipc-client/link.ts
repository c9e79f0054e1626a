/**
 * Link: the client's current connection to the daemon, and the reconnect that replaces it.
 *
 * Responsibility: hand each call a live Connection. While the current one is open, that is the
 * one (no promise and no await on the way: a property read and a check). Once it has ended (the
 * daemon restarted, or cut the connection), the next call connects again (connect + hello,
 * bounded by connectTimeoutMs), and every call made meanwhile waits for that one attempt; if it
 * fails, they fail with its error (UNAVAILABLE, TIMEOUT, ACCESS_DENIED, ...) and the next call
 * tries again. Nothing reconnects in the background: no timers and no retry loop, so an idle
 * client stays idle and a daemon that is down costs one connect attempt per call.
 *
 * Invariants:
 * - At most one connect attempt runs at a time.
 * - Requests in flight when a connection ends are settled by that connection (UNKNOWN_RESULT if
 *   sent, CONNECTION_CLOSED if not) and never re-sent on the next: the daemon may have applied
 *   them.
 * - What lives on a connection dies with it: transactions and scan cursors keep the connection
 *   that opened them (`live()`), so their later calls fail with CONNECTION_CLOSED instead of
 *   reaching a new connection, where their ids mean nothing.
 * - With `reconnect` off, or after close(), an ended connection stays the current one, so every
 *   call fails with CONNECTION_CLOSED. A connect attempt in flight at close() is closed when it
 *   lands, and its waiting calls fail with CONNECTION_CLOSED.
 * - `ended` is reported once: with the reason when a connection ends and reconnect is off, with
 *   null at close() otherwise.
 */

import { ToonDBError } from '../protocol/errors.js';
import { openConnection, type ResolvedConnectOptions } from './connect.js';
import type { Connection, RequestMessage } from './connection.js';
import type { LateResult, ResultMap } from './pending.js';
import type { ServerInfo } from './results.js';

/** What the owner (IpcClient) hears about the link. */
export interface LinkEvents {
  /** The current connection ended; the next call reconnects. */
  disconnected(reason: ToonDBError): void;
  /** A new connection completed its hello and is now the current one. */
  reconnected(info: ServerInfo): void;
  /** The link is finished for good: null after close(), the reason when reconnect is off. */
  ended(reason: ToonDBError | null): void;
}

export interface Opened {
  connection: Connection;
  info: ServerInfo;
}

export class Link {
  #connection!: Connection;
  #info!: ServerInfo;
  #connecting: Promise<Connection> | null = null;
  #closing: Promise<void> | null = null;
  #endReported = false;

  constructor(first: Opened, private readonly options: ResolvedConnectOptions, private readonly events: LinkEvents) {
    this.#adopt(first);
  }

  /** The daemon's hello reply on the current connection. */
  get info(): ServerInfo {
    return this.#info;
  }

  /** True after close(), or once the connection ended with reconnect off. */
  get closed(): boolean {
    return this.#closing !== null || (!this.options.reconnect && this.#connection.closed);
  }

  /** True while the current connection is open. */
  get connected(): boolean {
    return !this.#connection.closed;
  }

  /** Sends on the current connection, reconnecting first if it has ended (see the header). */
  request<T = unknown>(message: RequestMessage, map?: ResultMap<T>, onLateResult?: LateResult): Promise<T> {
    const connection = this.#connection;
    if (!connection.closed || !this.#mayReconnect()) return connection.request(message, map, onLateResult);
    return this.live().then((live) => live.request(message, map, onLateResult));
  }

  /** The connection to bind something to (a transaction, a cursor): the current one while it
   * is open (or when the link may not reconnect), otherwise the one a reconnect opens. */
  live(): Promise<Connection> {
    const now = this.liveNow();
    return now !== null ? Promise.resolve(now) : (this.#connecting ??= this.#reconnect());
  }

  /** `live()` when it needs no reconnect, at once (so a request bound to it goes out in call
   * order); null when a reconnect is due. */
  liveNow(): Connection | null {
    const connection = this.#connection;
    return !connection.closed || !this.#mayReconnect() ? connection : null;
  }

  /** Closes the current connection gracefully (see Connection.close) and any that a reconnect
   * in flight opens; idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const connecting = this.#connecting;
    await this.#connection.close();
    if (connecting !== null) await connecting.catch(() => undefined);
    this.#reportEnd(null);
  }

  #mayReconnect(): boolean {
    return this.options.reconnect && this.#closing === null;
  }

  async #reconnect(): Promise<Connection> {
    try {
      const opened = await openConnection(this.options);
      if (this.#closing !== null) {
        await opened.connection.close();
        throw new ToonDBError('CONNECTION_CLOSED', 'the client was closed while it reconnected');
      }
      this.#adopt(opened);
      this.events.reconnected(opened.info);
      return opened.connection;
    } finally {
      this.#connecting = null;
    }
  }

  #adopt(opened: Opened): void {
    this.#connection = opened.connection;
    this.#info = opened.info;
    opened.connection.onClose = (reason) => {
      // Closed by close(), or ended while close() waited for its replies: close() reports the
      // end itself, with null.
      if (reason === null || this.#closing !== null) return;
      if (this.#mayReconnect()) this.events.disconnected(reason);
      else this.#reportEnd(reason);
    };
  }

  #reportEnd(reason: ToonDBError | null): void {
    if (this.#endReported) return;
    this.#endReported = true;
    this.events.ended(reason);
  }
}
