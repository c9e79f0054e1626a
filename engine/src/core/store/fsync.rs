//! The store's journal fsyncs, and what its drop leaves on disk.
//!
//! Responsibility: group commit (`sync`, through our own journal descriptor) and fjall's own
//! persist (checkpoint and close), each recording in the watermark what it covered (watermark.rs);
//! a failed fsync, or failing to find the journal to fsync, poisons the store, and a poisoned
//! store never drops its fjall database.
//!
//! Invariants:
//! - The seqno recorded is sampled before the fsync starts (every commit that returned is in
//!   the buffers it flushes); nothing here ever flushes fjall's journal buffer once the store is
//!   poisoned (and fjall itself cannot either: store/journal_seal.rs).
//! - After one journal fsync failed, every later one fails too, without trying: Linux reports a
//!   writeback error once per file, so a second fdatasync of the same journal would return 0
//!   over pages the kernel dropped ("fsyncgate"), and writes would be acknowledged as durable
//!   that are not. (A store poisoned by a failed journal *write* still fsyncs what was written
//!   before it: those commits are whole in the OS buffers.)
//! - Rounds (sample, fsync, watermark) run one at a time: a group commit's and a checkpoint's
//!   overlapping, the one finishing first could record the journal the other sampled, newer
//!   than the one holding its commits, and a later open refuse a healthy database.
//! - A good fsync is reported as one even when recording it in the watermark fails (a full or
//!   failing disk): the commits it covered are durable, and a watermark older than the truth
//!   only weakens the recovery check (watermark.rs). The failure is counted
//!   (`watermark_failures`, in stats) and the next fsync writes the watermark again.

use super::{Store, FSYNC_FAILPOINT_ENV};
use crate::core::error::{EngineError, EngineResult};
use fjall::PersistMode;
use std::mem::ManuallyDrop;
use std::sync::atomic::Ordering;

impl Store {
    /// fsyncs the journal (group commit); resolves to the ticket now durable. Every ticket
    /// marked written before the fsync started is in the OS buffers the fsync covers. Commits
    /// go on while it runs: it does not take fjall's journal lock (journal.rs).
    pub fn sync(&self) -> EngineResult<u64> {
        let target = self.tickets.written();
        self.fsync_with(|| self.journal.sync_data().map(|_| ()))?;
        Ok(self.tickets.mark_durable(target))
    }

    /// The id of the journal group commit last fsynced.
    #[cfg(test)]
    pub fn journal_synced(&self) -> Option<u64> {
        self.journal.synced_id()
    }

    /// Superseded journals group commit fdatasynced once more as it moved on (journal.rs).
    #[cfg(test)]
    pub fn journal_left_synced(&self) -> u64 {
        self.journal.left_synced.load(Ordering::Relaxed)
    }

    /// fsyncs the journal in `mode` through fjall, which holds its journal lock meanwhile
    /// (checkpoint and close, where nothing else should run).
    pub fn persist(&self, mode: PersistMode) -> EngineResult<()> {
        // Never once poisoned: it would flush what a failed write left in fjall's buffer.
        self.check_writable()?;
        self.fsync_with(|| self.db.persist(mode).map_err(EngineError::from))
    }

    /// Runs one journal fsync; on success records the seqno it covered in the watermark, with a
    /// journal no newer than the one holding that commit, and on failure poisons the store.
    ///
    /// Which journal: the one active just before the previous fsync sampled its seqno. Every
    /// commit this fsync covers for the first time returned after that sample, so it sits in
    /// that journal or a later one. The journal active at this fsync could be later than the
    /// commit's, if fjall sealed the commit's journal in between; once that one was flushed and
    /// deleted, and a compaction dropped the commit's tombstones, recovery came back below the
    /// seqno while the named journal was still there: a healthy database refused (watermark.rs).
    fn fsync_with(&self, fsync: impl FnOnce() -> EngineResult<()>) -> EngineResult<()> {
        let _round = self.fsync_round.lock().unwrap_or_else(|p| p.into_inner());
        if self.fsync_failed.load(Ordering::SeqCst) {
            return Err(EngineError::StorageFailed(
                "a journal fsync failed earlier: what it covered may be lost, and no later fsync can tell (restart the daemon)".into()));
        }
        // Finding the active journal may fdatasync the one it leaves (journal.rs): a failure here
        // is a failed fsync like any.
        let journal_at_sample = self.journal.active_id().inspect_err(|e| {
            self.fsync_failed.store(true, Ordering::SeqCst);
            self.poison(e);
        })?;
        // Sampled before the fsync: every commit that returned is in the buffers it flushes.
        let covered = self.last_commit_seqno.load(Ordering::SeqCst);
        if let Some(left) = &self.fsyncs_before_failure {
            if left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_err() {
                let error = EngineError::StorageFailed(format!("journal fsync failed (injected by {FSYNC_FAILPOINT_ENV})"));
                self.fsync_failed.store(true, Ordering::SeqCst);
                self.poison(&error);
                return Err(error);
            }
        }
        fsync().inspect_err(|e| {
            self.fsync_failed.store(true, Ordering::SeqCst);
            self.poison(e);
        })?;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.last_fsync_ms.fetch_max(super::value::now_ms(), Ordering::Relaxed);
        let journal = self.journal_at_last_sample.swap(journal_at_sample, Ordering::SeqCst);
        if self.watermark.record(covered, journal).is_err() {
            self.watermark_failures.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl Drop for Store {
    /// A poisoned store (a journal write or fsync failed) is left as a crash would leave it: its
    /// fjall database is never dropped. fjall's journal flushes and fsyncs its write buffer when
    /// dropped, and that buffer may still hold the batch whose write failed, which its client
    /// was told was not applied (DISK_FULL); once space is back, the drop would write it and the
    /// next start would replay it. The process exits after closing a poisoned engine (its stop
    /// exits 1), and recovery treats what is on disk as after a crash: a torn tail is dropped.
    /// (The journal's descriptor is read-only by then too, store/journal_seal.rs; not dropping
    /// the database also spares the wait for fjall's workers, one of which may be stuck.)
    fn drop(&mut self) {
        if !self.poisoned.load(Ordering::SeqCst) {
            // SAFETY: `db` is dropped only here, once, and the store is not used after drop.
            unsafe { ManuallyDrop::drop(&mut self.db) };
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::core::engine::Engine;
    use crate::core::error::EngineError;
    use crate::core::ops::{kind, Op};
    use crate::core::store::{Limits, OpenOptions};
    use std::sync::atomic::Ordering;

    fn open_engine(dir: &std::path::Path) -> (Engine, String) {
        let limits = Limits { key_bytes_max: 64, value_bytes_max: 1024, txn_bytes_max: 1 << 20, txn_bytes_daemon_max: 1 << 40, batch_items_max: 100, batch_bytes_max: 1 << 24 };
        let path: String = dir.join("db").to_str().unwrap().into();
        let options = OpenOptions { path: path.clone(), cache_bytes: None, row_cache_bytes: None, table_files_max: None, limits };
        (Engine::open(&options).unwrap().0, path)
    }

    fn put(engine: &Engine, key: &[u8]) -> Option<EngineError> {
        let op = Op { kind: kind::PUT, key: Some(key.to_vec()), value: Some(b"v".to_vec()), ..Default::default() };
        engine.execute(vec![op]).unwrap().remove(0).error
    }

    // Review (fsyncgate): after a failed journal fsync, a second fdatasync of the same file
    // returns 0 on Linux over pages the kernel dropped, and would have marked writes durable.
    #[test]
    fn after_a_failed_fsync_every_later_one_fails_without_trying() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = open_engine(dir.path());
        let store = engine.store().unwrap();
        assert!(put(&engine, b"a").is_none());
        let durable = store.tickets.durable();
        let failed = store.fsync_with(|| Err(EngineError::StorageFailed("injected EIO".into())));
        assert_eq!(failed.map_err(|e| e.code()), Err("STORAGE_FAILED"));
        assert!(store.check_writable().is_err(), "a failed fsync poisons the store");
        let again = store.sync().unwrap_err();
        assert!(again.to_string().contains("a journal fsync failed earlier"), "{again}");
        assert_eq!(store.tickets.durable(), durable, "nothing more is marked durable");
        assert!(engine.checkpoint().is_err(), "nor does a checkpoint's persist pass for one");
    }

    // Review: a group commit's fsync round overlapping a checkpoint's could record the journal
    // the other sampled, newer than the one holding its commits (a later open then refused a
    // healthy database). Rounds run one at a time.
    #[test]
    fn fsync_rounds_never_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = open_engine(dir.path());
        let store = engine.store().unwrap();
        assert!(put(&engine, b"a").is_none());
        let (entered, leave) = (std::sync::Barrier::new(2), std::time::Duration::from_millis(100));
        let first_ended = std::sync::Mutex::new(None);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                store.fsync_with(|| {
                    entered.wait();
                    std::thread::sleep(leave);
                    *first_ended.lock().unwrap() = Some(std::time::Instant::now());
                    Ok(())
                }).unwrap();
            });
            entered.wait(); // the first round is inside its fsync
            store.fsync_with(|| {
                let ended = first_ended.lock().unwrap().expect("the second fsync runs only once the first round has ended");
                assert!(ended <= std::time::Instant::now());
                Ok(())
            }).unwrap();
        });
    }

    // Review: a watermark write that failed after a good fsync failed the whole round: the
    // group-commit thread ended, the daemon told the fsync's writers STORAGE_FAILED though they
    // were durable, and the store, not poisoned, went on applying writes whose clients were
    // told they failed (back after a restart).
    #[test]
    fn a_good_fsync_is_reported_as_one_when_its_watermark_write_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, path) = open_engine(dir.path());
        let store = engine.store().unwrap();
        store.watermark.make_unwritable(&crate::core::watermark::path_for(&path));
        assert!(put(&engine, b"a").is_none());
        let written = store.tickets.written();
        assert_eq!(store.sync().unwrap(), written, "the fsync's writes are durable");
        assert_eq!(store.watermark_failures.load(Ordering::Relaxed), 1);
        assert!(store.check_writable().is_ok());
        assert!(put(&engine, b"b").is_none());
        store.sync().unwrap();
        assert_eq!(store.watermark_failures.load(Ordering::Relaxed), 2, "each round tries it again");
        assert_eq!(engine.stats().unwrap().watermark_failures, 2);
    }
}
