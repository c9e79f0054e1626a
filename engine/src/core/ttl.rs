//! TTL space reclaim.
//!
//! Responsibility: remove keys whose expiry has passed. Reads already hide expired values (see
//! value.rs); this only gives the space back.
//!
//! How: the `ttl` keyspace holds `expiry_ms BE ‖ key` for every write that carried a TTL. A sweep
//! reads due index entries in expiry order and, in chunks, each chunk one commit under the
//! store's commit lock, deletes the data key only if its current value (read under that lock)
//! still carries that very expiry, and deletes the index entry either way (a stale entry
//! points at an overwritten key), except the entry of a key written again with that very expiry
//! between the two reads, or of a value a clock that stepped back shows live again, which stays
//! for a later sweep. The commit bypasses fjall's conflict
//! oracle: removing a value that had already expired changes nothing a transaction can see, so
//! it never makes one conflict.
//!
//! Invariants: a live value (no expiry or a later one) is never deleted; work per call is
//! bounded by `limit` index entries.

use super::error::EngineResult;
use super::rowcache::RowWrites;
use super::store::Store;
use super::value;
use fjall::Readable;
use std::ops::Bound;

/// Index entries per commit. A chunk's values are read again under the commit lock, which every
/// writer waits for, so chunks are small (256 held the lock 1.7 ms with a warm block cache,
/// 9-21 ms with a cold one, in review).
const CHUNK_ENTRIES: usize = 32;

#[cfg(test)]
thread_local! {
    /// Test hook: run by `sweep_chunk` on its own thread between its read outside the commit
    /// lock and its commit (a write landing in that window, deterministically).
    static BEFORE_COMMIT: std::cell::RefCell<Option<Box<dyn FnOnce()>>> = const { std::cell::RefCell::new(None) };
}

/// What one sweep did: keys removed, and due index entries it went through (out-of-date ones,
/// of keys overwritten or given another TTL since, are dropped without removing a key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Swept {
    pub removed: u64,
    pub examined: u64,
}

/// Goes through up to `limit` due index entries, removing the keys that are still expired. A
/// caller catching up runs again while `examined` reaches `limit` (not `removed`: a round of
/// out-of-date entries removes fewer keys, and stopping there left a backlog behind them).
pub fn sweep_expired(store: &Store, limit: usize) -> EngineResult<Swept> {
    store.check_writable()?;
    let now = value::now_ms();
    let due = due_entries(store, now, limit)?;
    let mut removed = 0u64;
    for chunk in due.chunks(CHUNK_ENTRIES) {
        removed += sweep_chunk(store, chunk)?;
    }
    Ok(Swept { removed, examined: due.len() as u64 })
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

/// Deletes each indexed key whose current value still carries the indexed expiry, and every
/// index entry but those of keys written again with their expiry after the first read, or whose
/// expiry a clock that stepped back has not reached (below), as one commit past fjall's
/// conflict oracle (Store::commit_unseen): the values
/// had expired, so their removal changes nothing a transaction could see, and a transaction
/// that read or wrote such a key must not conflict with it. The values are read first from a
/// snapshot, outside the commit lock (which drops keys overwritten since and brings the rest
/// into the block cache), then again under it, so a write committed before the sweep's read
/// wins, and none can come between the read and the delete. An index entry or a value that
/// cannot be decoded does not stop the sweep: its key is left as it is (a read of it reports
/// CORRUPTION) and the index entry goes.
fn sweep_chunk(store: &Store, index_keys: &[Vec<u8>]) -> EngineResult<u64> {
    let snap = store.db.read_tx();
    let mut candidates = Vec::with_capacity(index_keys.len());
    let mut listed = vec![false; index_keys.len()];
    for (index_key, listed) in index_keys.iter().zip(&mut listed) {
        if let Ok((at, key)) = value::split_ttl_index_key(index_key) {
            if carries_expiry(&snap, store, key, at)? {
                candidates.push(key.to_vec());
                *listed = true;
            }
        }
    }
    drop(snap);
    #[cfg(test)]
    if let Some(hook) = BEFORE_COMMIT.with(|hook| hook.borrow_mut().take()) {
        hook();
    }
    let mut removed = 0u64;
    // The row cache stops answering every key to delete before the commit.
    store
        .commit_unseen(RowWrites::evict(&candidates), |batch| {
            let snap = store.db.read_tx();
            // Read again: the wall clock may have stepped back since the entries were listed.
            let now = value::now_ms();
            for (index_key, &listed) in index_keys.iter().zip(&listed) {
                if let Ok((at, key)) = value::split_ttl_index_key(index_key) {
                    if carries_expiry(&snap, store, key, at)? {
                        // The entry is its value's own. A key that was not a candidate above
                        // was written since with that very expiry (a transaction computes its
                        // expiry at its write and may commit after it passed): the entry (the
                        // same bytes) stays for the next sweep, or that value would never be
                        // reclaimed; so does one whose expiry is ahead of a clock that stepped
                        // back (the value reads as live again).
                        if !listed || at > now {
                            continue;
                        }
                        batch.remove(store.data.inner(), key.to_vec());
                        removed += 1;
                    }
                }
                batch.remove(store.ttl.inner(), index_key.clone());
            }
            Ok(())
        })
        .result
        .map(|_| removed)
}

/// True if `key`'s value in `snap` still carries expiry `at`; false for a value that cannot be
/// decoded, which the sweep leaves alone.
fn carries_expiry(snap: &fjall::Snapshot, store: &Store, key: &[u8], at: u64) -> EngineResult<bool> {
    Ok(match snap.get(&store.data, key)? {
        Some(stored) => matches!(value::expiry_of(&stored), Ok(Some(expiry)) if expiry == at),
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::Engine;
    use crate::core::ops::{kind, Op};
    use crate::core::store::{Limits, OpenOptions, WriteItem};
    use fjall::Slice;
    use std::sync::Arc;
    use std::time::Duration;

    fn open(dir: &std::path::Path) -> Engine {
        let limits = Limits { key_bytes_max: 64, value_bytes_max: 1024, txn_bytes_max: 1 << 20, txn_bytes_daemon_max: 1 << 40, batch_items_max: 1000, batch_bytes_max: 1 << 24 };
        Engine::open(&OpenOptions { path: dir.join("db").to_str().unwrap().into(), cache_bytes: None, row_cache_bytes: None, table_files_max: None, limits }).unwrap().0
    }

    fn put(key: &[u8], value: &[u8], ttl_ms: Option<f64>) -> Op {
        Op { kind: kind::PUT, key: Some(key.to_vec()), value: Some(value.to_vec()), ttl_ms, ..Default::default() }
    }

    fn value_of(engine: &Engine, key: &[u8]) -> Option<Vec<u8>> {
        let op = Op { kind: kind::GET, key: Some(key.to_vec()), ..Default::default() };
        engine.execute(vec![op]).unwrap().remove(0).value.expect("a get returns a value or null")
    }

    // Review: the daemon swept again at once only while a round removed `limit` keys, so one
    // out-of-date index entry (its key overwritten since) in a round left the rest of a backlog
    // for later ticks. A sweep says how many due entries it went through.
    #[test]
    fn a_sweep_counts_the_out_of_date_entries_it_goes_through() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path());
        let ops = vec![put(b"a", b"1", Some(1.0)), put(b"b", b"1", Some(1.0)), put(b"c", b"1", Some(1.0))];
        assert!(engine.execute(ops).unwrap().iter().all(|o| o.error.is_none()));
        assert!(engine.execute(vec![put(b"b", b"2", None)]).unwrap()[0].error.is_none()); // b's entry is out of date
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(engine.sweep_expired(3).unwrap(), Swept { removed: 2, examined: 3 });
        assert_eq!(engine.sweep_expired(3).unwrap(), Swept { removed: 0, examined: 0 });
        assert_eq!(value_of(&engine, b"b"), Some(b"2".to_vec()));
    }

    #[test]
    fn a_sweep_removes_expired_keys_and_their_index_entries_only() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path());
        engine.execute(vec![put(b"gone", b"v", Some(1.0)), put(b"kept", b"v", Some(60_000.0)), put(b"plain", b"v", None)]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(engine.sweep_expired(100).unwrap().removed, 1);
        assert_eq!(engine.sweep_expired(100).unwrap().removed, 0, "the index entry went with the key");
        assert_eq!(value_of(&engine, b"kept").as_deref(), Some(&b"v"[..]));
        assert_eq!(value_of(&engine, b"plain").as_deref(), Some(&b"v"[..]));
        let store = engine.store().unwrap();
        assert_eq!(store.db.read_tx().get(&store.data, b"gone").unwrap(), None, "its space is given back");
    }

    fn txn_op(kind: u32, txn: u64) -> Op {
        Op { kind, txn: Some(txn), ..Default::default() }
    }

    fn begin(engine: &Engine, isolation: u32) -> u64 {
        engine.execute(vec![Op { kind: kind::BEGIN, isolation: Some(isolation), ..Default::default() }]).unwrap()[0].txn.unwrap()
    }

    // Regression: the sweep's deletes were commits through fjall's conflict oracle, so a
    // transaction that had read or written a key which had already expired failed with
    // TXN_CONFLICT once the sweep removed it, although nothing it could see had changed.
    #[test]
    fn a_sweep_never_makes_a_transaction_over_an_expired_key_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path());
        for isolation in [0u32, 1] {
            let (read_key, written_key) = (format!("read{isolation}").into_bytes(), format!("written{isolation}").into_bytes());
            engine.execute(vec![put(&read_key, b"old", Some(1.0)), put(&written_key, b"old", Some(1.0))]).unwrap();
            std::thread::sleep(Duration::from_millis(5));
            let txn = begin(&engine, isolation);
            let get = |key: &[u8]| Op { kind: kind::GET, key: Some(key.to_vec()), txn: Some(txn), ..Default::default() };
            let read = engine.execute(vec![get(&read_key), get(&written_key)]).unwrap();
            assert_eq!((read[0].value.clone(), read[1].value.clone()), (Some(None), Some(None)), "expired reads as absent");
            let mut write = put(&written_key, b"new", None);
            write.txn = Some(txn);
            assert!(engine.execute(vec![write]).unwrap()[0].error.is_none());
            assert_eq!(engine.sweep_expired(100).unwrap().removed, 2, "isolation {isolation}: both expired values removed");
            let committed = engine.execute(vec![txn_op(kind::COMMIT, txn)]).unwrap();
            assert!(committed[0].error.is_none(), "isolation {isolation}: {:?}", committed[0].error);
            assert_eq!(value_of(&engine, &written_key).as_deref(), Some(&b"new"[..]));
            assert_eq!(value_of(&engine, &read_key), None);
        }
    }

    // A plain overwrite committed after the sweep listed a due entry wins: the sweep reads the
    // current value under the commit lock and finds a value without that expiry.
    #[test]
    fn an_overwrite_committed_after_the_sweep_listed_the_key_wins() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path());
        engine.execute(vec![put(b"k", b"old", Some(1.0))]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let store = engine.store().unwrap();
        let due = due_entries(&store, value::now_ms(), 100).unwrap();
        assert_eq!(due.len(), 1);
        assert!(engine.execute(vec![put(b"k", b"new", None)]).unwrap()[0].error.is_none());
        assert_eq!(sweep_chunk(&store, &due).unwrap(), 0, "nothing removed");
        assert_eq!(value_of(&engine, b"k").as_deref(), Some(&b"new"[..]));
        assert!(due_entries(&store, value::now_ms(), 100).unwrap().is_empty(), "the stale index entry went");
    }

    // Regression (from review): the sweep read values inside its commit, and a value it could
    // not decode failed that commit, which poisons the store: every write refused until
    // restart, and again within a second of each restart, as the same entry came due.
    #[test]
    fn a_value_the_sweep_cannot_decode_is_left_alone_and_the_store_stays_writable() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path());
        engine.execute(vec![put(b"fine", b"v", Some(1.0))]).unwrap();
        let store = engine.store().unwrap();
        let at = value::now_ms();
        let mut batch = store.db.inner().batch();
        batch.insert(store.data.inner(), "bad", vec![0xEEu8, 0x01, 0x02]);
        batch.insert(store.ttl.inner(), value::ttl_index_key(at, b"bad"), Vec::new());
        batch.insert(store.ttl.inner(), vec![0x01], Vec::new()); // an index entry too short to hold a key
        batch.commit().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(engine.sweep_expired(100).unwrap().removed, 1, "the decodable expired key is removed");
        assert!(store.check_writable().is_ok(), "the store is not poisoned");
        assert!(engine.execute(vec![put(b"later", b"x", None)]).unwrap()[0].error.is_none());
        let read = engine.execute(vec![Op { kind: kind::GET, key: Some(b"bad".to_vec()), ..Default::default() }]).unwrap();
        assert_eq!(read[0].error.as_ref().map(|e| e.code()), Some("CORRUPTION"), "the bad value is left for reads to report");
        assert!(due_entries(&store, value::now_ms(), 100).unwrap().is_empty(), "both bad index entries went");
    }

    // Review: under the commit lock the sweep re-read only the keys whose value still carried
    // the indexed expiry in its read outside the lock, yet removed every listed index entry. A
    // key written between the two with that very expiry (a transaction computes its expiry at
    // its write and may commit after it passed) lost its index entry, which has the same bytes,
    // while its value stayed: read as absent, never reclaimed.
    #[test]
    fn a_key_rewritten_with_the_indexed_expiry_during_a_sweep_is_still_reclaimed() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(open(dir.path()));
        let store = engine.store().unwrap();
        let at = value::now_ms() - 1000; // an expiry already past
        let plain_put = WriteItem::Put { key: Slice::from(&b"k"[..]), stored: value::encode_slice(b"old", Some(at)), expiry_ms: Some(at) };
        assert!(store.write_batch(None, vec![plain_put]).result.is_ok());
        assert!(engine.execute(vec![Op { kind: kind::DELETE, key: Some(b"k".to_vec()), ..Default::default() }]).unwrap()[0].error.is_none());
        // A transaction wrote k with a TTL that ended at that same ms, and has not committed.
        let txn = begin(&engine, 0);
        crate::core::txn::write(&store, txn, vec![(b"k".to_vec(), Some(value::encode(b"new", Some(at))))]).unwrap();
        let due = due_entries(&store, value::now_ms(), 100).unwrap();
        assert_eq!(due, vec![value::ttl_index_key(at, b"k")], "the stale entry of the deleted value is due");
        // The transaction commits after the sweep read k (deleted) and before its commit.
        let committer = engine.clone();
        BEFORE_COMMIT.with(|hook| {
            *hook.borrow_mut() = Some(Box::new(move || {
                let committed = committer.execute(vec![txn_op(kind::COMMIT, txn)]).unwrap();
                assert!(committed[0].error.is_none(), "{:?}", committed[0].error);
            }))
        });
        sweep_chunk(&store, &due).unwrap();
        assert!(BEFORE_COMMIT.with(|hook| hook.borrow().is_none()), "the hook ran");
        assert_eq!(value_of(&engine, b"k"), None, "k's value is expired");
        engine.sweep_expired(100).unwrap();
        assert_eq!(store.db.read_tx().get(&store.data, b"k").unwrap(), None, "k's expired value is reclaimed");
    }

    // Review: the sweep compared expiries with the clock only when it listed the entries; a
    // wall clock stepping back before its commit made it delete values reads showed live again.
    // Under the commit lock it reads the clock again and leaves such a value and its entry.
    #[test]
    fn a_value_whose_expiry_the_clock_has_not_reached_at_the_commit_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path());
        engine.execute(vec![put(b"k", b"v", Some(60_000.0))]).unwrap();
        let store = engine.store().unwrap();
        // As if listed at a clock reading a minute ahead of the one at the commit.
        let listed = due_entries(&store, value::now_ms() + 120_000, 100).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(sweep_chunk(&store, &listed).unwrap(), 0, "nothing removed");
        assert_eq!(value_of(&engine, b"k").as_deref(), Some(&b"v"[..]));
        assert_eq!(due_entries(&store, value::now_ms() + 120_000, 100).unwrap(), listed, "its index entry stays");
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
                std::thread::spawn(move || while engine.sweep_expired(100_000).unwrap().removed > 0 {})
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
