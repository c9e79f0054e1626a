//! The durable-seqno watermark: detects journal recovery that silently lost acknowledged data.
//!
//! Why: fjall's journal recovery treats a damaged batch anywhere in the journal like a torn tail
//! and truncates there, so a bit flip in the middle of the journal makes every later commit
//! vanish without an error (see test/RELIABILITY.md). toondb acknowledges a `sync`-mode write
//! only after the fsync covering it, so it knows a lower bound of what must survive.
//!
//! How: after every successful journal fsync the store records the engine seqno that fsync
//! covered in `<engine dir>.watermark` (one 24-byte pwrite, no extra fsync). On open, if fjall
//! recovered a lower seqno than the watermark, acknowledged commits were lost and the open fails
//! with CORRUPTION instead of serving a database with holes. An operator who accepts the loss
//! removes the watermark file (the error says so).
//!
//! Invariants:
//! - The watermark only ever names a seqno whose journal bytes were fsynced before it was
//!   written, so it is never above what an intact journal recovers (no false alarm). It is not
//!   itself fsynced: after power loss it may be older than the truth, which only weakens the
//!   check, never breaks it.
//! - A torn or foreign watermark file (bad magic or check word) is reported and ignored.

use super::error::{EngineError, EngineResult};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const MAGIC: &[u8; 8] = b"TDBWMK01";
const FILE_BYTES: usize = 24;

pub fn path_for(engine_dir: &str) -> PathBuf {
    PathBuf::from(format!("{}.watermark", engine_dir.trim_end_matches('/')))
}

/// What a watermark file says, if anything readable.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    Missing,
    Unreadable,
    Seqno(u64),
}

pub fn read(path: &Path) -> EngineResult<Recorded> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Recorded::Missing),
        Err(e) => return Err(EngineError::from_io(&format!("reading {}", path.display()), &e)),
    };
    if bytes.len() != FILE_BYTES || &bytes[..8] != MAGIC {
        return Ok(Recorded::Unreadable);
    }
    let seqno = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let check = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    Ok(if check == !seqno { Recorded::Seqno(seqno) } else { Recorded::Unreadable })
}

/// How far recovery may legitimately get past the last recorded durable seqno: commits after
/// the last fsync (`off` mode fsyncs only at checkpoint and close). 2^40 commits is 12 days at a
/// million commits per second; a recovered seqno further ahead comes from a damaged batch header
/// (fjall 3.1 does not checksum a batch's seqno), which would replay an old write as the newest.
pub const SEQNO_AHEAD_MAX: u64 = 1 << 40;

/// Fails with CORRUPTION when the recovered seqno is below the recorded durable one (lost
/// acknowledged commits) or implausibly far above it (a damaged batch seqno).
pub fn verify(path: &Path, recovered: u64) -> EngineResult<()> {
    if let Recorded::Seqno(durable) = read(path)? {
        if recovered > durable.saturating_add(SEQNO_AHEAD_MAX) {
            return Err(EngineError::Corruption(format!(
                "journal recovery reached seqno {recovered}, implausibly far past the last durable seqno {durable}: \
                 a batch header in the journal is damaged and an old write could replay as the newest. Restore \
                 from a dump or backup"
            )));
        }
        if recovered < durable {
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
            .open(path)
            .map_err(|e| EngineError::from_io(&format!("opening {}", path.display()), &e))?;
        Ok(Watermark { file: Mutex::new(file), recorded: AtomicU64::new(0) })
    }

    /// Records that everything up to `seqno` is durable (no-op if not higher than before).
    pub fn record(&self, seqno: u64) -> EngineResult<()> {
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if seqno <= self.recorded.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut bytes = [0u8; FILE_BYTES];
        bytes[..8].copy_from_slice(MAGIC);
        bytes[8..16].copy_from_slice(&seqno.to_le_bytes());
        bytes[16..24].copy_from_slice(&(!seqno).to_le_bytes());
        file.write_all_at(&bytes, 0).map_err(|e| EngineError::from_io("writing the durable watermark", &e))?;
        self.recorded.store(seqno, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_detects_loss() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(dir.path().join("db").to_str().unwrap());
        assert_eq!(read(&path).unwrap(), Recorded::Missing);
        let mark = Watermark::open(&path).unwrap();
        mark.record(10).unwrap();
        mark.record(5).unwrap(); // never goes down
        assert_eq!(read(&path).unwrap(), Recorded::Seqno(10));
        assert!(verify(&path, 10).is_ok());
        assert!(verify(&path, 11).is_ok());
        assert_eq!(verify(&path, 10 + SEQNO_AHEAD_MAX + 1).unwrap_err().code(), "CORRUPTION");
        assert_eq!(verify(&path, 9).unwrap_err().code(), "CORRUPTION");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(&path).unwrap(), Recorded::Unreadable);
        assert!(verify(&path, 0).is_ok());
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
        let limits = Limits { key_bytes_max: 64, value_bytes_max: 1024, txn_bytes_max: 1 << 20, batch_items_max: 100, batch_bytes_max: 1 << 24 };
        let opts = OpenOptions { path: dir.path().join("db").to_str().unwrap().into(), cache_bytes: None, row_cache_bytes: None, limits };
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
        let super::Recorded::Seqno(durable) = super::read(&path).unwrap() else { panic!("no watermark") };
        super::Watermark::open(&path).unwrap().record(durable + 1).unwrap();
        let err = Engine::open(&opts).err().expect("a lost acknowledged commit must refuse the open");
        assert_eq!(err.code(), "CORRUPTION");
    }

    fn options(dir: &std::path::Path) -> OpenOptions {
        let limits = Limits { key_bytes_max: 64, value_bytes_max: 1024, txn_bytes_max: 1 << 20, batch_items_max: 1000, batch_bytes_max: 1 << 24 };
        OpenOptions { path: dir.join("db").to_str().unwrap().into(), cache_bytes: None, row_cache_bytes: None, limits }
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
