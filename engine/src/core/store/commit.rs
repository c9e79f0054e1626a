//! The commit protocol every write of the store goes through (`commit_with`): client
//! transactions (`commit_tx`), non-transactional writes (`write_batch`), and the TTL sweep's
//! removals (`commit_unseen`).
//!
//! Invariants: every commit runs under the commit lock with a fresh ticket; the row cache
//! stops answering the keys it writes before it becomes visible and takes their new rows
//! after; a commit that applies nothing voids its ticket; a failed commit (not a conflict, not
//! a read error of `commit_unseen`'s fill) poisons the store; a plain batch skips fjall's
//! conflict oracle only when no transaction can be harmed by it (none live, or writes no
//! transaction can see).

use super::{Committed, Store, WriteItem};
use crate::core::error::{EngineError, EngineResult};
use crate::core::rowcache::{last_writes, CommitEnd, RowWrites};
use crate::core::value;
use fjall::{OptimisticWriteTx as WriteTransaction, PersistMode};
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

/// Snapshots opened and closed after each commit through fjall's oracle (`pace_oracle_gc`).
const ORACLE_GC_SNAPSHOTS_PER_COMMIT: usize = 16;

/// Most (bytes of a transaction's marked reads × commits since its snapshot) a commit may make
/// fjall's oracle check. The oracle checks every read against every transaction committed
/// since the snapshot, holding its lock and our commit lock, so every writer of the daemon waits
/// for it: measured (release build) 7 ns per point read of a short key and 16 ns per range
/// per committed transaction, 275 ns with keys of 1 KiB, i.e. ~0.04-0.12 ns per read byte and
/// commit. So at most ~0.2-0.5 s; a transaction past it is refused as conflicting instead
/// (retryable: the retry starts from a new snapshot). Without it a transaction holding
/// txnBytesMax of reads, committed after 2000 commits of others, held the lock for seconds.
pub const CONFLICT_CHECK_BYTE_COMMITS_MAX: u64 = 1 << 32;

/// What checking a transaction's commit for conflicts costs: the bytes of the reads it marked
/// (keys and range bounds with READ_MARK_BYTES each; for snapshot isolation, its written keys,
/// marked at commit) and `Store::oracle_commits` when it took its snapshot (`snapshot_seqno`).
pub struct ConflictCheck {
    pub read_bytes: u64,
    pub snapshot_seqno: u64,
}

impl Store {
    /// Commits `tx` under the commit lock with a fresh ticket. A conflict or failure applies
    /// nothing and voids its ticket (tickets.rs). `writes` names every data key the commit
    /// writes: the row cache stops answering them before the commit becomes visible, and takes
    /// its new rows after (rowcache.rs). A commit whose conflict check would pass
    /// CONFLICT_CHECK_BYTE_COMMITS_MAX (`check`) is refused, as a conflict, before fjall runs it.
    pub fn commit_tx(&self, tx: WriteTransaction, writes: RowWrites, check: ConflictCheck) -> Committed {
        let mut unchecked = None;
        let mut committed = self.commit_with(None, writes, |_| {
            // The commits fjall's oracle checks this one against: those through it since the
            // snapshot (TTL sweeps, flushes and plain writes with no transaction live bypass it).
            let commits = self.oracle_commits.load(Ordering::SeqCst).saturating_sub(check.snapshot_seqno);
            if check.read_bytes.saturating_mul(commits) > CONFLICT_CHECK_BYTE_COMMITS_MAX {
                unchecked = Some(commits);
                return Ok(false); // nothing applied
            }
            let applied = tx.commit().map(|outcome| outcome.is_ok()).map_err(EngineError::from);
            if matches!(applied, Ok(true)) {
                self.oracle_commits.fetch_add(1, Ordering::SeqCst);
            }
            applied
        });
        if let Some(commits) = unchecked {
            committed.result = Err(EngineError::TxnCheckTooLong { read_bytes: check.read_bytes, commits });
        }
        self.pace_oracle_gc();
        committed
    }

    /// Brings fjall's snapshot GC round sooner, after a commit through its optimistic oracle.
    /// The oracle keeps every transaction committed since that GC last ran and scans them all
    /// (a `BTreeMap::retain`) on every such commit; fjall 3.1 runs the GC once per 10,000
    /// closed snapshots (fjall `snapshot_tracker.rs`), so under a transactional load the map
    /// held thousands of entries and the scan took ~25 % of a lane's time. Closing
    /// ORACLE_GC_SNAPSHOTS_PER_COMMIT empty snapshots per commit (~100 ns each) makes the GC
    /// run at least every 10,000 / ORACLE_GC_SNAPSHOTS_PER_COMMIT commits. Harmless if fjall
    /// changes its rule: a few snapshots opened and closed.
    fn pace_oracle_gc(&self) {
        for _ in 0..ORACLE_GC_SNAPSHOTS_PER_COMMIT {
            drop(self.db.inner().snapshot());
        }
    }

    /// The commit protocol of every write: under the commit lock (`held`, or taken here), issue
    /// a ticket, hide the written keys from the row cache, run `apply` (given whether a
    /// transaction is live; it returns whether the commit applied, false for a conflict), then
    /// record the outcome. `held` is given only by a commit that must not wait (`write_now`, on
    /// the JS thread); it leaves a due memtable rotation to the next commit that took the lock.
    fn commit_with(&self, held: Option<MutexGuard<'_, ()>>, writes: RowWrites, apply: impl FnOnce(bool) -> EngineResult<bool>) -> Committed {
        if let Err(e) = self.check_writable() {
            return Committed { ticket: self.tickets.issued(), result: Err(e) };
        }
        let may_wait = held.is_none();
        let guard = match held.map_or_else(|| self.lock_commits(), Ok) {
            Ok(g) => g,
            Err(e) => return Committed { ticket: self.tickets.issued(), result: Err(e) },
        };
        let issued = self.tickets.issue_guarded();
        let ticket = issued.ticket;
        // The watermark's value for this commit (watermark.rs): fjall gives its batch a seqno of
        // at least this (flushes and compactions take some too, outside our lock), and recovery
        // restores the highest item seqno + 1, so `floor + 1` is never above what its surviving
        // batch gives back. Not `visible_seqno()` after it: version installs move that without
        // an item, and a commit of no keys (an empty batch) takes no seqno at all.
        let seqno_floor = self.db.inner().seqno();
        let wrote_keys = !writes.is_empty();
        self.rows.begin_commit(&writes);
        let outcome = apply(self.txns.live() > 0);
        let end = match outcome {
            Ok(true) => CommitEnd::Applied,
            Ok(false) => CommitEnd::Refused,
            Err(_) => CommitEnd::Failed,
        };
        self.rows.end_commit(writes, end);
        let result = match outcome {
            Ok(true) => {
                let visible = self.db.inner().visible_seqno();
                if wrote_keys {
                    self.last_commit_seqno.fetch_max(seqno_floor + 1, Ordering::SeqCst);
                }
                issued.written();
                Ok(visible)
            }
            // Nothing became visible: the ticket is voided, so reads do not wait for (and, once
            // the store is poisoned, fail on) an fsync nothing needs.
            Ok(false) => {
                issued.void();
                Err(EngineError::TxnConflict)
            }
            Err(e) => {
                issued.void();
                if !matches!(e, EngineError::Locked(_)) {
                    self.poison(&e);
                }
                // fjall's refusal once a flush or compaction ended its worker (`Poisoned`) says
                // nothing of why; this first refusal, the one the daemon logs as fatal, names
                // what fjall reported, as every later one does (`check_writable`).
                match e {
                    EngineError::StorageFailed(detail) => match self.ended_workers_note() {
                        Some(note) => Err(EngineError::StorageFailed(format!("{detail}; {note}"))),
                        None => Err(EngineError::StorageFailed(detail)),
                    },
                    e => Err(e),
                }
            }
        };
        if may_wait && result.is_ok() {
            self.after_waiting_commit();
        }
        drop(guard);
        Committed { ticket, result }
    }

    /// Applies non-transactional writes atomically as one commit; later writes of a key win.
    ///
    /// While no transaction is live the commit is a plain fjall write batch: fjall's optimistic
    /// oracle only serves transactions whose snapshot is older than a commit, and none can exist
    /// (LiveTxn in txn.rs). That skips the transaction's own memtable, its conflict set and the
    /// oracle's commit step, which in fjall 3.1.13 scans every transaction committed since the
    /// snapshot tracker's last GC (one per 10,000 snapshots), i.e. thousands of entries per
    /// commit: measured ~30 % of a write-heavy daemon's CPU. With a live transaction the writes
    /// go through a write transaction and the oracle as before. `held`: the commit lock, if the
    /// caller already took it (`try_lock_commits`); otherwise it is taken here.
    pub fn write_batch(&self, held: Option<MutexGuard<'_, ()>>, items: Vec<WriteItem>) -> Committed {
        // One fjall batch gives all its items one seqno, so it must not hold two writes of a key:
        // keep the last of each (as a write transaction does), and cache exactly those.
        let last = last_writes(&items, WriteItem::key);
        let writes = RowWrites::of_run(&items, &last, |item| match item {
            WriteItem::Put { key, stored, .. } => (key.clone(), Some(stored.clone())),
            WriteItem::Delete { key } => (key.clone(), None),
        });
        let mut items: Vec<WriteItem> = if last.iter().all(|&l| l) {
            items
        } else {
            items.into_iter().zip(last).filter_map(|(item, last)| last.then_some(item)).collect()
        };
        items.sort_unstable_by(|a, b| a.key().cmp(b.key()));
        let mut through_oracle = false;
        let committed = self.commit_with(held, writes, |transactions_live| {
            through_oracle = transactions_live;
            if transactions_live {
                let mut tx = self.write_tx()?;
                for item in items {
                    match item {
                        WriteItem::Put { key, stored, expiry_ms } => {
                            if let Some(at) = expiry_ms {
                                tx.insert(&self.ttl, value::ttl_index_key(at, &key), Vec::new());
                            }
                            tx.insert(&self.data, key, stored);
                        }
                        WriteItem::Delete { key } => tx.remove(&self.data, key),
                    }
                }
                let applied = tx.commit().map(|outcome| outcome.is_ok()).map_err(EngineError::from);
                if matches!(applied, Ok(true)) {
                    self.oracle_commits.fetch_add(1, Ordering::SeqCst);
                }
                return applied;
            }
            let mut batch = self.db.inner().batch().durability(Some(PersistMode::Buffer));
            for item in items {
                match item {
                    WriteItem::Put { key, stored, expiry_ms } => {
                        if let Some(at) = expiry_ms {
                            batch.insert(self.ttl.inner(), value::ttl_index_key(at, &key), Vec::new());
                        }
                        batch.insert(self.data.inner(), key, stored);
                    }
                    WriteItem::Delete { key } => batch.remove(self.data.inner(), key),
                }
            }
            batch.commit().map(|()| true).map_err(EngineError::from)
        });
        if through_oracle {
            self.pace_oracle_gc();
        }
        committed
    }

    /// Commits a plain fjall batch that `fill` builds under the commit lock, past fjall's
    /// conflict oracle even while transactions are live. Only for writes that change nothing a
    /// transaction can see: the TTL sweep's removal of values that had already expired
    /// (ttl.rs), which must not make a transaction that read or wrote such a key conflict.
    /// `fill` may read the store: under the lock every commit is visible and none can pass.
    /// An error of `fill` (a read that failed) commits nothing and is returned as it is: it is
    /// not a failed commit, so it does not poison the store. `writes`: every data key the batch
    /// may write (as commit_with).
    pub fn commit_unseen(&self, writes: RowWrites, fill: impl FnOnce(&mut fjall::OwnedWriteBatch) -> EngineResult<()>) -> Committed {
        let mut fill_error = None;
        let mut committed = self.commit_with(None, writes, |_transactions_live| {
            let mut batch = self.db.inner().batch().durability(Some(PersistMode::Buffer));
            if let Err(e) = fill(&mut batch) {
                fill_error = Some(e);
                return Ok(false); // nothing applied (commit_with voids the ticket)
            }
            batch.commit().map(|()| true).map_err(EngineError::from)
        });
        if let Some(e) = fill_error {
            committed.result = Err(e);
        }
        committed
    }
}
