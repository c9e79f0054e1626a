//! Group-commit fsync of fjall's active journal, without holding fjall's journal lock.
//!
//! Why: fjall 3.1 fsyncs its journal (`Database::persist`) while holding the journal writer's
//! mutex, and every commit takes that mutex to append. So in `sync` mode each fdatasync stalled
//! every writer for its whole duration, and writes and fsyncs took turns instead of overlapping.
//! fsync is a property of the file, not of the descriptor: fdatasync through our own descriptor
//! of the same file makes the same bytes durable, while commits go on appending.
//!
//! Which file: fjall names journals `<id>.jnl` in the database folder; the active one is the
//! highest id, and rotation creates `<id + 1>.jnl` only after fsyncing (SyncAll) the one it
//! seals (fjall journal/writer.rs `rotate`).
//!
//! Invariants:
//! - Every commit that returned before `sync_data` was called is durable when it returns Ok.
//!   Our commits run with `PersistMode::Buffer` (store.rs), so a commit that returned has its
//!   bytes in the OS page cache of the journal that was active then, whose id is at most the
//!   active id resolved here. A lower journal was sealed by a rotation, which fsynced it first;
//!   the active one is fdatasynced here.
//! - One journal descriptor is kept open at a time; a superseded one is fdatasynced once more
//!   (see `resolve`) and closed.
//! - The active journal is found by stepping on from the last one synced (`id + 1`, `id + 2`,
//!   ...), or by a listing once that one is gone: fjall deletes flushed journals oldest first,
//!   so two rotations between syncs can leave a gap the steps cannot cross. An fsync through
//!   the descriptor of a deleted journal would succeed and cover nothing.

use super::error::{EngineError, EngineResult};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::time::Instant;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const JOURNAL_SUFFIX: &str = ".jnl";

struct Open {
    id: u64,
    file: File,
    /// When this journal was last seen on disk (`deleted`).
    seen_at: Instant,
}

/// How long a journal seen on disk is taken to be still there. Checking on every fsync (a stat)
/// cost ~15 % of a single durable writer's commits here; and two journal rotations, the least
/// that can leave a gap the steps cannot cross, need 128 MB written through fjall's journal in
/// between, which takes far longer than this.
const JOURNAL_SEEN_MS: u128 = 10;

pub struct ActiveJournal {
    folder: PathBuf,
    open: Mutex<Option<Open>>,
    /// Superseded journals fdatasynced once more as group commit moved on (`resolve`).
    pub left_synced: std::sync::atomic::AtomicU64,
}

impl ActiveJournal {
    pub fn new(folder: &Path) -> ActiveJournal {
        ActiveJournal { folder: folder.to_path_buf(), open: Mutex::new(None), left_synced: std::sync::atomic::AtomicU64::new(0) }
    }

    /// fdatasyncs the active journal (see the header for what this covers); returns its id.
    pub fn sync_data(&self) -> EngineResult<u64> {
        let mut open = self.lock()?;
        let id = self.resolve(&mut open)?;
        let current = open.as_ref().expect("invariant: resolve leaves the active journal open");
        current.file.sync_data().map_err(|e| EngineError::from_io(&format!("fsync of journal {}", self.path_of(id).display()), &e))?;
        Ok(id)
    }

    /// The active journal's id, without fsyncing it.
    pub fn active_id(&self) -> EngineResult<u64> {
        let mut open = self.lock()?;
        self.resolve(&mut open)
    }

    fn lock(&self) -> EngineResult<std::sync::MutexGuard<'_, Option<Open>>> {
        self.open.lock().map_err(|_| EngineError::Internal("journal descriptor lock poisoned".into()))
    }

    /// Finds the active journal and leaves a descriptor of it in `open`; returns its id.
    fn resolve(&self, open: &mut Option<Open>) -> EngineResult<u64> {
        let mut listed = false;
        loop {
            let id = match open.as_ref() {
                Some(current) if !listed => self.newest_from(current.id),
                _ => self.newest_listed()?,
            };
            // fjall deletes sealed journals oldest first once they are flushed, so a gap after
            // the last journal synced shows as that journal gone: the steps above stopped short,
            // and only a listing finds the active one. A journal deleted between the listing and
            // the open below was sealed (fsynced) by then: list again.
            if self.deleted(open.as_mut(), id) {
                listed = Self::list_again(listed, id)?;
                continue;
            }
            if open.as_ref().map(|current| current.id) != Some(id) {
                if let Some(previous) = open.as_ref() {
                    // fjall fsynced it as it sealed it. Once more before leaving it: a rotation
                    // that failed after creating the next file leaves fjall appending here, and a
                    // commit may reach it before fjall's poison flag stops commits.
                    previous.file.sync_data().map_err(|e| {
                        EngineError::from_io(&format!("fsync of journal {}", self.path_of(previous.id).display()), &e)
                    })?;
                    self.left_synced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let path = self.path_of(id);
                match File::open(&path) {
                    Ok(file) => *open = Some(Open { id, file, seen_at: Instant::now() }),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        listed = Self::list_again(listed, id)?;
                        continue;
                    }
                    Err(e) => return Err(EngineError::from_io(&format!("opening journal {}", path.display()), &e)),
                }
            }
            return Ok(id);
        }
    }

    /// Whether journal `id` is gone: for the one open, from its descriptor, at most once per
    /// JOURNAL_SEEN_MS; else from its path.
    fn deleted(&self, open: Option<&mut Open>, id: u64) -> bool {
        match open {
            Some(current) if current.id == id => {
                if current.seen_at.elapsed().as_millis() < JOURNAL_SEEN_MS {
                    return false;
                }
                let gone = current.file.metadata().map_or(true, |m| m.nlink() == 0);
                if !gone {
                    current.seen_at = Instant::now();
                }
                gone
            }
            _ => !self.path_of(id).exists(),
        }
    }

    /// Whether to resolve the active journal by a listing next; fails if a listing already
    /// named a journal that is gone (fjall deleted the active journal: it should never).
    fn list_again(listed: bool, id: u64) -> EngineResult<bool> {
        if listed {
            return Err(EngineError::Corruption(format!("the newest journal ({id}{JOURNAL_SUFFIX}) vanished while it was being fsynced")));
        }
        Ok(true)
    }

    /// The id of the journal the last sync went through.
    #[cfg(test)]
    pub fn synced_id(&self) -> Option<u64> {
        self.open.lock().ok()?.as_ref().map(|open| open.id)
    }

    fn path_of(&self, id: u64) -> PathBuf {
        self.folder.join(format!("{id}{JOURNAL_SUFFIX}"))
    }

    /// The active journal's id, given that `known` was active earlier: rotations since then
    /// created `known + 1`, `known + 2`, ... in order.
    fn newest_from(&self, known: u64) -> u64 {
        let mut id = known;
        while self.path_of(id + 1).exists() {
            id += 1;
        }
        id
    }

    /// The active journal's id from a directory listing (first sync only).
    fn newest_listed(&self) -> EngineResult<u64> {
        let listing = std::fs::read_dir(&self.folder)
            .map_err(|e| EngineError::from_io(&format!("listing {}", self.folder.display()), &e))?;
        let mut newest = None;
        for entry in listing {
            let entry = entry.map_err(|e| EngineError::from_io(&format!("listing {}", self.folder.display()), &e))?;
            let name = entry.file_name();
            let id = name.to_str().and_then(|n| n.strip_suffix(JOURNAL_SUFFIX)).and_then(|n| n.parse::<u64>().ok());
            if let Some(id) = id {
                newest = newest.max(Some(id));
            }
        }
        // Recovery opens (or creates) an active journal, so an open database always has one.
        newest.map(|id| self.newest_from(id)).ok_or_else(|| {
            EngineError::Corruption(format!("no journal file (*{JOURNAL_SUFFIX}) in {}", self.folder.display()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_rotations_and_needs_a_journal() {
        let dir = tempfile::tempdir().unwrap();
        let journal = ActiveJournal::new(dir.path());
        assert!(matches!(journal.sync_data(), Err(EngineError::Corruption(_))));
        std::fs::write(dir.path().join("3.jnl"), b"a").unwrap();
        std::fs::write(dir.path().join("7.jnl"), b"b").unwrap();
        std::fs::write(dir.path().join("9.jnl.tmp"), b"c").unwrap();
        journal.sync_data().unwrap();
        assert_eq!(journal.synced_id(), Some(7));
        std::fs::write(dir.path().join("8.jnl"), b"").unwrap();
        std::fs::write(dir.path().join("9.jnl"), b"").unwrap();
        journal.sync_data().unwrap();
        assert_eq!(journal.synced_id(), Some(9));
    }

    // Regression: two rotations between two syncs, with fjall deleting the flushed journals
    // oldest first. Stepping on from the last journal synced found no `id + 1` and kept
    // fsyncing the deleted file (through its open descriptor) while reporting writes in the
    // active journal durable.
    #[test]
    fn finds_the_active_journal_after_the_last_one_synced_was_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let journal = ActiveJournal::new(dir.path());
        std::fs::write(dir.path().join("4.jnl"), b"a").unwrap();
        journal.sync_data().unwrap();
        assert_eq!(journal.synced_id(), Some(4));
        std::fs::write(dir.path().join("5.jnl"), b"b").unwrap();
        std::fs::write(dir.path().join("6.jnl"), b"c").unwrap();
        std::fs::remove_file(dir.path().join("4.jnl")).unwrap();
        std::fs::remove_file(dir.path().join("5.jnl")).unwrap();
        // Two rotations take far longer than JOURNAL_SEEN_MS (see there).
        let rotations = || std::thread::sleep(std::time::Duration::from_millis(JOURNAL_SEEN_MS as u64 + 5));
        rotations();
        journal.sync_data().unwrap();
        assert_eq!(journal.synced_id(), Some(6));
        std::fs::remove_file(dir.path().join("6.jnl")).unwrap();
        rotations();
        assert!(matches!(journal.sync_data(), Err(EngineError::Corruption(_))), "no journal left is not a silent success");
    }
}
