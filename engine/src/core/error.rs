//! Engine errors and their stable registry codes.
//!
//! Responsibility: one error enum for everything the core can fail with, a human `Display`, and
//! the mapping to the string codes of protocol/errors.ts. Every fjall / lsm-tree error variant is
//! mapped explicitly (with a fallback arm for their `#[non_exhaustive]` enums), so JS never sees a
//! generic "GenericFailure".
//!
//! Invariants:
//! - `EngineError::code()` only returns strings listed in `ALL_CODES`, and `ALL_CODES` is a subset
//!   of the registry (checked by a JS test through `nativeErrorCodes()`).

use std::fmt;

/// Every code the native side can produce. Keep in sync with `EngineError::code`.
pub const ALL_CODES: &[&str] = &[
    "INVALID_ARGUMENT",
    "KEY_TOO_LARGE",
    "VALUE_TOO_LARGE",
    "BATCH_TOO_LARGE",
    "TXN_CONFLICT",
    "NOT_IN_TRANSACTION",
    "TXN_TOO_LARGE",
    "TXN_WRITE_FAILED",
    "CURSOR_NOT_FOUND",
    "LIMIT_EXCEEDED",
    "SHUTTING_DOWN",
    "DISK_FULL",
    "IO_ERROR",
    "STORAGE_FAILED",
    "CORRUPTION",
    "LOCKED",
    "TIMEOUT",
    "INTERNAL",
];

#[derive(Debug, Clone)]
pub enum EngineError {
    InvalidArgument(String),
    KeyTooLarge { len: usize, max: usize },
    ValueTooLarge { len: usize, max: usize },
    BatchTooLarge { items: usize, max: usize },
    /// A getBatch or listPath reply over batchBytesMax (code BATCH_TOO_LARGE).
    ReplyTooLarge { what: &'static str, bytes: usize, max: usize },
    TxnConflict,
    /// A commit refused before its conflict check, which would have held every writer too long
    /// (store/commit.rs CONFLICT_CHECK_BYTE_COMMITS_MAX; code TXN_CONFLICT, retryable).
    TxnCheckTooLong { read_bytes: u64, commits: u64 },
    NotInTransaction(u64),
    TxnTooLarge { bytes: u64, max: u64 },
    /// A transaction's write or read would have taken the bytes all open transactions hold
    /// together past txn_bytes_daemon_max (code LIMIT_EXCEEDED); the transaction is aborted.
    TxnBytesDaemonLimit { held: u64, added: u64, max: u64 },
    /// A commit that named how many write requests it covers found a different number applied:
    /// fewer (one failed, or fewer were sent) or more (more were sent than it names).
    TxnWriteFailed { txn: u64, expected: u64, applied: u64 },
    CursorNotFound(u64),
    ShuttingDown,
    DiskFull(String),
    Io(String),
    StorageFailed(String),
    Corruption(String),
    Locked(String),
    /// Work that did not finish in its bound and may still finish later (a checkpoint's flush).
    Timeout(String),
    Internal(String),
}

pub type EngineResult<T> = Result<T, EngineError>;

impl EngineError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "INVALID_ARGUMENT",
            Self::KeyTooLarge { .. } => "KEY_TOO_LARGE",
            Self::ValueTooLarge { .. } => "VALUE_TOO_LARGE",
            Self::BatchTooLarge { .. } | Self::ReplyTooLarge { .. } => "BATCH_TOO_LARGE",
            Self::TxnConflict | Self::TxnCheckTooLong { .. } => "TXN_CONFLICT",
            Self::NotInTransaction(_) => "NOT_IN_TRANSACTION",
            Self::TxnTooLarge { .. } => "TXN_TOO_LARGE",
            Self::TxnBytesDaemonLimit { .. } => "LIMIT_EXCEEDED",
            Self::TxnWriteFailed { .. } => "TXN_WRITE_FAILED",
            Self::CursorNotFound(_) => "CURSOR_NOT_FOUND",
            Self::ShuttingDown => "SHUTTING_DOWN",
            Self::DiskFull(_) => "DISK_FULL",
            Self::Io(_) => "IO_ERROR",
            Self::StorageFailed(_) => "STORAGE_FAILED",
            Self::Corruption(_) => "CORRUPTION",
            Self::Locked(_) => "LOCKED",
            Self::Timeout(_) => "TIMEOUT",
            Self::Internal(_) => "INTERNAL",
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }

    /// Maps an OS error: out of space / quota is DISK_FULL (retryable), the rest IO_ERROR.
    pub fn from_io(context: &str, err: &std::io::Error) -> Self {
        match err.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Self::DiskFull(format!("{context}: {err}")),
            _ => Self::Io(format!("{context}: {err}")),
        }
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Self::KeyTooLarge { len, max } => write!(f, "key is {len} bytes, the limit is {max}"),
            Self::ValueTooLarge { len, max } => write!(f, "value is {len} bytes, the limit is {max}"),
            Self::BatchTooLarge { items, max } => write!(f, "batch has {items} items, the limit is {max}"),
            Self::ReplyTooLarge { what, bytes, max } => {
                write!(f, "the {what} reply needs at least {bytes} bytes, more than the batchBytesMax limit of {max}")
            }
            Self::TxnConflict => write!(f, "transaction conflicted with a concurrent commit; nothing was applied"),
            Self::TxnCheckTooLong { read_bytes, commits } => write!(
                f,
                "transaction not committed: checking its {read_bytes} bytes of reads against the {commits} commits since its snapshot would stall every writer; nothing was applied (retry it: a new attempt starts from a new snapshot)"
            ),
            // Messages about a transaction do not name its engine handle, which is not the id its
            // client knows it by (the daemon says which transaction a reply is about).
            Self::NotInTransaction(_) => write!(f, "the transaction is unknown, committed or aborted"),
            Self::TxnTooLarge { bytes, max } => {
                write!(f, "transaction holds {bytes} bytes of writes and reads, over the limit of {max}; it was aborted")
            }
            Self::TxnBytesDaemonLimit { held, added, max } => write!(
                f,
                "open transactions already hold {held} bytes of writes and reads; {added} more would pass the daemon-wide limit of {max}, so the transaction was aborted (retry it later)"
            ),
            Self::TxnWriteFailed { expected, applied, .. } => {
                let requests = |n: &u64| if *n == 1 { "1 write request".to_string() } else { format!("{n} write requests") };
                let (expected_requests, applied_requests) = (requests(expected), requests(applied));
                if applied < expected {
                    let were = if *applied == 1 { "was" } else { "were" };
                    write!(
                        f,
                        "its commit was sent as covering {expected_requests}, but only {applied} of them {were} applied \
                         (the others failed or were not sent); it was aborted and nothing was committed"
                    )
                } else {
                    write!(
                        f,
                        "its commit was sent as covering {expected_requests}, but the transaction applied \
                         {applied_requests}; it was aborted and nothing was committed"
                    )
                }
            }
            Self::CursorNotFound(c) => write!(f, "cursor {c} is unknown, exhausted or closed"),
            Self::ShuttingDown => write!(f, "the engine is closed"),
            Self::DiskFull(m) => write!(f, "disk full: {m}"),
            Self::Io(m) => write!(f, "I/O error: {m}"),
            Self::StorageFailed(m) => write!(f, "storage failed, writes are refused until restart: {m}"),
            // The code (CORRUPTION, LOCKED) says what kind; a prefix repeated it ("CORRUPTION:
            // corruption: ...").
            Self::Corruption(m) | Self::Locked(m) => write!(f, "{m}"),
            Self::Timeout(m) => write!(f, "timed out: {m}"),
            Self::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for EngineError {}

fn from_lsm(err: &fjall::LsmError) -> EngineError {
    use fjall::LsmError as L;
    match err {
        // A table file is complete and immutable before any version lists it: a read that runs
        // past its end, or bytes std reports as invalid, mean the file is damaged, not that the
        // OS failed (those errors carry an OS error number and stay IO_ERROR / DISK_FULL).
        L::Io(io) if io.raw_os_error().is_none() && matches!(io.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData) => {
            EngineError::Corruption(format!("table file damaged: {io}"))
        }
        L::Io(io) => EngineError::from_io("storage", io),
        L::Decompress(c) => EngineError::Corruption(format!("block failed to decompress ({c:?})")),
        L::InvalidVersion(v) => EngineError::Corruption(format!("unknown table format version {v}")),
        L::Unrecoverable => EngineError::Corruption("table is unrecoverable".into()),
        L::ChecksumMismatch { got, expected } => {
            EngineError::Corruption(format!("checksum mismatch: got {got:?}, expected {expected:?}"))
        }
        L::InvalidTag((what, tag)) => EngineError::Corruption(format!("invalid tag {tag} in {what}")),
        L::InvalidTrailer => EngineError::Corruption("invalid table trailer".into()),
        L::InvalidHeader(what) => EngineError::Corruption(format!("invalid header in {what}")),
        L::Utf8(e) => EngineError::Corruption(format!("invalid UTF-8 in metadata: {e}")),
        other => EngineError::Corruption(format!("storage error: {other:?}")),
    }
}

impl From<fjall::Error> for EngineError {
    fn from(err: fjall::Error) -> Self {
        use fjall::Error as E;
        match &err {
            E::Storage(inner) => from_lsm(inner),
            E::Io(io) => EngineError::from_io("journal", io),
            E::JournalRecovery(r) => EngineError::Corruption(format!(
                "journal recovery failed ({r}): a journal is damaged and the database cannot be opened as it is. \
                 Restore from a dump (toondb load) or a backup of the data directory"
            )),
            E::InvalidVersion(v) => EngineError::Corruption(format!("unsupported data format version {v:?}")),
            E::Decompress(c) => EngineError::Corruption(format!("journal entry failed to decompress ({c:?})")),
            E::InvalidTrailer => EngineError::Corruption("invalid journal trailer".into()),
            E::InvalidTag((what, tag)) => EngineError::Corruption(format!("invalid tag {tag} in {what}")),
            E::Poisoned => EngineError::StorageFailed(
                "fjall refuses writes since an earlier failure poisoned its database (a journal write or fsync, or a flush or compaction of its background worker)".into(),
            ),
            E::KeyspaceDeleted => EngineError::Internal("keyspace was deleted under the engine".into()),
            E::Locked => EngineError::Locked("the data directory is in use by another process".into()),
            E::Unrecoverable => EngineError::Corruption("database is unrecoverable".into()),
            other => EngineError::Internal(format!("unmapped fjall error: {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed() {
        let samples = [
            EngineError::invalid("x"),
            EngineError::KeyTooLarge { len: 2, max: 1 },
            EngineError::TxnConflict,
            EngineError::from(fjall::Error::Poisoned),
            EngineError::from(fjall::Error::Locked),
            EngineError::from(fjall::Error::InvalidTrailer),
            EngineError::from_io("t", &std::io::Error::from_raw_os_error(libc::ENOSPC)),
            EngineError::from_io("t", &std::io::Error::from_raw_os_error(libc::EIO)),
        ];
        let codes: Vec<_> = samples.iter().map(|e| e.code()).collect();
        assert_eq!(
            codes,
            ["INVALID_ARGUMENT", "KEY_TOO_LARGE", "TXN_CONFLICT", "STORAGE_FAILED", "LOCKED", "CORRUPTION", "DISK_FULL", "IO_ERROR"]
        );
        for code in codes {
            assert!(ALL_CODES.contains(&code), "{code} missing from ALL_CODES");
        }
    }

    #[test]
    fn a_short_or_invalid_table_read_is_corruption_and_an_os_failure_is_not() {
        let lsm = |io: std::io::Error| EngineError::from(fjall::Error::from(fjall::LsmError::Io(io))).code();
        assert_eq!(lsm(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short read")), "CORRUPTION");
        assert_eq!(lsm(std::io::Error::new(std::io::ErrorKind::InvalidData, "bad bytes")), "CORRUPTION");
        assert_eq!(lsm(std::io::Error::from_raw_os_error(libc::EIO)), "IO_ERROR");
        assert_eq!(lsm(std::io::Error::from_raw_os_error(libc::ENOSPC)), "DISK_FULL");
    }
}
