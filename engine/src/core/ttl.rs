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
use super::value;
use fjall::Readable;
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
    let mut tx = store.write_tx()?;
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
