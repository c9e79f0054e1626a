//! Tests of `execute` through a real engine: grouped plain writes, the row cache's coherence,
//! and the conflict oracle that plain writes skip only while no transaction is live.

use super::*;
use crate::core::engine::Engine;
use crate::core::store::{Limits, OpenOptions};

pub(super) fn open(dir: &std::path::Path) -> Engine {
    let limits = Limits { key_bytes_max: 64, value_bytes_max: 1024, txn_bytes_max: 1 << 20, txn_bytes_daemon_max: 1 << 40, batch_items_max: 100, batch_bytes_max: 1 << 24 };
    Engine::open(&OpenOptions { path: dir.join("db").to_str().unwrap().into(), cache_bytes: None, row_cache_bytes: None, table_files_max: None, limits }).unwrap().0
}

pub(super) fn put(key: &[u8], value: &[u8]) -> Op {
    Op { kind: kind::PUT, key: Some(key.to_vec()), value: Some(value.to_vec()), ..Default::default() }
}

/// Row-cache answers with no output budget (see `execute_bounded` for the budget).
pub(super) fn read_cached_all(engine: &Engine, ops: &[Op]) -> Option<Vec<OpOutput>> {
    engine.read_cached(ops, usize::MAX)
}

pub(super) fn get(key: &[u8]) -> Op {
    Op { kind: kind::GET, key: Some(key.to_vec()), ..Default::default() }
}

#[test]
fn consecutive_plain_writes_share_one_commit_and_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let out = engine
        .execute(vec![
            put(b"k", b"1"),
            put(&[7u8; 65], b"too long a key"),
            put(b"k", b"2"),
            Op { kind: kind::DELETE, key: Some(b"gone".to_vec()), ..Default::default() },
            get(b"k"),
            put(b"k", b"3"),
        ])
        .unwrap();
    assert_eq!(out[1].error.as_ref().map(EngineError::code), Some("KEY_TOO_LARGE"));
    assert!(out[0].error.is_none() && out[2].error.is_none() && out[3].error.is_none());
    assert_eq!(out[0].seq, out[2].seq, "one commit, one ticket for the whole run");
    assert_eq!(out[4].value, Some(Some(b"2".to_vec())), "a read sees the run before it");
    assert!(out[5].seq > out[2].seq, "a read ends the run");
    let after = engine.execute(vec![get(b"k")]).unwrap();
    assert_eq!(after[0].value, Some(Some(b"3".to_vec())));
}

fn cached_value(engine: &Engine, key: &[u8]) -> Option<Option<Vec<u8>>> {
    read_cached_all(engine, &[get(key)]).map(|mut out| out.remove(0).value.unwrap())
}

pub(super) fn get_batch(keys: &[&[u8]]) -> Op {
    Op { kind: kind::GET_BATCH, keys: Some(keys.iter().map(|k| k.to_vec()).collect()), ..Default::default() }
}

#[test]
fn the_row_cache_follows_plain_writes_transactions_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.execute(vec![put(b"a", b"1"), put(b"b", b"1")]).unwrap();
    assert_eq!(cached_value(&engine, b"a"), Some(Some(b"1".to_vec())), "written through");
    assert!(read_cached_all(&engine, &[get_batch(&[b"a", b"b"])]).is_some());
    assert!(read_cached_all(&engine, &[get_batch(&[b"a", b"nope"])]).is_none(), "one miss sends the op to storage");
    assert!(read_cached_all(&engine, &[get(b"a"), Op { txn: Some(1), ..get(b"a") }]).is_none(), "only plain reads");

    engine.execute(vec![Op { kind: kind::DELETE, key: Some(b"a".to_vec()), ..Default::default() }]).unwrap();
    assert_eq!(cached_value(&engine, b"a"), None, "a deleted row is not cached");
    assert_eq!(engine.execute(vec![get(b"a")]).unwrap()[0].value, Some(None));

    // A transaction's commit caches its rows, like a plain write's.
    let txn = engine.execute(vec![Op { kind: kind::BEGIN, isolation: Some(0), ..Default::default() }]).unwrap()[0].txn.unwrap();
    engine.execute(vec![Op { txn: Some(txn), ..put(b"b", b"2") }]).unwrap();
    assert_eq!(cached_value(&engine, b"b"), Some(Some(b"1".to_vec())), "uncommitted writes are invisible");
    let committed = engine.execute(vec![Op { kind: kind::COMMIT, txn: Some(txn), ..Default::default() }]).unwrap();
    assert!(committed[0].error.is_none());
    assert_eq!(cached_value(&engine, b"b"), Some(Some(b"2".to_vec())), "written through by the commit");

    // A storage read refills an evicted row (a TTL sweep only evicts; so does a failed commit).
    let evicted = crate::core::rowcache::RowWrites::evict(&[b"b".to_vec()]);
    engine.store().unwrap().rows.begin_commit(&evicted);
    engine.store().unwrap().rows.end_commit(evicted, crate::core::rowcache::CommitEnd::Applied);
    assert_eq!(cached_value(&engine, b"b"), None);
    assert_eq!(engine.execute(vec![get(b"b")]).unwrap()[0].value, Some(Some(b"2".to_vec())));
    assert_eq!(cached_value(&engine, b"b"), Some(Some(b"2".to_vec())), "refilled by the read");

    // An expired row stays cached in stored form but reads as missing.
    engine.execute(vec![Op { ttl_ms: Some(1.0), ..put(b"t", b"x") }]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(cached_value(&engine, b"t"), Some(None));
}

#[test]
fn a_disabled_row_cache_answers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { key_bytes_max: 64, value_bytes_max: 1024, txn_bytes_max: 1 << 20, txn_bytes_daemon_max: 1 << 40, batch_items_max: 100, batch_bytes_max: 1 << 24 };
    let engine = Engine::open(&OpenOptions { path: dir.path().join("db").to_str().unwrap().into(), cache_bytes: None, row_cache_bytes: Some(0), table_files_max: None, limits }).unwrap().0;
    engine.execute(vec![put(b"a", b"1")]).unwrap();
    engine.execute(vec![get(b"a")]).unwrap();
    assert!(read_cached_all(&engine, &[get(b"a")]).is_none());
}

/// Coherence under concurrency: one writer commits (a, b) = (i, i) atomically while readers
/// mix storage reads (which refill the cache) and cache reads. A cache read must never be
/// older than a storage read that finished before it, nor split one commit.
#[test]
fn cached_reads_are_never_stale_or_torn_under_concurrent_commits() {
    let dir = tempfile::tempdir().unwrap();
    let engine = std::sync::Arc::new(open(dir.path()));
    let number = |v: &Option<Vec<u8>>| v.as_ref().map_or(0, |v| u64::from_be_bytes(v.as_slice().try_into().unwrap()));
    const COMMITS: u64 = 10_000;
    let writer = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            for i in 1..=COMMITS {
                let v = i.to_be_bytes().to_vec();
                let op = Op { kind: kind::PUT_BATCH, keys: Some(vec![b"a".to_vec(), b"b".to_vec()]), values: Some(vec![v.clone(), v]), ..Default::default() };
                assert!(engine.execute(vec![op]).unwrap()[0].error.is_none());
            }
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let (mut hits, mut last) = (0u64, 0u64);
                while last < COMMITS {
                    let stored = number(&engine.execute(vec![get(b"a")]).unwrap()[0].value.clone().unwrap());
                    assert!(stored >= last, "storage went back from {last} to {stored}");
                    last = stored;
                    if let Some(out) = read_cached_all(&engine, &[get(b"a")]) {
                        let cached = number(out[0].value.as_ref().unwrap());
                        assert!(cached >= last, "cache served {cached} after storage showed {last}");
                        last = cached;
                        hits += 1;
                    }
                    if let Some(out) = read_cached_all(&engine, &[get_batch(&[b"a", b"b"])]) {
                        let values = out[0].values.as_ref().unwrap().decode_values();
                        assert_eq!(number(&values[0]), number(&values[1]), "a getBatch split one commit");
                    }
                }
                hits
            })
        })
        .collect();
    writer.join().unwrap();
    let hits: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(hits > 0, "the cache answered some reads");
}

/// Plain writes skip fjall's oracle only while no transaction is live; one that lands while a
/// serializable transaction is open must still make it conflict (lost update otherwise).
#[test]
fn a_plain_write_under_an_open_transaction_still_conflicts_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.execute(vec![put(b"k", b"0")]).unwrap();
    let begin = || engine.execute(vec![Op { kind: kind::BEGIN, isolation: Some(0), ..Default::default() }]).unwrap()[0].txn.unwrap();
    let txn = begin();
    assert_eq!(engine.execute(vec![Op { txn: Some(txn), ..get(b"k") }]).unwrap()[0].value, Some(Some(b"0".to_vec())));
    assert!(engine.execute(vec![put(b"k", b"plain")]).unwrap()[0].error.is_none());
    engine.execute(vec![Op { txn: Some(txn), ..put(b"k", b"from txn") }]).unwrap();
    let out = engine.execute(vec![Op { kind: kind::COMMIT, txn: Some(txn), ..Default::default() }]).unwrap();
    assert_eq!(out[0].error.as_ref().map(EngineError::code), Some("TXN_CONFLICT"));
    assert_eq!(engine.execute(vec![get(b"k")]).unwrap()[0].value, Some(Some(b"plain".to_vec())));

    // With no transaction live, plain writes take the batch path; a transaction begun
    // after them sees them and commits.
    assert_eq!(engine.store().unwrap().txns.live(), 0);
    engine.execute(vec![put(b"k", b"1"), put(b"k", b"2"), Op { kind: kind::DELETE, key: Some(b"x".to_vec()), ..Default::default() }]).unwrap();
    let txn = begin();
    assert_eq!(engine.store().unwrap().txns.live(), 1);
    assert_eq!(engine.execute(vec![Op { txn: Some(txn), ..get(b"k") }]).unwrap()[0].value, Some(Some(b"2".to_vec())));
    engine.execute(vec![Op { txn: Some(txn), ..put(b"k", b"3") }]).unwrap();
    assert!(engine.execute(vec![Op { kind: kind::COMMIT, txn: Some(txn), ..Default::default() }]).unwrap()[0].error.is_none());
    assert_eq!(engine.store().unwrap().txns.live(), 0);
    let aborted = begin();
    engine.execute(vec![Op { kind: kind::ABORT, txn: Some(aborted), ..Default::default() }]).unwrap();
    assert_eq!(engine.store().unwrap().txns.live(), 0, "an abort ends the count too");
}

pub(super) fn in_txn(op: Op, txn: u64) -> Op {
    Op { txn: Some(txn), ..op }
}

#[test]
fn memory_steps_run_without_the_pool_and_anything_else_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let store = engine.store().unwrap();
    let begin = Op { kind: kind::BEGIN, ..Default::default() };
    // Refused, having done nothing: other kinds, a mix, an empty call.
    assert!(run_in_memory(&store, vec![put(b"k", b"plain")]).is_none());
    assert!(run_in_memory(&store, vec![begin.clone(), get(b"k")]).is_none());
    assert!(run_in_memory(&store, vec![]).is_none());
    assert_eq!(store.txns.count(), 0, "a refused call began nothing");
    // A begin takes no snapshot, so it never waits for a commit: it runs while one holds the
    // commit lock, two in one call too.
    let out = {
        let _commit_running = store.lock_commits().unwrap();
        run_in_memory(&store, vec![begin.clone(), begin.clone()]).unwrap()
    };
    let txn = out[0].txn.unwrap();
    assert_eq!(out[1].txn, Some(txn + 1));
    assert!(run_in_memory(&store, vec![Op { kind: kind::ABORT, txn: Some(txn + 1), ..Default::default() }]).unwrap()[0].error.is_none());
    // A first write takes the transaction's snapshot under the commit lock: refused, untouched,
    // while a commit holds it; a later write runs regardless.
    {
        let _commit_running = store.lock_commits().unwrap();
        assert!(run_in_memory(&store, vec![in_txn(put(b"k", b"1"), txn)]).is_none());
    }
    assert_eq!(engine.execute(vec![in_txn(get(b"k"), txn)]).unwrap()[0].value, Some(None), "the refused write left nothing");
    // Writes inside the transaction: buffered, a refused one fails alone, an unknown txn fails.
    let out = {
        let _commit_running = store.lock_commits().unwrap();
        run_in_memory(&store, vec![in_txn(put(b"k", b"1"), txn), in_txn(put(&[7u8; 65], b"x"), txn), in_txn(put(b"j", b"1"), 999)]).unwrap()
    };
    assert!(out[0].error.is_none());
    assert_eq!(out[1].error.as_ref().map(EngineError::code), Some("KEY_TOO_LARGE"));
    assert_eq!(out[2].error.as_ref().map(EngineError::code), Some("NOT_IN_TRANSACTION"));
    assert_eq!(engine.execute(vec![get(b"k")]).unwrap()[0].value, Some(None), "not visible before commit");
    let committed = engine.execute(vec![Op { kind: kind::COMMIT, txn: Some(txn), ..Default::default() }]).unwrap();
    assert!(committed[0].error.is_none() && committed[0].commit_ts.is_some());
    assert_eq!(engine.execute(vec![get(b"k")]).unwrap()[0].value, Some(Some(b"1".to_vec())));
    // Abort in memory: the transaction is gone and its writes never land.
    let txn = run_in_memory(&store, vec![begin]).unwrap()[0].txn.unwrap();
    let out = run_in_memory(&store, vec![in_txn(put(b"k", b"2"), txn), Op { kind: kind::ABORT, txn: Some(txn), ..Default::default() }]).unwrap();
    assert!(out.iter().all(|o| o.error.is_none()));
    assert_eq!(store.txns.count(), 0);
    assert_eq!(engine.execute(vec![get(b"k")]).unwrap()[0].value, Some(Some(b"1".to_vec())));
}

#[test]
fn group_commit_fsyncs_the_journal_active_after_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { key_bytes_max: 64, value_bytes_max: 1 << 20, txn_bytes_max: 1 << 20, txn_bytes_daemon_max: 1 << 40, batch_items_max: 100, batch_bytes_max: 1 << 24 };
    let path = dir.path().join("db");
    let options = OpenOptions { path: path.to_str().unwrap().into(), cache_bytes: None, row_cache_bytes: None, table_files_max: None, limits };
    let engine = Engine::open(&options).unwrap().0;
    let journals = || {
        let mut ids: Vec<u64> = std::fs::read_dir(&path)
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".jnl")?.parse().ok())
            .collect();
        ids.sort();
        ids
    };
    let store = engine.store().unwrap();
    engine.execute(vec![put(b"first", b"v")]).unwrap();
    assert_eq!(store.sync().unwrap(), store.tickets.written(), "a sync covers every written ticket");
    let first = store.journal_synced();
    assert_eq!(first, journals().last().copied());
    // fjall rotates the journal at a flush once it holds over 64 MB: write 70 MiB, checkpoint.
    // Incompressible bytes (the journal may compress values).
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..70u32 {
        let value: Vec<u8> = (0..1 << 20)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        engine.execute(vec![put(format!("big{i}").as_bytes(), &value)]).unwrap();
    }
    engine.checkpoint().unwrap();
    engine.execute(vec![put(b"last", b"v")]).unwrap();
    assert_eq!(store.sync().unwrap(), store.tickets.written());
    let newest = journals().last().copied();
    assert!(newest > first, "the journal rotated: {first:?} -> {newest:?}");
    assert_eq!(store.journal_synced(), newest, "group commit follows the rotation to the newest journal");
    // And fdatasynced the journal it left once more (a rotation failing half way leaves fjall
    // appending to it).
    assert!(store.journal_left_synced() >= 1);
}

#[test]
fn a_database_closed_without_a_commit_reopens() {
    // Creating the keyspaces moves fjall's seqno without a journal entry; closing used to record
    // that seqno as durable, and the next open refused the database as damaged.
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let engine = open(dir.path());
        if round == 1 {
            engine.execute(vec![put(b"k", b"v")]).unwrap();
            engine.sync().unwrap();
        }
        engine.close().unwrap();
    }
    let engine = open(dir.path());
    assert_eq!(engine.execute(vec![get(b"k")]).unwrap()[0].value, Some(Some(b"v".to_vec())));
}

#[test]
fn write_now_commits_plain_writes_here_or_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let out = engine.write_now(vec![put(b"n", b"1"), put(&[7u8; 65], b"refused"), put(b"m", b"2")]).expect("a free commit lock");
    assert!(out[0].error.is_none() && out[2].error.is_none());
    assert_eq!(out[1].error.as_ref().map(EngineError::code), Some("KEY_TOO_LARGE"));
    assert!(out[0].seq > 0 && out[0].seq == out[2].seq, "one commit for the call, as execute makes");
    assert_eq!(engine.execute(vec![get(b"n"), get(b"m")]).unwrap()[1].value, Some(Some(b"2".to_vec())));

    // Only plain writes: a read, or a write inside a transaction, is not taken.
    assert!(engine.write_now(vec![put(b"n", b"3"), get(b"n")]).is_none());
    assert!(engine.write_now(vec![Op { txn: Some(1), ..put(b"n", b"3") }]).is_none());
    assert!(engine.write_now(Vec::new()).is_none());

    // While a commit holds the lock it waits for nothing and writes nothing.
    let store = engine.store().unwrap();
    let held = store.lock_commits().unwrap();
    assert!(engine.write_now(vec![put(b"n", b"4")]).is_none());
    drop(held);
    assert_eq!(engine.execute(vec![get(b"n")]).unwrap()[0].value, Some(Some(b"1".to_vec())));
    assert!(!store.writes_may_wait(), "a fresh store has nothing a write could wait for");

    // Nor while a checkpoint runs (it fsyncs and flushes outside the commit lock).
    let running = store.checkpoint_running();
    assert!(engine.write_now(vec![put(b"n", b"5")]).is_none());
    drop(running);
    assert!(engine.write_now(vec![put(b"n", b"5")]).is_some());
}

#[test]
fn write_now_stops_before_a_memtable_rotation_which_a_waiting_commit_makes() {
    use fjall::AbstractTree;
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let store = engine.store().unwrap();
    let value = [b'v'; 1024];
    let tree = || &store.data.inner().tree;
    // write_now fills the data memtable to 256 KiB short of its rotation (~16 MiB of 8 KiB
    // calls), then declines, without ever rotating it on the caller's thread.
    let batch = |prefix: &str, n: usize| -> Vec<Op> { (0..8).map(|i| put(format!("{prefix}{n:05}-{i}").as_bytes(), &value)).collect() };
    let mut calls = 0usize;
    while let Some(out) = engine.write_now(batch("k", calls)) {
        assert!(out.iter().all(|o| o.error.is_none()));
        calls += 1;
        assert!(calls < 4000, "write_now never declined as the memtable filled");
    }
    assert!(calls > 1000, "write_now declined after {calls} calls, long before the memtable filled");
    assert!(store.writes_may_wait());
    assert_eq!(tree().sealed_memtable_count(), 0, "nothing rotated on the caller's thread");

    // Commits that wait for the lock (a lane's) go on; the one that fills the memtable rotates
    // it, and fjall flushes it into a table.
    let mut lane_calls = 0usize;
    while tree().sealed_memtable_count() == 0 && tree().table_count() == 0 {
        assert!(engine.execute(batch("l", lane_calls)).unwrap().iter().all(|o| o.error.is_none()));
        lane_calls += 1;
        assert!(lane_calls < 1000, "no commit rotated the full memtable");
    }
    assert!(lane_calls > 16, "the memtable rotated after {lane_calls} lane calls, not at its full size");
    // Until a commit that waited sees the flush done, write_now declines (the daemon's writes
    // then go to a lane, whose commits see it); then it takes writes again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while engine.write_now(vec![put(b"again", b"2")]).is_none() {
        assert!(std::time::Instant::now() < deadline, "the rotated memtable was never flushed");
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(engine.execute(vec![put(b"after", b"1")]).unwrap()[0].error.is_none());
    }
    assert!(tree().table_count() >= 1, "the rotated memtable became a table");
    let read = engine.execute(vec![get(b"k00000-0"), get(b"l00000-7"), get(b"again")]).unwrap();
    assert_eq!(read.iter().map(|o| o.value.clone()).collect::<Vec<_>>(), [Some(Some(value.to_vec())), Some(Some(value.to_vec())), Some(Some(b"2".to_vec()))]);
}

#[test]
fn a_memtable_a_commit_rotates_out_is_freed_by_the_reaper_once_fjall_is_done_with_it() {
    use fjall::AbstractTree;
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let store = engine.store().unwrap();
    let value = [b'v'; 1024];
    let memtable_id = || store.data.inner().tree.active_memtable().id();
    let mut calls = 0usize;
    let mut fill_memtable = || {
        let filling = memtable_id();
        while memtable_id() == filling {
            let ops = (0..64).map(|i| put(format!("k{calls:05}-{i}").as_bytes(), &value)).collect();
            assert!(engine.execute(ops).unwrap().iter().all(|o| o.error.is_none()));
            calls += 1;
            assert!(calls < 2000, "no commit rotated the full memtable");
        }
    };
    // fjall holds a sealed memtable until its flush is installed and the versions naming it
    // are collected (at the next rotation after that), so until then the reaper holds it too.
    fill_memtable();
    assert_eq!(store.retired_memtables(), 1, "the rotating commit handed the memtable to the reaper");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.data.inner().tree.sealed_memtable_count() > 0 {
        assert!(std::time::Instant::now() < deadline, "the rotated memtable was never flushed");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    fill_memtable();
    assert!(store.retired_memtables() >= 1, "the second rotation handed its memtable over too");
    while store.retired_memtables() > 1 {
        assert!(std::time::Instant::now() < deadline, "the first rotated memtable was never released");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(store.data.inner().tree.table_count() >= 1, "the rotated memtable became a table");
    let read = engine.execute(vec![get(b"k00000-0"), get(format!("k{:05}-63", calls - 1).as_bytes())]).unwrap();
    assert!(read.iter().all(|o| o.value == Some(Some(value.to_vec()))), "both memtables' writes read back");
}

// Regression: an empty key passed the length check and reached fjall's batch insert, which
// asserts `!key.is_empty()` while our commit lock is held: the panic poisoned the lock and every
// later write failed with INTERNAL until restart. The daemon refuses empty keys before the
// engine (protocol/validate.ts `keyOf`), but the engine's own call surface must too. Bounds and
// prefixes (a scan's start, listPath's parent) may still be empty, as in the protocol.
#[test]
fn an_empty_key_is_refused_on_every_path_and_later_writes_still_commit() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let store = engine.store().unwrap();
    engine.execute(vec![put(b"a/b", b"0")]).unwrap();
    let empty = Vec::new();
    let delete = Op { kind: kind::DELETE, key: Some(empty.clone()), ..Default::default() };
    let put_batch = Op { kind: kind::PUT_BATCH, keys: Some(vec![b"k".to_vec(), empty.clone()]), values: Some(vec![b"1".to_vec(), b"1".to_vec()]), ..Default::default() };
    let delete_batch = Op { kind: kind::DELETE_BATCH, keys: Some(vec![empty.clone()]), ..Default::default() };
    let writes = || vec![put(&empty, b"1"), delete.clone(), put_batch.clone(), delete_batch.clone()];
    let code = |out: &OpOutput| out.error.as_ref().map(EngineError::code);
    let refused = |outputs: Vec<OpOutput>| outputs.iter().all(|o| code(o) == Some("INVALID_ARGUMENT"));
    assert!(refused(engine.execute(writes()).unwrap()), "plain writes, grouped into one run");
    assert!(refused(write_now(&store, writes()).expect("nothing makes a write wait here")), "plain writes on the caller's thread");
    assert!(refused(engine.execute(vec![get(&empty), Op { kind: kind::EXISTS, ..get(&empty) }, get_batch(&[b"a/b", b""])]).unwrap()), "reads");
    let txn = engine.execute(vec![Op { kind: kind::BEGIN, ..Default::default() }]).unwrap()[0].txn.unwrap();
    assert!(refused(engine.execute(writes().into_iter().map(|op| in_txn(op, txn)).collect()).unwrap()), "writes in a transaction");
    assert!(refused(run_in_memory(&store, writes().into_iter().map(|op| in_txn(op, txn)).collect()).unwrap()), "in a transaction, on the caller's thread");
    // The transaction and the store both still commit.
    let out = engine.execute(vec![in_txn(put(b"t", b"2"), txn), Op { kind: kind::COMMIT, txn: Some(txn), ..Default::default() }, put(b"k", b"3")]).unwrap();
    assert!(out.iter().all(|o| o.error.is_none()), "{out:?}");
    assert_eq!(engine.execute(vec![get(b"t"), get(b"k")]).unwrap().iter().map(|o| o.value.clone()).collect::<Vec<_>>(), [Some(Some(b"2".to_vec())), Some(Some(b"3".to_vec()))]);
    // An empty bound is still a bound: listPath of the root, a scan from the first key.
    let list = engine.execute(vec![Op { kind: kind::LIST_PATH, key: Some(empty.clone()), ..Default::default() }]).unwrap();
    assert_eq!(list[0].keys, Some(vec![b"a/b".to_vec(), b"k".to_vec(), b"t".to_vec()]), "{:?}", list[0].error);
    let scan = engine.execute(vec![Op { kind: kind::SCAN_OPEN, key: Some(empty.clone()), ..Default::default() }]).unwrap();
    assert_eq!(scan[0].entries.as_ref().map(|e| e.count), Some(3), "{:?}", scan[0].error);
}
