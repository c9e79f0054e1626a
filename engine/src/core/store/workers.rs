//! fjall's background workers (memtable flushes and compactions): how many a store asks for,
//! the priority they run at beside the threads that commit, and whether they still run.
//!
//! Invariants: the count is fixed per machine size (`background_workers`); after Store::open
//! the workers run at FJALL_WORKER_NICE or nicer on Linux (best effort: a thread that cannot be
//! found or reniced is left as it is, and open never fails or waits more than
//! WORKER_NAME_WAIT_MAX for it). Opens in one process take turns (`open_with_niced_workers`),
//! and each one takes as its own only workers whose threads did not exist before it opened,
//! so it never counts another store's (`FjallWorkers`).

use super::super::os;
use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
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

/// Held by an open from before it lists the process's threads until its own workers have been
/// found and reniced.
static OPENING: Mutex<()> = Mutex::new(());

/// The background threads fjall started for one store, by thread id. Its open lists the
/// threads that appeared while fjall opened: its workers, named or not yet (a thread names
/// itself once it first runs, which on a busy machine can be later than WORKER_NAME_WAIT_MAX),
/// and any thread started meanwhile elsewhere in the process. One of those is taken for a
/// worker once it is seen carrying the workers' name (nothing else names a thread so, and
/// fjall starts threads only in its open); Linux only, none elsewhere.
pub struct FjallWorkers {
    count: usize,
    seen: Mutex<Seen>,
}

struct Seen {
    /// Seen carrying the workers' name: this store's workers.
    workers: Vec<libc::id_t>,
    /// Not seen so yet.
    unnamed: Vec<libc::id_t>,
}

impl FjallWorkers {
    fn new(appeared: Vec<libc::id_t>, count: usize) -> FjallWorkers {
        FjallWorkers { count, seen: Mutex::new(Seen { workers: Vec::new(), unnamed: appeared }) }
    }

    /// Takes the threads that carry the workers' name by now for workers, and forgets those
    /// that ended unnamed (not workers: a worker names itself before it does anything).
    fn look(&self) -> std::sync::MutexGuard<'_, Seen> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let Seen { workers, unnamed } = &mut *seen;
        if workers.len() >= self.count {
            unnamed.clear();
        }
        unnamed.retain(|&tid| {
            if os::thread_is_named(tid, FJALL_WORKER_THREAD_NAME) {
                workers.push(tid);
                return false;
            }
            os::thread_exists(tid)
        });
        seen
    }

    /// Every thread taken or still to be taken for a worker, without looking again (tests).
    #[cfg(all(test, target_os = "linux"))]
    pub fn threads(&self) -> Vec<libc::id_t> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.workers.iter().chain(&seen.unnamed).copied().collect()
    }

    /// How many of this store's workers have been seen so far (looking again now).
    pub fn found(&self) -> usize {
        self.look().workers.len()
    }

    /// How many of them have ended. A fjall worker ends only when its database is dropped, or
    /// when a flush or compaction it ran failed (fjall 3.1 `worker_pool.rs`: it returns the
    /// error, having poisoned the database; a panic poisons it too). So while the store holds
    /// its database, an ended worker is a failed one, and a flush it had taken never completes.
    /// A worker whose thread is gone, or carries another name, has ended; one whose name cannot
    /// be read (e.g. out of descriptors) is taken to run. So is a worker never seen named that
    /// ended unseen: a checkpoint then waits out its deadline instead.
    pub fn ended(&self) -> usize {
        self.look()
            .workers
            .iter()
            .filter(|&&tid| !os::thread_exists(tid) || os::thread_name(tid).is_some_and(|name| name != FJALL_WORKER_THREAD_NAME))
            .count()
    }
}

/// Runs `open` (fjall's, which starts `workers` background threads), sets FJALL_WORKER_NICE on
/// the threads it started and returns them. Opens in this process take turns here: every
/// thread that exists before `open`, named yet or not, is listed, so a worker of an earlier
/// open that names itself late is never taken for one of this store's; the threads that
/// exist after it and not before are this store's workers and whatever else started
/// meanwhile. This waits until `workers` of them carry the workers' name and are reniced, or
/// WORKER_NAME_WAIT_MAX has passed, since a priority is not worth failing or stalling an open
/// for (those named later are still found by FjallWorkers, not reniced). A failed open waits
/// for nothing.
pub(super) fn open_with_niced_workers<T, E>(workers: usize, open: impl FnOnce() -> Result<T, E>) -> Result<(T, FjallWorkers), E> {
    let _turn = OPENING.lock().unwrap_or_else(PoisonError::into_inner);
    let before: HashSet<libc::id_t> = os::thread_ids().into_iter().collect();
    let opened = open()?;
    let appeared: Vec<libc::id_t> = os::thread_ids().into_iter().filter(|tid| !before.contains(tid)).collect();
    let deadline = Instant::now() + WORKER_NAME_WAIT_MAX;
    while cfg!(target_os = "linux") && Instant::now() < deadline {
        let niced: HashSet<libc::id_t> = niced_fjall_workers().into_iter().collect();
        if appeared.iter().filter(|tid| niced.contains(tid)).count() >= workers {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let found = FjallWorkers::new(appeared, workers);
    // Takes the workers named by now for this store's at once: one that fails a flush before
    // anything else looks (the first checkpoint may come hours later) is then seen to end.
    drop(found.look());
    Ok((opened, found))
}

/// The ids of fjall's workers in this process that run at FJALL_WORKER_NICE or nicer,
/// renicing any found at a higher priority.
fn niced_fjall_workers() -> Vec<libc::id_t> {
    os::nice_threads_named(FJALL_WORKER_THREAD_NAME, FJALL_WORKER_NICE)
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
    mod linux {
        use super::super::super::{Limits, OpenOptions, Store};
        use super::super::{background_workers, FjallWorkers, FJALL_WORKER_NICE, FJALL_WORKER_THREAD_NAME, OPENING};
        use std::path::Path;
        use std::sync::{Barrier, PoisonError};

        fn open_at(dir: &Path) -> Store {
            let limits = Limits { key_bytes_max: 64, value_bytes_max: 1024, txn_bytes_max: 1 << 20, txn_bytes_daemon_max: 1 << 40, batch_items_max: 100, batch_bytes_max: 1 << 24 };
            let options = OpenOptions { path: dir.join("db").to_string_lossy().into_owned(), cache_bytes: None, row_cache_bytes: None, table_files_max: None, limits };
            Store::open(&options).unwrap().0
        }

        /// (name, nice) of every thread of this process, from /proc.
        fn threads() -> Vec<(String, i32)> {
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
        }

        #[test]
        fn fjalls_workers_run_nicer_than_the_threads_that_commit() {
            let dir = tempfile::tempdir().unwrap();
            let store = open_at(dir.path());
            // Other tests open stores at the same time, so this store's workers are counted
            // among all of them.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let all = threads();
            let niced = all.iter().filter(|(name, nice)| name == FJALL_WORKER_THREAD_NAME && *nice >= FJALL_WORKER_NICE).count();
            assert!(niced >= background_workers(cores), "{all:?}");
            // This thread, which opened the store (and commits in the daemon), keeps its priority:
            // that of the process's main thread, below FJALL_WORKER_NICE unless the whole process
            // was started nicer (as by `nice -n 10 cargo test`).
            // SAFETY: getpriority on the calling thread, and on the main thread (tid = pid).
            let (own, main) = unsafe { (libc::getpriority(libc::PRIO_PROCESS, 0), libc::getpriority(libc::PRIO_PROCESS, libc::getpid() as libc::id_t)) };
            assert!(own < FJALL_WORKER_NICE || own == main, "the opening thread runs at nice {own}, the main thread at {main}");
            drop(store);
        }

        /// Each open used to count the niced workers of the whole process, so of two stores
        /// opened at once one could count the other's workers as its own and stop waiting
        /// while its own were not named yet, leaving them at nice 0.
        #[test]
        fn stores_opened_at_once_each_renice_their_own_workers() {
            let dirs: Vec<_> = (0..8).map(|_| tempfile::tempdir().unwrap()).collect();
            let barrier = Barrier::new(dirs.len());
            let stores: Vec<Store> = std::thread::scope(|scope| {
                let opening: Vec<_> = dirs
                    .iter()
                    .map(|dir| {
                        let barrier = &barrier;
                        scope.spawn(move || {
                            barrier.wait();
                            open_at(dir.path())
                        })
                    })
                    .collect();
                opening.into_iter().map(|open| open.join().unwrap()).collect()
            });
            // With OPENING held no open is under way, in this test or any other: every worker
            // of a finished open has been reniced.
            let turn = OPENING.lock().unwrap_or_else(PoisonError::into_inner);
            let all = threads();
            drop(turn);
            let left: Vec<_> = all.iter().filter(|(name, nice)| name == FJALL_WORKER_THREAD_NAME && *nice < FJALL_WORKER_NICE).collect();
            assert!(left.is_empty(), "fjall workers left at a higher priority: {left:?} of {all:?}");
            // And each found its own workers, all of them, none of another's.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let mut seen = std::collections::HashSet::new();
            for store in &stores {
                assert_eq!(store.workers.found(), background_workers(cores));
                assert!(store.workers.look().workers.iter().all(|&tid| seen.insert(tid)), "two stores took the same worker thread");
                assert_eq!(store.workers.ended(), 0);
            }
            drop(stores);
        }

        /// A store's workers end when its database is dropped (and otherwise only when a flush or
        /// compaction failed): `ended` sees them go.
        #[test]
        fn the_workers_of_a_dropped_store_are_seen_to_end() {
            let dir = tempfile::tempdir().unwrap();
            let store = open_at(dir.path());
            let tids = store.workers.look().workers.clone();
            let workers = FjallWorkers::new(tids.clone(), tids.len());
            assert!(workers.found() >= 1 && workers.ended() == 0);
            drop(store);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while workers.ended() < workers.found() {
                assert!(std::time::Instant::now() < deadline, "the dropped store's workers still run");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }

        /// A worker may name itself after its open stopped waiting (a busy machine): it is
        /// taken for one once seen named, and seen to end then; a thread that started during
        /// the open and ends unnamed is no worker.
        #[test]
        fn a_worker_named_after_its_open_is_found_later_and_an_unnamed_thread_never_counts() {
            // No store opens meanwhile: once the unnamed thread ends, a fjall worker of a store
            // another test opens could reuse its thread id and be counted (failed once so).
            let _no_opens = OPENING.lock().unwrap_or_else(PoisonError::into_inner);
            let start = |name_as_worker: bool| {
                let (tid_sent, tid) = std::sync::mpsc::channel();
                let (go, named) = std::sync::mpsc::channel::<()>();
                let (stop, stopped) = std::sync::mpsc::channel::<()>();
                let thread = std::thread::spawn(move || {
                    // SAFETY: gettid has no arguments.
                    tid_sent.send(unsafe { libc::gettid() } as libc::id_t).unwrap();
                    // Named once told to (a thread that is never told goes on unnamed).
                    let _ = named.recv();
                    if name_as_worker {
                        let name = std::ffi::CString::new(FJALL_WORKER_THREAD_NAME).unwrap();
                        // SAFETY: names the calling thread with a NUL-terminated string of 12 bytes.
                        assert_eq!(unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) }, 0);
                    }
                    let _ = stopped.recv();
                });
                (tid.recv().unwrap(), go, stop, thread)
            };
            let (late, name_late, stop_late, late_thread) = start(true);
            let (other, _, stop_other, other_thread) = start(false);
            let workers = FjallWorkers::new(vec![late, other], 1);
            assert_eq!((workers.found(), workers.ended()), (0, 0), "neither carries the workers' name yet");
            drop(stop_other);
            other_thread.join().unwrap();
            assert_eq!((workers.found(), workers.ended()), (0, 0), "a thread that ends unnamed is no worker");
            name_late.send(()).unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while workers.found() == 0 {
                assert!(std::time::Instant::now() < deadline, "the late-named worker was never found");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert_eq!(workers.ended(), 0);
            drop(stop_late);
            late_thread.join().unwrap();
            // join returns once the thread cleared its tid, which the kernel does before it takes
            // the task out of /proc: it may still be listed, under its name, for a moment.
            while workers.ended() == 0 {
                assert!(std::time::Instant::now() < deadline, "the ended worker was never seen to end");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert_eq!((workers.found(), workers.ended()), (1, 1));
        }
    }
}
