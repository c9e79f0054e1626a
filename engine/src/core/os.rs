//! Operating-system services Node cannot reach on its own: the data-directory lock, the peer
//! credentials of a Unix-socket connection, systemd's sd_notify datagram, the scheduling
//! priority of threads other code started, and the process's open-files limit.
//!
//! Responsibility: thin, checked wrappers over libc / std with errors in registry codes.
//!
//! Invariants:
//! - `DirLock` holds an exclusive `flock` on `<dir>/toondbd.lock` for as long as it lives; the
//!   kernel drops the lock when the process dies (also on SIGKILL), so a stale lock never blocks
//!   a restart. The lock file is opened O_CLOEXEC, so a child process never inherits it.
//! - `sd_notify` never fails the caller: without NOTIFY_SOCKET it does nothing and returns false.

use super::error::{EngineError, EngineResult};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const LOCK_FILE_NAME: &str = "toondbd.lock";

/// An exclusive, process-lifetime lock on a data directory.
pub struct DirLock {
    path: PathBuf,
    file: Option<File>,
}

impl DirLock {
    /// Takes the lock without waiting; LOCKED if another process (or handle) holds it.
    pub fn acquire(dir: &Path) -> EngineResult<DirLock> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::from_io(&format!("creating {}", dir.display()), &e))?;
        let path = dir.join(LOCK_FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            // O_NOFOLLOW: never a file a link planted under the lock's name points at (the
            // daemon also refuses a data dir others can write, daemon/path-safety.ts).
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| EngineError::from_io(&format!("opening {}", path.display()), &e))?;
        // SAFETY: flock on a file descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::EWOULDBLOCK) => EngineError::Locked(format!(
                    "data directory {} is in use by another toondbd (lock {})",
                    dir.display(),
                    path.display()
                )),
                _ => EngineError::from_io(&format!("locking {}", path.display()), &err),
            });
        }
        // Diagnostics only: who holds the lock. Failure to write it does not matter.
        let _ = file.set_len(0).and_then(|_| writeln!(file, "{}", std::process::id()));
        Ok(DirLock { path, file: Some(file) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Releases the lock now (closing the descriptor drops the flock). Idempotent.
    pub fn release(&mut self) {
        self.file.take();
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCredentials {
    pub uid: u32,
    pub gid: u32,
    /// 0 when the platform cannot tell.
    pub pid: i32,
    /// The peer's supplementary groups as the kernel recorded them when it connected (Linux
    /// SO_PEERGROUPS, macOS LOCAL_PEERCRED); may include `gid`. Empty where the kernel cannot
    /// tell (Linux before 4.13).
    pub groups: Vec<u32>,
}

/// Credentials of the process at the other end of a connected Unix socket.
#[cfg(target_os = "linux")]
pub fn peer_credentials(fd: i32) -> EngineResult<PeerCredentials> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a properly sized, writable ucred and `len` holds its size.
    let rc = unsafe {
        libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut cred as *mut libc::ucred).cast(), &mut len)
    };
    if rc != 0 {
        return Err(EngineError::from_io("reading peer credentials (SO_PEERCRED)", &std::io::Error::last_os_error()));
    }
    Ok(PeerCredentials { uid: cred.uid, gid: cred.gid, pid: cred.pid, groups: peer_groups(fd)? })
}

/// The supplementary groups of a connected Unix socket's peer (SO_PEERGROUPS, Linux 4.13+: the
/// groups it had when it connected, so a process that exits and hands its pid on cannot be
/// mistaken for it); empty on a kernel without the option.
#[cfg(target_os = "linux")]
fn peer_groups(fd: i32) -> EngineResult<Vec<u32>> {
    const GID_BYTES: usize = std::mem::size_of::<libc::gid_t>();
    let mut groups: Vec<libc::gid_t> = vec![0; 32];
    loop {
        let mut len = (groups.len() * GID_BYTES) as libc::socklen_t;
        // SAFETY: `groups` is writable for `len` bytes.
        let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERGROUPS, groups.as_mut_ptr().cast(), &mut len) };
        let needed = len as usize / GID_BYTES;
        if rc == 0 {
            groups.truncate(needed);
            return Ok(groups);
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            // Too small: `len` now holds the size needed (at most NGROUPS_MAX gids).
            Some(libc::ERANGE) if needed > groups.len() => groups.resize(needed, 0),
            Some(libc::ENOPROTOOPT) => return Ok(Vec::new()),
            _ => return Err(EngineError::from_io("reading peer groups (SO_PEERGROUPS)", &error)),
        }
    }
}

#[cfg(target_os = "macos")]
pub fn peer_credentials(fd: i32) -> EngineResult<PeerCredentials> {
    let (mut uid, mut gid) = (0 as libc::uid_t, 0 as libc::gid_t);
    // SAFETY: out-pointers to two locals.
    if unsafe { libc::getpeereid(fd, &mut uid, &mut gid) } != 0 {
        return Err(EngineError::from_io("reading peer credentials (getpeereid)", &std::io::Error::last_os_error()));
    }
    let mut pid: libc::pid_t = 0;
    let mut len = std::mem::size_of::<libc::pid_t>() as libc::socklen_t;
    // SAFETY: `pid` is a writable pid_t and `len` holds its size. Failure leaves pid at 0.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_LOCAL, libc::LOCAL_PEERPID, (&mut pid as *mut libc::pid_t).cast(), &mut len) };
    // SAFETY: a zeroed xucred is valid; `len` holds its size. Failure leaves no groups.
    let mut cred: libc::xucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::xucred>() as libc::socklen_t;
    let rc_cred = unsafe { libc::getsockopt(fd, libc::SOL_LOCAL, libc::LOCAL_PEERCRED, (&mut cred as *mut libc::xucred).cast(), &mut len) };
    let count = if rc_cred == 0 { (cred.cr_ngroups.max(0) as usize).min(cred.cr_groups.len()) } else { 0 };
    Ok(PeerCredentials { uid, gid, pid: if rc == 0 { pid } else { 0 }, groups: cred.cr_groups[..count].to_vec() })
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn peer_credentials(_fd: i32) -> EngineResult<PeerCredentials> {
    Err(EngineError::invalid("peer credentials are not supported on this platform"))
}

/// Raises the nice value of every thread of this process named `name` to `nice` (never lowers
/// it: a thread already nicer keeps its value). Linux only (a thread is a task under
/// /proc/self/task, and setpriority on a task id sets that thread alone); elsewhere nothing.
/// Best effort: returns the ids of the threads named `name` that now run at `nice` or nicer.
pub fn nice_threads_named(name: &str, nice: i32) -> Vec<libc::id_t> {
    #[cfg(target_os = "linux")]
    {
        let mut done = Vec::new();
        for tid in thread_ids() {
            if !thread_is_named(tid, name) {
                continue;
            }
            // SAFETY: plain syscalls on a task id; a task that ended meanwhile fails with ESRCH.
            let ok = unsafe {
                *libc::__errno_location() = 0;
                let current = libc::getpriority(libc::PRIO_PROCESS, tid);
                *libc::__errno_location() == 0 && (current >= nice || libc::setpriority(libc::PRIO_PROCESS, tid, nice) == 0)
            };
            if ok {
                done.push(tid);
            }
        }
        done
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (name, nice);
        Vec::new()
    }
}

/// The ids of this process's threads (Linux task ids, from /proc/self/task); empty elsewhere
/// or if /proc cannot be read.
pub fn thread_ids() -> Vec<libc::id_t> {
    #[cfg(target_os = "linux")]
    {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
        tasks.flatten().filter_map(|task| task.file_name().to_str().and_then(|t| t.parse().ok())).collect()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

/// Whether thread `tid` of this process exists (Linux; false elsewhere).
pub fn thread_exists(tid: libc::id_t) -> bool {
    cfg!(target_os = "linux") && Path::new(&format!("/proc/self/task/{tid}")).exists()
}

/// Whether thread `tid` of this process exists and is named `name` (Linux; false elsewhere).
pub fn thread_is_named(tid: libc::id_t, name: &str) -> bool {
    thread_name(tid).is_some_and(|comm| comm == name)
}

/// The name of thread `tid` of this process; None if it cannot be read (the thread ended, or
/// reading failed, e.g. out of descriptors) or off Linux.
pub fn thread_name(tid: libc::id_t) -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok().map(|comm| comm.trim_end().to_owned())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = tid;
        None
    }
}

/// The process's soft RLIMIT_NOFILE: how many descriptors it may hold open at once (Node raises
/// it to the hard limit at startup). `u64::MAX` when unlimited. The daemon splits it between
/// client connections and the engine's files (daemon/descriptors.ts).
pub fn open_files_limit() -> EngineResult<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(EngineError::from_io("getrlimit(RLIMIT_NOFILE)", &std::io::Error::last_os_error()));
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux and macOS, not on every Unix
    Ok(if limit.rlim_cur == libc::RLIM_INFINITY { u64::MAX } else { limit.rlim_cur as u64 })
}

/// Sends `state` (e.g. "READY=1") to systemd's notification socket. Ok(false) when there is
/// no NOTIFY_SOCKET (not under systemd), an IO_ERROR when the datagram could not be sent.
pub fn sd_notify(state: &str) -> EngineResult<bool> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else { return Ok(false) };
    let target = target.to_string_lossy().into_owned();
    send_notify(&target, state.as_bytes())
        .map(|()| true)
        .map_err(|e| EngineError::from_io(&format!("sd_notify to {target}"), &e))
}

fn send_notify(target: &str, payload: &[u8]) -> std::io::Result<()> {
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    if let Some(name) = target.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            socket.send_to_addr(payload, &addr)?;
            return Ok(());
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "abstract sockets are Linux-only"));
        }
    }
    socket.send_to(payload, target)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Security review: the lock file was opened through a symlink planted under its name, and
    // its target truncated and given the daemon's pid.
    #[test]
    fn lock_file_is_never_opened_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(LOCK_FILE_NAME)).unwrap();
        assert!(DirLock::acquire(dir.path()).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn lock_is_exclusive_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = DirLock::acquire(dir.path()).unwrap();
        let second = DirLock::acquire(dir.path());
        assert_eq!(second.err().map(|e| e.code()), Some("LOCKED"));
        first.release();
        assert!(DirLock::acquire(dir.path()).is_ok());
    }

    #[test]
    fn peer_credentials_of_a_socketpair_are_ours() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let cred = peer_credentials(a.as_raw_fd()).unwrap();
        // SAFETY: plain libc getters.
        assert_eq!(cred.uid, unsafe { libc::getuid() });
        assert_eq!(cred.gid, unsafe { libc::getgid() });
        // SAFETY: getgroups(0, NULL) counts; the second call fills a buffer of that size.
        let mut ours: Vec<libc::gid_t> = vec![0; unsafe { libc::getgroups(0, std::ptr::null_mut()) } as usize];
        let n = unsafe { libc::getgroups(ours.len() as i32, ours.as_mut_ptr()) };
        ours.truncate(n as usize);
        let mut theirs = cred.groups.clone();
        theirs.sort_unstable();
        ours.sort_unstable();
        #[cfg(target_os = "linux")]
        assert_eq!(theirs, ours, "the peer's supplementary groups are ours");
        #[cfg(target_os = "macos")]
        assert!(ours.iter().all(|g| theirs.contains(g) || theirs.len() == 16), "{theirs:?} {ours:?}");
    }

    #[test]
    fn sd_notify_reaches_a_listening_datagram_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        send_notify(path.to_str().unwrap(), b"READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
