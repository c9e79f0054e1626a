//! Checks of fjall's on-disk files that fjall 3.1 / lsm-tree 3.1 do not make themselves, run
//! before the database is opened.
//!
//! Why (found by test/reliability/corruption.test.ts, see test/RELIABILITY.md):
//! - A journal batch's seqno sits in its Start marker, which the batch checksum does not cover.
//!   A flipped bit replays an old write under a newer seqno, so recovery serves superseded values
//!   (or brings a deleted key back). toondb commits one batch at a time, so batch seqnos must
//!   strictly increase along the journals; a journal where they do not is damaged.
//! - A keyspace's `current` file stores an xxh3-128 of the version file it names, but lsm-tree
//!   never checks it. A damaged version file can then roll the keyspace back to its last flush
//!   without an error, or panic lsm-tree while decoding.
//!
//! Layouts (fjall 3.1.13 / lsm-tree 3.1.10, little-endian):
//!   journal `<n>.jnl` entries:  Start 01 | u32 item_count | u64 seqno                 (13 bytes)
//!                               Item  02 | u8 type | u8 compression | u64 keyspace | u16 key_len
//!                                        | u32 value_len | u32 disk_len | key | value (21 + ...)
//!                               End   03 | u64 checksum | "FJL" 03                    (13 bytes)
//!                               Clear 04 | u64 keyspace                               (9 bytes)
//!   Anything else (zero padding of the preallocated file, a torn entry) ends the scan. In the
//!   newest journal a torn tail is a crash's, which fjall's recovery drops (and the watermark
//!   catches lost commits); every older journal was fsynced whole as fjall sealed it, so one
//!   that stops parsing before its zero padding is damaged, and refused (fjall would cut it
//!   there and drop the commits after, which a newer journal hides from the watermark).
//!   `keyspaces/<id>/current`:   u64 version id | u128 xxh3 of `v<id>` | u8 checksum type (0)
//!
//! Invariants: a healthy database always passes (both checks only compare what fjall itself
//! wrote); every refusal is a CORRUPTION error naming the file.

use super::error::{EngineError, EngineResult};
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

const TAG_START: u8 = 1;
const TAG_ITEM: u8 = 2;
const TAG_END: u8 = 3;
const TAG_CLEAR: u8 = 4;
const START_BYTES: usize = 13;
const ITEM_HEADER_BYTES: usize = 21;
const END_BYTES: usize = 13;
const CLEAR_BYTES: usize = 9;
const CURRENT_FILE_BYTES: usize = 25;

/// Runs every check on the database directory `dir` (a missing directory passes); returns the
/// ids of its journal files, in order (for the watermark's check, watermark.rs).
pub fn check(dir: &Path) -> EngineResult<Vec<u64>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    check_journal_seqnos(dir)?;
    check_version_checksums(dir)?;
    Ok(journals(dir)?.into_iter().map(|(id, _)| id).collect())
}

fn io(context: String, err: std::io::Error) -> EngineError {
    EngineError::from_io(&context, &err)
}

/// Journal files of `dir` in the order fjall wrote them (by numeric id).
fn journals(dir: &Path) -> EngineResult<Vec<(u64, std::path::PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(format!("listing {}", dir.display()), e))? {
        let path = entry.map_err(|e| io(format!("listing {}", dir.display()), e))?.path();
        let id = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jnl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(id) = id {
            out.push((id, path));
        }
    }
    out.sort();
    Ok(out)
}

fn check_journal_seqnos(dir: &Path) -> EngineResult<()> {
    let mut previous: Option<(u64, String)> = None;
    let journals = journals(dir)?;
    let newest = journals.last().map(|(id, _)| *id);
    for (id, path) in journals {
        let file = File::open(&path).map_err(|e| io(format!("reading {}", path.display()), e))?;
        let len = file.metadata().map_err(|e| io(format!("reading {}", path.display()), e))?.len();
        let scan = scan_journal(file, len).map_err(|e| io(format!("reading {}", path.display()), e))?;
        // Only the newest journal may end torn (a crash while it was written). fjall fsyncs a
        // journal whole as it seals it, so an older one that stops parsing before its zero
        // padding is damaged, and fjall's recovery would cut it there, silently dropping the
        // commits after the damage while a newer journal hides the loss from the watermark.
        if let (Some(at), false) = (scan.damaged_at, Some(id) == newest) {
            return Err(EngineError::Corruption(format!(
                "sealed journal {} is damaged at byte {at} (fjall fsynced it whole as it sealed it): recovery would drop the commits after it",
                path.display()
            )));
        }
        for (offset, seqno) in scan.seqnos {
            let here = format!("{} at byte {offset}", path.display());
            if let Some((before, where_before)) = &previous {
                if seqno <= *before {
                    return Err(EngineError::Corruption(format!(
                        "journal batch seqnos go backwards: seqno {seqno} in {here} follows seqno {before} in \
                         {where_before} (a damaged batch header would replay an old write as the newest)"
                    )));
                }
            }
            previous = Some((seqno, here));
        }
    }
    Ok(())
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// What a scan of one journal found.
struct JournalScan {
    /// (offset, seqno) of the Start marker of every complete batch (one that reaches its End
    /// marker) up to the first entry that does not parse.
    seqnos: Vec<(u64, u64)>,
    /// Where the journal stops being whole: a batch left open, or an entry that does not parse
    /// (or runs past the end) with bytes other than zeros from there on. None when it parses to
    /// its end, or to the zeros of its preallocated tail. In the newest journal this is the
    /// torn tail of a crash, which fjall's recovery drops; in an older one, damage.
    damaged_at: Option<u64>,
}

/// Scans a journal's entries. A batch cut short is a torn tail: its Start may be followed by
/// the zeros of the preallocated file, which read as a seqno 0 that is no evidence of damage
/// (no seqno is taken from it). Streams the file (headers are read, item bodies skipped), so a
/// large journal costs no memory.
fn scan_journal(file: impl Read + Seek, len: u64) -> std::io::Result<JournalScan> {
    let mut reader = BufReader::new(file);
    let mut seqnos = Vec::new();
    let mut open_batch: Option<(u64, u64)> = None;
    let mut at = 0u64;
    let mut header = [0u8; ITEM_HEADER_BYTES];
    while at < len {
        let rest = len - at;
        reader.read_exact(&mut header[..1])?;
        let size = match header[0] {
            TAG_START if rest >= START_BYTES as u64 => START_BYTES,
            TAG_ITEM if rest >= ITEM_HEADER_BYTES as u64 => ITEM_HEADER_BYTES,
            TAG_END if rest >= END_BYTES as u64 => END_BYTES,
            TAG_CLEAR if rest >= CLEAR_BYTES as u64 => CLEAR_BYTES,
            _ => break,
        };
        reader.read_exact(&mut header[1..size])?;
        // Only an item has a body after its header: the key and the on-disk value.
        let body = if header[0] == TAG_ITEM {
            u64::from(u16::from_le_bytes([header[11], header[12]])) + u64::from(u32::from_le_bytes(header[17..21].try_into().expect("4 bytes")))
        } else {
            0
        };
        if at + size as u64 + body > len {
            break; // a torn last entry
        }
        match header[0] {
            TAG_START => open_batch = Some((at, le_u64(&header, 5))),
            TAG_END => seqnos.extend(open_batch.take()),
            _ => {}
        }
        reader.seek_relative(body as i64)?;
        at += size as u64 + body;
    }
    let padding_only = at >= len || {
        reader.seek(std::io::SeekFrom::Start(at))?;
        zeros_to_end(&mut reader)?
    };
    let damaged_at = match open_batch {
        Some((start, _)) => Some(start),
        None if !padding_only => Some(at),
        None => None,
    };
    Ok(JournalScan { seqnos, damaged_at })
}

/// Whether every byte from the reader's position to the end is zero.
fn zeros_to_end(reader: &mut impl Read) -> std::io::Result<bool> {
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            return Ok(true);
        }
        if chunk[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
}

fn check_version_checksums(dir: &Path) -> EngineResult<()> {
    let keyspaces = dir.join("keyspaces");
    if !keyspaces.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(&keyspaces).map_err(|e| io(format!("listing {}", keyspaces.display()), e))? {
        let folder = entry.map_err(|e| io(format!("listing {}", keyspaces.display()), e))?.path();
        let current = folder.join("current");
        if !current.exists() {
            continue;
        }
        let bytes = std::fs::read(&current).map_err(|e| io(format!("reading {}", current.display()), e))?;
        if bytes.len() != CURRENT_FILE_BYTES || bytes[24] != 0 {
            return Err(EngineError::Corruption(format!("{} is damaged ({} bytes)", current.display(), bytes.len())));
        }
        let version_id = le_u64(&bytes, 0);
        let expected = u128::from_le_bytes(bytes[8..24].try_into().expect("16 bytes"));
        let version = folder.join(format!("v{version_id}"));
        let content = std::fs::read(&version).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => EngineError::Corruption(format!(
                "{} names version file {} which does not exist",
                current.display(),
                version.display()
            )),
            _ => io(format!("reading {}", version.display()), e),
        })?;
        if xxhash_rust::xxh3::xxh3_128(&content) != expected {
            return Err(EngineError::Corruption(format!(
                "version file {} does not match the checksum recorded in {} (the table list is damaged)",
                version.display(),
                current.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::Engine;
    use crate::core::ops::{kind, Op};
    use crate::core::store::{Limits, OpenOptions};

    fn opts(dir: &Path) -> OpenOptions {
        let limits = Limits { key_bytes_max: 64, value_bytes_max: 1024, txn_bytes_max: 1 << 20, txn_bytes_daemon_max: 1 << 40, batch_items_max: 100, batch_bytes_max: 1 << 24 };
        OpenOptions { path: dir.join("db").to_str().unwrap().into(), cache_bytes: None, row_cache_bytes: None, table_files_max: None, limits }
    }

    fn put(e: &Engine, key: &[u8], value: &[u8]) {
        let op = Op { kind: kind::PUT, key: Some(key.to_vec()), value: Some(value.to_vec()), ..Default::default() };
        assert!(e.execute(vec![op]).unwrap()[0].error.is_none());
    }

    #[test]
    fn a_healthy_database_passes_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (e, _) = Engine::open(&opts(dir.path())).unwrap();
        for i in 0..20u8 {
            put(&e, &[b'k', i % 3], &[i]);
        }
        e.checkpoint().unwrap();
        for i in 0..5u8 {
            put(&e, b"after", &[i]);
        }
        e.sync().unwrap();
        drop(e); // no close: the journal still holds the last writes, as after kill -9
        let db = dir.path().join("db");
        check(&db).unwrap();

        // A batch seqno raised above its successor's: refused.
        let (id, journal) = journals(&db).unwrap().pop().unwrap();
        let mut bytes = std::fs::read(&journal).unwrap();
        let seqnos = scan_journal(std::io::Cursor::new(&bytes), bytes.len() as u64).unwrap().seqnos;
        assert!(seqnos.len() >= 2, "the journal holds the writes after the checkpoint");
        let offset = seqnos[seqnos.len() - 2].0 as usize;
        let original = bytes.clone();
        bytes[offset + 5 + 3] ^= 0x08; // +2^27
        std::fs::write(&journal, &bytes).unwrap();
        assert_eq!(check(&db).unwrap_err().code(), "CORRUPTION");
        std::fs::write(&journal, &original).unwrap();
        check(&db).unwrap();

        // A torn batch after the last complete one (its Start cut short, then the zeros of the
        // preallocated file, which read as seqno 0): fjall drops it, so it is no damage.
        let end = original.windows(4).rposition(|w| w == b"FJL\x03").unwrap() + 4;
        let mut torn = original[..end].to_vec();
        torn.extend_from_slice(&[TAG_START, 1, 0]);
        torn.resize(torn.len().max(original.len()) + 32, 0);
        std::fs::write(&journal, &torn).unwrap();
        check(&db).unwrap();

        // Regression: the same torn batch, or an entry damaged in the middle, in a journal a
        // newer one follows was passed over, and fjall's recovery cut the journal there,
        // dropping the commits after it while the newer journal's seqnos satisfied the
        // watermark. A sealed journal is whole (fjall fsyncs it as it seals it): refused.
        let newer = journal.with_file_name(format!("{}.jnl", id + 1));
        std::fs::write(&newer, vec![0u8; 4096]).unwrap();
        assert_eq!(check(&db).unwrap_err().code(), "CORRUPTION", "a torn batch in a sealed journal");
        let mut damaged = original.clone();
        damaged[seqnos[0].0 as usize] ^= 0x40; // the first batch's Start tag
        std::fs::write(&journal, &damaged).unwrap();
        assert_eq!(check(&db).unwrap_err().code(), "CORRUPTION", "a damaged entry in a sealed journal");
        // Whole, with the zeros of its preallocated tail, it passes.
        std::fs::write(&journal, &original).unwrap();
        check(&db).unwrap();
        std::fs::remove_file(&newer).unwrap();

        // A flipped byte in a version file: refused.
        let ks = std::fs::read_dir(db.join("keyspaces")).unwrap().map(|e| e.unwrap().path()).find(|p| p.join("current").exists()).unwrap();
        let current = std::fs::read(ks.join("current")).unwrap();
        let version = ks.join(format!("v{}", le_u64(&current, 0)));
        let mut content = std::fs::read(&version).unwrap();
        content[0] ^= 1;
        std::fs::write(&version, &content).unwrap();
        assert_eq!(check(&db).unwrap_err().code(), "CORRUPTION");
    }
}
