//! Tests of transactions through `execute`: where a snapshot is taken, handles a caller
//! chooses, commits that count their writes, the cursors a transaction owns, and what its reads
//! hold toward txnBytesMax.

use super::tests::{get, in_txn, open, put};
use super::*;
use crate::core::txn::READ_MARK_BYTES;
use crate::core::engine::Engine;
use crate::core::store::{Limits, OpenOptions};

#[test]
fn a_transaction_takes_its_snapshot_at_its_first_read_and_replays_writes_made_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let op = |kind, txn| Op { kind, txn: Some(txn), ..Default::default() };
    let begin = |isolation| engine.execute(vec![Op { kind: kind::BEGIN, isolation: Some(isolation), ..Default::default() }]).unwrap()[0].txn.unwrap();
    engine.execute(vec![put(b"k", b"1")]).unwrap();
    for isolation in [0u32, 1] {
        // A commit between begin and the first read is seen, and does not conflict.
        let txn = begin(isolation);
        engine.execute(vec![put(b"k", b"2")]).unwrap();
        let read = engine.execute(vec![in_txn(get(b"k"), txn)]).unwrap();
        assert_eq!(read[0].value, Some(Some(b"2".to_vec())), "isolation {isolation}");
        engine.execute(vec![in_txn(put(b"k", b"3"), txn)]).unwrap();
        assert!(engine.execute(vec![op(kind::COMMIT, txn)]).unwrap()[0].error.is_none(), "isolation {isolation}");
        // A commit between the first read and the commit conflicts, as before.
        let txn = begin(isolation);
        engine.execute(vec![in_txn(get(b"k"), txn)]).unwrap();
        engine.execute(vec![put(b"k", b"4")]).unwrap();
        engine.execute(vec![in_txn(put(b"k", b"5"), txn)]).unwrap();
        let committed = engine.execute(vec![op(kind::COMMIT, txn)]).unwrap();
        assert_eq!(committed[0].error.as_ref().map(EngineError::code), Some("TXN_CONFLICT"), "isolation {isolation}");
        // Writes before the first read are the transaction's own: read back, then committed.
        let txn = begin(isolation);
        engine.execute(vec![in_txn(put(b"w", b"6"), txn), in_txn(Op { kind: kind::DELETE, key: Some(b"k".to_vec()), ..Default::default() }, txn)]).unwrap();
        let read = engine.execute(vec![in_txn(get(b"w"), txn), in_txn(get(b"k"), txn)]).unwrap();
        assert_eq!((read[0].value.clone(), read[1].value.clone()), (Some(Some(b"6".to_vec())), Some(None)), "isolation {isolation}");
        assert!(engine.execute(vec![op(kind::COMMIT, txn)]).unwrap()[0].error.is_none());
        assert_eq!(engine.execute(vec![get(b"w"), get(b"k")]).unwrap().iter().map(|o| o.value.clone()).collect::<Vec<_>>(), vec![Some(Some(b"6".to_vec())), Some(None)]);
        // A write-only transaction starts at its commit and commits.
        let txn = begin(isolation);
        engine.execute(vec![in_txn(put(b"k", b"1"), txn)]).unwrap();
        assert!(engine.execute(vec![op(kind::COMMIT, txn)]).unwrap()[0].error.is_none());
        assert_eq!(engine.execute(vec![get(b"k")]).unwrap()[0].value, Some(Some(b"1".to_vec())));
    }
}

/// The daemon chooses transaction handles so that a client may send a transaction's first
/// operations right behind its begin: a chosen handle is used as is, one in use is refused,
/// and handles the engine chooses stay above every chosen one.
#[test]
fn a_begin_takes_the_handle_its_caller_chose() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.execute(vec![put(b"k", b"0")]).unwrap();
    let begin = |txn: Option<u64>| Op { kind: kind::BEGIN, txn, ..Default::default() };
    let out = engine.execute(vec![begin(Some(40)), in_txn(get(b"k"), 40), begin(Some(40)), begin(Some(0)), begin(None)]).unwrap();
    assert_eq!(out[0].txn, Some(40));
    assert_eq!(out[1].value, Some(Some(b"0".to_vec())), "an op right behind its begin runs in it");
    assert_eq!(out[2].error.as_ref().map(EngineError::code), Some("INVALID_ARGUMENT"), "40 is open");
    assert_eq!(out[3].error.as_ref().map(EngineError::code), Some("INVALID_ARGUMENT"), "0 is reserved");
    assert_eq!(out[4].txn, Some(41), "the engine's own handles stay above chosen ones");
    let store = engine.store().unwrap();
    assert_eq!(store.txns.count(), 2);
    // In memory (the daemon's JS thread), a write into a transaction begun by the same call is
    // left to the pool: it would take its snapshot under the commit lock after the begin.
    assert!(run_in_memory(&store, vec![begin(Some(7)), in_txn(put(b"k", b"1"), 7)]).is_none());
    assert_eq!(store.txns.count(), 2, "a refused call began nothing");
    let out = run_in_memory(&store, vec![begin(Some(7)), in_txn(put(b"k", b"1"), 40)]).unwrap();
    assert_eq!((out[0].txn, out[1].error.is_none()), (Some(7), true));
}

/// A commit sent right behind writes it did not wait for names how many write requests it
/// covers; if one of them failed, it aborts instead of committing the rest.
#[test]
fn a_commit_that_counts_its_writes_commits_only_if_all_were_applied() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let begin = |txn: u64| Op { kind: kind::BEGIN, txn: Some(txn), ..Default::default() };
    let commit = |txn: u64, writes: Option<f64>| Op { kind: kind::COMMIT, txn: Some(txn), writes, ..Default::default() };
    let too_long = vec![b'x'; 65];
    let out = engine.execute(vec![
        begin(1),
        in_txn(put(b"a", b"1"), 1),
        in_txn(put(&too_long, b"1"), 1),
        in_txn(put(b"b", b"1"), 1),
        commit(1, Some(3.0)),
    ]).unwrap();
    assert_eq!(out[2].error.as_ref().map(EngineError::code), Some("KEY_TOO_LARGE"));
    assert_eq!(out[4].error.as_ref().map(EngineError::code), Some("TXN_WRITE_FAILED"));
    assert!(out[4].error.as_ref().unwrap().to_string().contains("3 write requests, but only 2 of them were applied"));
    assert_eq!(engine.execute(vec![get(b"a"), get(b"b")]).unwrap().iter().map(|o| o.value.clone()).collect::<Vec<_>>(), vec![Some(None), Some(None)]);
    assert_eq!(engine.store().unwrap().txns.count(), 0, "the transaction is gone");

    // The same count with every write applied commits; a batch counts as one request.
    let batch = Op { kind: kind::PUT_BATCH, keys: Some(vec![b"c".to_vec(), b"d".to_vec()]), values: Some(vec![b"2".to_vec(), b"2".to_vec()]), ..Default::default() };
    let out = engine.execute(vec![begin(2), in_txn(put(b"a", b"2"), 2), in_txn(batch, 2), commit(2, Some(2.0))]).unwrap();
    assert!(out[3].error.is_none() && out[3].commit_ts.is_some());
    assert_eq!(engine.execute(vec![get(b"d")]).unwrap()[0].value, Some(Some(b"2".to_vec())));
    // Without a count, a commit keeps the writes that were applied, as before.
    let out = engine.execute(vec![begin(3), in_txn(put(&too_long, b"1"), 3), in_txn(put(b"e", b"3"), 3), commit(3, None)]).unwrap();
    assert!(out[3].error.is_none());
    assert_eq!(engine.execute(vec![get(b"e")]).unwrap()[0].value, Some(Some(b"3".to_vec())));
    let out = engine.execute(vec![begin(4), commit(4, Some(-1.0))]).unwrap();
    assert_eq!(out[1].error.as_ref().map(EngineError::code), Some("INVALID_ARGUMENT"));
    // More writes applied than the commit names fails too, and the message says so (it said
    // "but 2 of them were applied (the others failed)" for a commit naming 1).
    let out = engine.execute(vec![begin(5), in_txn(put(b"f", b"5"), 5), in_txn(put(b"g", b"5"), 5), commit(5, Some(1.0))]).unwrap();
    assert_eq!(out[3].error.as_ref().map(EngineError::code), Some("TXN_WRITE_FAILED"));
    assert!(out[3].error.as_ref().unwrap().to_string().contains("covering 1 write request, but the transaction applied 2 write requests;"));
    assert_eq!(engine.execute(vec![get(b"f")]).unwrap()[0].value, Some(None));
}

/// Cursors read through their transaction, so they close when it ends: before, a commit or an
/// abort left them open in the engine for good (one client looping begin, scan, commit grew
/// the daemon without bound).
#[test]
fn a_transaction_closes_its_cursors_when_it_commits_or_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.execute(vec![put(b"s1", b"1"), put(b"s2", b"2"), put(b"s3", b"3")]).unwrap();
    let store = engine.store().unwrap();
    let scan = |txn: Option<u64>| Op { kind: kind::SCAN_OPEN, key: Some(b"s".to_vec()), batch_items: Some(1.0), txn, ..Default::default() };
    let plain = engine.execute(vec![scan(None)]).unwrap()[0].cursor.unwrap();
    for end in [kind::COMMIT, kind::ABORT] {
        let txn = engine.execute(vec![Op { kind: kind::BEGIN, ..Default::default() }]).unwrap()[0].txn.unwrap();
        let out = engine.execute(vec![scan(Some(txn)), scan(Some(txn)), in_txn(put(b"w", b"x"), txn)]).unwrap();
        let cursors = [out[0].cursor.unwrap(), out[1].cursor.unwrap()];
        assert_eq!(store.cursors.count(), 3);
        let next = Op { kind: kind::SCAN_CLOSE, cursor: Some(cursors[1]), ..Default::default() };
        assert!(engine.execute(vec![next]).unwrap()[0].error.is_none(), "one closed early by its client");
        assert!(engine.execute(vec![Op { kind: end, txn: Some(txn), ..Default::default() }]).unwrap()[0].error.is_none());
        assert_eq!(store.cursors.count(), 1, "only the cursor outside the transaction is left");
        let late = Op { kind: kind::SCAN_NEXT, cursor: Some(cursors[0]), ..Default::default() };
        assert_eq!(engine.execute(vec![late]).unwrap()[0].error.as_ref().map(EngineError::code), Some("CURSOR_NOT_FOUND"));
    }
    assert!(store.cursors.is_open(plain));
}

/// A transaction that ends while one of its cursors is out for a read (a scanNext or the
/// daemon's read-ahead on another thread) closes that cursor too, once the read ends: it was put
/// back idle before, and stayed in the registry (and in `cursors.open`) until its client closed
/// it or asked for it.
#[test]
fn a_cursor_being_read_when_its_transaction_ends_ends_with_that_read() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.execute(vec![put(b"s1", b"1"), put(b"s2", b"2"), put(b"s3", b"3")]).unwrap();
    let store = engine.store().unwrap();
    for end in [kind::COMMIT, kind::ABORT] {
        let txn = engine.execute(vec![Op { kind: kind::BEGIN, ..Default::default() }]).unwrap()[0].txn.unwrap();
        let scan = Op { kind: kind::SCAN_OPEN, key: Some(b"s".to_vec()), batch_items: Some(1.0), txn: Some(txn), ..Default::default() };
        let id = engine.execute(vec![scan]).unwrap()[0].cursor.unwrap();
        let mut cursor = store.cursors.check_out(id).unwrap();
        let batch = crate::core::cursors::read_batch(&store, &mut cursor).unwrap();
        assert!(!batch.done);
        assert!(engine.execute(vec![Op { kind: end, txn: Some(txn), ..Default::default() }]).unwrap()[0].error.is_none());
        assert!(!store.cursors.is_open(id), "closed by the transaction's end");
        assert_eq!(store.cursors.count(), 1, "still counted while its read runs");
        assert!(!cursor.put_back(), "the read ends it instead of putting it back");
        assert_eq!(store.cursors.count(), 0);
        let late = Op { kind: kind::SCAN_NEXT, cursor: Some(id), ..Default::default() };
        assert_eq!(engine.execute(vec![late]).unwrap()[0].error.as_ref().map(EngineError::code), Some("CURSOR_NOT_FOUND"));
    }
    // A cursor nobody closed is put back as before.
    let plain = engine.execute(vec![Op { kind: kind::SCAN_OPEN, key: Some(b"s".to_vec()), batch_items: Some(1.0), ..Default::default() }]).unwrap()[0].cursor.unwrap();
    assert!(store.cursors.check_out(plain).unwrap().put_back());
    assert!(store.cursors.is_open(plain));
}

/// A scan's bounds are keys: an end bound longer than keyBytesMax is refused like a start bound
/// (it reached fjall, whose keys are at most 65535 bytes, and panicked there).
#[test]
fn a_scan_end_bound_past_the_key_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let txn = engine.execute(vec![Op { kind: kind::BEGIN, ..Default::default() }]).unwrap()[0].txn.unwrap();
    for (reverse, txn) in [(false, None), (true, None), (false, Some(txn))] {
        let scan = Op { kind: kind::SCAN_OPEN, range: true, key: Some(b"a".to_vec()), end: Some(vec![b'z'; 200_000]), reverse, txn, ..Default::default() };
        let out = engine.execute(vec![scan]).unwrap().remove(0);
        assert_eq!(out.error.as_ref().map(EngineError::code), Some("KEY_TOO_LARGE"));
    }
    assert_eq!(engine.store().unwrap().cursors.count(), 0);
}

/// fjall keeps every key a serializable transaction reads until its commit: the reads count
/// toward txn_bytes_max like writes, so one transaction cannot grow the engine without bound.
/// Snapshot isolation records no reads and is not limited by them.
#[test]
fn a_serializable_transaction_counts_the_keys_it_reads_toward_its_byte_limit() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path()); // txn_bytes_max 1 MiB
    let keys: Vec<Vec<u8>> = (0..100).map(|i| format!("{i:060}").into_bytes()).collect();
    let batch = || Op { kind: kind::GET_BATCH, keys: Some(keys.clone()), ..Default::default() };
    // Calls of 100 keys of 60 bytes, each key counted with what fjall keeps for its mark.
    let reads_per_limit = ((1 << 20) / (100 * (60 + READ_MARK_BYTES))) as usize;
    for (isolation, limited) in [(0, true), (1, false)] {
        let txn = engine.execute(vec![Op { kind: kind::BEGIN, isolation: Some(isolation), ..Default::default() }]).unwrap()[0].txn.unwrap();
        let mut refused = None;
        for call in 0..reads_per_limit + 10 {
            if let Some(error) = &engine.execute(vec![in_txn(batch(), txn)]).unwrap()[0].error {
                refused = Some((call, error.code()));
                break;
            }
        }
        if limited {
            assert_eq!(refused, Some((reads_per_limit, "TXN_TOO_LARGE")));
            let after = engine.execute(vec![in_txn(get(b"k"), txn)]).unwrap();
            assert_eq!(after[0].error.as_ref().map(EngineError::code), Some("NOT_IN_TRANSACTION"), "it was aborted");
        } else {
            assert_eq!(refused, None);
            assert!(engine.execute(vec![Op { kind: kind::COMMIT, txn: Some(txn), ..Default::default() }]).unwrap()[0].error.is_none());
        }
    }
}

/// A serializable transaction's range reads are marked by fjall too (each scan batch and each
/// step of a listPath marks the rest of its range), so they count toward txn_bytes_max like its
/// point reads: scans repeated in one transaction held memory without bound and lengthened its
/// commit, which holds the commit lock, stalling every writer. Snapshot isolation marks none.
#[test]
fn a_serializable_transaction_counts_its_range_reads_toward_its_byte_limit() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path()); // txn_bytes_max 1 MiB
    let store = engine.store().unwrap();
    const P: u64 = 60; // the prefix's bytes (keys are at most 64 here)
    let prefix = vec![b'p'; P as usize];
    let mut first = prefix.clone();
    first.push(b'a');
    engine.execute(vec![put(&first, b"1")]).unwrap();
    let begin = |isolation: u32| engine.execute(vec![Op { kind: kind::BEGIN, isolation: Some(isolation), ..Default::default() }]).unwrap()[0].txn.unwrap();
    let scan = |txn: u64| in_txn(Op { kind: kind::SCAN_OPEN, key: Some(prefix.clone()), ..Default::default() }, txn);
    let error = |op: Op| engine.execute(vec![op]).unwrap()[0].error.as_ref().map(EngineError::code);

    // One scan, done in its first batch: its one range (the prefix and the bound after it).
    let txn = begin(0);
    assert_eq!(error(scan(txn)), None);
    assert_eq!(store.txns.held_bytes(), READ_MARK_BYTES + 2 * P);
    // A listPath steps once per child and once past the last: a range each.
    let list = in_txn(Op { kind: kind::LIST_PATH, key: Some(prefix.clone()), ..Default::default() }, txn);
    let listed = engine.execute(vec![list]).unwrap();
    assert_eq!(listed[0].keys, Some(vec![b"a".to_vec()]));
    let list_bytes = (READ_MARK_BYTES + 2 * P) + (READ_MARK_BYTES + (P + 3) + P); // past `a`: prefix ‖ a ‖ 00 02, and the prefix's end
    assert_eq!(store.txns.held_bytes(), READ_MARK_BYTES + 2 * P + list_bytes);
    // Scans repeated for ever end with TXN_TOO_LARGE, which aborts the transaction.
    let scans_per_limit = ((1 << 20) / (READ_MARK_BYTES + 2 * P)) as usize;
    let refused = (0..scans_per_limit + 10).find_map(|call| error(scan(txn)).map(|code| (call, code)));
    assert!(matches!(refused, Some((call, "TXN_TOO_LARGE")) if call + 4 >= scans_per_limit && call < scans_per_limit), "{refused:?}");
    assert_eq!(error(scan(txn)), Some("NOT_IN_TRANSACTION"), "it was aborted");
    assert_eq!(store.txns.held_bytes(), 0, "and gave its bytes back");

    // A cursor's next batches are counted as they read, and the batch that passes the limit
    // ends the transaction and its cursor.
    let txn = begin(0);
    for i in 0..4u8 {
        let mut key = prefix.clone();
        key.extend_from_slice(&[b'b', i]);
        engine.execute(vec![put(&key, b"1")]).unwrap();
    }
    let one_at_a_time = Op { batch_items: Some(1.0), ..scan(txn) };
    let cursor = engine.execute(vec![one_at_a_time]).unwrap()[0].cursor.unwrap();
    let before = store.txns.held_bytes();
    let next = Op { kind: kind::SCAN_NEXT, cursor: Some(cursor), ..Default::default() };
    assert_eq!(error(next.clone()), None);
    assert!(store.txns.held_bytes() > before, "the next batch marked the rest of the range");

    // Snapshot isolation marks nothing: its scans hold no bytes and never end it.
    let iso = begin(1);
    let held = store.txns.held_bytes();
    for _ in 0..scans_per_limit + 10 {
        assert_eq!(error(scan(iso)), None);
    }
    assert_eq!(store.txns.held_bytes(), held);
    assert_eq!(error(Op { kind: kind::COMMIT, txn: Some(iso), ..Default::default() }), None);
}

/// fjall's oracle checks each read of a committing transaction against every transaction
/// committed since its snapshot, holding the commit lock: a transaction whose reads times those
/// commits pass CONFLICT_CHECK_BYTE_COMMITS_MAX is refused as conflicting before the check
/// (retryable), instead of stalling every writer for seconds.
#[test]
fn a_commit_whose_conflict_check_would_stall_writers_is_refused_as_a_conflict() {
    use crate::core::store::CONFLICT_CHECK_BYTE_COMMITS_MAX;
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path()); // txn_bytes_max 1 MiB
    let begin = || engine.execute(vec![Op { kind: kind::BEGIN, isolation: Some(0), ..Default::default() }]).unwrap()[0].txn.unwrap();
    // 4000 reads of 60-byte keys: ~880 KB of marks, under txn_bytes_max.
    let read_bytes = 4000 * (READ_MARK_BYTES + 60);
    let commits_max = CONFLICT_CHECK_BYTE_COMMITS_MAX / read_bytes;
    let run = |others: u64| {
        let txn = begin();
        for call in 0..40 {
            let keys: Vec<Vec<u8>> = (0..100).map(|i| format!("{call:030}{i:030}").into_bytes()).collect();
            assert!(engine.execute(vec![in_txn(Op { kind: kind::GET_BATCH, keys: Some(keys), ..Default::default() }, txn)]).unwrap()[0].error.is_none());
        }
        engine.execute(vec![in_txn(put(b"mine", format!("{others}").as_bytes()), txn)]).unwrap();
        for i in 0..others {
            engine.execute(vec![put(format!("other{i}").as_bytes(), b"1")]).unwrap();
        }
        let out = engine.execute(vec![Op { kind: kind::COMMIT, txn: Some(txn), ..Default::default() }]).unwrap();
        out[0].error.clone()
    };
    assert!(run(commits_max - 50).is_none(), "under the bound it commits");
    assert_eq!(engine.execute(vec![get(b"mine")]).unwrap()[0].value, Some(Some(format!("{}", commits_max - 50).into_bytes())));
    let refused = run(commits_max + 50).expect("past the bound it is refused");
    assert_eq!(refused.code(), "TXN_CONFLICT");
    assert!(refused.to_string().contains("would stall every writer"), "{refused}");
    assert_eq!(engine.execute(vec![get(b"mine")]).unwrap()[0].value, Some(Some(format!("{}", commits_max - 50).into_bytes())), "nothing applied");
}

/// TTL sweeps commit past fjall's oracle: they add nothing to a transaction's conflict check, so
/// they must not count toward its bound. They did (the bound counted fjall's seqnos, which each
/// sweep chunk takes), and ~2000 swept keys during a large reader's life got it refused.
#[test]
fn ttl_sweeps_do_not_count_toward_the_conflict_check_bound() {
    use crate::core::store::CONFLICT_CHECK_BYTE_COMMITS_MAX;
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { key_bytes_max: 64, value_bytes_max: 1024, txn_bytes_max: 16 << 20, txn_bytes_daemon_max: 1 << 40, batch_items_max: 100, batch_bytes_max: 1 << 24 };
    let options = OpenOptions { path: dir.path().join("db").to_str().unwrap().into(), cache_bytes: None, row_cache_bytes: None, table_files_max: None, limits };
    let engine = Engine::open(&options).unwrap().0;
    // ~13 MB of read marks: past CONFLICT_CHECK_BYTE_COMMITS_MAX after ~330 commits.
    let (reads, key_bytes) = (60_000u64, 60u64);
    let commits_max = CONFLICT_CHECK_BYTE_COMMITS_MAX / (reads * (READ_MARK_BYTES + key_bytes));
    // Enough expired keys that sweeping them takes well over that many chunks of 32.
    let expiring = (commits_max + 100) * 32;
    for start in (0..expiring).step_by(100) {
        let ops = (start..(start + 100).min(expiring)).map(|i| Op { ttl_ms: Some(1.0), ..put(format!("ttl{i:07}").as_bytes(), b"v") }).collect();
        assert!(engine.execute(ops).unwrap().iter().all(|o| o.error.is_none()));
    }
    std::thread::sleep(std::time::Duration::from_millis(5));
    let txn = engine.execute(vec![Op { kind: kind::BEGIN, isolation: Some(0), ..Default::default() }]).unwrap()[0].txn.unwrap();
    for call in 0..reads / 100 {
        let keys: Vec<Vec<u8>> = (0..100).map(|i| format!("{call:030}{i:030}").into_bytes()).collect();
        assert!(engine.execute(vec![in_txn(Op { kind: kind::GET_BATCH, keys: Some(keys), ..Default::default() }, txn)]).unwrap()[0].error.is_none());
    }
    let mut swept = 0;
    while engine.sweep_expired(1000).unwrap().removed > 0 {
        swept += 1;
    }
    assert!(swept > 0);
    let out = engine.execute(vec![in_txn(put(b"mine", b"1"), txn), Op { kind: kind::COMMIT, txn: Some(txn), ..Default::default() }]).unwrap();
    assert!(out[1].error.is_none(), "refused after {expiring} swept keys and no other commit: {:?}", out[1].error);
}

/// Bytes all open transactions hold together are bounded too (txn_bytes_daemon_max): several
/// transactions, each under txn_bytes_max, cannot pass it together. The write that would is
/// refused with LIMIT_EXCEEDED and aborts its transaction, and what a transaction held comes
/// back when it commits or aborts, so later transactions have room again.
#[test]
fn transactions_together_hold_no_more_than_the_daemon_wide_bytes() {
    use crate::core::engine::Engine;
    use crate::core::store::{Limits, OpenOptions};
    const KIB: u64 = 1024;
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        key_bytes_max: 64,
        value_bytes_max: 1 << 20,
        txn_bytes_max: 1 << 20,
        txn_bytes_daemon_max: 2500 * KIB,
        batch_items_max: 100,
        batch_bytes_max: 1 << 24,
    };
    let options = OpenOptions { path: dir.path().join("db").to_str().unwrap().into(), cache_bytes: None, row_cache_bytes: None, table_files_max: None, limits };
    let engine = Engine::open(&options).unwrap().0;
    let store = engine.store().unwrap();
    let value = vec![7u8; 900 * KIB as usize - 1];
    let begin = |isolation: u32| engine.execute(vec![Op { kind: kind::BEGIN, isolation: Some(isolation), ..Default::default() }]).unwrap()[0].txn.unwrap();
    let write = |txn: u64| engine.execute(vec![in_txn(put(b"k", &value), txn)]).unwrap()[0].error.as_ref().map(EngineError::code);
    let end = |kind, txn: u64| engine.execute(vec![Op { kind, txn: Some(txn), ..Default::default() }]).unwrap()[0].error.as_ref().map(EngineError::code);
    for isolation in [0u32, 1] {
        let (first, second, third) = (begin(isolation), begin(isolation), begin(isolation));
        assert_eq!(write(first), None);
        let per = store.txns.held_bytes(); // its key and stored value: 900 KiB and a few bytes
        assert!((900 * KIB..901 * KIB).contains(&per));
        assert_eq!(write(second), None);
        assert_eq!(store.txns.held_bytes(), 2 * per);
        assert_eq!(write(third), Some("LIMIT_EXCEEDED"), "isolation {isolation}: 2700 KiB together");
        assert_eq!(write(third), Some("NOT_IN_TRANSACTION"), "the refused transaction was aborted");
        assert_eq!(store.txns.held_bytes(), 2 * per, "the refused write holds nothing");
        // A serializable read past the bound is refused the same way.
        if isolation == 0 {
            let reader = begin(0);
            let keys: Vec<Vec<u8>> = (0..10).map(|i| format!("{i:060}").into_bytes()).collect();
            let mut refused = None;
            for _ in 0..2000 {
                let read = Op { kind: kind::GET_BATCH, keys: Some(keys.clone()), ..Default::default() };
                if let Some(error) = &engine.execute(vec![in_txn(read, reader)]).unwrap()[0].error {
                    refused = Some(error.code());
                    break;
                }
            }
            assert_eq!(refused, Some("LIMIT_EXCEEDED"));
            assert_eq!(store.txns.held_bytes(), 2 * per, "the aborted reader gave its bytes back");
        }
        // A commit and an abort give their bytes back: two new transactions fit again.
        assert_eq!(end(kind::COMMIT, first), None);
        assert_eq!(store.txns.held_bytes(), per);
        assert_eq!(end(kind::ABORT, second), None);
        assert_eq!(store.txns.held_bytes(), 0);
        let (again, more) = (begin(isolation), begin(isolation));
        assert_eq!(write(again), None);
        assert_eq!(write(more), None);
        assert_eq!(end(kind::COMMIT, again), None);
        assert_eq!(end(kind::ABORT, more), None);
        assert_eq!(store.txns.held_bytes(), 0);
    }
    // A transaction still open when the engine closes gives its bytes back too.
    let open = begin(1);
    assert_eq!(write(open), None);
    store.txns.clear();
    assert_eq!(store.txns.held_bytes(), 0);
}
