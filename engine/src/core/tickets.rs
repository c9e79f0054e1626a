//! Durability tickets: the counters behind `seq`, `writtenSeq()` and `durableSeq()`.
//!
//! Responsibility: hand every write a ticket and track how far tickets are written and durable.
//!
//! Invariants:
//! - `durable <= written <= issued`, all monotonic.
//! - A ticket is issued (`issued` bumped) BEFORE its fjall commit starts, so a reader that
//!   observes the commit and then loads `issued` sees a value >= that ticket.
//! - `written` is only raised after the commit returned (successfully or not); tickets are issued
//!   and written under the store's commit mutex, so `written` = the last issued ticket whenever
//!   no commit is in progress.
//! - `durable` only rises to a `written` value that was sampled before the fsync started.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Tickets {
    issued: AtomicU64,
    written: AtomicU64,
    durable: AtomicU64,
}

impl Tickets {
    /// Issues the next ticket. Callers hold the commit mutex.
    pub fn issue(&self) -> u64 {
        self.issued.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Marks `ticket` written (its commit returned). Callers hold the commit mutex.
    pub fn mark_written(&self, ticket: u64) {
        self.written.fetch_max(ticket, Ordering::SeqCst);
    }

    pub fn mark_durable(&self, ticket: u64) -> u64 {
        self.durable.fetch_max(ticket, Ordering::SeqCst).max(ticket)
    }

    /// Highest ticket a read could have observed (load after the read).
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::SeqCst)
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::SeqCst)
    }
}
