//! The store's journal fsyncs, and what its drop leaves on disk.
//!
//! Responsibility: group commit (`sync`, through our own journal descriptor) and fjall's own
//! persist (checkpoint and close), each recording in the watermark what it covered (watermark.rs);
//! a failed fsync poisons the store, and a poisoned store never drops its fjall database.
//!
//! Invariants: the seqno recorded is sampled before the fsync starts (every commit that returned
//! is in the buffers it flushes); nothing here ever flushes fjall's journal buffer once the
//! store is poisoned (and fjall itself cannot either: store/journal_seal.rs).

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
        let journal_at_sample = self.journal.active_id()?;
        // Sampled before the fsync: every commit that returned is in the buffers it flushes.
        let covered = self.last_commit_seqno.load(Ordering::SeqCst);
        if let Some(left) = &self.fsyncs_before_failure {
            if left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_err() {
                let error = EngineError::StorageFailed(format!("journal fsync failed (injected by {FSYNC_FAILPOINT_ENV})"));
                self.poison(&error);
                return Err(error);
            }
        }
        fsync().inspect_err(|e| self.poison(e))?;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.last_fsync_ms.fetch_max(super::value::now_ms(), Ordering::Relaxed);
        let journal = self.journal_at_last_sample.swap(journal_at_sample, Ordering::SeqCst);
        self.watermark.record(covered, journal)
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
