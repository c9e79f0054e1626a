//! Frees the memtables that commits rotate out, on a thread of its own, outside fjall's locks.
//!
//! Why: freeing a memtable walks its skiplist, one node (and a cache miss or two) per entry,
//! ~10-30 ms for a 16 MiB one. fjall frees a memtable wherever its last reference drops, and
//! that is inside its version lock, which every commit and every storage read takes: when a
//! flush installs its table, or when the next rotation collects old versions (fjall
//! `inner_rotate_memtable` → lsm-tree `SuperVersions::maintenance`). perf under durable
//! PUT-256 showed a lane's rotation freeing the memtable before last; a rotation timed on the
//! lane took 12-30 ms, and with the reaper holding a reference 0.3-4 ms, but for about one in
//! five (12-23 ms), which strace shows unlinking table files a compaction replaced (~3 ms
//! each): lsm-tree does that when it collects the last version naming them, in the same lock.
//!
//! Invariants:
//! - A retired memtable is dropped here only once the reaper holds its last reference (no
//!   version, snapshot or iterator of fjall's holds it), so the free runs on this thread.
//! - Bounded: at most RETIRED_QUEUE_MAX memtables wait in the channel and RETIRED_HELD_MAX
//!   are held; `retire` on a full channel keeps no reference, and fjall frees that one where it
//!   would have anyway.
//! - While it holds any, the thread checks them RETIRED_POLL_MIN after a memtable arrives or
//!   is released, backing off to RETIRED_POLL_MAX while they stay referenced; holding none, it
//!   sleeps until one is retired. Dropping the reaper ends the thread and releases what it held.

use crate::core::error::{EngineError, EngineResult};
use std::any::Any;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A memtable a commit rotated out, type-erased (fjall does not export lsm-tree's `Memtable`):
/// only its reference count and its drop matter here.
pub type Retired = Arc<dyn Any + Send + Sync>;

/// Memtables waiting in the channel for the thread. fjall halts writers once 4 sealed memtables
/// wait for a flush, per keyspace, and the store has two keyspaces.
const RETIRED_QUEUE_MAX: usize = 8;
/// Memtables the thread holds at once; more wait in the channel.
const RETIRED_HELD_MAX: usize = 8;
/// How soon the thread first looks again at memtables still referenced elsewhere: a flush of a
/// 16 MiB memtable takes tens of ms here.
const RETIRED_POLL_MIN: Duration = Duration::from_millis(10);
/// The longest it waits between looks while a memtable stays referenced: fjall collects the
/// versions naming a flushed memtable at the next rotation, which hands the reaper a new one
/// and brings the wait back to RETIRED_POLL_MIN, or a snapshot holds it.
const RETIRED_POLL_MAX: Duration = Duration::from_secs(5);

pub struct MemtableReaper {
    sender: Option<SyncSender<Retired>>,
    thread: Option<JoinHandle<()>>,
    /// Memtables retired and not yet dropped by the thread.
    holding: Arc<AtomicUsize>,
}

impl MemtableReaper {
    pub fn start() -> EngineResult<MemtableReaper> {
        let (sender, receiver) = sync_channel(RETIRED_QUEUE_MAX);
        let holding = Arc::new(AtomicUsize::new(0));
        let released = holding.clone();
        let thread = std::thread::Builder::new()
            .name("toondb:reaper".into())
            .spawn(move || run(&receiver, &released))
            .map_err(|e| EngineError::from_io("starting the memtable reaper thread", &e))?;
        Ok(MemtableReaper { sender: Some(sender), thread: Some(thread), holding })
    }

    /// Memtables retired and not dropped yet (queued or held).
    pub fn holding(&self) -> usize {
        self.holding.load(Ordering::Acquire)
    }

    /// Takes a reference to a memtable about to be rotated out, so its last reference is the
    /// reaper's. Never blocks: with the channel full the reference is dropped here, which frees
    /// nothing (fjall still holds the memtable).
    pub fn retire(&self, memtable: Retired) {
        if let Some(sender) = &self.sender {
            // Counted first, so the thread never releases one not counted yet.
            self.holding.fetch_add(1, Ordering::AcqRel);
            if sender.try_send(memtable).is_err() {
                // Full, or the thread is gone: the memtable came back in the error and drops here.
                self.holding.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

impl Drop for MemtableReaper {
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            // The thread only drops memtables; a panic there has nothing to report.
            let _ = thread.join();
        }
    }
}

fn run(receiver: &Receiver<Retired>, holding: &AtomicUsize) {
    let mut held: Vec<Retired> = Vec::with_capacity(RETIRED_HELD_MAX);
    let mut poll = RETIRED_POLL_MIN;
    loop {
        let next = if held.is_empty() {
            receiver.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            receiver.recv_timeout(poll)
        };
        match next {
            Ok(memtable) => {
                held.push(memtable);
                poll = RETIRED_POLL_MIN;
            }
            Err(RecvTimeoutError::Timeout) => poll = (poll * 2).min(RETIRED_POLL_MAX),
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while held.len() < RETIRED_HELD_MAX {
            match receiver.try_recv() {
                Ok(memtable) => held.push(memtable),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        let before = held.len();
        held.retain(|memtable| Arc::strong_count(memtable) > 1);
        if held.len() < before {
            holding.fetch_sub(before - held.len(), Ordering::AcqRel);
            poll = RETIRED_POLL_MIN;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Records the thread its drop ran on.
    struct Probe(Arc<std::sync::Mutex<Option<String>>>);

    impl Drop for Probe {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = std::thread::current().name().map(str::to_string);
        }
    }

    fn wait_for(done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_last_reference_is_dropped_on_the_reaper_thread() {
        let reaper = MemtableReaper::start().unwrap();
        let dropped_on = Arc::new(std::sync::Mutex::new(None));
        let memtable: Arc<Probe> = Arc::new(Probe(dropped_on.clone()));
        let elsewhere = memtable.clone();
        reaper.retire(memtable);
        std::thread::sleep(RETIRED_POLL_MIN * 3);
        assert!(dropped_on.lock().unwrap().is_none(), "dropped while still referenced elsewhere");
        assert_eq!(reaper.holding(), 1);
        drop(elsewhere);
        wait_for(|| dropped_on.lock().unwrap().is_some());
        wait_for(|| reaper.holding() == 0);
        assert_eq!(dropped_on.lock().unwrap().as_deref(), Some("toondb:reaper"));
    }

    #[test]
    fn a_full_reaper_keeps_no_reference_and_dropping_it_releases_the_rest() {
        let reaper = MemtableReaper::start().unwrap();
        let pinned: Vec<Arc<usize>> = (0..RETIRED_QUEUE_MAX + RETIRED_HELD_MAX + 4).map(Arc::new).collect();
        for memtable in &pinned {
            reaper.retire(memtable.clone());
        }
        let held = || pinned.iter().filter(|m| Arc::strong_count(m) > 1).count();
        assert!(held() <= RETIRED_QUEUE_MAX + RETIRED_HELD_MAX, "held {} memtables", held());
        assert!(held() >= RETIRED_QUEUE_MAX, "the channel took what it has room for");
        assert_eq!(reaper.holding(), held(), "the count matches the references kept");
        drop(reaper);
        assert_eq!(held(), 0, "dropping the reaper released every reference");
    }
}
