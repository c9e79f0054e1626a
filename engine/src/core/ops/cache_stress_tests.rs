//! The row cache against real commits of every kind at once, as the daemon runs them: a writer
//! that leaves its cache effects queued (as a lane does) and applies them only now and then,
//! alternating plain write runs and serializable transactions that put, delete, or put with a
//! TTL that is over at once; a TTL sweep on another thread, whose commits apply the writer's
//! queue; and readers that mix storage reads (which refill the cache) with row-cache reads.
//! Every read must show the state of some moment between its start and its end (nothing older
//! than a commit that had returned, no expired value, no delete undone), and a getBatch one
//! commit's rows.

use super::tests::{get, get_batch, in_txn, open, put, read_cached_all};
use super::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Commits of the writer (TOONDB_ROW_CACHE_STRESS_COMMITS; kept small for the default run).
fn commits() -> u64 {
    std::env::var("TOONDB_ROW_CACHE_STRESS_COMMITS").ok().and_then(|v| v.parse().ok()).unwrap_or(4_000)
}

/// What commit `i` leaves in key `d`: deleted (i % 3 == 0), `i` (1), or `i` with a 1 ms TTL (2).
/// Key `a` always takes `i`, in the same commit.
fn d_write(i: u64) -> Op {
    let value = i.to_be_bytes().to_vec();
    match i % 3 {
        0 => Op { kind: kind::DELETE, key: Some(b"d".to_vec()), ..Default::default() },
        1 => put(b"d", &value),
        _ => Op { ttl_ms: Some(1.0), ..put(b"d", &value) },
    }
}

fn number(value: &[u8]) -> u64 {
    u64::from_be_bytes(value.try_into().expect("8-byte values"))
}

struct Shared {
    /// The last commit begun, and the last one returned.
    started: AtomicU64,
    visible: AtomicU64,
    /// Wall-clock ms after commit i returned (0 until then): its TTL was over by then + 1.
    returned_ms: Vec<AtomicU64>,
    done: AtomicBool,
}

impl Shared {
    /// Checks a read of `d` (None: absent) begun at `now` with `floor` visible and ended with
    /// `ceiling` started.
    fn check_d(&self, d: Option<u64>, floor: u64, ceiling: u64, now: u64, how: &str) {
        match d {
            Some(v) => {
                assert!(v % 3 != 0 && v >= floor && v <= ceiling, "{how}: d = {v} outside [{floor}, {ceiling}]");
                let returned = self.returned_ms[v as usize].load(Ordering::SeqCst);
                assert!(v % 3 != 2 || returned == 0 || now <= returned + 1, "{how}: d = {v} read at {now}, after its TTL (commit returned at {returned})");
            }
            None => assert!(
                floor == 0 || (floor..=ceiling).any(|j| j % 3 != 1),
                "{how}: d absent though commits [{floor}, {ceiling}] all left it set"
            ),
        }
    }
}

#[test]
fn cached_reads_follow_deferred_puts_deletes_ttls_transactions_and_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(open(dir.path()));
    let total = commits();
    let shared = Arc::new(Shared {
        started: AtomicU64::new(0),
        visible: AtomicU64::new(0),
        returned_ms: (0..=total).map(|_| AtomicU64::new(0)).collect(),
        done: AtomicBool::new(false),
    });
    let writer = {
        let (engine, shared) = (engine.clone(), shared.clone());
        std::thread::spawn(move || {
            crate::core::rowcache::defer_cache_effects_on_this_thread();
            let store = engine.store().unwrap();
            for i in 1..=total {
                let a = put(b"a", &i.to_be_bytes());
                shared.started.store(i, Ordering::SeqCst);
                if i.is_multiple_of(2) {
                    let out = execute(&store, vec![a, d_write(i)]);
                    assert!(out.iter().all(|o| o.error.is_none()), "commit {i}: {out:?}");
                } else {
                    let txn = execute(&store, vec![Op { kind: kind::BEGIN, isolation: Some((i / 2 % 2) as u32), ..Default::default() }])[0].txn.unwrap();
                    let out = execute(&store, vec![in_txn(a, txn), in_txn(d_write(i), txn), Op { kind: kind::COMMIT, txn: Some(txn), ..Default::default() }]);
                    assert!(out.iter().all(|o| o.error.is_none()), "commit {i}: {out:?}");
                }
                shared.returned_ms[i as usize].store(value::now_ms(), Ordering::SeqCst);
                shared.visible.store(i, Ordering::SeqCst);
                // A lane applies its queue only once it runs out of calls; then, as a lane between
                // bursts, it leaves gaps in which readers can hit.
                if i.is_multiple_of(4) {
                    store.rows.apply_deferred();
                    std::thread::sleep(std::time::Duration::from_micros(100));
                }
            }
            store.rows.apply_deferred();
            shared.done.store(true, Ordering::SeqCst);
        })
    };
    let sweeper = {
        let (engine, shared) = (engine.clone(), shared.clone());
        std::thread::spawn(move || {
            let mut removed = 0;
            while !shared.done.load(Ordering::SeqCst) {
                removed += engine.sweep_expired(100).unwrap().removed;
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            removed
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|reader| {
            let (engine, shared) = (engine.clone(), shared.clone());
            std::thread::spawn(move || {
                let mut hits = 0u64;
                let mut round = 0u64;
                while !shared.done.load(Ordering::SeqCst) {
                    round += 1;
                    let from_cache = (round + reader).is_multiple_of(2);
                    let (floor, now) = (shared.visible.load(Ordering::SeqCst), value::now_ms());
                    let read = if from_cache { read_cached_all(&engine, &[get(b"d")]) } else { Some(engine.execute(vec![get(b"d")]).unwrap()) };
                    let ceiling = shared.started.load(Ordering::SeqCst);
                    if let Some(out) = read {
                        hits += from_cache as u64;
                        assert!(out[0].error.is_none(), "{:?}", out[0].error);
                        let d = out[0].value.clone().unwrap().map(|v| number(&v));
                        shared.check_d(d, floor, ceiling, now, if from_cache { "cached get" } else { "get" });
                    }
                    let (floor, now) = (shared.visible.load(Ordering::SeqCst), value::now_ms());
                    let batch = [get_batch(&[b"a", b"d"])];
                    let read = if from_cache { read_cached_all(&engine, &batch) } else { Some(engine.execute(batch.to_vec()).unwrap()) };
                    let ceiling = shared.started.load(Ordering::SeqCst);
                    if let Some(out) = read {
                        let values = out[0].values.as_ref().unwrap().decode_values();
                        let a = values[0].as_deref().map_or(0, number);
                        let d = values[1].as_deref().map(number);
                        let how = if from_cache { "cached getBatch" } else { "getBatch" };
                        assert!(a >= floor && a <= ceiling, "{how}: a = {a} outside [{floor}, {ceiling}]");
                        shared.check_d(d, a, a, now, how);
                        assert!(d.is_none_or(|d| d == a), "{how} split a commit: a = {a}, d = {d:?}");
                    }
                }
                hits
            })
        })
        .collect();
    writer.join().unwrap();
    let swept = sweeper.join().unwrap();
    let hits: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    eprintln!("row cache stress: {hits} cache hits, {swept} swept");
    assert!(hits > 0, "the cache answered some reads");
    assert!(swept > 0, "the sweep removed expired values while the writer ran");
    assert_eq!(engine.store().unwrap().rows.queued_keys(), 0);
}
