//! When a write may wait inside fjall, so the daemon's JS thread never commits then, and the
//! memtable rotations that commits able to wait make instead.
//!
//! Responsibility: `Store::writes_may_wait` (asked by `ops::write_now` before a commit on the JS
//! thread), `after_waiting_commit` (run by every commit that took the commit lock the waiting
//! way: a lane's or the pool's), and a checkpoint's mark and memtable seal.
//!
//! Invariants:
//! - fjall holds its journal lock across a fsync when a flush starts and when it seals a
//!   journal, and its version lock (read by every write) across the version file's fsync when
//!   a flush or compaction installs its result (fjall 3.1 `worker_pool.rs`, `keyspace/mod.rs`;
//!   lsm-tree `version/super_version.rs`). A commit on the JS thread starts only when none of
//!   that runs or is due, as far as atomics and a version read taken while nothing is known to
//!   run can tell; what is left is a window of microseconds.
//! - Only a commit holding the commit lock the waiting way rotates a memtable, at the data
//!   memtable's size, just below fjall's own trigger, so flushes (and with them journal seals
//!   and restart work) fall where fjall would put them; a checkpoint seals them all. Each
//!   memtable we rotate out, and the tree's version as the rotation began, go to the reaper,
//!   so the memtable is freed and the tables a compaction replaces are unlinked there, not
//!   inside fjall's version lock (store/reaper.rs).
//! - A checkpoint's wait for the flushes of the memtables it sealed always ends: once they are
//!   flushed, with STORAGE_FAILED (the store poisoned) once the store is poisoned or one of
//!   fjall's workers has ended (store/workers.rs), or with TIMEOUT (the store as it was) once
//!   CHECKPOINT_FLUSH_WAIT_MAX has passed.
//! - These read fjall 3.1 internals (active compactions, queued flushes, sealed memtables, the
//!   active memtable's size, L0 runs); re-check them on a fjall upgrade.

use super::{Store, DATA_MEMTABLE_BYTES};
use crate::core::error::{EngineError, EngineResult};
use fjall::AbstractTree;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A checkpoint in progress (`Store::checkpoint_running`); ends when dropped.
pub struct CheckpointRunning<'a>(&'a AtomicUsize);

impl Drop for CheckpointRunning<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `writes_may_wait`: a margin below fjall's write stall (20 L0 runs).
const WRITE_NOW_L0_RUNS_MAX: usize = 16;

/// Active memtable size at which a commit that waited for the commit lock rotates the memtable
/// itself (`after_waiting_commit`): the data memtable's size, just below fjall's own trigger
/// for data directories created now (`FJALL_MEMTABLE_BYTES`), and below it for the TTL
/// keyspace and older directories (64 MiB), so rotations happen where a writer can afford them,
/// never under a commit on the JS thread, and the reaper frees what they rotate out. Not below
/// 16 MiB: fjall seals its journal only at a flush that finds it past 64 MB, and recovery
/// replays the whole active journal, so where flushes fall decides what a restart reads (after
/// the bench's 1M-key load: 9.5 MB rotating at 16 MiB, 66 MB at 15 MiB; 94 against 490 ms to
/// open). In data directories created with fjall's trigger at 16 MiB, fjall's worker sometimes
/// rotates first, and fjall frees that memtable itself.
const MEMTABLE_ROTATE_BYTES: u64 = DATA_MEMTABLE_BYTES;

/// Active memtable size from which `writes_may_wait` sends writes to the lanes, whose commits
/// then reach MEMTABLE_ROTATE_BYTES and rotate. The margin is small, as every write in it takes
/// the lane (back-to-back single-key writes: 11-15 % went to the lane with 1 MiB, 9 % with
/// 256 KiB). A write on the JS thread with values large enough to jump it passes fjall's
/// trigger instead: fjall's worker rotates the memtable after that commit, and the checks of
/// `writes_may_wait` see the rotation and the flush.
const WRITE_NOW_MEMTABLE_BYTES_MAX: u64 = MEMTABLE_ROTATE_BYTES - 256 * 1024;

/// How long a checkpoint waits for fjall to flush the memtables it sealed before it gives up
/// with TIMEOUT (`seal_memtables_and_wait`; the store stays as it was: on a large database a
/// flush may wait behind a long compaction, and gets done later). A flush of a 16 MiB memtable takes tens of
/// ms here (store/reaper.rs); with one worker (store/workers.rs) it may first wait for the
/// compaction running, and fjall halts every writer once 4 sealed memtables wait, so a flush
/// not done after this long means writes have stalled as long. Not longer: a `checkpoint`
/// request must get this TIMEOUT (the writes are durable in the journal all the same) before
/// a client's default request timeout (REQUEST_TIMEOUT_MS_DEFAULT, 30 s) gives up on it with
/// an unknown outcome; and the daemon's stop drains for up to 12 s (SHUTDOWN_DRAIN_MS_MAX +
/// SHUTDOWN_FLUSH_MS_MAX) before its checkpoint, which systemd (TimeoutStopSec) and launchd
/// (ExitTimeOut) allow 60 s in all.
const CHECKPOINT_FLUSH_WAIT_MAX: Duration = Duration::from_secs(25);

/// How often a checkpoint looks at the memtables still waiting for their flush (fjall's own
/// wait looks every 10 ms).
const CHECKPOINT_FLUSH_POLL: Duration = Duration::from_millis(10);

impl Store {
    /// True if a write now may wait inside fjall, for a write stall or behind one of its locks
    /// held across fsyncs. A writer that must never wait (`ops::write_now`, on the daemon's JS
    /// thread, holding the commit lock so no commit of ours runs) stays away while any of these
    /// holds (fjall 3.1 `worker_pool.rs`, `keyspace/mod.rs`; lsm-tree `version/super_version.rs`).
    /// Measured with only the write-stall margins: back-to-back single-key writes on the JS
    /// thread waited 1-78 ms ~200 times in 15 s, 1.4 s in all, on the journal and version locks.
    /// - A checkpoint runs (`checkpoint_running`).
    /// - A compaction runs, or a flush is queued or may be running (`flush_may_run`, then the
    ///   sealed memtable count): a flush starts by fsyncing the journal under the journal lock
    ///   (three fsyncs when it also seals the journal), and a flush or compaction ends by
    ///   installing a new version under the version lock, which every write reads, across a
    ///   fsync of the version file. The atomics come first, so the version is read only when no
    ///   flush or compaction is known to run.
    /// - An active memtable is near its rotation (WRITE_NOW_MEMTABLE_BYTES_MAX): rotating takes
    ///   both locks.
    /// - fjall is near its write stall: it spins writers from 20 L0 runs on and sleeps them from
    ///   30, or while 4 sealed memtables wait (the margin: WRITE_NOW_L0_RUNS_MAX).
    pub fn writes_may_wait(&self) -> bool {
        let db = self.db.inner();
        if self.checkpoints_running.load(Ordering::Acquire) > 0
            || self.flush_may_run.load(Ordering::Acquire)
            || db.active_compactions() > 0
            || db.outstanding_flushes() > 0
        {
            return true;
        }
        [&self.data, &self.ttl].into_iter().any(|keyspace| {
            let tree = &keyspace.inner().tree;
            tree.sealed_memtable_count() > 0
                || tree.active_memtable().size() >= WRITE_NOW_MEMTABLE_BYTES_MAX
                || tree.l0_run_count() >= WRITE_NOW_L0_RUNS_MAX
        })
    }

    /// After a commit that waited for the commit lock (on a lane or the pool, still holding
    /// it): rotates each active memtable that reached MEMTABLE_ROTATE_BYTES (fjall then flushes
    /// it on its worker; best effort, as fjall rotates at its own trigger otherwise), then
    /// records whether a flush may be running (`flush_may_run`).
    pub(super) fn after_waiting_commit(&self) {
        for (index, keyspace) in [&self.data, &self.ttl].into_iter().enumerate() {
            let keyspace = keyspace.inner();
            let active = keyspace.tree.active_memtable();
            if active.size() >= MEMTABLE_ROTATE_BYTES {
                let version = keyspace.tree.current_version();
                self.reaper.retire_memtable(active);
                let _ = keyspace.rotate_memtable();
                self.reaper.retire_version(index, Box::new(version));
            }
        }
        self.note_sealed_memtables();
    }

    /// Memtables rotated out and not yet freed by the reaper (store/reaper.rs).
    pub fn retired_memtables(&self) -> usize {
        self.reaper.memtables()
    }

    /// Seals every non-empty memtable and waits until fjall has flushed them (a checkpoint),
    /// the reaper taking each one first, as `after_waiting_commit` does. Gives up with
    /// STORAGE_FAILED, the store poisoned, if the flushes cannot end: the store was poisoned
    /// meanwhile, or one of fjall's workers ended (a flush or compaction failed:
    /// store/workers.rs); and with TIMEOUT, the store untouched, once CHECKPOINT_FLUSH_WAIT_MAX
    /// passed (a busy worker, or one that ended unseen). fjall's own `rotate_memtable_and_wait` polls the
    /// sealed memtables with no end, so a flush that failed (a full disk) hung the checkpoint,
    /// and with it the daemon's stop, forever.
    pub fn seal_memtables_and_wait(&self) -> EngineResult<()> {
        self.seal_memtables_and_wait_at_most(CHECKPOINT_FLUSH_WAIT_MAX)
    }

    /// `seal_memtables_and_wait` with a deadline `wait_max` after the seal (tests give a short one).
    fn seal_memtables_and_wait_at_most(&self, wait_max: Duration) -> EngineResult<()> {
        self.check_writable()?;
        // Takes the workers named since the open for this store's, before a flush ends one.
        self.workers.found();
        for keyspace in [&self.data, &self.ttl] {
            let keyspace = keyspace.inner();
            let active = keyspace.tree.active_memtable();
            if !active.is_empty() {
                self.reaper.retire_memtable(active);
            }
            keyspace.rotate_memtable()?;
        }
        let deadline = Instant::now() + wait_max;
        loop {
            let sealed: usize = [&self.data, &self.ttl].into_iter().map(|keyspace| keyspace.inner().tree.sealed_memtable_count()).sum();
            if sealed == 0 {
                return Ok(());
            }
            self.check_writable()?;
            if self.workers.ended() > 0 {
                // Poisoned with what the checkpoint saw; the error, as every later refusal,
                // adds what fjall's ended workers say (`check_writable`), once.
                self.poison(&EngineError::StorageFailed(format!("checkpoint: {sealed} sealed memtable(s) could not be flushed")));
                return Err(self.check_writable().expect_err("the store was poisoned just now"));
            }
            if Instant::now() >= deadline {
                // Not a failure: a flush may wait behind a long compaction on a large database
                // (one worker on two cores), and ends later. The store stays writable.
                return Err(EngineError::Timeout(format!(
                    "checkpoint: fjall had not flushed {sealed} sealed memtable(s) after {} ms (its background worker is busy or stuck); they are flushed when it gets to them",
                    wait_max.as_millis()
                )));
            }
            std::thread::sleep(CHECKPOINT_FLUSH_POLL);
        }
    }

    /// Marks a checkpoint as running until the guard drops, so `writes_may_wait` sends writes to
    /// the lanes meanwhile.
    pub fn checkpoint_running(&self) -> CheckpointRunning<'_> {
        self.checkpoints_running.fetch_add(1, Ordering::AcqRel);
        CheckpointRunning(&self.checkpoints_running)
    }

    /// Sets `flush_may_run` from fjall's version: whether a sealed memtable waits for (or is in)
    /// a flush. Reads the version lock, so never called on the JS thread.
    pub(super) fn note_sealed_memtables(&self) {
        let sealed = [&self.data, &self.ttl].into_iter().any(|keyspace| keyspace.inner().tree.sealed_memtable_count() > 0);
        self.flush_may_run.store(sealed, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use crate::core::engine::Engine;
    use crate::core::ops::{kind, Op};
    use crate::core::store::{Limits, OpenOptions};
    use fjall::AbstractTree;
    use std::time::Duration;

    /// Longer than a checkpoint needs to see a failed worker (its first look, ~10 ms), far
    /// shorter than CHECKPOINT_FLUSH_WAIT_MAX: a checkpoint still running by then hangs.
    const CHECKPOINT_RETURN_WAIT_MAX: Duration = Duration::from_secs(10);

    fn open_engine(dir: &std::path::Path) -> std::sync::Arc<Engine> {
        let limits = Limits { key_bytes_max: 64, value_bytes_max: 1024, txn_bytes_max: 1 << 20, txn_bytes_daemon_max: 1 << 40, batch_items_max: 100, batch_bytes_max: 1 << 24 };
        let options = OpenOptions { path: dir.join("db").to_str().unwrap().into(), cache_bytes: None, row_cache_bytes: None, table_files_max: None, limits };
        std::sync::Arc::new(Engine::open(&options).unwrap().0)
    }

    fn put(key: &str, value: &[u8]) -> Op {
        Op { kind: kind::PUT, key: Some(key.as_bytes().to_vec()), value: Some(value.to_vec()), ..Default::default() }
    }

    fn get(key: &str) -> Op {
        Op { kind: kind::GET, key: Some(key.as_bytes().to_vec()), ..Default::default() }
    }

    /// Runs `engine.checkpoint()` on a thread of its own; its error code and message, or a
    /// panic if it has not returned within CHECKPOINT_RETURN_WAIT_MAX.
    fn checkpoint_failure(engine: &std::sync::Arc<Engine>) -> (String, String) {
        let (done, outcome) = std::sync::mpsc::channel();
        let running = engine.clone();
        std::thread::spawn(move || {
            let _ = done.send(running.checkpoint());
        });
        match outcome.recv_timeout(CHECKPOINT_RETURN_WAIT_MAX) {
            Ok(Ok(_)) => panic!("the checkpoint succeeded although its flush could not"),
            Ok(Err(e)) => (e.code().to_string(), e.to_string()),
            Err(_) => panic!("the checkpoint did not return within {CHECKPOINT_RETURN_WAIT_MAX:?}"),
        }
    }

    // Regression: a checkpoint waited in fjall's `rotate_memtable_and_wait`, which sleeps while
    // a sealed memtable is left and never looks at anything else. A flush that failed (a full
    // disk; here the tables folder is gone, so the table cannot be created) ends fjall's worker
    // and leaves the memtable sealed forever: the checkpoint never returned, and the daemon
    // awaits one at stop. Now it sees the worker end and fails, the store poisoned.
    #[test]
    fn a_checkpoint_whose_flush_fails_returns_storage_failed_instead_of_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open_engine(dir.path());
        let store = engine.store().unwrap();
        assert!(store.workers.found() >= 1 || !cfg!(target_os = "linux"), "the store's fjall workers were found at open");
        assert!(engine.execute((0..100).map(|i| put(&format!("k{i}"), &[7u8; 100])).collect()).unwrap().iter().all(|o| o.error.is_none()));
        let tables = store.data.inner().path().join("tables");
        std::fs::rename(&tables, tables.with_extension("moved")).unwrap();
        let (code, message) = checkpoint_failure(&engine);
        assert_eq!(code, "STORAGE_FAILED", "{message}");
        assert!(message.contains("background workers ended"), "{message}");
        let after = engine.execute(vec![put("later", b"x"), get("k0")]).unwrap();
        assert_eq!(after[0].error.as_ref().map(|e| e.code()), Some("STORAGE_FAILED"), "the store is poisoned");
        assert_eq!(after[1].value, Some(Some(vec![7u8; 100])), "reads keep working");
    }

    // Regression: a store took its fjall workers for its own only when something first looked
    // (the first checkpoint, maybe hours after the open), so a worker that failed a flush before
    // then was forgotten as a thread that ended unnamed, and the checkpoint waited out its whole
    // deadline. They are taken at the open now.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_worker_that_fails_before_anything_looked_is_still_seen_to_end() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open_engine(dir.path());
        let store = engine.store().unwrap();
        engine.execute((0..100).map(|i| put(&format!("k{i}"), &[7u8; 100])).collect()).unwrap();
        let tables = store.data.inner().path().join("tables");
        std::fs::rename(&tables, tables.with_extension("moved")).unwrap();
        // The flush fjall's worker runs on its own (no checkpoint): it fails, and the worker
        // ends, with nothing looking at the store's threads meanwhile.
        let threads = store.workers.threads();
        assert!(store.data.inner().rotate_memtable().unwrap());
        let deadline = std::time::Instant::now() + CHECKPOINT_RETURN_WAIT_MAX;
        while threads.iter().any(|&tid| crate::core::os::thread_is_named(tid, super::super::workers::FJALL_WORKER_THREAD_NAME)) {
            assert!(std::time::Instant::now() < deadline, "fjall's worker did not end");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(store.workers.ended() >= 1, "the failed worker is seen to have ended");
        let started = std::time::Instant::now();
        let (code, message) = checkpoint_failure(&engine);
        assert_eq!(code, "STORAGE_FAILED", "{message}");
        assert!(started.elapsed() < Duration::from_secs(5), "the checkpoint saw the ended worker at once, not at its deadline");
    }

    // The deadline: a checkpoint whose flushes outlast it returns TIMEOUT and leaves the store
    // as it was (writable, not poisoned), and fjall flushes the sealed memtables later anyway.
    // Here the deadline is zero, so the first look, microseconds after the seal, already finds
    // it passed while the flush of ~1 MB of rows is still to come.
    #[test]
    fn a_checkpoint_past_its_deadline_returns_timeout_and_leaves_the_store_writable() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open_engine(dir.path());
        for chunk in 0..100 {
            let puts = (0..100).map(|i| put(&format!("k{chunk}-{i}"), &[7u8; 100])).collect();
            assert!(engine.execute(puts).unwrap().iter().all(|o| o.error.is_none()));
        }
        let store = engine.store().unwrap();
        let error = store.seal_memtables_and_wait_at_most(Duration::ZERO).unwrap_err();
        assert_eq!(error.code(), "TIMEOUT", "{error}");
        assert!(error.to_string().contains("had not flushed"), "{error}");
        let after = engine.execute(vec![put("later", b"x"), get("k0-0")]).unwrap();
        assert!(after[0].error.is_none(), "the store stays writable: {:?}", after[0].error);
        assert_eq!(after[1].value, Some(Some(vec![7u8; 100])));
        let deadline = std::time::Instant::now() + CHECKPOINT_RETURN_WAIT_MAX;
        while store.data.inner().tree.sealed_memtable_count() > 0 {
            assert!(std::time::Instant::now() < deadline, "fjall flushed the sealed memtable later");
            std::thread::sleep(Duration::from_millis(5));
        }
        engine.checkpoint().expect("a later checkpoint succeeds");
    }

    #[test]
    fn a_checkpoint_of_a_poisoned_store_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open_engine(dir.path());
        engine.execute(vec![put("k", b"v")]).unwrap();
        let store = engine.store().unwrap();
        store.poison(&crate::core::error::EngineError::StorageFailed("poisoned by a test".into()));
        assert_eq!(store.seal_memtables_and_wait().map_err(|e| e.code()), Err("STORAGE_FAILED"));
        assert_eq!(store.data.inner().tree.sealed_memtable_count(), 0, "nothing was sealed");
        assert_eq!(checkpoint_failure(&engine).0, "STORAGE_FAILED");
        // Regression: the refusal said "writes are refused until restart" twice (StorageFailed's
        // Display, then check_writable's own text around the cause, itself a Display string).
        let refused = engine.execute(vec![put("after", b"v")]).unwrap().remove(0).error.expect("refused");
        assert_eq!(refused.to_string(), "storage failed, writes are refused until restart: poisoned by a test");
    }
}
