//! Durability tickets: the counters behind `seq`, `writtenSeq()` and `durableSeq()`.
//!
//! Responsibility: hand every write a ticket and track how far tickets are written and durable.
//!
//! Invariants:
//! - `durable <= written <= issued`, all monotonic.
//! - A ticket is issued (`issued` bumped) BEFORE its fjall commit starts, so a reader that
//!   observes the commit and then loads `issued` sees a value >= that ticket.
//! - Ticket numbers are never reused. A commit that applied nothing (conflict, I/O failure) has
//!   its ticket voided: it counts as written, and as durable at once if every earlier ticket is,
//!   since it put nothing in the journal that anyone must wait for. A read that overlapped that
//!   commit (its seq is the voided ticket) so waits for no fsync of its own, and never for a
//!   ticket that only a later commit would take (the hang a reused number caused).
//! - Tickets are issued, written and voided under the store's commit mutex, so `written` = the
//!   last issued ticket whenever no commit is in progress.
//! - `durable` only rises to a `written` value that was sampled before the fsync started, or to
//!   a voided ticket right after its predecessor.

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

    /// Settles the last issued `ticket`, whose commit applied nothing (see the header). Callers
    /// hold the commit mutex.
    pub fn void(&self, ticket: u64) {
        assert_eq!(self.issued(), ticket, "only the last issued ticket can be voided");
        self.written.fetch_max(ticket, Ordering::SeqCst);
        // Fails harmlessly if an earlier ticket is not durable yet: the next fsync covers both.
        let _ = self.durable.compare_exchange(ticket - 1, ticket, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Issues the next ticket for a commit that settles it through the returned guard, which
    /// voids it if dropped unsettled (a panic inside the commit): reads that observed it then
    /// never wait for a write that will not come. Callers hold the commit mutex.
    pub fn issue_guarded(&self) -> Issued<'_> {
        Issued { tickets: self, ticket: self.issue(), settled: false }
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

/// A ticket whose commit is in progress (`Tickets::issue_guarded`).
pub struct Issued<'a> {
    tickets: &'a Tickets,
    pub ticket: u64,
    settled: bool,
}

impl Issued<'_> {
    /// The commit applied.
    pub fn written(mut self) {
        self.settled = true;
        self.tickets.mark_written(self.ticket);
    }

    /// The commit applied nothing.
    pub fn void(mut self) {
        self.settled = true;
        self.tickets.void(self.ticket);
    }
}

impl Drop for Issued<'_> {
    fn drop(&mut self) {
        if !self.settled {
            // Unwinding from a panic: whether the commit applied is unknown, so the ticket counts
            // as written (the next fsync covers whatever it put in the journal, and the reads
            // that observed it wait for that fsync, not forever). The commit lock the panic
            // poisoned refuses every later write.
            self.tickets.mark_written(self.ticket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_voided_ticket_is_settled_and_never_reused() {
        let tickets = Tickets::default();
        let first = tickets.issue();
        tickets.mark_written(first);
        let second = tickets.issue();
        // An earlier ticket is not durable yet: the void waits for the fsync that covers it.
        tickets.void(second);
        assert_eq!((tickets.written(), tickets.durable()), (second, 0));
        assert_eq!(tickets.mark_durable(tickets.written()), second);
        // Everything before is durable: the void is durable at once, and numbers move on.
        let third = tickets.issue();
        tickets.void(third);
        assert_eq!((tickets.written(), tickets.durable()), (third, third));
        assert_eq!(tickets.issue(), third + 1);
    }

    #[test]
    fn a_ticket_dropped_unsettled_by_a_panic_is_settled() {
        let tickets = Tickets::default();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _issued = tickets.issue_guarded();
            panic!("injected: a commit panicked");
        }));
        assert!(outcome.is_err());
        assert_eq!((tickets.issued(), tickets.written(), tickets.durable()), (1, 1, 0), "reads wait for the next fsync only");
        tickets.issue_guarded().void();
        assert_eq!((tickets.written(), tickets.durable()), (2, 0));
    }
}
