//! Frees what memtable rotations leave behind (the memtable, and table files a compaction
//! replaced) on a thread of its own, outside fjall's locks.
//!
//! Why: fjall frees a memtable, and unlinks a replaced table file, wherever the last reference
//! to it drops, and that is inside its version lock, which every commit and every storage read
//! takes: when a rotation, a flush or a compaction collects old versions (fjall
//! `inner_rotate_memtable` → lsm-tree `SuperVersions::maintenance`, table `Inner::drop`).
//! Freeing a 16 MiB memtable walks its skiplist, ~10-30 ms here; unlinking a table file takes
//! ~3 ms on this VM. A rotation timed on a lane under durable PUT-256 took 12-30 ms, perf
//! showing it freeing the memtable before last; with the reaper holding memtables 0.3-4 ms but
//! for one in five (12-23 ms: strace showed those unlinking tables), and holding versions too,
//! at most 9 ms in putBatch runs, the unlinks running here instead (10-21 ms a rotation).
//!
//! Invariants:
//! - A retired memtable is dropped here only once the reaper holds its last reference (no
//!   version, snapshot or iterator of fjall's holds it), so its free runs on this thread.
//! - A tree's version, taken as a rotation begins and sent once it ended, keeps every table it
//!   names open; a compaction that replaces one then leaves its unlink to whoever drops the
//!   last reference. The reaper drops a keyspace's version when that keyspace's next one
//!   arrives (that rotation's version collection has run, so this drop is usually the last) or
//!   at its first look VERSION_HOLD_MAX after it arrived, at most RETIRED_POLL_MAX later (writes
//!   stopped: replaced files stay on disk no longer than that).
//! - Bounded: at most RETIRED_QUEUE_MAX items wait in the channel, RETIRED_HELD_MAX memtables
//!   and one version per keyspace are held; `retire_*` on a full channel keeps no reference,
//!   and fjall frees that one where it would have anyway.
//! - While it holds anything, the thread looks again RETIRED_POLL_MIN after something arrives
//!   or is released, backing off to RETIRED_POLL_MAX; holding nothing, it sleeps until
//!   something is retired. Dropping the reaper ends the thread and releases what it held.

use crate::core::error::{EngineError, EngineResult};
use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A memtable a commit rotated out, type-erased (fjall does not export lsm-tree's `Memtable`):
/// only its reference count and its drop matter here.
pub type RetiredMemtable = Arc<dyn Any + Send + Sync>;
/// A tree's version (lsm-tree `Version`), type-erased: it keeps its tables open until dropped.
pub type RetiredVersion = Box<dyn Any + Send + Sync>;

/// The store's keyspaces (data, TTL; `retire_version` takes their index): one version each.
const KEYSPACES: usize = 2;

enum Retiring {
    Memtable(RetiredMemtable),
    Version { keyspace: usize, version: RetiredVersion },
}

/// Items waiting in the channel for the thread. fjall halts writers once 4 sealed memtables
/// wait for a flush, per keyspace, and each rotation sends a memtable and a version.
const RETIRED_QUEUE_MAX: usize = 16;
/// Memtables the thread holds at once; more wait in the channel.
const RETIRED_HELD_MAX: usize = 8;
/// How soon the thread first looks again at what it holds: a flush of a 16 MiB memtable takes
/// tens of ms here.
const RETIRED_POLL_MIN: Duration = Duration::from_millis(10);
/// The longest it waits between looks: fjall collects the versions naming a flushed memtable at
/// the next rotation, which sends the reaper something new and brings the wait back to
/// RETIRED_POLL_MIN; otherwise a snapshot holds the memtable, or writes stopped.
const RETIRED_POLL_MAX: Duration = Duration::from_secs(5);
/// How long a version is held when no later one of its keyspace arrives: rotations under a
/// write load come every 0.3-1 s here; slower writers rotate too rarely to stall anyone.
const VERSION_HOLD_MAX: Duration = Duration::from_secs(3);

pub struct Reaper {
    sender: Option<SyncSender<Retiring>>,
    thread: Option<JoinHandle<()>>,
    /// Memtables retired and not yet dropped by the thread.
    memtables: Arc<AtomicUsize>,
}

impl Reaper {
    pub fn start() -> EngineResult<Reaper> {
        let (sender, receiver) = sync_channel(RETIRED_QUEUE_MAX);
        let memtables = Arc::new(AtomicUsize::new(0));
        let released = memtables.clone();
        let thread = std::thread::Builder::new()
            .name("toondb:reaper".into())
            .spawn(move || run(&receiver, &released))
            .map_err(|e| EngineError::from_io("starting the reaper thread", &e))?;
        Ok(Reaper { sender: Some(sender), thread: Some(thread), memtables })
    }

    /// Memtables retired and not dropped yet (queued or held).
    pub fn memtables(&self) -> usize {
        self.memtables.load(Ordering::Acquire)
    }

    /// Takes a reference to a memtable about to be rotated out, so its last reference is the
    /// reaper's. Never blocks: with the channel full the reference is dropped here, which frees
    /// nothing (fjall still holds the memtable).
    pub fn retire_memtable(&self, memtable: RetiredMemtable) {
        // Counted first, so the thread never releases one not counted yet.
        self.memtables.fetch_add(1, Ordering::AcqRel);
        if !self.send(Retiring::Memtable(memtable)) {
            self.memtables.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Hands over `keyspace`'s version as it was when a rotation began, once the rotation (and
    /// the version collection in it) is done. Never blocks, like `retire_memtable`.
    pub fn retire_version(&self, keyspace: usize, version: RetiredVersion) {
        assert!(keyspace < KEYSPACES, "keyspace {keyspace} out of range");
        self.send(Retiring::Version { keyspace, version });
    }

    /// False if the channel was full or the thread is gone: the item came back in the error
    /// and drops here.
    fn send(&self, item: Retiring) -> bool {
        self.sender.as_ref().is_some_and(|sender| sender.try_send(item).is_ok())
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            // The thread only drops what it was given; a panic there has nothing to report.
            let _ = thread.join();
        }
    }
}

/// What the thread holds.
struct Held {
    memtables: Vec<RetiredMemtable>,
    versions: [Option<(Instant, RetiredVersion)>; KEYSPACES],
}

impl Held {
    fn is_empty(&self) -> bool {
        self.memtables.is_empty() && self.versions.iter().all(Option::is_none)
    }

    fn take(&mut self, item: Retiring) {
        match item {
            Retiring::Memtable(memtable) => self.memtables.push(memtable),
            // The replaced version drops here, after the rotation that sent the new one.
            Retiring::Version { keyspace, version } => self.versions[keyspace] = Some((Instant::now(), version)),
        }
    }

    /// Drops the memtables only the reaper still holds and the versions held too long; returns
    /// how many memtables it dropped and whether anything was released.
    fn release(&mut self, now: Instant) -> (usize, bool) {
        let before = self.memtables.len();
        self.memtables.retain(|memtable| Arc::strong_count(memtable) > 1);
        let mut released = self.memtables.len() < before;
        for slot in &mut self.versions {
            if slot.as_ref().is_some_and(|(since, _)| now.duration_since(*since) >= VERSION_HOLD_MAX) {
                *slot = None;
                released = true;
            }
        }
        (before - self.memtables.len(), released)
    }
}

fn run(receiver: &Receiver<Retiring>, memtables: &AtomicUsize) {
    let mut held = Held { memtables: Vec::with_capacity(RETIRED_HELD_MAX), versions: [None, None] };
    let mut poll = RETIRED_POLL_MIN;
    loop {
        let next = if held.is_empty() {
            receiver.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            receiver.recv_timeout(poll)
        };
        match next {
            Ok(item) => {
                held.take(item);
                poll = RETIRED_POLL_MIN;
            }
            Err(RecvTimeoutError::Timeout) => poll = (poll * 2).min(RETIRED_POLL_MAX),
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while held.memtables.len() < RETIRED_HELD_MAX {
            match receiver.try_recv() {
                Ok(item) => held.take(item),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        let (dropped, released) = held.release(Instant::now());
        memtables.fetch_sub(dropped, Ordering::AcqRel);
        if released {
            poll = RETIRED_POLL_MIN;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the thread its drop ran on.
    struct Probe(Arc<std::sync::Mutex<Option<String>>>);

    impl Drop for Probe {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = std::thread::current().name().map(str::to_string);
        }
    }

    fn probe() -> (Probe, Arc<std::sync::Mutex<Option<String>>>) {
        let dropped_on = Arc::new(std::sync::Mutex::new(None));
        (Probe(dropped_on.clone()), dropped_on)
    }

    fn wait_for(done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_memtable_s_last_reference_is_dropped_on_the_reaper_thread() {
        let reaper = Reaper::start().unwrap();
        let (probe, dropped_on) = probe();
        let memtable = Arc::new(probe);
        let elsewhere = memtable.clone();
        reaper.retire_memtable(memtable);
        std::thread::sleep(RETIRED_POLL_MIN * 3);
        assert!(dropped_on.lock().unwrap().is_none(), "dropped while still referenced elsewhere");
        assert_eq!(reaper.memtables(), 1);
        drop(elsewhere);
        wait_for(|| dropped_on.lock().unwrap().is_some());
        assert_eq!(dropped_on.lock().unwrap().as_deref(), Some("toondb:reaper"));
        wait_for(|| reaper.memtables() == 0);
    }

    #[test]
    fn a_version_is_dropped_on_the_reaper_thread_when_its_keyspace_s_next_one_arrives() {
        let reaper = Reaper::start().unwrap();
        let (first, first_dropped_on) = probe();
        let (other, other_dropped_on) = probe();
        let (second, second_dropped_on) = probe();
        reaper.retire_version(0, Box::new(first));
        reaper.retire_version(1, Box::new(other));
        std::thread::sleep(RETIRED_POLL_MIN * 3);
        assert!(first_dropped_on.lock().unwrap().is_none(), "held until its keyspace's next version");
        reaper.retire_version(0, Box::new(second));
        wait_for(|| first_dropped_on.lock().unwrap().is_some());
        assert_eq!(first_dropped_on.lock().unwrap().as_deref(), Some("toondb:reaper"));
        assert!(other_dropped_on.lock().unwrap().is_none(), "another keyspace's version stays");
        assert!(second_dropped_on.lock().unwrap().is_none());
        drop(reaper);
        assert!(other_dropped_on.lock().unwrap().is_some() && second_dropped_on.lock().unwrap().is_some(), "dropping the reaper released them");
    }

    #[test]
    fn a_version_held_past_version_hold_max_is_released() {
        let mut held = Held { memtables: Vec::new(), versions: [None, None] };
        let (version, dropped_on) = probe();
        held.take(Retiring::Version { keyspace: 1, version: Box::new(version) });
        assert_eq!(held.release(Instant::now()), (0, false));
        assert!(dropped_on.lock().unwrap().is_none());
        assert_eq!(held.release(Instant::now() + VERSION_HOLD_MAX), (0, true));
        assert!(dropped_on.lock().unwrap().is_some() && held.is_empty());
    }

    #[test]
    fn a_full_reaper_keeps_no_reference_and_dropping_it_releases_the_rest() {
        let reaper = Reaper::start().unwrap();
        let pinned: Vec<Arc<usize>> = (0..RETIRED_QUEUE_MAX + RETIRED_HELD_MAX + 4).map(Arc::new).collect();
        for memtable in &pinned {
            reaper.retire_memtable(memtable.clone());
        }
        let held = || pinned.iter().filter(|m| Arc::strong_count(m) > 1).count();
        assert!(held() <= RETIRED_QUEUE_MAX + RETIRED_HELD_MAX, "held {} memtables", held());
        assert!(held() >= RETIRED_QUEUE_MAX, "the channel took what it has room for");
        assert_eq!(reaper.memtables(), held(), "the count matches the references kept");
        drop(reaper);
        assert_eq!(held(), 0, "dropping the reaper released every reference");
    }
}
