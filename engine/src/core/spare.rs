//! Spare byte buffers: large result buffers kept for reuse instead of freed.
//!
//! Why: a scan batch or a big getBatch is encoded into buffers of ~100 KB or more on a libuv
//! pool thread (cursors.rs, abi.rs), copied into a JS Buffer on the JS thread, and freed there.
//! Freed like that, each one came back from the allocator as fresh memory on the next call, and
//! the kernel zeroed a 2 MiB transparent huge page for it: perf put ~23 % of the daemon's CPU
//! in `clear_page_erms` during the first scan of freshly loaded data.
//!
//! Invariants: at most SPARES_MAX buffers are kept, none with more than SPARE_BYTES_MAX of
//! capacity, so what is kept is bounded (4 MiB); a buffer handed out is empty.
use std::sync::Mutex;

/// Buffers smaller than this are not worth keeping: the allocator serves them from its own
/// free lists.
const SPARE_BYTES_MIN: usize = 16 * 1024;
/// Larger buffers are freed (rare: batches are bounded by scanBatchBytesMax and friends).
const SPARE_BYTES_MAX: usize = 1024 * 1024;
const SPARES_MAX: usize = 4;

static SPARES: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer with room for at least `bytes`: a spare one if one is kept, else new.
pub fn take(bytes: usize) -> Vec<u8> {
    if bytes >= SPARE_BYTES_MIN {
        let mut spares = SPARES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut spare) = spares.pop() {
            drop(spares);
            spare.reserve(bytes);
            return spare;
        }
    }
    Vec::with_capacity(bytes)
}

/// Keeps `buffer` for a later `take`, or frees it if it is too small or too large, or enough
/// are kept.
pub fn give_back(mut buffer: Vec<u8>) {
    if !(SPARE_BYTES_MIN..=SPARE_BYTES_MAX).contains(&buffer.capacity()) {
        return;
    }
    buffer.clear();
    let mut spares = SPARES.lock().unwrap_or_else(|p| p.into_inner());
    if spares.len() < SPARES_MAX {
        spares.push(buffer);
    }
}
