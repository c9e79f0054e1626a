//! fjall's background workers (memtable flushes and compactions): how many a store asks for,
//! and the priority they run at beside the threads that commit.
//!
//! Invariants: the count is fixed per machine size (`background_workers`); after Store::open
//! the workers run at FJALL_WORKER_NICE or nicer on Linux (best effort: a thread that cannot be
//! found or reniced is left as it is, and open never fails or waits more than
//! WORKER_NAME_WAIT_MAX for it).

use super::super::os;
use std::time::{Duration, Instant};

/// fjall's background threads (memtable flushes and compactions) on a machine with `cores`.
/// fjall 3.1 defaults to min(cores, 4), and with more than one its worker 0 keeps itself free
/// for flushes by taking each queued compaction message and sending it straight back to the
/// queue, in a loop that never sleeps, for as long as the other workers are busy (fjall
/// `worker_pool.rs`, `WorkerMessage::Compact`). With two workers, fjall's choice on two cores,
/// that is a thread spinning through every compaction beside the one doing it, on a machine
/// whose other CPU runs the commits. One worker runs flushes and compactions in turn (a flush
/// may wait behind a compaction; fjall halts writers only once 4 sealed memtables wait, 64 MiB
/// here) and never spins. Measured on 2 vCPUs, 2 workers -> 1: random putBatch of 100 over 5M
/// keys for 25 s 165-186k -> 207-218k keys/s with fjall's CPU 17.5-18.8 -> 12.6-12.7 s, p99
/// 32-51 -> 30 ms; over 100k keys +3-11 % in 5 pairs; sequential bulk load of 8M keys and
/// durable PUT within noise. Larger machines keep fjall's default (not measured here).
pub fn background_workers(cores: usize) -> usize {
    if cores <= 2 {
        1
    } else {
        cores.min(4)
    }
}

/// The name fjall 3.1 gives its background threads (`worker_pool.rs`).
pub const FJALL_WORKER_THREAD_NAME: &str = "fjall:worker";

/// The nice value fjall's background threads run at (commits, the daemon's JS thread and the
/// clients run at 0). A flush or compaction is CPU work for tens of milliseconds at a time, and
/// a memtable's flush comes due every second or so under durable PUT-256: on two vCPUs, fjall's
/// worker and the reaper (freeing the rotated memtable) then held both CPUs while the client
/// and the daemon, runnable, waited for one: the largest class of the 3-24 ms stalls behind
/// that workload's p99 (a timeline of completions beside perf sched_switch). At nice 5 (CFS
/// weight 335 against 1024) the worker still gets a CPU whenever the foreground leaves one
/// idle, which on this workload is most of the time, and a third of its CPU under full load.
/// Measured on 2 vCPUs, six interleaved pairs with the worker reniced by a script: time in
/// stalls of 3 ms or more 4.8-6.4 % -> 3.6-4.3 %; then this code against itself with the worker
/// put back to nice 0, three pairs: durable PUT-256 151-155k -> 163-165k commits/s. putBatch
/// over 1M keys +3-9 %, with ~25 MiB more RSS while flushes lag. The reaper at nice 19 as well
/// changed nothing measurable.
pub const FJALL_WORKER_NICE: i32 = 5;

/// How long Store::open waits for fjall's new workers to carry their name (a thread names
/// itself once it runs), so that they can be found and reniced.
const WORKER_NAME_WAIT_MAX: Duration = Duration::from_millis(100);

/// How many of fjall's workers in this process already run at FJALL_WORKER_NICE or nicer,
/// renicing any found at a higher priority. Store::open counts them before it opens the
/// database, so that it waits for its own new workers and not for those of a store opened
/// earlier in the same process (tests open many; the daemon one).
pub(super) fn niced_fjall_workers() -> usize {
    os::nice_threads_named(FJALL_WORKER_THREAD_NAME, FJALL_WORKER_NICE)
}

/// Sets FJALL_WORKER_NICE on fjall's workers, once `expected` of them are found by name (or
/// WORKER_NAME_WAIT_MAX has passed: a priority is not worth failing or stalling an open for).
/// `expected` counts every store's workers in the process: those niced before this open plus
/// this store's. Two stores opened at the same moment may each count the other's, so one may
/// stop waiting before its own workers carry their name; they stay at nice 0 until the next
/// open in the process renices them.
pub(super) fn nice_fjall_workers(expected: usize) {
    let deadline = Instant::now() + WORKER_NAME_WAIT_MAX;
    while niced_fjall_workers() < expected && cfg!(target_os = "linux") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::background_workers;

    #[test]
    fn one_background_worker_up_to_two_cores_then_fjalls_default() {
        assert_eq!([1, 2].map(background_workers), [1, 1]);
        assert_eq!([3, 4, 16].map(background_workers), [3, 4, 4]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn fjalls_workers_run_nicer_than_the_threads_that_commit() {
        use super::super::{Limits, OpenOptions, Store};
        use super::{FJALL_WORKER_NICE, FJALL_WORKER_THREAD_NAME};
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits { key_bytes_max: 64, value_bytes_max: 1024, txn_bytes_max: 1 << 20, batch_items_max: 100, batch_bytes_max: 1 << 24 };
        let options = OpenOptions { path: dir.path().join("db").to_string_lossy().into_owned(), cache_bytes: None, row_cache_bytes: None, limits };
        let (store, _) = Store::open(&options).unwrap();
        // (name, nice) of every thread of this process; other tests open stores at the same
        // time, so this store's workers are counted among all of them.
        let threads = || -> Vec<(String, i32)> {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .flatten()
                .filter_map(|task| {
                    let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
                    let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
                    // Fields after the ")" that ends comm: state is the 1st, nice the 17th.
                    let nice = stat[stat.rfind(')')? + 2..].split(' ').nth(16)?.parse().ok()?;
                    Some((comm.trim_end().to_string(), nice))
                })
                .collect()
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let niced = threads().iter().filter(|(name, nice)| name == FJALL_WORKER_THREAD_NAME && *nice >= FJALL_WORKER_NICE).count();
        assert!(niced >= background_workers(cores), "{:?}", threads());
        // This thread, which opened the store (and commits in the daemon), keeps its priority.
        // SAFETY: getpriority on the calling thread.
        let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        assert!(own < FJALL_WORKER_NICE, "the opening thread runs at nice {own}");
        drop(store);
    }
}
