//! fjall's own reports of failures, kept for the STORAGE_FAILED messages that follow them.
//!
//! Why: a flush or compaction that fails ends fjall's background worker, which poisons the
//! database (fjall 3.1 `worker_pool.rs`: `log::error!("Worker #{i} crashed: {e:?}")`, then
//! `poison_dart.poison()`), and the cause (no space left, too many open files, an I/O error)
//! is said only through the `log` crate. Nothing else in the process installs a logger, so
//! without this the cause was lost: every later write learnt only that the database was
//! poisoned, and the operator read a guess.
//!
//! Invariants:
//! - Installed at most once per process (`install`, called as a store opens); a logger set by
//!   someone else first is left alone, and then nothing is kept.
//! - Keeps the latest error-level record of fjall or lsm-tree, at most FJALL_ERROR_BYTES_MAX
//!   bytes of it, with when it came (ms since the epoch). Records of other levels and other
//!   crates are not even formatted (`enabled` says no), so the cost off the error path is a
//!   level check inside `log`'s macros.
//! - The record is process-wide, not per store: a message that names it says "fjall last
//!   reported", with its time, so a record of another store in the same process (tests) can be
//!   told apart.

use std::sync::{Mutex, OnceLock};

/// Longest fjall error text kept (a Debug-formatted io::Error chain fits easily).
const FJALL_ERROR_BYTES_MAX: usize = 512;

/// The log targets (module paths) whose errors are kept.
const FJALL_TARGETS: [&str; 2] = ["fjall", "lsm_tree"];

struct FjallErrors {
    latest: Mutex<Option<(u64, String)>>,
}

static LOGGER: OnceLock<FjallErrors> = OnceLock::new();

impl log::Log for FjallErrors {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() == log::Level::Error && FJALL_TARGETS.iter().any(|t| metadata.target().starts_with(t))
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut text = record.args().to_string();
        if text.len() > FJALL_ERROR_BYTES_MAX {
            let mut end = FJALL_ERROR_BYTES_MAX;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        // A poisoned lock only means a panic while replacing a String: take it anyway.
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        *latest = Some((super::value::now_ms(), text));
    }

    fn flush(&self) {}
}

/// Installs the logger unless one is set already; idempotent.
pub fn install() {
    let logger = LOGGER.get_or_init(|| FjallErrors { latest: Mutex::new(None) });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(log::LevelFilter::Error);
    }
}

/// The latest error fjall or lsm-tree logged, as "<text> (at <ms since the epoch>)".
pub fn latest_error() -> Option<String> {
    let latest = LOGGER.get()?.latest.lock().unwrap_or_else(|p| p.into_inner());
    latest.as_ref().map(|(at, text)| format!("{text} (logged at {at} ms since the epoch)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_fjall_error_and_nothing_else() {
        install();
        log::error!(target: "fjall::worker_pool", "Worker #0 crashed: first");
        log::warn!(target: "fjall::worker_pool", "a warning is not kept");
        log::error!(target: "some_other_crate", "nor another crate's error");
        log::error!(target: "lsm_tree::flush", "{}", "x".repeat(2 * FJALL_ERROR_BYTES_MAX));
        let latest = latest_error().expect("an error was kept");
        assert!(latest.starts_with(&format!("{}…", "x".repeat(FJALL_ERROR_BYTES_MAX))), "{latest}");
        log::error!(target: "fjall::worker_pool", "Worker #1 crashed: second");
        assert!(latest_error().unwrap().starts_with("Worker #1 crashed: second (logged at "));
    }
}
