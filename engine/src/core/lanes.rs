//! Ordered lanes: engine calls that run in submission order on a few long-lived threads.
//!
//! Why: a connection's calls that may write must apply in the order received, so on the libuv
//! pool (where two calls may run at once on two threads) the daemon could only have one such
//! call of a connection in flight at a time. Each call then cost two cross-thread wake-ups with
//! nothing overlapping them: the client, the daemon's JS thread and the engine took turns. A
//! lane runs its calls one after another on its own thread, so a connection may have several
//! calls queued on its lane: the lane works on the next while JS sends the replies of the last,
//! and a busy lane goes from call to call without sleeping.
//!
//! Invariants:
//! - Calls submitted to one lane run one at a time, in submission order; their outcomes are
//!   queued in completion order, so one lane's outcomes come out in submission order.
//! - At most one "done" notice is pending with the owner at a time (sent when the first outcome
//!   lands after the owner's last `take_done`); the owner takes every outcome queued at once.
//! - Queues are bounded by the owner: it submits at most a bounded number of calls per
//!   connection, for a bounded number of connections (daemon/runner.ts).
//! - A lane sleeps only with an empty queue, and a call queued while it sleeps wakes it: at
//!   once (`submit` with `wake`), or at the owner's next `wake` (a deferred wake lets the small
//!   calls of one event-loop turn share one wake-up; the owner always makes that call).
//! - A lane with no call to run calls `idle` (outside its locks; a panic in it is contained)
//!   before it sleeps, and again before it stops: the engine applies the row-cache effects its
//!   commits left (rowcache.rs).
//! - A panic in a call becomes that call's INTERNAL error; the lane keeps running.
//! - `stop` lets each lane finish the calls already queued, then joins the threads.

use super::error::{EngineError, EngineResult};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// What a lane runs: an encoded call (abi.rs) of the caller `key` (the number it was submitted
/// under, whichever lane that maps to), with `resume` as the caller gave it (engine.rs).
pub struct LaneCall {
    pub key: usize,
    pub resume: bool,
    pub input: Vec<u8>,
}

/// Runs one call to its encoded results.
pub type Runner = Arc<dyn Fn(LaneCall) -> EngineResult<Vec<u8>> + Send + Sync>;
/// Tells the owner that outcomes are waiting in `take_done`.
pub type Notify = Arc<dyn Fn() + Send + Sync>;
/// Work a lane does when it has no call to run.
pub type Idle = Arc<dyn Fn() + Send + Sync>;

/// The outcome of one submitted call.
pub struct Done {
    pub call: u32,
    pub output: EngineResult<Vec<u8>>,
}

#[derive(Default)]
struct LaneState {
    queue: VecDeque<(u32, LaneCall)>,
    stopping: bool,
    /// The lane waits on `wake` and nobody has signalled it since: only then does a new call
    /// need a signal (a futex syscall, and a cross-CPU wake-up that costs the caller more).
    sleeping: bool,
}

#[derive(Default)]
struct Lane {
    state: Mutex<LaneState>,
    wake: Condvar,
}

struct Outbox {
    done: Mutex<Vec<Done>>,
    /// A notice was sent and the owner has not taken the outcomes since.
    pending: AtomicBool,
    notify: Notify,
}

pub struct Lanes {
    lanes: Vec<Arc<Lane>>,
    outbox: Arc<Outbox>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Lanes {
    pub fn start(count: usize, runner: Runner, notify: Notify, idle: Idle) -> EngineResult<Lanes> {
        if count == 0 {
            return Err(EngineError::invalid("at least one lane is needed"));
        }
        let outbox = Arc::new(Outbox { done: Mutex::new(Vec::new()), pending: AtomicBool::new(false), notify });
        let lanes: Vec<Arc<Lane>> = (0..count).map(|_| Arc::new(Lane::default())).collect();
        let mut threads = Vec::with_capacity(count);
        for (index, lane) in lanes.iter().enumerate() {
            let (lane, out, runner, idle) = (lane.clone(), outbox.clone(), runner.clone(), idle.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("toondb:lane{index}"))
                .spawn(move || run(&lane, &out, &*runner, &*idle))
                .map_err(|e| EngineError::from_io("starting an engine lane", &e));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(error) => {
                    let started = Lanes { lanes, outbox, threads: Mutex::new(threads) };
                    started.stop();
                    return Err(error);
                }
            }
        }
        Ok(Lanes { lanes, outbox, threads: Mutex::new(threads) })
    }

    pub fn count(&self) -> usize {
        self.lanes.len()
    }

    /// Queues `input` (an encoded call) on lane `key` (taken modulo the lane count); the runner
    /// gets `key` and `resume` with it. With `wake` a sleeping lane is woken now; without, it
    /// stays asleep until the next `wake` (a running lane finds the call either way).
    pub fn submit(&self, key: usize, call: u32, input: Vec<u8>, resume: bool, wake: bool) -> EngineResult<()> {
        let lane = &self.lanes[key % self.lanes.len()];
        let mut state = lane.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.stopping {
            return Err(EngineError::ShuttingDown);
        }
        state.queue.push_back((call, LaneCall { key, resume, input }));
        if wake {
            signal_if_sleeping(lane, &mut state);
        }
        Ok(())
    }

    /// Wakes every sleeping lane that has calls queued (those `submit` queued without `wake`).
    pub fn wake(&self) {
        for lane in &self.lanes {
            let mut state = lane.state.lock().unwrap_or_else(|p| p.into_inner());
            if !state.queue.is_empty() {
                signal_if_sleeping(lane, &mut state);
            }
        }
    }

    /// Every outcome queued so far, in completion order; re-arms the notice.
    pub fn take_done(&self) -> Vec<Done> {
        // Cleared before taking: an outcome queued after the take sends a new notice.
        self.outbox.pending.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.outbox.done.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Lets every lane finish what is queued, then joins them. Idempotent.
    pub fn stop(&self) {
        for lane in &self.lanes {
            let mut state = lane.state.lock().unwrap_or_else(|p| p.into_inner());
            state.stopping = true;
            state.sleeping = false;
            lane.wake.notify_one();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(lane: &Lane, outbox: &Outbox, runner: &(dyn Fn(LaneCall) -> EngineResult<Vec<u8>> + Send + Sync), idle: &(dyn Fn() + Send + Sync)) {
    loop {
        let next = lane.state.lock().unwrap_or_else(|p| p.into_inner()).queue.pop_front();
        let Some((call, lane_call)) = next else {
            idle_safely(idle);
            let mut state = lane.state.lock().unwrap_or_else(|p| p.into_inner());
            while state.queue.is_empty() {
                if state.stopping {
                    drop(state);
                    idle_safely(idle);
                    return;
                }
                state.sleeping = true;
                state = lane.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                state.sleeping = false;
            }
            continue;
        };
        let output = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner(lane_call)))
            .unwrap_or_else(|_| Err(EngineError::Internal("the storage engine panicked in a lane call".into())));
        outbox.done.lock().unwrap_or_else(|p| p.into_inner()).push(Done { call, output });
        if !outbox.pending.swap(true, Ordering::SeqCst) {
            (outbox.notify)();
        }
    }
}

/// Signals `lane` if it sleeps, once: until it wakes, further calls find it signalled.
fn signal_if_sleeping(lane: &Lane, state: &mut LaneState) {
    if state.sleeping {
        state.sleeping = false;
        lane.wake.notify_one();
    }
}

/// Runs the idle work; a panic in it (a broken invariant) must not end the lane, whose queued
/// and future calls would then never be answered.
fn idle_safely(idle: &(dyn Fn() + Send + Sync)) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(idle));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    use std::time::Duration;

    fn started(count: usize, runner: Runner) -> (Lanes, mpsc::Receiver<()>) {
        let (sent, notices) = mpsc::channel();
        let sent = Mutex::new(sent);
        let lanes = Lanes::start(count, runner, Arc::new(move || sent.lock().unwrap().send(()).unwrap()), Arc::new(|| ())).unwrap();
        (lanes, notices)
    }

    fn drain(lanes: &Lanes, notices: &mpsc::Receiver<()>, want: usize) -> Vec<Done> {
        let mut all = Vec::new();
        while all.len() < want {
            notices.recv_timeout(Duration::from_secs(5)).expect("a notice");
            all.extend(lanes.take_done());
        }
        all
    }

    #[test]
    fn runs_each_lanes_calls_in_order_and_reports_every_outcome() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let runner: Runner = {
            let seen = seen.clone();
            Arc::new(move |call: LaneCall| {
                let input = call.input;
                assert_eq!(call.key.to_string().into_bytes() == input, !matches!(call.key, 7 | 9));
                assert_eq!(call.resume, call.key == 12);
                seen.lock().unwrap().push(input.clone());
                if input == b"boom" {
                    panic!("injected");
                }
                if input == b"bad" {
                    return Err(EngineError::invalid("bad call"));
                }
                Ok(input.iter().rev().copied().collect())
            })
        };
        let (lanes, notices) = started(2, runner);
        for call in 0..50u32 {
            let input = match call {
                7 => b"boom".to_vec(),
                9 => b"bad".to_vec(),
                _ => format!("{call}").into_bytes(),
            };
            lanes.submit(call as usize, call, input, call == 12, call % 3 != 0).unwrap();
            if call % 10 == 9 {
                lanes.wake();
            }
        }
        let done = drain(&lanes, &notices, 50);
        for parity in 0..2 {
            let calls: Vec<u32> = done.iter().map(|d| d.call).filter(|c| c % 2 == parity).collect();
            assert!(calls.windows(2).all(|w| w[0] < w[1]), "one lane's outcomes come out in order: {calls:?}");
            assert_eq!(calls.len(), 25);
        }
        let by_call = |call: u32| done.iter().find(|d| d.call == call).unwrap();
        assert_eq!(by_call(12).output.as_ref().unwrap(), b"21");
        assert!(matches!(by_call(7).output, Err(EngineError::Internal(_))), "a panic is that call's error");
        assert!(matches!(by_call(9).output, Err(EngineError::InvalidArgument(_))));
        assert_eq!(by_call(11).output.as_ref().unwrap(), b"11", "the lane ran on after the panic");
        lanes.stop();
        assert!(matches!(lanes.submit(0, 99, Vec::new(), false, true), Err(EngineError::ShuttingDown)));
    }

    #[test]
    fn a_lane_goes_idle_only_when_it_has_no_call_to_run() {
        // The idle hook counts the calls that ran before it: with calls queued back to back it
        // is not called between them, and it is called once they are all done. The first call
        // waits until all five are queued, so none of them can find the lane empty.
        let ran = Arc::new(AtomicUsize::new(0));
        let idle_after = Arc::new(Mutex::new(Vec::new()));
        let (all_queued, queued) = std::sync::mpsc::channel::<()>();
        let queued = Mutex::new(queued);
        let runner: Runner = {
            let ran = ran.clone();
            Arc::new(move |call: LaneCall| {
                if call.input == [0] {
                    queued.lock().unwrap().recv().unwrap();
                }
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(call.input)
            })
        };
        let idle: Idle = {
            let (ran, idle_after) = (ran.clone(), idle_after.clone());
            Arc::new(move || idle_after.lock().unwrap().push(ran.load(Ordering::SeqCst)))
        };
        let lanes = Lanes::start(1, runner, Arc::new(|| ()), idle).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while idle_after.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        for call in 0..5u32 {
            lanes.submit(0, call, vec![call as u8], false, true).unwrap();
        }
        all_queued.send(()).unwrap();
        lanes.stop();
        let seen = idle_after.lock().unwrap().clone();
        assert_eq!(seen.first(), Some(&0), "idle before the first call");
        assert_eq!(seen.last(), Some(&5), "idle once every call ran");
        assert!(seen.iter().all(|&n| n == 0 || n == 5), "not between queued calls: {seen:?}");
    }

    #[test]
    fn a_call_queued_without_wake_waits_for_the_next_wake() {
        let (lanes, notices) = started(1, Arc::new(|call: LaneCall| Ok(call.input)));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !lanes.lanes[0].state.lock().unwrap().sleeping {
            assert!(std::time::Instant::now() < deadline, "the lane never went to sleep");
            std::thread::sleep(Duration::from_millis(1));
        }
        lanes.submit(0, 1, vec![1], false, false).unwrap();
        lanes.submit(0, 2, vec![2], false, false).unwrap();
        assert!(notices.recv_timeout(Duration::from_millis(100)).is_err(), "a sleeping lane was woken without `wake`");
        assert!(lanes.lanes[0].state.lock().unwrap().sleeping);
        lanes.wake();
        let done = drain(&lanes, &notices, 2);
        assert_eq!(done.iter().map(|d| d.call).collect::<Vec<_>>(), vec![1, 2]);
        // Once it sleeps again, a call with `wake` runs at once.
        while !lanes.lanes[0].state.lock().unwrap().sleeping {
            assert!(std::time::Instant::now() < deadline, "the lane never went back to sleep");
            std::thread::sleep(Duration::from_millis(1));
        }
        lanes.submit(0, 3, vec![3], false, true).unwrap();
        assert_eq!(drain(&lanes, &notices, 1)[0].call, 3);
    }

    #[test]
    fn stop_finishes_queued_calls_first() {
        let runner: Runner = Arc::new(|call: LaneCall| {
            std::thread::sleep(Duration::from_millis(2));
            Ok(call.input)
        });
        let (lanes, _notices) = started(1, runner);
        for call in 0..10u32 {
            lanes.submit(0, call, vec![call as u8], false, true).unwrap();
        }
        lanes.stop();
        let done = lanes.take_done();
        assert_eq!(done.iter().map(|d| d.call).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    }
}
