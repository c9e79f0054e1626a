//! Takes write access to fjall's journal away once the store is poisoned.
//!
//! Why: when a commit's journal write fails (ENOSPC, EIO), fjall keeps the batch it could not
//! write in its journal writer's 8 KiB BufWriter, and writes it out at the writer's next
//! flush: `persist`, which fjall's worker runs as every memtable flush starts (fjall 3.1
//! `worker_pool.rs`, `WorkerMessage::Flush`), `pos` (a BufWriter seek flushes first; the same
//! worker asks it before that), `rotate` (it persists the journal it seals) and the journal's
//! drop (store/fsync.rs never drops a poisoned store's database). A flush that starts once
//! space is back (one queued behind a compaction that then frees old tables, or after an
//! operator deleted files) writes and fsyncs the batch whose client was told nothing was
//! applied, and recovery replays it. fjall's poison flag stops its own commits and
//! `Database::persist`, not its worker, and the writer is private to fjall: its buffer cannot
//! be emptied from here. So its descriptor loses write access instead: every descriptor of this
//! process open for writing on a journal file (`<id>.jnl`) of this database is replaced (dup2)
//! by a read-only one of the same file. fjall's later writes of that buffer fail with EBADF
//! (its worker then ends, poisoning fjall); an fsync through a read-only descriptor still
//! works, and reads never needed the journal (memtables and tables serve them).
//!
//! Invariants:
//! - Only descriptors open for writing on `<id>.jnl` files directly in this database's folder
//!   are replaced: our own group-commit descriptor (journal.rs) is read-only and stays as it
//!   is, and so does every other store's journal in this process.
//! - A descriptor is replaced only if it still refers to the file the read-only one was opened
//!   on (device and inode), checked right before the dup2; its close-on-exec flag is kept.
//! - Failures are returned, never panicked on: the store is already poisoned, and a seal that
//!   failed leaves fjall's buffer writable, as it was before this existed.
//! - What is left: a flush that starts between the failed write and the seal, which run in the
//!   same commit (store/commit.rs `commit_with`, then `Store::poison`) microseconds apart, and that
//!   finds space freed in between; and a journal rotation that closes fjall's descriptor
//!   between our check of it and the dup2, whose number something else opens meanwhile (the
//!   dup2 would then replace that descriptor): both windows are a few instructions wide.
//! - A seal that finds no journal descriptor open for writing is a failure (fjall always has
//!   one): it did nothing, and STORAGE_FAILED messages say so (store.rs `check_writable`).
//!
//! Linux lists descriptors in /proc/self/fd; macOS asks each one its path (F_GETPATH).

use crate::core::error::{EngineError, EngineResult};
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The journal files' extension (fjall names them `<id>.jnl`; journal.rs).
const JOURNAL_EXTENSION: &str = "jnl";

/// Passes over the descriptor table, each sealing what it finds, until one finds nothing. A
/// journal rotation running during a pass opens the next journal for writing, which the next
/// pass seals; a rotation persists the journal it seals first, which fails once that one is
/// sealed, so a third pass finds nothing.
const SEAL_PASSES_MAX: usize = 3;

/// Tries of one dup2 that failed with EINTR or EBUSY (Linux: another thread was opening a
/// descriptor at that number).
const DUP_TRIES_MAX: usize = 8;

/// The seal of one database's journals: done at most once, its outcome kept.
pub struct JournalSeal {
    /// The database folder, canonical (descriptor paths are).
    folder: PathBuf,
    /// Descriptors sealed, or why the seal failed.
    outcome: OnceLock<EngineResult<usize>>,
}

impl JournalSeal {
    pub fn new(folder: &Path) -> EngineResult<JournalSeal> {
        let folder = std::fs::canonicalize(folder).map_err(|e| EngineError::from_io(&format!("resolving {}", folder.display()), &e))?;
        Ok(JournalSeal { folder, outcome: OnceLock::new() })
    }

    /// Seals the journal descriptors (the first call; later ones return what it did).
    pub fn seal(&self) -> &EngineResult<usize> {
        self.outcome.get_or_init(|| seal_journal_descriptors(&self.folder))
    }

    /// Why the seal failed, if it ran and failed.
    pub fn failure(&self) -> Option<&EngineError> {
        self.outcome.get().and_then(|outcome| outcome.as_ref().err())
    }
}

/// Replaces every descriptor of this process open for writing on a journal of the database in
/// `folder` (canonical) by a read-only one of the same file; returns how many it replaced.
fn seal_journal_descriptors(folder: &Path) -> EngineResult<usize> {
    let mut sealed = 0;
    for _ in 0..SEAL_PASSES_MAX {
        let writable = writable_journal_descriptors(folder)?;
        if writable.is_empty() && sealed == 0 {
            // fjall always holds its active journal open for writing: finding none means the
            // descriptors were not recognised (e.g. the folder was renamed since the open), and
            // the seal did nothing. Said as a failure, so STORAGE_FAILED messages warn of it.
            return Err(EngineError::Internal(format!("no descriptor of this process is open for writing on a journal in {}", folder.display())));
        }
        if writable.is_empty() {
            return Ok(sealed);
        }
        for (fd, path) in writable {
            sealed += usize::from(seal_descriptor(fd, &path)?);
        }
    }
    let left = writable_journal_descriptors(folder)?;
    if !left.is_empty() {
        return Err(EngineError::Internal(format!("journal descriptors still writable after {SEAL_PASSES_MAX} passes: {left:?}")));
    }
    Ok(sealed)
}

/// Whether `path` names a journal file directly in `folder`.
fn is_journal_of(folder: &Path, path: &Path) -> bool {
    path.parent() == Some(folder)
        && path.extension().is_some_and(|e| e == JOURNAL_EXTENSION)
        && path.file_stem().and_then(|s| s.to_str()).is_some_and(|s| s.parse::<u64>().is_ok())
}

/// Whether descriptor `fd` is open, for writing (write-only or read-write).
fn open_for_writing(fd: RawFd) -> bool {
    // SAFETY: F_GETFL reads the descriptor's status flags; a closed one fails with EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    flags != -1 && flags & libc::O_ACCMODE != libc::O_RDONLY
}

/// (device, inode) of what descriptor `fd` refers to, if it is open.
fn file_id(fd: RawFd) -> Option<(u64, u64)> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `stat` into the buffer given, which is read only if it succeeded.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so it filled the buffer.
    let stat = unsafe { stat.assume_init() };
    // The widths of dev_t and ino_t differ between platforms.
    #[allow(clippy::unnecessary_cast)]
    let id = (stat.st_dev as u64, stat.st_ino as u64);
    Some(id)
}

/// Replaces `fd` (open for writing on journal `path`) by a read-only descriptor of the same
/// file. Ok(false) if `fd` no longer refers to that file open for writing (closed meanwhile).
fn seal_descriptor(fd: RawFd, path: &Path) -> EngineResult<bool> {
    let readonly = match File::open(path) {
        Ok(file) => file,
        // Gone since it was listed: a journal fjall deleted, which nothing writes again.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(EngineError::from_io(&format!("opening journal {} read-only to seal it", path.display()), &e)),
    };
    if !open_for_writing(fd) || file_id(fd) != file_id(readonly.as_raw_fd()) {
        return Ok(false);
    }
    // SAFETY: F_GETFD reads the descriptor flags of `fd`, checked open just above.
    let close_on_exec = unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC != 0;
    for _ in 0..DUP_TRIES_MAX {
        // SAFETY: dup2 atomically makes `fd` refer to the open file of `readonly` (closing what
        // it referred to before); both are valid descriptors, and `readonly` is closed by its
        // drop afterwards, leaving `fd` the only reference to it.
        if unsafe { libc::dup2(readonly.as_raw_fd(), fd) } == fd {
            if close_on_exec {
                // SAFETY: sets the close-on-exec flag (which dup2 clears) on `fd`, now ours.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY)) {
            return Err(EngineError::from_io(&format!("sealing journal {} (dup2 over descriptor {fd})", path.display()), &err));
        }
    }
    Err(EngineError::Internal(format!("sealing journal {}: dup2 over descriptor {fd} kept failing with EINTR/EBUSY", path.display())))
}

/// (descriptor, path) of every descriptor of this process open for writing on a journal file
/// directly in `folder`.
#[cfg(target_os = "linux")]
fn writable_journal_descriptors(folder: &Path) -> EngineResult<Vec<(RawFd, PathBuf)>> {
    const FDS: &str = "/proc/self/fd";
    let listing = std::fs::read_dir(FDS).map_err(|e| EngineError::from_io(&format!("listing {FDS}"), &e))?;
    let mut found = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| EngineError::from_io(&format!("listing {FDS}"), &e))?;
        let Some(fd) = entry.file_name().to_str().and_then(|name| name.parse::<RawFd>().ok()) else { continue };
        // Closed since it was listed (the listing's own descriptor, for one): nothing to seal.
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        if is_journal_of(folder, &target) && open_for_writing(fd) {
            found.push((fd, target));
        }
    }
    Ok(found)
}

#[cfg(target_os = "macos")]
fn writable_journal_descriptors(folder: &Path) -> EngineResult<Vec<(RawFd, PathBuf)>> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: getdtablesize has no arguments; every descriptor is below what it returns.
    let table = unsafe { libc::getdtablesize() };
    let mut found = Vec::new();
    for fd in 0..table {
        if !open_for_writing(fd) {
            continue;
        }
        let mut buffer = [0 as libc::c_char; libc::PATH_MAX as usize];
        // SAFETY: F_GETPATH writes a NUL-terminated path of at most PATH_MAX bytes into `buffer`.
        if unsafe { libc::fcntl(fd, libc::F_GETPATH, buffer.as_mut_ptr()) } == -1 {
            continue;
        }
        // SAFETY: F_GETPATH succeeded, so `buffer` holds a NUL-terminated string.
        let bytes = unsafe { std::ffi::CStr::from_ptr(buffer.as_ptr()) }.to_bytes();
        let target = PathBuf::from(std::ffi::OsStr::from_bytes(bytes));
        if is_journal_of(folder, &target) {
            found.push((fd, target));
        }
    }
    Ok(found)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn writable_journal_descriptors(_folder: &Path) -> EngineResult<Vec<(RawFd, PathBuf)>> {
    Err(EngineError::Internal("sealing fjall's journal is not implemented on this platform".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_journal_files_directly_in_the_folder_count() {
        let folder = Path::new("/data/db");
        assert!(is_journal_of(folder, Path::new("/data/db/7.jnl")));
        assert!(!is_journal_of(folder, Path::new("/data/db/7.jnl (deleted)")));
        assert!(!is_journal_of(folder, Path::new("/data/db/keyspaces/7.jnl")));
        assert!(!is_journal_of(folder, Path::new("/data/other/7.jnl")));
        assert!(!is_journal_of(folder, Path::new("/data/db/x.jnl")));
        assert!(!is_journal_of(folder, Path::new("/data/db/7.jnl.tmp")));
    }
}

/// Linux only: they find the journal's descriptors under /proc/self/fd.
#[cfg(all(test, target_os = "linux"))]
mod linux_tests {
    use super::*;
    use crate::core::store::{Limits, OpenOptions, Store, WriteItem};
    use crate::core::value;
    use fjall::{AbstractTree, PersistMode, Readable, Slice};
    use std::time::{Duration, Instant};

    /// How long the test waits for fjall's worker to fail the flush it is given.
    const WORKER_END_WAIT_MAX: Duration = Duration::from_secs(10);

    fn open(dir: &Path) -> Store {
        let limits = Limits { key_bytes_max: 64, value_bytes_max: 1024, txn_bytes_max: 1 << 20, txn_bytes_daemon_max: 1 << 40, batch_items_max: 100, batch_bytes_max: 1 << 24 };
        Store::open(&OpenOptions { path: dir.join("db").to_str().unwrap().into(), cache_bytes: None, row_cache_bytes: None, table_files_max: None, limits }).unwrap().0
    }

    fn put(store: &Store, keys: std::ops::Range<usize>) {
        let items = keys.map(|i| WriteItem::Put { key: Slice::from(format!("k{i}").as_bytes()), stored: value::encode_slice(b"v", None), expiry_ms: None }).collect();
        store.write_batch(None, items).result.unwrap();
    }

    /// Every descriptor of this process on a journal of the database in `folder`, any mode.
    fn journal_descriptors(folder: &Path) -> Vec<RawFd> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter(|entry| std::fs::read_link(entry.path()).is_ok_and(|target| is_journal_of(folder, &target)))
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect()
    }

    fn journal_digest(folder: &Path) -> Vec<(PathBuf, u64)> {
        let mut journals: Vec<_> = std::fs::read_dir(folder).unwrap().flatten().map(|e| e.path()).filter(|p| is_journal_of(folder, p)).collect();
        journals.sort();
        journals.into_iter().map(|path| (path.clone(), xxhash_rust::xxh3::xxh3_64(&std::fs::read(&path).unwrap()))).collect()
    }

    // Regression: fjall keeps a batch whose journal write failed in its journal writer's
    // buffer and writes it at its next flush, so once disk space was back a memtable flush run
    // by fjall's worker (or a persist) wrote and fsynced a write the client had been told was
    // not applied, and recovery replayed it. A batch committed without a persist sits in that
    // buffer the same way, without needing a full disk.
    #[test]
    fn a_poisoned_store_leaves_fjall_no_way_to_write_its_journal_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let other_dir = tempfile::tempdir().unwrap();
        let other = open(other_dir.path());
        put(&store, 0..100);
        store.sync().unwrap();
        let mut batch = store.db.inner().batch().durability(None);
        batch.insert(store.data.inner(), "buffered", value::encode_slice(b"never acknowledged", None));
        batch.commit().unwrap();
        let folder = store.journal_seal.folder.clone();
        let on_disk = journal_digest(&folder);
        let descriptors = journal_descriptors(&folder);
        assert_eq!(writable_journal_descriptors(&folder).unwrap().len(), 1, "fjall's writer; our group-commit descriptor is read-only");
        assert!(descriptors.len() >= 2, "fjall's and ours: {descriptors:?}");

        store.poison(&crate::core::error::EngineError::StorageFailed("poisoned by a test".into()));
        assert_eq!(store.journal_seal.seal().as_ref().ok(), Some(&1));
        assert!(store.journal_seal.failure().is_none());
        assert!(writable_journal_descriptors(&folder).unwrap().is_empty());
        assert_eq!(journal_descriptors(&folder), descriptors, "every descriptor is still open, on the same file");
        store.sync().expect("our own fsync goes on through its read-only descriptor");

        // The flush fjall's worker runs: it writes the journal buffer first, which fails now,
        // and the worker ends.
        assert!(store.workers.found() >= 1, "the store's fjall workers are known before one ends");
        assert!(store.data.inner().rotate_memtable().unwrap());
        let deadline = Instant::now() + WORKER_END_WAIT_MAX;
        while store.workers.ended() == 0 {
            assert!(Instant::now() < deadline, "fjall's worker ran the flush (sealed memtables: {})", store.data.inner().tree.sealed_memtable_count());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(store.data.inner().tree.sealed_memtable_count(), 1, "the flush never ran");
        assert!(store.db.persist(PersistMode::SyncAll).is_err(), "fjall's persist cannot write its buffer either");
        assert_eq!(journal_digest(&folder), on_disk, "the journal on disk did not change");
        let snapshot = store.db.read_tx();
        assert!(snapshot.get(&store.data, "k0").unwrap().is_some() && snapshot.get(&store.data, "k99").unwrap().is_some(), "reads keep working");

        // Another store in the process keeps its journal.
        assert_eq!(writable_journal_descriptors(&other.journal_seal.folder).unwrap().len(), 1);
        put(&other, 0..10);
        other.persist(PersistMode::SyncAll).unwrap();
    }

    #[test]
    fn a_seal_that_finds_no_journal_descriptor_is_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let error = seal_journal_descriptors(&std::fs::canonicalize(dir.path()).unwrap()).unwrap_err();
        assert!(error.to_string().contains("no descriptor of this process is open for writing on a journal"), "{error}");
    }
}
