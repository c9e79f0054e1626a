//! Settings of mimalloc, the allocator of the Rust side (lib.rs), made once per process before
//! the store opens.
//!
//! Why: mimalloc collects a thread's whole heap every `generic_collect` (default 10000)
//! allocations that miss its fast path, walking every page and the blocks other threads freed
//! into it. A lane allocates the memtable's entries and the row cache's rows, and a rotated
//! memtable's ~100k entries are freed on the reaper's thread (store/reaper.rs), so the lane's
//! periodic collect met them all at once: perf under durable PUT-256 caught the lane for 5-6.5
//! ms inside one malloc (`mi_theap_collect_ex` -> `_mi_page_free_collect`), each time while
//! every write waited for it. Blocks freed by other threads are also collected page by page
//! whenever an allocation looks for room in a page, so collecting the whole heap rarely (every
//! GENERIC_COLLECT_EVERY such allocations, the most mimalloc accepts) spreads that work over
//! the allocations that need it. Measured: no periodic collect left on the lane, the daemon's
//! RSS after a 1M-key load unchanged, fewer page faults (see the commit).
//!
//! Invariants: the setting is made at most once, and only while the option still holds
//! mimalloc's default (a MIMALLOC_GENERIC_COLLECT from the environment is respected, and a
//! mimalloc whose options are laid out differently is left alone).

use std::os::raw::{c_int, c_long};
use std::sync::Once;

extern "C" {
    fn mi_option_get(option: c_int) -> c_long;
    fn mi_option_set(option: c_int, value: c_long);
}

/// `mi_option_generic_collect`: its place in mimalloc 3's `mi_option_e` (mimalloc.h), which the
/// mimalloc crate does not name.
const MI_OPTION_GENERIC_COLLECT: c_int = 34;
/// mimalloc's default for it: a full heap collect every 10000 generic allocations.
const GENERIC_COLLECT_DEFAULT: c_long = 10_000;
/// Ours: the most mimalloc accepts (it clamps the option to 1..=1000000).
pub const GENERIC_COLLECT_EVERY: c_long = 1_000_000;

static TUNED: Once = Once::new();

/// Applies the settings above (idempotent; cheap after the first call).
pub fn tune() {
    TUNED.call_once(|| {
        // SAFETY: plain option getters/setters of the linked mimalloc; no memory is touched.
        unsafe {
            if mi_option_get(MI_OPTION_GENERIC_COLLECT) == GENERIC_COLLECT_DEFAULT {
                mi_option_set(MI_OPTION_GENERIC_COLLECT, GENERIC_COLLECT_EVERY);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generic-collect interval in force.
    fn generic_collect_every() -> c_long {
        // SAFETY: a plain option getter, as in `tune`.
        unsafe { mi_option_get(MI_OPTION_GENERIC_COLLECT) }
    }

    #[test]
    fn tune_sets_the_collect_interval_once_and_keeps_it() {
        if std::env::var_os("MIMALLOC_GENERIC_COLLECT").is_some() {
            return; // the environment's choice is respected, nothing to check
        }
        tune();
        assert_eq!(generic_collect_every(), GENERIC_COLLECT_EVERY);
        tune();
        assert_eq!(generic_collect_every(), GENERIC_COLLECT_EVERY);
    }
}
