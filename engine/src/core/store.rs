//! The store: one fjall `OptimisticTxDatabase`, its keyspaces, the commit path and the tickets.
//!
//! Responsibility: open/recover the database, validate sizes against the open options; every
//! commit (non-transactional writes, transactions, TTL sweeps) runs through the commit protocol
//! in store/commit.rs.
//!
//! Invariants:
//! - Every fjall commit goes through `commit_with` (store/commit.rs), which holds `commit_lock`: the ticket is issued
//!   before the fjall commit and marked written after it, and the visible seqno read right after
//!   the commit is this commit's (no other commit can run in between). A transaction takes its
//!   snapshot (at its first operation, txn.rs) under `commit_lock` too, so for snapshot isolation
//!   its read snapshot and its write transaction see the same seqno.
//! - Writes reach the OS at commit (`PersistMode::Buffer`: the journal BufWriter is flushed, so a
//!   `kill -9` loses nothing); fsync happens only in `sync` (through our own descriptor of the
//!   active journal, beside running commits: journal.rs), `checkpoint` and `close`.
//! - Memtables are rotated by commits that waited for the commit lock (`after_waiting_commit`,
//!   on a lane or the pool), never by a commit on the JS thread, which declines while fjall may
//!   make a writer wait (`writes_may_wait`; both in store/waits.rs).
//! - After a failed commit or fsync the store is poisoned: writes fail with STORAGE_FAILED,
//!   reads keep working (fjall poisons itself too; our flag also covers conflict-free paths).
//!   The first poisoning takes write access to fjall's journal away (store/journal_seal.rs),
//!   so the batch a failed write left in fjall's buffer can never reach the disk.
//! - Test hook: with `TOONDB_FAILPOINT_FSYNC_AFTER=N` in the environment at open, the journal
//!   fsyncs after the first N fail as a failing disk would (fdatasync cannot be made to fail on
//!   a healthy file system, and the daemon's reaction to it must be tested). Unset or not a
//!   number: no failpoint.

use super::cursors::CursorRegistry;
use super::error::{EngineError, EngineResult};
use super::journal::ActiveJournal;
use super::tickets::Tickets;
use super::txn::TxnRegistry;
use super::preflight;
use super::rowcache::{RowCache, ROW_CACHE_BYTES_DEFAULT};
use super::value;
use super::watermark::{self, Watermark};
use fjall::{KeyspaceCreateOptions, OptimisticTxDatabase, OptimisticTxKeyspace, OptimisticWriteTx as WriteTransaction, PersistMode, Slice};
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

// Linux only: a full file system made with unshare, mount and fallocate.
#[cfg(all(test, target_os = "linux"))]
mod disk_full_tests;
mod commit;
mod fsync;
mod journal_seal;
mod reaper;
mod waits;
mod workers;
pub use commit::{ConflictCheck, CONFLICT_CHECK_BYTE_COMMITS_MAX};
pub use waits::CheckpointRunning;
pub use workers::background_workers;
use workers::{open_with_niced_workers, FjallWorkers};

/// Memtable size of the data keyspace (fjall's default is 64 MiB). A memtable is a skiplist
/// whose inserts are bound by cache misses down its levels (~half of the engine's time per put
/// in perf); a smaller one is cheaper to insert into, bounds the journal replayed at restart and
/// the memory held, at the cost of more, smaller flushes. Measured against 64 MiB in the bench
/// (1 round each): restart over 1M keys 730 -> 345 ms, daemon RSS 334 -> 235 MiB, scan and
/// put workloads within noise or better. fjall keeps a keyspace's options from its creation,
/// so data directories created with another size keep theirs.
pub const DATA_MEMTABLE_BYTES: u64 = 16 * 1024 * 1024;

/// fjall's own rotation trigger for data keyspaces created now, above DATA_MEMTABLE_BYTES where
/// our commits rotate (store/waits.rs). fjall asks its worker to rotate after the commit that
/// passes its trigger, so with equal sizes the worker and our commit raced, and a memtable the
/// worker rotated out was freed inside fjall's version lock instead of by the reaper (in one
/// test run of five). fjall's trigger still catches a write that jumps past both.
const FJALL_MEMTABLE_BYTES: u64 = DATA_MEMTABLE_BYTES + 1024 * 1024;

/// Bytes counted for each item of a getBatch or listPath reply besides its value or name: its
/// MessagePack header at most (bin 32 / str 32 is 5 bytes).
pub const ITEM_OVERHEAD_BYTES: usize = 5;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub key_bytes_max: usize,
    pub value_bytes_max: usize,
    pub txn_bytes_max: u64,
    /// Bytes all open transactions may hold together (txn.rs HeldBytes).
    pub txn_bytes_daemon_max: u64,
    pub batch_items_max: usize,
    /// Bytes one batch may carry: a putBatch's keys and values, or a getBatch or listPath
    /// reply's values or names (each counted with ITEM_OVERHEAD_BYTES; `check_reply_bytes`).
    pub batch_bytes_max: usize,
}

#[derive(Clone, Debug)]
pub struct OpenOptions {
    pub path: String,
    pub cache_bytes: Option<u64>,
    /// Row cache capacity (rowcache.rs); None for the default, 0 to disable it.
    pub row_cache_bytes: Option<u64>,
    /// Capacity of fjall's table-file descriptor cache (None: fjall's default, 900 on Linux,
    /// 150 on macOS). The daemon sizes it to the open-files limit (daemon/descriptors.ts): a
    /// flush or compaction that cannot open a file ends fjall's worker and poisons the store.
    pub table_files_max: Option<usize>,
    pub limits: Limits,
}

#[derive(Clone, Copy, Debug)]
pub struct Recovery {
    pub duration_ms: f64,
    pub journal_count: u64,
    pub seqno: u64,
    pub approximate_keys: u64,
}

/// One write of a non-transactional batch, already in stored form.
pub enum WriteItem {
    Put { key: Slice, stored: Slice, expiry_ms: Option<u64> },
    Delete { key: Slice },
}

impl WriteItem {
    pub fn key(&self) -> &[u8] {
        match self {
            WriteItem::Put { key, .. } | WriteItem::Delete { key } => key,
        }
    }
}

/// Outcome of one commit: the ticket always, the commit timestamp if it applied.
pub struct Committed {
    pub ticket: u64,
    pub result: EngineResult<u64>,
}

pub struct Store {
    /// Dropped by `Store::drop`, unless the store is poisoned (see there).
    pub db: ManuallyDrop<OptimisticTxDatabase>,
    pub data: OptimisticTxKeyspace,
    pub ttl: OptimisticTxKeyspace,
    pub limits: Limits,
    pub tickets: Tickets,
    pub txns: TxnRegistry,
    pub cursors: CursorRegistry,
    pub rows: RowCache,
    commit_lock: Mutex<()>,
    /// Commits applied through fjall's conflict oracle (transactions, and plain writes while one
    /// is live), counted under the commit lock: what a transaction's conflict check will cost
    /// grows with those made since its snapshot (store/commit.rs `commit_tx`).
    pub oracle_commits: AtomicU64,
    poisoned: AtomicBool,
    /// What failed when the store was poisoned (the first cause), for every later refusal.
    poison_cause: std::sync::OnceLock<String>,
    watermark: Watermark,
    /// A lower bound of (the seqno of the last commit of this process that wrote data keys) + 1,
    /// 0 before the first (see `commit_with`): what recovery must at least give back. fjall's
    /// visible seqno also moves on internal work (creating a keyspace, installing a flush's or
    /// compaction's version), which recovery does not reproduce.
    last_commit_seqno: AtomicU64,
    /// The journal active just before the last fsync sampled `last_commit_seqno` (at open: the
    /// journal active then), which the watermark names for the next one (store/fsync.rs).
    journal_at_last_sample: AtomicU64,
    /// True while fjall may be flushing a sealed memtable (`writes_may_wait`): set by a commit
    /// that waited for the commit lock and saw (or made) a sealed memtable, cleared by one that
    /// saw none. Lets the JS thread decline without reading fjall's version, whose lock a
    /// flush holds across a fsync when it installs the table.
    flush_may_run: AtomicBool,
    /// Checkpoints in progress (`checkpoint_running`): each fsyncs the journal under fjall's
    /// journal lock, then seals and flushes every memtable, outside the commit lock.
    checkpoints_running: AtomicUsize,
    /// The journal file group commit fsyncs (journal.rs).
    journal: ActiveJournal,
    /// Journal fsyncs that succeeded (group commit, checkpoint, close).
    pub fsyncs: AtomicU64,
    /// A journal fsync failed: no later one may report success (store/fsync.rs).
    fsync_failed: AtomicBool,
    /// Held across one fsync round, sample to watermark (store/fsync.rs): group commit and a
    /// checkpoint's or close's persist never overlap.
    fsync_round: Mutex<()>,
    /// Watermark writes that failed after a good fsync (store/fsync.rs); the next one retries.
    pub watermark_failures: AtomicU64,
    /// Wall-clock ms (Unix epoch) at which the last of them completed, 0 before the first.
    pub last_fsync_ms: AtomicU64,
    /// Fsyncs left before the test failpoint fires (None: no failpoint; see the header).
    fsyncs_before_failure: Option<AtomicU64>,
    /// Frees the memtables our rotations seal, and unlinks replaced tables, outside fjall's
    /// locks (store/reaper.rs).
    reaper: reaper::Reaper,
    /// fjall's background threads for this database (store/workers.rs): a checkpoint stops
    /// waiting for a flush once one of them has ended (store/waits.rs).
    workers: FjallWorkers,
    /// Takes write access to fjall's journal away when the store is poisoned, and keeps the
    /// outcome (store/journal_seal.rs).
    journal_seal: journal_seal::JournalSeal,
}

/// Environment variable of the fsync failpoint (test hook, see the module header).
pub const FSYNC_FAILPOINT_ENV: &str = "TOONDB_FAILPOINT_FSYNC_AFTER";

impl Store {
    pub fn open(options: &OpenOptions) -> EngineResult<(Store, Recovery)> {
        validate_limits(&options.limits)?;
        super::alloc::tune();
        super::fjall_log::install();
        std::fs::create_dir_all(&options.path)
            .map_err(|e| EngineError::from_io(&format!("creating {}", options.path), &e))?;
        let started = Instant::now();
        let journals = preflight::check(std::path::Path::new(&options.path))?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut builder = OptimisticTxDatabase::builder(&options.path)
            .manual_journal_persist(false)
            .worker_threads(background_workers(cores));
        if let Some(bytes) = options.cache_bytes {
            builder = builder.cache_size(bytes);
        }
        if let Some(files) = options.table_files_max {
            builder = builder.max_cached_files(Some(files));
        }
        let (db, workers) = open_with_niced_workers(background_workers(cores), || builder.open())?;
        let data = db.keyspace("data", || KeyspaceCreateOptions::default().max_memtable_size(FJALL_MEMTABLE_BYTES))?;
        let ttl = db.keyspace("ttl", KeyspaceCreateOptions::default)?;
        let watermark_path = watermark::path_for(&options.path);
        watermark::verify(&watermark_path, db.inner().visible_seqno(), &journals)?;
        let watermark = Watermark::open(&watermark_path)?;
        let recovery = Recovery {
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            journal_count: db.journal_count() as u64,
            seqno: db.inner().visible_seqno(),
            approximate_keys: data.approximate_len() as u64,
        };
        let store = Store {
            db: ManuallyDrop::new(db),
            data,
            ttl,
            limits: options.limits,
            tickets: Tickets::default(),
            txns: TxnRegistry::default(),
            cursors: CursorRegistry::default(),
            rows: RowCache::new(options.row_cache_bytes.unwrap_or(ROW_CACHE_BYTES_DEFAULT)),
            commit_lock: Mutex::new(()),
            oracle_commits: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            poison_cause: std::sync::OnceLock::new(),
            watermark,
            journal: ActiveJournal::new(std::path::Path::new(&options.path)),
            journal_at_last_sample: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            fsync_failed: AtomicBool::new(false),
            fsync_round: Mutex::new(()),
            watermark_failures: AtomicU64::new(0),
            last_fsync_ms: AtomicU64::new(0),
            // Not the seqno at open: creating the keyspaces moves it without a journal entry, so
            // a reopen recovers less, and a close with no commit in between recorded it as the
            // durable watermark and the next open refused the database as damaged.
            last_commit_seqno: AtomicU64::new(0),
            flush_may_run: AtomicBool::new(true),
            checkpoints_running: AtomicUsize::new(0),
            fsyncs_before_failure: std::env::var(FSYNC_FAILPOINT_ENV).ok().and_then(|v| v.trim().parse().ok()).map(AtomicU64::new),
            reaper: reaper::Reaper::start()?,
            workers,
            journal_seal: journal_seal::JournalSeal::new(std::path::Path::new(&options.path))?,
        };
        // Every commit of this open sits in the journal active now or a later one.
        store.journal_at_last_sample.store(store.journal.active_id()?, Ordering::SeqCst);
        store.note_sealed_memtables();
        Ok((store, recovery))
    }

    /// A write transaction whose commit only flushes the journal to the OS (no fsync).
    pub fn write_tx(&self) -> EngineResult<WriteTransaction> {
        Ok(self.db.write_tx()?.durability(Some(PersistMode::Buffer)))
    }

    /// Held while a transaction takes its snapshot (txn.rs), so no commit lands between its fjall
    /// transaction and its read snapshot.
    pub fn lock_commits(&self) -> EngineResult<MutexGuard<'_, ()>> {
        self.commit_lock.lock().map_err(|_| EngineError::Internal("commit lock poisoned".into()))
    }

    /// The commit lock if it is free right now (None if held, or poisoned: the caller then takes
    /// the path that waits, which reports a poisoned lock).
    pub fn try_lock_commits(&self) -> Option<MutexGuard<'_, ()>> {
        self.commit_lock.try_lock().ok()
    }

    /// Offers rows a plain read found in storage to the row cache. Skipped (never waited for)
    /// while a commit holds the lock: the fill would be refused anyway.
    pub fn fill_rows(&self, ticket: u64, read: impl IntoIterator<Item = (Slice, super::rowcache::Row)>) {
        if let Ok(_guard) = self.commit_lock.try_lock() {
            self.rows.fill(ticket, read);
        }
    }

    pub fn check_writable(&self) -> EngineResult<()> {
        if self.poisoned.load(Ordering::SeqCst) {
            // StorageFailed's Display already says that writes are refused until restart.
            let mut message = self.poison_cause.get().cloned().unwrap_or_else(|| "an earlier failure".into());
            if let Some(note) = self.ended_workers_note() {
                message += &format!("; {note}");
            }
            if let Some(e) = self.journal_seal.failure() {
                message += &format!(
                    "; taking write access to fjall's journal away failed too ({e}): restart before freeing disk space, \
                     or a write refused for a full disk may still reach the journal"
                );
            }
            return Err(EngineError::StorageFailed(message));
        }
        Ok(())
    }

    /// What fjall's ended workers say, for a STORAGE_FAILED message: "N of fjall's M background
    /// workers ended (…); fjall last reported: …" (core/fjall_log.rs), or None while they all run.
    pub fn ended_workers_note(&self) -> Option<String> {
        let ended = self.workers.ended();
        if ended == 0 {
            return None;
        }
        let mut note =
            format!("{ended} of fjall's {} background workers ended (a flush or compaction failed, e.g. for a full disk)", self.workers.found());
        if let Some(reported) = super::fjall_log::latest_error() {
            note += &format!("; fjall last reported: {reported}");
        }
        Some(note)
    }

    /// Marks the store failed because of `cause`: writes are refused from now on, and each
    /// refusal names the first cause (`check_writable`), kept without StorageFailed's own
    /// "writes are refused until restart", which the refusal says once. The first call also
    /// takes write access to fjall's journal away (store/journal_seal.rs); if that fails, the
    /// failure is kept and named by every later STORAGE_FAILED, never fatal.
    pub fn poison(&self, cause: &EngineError) {
        self.poison_cause.get_or_init(|| match cause {
            EngineError::StorageFailed(detail) => detail.clone(),
            other => other.to_string(),
        });
        if !self.poisoned.swap(true, Ordering::SeqCst) {
            let _ = self.journal_seal.seal();
        }
    }

    /// A key a read or write names: not empty (fjall asserts that in its write paths, and the
    /// panic would come while our commit lock is held, poisoning it: every later write would
    /// fail until restart), and at most key_bytes_max bytes. As protocol/validate.ts `keyOf`.
    pub fn check_key(&self, key: &[u8]) -> EngineResult<()> {
        if key.is_empty() {
            return Err(EngineError::invalid("a key must not be empty"));
        }
        self.check_bound(key)
    }

    /// A key bound or prefix (a scan's start, listPath's parent): at most key_bytes_max
    /// bytes, and may be empty (the empty prefix holds every key). As validate.ts `boundOf`.
    pub fn check_bound(&self, bound: &[u8]) -> EngineResult<()> {
        if bound.len() > self.limits.key_bytes_max {
            return Err(EngineError::KeyTooLarge { len: bound.len(), max: self.limits.key_bytes_max });
        }
        Ok(())
    }

    pub fn check_value(&self, value: &[u8]) -> EngineResult<()> {
        if value.len() > self.limits.value_bytes_max {
            return Err(EngineError::ValueTooLarge { len: value.len(), max: self.limits.value_bytes_max });
        }
        Ok(())
    }

    /// Refuses a getBatch or listPath reply of `bytes` (ITEM_OVERHEAD_BYTES per item included)
    /// over batch_bytes_max: a reply is built whole in memory and must fit one frame.
    pub fn check_reply_bytes(&self, what: &'static str, bytes: usize) -> EngineResult<()> {
        if bytes > self.limits.batch_bytes_max {
            return Err(EngineError::ReplyTooLarge { what, bytes, max: self.limits.batch_bytes_max });
        }
        Ok(())
    }

    pub fn check_batch(&self, items: usize) -> EngineResult<()> {
        if items > self.limits.batch_items_max {
            return Err(EngineError::BatchTooLarge { items, max: self.limits.batch_items_max });
        }
        Ok(())
    }
}

fn validate_limits(limits: &Limits) -> EngineResult<()> {
    // fjall refuses keys over 64 KiB; the ttl index adds 8 bytes to a key.
    if limits.key_bytes_max == 0 || limits.key_bytes_max + 8 > 65_535 {
        return Err(EngineError::invalid(format!("keyBytesMax {} must be 1..65527", limits.key_bytes_max)));
    }
    if limits.value_bytes_max + value::TTL_HEADER_BYTES > u32::MAX as usize {
        return Err(EngineError::invalid("valueBytesMax is over the 4 GiB value limit"));
    }
    if limits.batch_items_max == 0 || limits.batch_bytes_max == 0 || limits.txn_bytes_max == 0 {
        return Err(EngineError::invalid("batchItemsMax, batchBytesMax and txnBytesMax must be positive"));
    }
    Ok(())
}
