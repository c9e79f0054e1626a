//! Spare byte buffers: large result buffers kept for reuse instead of freed.
//!
//! Why: a scan batch or a big getBatch is encoded into buffers of ~100 KB or more on a libuv
//! pool thread (cursors.rs, abi.rs), copied into a JS Buffer on the JS thread, and freed there.
//! Freed like that, each one came back from the allocator as fresh memory on the next call, and
//! the kernel zeroed a 2 MiB transparent huge page for it: perf put ~23 % of the daemon's CPU
//! in `clear_page_erms` during the first scan of freshly loaded data.
//!
//! Invariants: at most SPARES_MAX buffers are kept, none with more than SPARE_BYTES_MAX of
//! capacity, so what is kept is bounded (8 MiB); a buffer handed out is empty.
use std::sync::Mutex;

/// Buffers smaller than this are not worth keeping: the allocator serves them from its own
/// free lists.
const SPARE_BYTES_MIN: usize = 16 * 1024;
/// Larger buffers are freed (rare: batches are bounded by scanBatchBytesMax and friends). Room
/// for a full grown scan batch of small entries (cursors.rs BATCH_RESERVE_BYTES_MAX).
const SPARE_BYTES_MAX: usize = 2 * 1024 * 1024;
const SPARES_MAX: usize = 4;

/// A bounded stack of kept buffers (one process-wide instance, SPARES).
struct Spares {
    kept: Mutex<Vec<Vec<u8>>>,
}

static SPARES: Spares = Spares { kept: Mutex::new(Vec::new()) };

/// An empty buffer with room for at least `bytes`: a spare one if one is kept, else new.
pub fn take(bytes: usize) -> Vec<u8> {
    SPARES.take(bytes)
}

/// Keeps `buffer` for a later `take`, or frees it if it is too small or too large, or enough
/// are kept.
pub fn give_back(buffer: Vec<u8>) {
    SPARES.give_back(buffer);
}

impl Spares {
    fn take(&self, bytes: usize) -> Vec<u8> {
        if bytes >= SPARE_BYTES_MIN {
            let spare = self.kept.lock().unwrap_or_else(|p| p.into_inner()).pop();
            if let Some(mut spare) = spare {
                spare.reserve(bytes);
                return spare;
            }
        }
        Vec::with_capacity(bytes)
    }

    fn give_back(&self, mut buffer: Vec<u8>) {
        if !(SPARE_BYTES_MIN..=SPARE_BYTES_MAX).contains(&buffer.capacity()) {
            return;
        }
        buffer.clear();
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() < SPARES_MAX {
            kept.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spares() -> Spares {
        Spares { kept: Mutex::new(Vec::new()) }
    }

    #[test]
    fn a_buffer_given_back_is_handed_out_again_empty() {
        let spares = spares();
        let mut buffer = spares.take(SPARE_BYTES_MIN);
        buffer.extend_from_slice(&[7u8; 100]);
        let at = buffer.as_ptr() as usize;
        spares.give_back(buffer);
        assert_eq!(spares.take(100).capacity(), 100, "small requests never take a spare");
        let again = spares.take(SPARE_BYTES_MIN);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr() as usize, at, "the same allocation");
        let fresh = spares.take(SPARE_BYTES_MIN);
        assert_ne!(fresh.as_ptr() as usize, at, "handed out once");
    }

    #[test]
    fn keeps_only_buffers_worth_keeping_and_at_most_spares_max() {
        let spares = spares();
        spares.give_back(Vec::with_capacity(SPARE_BYTES_MIN - 1));
        spares.give_back(Vec::with_capacity(SPARE_BYTES_MAX + 1));
        assert_eq!(spares.kept.lock().unwrap().len(), 0);
        for _ in 0..SPARES_MAX + 2 {
            spares.give_back(Vec::with_capacity(SPARE_BYTES_MIN));
        }
        assert_eq!(spares.kept.lock().unwrap().len(), SPARES_MAX);
    }
}
