//! Tests of scans that carry each entry's expiry (`Op::expiry`, used by dumps).

use super::tests::{open, put};
use super::*;

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

    let pairs = engine.execute(vec![scan(false)]).unwrap().remove(0).entries.unwrap();
    assert_eq!(pairs.decode_pairs(), vec![(b"s/expiring".to_vec(), b"e".to_vec()), (b"s/plain".to_vec(), b"p".to_vec())]);
    assert_eq!(pairs.bytes[0], 0x92);
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
