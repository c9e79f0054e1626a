//! The group-commit thread: fsyncs the journal back to back for as long as someone waits for
//! durability, and tells its owner when a fsync completes.
//!
//! Why a thread of its own: run from the libuv pool, every fsync paid a pool wake-up on the way
//! in and a JS turn on the way out before the next one could start, and the next one waited for
//! the daemon's JS thread to come round to it. Measured under 256 durable writers: fdatasync
//! took ~370 µs, yet a fsync only started every ~800 µs. Here the next fsync starts as soon as
//! the last one returns, while the JS thread releases the replies of the last one.
//!
//! Invariants:
//! - One thread per syncer. It fsyncs only while a requested ticket is above the durable one
//!   and something written is not durable yet; otherwise it sleeps on a condvar (polling while
//!   a requested ticket is not written yet, see VOID_POLL). A notice also goes out when the
//!   durable ticket rose without a fsync (a voided ticket) while someone waits.
//! - At most one success notice is queued to the owner at a time: the next is sent only after
//!   the owner took the last (`Notice::take`), so the owner's queue is bounded; the owner reads
//!   the durable ticket itself, which is at least the one the notice was sent for.
//! - A failed fsync is always reported, then the thread ends: the store is poisoned and refuses
//!   writes, so no later fsync could make anything new durable.
//! - `stop` wakes and joins the thread; no notice is sent after it returns.

use super::error::{EngineError, EngineResult};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the thread reports: a completed fsync (`error` None) or the failure that ended it.
pub struct Notice {
    pub error: Option<EngineError>,
    pending: Arc<AtomicBool>,
}

impl Notice {
    /// Marks the notice as taken by the owner (on the owner's thread, before it reads the
    /// durable ticket), so the next fsync sends a new one.
    pub fn take(&self) {
        self.pending.store(false, Ordering::SeqCst);
    }
}

/// What the thread fsyncs: the store (store.rs), or a fake in tests.
pub trait SyncTarget: Send + 'static {
    fn written(&self) -> u64;
    fn durable(&self) -> u64;
    /// One journal fsync covering every ticket written before it started.
    fn fsync(&self) -> EngineResult<u64>;
}

pub type Notify = Box<dyn Fn(Notice) + Send>;

#[derive(Default)]
struct State {
    requested: u64,
    stopping: bool,
    /// The thread sleeps in VOID_POLL waiting for the write of a requested ticket.
    polling: bool,
    /// The thread sleeps on the condvar (`polling` or not). While it does not, it looks at
    /// `requested` under the lock before it sleeps again, so a request needs no wake-up.
    waiting: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

pub struct Syncer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Syncer {
    pub fn start(target: impl SyncTarget, notify: Notify) -> EngineResult<Syncer> {
        let shared = Arc::new(Shared::default());
        let looped = shared.clone();
        // Sampled here, not in the thread: a rise before the thread first runs must be reported.
        let reported = target.durable();
        let thread = std::thread::Builder::new()
            .name("toondb:sync".into())
            .spawn(move || run(&looped, &target, &notify, reported))
            .map_err(|e| EngineError::from_io("starting the group-commit thread", &e))?;
        Ok(Syncer { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Asks for a fsync covering `ticket`. Only a thread asleep is woken: a higher ticket wakes
    /// it, and a ticket not higher than the last one only while it polls for a requested
    /// ticket's write (VOID_POLL: it then comes from that ticket's writer). Otherwise a request
    /// costs a lock and no system call: a ticket asked for twice is cheap (the daemon's gate
    /// no longer repeats its lanes' asks: engine/index.ts `requestSync`), and so is every
    /// request while the thread fsyncs back to back
    /// (a wake-up is a futex call, and on a VM an interrupt to another vCPU: ~9 µs of the
    /// daemon's JS thread per durable write from 256 connections, 13 % of its time).
    pub fn request(&self, ticket: u64) {
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let higher = ticket > state.requested;
        if higher {
            state.requested = ticket;
        }
        if state.waiting && (higher || state.polling) {
            self.shared.wake.notify_one();
        }
    }

    /// Ends the thread after the fsync it may be running. Idempotent.
    pub fn stop(&self) {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner()).stopping = true;
        self.shared.wake.notify_one();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            // A panic in the thread was already reported as a notice; nothing to add here.
            let _ = thread.join();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long the thread sleeps, while a requested ticket is not written yet, before it looks
/// again. The commit holding that ticket either writes it (its writer then requests a fsync,
/// which wakes the thread at once) or voids it (tickets.rs), which wakes nobody: this bounds how
/// long a read that overlapped a failed commit waits for its reply.
const VOID_POLL: Duration = Duration::from_millis(1);

enum Step {
    Fsync,
    Report,
}

fn run(shared: &Shared, target: &impl SyncTarget, notify: &Notify, mut reported: u64) {
    let pending = Arc::new(AtomicBool::new(false));
    loop {
        let step = {
            let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if state.stopping {
                    return;
                }
                let durable = target.durable();
                if state.requested > durable && target.written() > durable {
                    break Step::Fsync;
                }
                // Durable moved without a fsync (a voided ticket) while someone waits.
                if durable > reported && state.requested > reported {
                    break Step::Report;
                }
                state.waiting = true;
                state = if state.requested > durable {
                    state.polling = true;
                    let mut woken = shared.wake.wait_timeout(state, VOID_POLL).unwrap_or_else(|p| p.into_inner()).0;
                    woken.polling = false;
                    woken
                } else {
                    shared.wake.wait(state).unwrap_or_else(|p| p.into_inner())
                };
                state.waiting = false;
            }
        };
        if let Step::Fsync = step {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target.fsync()))
                .unwrap_or_else(|_| Err(EngineError::Internal("the journal fsync panicked".into())));
            if let Err(error) = outcome {
                notify(Notice { error: Some(error), pending: pending.clone() });
                return;
            }
        }
        reported = target.durable();
        if !pending.swap(true, Ordering::SeqCst) {
            notify(Notice { error: None, pending: pending.clone() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tickets::Tickets;
    use std::sync::atomic::AtomicU64;
    use std::sync::mpsc;

    #[derive(Clone, Default)]
    struct Fake {
        tickets: Arc<Tickets>,
        fsyncs: Arc<AtomicU64>,
        failing: bool,
        /// If set, each fsync tells this channel it started, then waits for a go from `resume`.
        gate: Option<(mpsc::SyncSender<()>, Arc<Mutex<mpsc::Receiver<()>>>)>,
    }

    impl Fake {
        fn write(&self) {
            self.tickets.mark_written(self.tickets.issue());
        }
    }

    impl SyncTarget for Fake {
        fn written(&self) -> u64 {
            self.tickets.written()
        }
        fn durable(&self) -> u64 {
            self.tickets.durable()
        }
        fn fsync(&self) -> EngineResult<u64> {
            self.fsyncs.fetch_add(1, Ordering::SeqCst);
            // What this fsync covers is sampled before it blocks, as the store's is.
            let covered = self.tickets.written();
            if let Some((started, resume)) = &self.gate {
                started.send(()).unwrap();
                resume.lock().unwrap().recv().unwrap();
                return Ok(self.tickets.mark_durable(covered));
            }
            if self.failing {
                return Err(EngineError::StorageFailed("injected".into()));
            }
            Ok(self.tickets.mark_durable(self.tickets.written()))
        }
    }

    fn started(fake: &Fake) -> (Syncer, mpsc::Receiver<Notice>) {
        let (sent, notices) = mpsc::channel();
        let syncer = Syncer::start(fake.clone(), Box::new(move |notice| sent.send(notice).unwrap())).unwrap();
        (syncer, notices)
    }

    #[test]
    fn fsyncs_what_is_requested_and_coalesces_notices() {
        let fake = Fake::default();
        let (syncer, notices) = started(&fake);
        // Nothing written: a request alone starts no fsync.
        syncer.request(5);
        assert!(notices.recv_timeout(Duration::from_millis(50)).is_err());
        for _ in 0..3 {
            fake.write();
        }
        syncer.request(3);
        let notice = notices.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(notice.error.is_none());
        assert_eq!(fake.durable(), 3);
        // Until the notice is taken, later fsyncs send none.
        fake.write();
        syncer.request(4);
        while fake.durable() < 4 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(notices.recv_timeout(Duration::from_millis(50)).is_err());
        notice.take();
        fake.write();
        syncer.request(5);
        assert!(notices.recv_timeout(Duration::from_secs(5)).unwrap().error.is_none());
        assert_eq!(fake.fsyncs.load(Ordering::SeqCst), 3);
        syncer.stop();
        syncer.stop();
    }

    /// A request made while the thread fsyncs wakes nobody (the thread is not asleep): the
    /// thread must find it when the fsync returns and fsync again for it.
    #[test]
    fn a_request_made_during_a_fsync_is_fsynced_after_it() {
        let (started_tx, started_rx) = mpsc::sync_channel(4);
        let (resume_tx, resume_rx) = mpsc::channel();
        let fake = Fake { gate: Some((started_tx, Arc::new(Mutex::new(resume_rx)))), ..Fake::default() };
        let (syncer, notices) = started(&fake);
        fake.write();
        syncer.request(1);
        started_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        // The first fsync is running and covers ticket 1 only; ticket 2 is asked for meanwhile.
        fake.write();
        syncer.request(2);
        resume_tx.send(()).unwrap();
        notices.recv_timeout(Duration::from_secs(5)).unwrap().take();
        started_rx.recv_timeout(Duration::from_secs(5)).expect("a second fsync, for the ticket asked for during the first");
        resume_tx.send(()).unwrap();
        while fake.durable() < 2 {
            let notice = notices.recv_timeout(Duration::from_secs(5)).unwrap();
            notice.take();
        }
        assert_eq!(fake.fsyncs.load(Ordering::SeqCst), 2);
        syncer.stop();
    }

    #[test]
    fn a_ticket_requested_before_its_commit_wrote_is_fsynced_once_written() {
        let fake = Fake::default();
        let (syncer, notices) = started(&fake);
        // A read asked for ticket 1 while its commit ran: nothing is written yet.
        let ticket = fake.tickets.issue();
        syncer.request(ticket);
        assert!(notices.recv_timeout(Duration::from_millis(20)).is_err());
        // The commit lands and its writer asks for the same ticket: fsynced and reported.
        fake.tickets.mark_written(ticket);
        syncer.request(ticket);
        assert!(notices.recv_timeout(Duration::from_secs(5)).unwrap().error.is_none());
        assert_eq!((fake.durable(), fake.fsyncs.load(Ordering::SeqCst)), (ticket, 1));
    }

    #[test]
    fn a_voided_ticket_is_reported_without_a_fsync() {
        let fake = Fake::default();
        let (syncer, notices) = started(&fake);
        // A read saw ticket 1 while its commit ran; the commit then applied nothing.
        let ticket = fake.tickets.issue();
        syncer.request(ticket);
        fake.tickets.void(ticket);
        assert!(notices.recv_timeout(Duration::from_secs(5)).unwrap().error.is_none());
        assert_eq!(fake.durable(), ticket);
        assert_eq!(fake.fsyncs.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_failed_fsync_is_reported_and_ends_the_thread() {
        let fake = Fake { failing: true, ..Fake::default() };
        let (syncer, notices) = started(&fake);
        fake.write();
        syncer.request(1);
        let notice = notices.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(matches!(notice.error, Some(EngineError::StorageFailed(_))));
        notice.take();
        fake.write();
        syncer.request(2);
        assert!(notices.recv_timeout(Duration::from_millis(50)).is_err());
        assert_eq!(fake.fsyncs.load(Ordering::SeqCst), 1);
        drop(syncer);
    }
}
