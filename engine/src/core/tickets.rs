//! Durability tickets: the counters behind `seq`, `writtenSeq()` and `durableSeq()`.
//!
//! Responsibility: hand every write a ticket and track how far tickets are written and durable.
//!
//! Invariants:
//! - `durable <= written <= issued`, all monotonic.
//! - A ticket is issued (`issued` bumped) BEFORE its fjall commit starts, so a reader that
//!   observes the commit and then loads `issued` sees a value >= that ticket.
//! - `written` is only raised after a commit applied; a commit that applied nothing (conflict,
//!   I/O failure) gives its ticket back instead. Tickets are issued, written and given back under
//!   the store's commit mutex, so `written` = the last issued ticket whenever no commit is in
//!   progress.
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

    /// Returns the last issued `ticket`: its commit applied nothing. Callers hold the commit mutex.
    pub fn give_back(&self, ticket: u64) {
        let previous = self.issued.fetch_sub(1, Ordering::SeqCst);
        assert_eq!(previous, ticket, "only the last issued ticket can be given back");
    }

    /// Marks `ticket` written (its commit applied). Callers hold the commit mutex.
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
