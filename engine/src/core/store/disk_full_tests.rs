//! Tests on a really full disk: a small tmpfs mounted in a private mount namespace.
//!
//! Each test runs twice. As itself (the parent), it starts this test binary again under
//! `unshare -m`, running only that test, with TMPFS_DIR_ENV naming an empty directory of its
//! own temporary directory. As that child, it mounts a TMPFS_BYTES tmpfs there, which no other
//! process sees and which the kernel unmounts when the child exits however it exits, plays the
//! scenario and leaves what the parent should see on the parent's file system. Needs Linux and
//! the right to unshare a mount namespace and mount a tmpfs (root). Without them the test
//! passes without running its scenario, as test/reliability/disk-full.test.ts skips, but never
//! silently: libtest has no skipped state and shows a passing test's output only with
//! --nocapture, so the parent writes why to the process's real stderr, which libtest does not
//! capture. With SKIP_FORBIDDEN_ENV=1 (for machines that must run them, e.g. a CI job as root)
//! such a test fails instead.
//!
//! Invariants: no mount outlives its child; the parent waits for the child at most
//! CHILD_WAIT_MAX, then kills it; temporary directories are removed by their guards.

use super::workers::FJALL_WORKER_THREAD_NAME;
use crate::core::engine::Engine;
use crate::core::error::EngineError;
use crate::core::ops::{kind, Op};
use crate::core::store::{Limits, OpenOptions};
use fjall::AbstractTree;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the child: the directory to mount the tmpfs on.
const TMPFS_DIR_ENV: &str = "TOONDB_TEST_TMPFS_DIR";
/// The tmpfs's size: room for the store (fjall's 64 MiB journal is sparse) and a filler.
const TMPFS_BYTES: u64 = 24 * 1024 * 1024;
/// Printed by a child that could not mount its tmpfs, followed by why; and by the parent,
/// on its real stderr, for a test it passes without running the scenario.
const SKIPPED: &str = "TMPFS TEST SKIPPED:";
/// Set to 1: a tmpfs test this machine cannot run fails instead of passing unrun.
const SKIP_FORBIDDEN_ENV: &str = "TOONDB_REQUIRE_TMPFS_TESTS";
/// How long the parent waits for its child (a scenario takes well under a second; a hung
/// checkpoint is what one of them checks for).
const CHILD_WAIT_MAX: Duration = Duration::from_secs(120);
/// Chunks of a sparse copy: an all-zero one is left a hole.
const COPY_CHUNK_BYTES: usize = 64 * 1024;

fn limits() -> Limits {
    Limits { key_bytes_max: 64, value_bytes_max: 64 * 1024, txn_bytes_max: 1 << 20, txn_bytes_daemon_max: 1 << 40, batch_items_max: 1000, batch_bytes_max: 1 << 24 }
}

fn open_engine(path: &Path) -> Engine {
    Engine::open(&OpenOptions { path: path.to_str().unwrap().into(), cache_bytes: None, row_cache_bytes: None, table_files_max: None, limits: limits() }).unwrap().0
}

fn put(key: &str, value: &[u8]) -> Op {
    Op { kind: kind::PUT, key: Some(key.as_bytes().to_vec()), value: Some(value.to_vec()), ..Default::default() }
}

fn read(engine: &Engine, key: &str) -> Option<Vec<u8>> {
    let op = Op { kind: kind::GET, key: Some(key.as_bytes().to_vec()), ..Default::default() };
    let mut out = engine.execute(vec![op]).unwrap();
    assert!(out[0].error.is_none(), "{:?}", out[0].error);
    out.remove(0).value.unwrap()
}

/// `bytes` bytes that no compression shrinks (xorshift from `seed`).
fn noise(seed: u64, bytes: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Runs `scenario` on a tmpfs in a child of this test binary (see the header); `test` is the
/// name of the calling test function.
fn run_on_tmpfs(test: &str, scenario: impl FnOnce(&Path)) {
    if let Some(dir) = std::env::var_os(TMPFS_DIR_ENV) {
        let dir = PathBuf::from(dir);
        match mount_tmpfs(&dir) {
            Ok(()) => scenario(&dir),
            Err(why) => println!("{SKIPPED} {why}"),
        }
        return;
    }
    if let Some(why) = why_no_mount_namespace() {
        skip(test, &why);
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let mount_dir = scratch.path().join("tmpfs");
    std::fs::create_dir(&mount_dir).unwrap();
    let output = scratch.path().join("child.log");
    let log = File::create(&output).unwrap();
    let name = format!("{}::{test}", module_path!().split_once("::").unwrap().1);
    let mut child = Command::new("unshare")
        .arg("-m")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", &name, "--nocapture", "--test-threads=1"])
        .env(TMPFS_DIR_ENV, &mount_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + CHILD_WAIT_MAX;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let printed = std::fs::read_to_string(&output).unwrap();
    println!("--- child (unshare -m, tmpfs) ---\n{printed}--- end of child ---");
    let status = status.unwrap_or_else(|| panic!("the child did not end within {CHILD_WAIT_MAX:?}"));
    assert!(status.success(), "the scenario failed in the child ({status})");
    assert!(printed.contains(&format!("test {name} ... ")) && printed.contains("test result: ok. 1 passed"), "the child did not run {name}");
    if let Some(why) = printed.lines().find_map(|line| line.strip_prefix(SKIPPED)) {
        skip(test, &format!("in the child: {}", why.trim()));
    }
}

/// Passes `test` without its scenario, saying so where it is seen, or fails it when
/// SKIP_FORBIDDEN_ENV is 1. `println!`/`eprintln!` would be captured (and dropped, as the test
/// passes); a write to the `Stderr` handle goes to file descriptor 2 as it is.
fn skip(test: &str, why: &str) {
    use std::io::Write;
    if std::env::var_os(SKIP_FORBIDDEN_ENV).is_some_and(|v| v == "1") {
        panic!("{test} cannot run here ({why}), and {SKIP_FORBIDDEN_ENV}=1 forbids skipping it");
    }
    let _ = writeln!(std::io::stderr(), "\n{SKIPPED} {test} passes WITHOUT running: {why} (needs Linux, root, unshare -m and tmpfs; {SKIP_FORBIDDEN_ENV}=1 makes this a failure)");
}

/// Why this process cannot run a child in a mount namespace of its own, if it cannot.
fn why_no_mount_namespace() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("not Linux".into());
    }
    match Command::new("unshare").args(["-m", "true"]).stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!("unshare -m failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim())),
        Err(e) => Some(format!("cannot run unshare: {e}")),
    }
}

/// Mounts a TMPFS_BYTES tmpfs on `dir` (in the child's private mount namespace).
fn mount_tmpfs(dir: &Path) -> Result<(), String> {
    // util-linux's `unshare -m` makes every mount private already; an unshare that does not
    // would let the tmpfs propagate to the parent's namespace and outlive the child.
    // SAFETY: mount(2) changing propagation only, with a NUL-terminated path.
    if unsafe { libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) } != 0 {
        return Err(format!("making the mounts private: {}", std::io::Error::last_os_error()));
    }
    let target = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    let options = std::ffi::CString::new(format!("size={TMPFS_BYTES},mode=0700")).unwrap();
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
    let rc = unsafe { libc::mount(c"tmpfs".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), 0, options.as_ptr().cast()) };
    if rc != 0 {
        return Err(format!("mount -t tmpfs on {}: {}", dir.display(), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Takes all but `slack_bytes` of the free space of the file system holding `dir`; returns
/// the filler file.
fn fill(dir: &Path, slack_bytes: u64) -> PathBuf {
    let path = dir.join("filler");
    let file = File::create(&path).unwrap();
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    let target = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    // SAFETY: statvfs fills the buffer given, read only if it succeeded.
    assert_eq!(unsafe { libc::statvfs(target.as_ptr(), stats.as_mut_ptr()) }, 0, "{}", std::io::Error::last_os_error());
    // SAFETY: statvfs succeeded.
    let stats = unsafe { stats.assume_init() };
    let free = stats.f_bavail as u64 * stats.f_frsize as u64;
    let bytes = free.saturating_sub(slack_bytes);
    // SAFETY: fallocate on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, bytes as libc::off_t) };
    assert_eq!(rc, 0, "fallocate of {bytes} bytes: {}", std::io::Error::last_os_error());
    path
}

/// Copies the files under `from` to `to`, leaving all-zero chunks as holes (fjall's journal
/// is 64 MiB, mostly never written).
fn copy_sparse(from: &Path, to: &Path) {
    use std::io::{Read, Seek, SeekFrom, Write};
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_sparse(&entry.path(), &to.join(entry.file_name()));
        }
        return;
    }
    let mut source = File::open(from).unwrap();
    let mut target = File::create(to).unwrap();
    let mut chunk = vec![0u8; COPY_CHUNK_BYTES];
    loop {
        let n = source.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        if chunk[..n].iter().all(|&b| b == 0) {
            target.seek(SeekFrom::Current(n as i64)).unwrap();
        } else {
            target.write_all(&chunk[..n]).unwrap();
        }
    }
    target.set_len(source.metadata().unwrap().len()).unwrap();
}

/// Slack left by the filler when a write should fail: a few dozen of the writes below.
const REFUSAL_SLACK_BYTES: u64 = 256 * 1024;
/// Bytes of each refused-test write: one batch below fjall's 8 KiB journal buffer, which holds
/// the unwritten part of a batch whose write failed.
const REFUSAL_VALUE_BYTES: usize = 4096;
/// Writes tried before the disk must have filled.
const REFUSAL_WRITES_MAX: usize = 10_000;
/// How long the refusal test waits for fjall's flush to run (or its worker to end).
const FLUSH_WAIT_MAX: Duration = Duration::from_secs(20);

// Regression (reviewer's reproduction): fjall keeps the batch whose journal write failed in its
// journal buffer, and its worker persists that buffer as every memtable flush starts. A flush
// once space was back (here the one a rotation queues, as fjall's own would after a
// compaction freed old tables) wrote and fsynced the refused write, and a restart replayed
// it. With the journal sealed at the poisoning, the worker's flush fails instead.
#[test]
fn a_write_refused_for_a_full_disk_stays_absent_after_space_is_freed_and_fjall_flushes() {
    run_on_tmpfs("a_write_refused_for_a_full_disk_stays_absent_after_space_is_freed_and_fjall_flushes", |dir| {
        let engine = open_engine(&dir.join("db"));
        let store = engine.store().unwrap();
        let acknowledged: Vec<String> = (0..100).map(|i| format!("acknowledged-{i}")).collect();
        assert!(engine.execute(acknowledged.iter().map(|key| put(key, key.as_bytes())).collect()).unwrap().iter().all(|o| o.error.is_none()));
        engine.sync().unwrap();
        let filler = fill(dir, REFUSAL_SLACK_BYTES);
        let mut refused = None;
        for i in 0..REFUSAL_WRITES_MAX {
            let key = format!("refused-{i}");
            let out = engine.execute(vec![put(&key, &noise(i as u64, REFUSAL_VALUE_BYTES))]).unwrap();
            if let Some(error) = &out[0].error {
                refused = Some((key, error.clone()));
                break;
            }
        }
        let (refused, error) = refused.expect("the disk never filled");
        println!("refused {refused}: {error}");
        assert_eq!(error.code(), "DISK_FULL", "{error}");
        std::fs::remove_file(filler).unwrap();

        // What fjall's worker does at its next flush: rotate the memtable, flush it (persisting
        // the journal buffer first).
        assert!(store.workers.found() >= 1, "the store's fjall workers are known before one ends");
        assert!(store.data.inner().rotate_memtable().unwrap());
        let deadline = Instant::now() + FLUSH_WAIT_MAX;
        while store.data.inner().tree.sealed_memtable_count() > 0 && store.workers.ended() == 0 {
            assert!(Instant::now() < deadline, "fjall's worker neither flushed nor ended");
            std::thread::sleep(Duration::from_millis(5));
        }
        println!("sealed memtables left: {}, fjall workers ended: {}", store.data.inner().tree.sealed_memtable_count(), store.workers.ended());
        assert_eq!(read(&engine, &acknowledged[0]), Some(acknowledged[0].as_bytes().to_vec()), "reads keep working");

        // What a restart would recover: the data directory as it is on disk now.
        let copy = dir.parent().unwrap().join("copy");
        copy_sparse(&dir.join("db"), &copy.join("db"));
        copy_sparse(&dir.join("db.watermark"), &copy.join("db.watermark"));
        let recovered = open_engine(&copy.join("db"));
        assert_eq!(read(&recovered, &refused), None, "the write refused with DISK_FULL came back after a restart");
        for key in &acknowledged {
            assert_eq!(read(&recovered, key), Some(key.as_bytes().to_vec()), "acknowledged {key} lost");
        }
        recovered.close().unwrap();
    });
}

/// Slack left by the filler before the checkpoint: less than the table its flush writes.
const CHECKPOINT_SLACK_BYTES: u64 = 64 * 1024;
/// Written before the disk is filled: a memtable whose table cannot fit in the slack.
const CHECKPOINT_KEYS: usize = 256;
const CHECKPOINT_VALUE_BYTES: usize = 4096;
/// How long the checkpoint may take to report its failed flush.
const CHECKPOINT_RETURN_WAIT_MAX: Duration = Duration::from_secs(10);

// Regression: a checkpoint whose flush hit a full disk never returned (fjall's worker ended,
// and fjall's rotate_memtable_and_wait polls the sealed memtable forever), so the daemon's
// stop, which awaits a checkpoint, hung.
#[test]
fn a_checkpoint_whose_flush_hits_a_full_disk_fails_instead_of_hanging() {
    run_on_tmpfs("a_checkpoint_whose_flush_hits_a_full_disk_fails_instead_of_hanging", |dir| {
        let engine = std::sync::Arc::new(open_engine(&dir.join("db")));
        let store = engine.store().unwrap();
        let writes = (0..CHECKPOINT_KEYS).map(|i| put(&format!("k{i}"), &noise(i as u64, CHECKPOINT_VALUE_BYTES))).collect();
        assert!(engine.execute(writes).unwrap().iter().all(|o| o.error.is_none()));
        engine.sync().unwrap();
        fill(dir, CHECKPOINT_SLACK_BYTES);
        let (done, outcome) = std::sync::mpsc::channel();
        let running = engine.clone();
        std::thread::spawn(move || {
            let _ = done.send(running.checkpoint());
        });
        let error: EngineError = match outcome.recv_timeout(CHECKPOINT_RETURN_WAIT_MAX) {
            Ok(Ok(_)) => panic!("the checkpoint succeeded on a full disk"),
            Ok(Err(e)) => e,
            Err(_) => panic!("the checkpoint did not return within {CHECKPOINT_RETURN_WAIT_MAX:?}"),
        };
        println!("checkpoint: {error}");
        assert_eq!(error.code(), "STORAGE_FAILED", "{error}");
        assert!(store.workers.ended() > 0, "the flush ended fjall's worker ({FJALL_WORKER_THREAD_NAME})");
        // The cause, which fjall says only through `log` (core/fjall_log.rs), reaches the
        // checkpoint's error and every later refusal, not a guess at what failed.
        let message = error.to_string();
        assert!(message.contains("fjall last reported: Worker #") && message.contains("No space left on device"), "{message}");
        let refused = engine.execute(vec![put("after", b"v")]).unwrap().remove(0).error.expect("a write after the worker ended is refused");
        assert_eq!(refused.code(), "STORAGE_FAILED", "{refused}");
        let refusal = refused.to_string();
        assert!(refusal.contains("background workers ended") && refusal.contains("No space left on device"), "{refusal}");
        // Each said once (the checkpoint's poison cause held fjall's report, and the refusal
        // added it again, after "writes are refused until restart" twice).
        for text in [&message, &refusal] {
            for once in ["refused until restart", "background workers ended", "fjall last reported"] {
                assert_eq!(text.matches(once).count(), 1, "{once:?} in {text}");
            }
        }
        assert_eq!(read(&engine, "k0"), Some(noise(0, CHECKPOINT_VALUE_BYTES)), "reads keep working");
    });
}

// Regression: a flush that failed on its own (no checkpoint waiting for it) ended fjall's worker
// and poisoned fjall's database; the next write got fjall's bare `Poisoned` ("fjall refuses
// writes since an earlier failure poisoned its database") with nothing of the cause. That
// first refusal is the one the daemon logs as fatal, so the log never said what failed; only
// later refusals named fjall's report.
#[test]
fn the_first_write_refused_after_a_flush_failed_names_what_fjall_reported() {
    run_on_tmpfs("the_first_write_refused_after_a_flush_failed_names_what_fjall_reported", |dir| {
        let engine = open_engine(&dir.join("db"));
        let store = engine.store().unwrap();
        store.workers.found();
        let writes = (0..CHECKPOINT_KEYS).map(|i| put(&format!("k{i}"), &noise(i as u64, CHECKPOINT_VALUE_BYTES))).collect();
        assert!(engine.execute(writes).unwrap().iter().all(|o| o.error.is_none()));
        engine.sync().unwrap();
        fill(dir, CHECKPOINT_SLACK_BYTES);
        // A flush fjall runs by itself, as when a memtable fills: nothing waits for it.
        store.data.inner().rotate_memtable().unwrap();
        let deadline = Instant::now() + CHECKPOINT_RETURN_WAIT_MAX;
        while store.workers.ended() == 0 {
            assert!(Instant::now() < deadline, "the flush on a full disk did not end fjall's worker");
            std::thread::sleep(Duration::from_millis(5));
        }
        let refused = engine.execute(vec![put("after", b"v")]).unwrap().remove(0).error.expect("a write after the worker ended is refused");
        let refusal = refused.to_string();
        println!("first refusal: {refusal}");
        assert_eq!(refused.code(), "STORAGE_FAILED", "{refusal}");
        assert!(refusal.contains("fjall last reported: Worker #") && refusal.contains("No space left on device"), "{refusal}");
        assert_eq!(refusal.matches("fjall last reported").count(), 1, "{refusal}");
        let again = engine.execute(vec![put("again", b"v")]).unwrap().remove(0).error.expect("refused").to_string();
        assert_eq!(again.matches("fjall last reported").count(), 1, "{again}");
    });
}
