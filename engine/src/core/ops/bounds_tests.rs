//! Tests of what bounds a call's results: getBatch and listPath replies by batchBytesMax, and
//! calls ending early at their output budget (`execute_bounded`, `read_cached`).

use super::tests::{get, get_batch, open, put, read_cached_all};
use super::*;
use crate::core::engine::Engine;
use crate::core::store::{Limits, OpenOptions};

// Regression: a getBatch reply had no byte bound. Ten thousand keys naming one 16 MiB value
// made the daemon copy 160 GB before replying (killed for lack of memory), and a few keys past
// the frame limit broke the client's connection. Reads stop at batchBytesMax, counted as
// ITEM_OVERHEAD_BYTES plus each live value (a missing one is a 1-byte nil).
#[test]
fn get_batch_and_list_path_replies_are_bounded_by_batch_bytes_max_and_a_listing_goes_on_past_them() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { key_bytes_max: 64, value_bytes_max: 1024, txn_bytes_max: 1 << 20, txn_bytes_daemon_max: 1 << 40, batch_items_max: 1000, batch_bytes_max: 1000 };
    let engine = Engine::open(&OpenOptions { path: dir.path().join("db").to_str().unwrap().into(), cache_bytes: None, row_cache_bytes: Some(0), table_files_max: None, limits }).unwrap().0;
    let value = [7u8; 300];
    engine.execute(vec![put(b"k", &value), Op { ttl_ms: Some(1.0), ..put(b"expired", &value) }]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let code = |out: &OpOutput| out.error.as_ref().map(EngineError::code);
    // 3 x (300 + 5) = 915 bytes fit; a fourth value does not; expired and missing keys are nils.
    let fits = engine.execute(vec![get_batch(&[b"k", b"k", b"k", b"expired", b"nope"])]).unwrap();
    assert_eq!(code(&fits[0]), None);
    let over = engine.execute(vec![get_batch(&[b"k", b"k", b"k", b"k"])]).unwrap();
    assert_eq!(code(&over[0]), Some("BATCH_TOO_LARGE"));
    assert!(over[0].error.as_ref().unwrap().to_string().contains("getBatch reply"), "{:?}", over[0].error);
    let txn = engine.execute(vec![Op { kind: kind::BEGIN, ..Default::default() }]).unwrap()[0].txn.unwrap();
    let in_txn = engine.execute(vec![Op { txn: Some(txn), ..get_batch(&[b"k", b"k", b"k", b"k"]) }]).unwrap();
    assert_eq!(code(&in_txn[0]), Some("BATCH_TOO_LARGE"), "inside a transaction too");

    let child = |i: usize| [&b"a"[..], &crate::core::pathkey::SEP, format!("x{i:03}").as_bytes()].concat();
    let writes: Vec<Op> = (0..200).map(|i| put(&child(i), b"v")).collect();
    engine.execute(writes).unwrap();
    let parent = [&b"a"[..], &crate::core::pathkey::SEP].concat();
    let list = |limit: Option<f64>| Op { kind: kind::LIST_PATH, key: Some(parent.clone()), limit, ..Default::default() };
    // 200 names of 4 bytes: 200 x 9 = 1800 bytes; 111 of them (999) fit in a reply, which then
    // says where the listing goes on; from there, the other 89.
    let out = engine.execute(vec![list(None), list(Some(100.0))]).unwrap();
    assert_eq!(code(&out[0]), None);
    assert_eq!(out[0].keys.as_ref().map(Vec::len), Some(111));
    let next = out[0].value.clone().flatten().expect("the listing goes on");
    assert_eq!(next, child(111), "at the first name that did not fit");
    let rest = engine.execute(vec![Op { end: Some(next), ..list(None) }]).unwrap().remove(0);
    assert_eq!((rest.keys.as_ref().map(Vec::len), rest.value.is_none()), (Some(89), true));
    assert_eq!(out[1].keys.as_ref().map(Vec::len), Some(100));
    // A name too large for a reply on its own is refused.
    let tiny = Limits { batch_bytes_max: 8, ..limits };
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(&OpenOptions { path: dir.path().join("db").to_str().unwrap().into(), cache_bytes: None, row_cache_bytes: Some(0), table_files_max: None, limits: tiny }).unwrap().0;
    engine.execute(vec![put(&child(0), b"v")]).unwrap();
    assert_eq!(code(&engine.execute(vec![list(None)]).unwrap()[0]), Some("BATCH_TOO_LARGE"));
}

#[test]
fn a_cached_get_batch_is_bounded_too() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { key_bytes_max: 64, value_bytes_max: 1024, txn_bytes_max: 1 << 20, txn_bytes_daemon_max: 1 << 40, batch_items_max: 1000, batch_bytes_max: 1000 };
    let engine = Engine::open(&OpenOptions { path: dir.path().join("db").to_str().unwrap().into(), cache_bytes: None, row_cache_bytes: None, table_files_max: None, limits }).unwrap().0;
    engine.execute(vec![put(b"k", &[7u8; 300])]).unwrap();
    assert!(read_cached_all(&engine, &[get_batch(&[b"k", b"k", b"k"])]).is_some(), "written through, and fits");
    assert!(read_cached_all(&engine, &[get_batch(&[b"k", b"k", b"k", b"k"])]).is_none(), "left to the storage path, which refuses it");
}

// A call ends early once its outputs hold the budget, after at least one op: the daemon runs the
// rest later, so a pipeline of large reads never builds one huge reply batch.
#[test]
fn a_call_ends_early_at_its_output_budget() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.execute(vec![put(b"k", &[7u8; 300])]).unwrap();
    let gets = || vec![get(b"k"), get(b"k"), get(b"k"), get_batch(&[b"k", b"k"])];
    let lens = |budget| engine.execute_bounded(gets(), budget).unwrap().len();
    assert_eq!(lens(usize::MAX), 4);
    assert_eq!(lens(500), 2, "300 bytes, then 600: over 500, so it stops");
    assert_eq!(lens(1), 1, "at least one op runs");
    assert_eq!(lens(900), 3);
    let outputs = engine.execute_bounded(gets(), 500).unwrap();
    assert!(outputs.iter().all(|o| o.error.is_none() && o.value == Some(Some(vec![7u8; 300]))));
    // Between writes, it ends right after a read: the writes before it are applied (their run is
    // committed before the read runs), none after it.
    let mixed = || vec![put(b"a", b"1"), put(b"b", b"2"), get(b"k"), put(b"c", b"3"), get(b"k")];
    let outputs = engine.execute_bounded(mixed(), 200).unwrap();
    assert_eq!(outputs.len(), 3);
    assert!(outputs.iter().all(|o| o.error.is_none()));
    let present = |key: &[u8]| engine.execute(vec![get(key)]).unwrap()[0].value.clone().unwrap().is_some();
    assert!(present(b"a") && present(b"b") && !present(b"c"));
    assert_eq!(engine.execute_bounded(mixed(), 500).unwrap().len(), 5, "300, then 600 only after the last op");
    assert!(present(b"c"));
    let cached = |budget| engine.read_cached(&gets(), budget).map(|out| out.len());
    assert_eq!(cached(usize::MAX), Some(4));
    assert_eq!(cached(500), Some(2));
    assert_eq!(cached(1), Some(1));
}
