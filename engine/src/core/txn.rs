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
//! A transaction's snapshot (the fjall transaction, and the read snapshot for snapshot isolation)
//! is taken at its first operation (read, write, scan or commit), not at begin, as PostgreSQL and
//! InnoDB take theirs at the first statement: a read-modify-write's conflict window then opens
//! with its read, one round trip after begin. Begin is only a registry entry, so it never waits.
//!
//! A caller may choose a transaction's handle (the daemon does, so that a client can send the
//! transaction's first operations right behind its begin, before the begin has run); handles
//! the engine chooses are above every handle it has seen, so the two never meet.
//!
//! A commit may name how many write requests it covers (`expected_writes`): a client that sends
//! writes without waiting for their results cannot know, when it sends the commit, whether one
//! failed. Each write op that was applied whole counts one; a commit that finds a different count
//! aborts the transaction instead (TXN_WRITE_FAILED).
//!
//! Invariants: a handle is never open twice; a finished transaction (committed,
//! conflicted, aborted, too large) is removed from the registry, and the cursors opened through
//! it are closed, before its result is returned;
//! `bytes` counts keys + values written, and the reads a serializable transaction marked (its
//! conflict set: keys and range bounds, each with READ_MARK_BYTES), and never exceeds
//! `txn_bytes_max` in a live transaction;
//! the registry's `held_bytes` is the sum of `bytes` over every transaction whose state is
//! alive, and never exceeds `txn_bytes_daemon_max`: a transaction's bytes are added to it before
//! they are held and given back when its state is dropped, however it ends (commit, conflict,
//! abort, too large, idle expiry, its connection closing, the engine closing);
//! a snapshot is taken under the commit lock, after the transaction was counted as live.

use super::error::{EngineError, EngineResult};
use super::rowcache::{last_writes, RowWrites};
use super::store::{ConflictCheck, Limits, Store};
use super::value;
use super::view::{Bounds, Overlay, View};
use fjall::{OptimisticWriteTx as WriteTransaction, Readable, Slice, Snapshot};
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A transaction's list of cursors opened through it is pruned of closed ones once it holds
/// this many (the daemon lets a connection hold 64 open at once), so a transaction that opens
/// and closes cursors for its whole life keeps a bounded list.
const TXN_CURSORS_NOTED_PRUNE_AT: usize = 128;

/// Writes of keys, in order: each key with what is written to it (None: it is deleted).
pub type KeyWrites = Vec<(Vec<u8>, Option<Vec<u8>>)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    Serializable,
    Snapshot,
}

pub struct TxnState {
    /// Snapshot isolation only: the own writes (stored form), from begin.
    overlay: Option<Overlay>,
    /// The fjall transaction and read snapshot, from the first operation (`start`).
    started: Option<Started>,
    /// Keys + values written, plus the reads marked if serializable (bounded by txn_bytes_max, and
    /// with every other transaction's by txn_bytes_daemon_max).
    bytes: HeldBytes,
    /// Serializable only: bytes of the reads marked (as counted in `bytes`), which fjall's
    /// oracle checks against every transaction committed since the snapshot (`ConflictCheck`).
    read_bytes: u64,
    /// Keys written (puts and deletes).
    writes: u64,
    /// Write ops (requests) applied whole; compared with a commit's `expected_writes`.
    write_ops: u64,
    /// Serializable only: every data write in order, (key, stored value or None for a delete),
    /// for the row cache (the overlay holds these for snapshot isolation). Bounded with `bytes`
    /// by txn_bytes_max.
    written: KeyWrites,
    /// Counts this transaction as live until its commit finished or it was dropped.
    live: Option<LiveTxn>,
    /// Cursors opened through it that may still be open: they read through the transaction,
    /// so they are closed when it ends (`take`). Pruned of closed ones as it grows.
    cursors: Vec<u64>,
}

/// What a transaction reads through, once it has started.
struct Started {
    tx: WriteTransaction,
    /// Snapshot isolation only: the read snapshot, at the same seqno as `tx`.
    snap: Option<Snapshot>,
    /// `Store::oracle_commits` when the snapshot was taken (what its conflict check will cost).
    seqno: u64,
}

/// One count in `TxnRegistry::live`, from `begin` until the transaction's commit has finished or
/// its state is dropped (abort, too large, idle expiry, close). The count rises before the
/// transaction's snapshot, which is taken later under the commit lock: so a plain write that saw
/// no live transaction (it reads the count under that lock and holds the lock through its
/// commit) has committed before any live transaction's snapshot, and may skip fjall's conflict
/// oracle (`Store::write_batch`); that is the whole purpose of the count.
pub struct LiveTxn(Arc<AtomicU64>);

/// Counts a transaction as live, for as long as the returned guard lives; it must take its
/// snapshot under the commit lock after this returns.
fn hold_live(store: &Store) -> LiveTxn {
    store.txns.live.fetch_add(1, Ordering::SeqCst);
    LiveTxn(store.txns.live.clone())
}

impl Drop for LiveTxn {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The bytes one transaction holds, also counted in the registry's daemon-wide `held_bytes`
/// (shared with every other transaction), to which they are given back when this is dropped:
/// with the transaction's state, however it ends.
pub struct HeldBytes {
    own: u64,
    total: Arc<AtomicU64>,
}

impl HeldBytes {
    fn new(store: &Store) -> Self {
        HeldBytes { own: 0, total: store.txns.held_bytes.clone() }
    }

    /// Adds `added` bytes: TxnTooLarge past txn_bytes_max for this transaction, else
    /// TxnBytesDaemonLimit past txn_bytes_daemon_max for all of them together. A refused
    /// addition leaves both counts as they were.
    fn add(&mut self, added: u64, limits: &Limits) -> EngineResult<()> {
        if self.own + added > limits.txn_bytes_max {
            return Err(EngineError::TxnTooLarge { bytes: self.own + added, max: limits.txn_bytes_max });
        }
        let max = limits.txn_bytes_daemon_max;
        let claimed = self.total.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| held.checked_add(added).filter(|&sum| sum <= max));
        if let Err(held) = claimed {
            return Err(EngineError::TxnBytesDaemonLimit { held, added, max });
        }
        self.own += added;
        Ok(())
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        self.total.fetch_sub(self.own, Ordering::SeqCst);
    }
}

impl TxnState {
    /// Adds `added` bytes to what the transaction holds; TxnTooLarge past txn_bytes_max,
    /// TxnBytesDaemonLimit past txn_bytes_daemon_max (every open transaction's together).
    fn count_bytes(&mut self, store: &Store, added: u64) -> EngineResult<()> {
        self.bytes.add(added, &store.limits)
    }

    /// A serializable transaction counts `bytes` of marked reads (its conflict set, which fjall
    /// keeps until the commit) toward txn_bytes_max like its writes: a transaction reading for
    /// ever would otherwise grow without bound. Snapshot isolation marks no reads.
    fn count_read(&mut self, store: &Store, bytes: u64) -> EngineResult<()> {
        if self.overlay.is_some() {
            return Ok(());
        }
        self.count_bytes(store, bytes)?;
        self.read_bytes += bytes;
        Ok(())
    }

    /// The view to read the range `bounds` through, once the range fjall will mark in a
    /// serializable transaction is counted (`count_read`). Every range read of a transaction
    /// goes through here (run under `reading`, so one too many aborts it).
    pub fn range_view(&mut self, store: &Store, bounds: &Bounds) -> EngineResult<View<'_>> {
        self.count_read(store, range_mark_bytes(bounds))?;
        self.view(store)
    }

    /// The transaction's read view; takes its snapshot first if this is its first operation.
    /// Range reads take it from `range_view` instead.
    pub fn view(&mut self, store: &Store) -> EngineResult<View<'_>> {
        self.start(store)?;
        let started = self.started.as_ref().expect("invariant: started above");
        Ok(match (&started.snap, &self.overlay) {
            (Some(snap), Some(overlay)) => View::Iso { snap, overlay },
            _ => View::Serial(&started.tx),
        })
    }

    /// Takes the transaction's snapshot if it has none yet, under the commit lock, which it may
    /// wait for (the daemon's JS thread starts transactions with `try_start` instead).
    fn start(&mut self, store: &Store) -> EngineResult<()> {
        if self.started.is_none() {
            let commits = store.lock_commits()?;
            self.start_locked(store, &commits)?;
        }
        Ok(())
    }

    /// Takes the snapshot with the commit lock held, so no commit lands between the fjall
    /// transaction and the read snapshot, and every plain write that skipped the oracle
    /// (it saw no live transaction) has committed before it.
    fn start_locked(&mut self, store: &Store, _commits: &MutexGuard<'_, ()>) -> EngineResult<()> {
        if self.started.is_none() {
            let tx = store.write_tx()?;
            let snap = self.overlay.as_ref().map(|_| store.db.read_tx());
            self.started = Some(Started { tx, snap, seqno: store.oracle_commits.load(std::sync::atomic::Ordering::SeqCst) });
        }
        Ok(())
    }
}

/// Takes the snapshot of transaction `id` now if it has none yet, with the commit lock the
/// caller holds; None, having done nothing, if another thread holds the transaction (it never
/// waits). An unknown or finished transaction is left to the op, which reports it.
pub fn try_start(store: &Store, id: u64, commits: &MutexGuard<'_, ()>) -> Option<EngineResult<()>> {
    let Ok(handle) = store.txns.get(id) else { return Some(Ok(())) };
    let mut guard = match handle.try_lock() {
        Ok(guard) => guard,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return None,
    };
    Some(guard.as_mut().map_or(Ok(()), |state| state.start_locked(store, commits)))
}

/// True if transaction `id` exists and has not taken its snapshot yet (its next operation will).
pub fn unstarted(store: &Store, id: u64) -> bool {
    let Ok(handle) = store.txns.get(id) else { return false };
    let guard = handle.lock().unwrap_or_else(|p| p.into_inner());
    guard.as_ref().is_some_and(|state| state.started.is_none())
}

/// `None` once the transaction finished: a concurrent holder of the handle then sees
/// NOT_IN_TRANSACTION instead of a half-committed transaction.
pub type TxnHandle = Arc<Mutex<Option<TxnState>>>;

#[derive(Default)]
pub struct TxnRegistry {
    next: AtomicU64,
    open: Mutex<HashMap<u64, TxnHandle>>,
    live: Arc<AtomicU64>,
    /// Bytes every transaction whose state is alive holds together (see HeldBytes).
    held_bytes: Arc<AtomicU64>,
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

    /// Bytes all open transactions hold together (bounded by txn_bytes_daemon_max).
    pub fn held_bytes(&self) -> u64 {
        self.held_bytes.load(Ordering::SeqCst)
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

/// Removes transaction `id` from the registry and takes its state; closes its cursors, which
/// read through it (a cursor outlived its transaction in the engine before, unbounded).
fn take(store: &Store, id: u64) -> EngineResult<TxnState> {
    let handle = store.txns.remove(id).ok_or(EngineError::NotInTransaction(id))?;
    let mut guard = handle.lock().unwrap_or_else(|p| p.into_inner());
    let mut state = guard.take().ok_or(EngineError::NotInTransaction(id))?;
    for cursor in state.cursors.drain(..) {
        store.cursors.close(cursor);
    }
    Ok(state)
}

/// Records that cursor `cursor` reads through transaction `id`, so it closes when `id` ends.
/// If `id` is gone the cursor is closed now and the error returned.
pub fn note_cursor(store: &Store, id: u64, cursor: u64) -> EngineResult<()> {
    let noted = with_txn(store, id, |state| {
        if state.cursors.len() >= TXN_CURSORS_NOTED_PRUNE_AT {
            state.cursors.retain(|&open| store.cursors.is_open(open));
        }
        state.cursors.push(cursor);
        Ok(())
    });
    if noted.is_err() {
        store.cursors.close(cursor);
    }
    noted
}

/// Begins a transaction and returns its handle (`id` if the caller chose one): a registry
/// entry, counted as live; its snapshot is taken at its first operation (`TxnState::start`).
/// Never waits. A chosen handle must be above 0 and not open.
pub fn begin(store: &Store, isolation: Isolation, id: Option<u64>) -> EngineResult<u64> {
    let overlay = match isolation {
        Isolation::Serializable => None,
        Isolation::Snapshot => Some(Overlay::new()),
    };
    let mut open = store.txns.lock();
    let id = match id {
        Some(0) => return Err(EngineError::invalid("transaction handle 0 is reserved")),
        Some(id) if open.contains_key(&id) => return Err(EngineError::invalid(format!("transaction handle {id} is in use"))),
        Some(id) => {
            store.txns.next.fetch_max(id, Ordering::SeqCst);
            id
        }
        None => store.txns.next.fetch_add(1, Ordering::SeqCst) + 1,
    };
    let live = Some(hold_live(store));
    let state = TxnState { overlay, started: None, bytes: HeldBytes::new(store), read_bytes: 0, writes: 0, write_ops: 0, written: Vec::new(), live, cursors: Vec::new() };
    open.insert(id, Arc::new(Mutex::new(Some(state))));
    Ok(id)
}

/// Buffers a put (`stored` in value.rs form) or a delete (`None`) in transaction `id`.
pub fn write(store: &Store, id: u64, items: KeyWrites) -> EngineResult<()> {
    let added: u64 = items.iter().map(|(k, v)| (k.len() + v.as_ref().map_or(0, Vec::len)) as u64).sum();
    let outcome = with_txn(store, id, |state| {
        state.count_bytes(store, added)?;
        state.writes += items.len() as u64;
        for (key, stored) in items {
            apply_write(store, state, key, stored)?;
        }
        state.write_ops += 1;
        Ok(())
    });
    abort_if_too_large(store, id, outcome)
}

/// Runs a point read (`keys`) of transaction `id`: `f` on its state once a serializable
/// transaction has counted the reads fjall's conflict manager keeps until the commit
/// (`count_read`). Snapshot isolation records no reads.
pub fn read<T>(store: &Store, id: u64, keys: &[Vec<u8>], f: impl FnOnce(&mut TxnState) -> EngineResult<T>) -> EngineResult<T> {
    reading(store, id, |state| {
        state.count_read(store, keys.iter().map(|key| key_mark_bytes(key.len())).sum())?;
        f(state)
    })
}

/// Runs `f`, which reads through transaction `id` (ranges counted with `TxnState::range_view`):
/// a read that passed txn_bytes_max or txn_bytes_daemon_max aborts the transaction.
pub fn reading<T>(store: &Store, id: u64, f: impl FnOnce(&mut TxnState) -> EngineResult<T>) -> EngineResult<T> {
    let outcome = with_txn(store, id, f);
    abort_if_too_large(store, id, outcome)
}

/// What fjall's conflict manager keeps for one marked read beside its keys' bytes: a `Read`
/// (as large as two bounds) in a Vec that grows by doubling, so up to two of them, and each
/// key's heap header. Counting key bytes alone let a transaction of short keys, or of range
/// reads (counted not at all), hold many times txn_bytes_max.
pub const READ_MARK_BYTES: u64 = (2 * std::mem::size_of::<(Bound<Slice>, Bound<Slice>)>() + 2 * SLICE_HEAP_HEADER_BYTES) as u64;
/// A key's heap allocation in a fjall `Slice` (its reference count and length), counted for
/// every key, also those short enough to be stored inline.
const SLICE_HEAP_HEADER_BYTES: usize = 16;

/// Bytes a marked point read of a key of `len` bytes holds.
fn key_mark_bytes(len: usize) -> u64 {
    READ_MARK_BYTES + len as u64
}

/// Bytes a marked range read of `bounds` holds.
fn range_mark_bytes(bounds: &Bounds) -> u64 {
    let side = |bound: &Bound<Vec<u8>>| match bound {
        Bound::Included(key) | Bound::Excluded(key) => key.len() as u64,
        Bound::Unbounded => 0,
    };
    READ_MARK_BYTES + side(&bounds.0) + side(&bounds.1)
}

/// A transaction that passed txn_bytes_max, or would have passed txn_bytes_daemon_max, is
/// aborted: nothing of it may be committed later, and what it held is given back at once.
fn abort_if_too_large<T>(store: &Store, id: u64, outcome: EngineResult<T>) -> EngineResult<T> {
    if let Err(EngineError::TxnTooLarge { .. } | EngineError::TxnBytesDaemonLimit { .. }) = &outcome {
        let _ = take(store, id);
    }
    outcome
}

fn apply_write(store: &Store, state: &mut TxnState, key: Vec<u8>, stored: Option<Vec<u8>>) -> EngineResult<()> {
    state.start(store)?;
    if let Some(overlay) = &mut state.overlay {
        overlay.insert(key, stored);
        return Ok(());
    }
    state.written.push((key.clone(), stored.clone()));
    let started = state.started.as_mut().expect("invariant: started above");
    insert_write(store, &mut started.tx, key, stored)
}

/// A data write (and its TTL index entry) into a fjall transaction.
fn insert_write(store: &Store, tx: &mut WriteTransaction, key: Vec<u8>, stored: Option<Vec<u8>>) -> EngineResult<()> {
    match stored {
        Some(v) => {
            if let Some(at) = value::expiry_of(&v)? {
                tx.insert(&store.ttl, value::ttl_index_key(at, &key), Vec::new());
            }
            tx.insert(&store.data, key, v);
        }
        None => tx.remove(&store.data, key),
    }
    Ok(())
}

/// Commits transaction `id`, or aborts it if `expected_writes` is given and differs from the
/// write ops it applied (one of them failed). Returns (ticket, commit timestamp).
pub fn commit(store: &Store, id: u64, expected_writes: Option<u64>) -> (u64, EngineResult<u64>) {
    let mut state = match take(store, id) {
        Ok(state) => state,
        Err(e) => return (store.tickets.issued(), Err(e)),
    };
    if let Some(expected) = expected_writes.filter(|&n| n != state.write_ops) {
        let applied = state.write_ops;
        return (store.tickets.issued(), Err(EngineError::TxnWriteFailed { txn: id, expected, applied }));
    }
    if state.writes == 0 {
        // Read-only: nothing to validate or apply. Reported at the current visible seqno.
        return (store.tickets.issued(), Ok(store.db.inner().visible_seqno()));
    }
    // Counted as live until its commit finished: a plain write meanwhile must go through the
    // oracle, which this commit checks against.
    let live = state.live.take();
    // Its bytes stay counted until its commit finished too: the fjall transaction holds them.
    let (tx, written, held, check) = match finish_writes(store, state) {
        Ok(finished) => finished,
        Err(e) => return (store.tickets.issued(), Err(e)),
    };
    // Its rows go to the row cache after the commit, as plain writes' do (last write per key).
    let last = last_writes(&written, |(key, _)| key);
    let rows = RowWrites::of_run(&written, &last, |(key, stored)| (Slice::from(key.as_slice()), stored.as_deref().map(Slice::from)));
    let committed = store.commit_tx(tx, rows, check);
    drop(live);
    drop(held);
    (committed.ticket, committed.result)
}

/// Starts the transaction if this commit is its first operation, and for snapshot isolation
/// moves the overlay into the fjall transaction and marks each written key as read, so
/// a concurrent committed write to it makes the oracle refuse the commit. Returns the
/// transaction to commit, its data writes (key, stored value or None), the bytes it holds, and
/// what its conflict check will cost.
fn finish_writes(store: &Store, mut state: TxnState) -> EngineResult<(WriteTransaction, KeyWrites, HeldBytes, ConflictCheck)> {
    state.start(store)?;
    let TxnState { overlay, started, written, bytes, read_bytes, .. } = state;
    let Started { mut tx, seqno, .. } = started.expect("invariant: started just above");
    let Some(overlay) = overlay else { return Ok((tx, written, bytes, ConflictCheck { read_bytes, snapshot_seqno: seqno })) };
    let written: KeyWrites = overlay.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (key, stored) in overlay {
        insert_write(store, &mut tx, key, stored)?;
    }
    for (key, _) in &written {
        tx.contains_key(&store.data, key)?;
    }
    let read_bytes = written.iter().map(|(key, _)| key_mark_bytes(key.len())).sum();
    Ok((tx, written, bytes, ConflictCheck { read_bytes, snapshot_seqno: seqno }))
}

/// Discards transaction `id`.
pub fn abort(store: &Store, id: u64) -> EngineResult<()> {
    take(store, id).map(|_| ())
}
