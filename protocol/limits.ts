/**
 * Every limit in toondb, in one place.
 *
 * Responsibility: name each bound the protocol, daemon, engine and client rely on, and assert
 * once, at load time, how the bounds relate (a maximal value must fit in a frame, a batch of
 * maximal keys must fit in a frame, ...). Nothing else in the code base may hard-code a limit.
 *
 * Invariants (checked by `assertLimits()` below, which runs on import; the relations between
 * the advertised limits, and the reply sizes they allow, are in limit-relations.ts):
 * - A single put of a maximal key and value fits in one frame, with room for the envelope.
 * - Every per-connection registry (transactions, cursors, in-flight requests) is bounded.
 * - The socket path limit is the smaller of Linux (108 incl. NUL) and macOS (104 incl. NUL).
 *
 * The daemon advertises the subset in `ServerLimits` in its `hello` reply, so a client (in any
 * language) can size its requests without guessing.
 */

const KiB = 1024;
const MiB = 1024 * KiB;

/** Protocol version spoken by this build. Bumped on any incompatible wire change, or when a
 * client needs to know that the daemon understands a field (2: `begin.txn`, `commit.writes`). */
export const PROTOCOL_VERSION = 2;

/** Oldest protocol version the daemon still serves (its clients use none of the later fields). */
export const PROTOCOL_VERSION_MIN = 1;

/** Bytes in the big-endian length prefix that precedes every frame body. */
export const FRAME_HEADER_BYTES = 4;

/** Largest frame body (after the length prefix) either side accepts. Larger frames are refused
 * from the header alone, before any byte of the body is buffered. */
export const FRAME_BYTES_MAX = 32 * MiB;

/** Largest key, in bytes. fjall accepts up to 64 KiB; we keep keys small enough that a batch of
 * them and their index entries stay cheap. */
export const KEY_BYTES_MAX = 16 * KiB;

/** Largest value, in bytes. */
export const VALUE_BYTES_MAX = 16 * MiB;

/** Bytes reserved in a frame for the envelope around a maximal key and value. */
export const ENVELOPE_BYTES_MAX = 4 * KiB;

/** Most items in one `getBatch` / `putBatch` / `deleteBatch`. */
export const BATCH_ITEMS_MAX = 10_000;

/** Most bytes (keys + values) one batch request may carry; a batch is applied atomically and
 * buffered whole in memory, so it is bounded separately from the frame. A getBatch or listPath
 * reply is bounded by it too (its values or names, each with 5 bytes of header): the engine
 * stops reading past it, so keys that repeat cannot make it build a reply of any size. */
export const BATCH_BYTES_MAX = 24 * MiB;

/** Requests one connection may have in flight at the daemon. Past it the daemon stops reading
 * that socket until replies drain (backpressure, not an error). */
export const IN_FLIGHT_PER_CONNECTION_MAX = 4096;

/** Requests of one connection handed to the engine in one call. A connection with more queued
 * runs them in several calls, so its first replies leave (and the client can send more) while
 * the rest execute: the client and daemon overlap instead of trading one huge batch in lockstep.
 * Daemon-internal tuning, not part of the wire contract. */
export const ENGINE_BATCH_REQUESTS_MAX = 64;

/** Keys (one per point request, one per item of a batch request) handed to the engine in one
 * call of plain reads, for the same reason: sixteen getBatch calls of 100 keys run as several
 * engine calls, two of them at a time (ENGINE_CALLS_PER_CONNECTION_MAX), not one 1600-key call
 * the client waits on as a whole. A single request is never split. */
export const ENGINE_READ_BATCH_KEYS_MAX = 256;

/** Keys handed to the engine in one call that may write. Each call costs cross-thread wake-ups,
 * and one engine write batch sorts its keys for the memtable, so writes take more per call:
 * putBatch of 100 at 16 in flight went from 172-186k to 190-218k keys/s going from 256 to 1024
 * (measured when a connection's writes ran one call at a time; a 1024-key call is ~3 ms of
 * engine time). Point writes stay bounded by ENGINE_BATCH_REQUESTS_MAX, which measured best
 * at 64. */
export const ENGINE_WRITE_BATCH_KEYS_MAX = 1024;

/** Keys of the largest call of plain writes the daemon commits on its JS thread (`writeNow`)
 * when nothing else of the connection runs, instead of handing it to the lane: a single put
 * then costs no cross-thread wake-ups (PUT at 1 in flight from 4 processes 16-17k -> 22-25k
 * ops/s). Larger calls go to the lane, which overlaps them with the JS thread's own work:
 * committing every call here took putBatch of 100 at 16 in flight from 283-305k to 227-250k
 * keys/s. Daemon-internal tuning. */
export const ENGINE_WRITE_NOW_KEYS_MAX = 8;

/** Engine calls one connection may have running at once on the libuv pool. Only calls made of
 * plain reads run side by side there (see daemon/runner.ts); calls that may write go to the
 * connection's ordered lane instead. */
export const ENGINE_CALLS_PER_CONNECTION_MAX = 2;

/** Ordered lanes the engine runs (engine/src/core/lanes.rs): threads that each run the calls
 * given to them in order, so a connection may have several calls that write in flight. A
 * connection always uses the same lane; the libuv pool keeps serving reads, fsyncs aside. */
export const ENGINE_LANES = 2;

/** Lane calls of at most this many ops do not wake their sleeping lane at once: the lanes
 * are woken once at the end of the event-loop turn that queued them (engine/index.ts
 * `executeOrdered`), so the single writes of many connections read in one turn share a wake-up.
 * Larger calls wake their lane at once, to overlap with the rest of the turn. Daemon-internal
 * tuning. */
export const LANE_WAKE_SHARED_OPS_MAX = 8;

/** Calls one connection may have queued or running on its lane: enough that the lane works on
 * the next call while the daemon sends the replies of the last. Bounds each lane's queue at
 * ENGINE_LANE_CALLS_PER_CONNECTION_MAX × CONNECTIONS_MAX calls. */
export const ENGINE_LANE_CALLS_PER_CONNECTION_MAX = 4;

/** Bytes of data (values, names, scan entries) one engine call returns before it ends early;
 * the daemon runs the rest of the call once those replies are read (`executeBounded`, lane
 * calls likewise: daemon/runner.ts runData). With
 * OUTPUT_PAUSE_BYTES it keeps a connection's replies bounded however many reads of large values
 * the client pipelines. Daemon-internal. */
export const ENGINE_CALL_OUTPUT_BYTES_MAX = 16 * MiB;

/** Unread reply bytes at which a connection gets no new engine work until its client has read
 * them all (backpressure: the requests wait, nothing fails). Daemon-internal. */
export const OUTPUT_PAUSE_BYTES = 8 * MiB;

/** Request bytes (frame bodies) one connection may have read and not yet answered before the
 * daemon stops reading it; it reads again below half. inFlightPerConnectionMax alone let a
 * client whose replies go unread (the daemon then starts no work) or that outpaces the engine
 * queue 4096 frames of up to 32 MiB each. Past frameBytesMax, so one frame always gets in.
 * Daemon-internal. */
export const REQUEST_BYTES_IN_FLIGHT_MAX = 64 * MiB;

/** Request bytes (frame bodies) all connections together may have read and not yet answered.
 * REQUEST_BYTES_IN_FLIGHT_MAX alone let 1024 connections hold 64 MiB each, 64 GiB in all: the
 * OOM killer, a crash for every client. A frame is admitted from its header, before its body is
 * read; one that does not fit stops its connection's reading until enough is answered, first
 * come first served (daemon/bytes-budget.ts): backpressure, nothing fails. 256 MiB is four
 * connections at their own bound at once, or eight maximal frames: enough that the engine
 * always has work queued, far below what a machine running the daemon has to spare. Stats:
 * `bytes.inFlight`. */
export const REQUEST_BYTES_IN_FLIGHT_DAEMON_MAX = 256 * MiB;

/** Reply bytes all connections together may hold: replies written and not yet read by their
 * clients, plus room reserved, before an engine call starts, for the largest replies it could
 * produce (`replyBytesMaxOf` per request, at most `engineCallReplyBytesMax`, ~58 MiB, for a
 * call the engine bounds: limit-relations.ts). OUTPUT_BUFFER_BYTES_MAX alone let 1024 connections that read
 * nothing hold 64 MiB each, 64 GiB in all. A call that does not fit waits, first come first
 * served (daemon/reply-budget.ts): backpressure, nothing fails; a client that leaves replies
 * unread while others wait is cut off after unreadRepliesMsMax. Replies to admin requests
 * (hello, ping, stats, ...) and errors found before any engine work never wait, so a saturated
 * daemon can still be asked what it is doing; they are counted once written. 1 GiB is about
 * seventeen maximal calls at once, more than two lanes and the pool run. Stats:
 * `bytes.replies`. */
export const REPLY_BYTES_DAEMON_MAX = 1024 * MiB;

/** Reply bytes the daemon buffers for one connection that does not read them. A connection
 * that has more unread when its next replies are ready is closed, as is one whose unread
 * replies stay at OUTPUT_PAUSE_BYTES or more for `unreadRepliesMsMax` while it reads none. */
export const OUTPUT_BUFFER_BYTES_MAX = 64 * MiB;

/** Connections the daemon serves at once; further ones are refused with `TOO_MANY_CONNECTIONS`.
 * A low open-files limit lowers it (daemon/descriptors.ts). */
export const CONNECTIONS_MAX = 1024;

/** Of `connectionsMax`, the slots only the daemon's own uid and root may take (at most half of
 * them): once other users' connections fill the rest, an operator can still connect to run
 * `toondb stats` or `toondbd stop` (daemon/admission.ts). */
export const OWNER_CONNECTIONS_RESERVED = 4;

/** Entries of `stats` `connections.byUid` at most: the uids holding the most connections, the
 * rest summed under "others". Keeps the reply's largest map well inside MESSAGE_MAP_ENTRIES_MAX
 * however many users connect (daemon/admission.ts). */
export const STATS_UIDS_MAX = 32;

/** Descriptors the daemon keeps out of the reach of client connections for everything but
 * sockets and the engine's cached table files: Node's own (stdio, epoll, eventfds, the
 * listening socket), the engine's journals, version file, data-dir lock and group-commit
 * journal descriptor (26 in all, measured right after start), and the files a flush or
 * compaction creates while it runs. A flush that cannot create its table ends fjall's worker,
 * which poisons the store: every write refused with STORAGE_FAILED until restart (seen under
 * `ulimit -n 128` with 103 idle connections and one client writing 16 MiB).
 * Measured: a load of 4M keys of 100 bytes (434 MB on disk, its flushes and compactions, then a
 * checkpoint) peaked at 34 descriptors with one client connected, against 26 at start. */
export const ENGINE_FD_RESERVE = 64;

/** Table files the engine keeps open for its reads (fjall's descriptor cache, its default on
 * Linux) when the open-files limit has room for them beside connectionsMax connections. */
export const ENGINE_TABLE_FILES_MAX = 900;

/** Fewest table files the engine keeps open when the open-files limit is low; it gets at least
 * a quarter of the descriptors left after ENGINE_FD_RESERVE. A table not kept open is opened
 * again by its next read (a syscall, not a failure). */
export const ENGINE_TABLE_FILES_MIN = 32;

/** Sockets the daemon may be hanging up on at once (hang-up.ts: refused at connect, or closed
 * by the daemon and lingering for their last bytes) beside its connections, when the
 * open-files limit binds. A connection that arrives while the daemon's sockets fill the
 * descriptors given to them is cut off at once (its refusal written, not lingered over), so a
 * flood of connects cannot take the engine's descriptors either. */
export const HANGING_UP_SOCKETS_MIN = 32;

/** Fewest connections an open-files limit must leave room for: a lower limit (below
 * ENGINE_FD_RESERVE + ENGINE_TABLE_FILES_MIN + HANGING_UP_SOCKETS_MIN + this, 136) is refused at
 * start with INVALID_ARGUMENT rather than run a daemon its first clients would starve. */
export const FD_LIMITED_CONNECTIONS_MIN = 8;

/** A listener error (accept failing with EMFILE or ENFILE when something else holds the
 * descriptors) is logged at most once per this, with the number of errors since the last line,
 * so a flood of connects cannot flood the log. */
export const LISTENER_ERROR_LOG_INTERVAL_MS = 10_000;

/** Open transactions one connection may hold. */
export const TXNS_PER_CONNECTION_MAX = 64;

/** Open transactions all connections may hold together. Each pins a snapshot of the store
 * (versions its reads may need are kept from compaction) and a slot in the engine's
 * transaction table; per connection alone, 1024 connections could hold 65536. A `begin` past
 * it fails with LIMIT_EXCEEDED (retryable: room comes back as transactions end or expire, and
 * withTransaction retries it). */
export const TXNS_DAEMON_MAX = 4096;

/** Largest transaction id a client may choose in `begin` (2^53 - 1: every language's float
 * and integer types hold it exactly, and the daemon's handle maps key on it). */
export const TXN_ID_CHOSEN_MAX = Number.MAX_SAFE_INTEGER;

/** An open transaction with no operation for this long is aborted by the daemon. */
export const TXN_IDLE_MS_MAX = 60_000;

/** Bytes one transaction may hold before commit: keys + values it wrote, and if it is
 * serializable its reads (keys, and the bounds of ranges scanned, each with 160 bytes: what
 * fjall keeps of them for the conflict check; engine/src/core/txn.rs READ_MARK_BYTES). */
export const TXN_BYTES_MAX = 64 * MiB;

/** Bytes all open transactions of all connections may hold together (txnBytesMax counted over
 * every one of them). Without it a client could hold txnsPerConnectionMax × txnBytesMax = 4 GiB
 * per connection, × connectionsMax = 4 TiB in all: the OOM killer, a crash for every client.
 * 512 MiB is eight maximal transactions at once, far more than a per-machine database's
 * transactions hold together in ordinary use, and keeps the daemon's worst case (with its
 * caches, memtables, and the request and reply bounds) within what a developer machine or a
 * small server has to spare. The write or read that would pass it fails with LIMIT_EXCEEDED
 * (retryable: the bytes come back as other transactions end) and its transaction is aborted,
 * as TXN_TOO_LARGE aborts one (engine/src/core/txn.rs). */
export const TXN_BYTES_DAEMON_MAX = 512 * MiB;

/** Open scan cursors one connection may hold. */
export const CURSORS_PER_CONNECTION_MAX = 64;

/** Open scan cursors all connections may hold together. Each pins a snapshot and the engine's
 * iterator state; per connection alone, 1024 connections could hold 65536. A `scan` past it
 * fails with LIMIT_EXCEEDED (retryable: room comes back as cursors finish, close or expire). */
export const CURSORS_DAEMON_MAX = 4096;

/** Of `txnsDaemonMax` and of `cursorsDaemonMax`, the handles only the daemon's own uid and root
 * may take (at most half of either): once other users' clients hold the rest, an operator can
 * still run `toondb dump` (a cursor), `toondb load` or its own transactions, as
 * OWNER_CONNECTIONS_RESERVED keeps it a connection (daemon/registry.ts). One connection's
 * worth of either (TXNS_PER_CONNECTION_MAX, CURSORS_PER_CONNECTION_MAX). */
export const OWNER_HANDLES_RESERVED = 64;

/** An open cursor that is not pulled for this long is closed by the daemon. */
export const CURSOR_IDLE_MS_MAX = 60_000;

/** A connection whose frame is still incomplete this long after its first byte arrived (time
 * the daemon did not read it aside) is closed: a client that sends half a frame and goes
 * silent, or trickles it, cannot pin its buffer and its place in the request budget for ever. */
export const PARTIAL_FRAME_MS_MAX = 30_000;

/** A connection whose unread replies stay at OUTPUT_PAUSE_BYTES or more this long, while its
 * client reads none of them, is closed: a client that stopped reading cannot hold the daemon's
 * memory forever. */
export const UNREAD_REPLIES_MS_MAX = 30_000;

/** What "reads" means for that rule: its unread replies shrink by at least this much between
 * two samples of the periodic sweep (one second apart), or it reads them all. A client that
 * read a few bytes a second counted as reading, so it could keep OUTPUT_PAUSE_BYTES unread and
 * its requests' bytes in the daemon-wide budget for as long as it trickled. */
export const UNREAD_PROGRESS_BYTES_MIN = 64 * 1024;

/** Entries in the first batch of a scan that names no `batchSize`. Each batch the daemon
 * answers doubles the size of the batches it reads after that, up to SCAN_BATCH_ITEMS_GROWN_MAX
 * (and never past scanBatchItemsMax), so batch n holds at most min(256 * 2^n, 8192) entries
 * (daemon/handlers/scan.ts). A scan left after a few entries has had little read for it (four
 * batches of 512 read ahead), and a long one travels in large batches: each batch costs both
 * processes a request, a reply and their wake-ups. The first scan of 1M keys of 100-byte values
 * (bench/FINDINGS.md) ran at 1.05-1.31M keys/s in batches of 1000, 1.25-1.66M of 4096,
 * 1.51-1.89M of 8192. */
export const SCAN_BATCH_ITEMS_DEFAULT = 256;
export const SCAN_BATCH_ITEMS_GROWN_MAX = 8192;
/** Keys one listPath request examines at most (names, keys that are not path names, expired
 * keys): past them a `paged` one answers with where the listing goes on, another fails with
 * BATCH_TOO_LARGE. The engine's bound (engine/src/core/cursors.rs LIST_PATH_STEPS_MAX): one
 * request over a long run of keys that are not names held a pool thread, or in a transaction
 * the connection's lane, for seconds (1.2M such keys: 7.4 s). */
export const LIST_PATH_STEPS_MAX = 16_384;

/** How far past a key a listPath's `next` may reach: it names the first key still to examine,
 * at most a key and two bytes (engine/src/core/pathkey.rs after_child), so `prefix` + `resume`
 * may be this much longer than keyBytesMax. */
export const LIST_PATH_NEXT_BYTES_PAST_KEY = 2;

/** Largest `batchSize`. */
export const SCAN_BATCH_ITEMS_MAX = 10_000;

/** A scan batch stops early once it holds this many key + value bytes (at least one entry is
 * always returned, so a single maximal value still streams). */
export const SCAN_BATCH_BYTES_MAX = 4 * MiB;

/** Batches of a snapshot cursor the daemon reads ahead of the client's scanNext
 * (daemon/read-ahead.ts). Four keep the engine reading through the bursts in which the client
 * decodes and the daemon sends: the first scan of 1M keys in batches of 1000 ran ~1.0-1.1M
 * keys/s with two, ~1.15-1.26M with four, and no faster with eight or sixteen. */
export const SCAN_READ_AHEAD_BATCHES = 4;

/** Bytes that reads ahead may hold across the cursors of one connection: a running read counts
 * a whole scanBatchBytesMax, a finished one the size of its batch (daemon/read-ahead.ts). */
export const SCAN_READ_AHEAD_BYTES_PER_CONNECTION_MAX = 16 * MiB;

/** Bytes that reads ahead may hold across the whole daemon, whatever the number of connections. */
export const SCAN_READ_AHEAD_BYTES_MAX = 64 * MiB;

/** Longest TTL accepted, in seconds (100 years). */
export const TTL_SECONDS_MAX = 100 * 365 * 24 * 3600;

/** Time a new connection has to complete `hello` before the daemon drops it. */
export const HANDSHAKE_TIMEOUT_MS = 5_000;

/** A frame up to this size is admitted without waiting for the daemon-wide request budget
 * (REQUEST_BYTES_IN_FLIGHT_DAEMON_MAX) when its connection holds nothing else there (no frame
 * read and not yet answered). The budget reserves a frame's announced length from its header,
 * so clients announcing large frames and sending nothing fill it until partialFrameMsMax cuts
 * them off; meanwhile every other connection still gets its small requests through, one at a
 * time: a hello (so no handshake times out under pressure), stats and `toondbd stop`, the gets
 * and puts of small values. At most one such frame per connection, CONNECTIONS_MAX × 16 KiB =
 * 16 MiB in all, passes the bound. Daemon-internal. */
export const SOLO_FRAME_BYTES_MAX = 16 * KiB;

/** Client defaults. */
export const REQUEST_TIMEOUT_MS_DEFAULT = 30_000;
export const CONNECT_TIMEOUT_MS_DEFAULT = 5_000;

/** Bytes the client buffers for requests not yet accepted by the socket before callers wait. */
export const CLIENT_WRITE_QUEUE_BYTES_MAX = 64 * MiB;

/** Longest client timeout (timeoutMs, connectTimeoutMs): setTimeout's 32-bit bound, about
 * 24.8 days. A longer delay makes Node fire the timer after 1 ms (with a warning). */
export const CLIENT_TIMEOUT_MS_MAX = 2 ** 31 - 1;

/** The client's one read buffer per connection, reused by every socket read (ipc-client/
 * socket-reader.ts): large enough that a scan batch of 1000 small entries arrives in one read
 * (a grown one of 8192, ~1 MB, takes four or five). */
export const CLIENT_READ_BUFFER_BYTES = 256 * KiB;

/** Longest Unix socket path, in bytes, accepted by daemon and client alike: macOS allows 104
 * bytes including the terminating NUL, Linux 108; Linux silently truncates longer paths. */
export const SOCKET_PATH_BYTES_MAX = 103;

/** Shutdown: how long in-flight requests get to finish before the daemon aborts them. */
export const SHUTDOWN_DRAIN_MS_MAX = 10_000;

/** How long a connection the daemon hangs up on (a protocol error, a refused handshake or
 * peer, a cut-off) keeps its socket for its last bytes to reach a client that reads them; one
 * still open then is destroyed with whatever it left unread, so a client that reads nothing
 * cannot keep closed connections (not counted in connectionsMax) and their replies alive. */
export const HANG_UP_LINGER_MS_MAX = 2_000;

/** Start-up: the lock serialising daemons that start on one socket path (a directory beside it,
 * proper-lockfile) is taken over once its holder has not touched it for this long (a live
 * holder touches it every half of this); a start waits up to START_LOCK_WAIT_MS_MAX for it,
 * longer than this, so the lock of a daemon killed while starting is taken over by the next
 * start instead of refusing it (ALREADY_RUNNING, exit 2, which systemd does not restart). */
export const START_LOCK_STALE_MS = 10_000;
export const START_LOCK_WAIT_MS_MAX = 15_000;
/** Longest pause between two tries for the start-up lock. */
export const START_LOCK_RETRY_MS_MAX = 250;

/** Shutdown: how long the last replies get to reach their clients once connections are ended;
 * a connection still open then (its client reads nothing) is cut off. */
export const SHUTDOWN_FLUSH_MS_MAX = 2_000;

/** Frames written together up to this many bytes are copied into one buffer and written with
 * one call; a larger batch is written corked (one writev, no copy of big values). */
export const WRITE_COALESCE_BYTES_MAX = 64 * 1024;

/** Engine block cache (fjall) in bytes: decoded table blocks, shared by every read. */
export const ENGINE_BLOCK_CACHE_BYTES = 64 * 1024 * 1024;
/** Engine row cache (`--row-cache-mb`): recent rows answered on the daemon's JS thread without
 * a pool round trip (engine/src/core/rowcache.rs). 0 turns it off. */
export const ROW_CACHE_MIB_DEFAULT = 32;
export const ROW_CACHE_MIB_MAX = 65_536;

/** Default fsync period for `--durability interval`. */
export const SYNC_INTERVAL_MS_DEFAULT = 100;
export const SYNC_INTERVAL_MS_MAX = 60_000;

/** Largest number of path segments and bytes per segment in `putPath` and friends. */
export const PATH_SEGMENTS_MAX = 64;

/** Deepest nesting of arrays and maps in one message. The deepest legitimate message (a stats
 * reply) nests 4 levels; the bound stops a hostile body of nested one-byte arrays from
 * exhausting the decoder's stack. */
export const MESSAGE_DEPTH_MAX = 32;

/** Most entries in one MessagePack map. The largest legitimate map is a stats reply section
 * (a few dozen fields); the bound stops one frame of millions of keys from holding the
 * receiver's thread for seconds while it builds the object. */
export const MESSAGE_MAP_ENTRIES_MAX = 256;

/** Most MessagePack items (scalars, strings, containers) in one request the daemon decodes with
 * msgpackr: room for a maximal putBatch (an array of [key, value] pairs, 3 items an entry) and
 * its fields. Replies are not bounded this way (a listPath reply may list millions of names). */
export const REQUEST_ITEMS_MAX = 3 * BATCH_ITEMS_MAX + 1024;

/** Longest free-form client name a `hello` may carry (it is only logged). */
export const CLIENT_NAME_BYTES_MAX = 256;

/** Limits the daemon announces in its `hello` reply (see PROTOCOL.md). */
export interface ServerLimits {
  frameBytesMax: number;
  keyBytesMax: number;
  valueBytesMax: number;
  batchItemsMax: number;
  batchBytesMax: number;
  inFlightPerConnectionMax: number;
  txnsPerConnectionMax: number;
  txnIdleMsMax: number;
  txnBytesMax: number;
  txnBytesDaemonMax: number;
  txnsDaemonMax: number;
  cursorsPerConnectionMax: number;
  cursorsDaemonMax: number;
  cursorIdleMsMax: number;
  scanBatchItemsMax: number;
  scanBatchBytesMax: number;
  ttlSecondsMax: number;
  partialFrameMsMax: number;
  unreadRepliesMsMax: number;
  requestBytesInFlightDaemonMax: number;
  replyBytesDaemonMax: number;
}

export const DEFAULT_SERVER_LIMITS: Readonly<ServerLimits> = Object.freeze({
  frameBytesMax: FRAME_BYTES_MAX,
  keyBytesMax: KEY_BYTES_MAX,
  valueBytesMax: VALUE_BYTES_MAX,
  batchItemsMax: BATCH_ITEMS_MAX,
  batchBytesMax: BATCH_BYTES_MAX,
  inFlightPerConnectionMax: IN_FLIGHT_PER_CONNECTION_MAX,
  txnsPerConnectionMax: TXNS_PER_CONNECTION_MAX,
  txnIdleMsMax: TXN_IDLE_MS_MAX,
  txnBytesMax: TXN_BYTES_MAX,
  txnBytesDaemonMax: TXN_BYTES_DAEMON_MAX,
  txnsDaemonMax: TXNS_DAEMON_MAX,
  cursorsPerConnectionMax: CURSORS_PER_CONNECTION_MAX,
  cursorsDaemonMax: CURSORS_DAEMON_MAX,
  cursorIdleMsMax: CURSOR_IDLE_MS_MAX,
  scanBatchItemsMax: SCAN_BATCH_ITEMS_MAX,
  scanBatchBytesMax: SCAN_BATCH_BYTES_MAX,
  ttlSecondsMax: TTL_SECONDS_MAX,
  partialFrameMsMax: PARTIAL_FRAME_MS_MAX,
  unreadRepliesMsMax: UNREAD_REPLIES_MS_MAX,
  requestBytesInFlightDaemonMax: REQUEST_BYTES_IN_FLIGHT_DAEMON_MAX,
  replyBytesDaemonMax: REPLY_BYTES_DAEMON_MAX,
});

function check(condition: boolean, relation: string): void {
  if (!condition) throw new Error(`toondb limits are inconsistent: ${relation}`);
}

/** Asserts the relationships between constants. Runs once on import; exported for the tests.
 * (Those between the advertised limits are limit-relations.ts's, checked on its import.) */
export function assertLimits(): void {
  check(FRAME_BYTES_MAX < 2 ** 32, 'the frame length must fit the 4-byte prefix');
  check(OUTPUT_BUFFER_BYTES_MAX >= FRAME_BYTES_MAX, 'one maximal reply must fit in the output buffer');
  check(SCAN_BATCH_ITEMS_DEFAULT <= SCAN_BATCH_ITEMS_GROWN_MAX && SCAN_BATCH_ITEMS_GROWN_MAX <= SCAN_BATCH_ITEMS_MAX, 'default scan batches within maximum');
  check(SYNC_INTERVAL_MS_DEFAULT <= SYNC_INTERVAL_MS_MAX, 'default sync interval within maximum');
  check(SOCKET_PATH_BYTES_MAX < 104, 'socket path must fit macOS sun_path with its NUL');
  check(MESSAGE_DEPTH_MAX >= 8, 'every protocol message (at most 4 levels deep) fits the depth bound');
  check(START_LOCK_WAIT_MS_MAX > START_LOCK_STALE_MS + START_LOCK_RETRY_MS_MAX, 'a start waits for the start-up lock longer than it takes to go stale');
  for (const value of Object.values(DEFAULT_SERVER_LIMITS)) {
    check(Number.isSafeInteger(value) && value > 0, 'every advertised limit is a positive integer');
  }
}

assertLimits();
