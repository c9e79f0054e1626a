//! TTL space reclaim.
//!
//! Responsibility: remove keys whose expiry has passed. Reads already hide expired values (see
//! value.rs); this only gives the space back.
//!
//! How: the `ttl` keyspace holds `expiry_ms BE ‖ key` for every write that carried a TTL. A sweep
//! reads due index entries in expiry order and, in fjall write transactions committed through
//! the store's commit path, deletes the data key only if its current value still carries that
//! very expiry (the key is read through the transaction, so a concurrent overwrite conflicts and
//! wins), and deletes the index entry either way (a stale entry points at an overwritten key).
//!
//! Invariants: a live value (no expiry or a later one) is never deleted; work per call is
//! bounded by `limit` index entries.

use super::error::{EngineError, EngineResult};
use super::rowcache::RowWrites;
use super::store::Store;
use super::txn::{self, LiveTxn};
use super::value;
use fjall::{OptimisticWriteTx as WriteTransaction, Readable};
use std::ops::Bound;

const CHUNK_ENTRIES: usize = 256;

/// Removes up to `limit` expired keys; returns how many were removed.
pub fn sweep_expired(store: &Store, limit: usize) -> EngineResult<u64> {
    store.check_writable()?;
    let now = value::now_ms();
    let due = due_entries(store, now, limit)?;
    let mut removed = 0u64;
    for chunk in due.chunks(CHUNK_ENTRIES) {
        match sweep_chunk(store, chunk) {
            Ok(n) => removed += n,
            Err(EngineError::TxnConflict) => continue, // a writer won; retried next sweep
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

fn due_entries(store: &Store, now: u64, limit: usize) -> EngineResult<Vec<Vec<u8>>> {
    let snap = store.db.read_tx();
    let upper = Bound::Excluded(now.saturating_add(1).to_be_bytes().to_vec());
    let mut out = Vec::new();
    for guard in snap.range(&store.ttl, (Bound::Unbounded, upper)).take(limit) {
        out.push(guard.key()?.to_vec());
    }
    Ok(out)
}

fn sweep_chunk(store: &Store, index_keys: &[Vec<u8>]) -> EngineResult<u64> {
    SweepTx::begin(store)?.remove_expired(store, index_keys)
}

/// One sweep chunk's fjall write transaction, counted as a live transaction (txn.rs LiveTxn)
/// from before its snapshot until it is dropped. Without the count, a plain write that commits
/// while the sweep runs skips fjall's conflict oracle (`Store::write_batch`), so the sweep's
/// commit did not conflict with it and deleted a value written after the expired one: an
/// acknowledged write, lost.
struct SweepTx {
    tx: WriteTransaction,
    _live: LiveTxn,
}

impl SweepTx {
    /// Counts the sweep as live, then takes its snapshot under the commit lock: every plain
    /// write that skipped the oracle has committed before it, and every later one sees the count.
    fn begin(store: &Store) -> EngineResult<SweepTx> {
        let live = txn::hold_live(store);
        let tx = {
            let _commits = store.lock_commits()?;
            store.write_tx()?
        };
        Ok(SweepTx { tx, _live: live })
    }

    /// Deletes each indexed key whose current value still carries the indexed expiry, and every
    /// index entry; commits through the store (TxnConflict if a writer got there first).
    fn remove_expired(self, store: &Store, index_keys: &[Vec<u8>]) -> EngineResult<u64> {
        let SweepTx { mut tx, _live } = self;
        let mut removed_keys = Vec::new();
        for index_key in index_keys {
            let (at, key) = value::split_ttl_index_key(index_key)?;
            if let Some(stored) = tx.get(&store.data, key)? {
                if value::expiry_of(&stored)? == Some(at) {
                    tx.remove(&store.data, key.to_vec());
                    removed_keys.push(key.to_vec());
                }
            }
            tx.remove(&store.ttl, index_key.clone());
        }
        let removed = removed_keys.len() as u64;
        store.commit_tx(tx, RowWrites::evict(&removed_keys)).result.map(|_| removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::Engine;
    use crate::core::ops::{kind, Op};
    use crate::core::store::{Limits, OpenOptions};
    use std::sync::Arc;
    use std::time::Duration;

    fn open(dir: &std::path::Path) -> Engine {
        let limits = Limits { key_bytes_max: 64, value_bytes_max: 1024, txn_bytes_max: 1 << 20, batch_items_max: 1000, batch_bytes_max: 1 << 24 };
        Engine::open(&OpenOptions { path: dir.join("db").to_str().unwrap().into(), cache_bytes: None, row_cache_bytes: None, limits }).unwrap().0
    }

    fn put(key: &[u8], value: &[u8], ttl_ms: Option<f64>) -> Op {
        Op { kind: kind::PUT, key: Some(key.to_vec()), value: Some(value.to_vec()), ttl_ms, ..Default::default() }
    }

    fn value_of(engine: &Engine, key: &[u8]) -> Option<Vec<u8>> {
        let op = Op { kind: kind::GET, key: Some(key.to_vec()), ..Default::default() };
        engine.execute(vec![op]).unwrap().remove(0).value.expect("a get returns a value or null")
    }

    #[test]
    fn a_sweep_removes_expired_keys_and_their_index_entries_only() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path());
        engine.execute(vec![put(b"gone", b"v", Some(1.0)), put(b"kept", b"v", Some(60_000.0)), put(b"plain", b"v", None)]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(engine.sweep_expired(100).unwrap(), 1);
        assert_eq!(engine.sweep_expired(100).unwrap(), 0, "the index entry went with the key");
        assert_eq!(value_of(&engine, b"kept").as_deref(), Some(&b"v"[..]));
        assert_eq!(value_of(&engine, b"plain").as_deref(), Some(&b"v"[..]));
        let store = engine.store().unwrap();
        assert_eq!(store.db.read_tx().get(&store.data, b"gone").unwrap(), None, "its space is given back");
    }

    // Regression: the sweep's write transaction was not counted as live, so a plain overwrite
    // committed between its snapshot and its commit skipped fjall's conflict oracle, and the
    // sweep deleted the acknowledged new value.
    #[test]
    fn an_overwrite_committed_during_a_sweep_wins() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path());
        engine.execute(vec![put(b"k", b"old", Some(1.0))]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let store = engine.store().unwrap();
        let due = due_entries(&store, value::now_ms(), 100).unwrap();
        assert_eq!(due.len(), 1);
        let sweep = SweepTx::begin(&store).unwrap();
        assert!(engine.execute(vec![put(b"k", b"new", None)]).unwrap()[0].error.is_none());
        assert!(matches!(sweep.remove_expired(&store, &due), Err(EngineError::TxnConflict)));
        assert_eq!(value_of(&engine, b"k").as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn sweeps_racing_plain_overwrites_lose_none_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(open(dir.path()));
        for round in 0..4 {
            let keys: Vec<Vec<u8>> = (0..5000).map(|i| format!("r{round}-{i:05}").into_bytes()).collect();
            for chunk in keys.chunks(100) {
                let op = Op { kind: kind::PUT_BATCH, keys: Some(chunk.to_vec()), values: Some(vec![b"old".to_vec(); chunk.len()]), ttl_ms: Some(1.0), ..Default::default() };
                assert!(engine.execute(vec![op]).unwrap()[0].error.is_none());
            }
            std::thread::sleep(Duration::from_millis(5));
            let sweeper = {
                let engine = engine.clone();
                std::thread::spawn(move || while engine.sweep_expired(100_000).unwrap() > 0 {})
            };
            for key in &keys {
                assert!(engine.execute(vec![put(key, b"new", None)]).unwrap()[0].error.is_none());
            }
            sweeper.join().unwrap();
            let lost = keys.iter().filter(|k| value_of(&engine, k).as_deref() != Some(&b"new"[..])).count();
            assert_eq!(lost, 0, "round {round}: acknowledged overwrites deleted by the sweep");
        }
    }
}
