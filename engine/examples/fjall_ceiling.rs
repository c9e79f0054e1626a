//! The ceiling fjall sets on toondb's write path, with no daemon, client, napi or row cache:
//! batches of random keys written straight into fjall from one thread, configured as toondb's
//! store configures it (store.rs: 16 MiB data memtable, background workers for this machine,
//! the daemon's 64 MiB block cache, journal flushed to the OS per batch as the `interval` mode
//! does), each batch's keys de-duplicated and sorted as the store's `write_batch` does. Not
//! here: the store's reaper (rotated memtables are freed by fjall, under its locks) and its
//! worker's nice 5, which only matter once other threads want the CPU.
//!
//! Run: `cargo run --release --no-default-features --features ceiling --example fjall_ceiling --
//! SECONDS BATCH_KEYS KEY_SPACE VALUE_BYTES KEY_PREFIX` (bench/ceiling.js does, with its own
//! workload's figures, and prints the result under the bench table). Keys are KEY_PREFIX and a
//! 12-digit index, as bench/workloads.js `keyName` makes them. Prints one JSON line: keys/s,
//! and the CPU of the writing thread and of the whole process per key.

use fjall::{KeyspaceCreateOptions, OptimisticTxDatabase, PersistMode};
use std::time::{Duration, Instant};
use toondb_engine::core::store::{background_workers, DATA_MEMTABLE_BYTES};

const PRELOAD_BATCH_KEYS: u64 = 1000;
/// The daemon's block cache (protocol/limits.ts ENGINE_BLOCK_CACHE_BYTES).
const BLOCK_CACHE_BYTES: u64 = 64 * 1024 * 1024;
const USAGE: &str = "usage: fjall_ceiling SECONDS BATCH_KEYS KEY_SPACE VALUE_BYTES KEY_PREFIX";

fn arg(index: usize) -> String {
    std::env::args().nth(index).expect(USAGE)
}

fn number(index: usize) -> f64 {
    arg(index).parse().expect(USAGE)
}

/// CPU seconds (user + system) of this thread or of the whole process, from getrusage.
fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes one rusage into the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(who, &mut usage) }, 0, "getrusage");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn main() {
    let (seconds, batch_keys, key_space, value_bytes) = (number(1), number(2) as u64, number(3) as u64, number(4) as usize);
    let key_prefix = arg(5);
    assert!(seconds > 0.0 && batch_keys > 0 && key_space > 0, "{USAGE}");
    let key_name = |index: u64| format!("{key_prefix}{index:012}").into_bytes();
    toondb_engine::core::alloc::tune(); // as Store::open does
    let dir = tempfile::tempdir().expect("a temp dir");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let db = OptimisticTxDatabase::builder(dir.path())
        .worker_threads(background_workers(cores))
        .cache_size(BLOCK_CACHE_BYTES)
        .open()
        .expect("open fjall");
    let data = db
        .keyspace("data", || KeyspaceCreateOptions::default().max_memtable_size(DATA_MEMTABLE_BYTES))
        .expect("open the keyspace");
    let value = vec![b'v'; value_bytes];
    let write = |keys: &mut dyn Iterator<Item = u64>| {
        // One write of a key per batch, in key order (store/commit.rs `write_batch`); the
        // indices are 12-digit and zero-padded, so their order is the keys' order.
        let mut indices: Vec<u64> = keys.collect();
        indices.sort_unstable();
        indices.dedup();
        let mut batch = db.inner().batch().durability(Some(PersistMode::Buffer));
        for index in indices {
            batch.insert(data.inner(), key_name(index), value.as_slice());
        }
        batch.commit().expect("commit");
    };
    // The bench preloads its keyspace, so its putBatch overwrites keys that exist.
    for start in (0..key_space).step_by(PRELOAD_BATCH_KEYS as usize) {
        write(&mut (start..(start + PRELOAD_BATCH_KEYS).min(key_space)));
    }
    // xorshift64 with a fixed seed: a uniform key choice, cheap next to the insert it feeds.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut random_index = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % key_space
    };
    let (thread0, process0, started) = (cpu_seconds(libc::RUSAGE_THREAD), cpu_seconds(libc::RUSAGE_SELF), Instant::now());
    let mut keys = 0u64;
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        write(&mut (0..batch_keys).map(|_| random_index()));
        keys += batch_keys;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let per_key_us = |cpu: f64| cpu * 1e6 / keys as f64;
    println!(
        "{{\"keysPerSecond\":{:.0},\"writerCpuUsPerKey\":{:.3},\"processCpuUsPerKey\":{:.3},\"batchKeys\":{batch_keys},\"keySpace\":{key_space},\"cores\":{cores}}}",
        keys as f64 / elapsed,
        per_key_us(cpu_seconds(libc::RUSAGE_THREAD) - thread0),
        per_key_us(cpu_seconds(libc::RUSAGE_SELF) - process0),
    );
}
