//! Transactions: the registry of open transactions and what each one buffers.
//!
//! Responsibility: begin / write / commit / abort, for two isolation levels:
//! - Serializable: fjall's optimistic SSI as is. Reads and range reads go through the fjall
//!   `WriteTransaction`, which marks them; at commit the oracle rejects the transaction if any
//!   transaction that committed after our snapshot wrote a key we read or a key inside a range
//!   we scanned (write skew, lost updates, phantoms).
//! - Snapshot: reads go through a `Snapshot` taken at the same seqno as the fjall transaction
//!   (both are created under the store's commit lock) plus an own-write overlay, and are NOT
//!   marked. At commit the overlay is written into the fjall transaction and each written key
//!   is then marked as read (a `contains_key` that hits the transaction's own memtable), so the
//!   oracle rejects the commit iff a transaction that committed after our snapshot wrote one of
//!   our keys: first committer wins, write skew is allowed.
//!
//! Invariants: handles increase from 1 and are never reused; a finished transaction (committed,
//! conflicted, aborted, too large) is removed from the registry before its result is returned;
//! `bytes` counts keys + values written and never exceeds `txn_bytes_max` in a live transaction.

use super::error::{EngineError, EngineResult};
use super::rowcache::{last_writes, RowWrites};
use super::store::Store;
use super::value;
use super::view::{Overlay, View};
use fjall::{OptimisticWriteTx as WriteTransaction, Readable, Snapshot};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Writes of keys, in order: each key with what is written to it (None: it is deleted).
pub type KeyWrites = Vec<(Vec<u8>, Option<Vec<u8>>)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    Serializable,
    Snapshot,
}

pub struct TxnState {
    tx: WriteTransaction,
    /// Snapshot isolation only: the read snapshot and the own writes (stored form).
    iso: Option<(Snapshot, Overlay)>,
    bytes: u64,
    writes: u64,
    /// Serializable only: every data write in order, (key, stored value or None for a delete),
    /// for the row cache (the overlay holds these for snapshot isolation). Bounded with `bytes`
    /// by txn_bytes_max.
    written: KeyWrites,
    /// Counts this transaction as live until its commit finished or it was dropped.
    live: Option<LiveTxn>,
}

/// One count in `TxnRegistry::live`, from `begin` (taken under the commit lock, before the
/// transaction's snapshot) until the transaction's commit has finished or its state is dropped
/// (abort, too large, idle expiry, close). While the count is zero no transaction can have a
/// snapshot older than the next commit, so plain writes may skip fjall's conflict oracle
/// (`Store::write_batch`); that is the whole purpose of the count.
pub struct LiveTxn(Arc<AtomicU64>);

impl Drop for LiveTxn {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl TxnState {
    pub fn view(&self) -> View<'_> {
        match &self.iso {
            None => View::Serial(&self.tx),
            Some((snap, overlay)) => View::Iso { snap, overlay },
        }
    }
}

/// `None` once the transaction finished: a concurrent holder of the handle then sees
/// NOT_IN_TRANSACTION instead of a half-committed transaction.
pub type TxnHandle = Arc<Mutex<Option<TxnState>>>;

#[derive(Default)]
pub struct TxnRegistry {
    next: AtomicU64,
    open: Mutex<HashMap<u64, TxnHandle>>,
    live: Arc<AtomicU64>,
}

impl TxnRegistry {
    pub fn get(&self, id: u64) -> EngineResult<TxnHandle> {
        self.lock().get(&id).cloned().ok_or(EngineError::NotInTransaction(id))
    }

    fn remove(&self, id: u64) -> Option<TxnHandle> {
        self.lock().remove(&id)
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Transactions begun and not yet finished (see LiveTxn). Read under the commit lock.
    pub fn live(&self) -> u64 {
        self.live.load(Ordering::SeqCst)
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, TxnHandle>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs `f` on the live state of transaction `id`.
pub fn with_txn<T>(store: &Store, id: u64, f: impl FnOnce(&mut TxnState) -> EngineResult<T>) -> EngineResult<T> {
    let handle = store.txns.get(id)?;
    let mut guard = handle.lock().unwrap_or_else(|p| p.into_inner());
    match guard.as_mut() {
        Some(state) => f(state),
        None => Err(EngineError::NotInTransaction(id)),
    }
}

/// Removes transaction `id` from the registry and takes its state.
fn take(store: &Store, id: u64) -> EngineResult<TxnState> {
    let handle = store.txns.remove(id).ok_or(EngineError::NotInTransaction(id))?;
    let mut guard = handle.lock().unwrap_or_else(|p| p.into_inner());
    guard.take().ok_or(EngineError::NotInTransaction(id))
}

/// Starts a transaction and returns its handle.
pub fn begin(store: &Store, isolation: Isolation) -> EngineResult<u64> {
    let commits = store.lock_commits()?;
    begin_locked(store, isolation, commits)
}

/// `begin` with the commit lock already held by the caller (`commits`, released here once the
/// snapshot is taken).
pub fn begin_locked(store: &Store, isolation: Isolation, commits: MutexGuard<'_, ()>) -> EngineResult<u64> {
    // Under the commit lock: the live count rises before the snapshot is taken, so a plain write
    // that saw no live transaction has committed before this snapshot (see LiveTxn); and for
    // snapshot isolation no commit lands between the transaction and its read snapshot.
    store.txns.live.fetch_add(1, Ordering::SeqCst);
    let live = Some(LiveTxn(store.txns.live.clone()));
    let tx = store.write_tx()?;
    let iso = match isolation {
        Isolation::Serializable => None,
        Isolation::Snapshot => Some((store.db.read_tx(), Overlay::new())),
    };
    drop(commits);
    let state = TxnState { tx, iso, bytes: 0, writes: 0, written: Vec::new(), live };
    let id = store.txns.next.fetch_add(1, Ordering::SeqCst) + 1;
    store.txns.lock().insert(id, Arc::new(Mutex::new(Some(state))));
    Ok(id)
}

/// Buffers a put (`stored` in value.rs form) or a delete (`None`) in transaction `id`.
pub fn write(store: &Store, id: u64, items: KeyWrites) -> EngineResult<()> {
    let added: u64 = items.iter().map(|(k, v)| (k.len() + v.as_ref().map_or(0, Vec::len)) as u64).sum();
    let outcome = with_txn(store, id, |state| {
        if state.bytes + added > store.limits.txn_bytes_max {
            return Err(EngineError::TxnTooLarge { bytes: state.bytes + added, max: store.limits.txn_bytes_max });
        }
        state.bytes += added;
        state.writes += items.len() as u64;
        for (key, stored) in items {
            apply_write(store, state, key, stored)?;
        }
        Ok(())
    });
    if let Err(EngineError::TxnTooLarge { .. }) = &outcome {
        let _ = take(store, id); // aborted: nothing of it may be committed later
    }
    outcome
}

fn apply_write(store: &Store, state: &mut TxnState, key: Vec<u8>, stored: Option<Vec<u8>>) -> EngineResult<()> {
    if let Some((_, overlay)) = &mut state.iso {
        overlay.insert(key, stored);
        return Ok(());
    }
    state.written.push((key.clone(), stored.clone()));
    match stored {
        Some(v) => {
            if let Some(at) = value::expiry_of(&v)? {
                state.tx.insert(&store.ttl, value::ttl_index_key(at, &key), Vec::new());
            }
            state.tx.insert(&store.data, key, v);
        }
        None => state.tx.remove(&store.data, key),
    }
    Ok(())
}

/// Commits transaction `id`. Returns (ticket, commit timestamp).
pub fn commit(store: &Store, id: u64) -> (u64, EngineResult<u64>) {
    let mut state = match take(store, id) {
        Ok(state) => state,
        Err(e) => return (store.tickets.issued(), Err(e)),
    };
    if state.writes == 0 {
        // Read-only: nothing to validate or apply. Reported at the current visible seqno.
        return (store.tickets.issued(), Ok(store.db.inner().visible_seqno()));
    }
    // Counted as live until its commit finished: a plain write meanwhile must go through the
    // oracle, which this commit checks against.
    let live = state.live.take();
    let (tx, written) = match finish_snapshot_writes(store, state) {
        Ok(finished) => finished,
        Err(e) => return (store.tickets.issued(), Err(e)),
    };
    // Its rows go to the row cache after the commit, as plain writes' do (last write per key).
    let last = last_writes(&written, |(key, _)| key);
    let rows = RowWrites::of_run(&written, &last, |(key, stored)| (key.as_slice(), stored.as_deref()));
    let committed = store.commit_tx(tx, rows);
    drop(live);
    (committed.ticket, committed.result)
}

/// For snapshot isolation, moves the overlay into the fjall transaction and marks each written
/// key as read, so a concurrent committed write to it makes the oracle refuse the commit.
/// Returns the transaction to commit and its data writes (key, stored value or None).
fn finish_snapshot_writes(store: &Store, state: TxnState) -> EngineResult<(WriteTransaction, KeyWrites)> {
    let TxnState { mut tx, iso, written, .. } = state;
    let Some((_snap, overlay)) = iso else { return Ok((tx, written)) };
    let written: KeyWrites = overlay.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (key, stored) in overlay {
        match stored {
            Some(v) => {
                if let Some(at) = value::expiry_of(&v)? {
                    tx.insert(&store.ttl, value::ttl_index_key(at, &key), Vec::new());
                }
                tx.insert(&store.data, key, v);
            }
            None => tx.remove(&store.data, key),
        }
    }
    for (key, _) in &written {
        tx.contains_key(&store.data, key)?;
    }
    Ok((tx, written))
}

/// Discards transaction `id`.
pub fn abort(store: &Store, id: u64) -> EngineResult<()> {
    take(store, id).map(|_| ())
}
