//! Tests of scans that carry each entry's expiry (`Op::expiry`, used by dumps).

use super::tests::{open, put};
use super::*;
use crate::core::cursors::SCAN_BATCH_STEPS_MAX;
use crate::core::engine::Engine;
use std::ops::Bound;

fn scan(with_expiry: bool) -> Op {
    Op { kind: kind::SCAN_OPEN, key: Some(b"s/".to_vec()), expiry: with_expiry, ..Default::default() }
}

#[test]
fn a_scan_with_expiry_gives_triples_with_each_entrys_expiry_and_skips_the_expired() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let expiring = Op { ttl_ms: Some(60_000.0), ..put(b"s/expiring", b"e") };
    let expired = Op { ttl_ms: Some(1.0), ..put(b"s/expired", b"x") };
    let before = value::now_ms();
    let out = engine.execute(vec![put(b"s/plain", b"p"), expiring, expired]).unwrap();
    assert!(out.iter().all(|o| o.error.is_none()));
    std::thread::sleep(std::time::Duration::from_millis(5));

    let triples = engine.execute(vec![scan(true)]).unwrap().remove(0).entries.unwrap();
    assert_eq!(triples.count, 2);
    let bytes = &triples.bytes;
    // [b"s/expiring", b"e", float64], then [b"s/plain", b"p", nil]: key order.
    let first_len = 1 + 2 + 10 + 2 + 1;
    assert_eq!(&bytes[..3], &[0x93, 0xc4, 10]);
    assert_eq!(bytes[first_len], 0xcb);
    let at = f64::from_be_bytes(bytes[first_len + 1..first_len + 9].try_into().unwrap()) as u64;
    assert!(at >= before + 60_000 && at <= value::now_ms() + 60_000, "expiry {at} is not ~now + 60 s");
    assert_eq!(&bytes[first_len + 9..], &[0x93, 0xc4, 7, b's', b'/', b'p', b'l', b'a', b'i', b'n', 0xc4, 1, b'p', 0xc0]);

    let mut out = engine.execute(vec![scan(false)]).unwrap().remove(0);
    let pairs = out.entries.take().unwrap();
    assert_eq!(pairs.decode_pairs(), vec![(b"s/expiring".to_vec(), b"e".to_vec()), (b"s/plain".to_vec(), b"p".to_vec())]);
    assert_eq!(pairs.bytes[0], 0x92);

    // The entry with a TTL is reported with its bytes and expiry, so a batch answered later
    // can leave it out once expired; the plain one is not.
    let expiring = out.expiring.expect("the batch holds an entry with a TTL");
    assert_eq!(expiring.len(), 1);
    assert_eq!((expiring[0].start, expiring[0].end), (0, 1 + 2 + 10 + 2 + 1));
    assert_eq!(expiring[0].at_ms, at);
    let plain_only = engine.execute(vec![Op { key: Some(b"s/p".to_vec()), ..scan(false) }]).unwrap().remove(0);
    assert_eq!(plain_only.entries.map(|e| e.count), Some(1));
    assert!(plain_only.expiring.is_none());
}

/// The engine's close clears the registry while a scanNext may still be reading on the pool
/// (the daemon's drain has a deadline): putting that cursor back ends it instead of panicking.
#[test]
fn a_cursor_read_across_a_registry_clear_ends_when_put_back() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.execute(vec![put(b"s/1", b"1"), put(b"s/2", b"2")]).unwrap();
    let store = engine.store().unwrap();
    let scan = Op { kind: kind::SCAN_OPEN, key: Some(b"s/".to_vec()), batch_items: Some(1.0), ..Default::default() };
    let id = engine.execute(vec![scan]).unwrap()[0].cursor.unwrap();
    let cursor = store.cursors.check_out(id).unwrap();
    store.cursors.clear();
    assert!(!cursor.put_back());
    assert_eq!(store.cursors.count(), 0);
}

/// A cursor a read has taken out is still open: stats counted it as closed while its scanNext
/// (or the daemon's read-ahead of it) ran, so `cursors.open` lagged under scan load.
#[test]
fn a_cursor_being_read_still_counts_as_open_until_its_read_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.execute(vec![put(b"s/1", b"1"), put(b"s/2", b"2"), put(b"s/3", b"3")]).unwrap();
    let store = engine.store().unwrap();
    let scan = Op { kind: kind::SCAN_OPEN, key: Some(b"s/".to_vec()), batch_items: Some(1.0), ..Default::default() };
    let id = engine.execute(vec![scan]).unwrap()[0].cursor.unwrap();
    assert_eq!(store.cursors.count(), 1);
    let cursor = store.cursors.check_out(id).unwrap();
    assert_eq!(store.cursors.count(), 1, "a cursor being read is open");
    assert!(store.cursors.take(id).is_err(), "but not idle: a close does not reach it");
    cursor.put_back();
    assert_eq!(store.cursors.count(), 1);
    let next = Op { kind: kind::SCAN_NEXT, cursor: Some(id), ..Default::default() };
    assert_eq!(engine.execute(vec![next.clone()]).unwrap()[0].done, Some(false));
    assert_eq!(store.cursors.count(), 1);
    assert_eq!(engine.execute(vec![next.clone()]).unwrap()[0].done, Some(true));
    assert_eq!(store.cursors.count(), 0, "the read that finished it ended it");
    assert_eq!(engine.execute(vec![next]).unwrap()[0].error.as_ref().map(EngineError::code), Some("CURSOR_NOT_FOUND"));
    assert_eq!(store.cursors.count(), 0);
    // A read that ends without putting its cursor back, by a panic too (caught further up:
    // binding.rs, lanes.rs), ends the cursor: the count cannot drift.
    let id = engine.execute(vec![Op { kind: kind::SCAN_OPEN, key: Some(b"s/".to_vec()), batch_items: Some(1.0), ..Default::default() }]).unwrap()[0].cursor.unwrap();
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _cursor = store.cursors.check_out(id).unwrap();
        panic!("a read that panics");
    }));
    assert!(unwound.is_err());
    assert_eq!(store.cursors.count(), 0, "the panicking read's cursor is no longer counted");
}

/// A scan range for the step-bound tests: live keys `s/a/0..4`, then a run of expired keys
/// longer than two batches' steps (`s/e/…`), then live keys `s/z/00..19`.
const LIVE_BEFORE: usize = 5;
const EXPIRED: usize = 2 * SCAN_BATCH_STEPS_MAX + 100;
const LIVE_AFTER: usize = 20;

fn live_before(i: usize) -> Vec<u8> {
    format!("s/a/{i}").into_bytes()
}

fn expired_key(i: usize) -> Vec<u8> {
    format!("s/e/{i:05}").into_bytes()
}

fn live_after(i: usize) -> Vec<u8> {
    format!("s/z/{i:02}").into_bytes()
}

/// Writes the range above. The expired keys go straight into the data keyspace with an expiry
/// long past and no TTL index entry: already expired (no clock to wait for), and no sweep
/// deletes them.
fn write_expired_run(engine: &Engine) {
    let store = engine.store().unwrap();
    let mut batch = store.db.inner().batch();
    for i in 0..EXPIRED {
        batch.insert(store.data.inner(), expired_key(i), value::encode(b"gone", Some(1)));
    }
    batch.commit().unwrap();
    let live: Vec<Op> = (0..LIVE_BEFORE).map(live_before).chain((0..LIVE_AFTER).map(live_after)).map(|k| put(&k, b"v")).collect();
    assert!(engine.execute(live).unwrap().iter().all(|o| o.error.is_none()));
}

/// The live keys in scan order: the first `before` of `s/a/`, then the first `after` of `s/z/`
/// (reversed: the last ones, from the end).
fn live_keys(reverse: bool, before: usize, after: usize) -> Vec<Vec<u8>> {
    if reverse {
        (0..LIVE_AFTER).rev().map(live_after).chain((0..LIVE_BEFORE).rev().map(live_before)).take(before + after).collect()
    } else {
        (0..before).map(live_before).chain((0..after).map(live_after)).collect()
    }
}

/// Runs a scan to its end: each batch's (entry count, done), and every key returned.
fn drain(engine: &Engine, open: Op) -> (Vec<(u32, bool)>, Vec<Vec<u8>>) {
    let mut output = engine.execute(vec![open]).unwrap().remove(0);
    let (mut batches, mut keys) = (Vec::new(), Vec::new());
    loop {
        assert!(output.error.is_none(), "{:?}", output.error);
        let entries = output.entries.take().unwrap();
        keys.extend(entries.decode_pairs().into_iter().map(|(key, _)| key));
        let done = output.done.unwrap();
        batches.push((entries.count, done));
        if done {
            return (batches, keys);
        }
        let next = Op { kind: kind::SCAN_NEXT, cursor: output.cursor, ..Default::default() };
        output = engine.execute(vec![next]).unwrap().remove(0);
    }
}

fn scan_s(reverse: bool, limit: Option<f64>, batch_items: Option<f64>) -> Op {
    Op { kind: kind::SCAN_OPEN, key: Some(b"s/".to_vec()), reverse, limit, batch_items, ..Default::default() }
}

// Regression: a batch stepped over every expired, unswept key of its range in one engine call
// (hundreds of ms for a million of them, whatever its batchSize). It now stops after
// SCAN_BATCH_STEPS_MAX entries, short or empty but not done, and the next one resumes after the
// last key it stepped through: no live key is skipped or repeated.
#[test]
fn a_batch_steps_through_at_most_scan_batch_steps_max_entries_and_the_next_resumes_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    write_expired_run(&engine);

    let first = engine.execute(vec![scan_s(false, None, None)]).unwrap().remove(0);
    assert_eq!((first.entries.as_ref().unwrap().count, first.done), (LIVE_BEFORE as u32, Some(false)));
    let store = engine.store().unwrap();
    let cursor = store.cursors.check_out(first.cursor.unwrap()).unwrap();
    let last_stepped = expired_key(SCAN_BATCH_STEPS_MAX - LIVE_BEFORE - 1);
    assert_eq!(cursor.bounds.0, Bound::Excluded(last_stepped), "it stepped through the bound and resumes after it");
    cursor.put_back();
    store.cursors.close(first.cursor.unwrap());

    let (batches, keys) = drain(&engine, scan_s(false, None, None));
    assert_eq!(batches, vec![(5, false), (0, false), (20, true)]);
    assert_eq!(keys, live_keys(false, LIVE_BEFORE, LIVE_AFTER));

    let (batches, keys) = drain(&engine, scan_s(true, None, None));
    assert_eq!(batches, vec![(20, false), (0, false), (5, true)]);
    assert_eq!(keys, live_keys(true, LIVE_BEFORE, LIVE_AFTER));
    assert_eq!(store.cursors.count(), 0);
}

#[test]
fn a_scan_limit_counts_only_the_entries_returned_across_short_and_empty_batches() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    write_expired_run(&engine);

    let (batches, keys) = drain(&engine, scan_s(false, Some(7.0), Some(3.0)));
    assert_eq!(batches, vec![(3, false), (2, false), (0, false), (2, true)]);
    assert_eq!(keys, live_keys(false, LIVE_BEFORE, 2));

    let (batches, keys) = drain(&engine, scan_s(true, Some(22.0), None));
    assert_eq!(batches, vec![(20, false), (0, false), (2, true)]);
    assert_eq!(keys, live_keys(true, LIVE_AFTER, 2));
}

#[test]
fn a_scan_with_expiry_crosses_a_run_of_expired_keys_like_a_plain_one() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    write_expired_run(&engine);
    for reverse in [false, true] {
        let open = Op { expiry: true, ..scan_s(reverse, None, Some(4.0)) };
        let first = engine.execute(vec![open.clone()]).unwrap().remove(0);
        assert_eq!(first.entries.unwrap().bytes[0], 0x93, "[key, value, expiry] triples");
        engine.execute(vec![Op { kind: kind::SCAN_CLOSE, cursor: first.cursor, ..Default::default() }]).unwrap();
        let (batches, keys) = drain(&engine, open);
        assert!(batches.contains(&(0, false)) && batches.iter().all(|&(count, _)| count <= 4), "{batches:?}");
        assert_eq!(keys, live_keys(reverse, LIVE_BEFORE, LIVE_AFTER));
    }
}

/// A transaction's cursor, serializable or snapshot-isolated, reads through the transaction
/// (view.rs): its own write in the middle of the expired run shows, once, in order.
#[test]
fn a_transaction_cursor_crosses_a_run_of_expired_keys_with_its_own_write_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    write_expired_run(&engine);
    let rewritten = SCAN_BATCH_STEPS_MAX + 50;
    for isolation in [0.0, 1.0] {
        let begin = Op { kind: kind::BEGIN, isolation: Some(isolation as u32), ..Default::default() };
        let txn = engine.execute(vec![begin]).unwrap()[0].txn.unwrap();
        let own = Op { txn: Some(txn), ..put(&expired_key(rewritten), b"back") };
        assert!(engine.execute(vec![own]).unwrap()[0].error.is_none());
        for reverse in [false, true] {
            let (batches, keys) = drain(&engine, Op { txn: Some(txn), ..scan_s(reverse, None, None) });
            let mut want = live_keys(reverse, LIVE_BEFORE, LIVE_AFTER);
            let at = if reverse { LIVE_AFTER } else { LIVE_BEFORE };
            want.insert(at, expired_key(rewritten));
            assert_eq!(keys, want, "isolation {isolation}, reverse {reverse}");
            // The own write is the one live key of the second batch's steps, in either direction.
            let (first, last) = if reverse { (LIVE_AFTER, LIVE_BEFORE) } else { (LIVE_BEFORE, LIVE_AFTER) };
            assert_eq!(batches, vec![(first as u32, false), (1, false), (last as u32, true)]);
        }
        engine.execute(vec![Op { kind: kind::ABORT, txn: Some(txn), ..Default::default() }]).unwrap();
    }
}

// The daemon grows a cursor's batches by giving scanNext a batch size: it holds for that read
// and every later one that gives none; a limit still cuts the last batch.
#[test]
fn a_batch_size_given_to_scan_next_holds_for_that_read_and_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let keys = 100;
    let puts = (0..keys).map(|i| put(format!("s/{i:05}").as_bytes(), b"v")).collect();
    assert!(engine.execute(puts).unwrap().iter().all(|o| o.error.is_none()));

    for (reverse, limit, expected) in [(false, None, vec![10, 20, 20, 40, 10]), (true, Some(45.0), vec![10, 20, 15])] {
        let mut output = engine.execute(vec![scan_s(reverse, limit, Some(10.0))]).unwrap().remove(0);
        let mut sizes = vec![output.entries.as_ref().unwrap().count];
        let mut given = [Some(20.0), None, Some(40.0), None].into_iter();
        while output.done == Some(false) {
            let next = Op { kind: kind::SCAN_NEXT, cursor: output.cursor, batch_items: given.next().flatten(), ..Default::default() };
            output = engine.execute(vec![next]).unwrap().remove(0);
            sizes.push(output.entries.as_ref().unwrap().count);
        }
        assert_eq!(sizes, expected, "reverse {reverse}, limit {limit:?}");
    }
}

/// Runs a listPath of `parent` to its end, call after call from each one's `next`: the names
/// found by each call.
fn list_all(engine: &Engine, parent: &[u8], limit: Option<f64>, txn: Option<u64>) -> Vec<Vec<Vec<u8>>> {
    let mut calls = Vec::new();
    let mut start = None;
    loop {
        let op = Op { kind: kind::LIST_PATH, key: Some(parent.to_vec()), end: start.take(), limit, txn, ..Default::default() };
        let out = engine.execute(vec![op]).unwrap().remove(0);
        assert!(out.error.is_none(), "{:?}", out.error);
        calls.push(out.keys.unwrap());
        match out.value {
            Some(Some(next)) => start = Some(next),
            None => return calls,
            Some(None) => panic!("a listing's next is a key or absent"),
        }
    }
}

// Regression: one listPath call walked a run of expired keys, or of keys under the parent that
// are not path names, however long (1.2M of them: 7.4 s on a pool thread, or the connection's
// lane in a transaction). A call now examines at most LIST_PATH_STEPS_MAX keys and says where
// the listing goes on; called again from there, the listing loses and repeats no name.
#[test]
fn a_list_path_call_examines_at_most_list_path_steps_max_keys_and_the_next_goes_on_from_there() {
    use crate::core::cursors::LIST_PATH_STEPS_MAX;
    use crate::core::pathkey::SEP;
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let parent = [&b"p"[..], &SEP].concat();
    let under = |rest: &[u8]| [&parent[..], rest].concat();
    let store = engine.store().unwrap();
    let mut batch = store.db.inner().batch();
    // Children that are not names (0x00 not followed by 0xFF), and expired names, between the names.
    let junk = LIST_PATH_STEPS_MAX + 10;
    for i in 0..junk {
        batch.insert(store.data.inner(), under(&[&[b'j', 0x00, 0x07][..], format!("{i:06}").as_bytes()].concat()), value::encode(b"x", None));
    }
    for i in 0..junk {
        batch.insert(store.data.inner(), under(format!("m{i:06}").as_bytes()), value::encode(b"gone", Some(1)));
    }
    batch.commit().unwrap();
    let names: Vec<Vec<u8>> = ["a", "k", "zz"].iter().map(|n| n.as_bytes().to_vec()).collect();
    let puts = names.iter().map(|n| put(&under(&[n.as_slice(), &SEP, b"leaf"].concat()), b"v")).collect();
    assert!(engine.execute(puts).unwrap().iter().all(|o| o.error.is_none()));

    let calls = list_all(&engine, &parent, None, None);
    assert!(calls.len() >= 3 && calls.len() <= 4, "{} calls for ~{} keys examined: {:?}", calls.len(), 2 * junk, calls);
    assert_eq!(calls.concat(), names);
    // With a limit, a call stops at it and the listing goes on from there.
    let limited = list_all(&engine, &parent, Some(1.0), None);
    assert_eq!(limited.concat(), names);
    assert!(limited.iter().all(|call| call.len() <= 1));
    // In a transaction too (its range reads count toward txnBytesMax: 1 MiB here, so a short
    // listing), from a start a previous call gave.
    let txn = engine.execute(vec![Op { kind: kind::BEGIN, ..Default::default() }]).unwrap()[0].txn.unwrap();
    let from_n = Op { kind: kind::LIST_PATH, key: Some(parent.clone()), end: Some(under(b"n")), txn: Some(txn), ..Default::default() };
    let out = engine.execute(vec![from_n]).unwrap().remove(0);
    assert_eq!((out.keys, out.value), (Some(names[2..].to_vec()), None));
    let outside = Op { kind: kind::LIST_PATH, key: Some(parent.clone()), end: Some(b"q".to_vec()), ..Default::default() };
    assert_eq!(engine.execute(vec![outside]).unwrap()[0].error.as_ref().map(EngineError::code), Some("INVALID_ARGUMENT"));
    // A listing that fits in one call says it is complete: one call, no `next`.
    let small = list_all(&engine, &[&under(b"a")[..], &SEP].concat(), None, None);
    assert_eq!(small, vec![vec![b"leaf".to_vec()]]);
}
