//! The durable-seqno watermark: detects journal recovery that silently lost acknowledged data.
//!
//! Why: fjall's journal recovery treats a damaged batch anywhere in the journal like a torn tail
//! and truncates there, so a bit flip in the middle of the journal makes every later commit
//! vanish without an error (see test/RELIABILITY.md). toondb acknowledges a `sync`-mode write
//! only after the fsync covering it, so it knows a lower bound of what must survive.
//!
//! How: after every successful journal fsync the store records, in `<engine dir>.watermark`
//! (one 32-byte pwrite, no extra fsync), a lower bound of what recovery must give back for the
//! commits that fsync covered (their batch seqno + 1, store/commit.rs `commit_with`) and the id of a
//! journal no newer than the one holding them (the one active before the previous fsync's
//! sample: store/fsync.rs). On open, if
//! fjall recovered a lower seqno while that journal is still on disk, or no journal from it on
//! is, acknowledged commits were lost and the open fails with CORRUPTION instead of serving a
//! database with holes. If fjall has deleted that journal (it does once everything in it is
//! flushed to tables, oldest first, after creating newer ones), the commits are in tables,
//! which lsm-tree checksums, and a lower recovered seqno is expected: compaction drops the
//! tombstones of deletes, and recovery restores only the highest seqno an item still holds.
//! An operator who accepts a loss removes the watermark file (the error says so).
//!
//! Invariants:
//! - The watermark only ever names a seqno whose journal bytes were fsynced before it was
//!   written, so it is never above what an intact journal recovers (no false alarm). It is not
//!   itself fsynced: after power loss it may be older than the truth, which only weakens the
//!   check, never breaks it.
//! - A torn or foreign watermark file (bad magic or check word) is reported and ignored; a
//!   version-1 file (no journal id) is checked as before: strictly.

use super::error::{EngineError, EngineResult};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const MAGIC_V1: &[u8; 8] = b"TDBWMK01";
const FILE_BYTES_V1: usize = 24;
const MAGIC: &[u8; 8] = b"TDBWMK02";
const FILE_BYTES: usize = 32;

pub fn path_for(engine_dir: &str) -> PathBuf {
    PathBuf::from(format!("{}.watermark", engine_dir.trim_end_matches('/')))
}

/// What a watermark file says, if anything readable.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    Missing,
    Unreadable,
    /// The durable seqno, and the journal its fsync went through (None in a version-1 file).
    Seqno(u64, Option<u64>),
}

fn check_word(seqno: u64, journal: u64) -> u64 {
    !seqno ^ journal.rotate_left(32)
}

pub fn read(path: &Path) -> EngineResult<Recorded> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Recorded::Missing),
        Err(e) => return Err(EngineError::from_io(&format!("reading {}", path.display()), &e)),
    };
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    Ok(match (bytes.len(), &bytes[..8.min(bytes.len())]) {
        (FILE_BYTES, magic) if magic == MAGIC && word(24) == check_word(word(8), word(16)) => Recorded::Seqno(word(8), Some(word(16))),
        (FILE_BYTES_V1, magic) if magic == MAGIC_V1 && word(16) == !word(8) => Recorded::Seqno(word(8), None),
        _ => Recorded::Unreadable,
    })
}

/// How far recovery may legitimately get past the last recorded durable seqno: commits after
/// the last fsync (`off` mode fsyncs only at checkpoint and close). 2^40 commits is 12 days at a
/// million commits per second; a recovered seqno further ahead comes from a damaged batch header
/// (fjall 3.1 does not checksum a batch's seqno), which would replay an old write as the newest.
pub const SEQNO_AHEAD_MAX: u64 = 1 << 40;

/// Fails with CORRUPTION when the recovered seqno is below the recorded durable one while the
/// journals should still hold it (lost acknowledged commits; see the header), or implausibly far
/// above it (a damaged batch seqno). `journals`: the journal ids on disk before recovery.
pub fn verify(path: &Path, recovered: u64, journals: &[u64]) -> EngineResult<()> {
    if let Recorded::Seqno(durable, journal) = read(path)? {
        if recovered > durable.saturating_add(SEQNO_AHEAD_MAX) {
            return Err(EngineError::Corruption(format!(
                "journal recovery reached seqno {recovered}, implausibly far past the last durable seqno {durable}: \
                 a batch header in the journal is damaged and an old write could replay as the newest. Restore \
                 from a dump or backup"
            )));
        }
        let flushed_away = journal.is_some_and(|j| !journals.contains(&j) && journals.iter().any(|&id| id > j));
        if recovered < durable && !flushed_away {
            return Err(EngineError::Corruption(format!(
                "journal recovery lost acknowledged commits: recovered up to seqno {recovered}, but seqno {durable} \
                 was fsynced and acknowledged (the journal is damaged). Restore from a dump or backup; to accept \
                 the loss and start anyway, remove {}",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Records durable seqnos for one open store.
pub struct Watermark {
    file: Mutex<File>,
    recorded: AtomicU64,
}

impl Watermark {
    pub fn open(path: &Path) -> EngineResult<Watermark> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            // Never through a link planted under its name (see os.rs's lock file).
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| EngineError::from_io(&format!("opening {}", path.display()), &e))?;
        Ok(Watermark { file: Mutex::new(file), recorded: AtomicU64::new(0) })
    }

    /// Records that everything up to `seqno` is durable, its last commit in journal `journal`
    /// or a later one (no-op if not higher than before: the journal named with the first fsync
    /// that covered a seqno is the right one for it).
    pub fn record(&self, seqno: u64, journal: u64) -> EngineResult<()> {
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if seqno <= self.recorded.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut bytes = [0u8; FILE_BYTES];
        bytes[..8].copy_from_slice(MAGIC);
        bytes[8..16].copy_from_slice(&seqno.to_le_bytes());
        bytes[16..24].copy_from_slice(&journal.to_le_bytes());
        bytes[24..32].copy_from_slice(&check_word(seqno, journal).to_le_bytes());
        file.write_all_at(&bytes, 0).map_err(|e| EngineError::from_io("writing the durable watermark", &e))?;
        self.recorded.store(seqno, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
impl Watermark {
    /// Swaps the file for a read-only descriptor of it, so every later write fails (EBADF), as
    /// on a full or failing disk.
    pub fn make_unwritable(&self, path: &Path) {
        *self.file.lock().unwrap() = File::open(path).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Security review: the watermark was opened (and written) through a symlink planted under
    // its name.
    #[test]
    fn the_watermark_is_never_opened_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let path = dir.path().join("db.watermark");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        assert!(Watermark::open(&path).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn records_and_detects_loss() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(dir.path().join("db").to_str().unwrap());
        assert_eq!(read(&path).unwrap(), Recorded::Missing);
        let mark = Watermark::open(&path).unwrap();
        mark.record(10, 3).unwrap();
        mark.record(5, 4).unwrap(); // never goes down
        mark.record(10, 4).unwrap(); // nor moves to a later journal for the same seqno
        assert_eq!(read(&path).unwrap(), Recorded::Seqno(10, Some(3)));
        assert!(verify(&path, 10, &[3]).is_ok());
        assert!(verify(&path, 11, &[3]).is_ok());
        assert_eq!(verify(&path, 10 + SEQNO_AHEAD_MAX + 1, &[3]).unwrap_err().code(), "CORRUPTION");
        assert_eq!(verify(&path, 9, &[3]).unwrap_err().code(), "CORRUPTION", "its journal is there: a commit was lost");
        assert_eq!(verify(&path, 9, &[2, 3, 4]).unwrap_err().code(), "CORRUPTION");
        assert_eq!(verify(&path, 9, &[]).unwrap_err().code(), "CORRUPTION", "no journal from it on: they were lost");
        assert_eq!(verify(&path, 9, &[1, 2]).unwrap_err().code(), "CORRUPTION");
        assert!(verify(&path, 9, &[4]).is_ok(), "fjall flushed and deleted journal 3: its commits are in tables");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(&path).unwrap(), Recorded::Unreadable);
        assert!(verify(&path, 0, &[]).is_ok());
    }

    #[test]
    fn reads_a_version_1_file_and_checks_it_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(dir.path().join("db").to_str().unwrap());
        let mut bytes = Vec::from(&MAGIC_V1[..]);
        bytes.extend_from_slice(&7u64.to_le_bytes());
        bytes.extend_from_slice(&(!7u64).to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(&path).unwrap(), Recorded::Seqno(7, None));
        assert_eq!(verify(&path, 6, &[9]).unwrap_err().code(), "CORRUPTION");
    }
}

#[cfg(test)]
mod engine_tests {
    use crate::core::engine::Engine;
    use crate::core::ops::{kind, Op};
    use crate::core::store::{Limits, OpenOptions};

    fn put(e: &Engine, key: &[u8]) {
        let out = e.execute(vec![Op { kind: kind::PUT, key: Some(key.to_vec()), value: Some(vec![1]), ..Default::default() }]).unwrap();
        assert!(out[0].error.is_none());
    }

    #[test]
    fn no_false_alarm_after_checkpoint_close_and_reopen_but_loss_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits { key_bytes_max: 64, value_bytes_max: 1024, txn_bytes_max: 1 << 20, txn_bytes_daemon_max: 1 << 40, batch_items_max: 100, batch_bytes_max: 1 << 24 };
        let opts = OpenOptions { path: dir.path().join("db").to_str().unwrap().into(), cache_bytes: None, row_cache_bytes: None, table_files_max: None, limits };
        let (e, _) = Engine::open(&opts).unwrap();
        put(&e, b"a");
        e.sync().unwrap();
        e.checkpoint().unwrap(); // moves fjall's visible seqno without data
        put(&e, b"b");
        e.close().unwrap();
        drop(e);
        let (e, _) = Engine::open(&opts).unwrap();
        put(&e, b"c");
        e.close().unwrap();
        drop(e);
        // Pretend a later acknowledged commit existed that the journal no longer has.
        let path = super::path_for(&opts.path);
        let super::Recorded::Seqno(durable, Some(journal)) = super::read(&path).unwrap() else { panic!("no watermark") };
        super::Watermark::open(&path).unwrap().record(durable + 1, journal).unwrap();
        let err = Engine::open(&opts).err().expect("a lost acknowledged commit must refuse the open");
        assert_eq!(err.code(), "CORRUPTION");
    }

    fn options(dir: &std::path::Path) -> OpenOptions {
        let limits = Limits { key_bytes_max: 64, value_bytes_max: 1024, txn_bytes_max: 1 << 20, txn_bytes_daemon_max: 1 << 40, batch_items_max: 1000, batch_bytes_max: 1 << 24 };
        OpenOptions { path: dir.join("db").to_str().unwrap().into(), cache_bytes: None, row_cache_bytes: None, table_files_max: None, limits }
    }

    // Regression: an empty batch takes no seqno in fjall, yet the commit recorded fjall's visible
    // seqno, which the checkpoint's flush had moved: the next open refused the undamaged
    // database, after a clean close and after a kill alike.
    #[test]
    fn an_empty_batch_after_a_flush_records_nothing_recovery_cannot_give_back() {
        for (empty_kind, clean) in [(kind::PUT_BATCH, true), (kind::DELETE_BATCH, false)] {
            let dir = tempfile::tempdir().unwrap();
            let opts = options(dir.path());
            let (e, _) = Engine::open(&opts).unwrap();
            put(&e, b"k");
            e.checkpoint().unwrap();
            let empty = Op { kind: empty_kind, keys: Some(vec![]), values: (empty_kind == kind::PUT_BATCH).then(Vec::new), ..Default::default() };
            assert!(e.execute(vec![empty]).unwrap()[0].error.is_none());
            if clean { e.close().unwrap() } else { e.sync().map(|_| ()).unwrap() }
            drop(e);
            assert!(Engine::open(&opts).is_ok(), "an undamaged database was refused (clean close: {clean})");
        }
    }

    // Regression (review): the last commit a delete, its journal sealed (past 64 MB) and deleted
    // once flushed, and a compaction into the last level dropping its tombstones: recovery then
    // restores a seqno below the watermark's from an undamaged database. The journal the
    // watermark names is gone, flushed, so its commits are in tables: no alarm.
    //
    // And without the sync after it (`off` mode, or fjall sealing the journal before the group
    // commit's next fsync): the first fsync covering the delete ran once journal 1 was active,
    // and recorded journal 1, which outlives journal 0: a refused restart in review. The
    // watermark now names the journal active before the previous fsync's sample.
    #[test]
    fn a_delete_flushed_away_with_its_journal_and_compacted_away_is_no_loss() {
        for synced in [true, false] {
            a_delete_flushed_away_and_compacted_away(synced);
        }
    }

    fn a_delete_flushed_away_and_compacted_away(synced: bool) {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits { key_bytes_max: 64, value_bytes_max: 1 << 20, txn_bytes_max: 1 << 26, txn_bytes_daemon_max: 1 << 40, batch_items_max: 100_000, batch_bytes_max: 1 << 26 };
        let opts = OpenOptions { path: dir.path().join("db").to_str().unwrap().into(), cache_bytes: None, row_cache_bytes: None, table_files_max: None, limits };
        let (e, _) = Engine::open(&opts).unwrap();
        let batch = |kind, keys: Vec<Vec<u8>>, value: Option<Vec<u8>>| {
            let values = value.map(|v| vec![v; keys.len()]);
            let out = e.execute(vec![Op { kind, keys: Some(keys), values, ..Default::default() }]).unwrap();
            assert!(out[0].error.is_none(), "{:?}", out[0].error);
        };
        batch(kind::PUT_BATCH, (0..100).map(|i| format!("a{i:03}").into_bytes()).collect(), Some(vec![1; 100]));
        e.checkpoint().unwrap();
        // ~63 MB of values (random: the journal may compress): below the 64 MB past which
        // fjall's next flush seals the journal.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..63 {
            let value = (0..1_000_000).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x as u8 }).collect();
            batch(kind::PUT_BATCH, vec![format!("f{i:03}").into_bytes()], Some(value));
        }
        // The last commit deletes the a-keys, with enough tombstones to take the journal past 64 MB.
        let mut doomed: Vec<Vec<u8>> = (0..100).map(|i| format!("a{i:03}").into_bytes()).collect();
        doomed.extend((0..25_000).map(|i| format!("z{i:063}").into_bytes()));
        batch(kind::DELETE_BATCH, doomed, None);
        if synced {
            e.sync().unwrap();
        } else {
            // More deletes, never synced, until a flush fjall runs on its own (the memtable
            // full) seals journal 0: the next fsync then runs with journal 1 active.
            let second = dir.path().join("db").join("1.jnl");
            for round in 0..200 {
                if second.exists() { break; }
                batch(kind::DELETE_BATCH, (0..10_000).map(|i| format!("y{round:03}{i:060}").into_bytes()).collect(), None);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert!(second.exists(), "fjall never sealed journal 0");
        }
        e.checkpoint().unwrap(); // its flush seals journal 0; once flushed, fjall deletes it
        let first = dir.path().join("db").join("0.jnl");
        for _ in 0..100 {
            if !first.exists() { break; }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let listing: Vec<String> = std::fs::read_dir(dir.path().join("db")).unwrap().map(|d| d.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(!first.exists(), "fjall kept journal 0: {listing:?}");
        e.store().unwrap().data.inner().major_compact().unwrap(); // the tombstones leave
        e.close().unwrap();
        drop(e);
        if let Err(err) = Engine::open(&opts) {
            panic!("a clean restart was refused (synced before the checkpoint: {synced}): {err}");
        }
    }

    // Regression: the seqno recorded for a commit was fjall's visible seqno read after it, which a
    // flush or compaction installing its version in between had moved past anything recovery
    // restores: 72 of 200 clean restarts refused in review.
    #[test]
    fn commits_racing_a_flush_leave_a_watermark_recovery_reaches() {
        for cycle in 0..30u64 {
            let dir = tempfile::tempdir().unwrap();
            let opts = options(dir.path());
            let e = std::sync::Arc::new(Engine::open(&opts).unwrap().0);
            put(&e, b"seed");
            let keys: Vec<Vec<u8>> = (0..800u32).map(|i| format!("k{i}").into_bytes()).collect();
            let flusher = { let e = e.clone(); std::thread::spawn(move || e.checkpoint().map(|_| ())) };
            std::thread::sleep(std::time::Duration::from_micros((cycle % 10) * 50));
            let batch = Op { kind: kind::PUT_BATCH, values: Some(vec![vec![7u8; 64]; keys.len()]), keys: Some(keys), ..Default::default() };
            assert!(e.execute(vec![batch]).unwrap()[0].error.is_none());
            flusher.join().unwrap().unwrap();
            e.close().unwrap();
            drop(e);
            if let Err(err) = Engine::open(&opts) {
                panic!("cycle {cycle}: a clean restart was refused: {err}");
            }
        }
    }
}
