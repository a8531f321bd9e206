//! The one door for `unsafe` and for the few system calls rustix does not cover.

pub mod mountinfo;
pub mod signals;

use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::io;

/// Start writing back and wait for a file's dirty pages, without a metadata sync.
///
/// Used before a temporary file gets its name, so that the `fsync` after `linkat` (see
/// [`crate::atomic`]) has almost nothing left to do and the window in which a named temporary
/// exists stays short.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn flush_data(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: sync_file_range takes a file descriptor we own for the duration of the call and
    // plain integers; it touches no memory of ours.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn flush_data(_file: &File) -> io::Result<()> {
    Ok(())
}

/// 64 random bits for unique names. `RandomState` is seeded from the OS's random source, which
/// saves a dependency; uniqueness is still enforced by `O_EXCL`.
pub fn random_u64() -> u64 {
    RandomState::new().hash_one(std::process::id())
}

/// Whether [`sync_file_system`] can make a batch durable with one call.
pub const HAS_SYNCFS: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Write back every dirty page and inode of the file system that holds `fd`: one `syncfs`
/// instead of an `fsync` per file when a batch of files must become durable together.
/// `Ok(false)` where there is no `syncfs`: the caller then syncs each file itself.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn sync_file_system(fd: &File) -> io::Result<bool> {
    rustix::fs::syncfs(fd)?;
    Ok(true)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn sync_file_system(_fd: &File) -> io::Result<bool> {
    Ok(false)
}

/// Create `name` in `dir` as a clone of the open file `src`, sharing its blocks (APFS).
#[cfg(target_os = "macos")]
pub fn fclonefileat(
    src: std::os::fd::BorrowedFd,
    dir: std::os::fd::BorrowedFd,
    name: &std::ffi::CStr,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: both descriptors are borrowed, so open for the whole call; `name` is a
    // NUL-terminated string that outlives it; flags 0 asks for nothing unusual.
    let rc = unsafe { libc::fclonefileat(src.as_raw_fd(), dir.as_raw_fd(), name.as_ptr(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What libproc knows about a process (macOS).
#[cfg(target_os = "macos")]
pub struct BsdInfo {
    pub ppid: u32,
    pub uid: u32,
    /// Start time in microseconds since the epoch.
    pub start_usec: u64,
}

#[cfg(target_os = "macos")]
pub fn bsdinfo(pid: u32) -> io::Result<BsdInfo> {
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: proc_pidinfo writes at most `size` bytes into `info`, a plain C struct we own;
    // a zeroed proc_bsdinfo is a valid value of it.
    let n = unsafe {
        libc::proc_pidinfo(
            pid as libc::c_int,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    if n != size {
        return Err(io::Error::last_os_error());
    }
    Ok(BsdInfo {
        ppid: info.pbi_ppid,
        uid: info.pbi_uid,
        start_usec: info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec,
    })
}

/// The uid of a Unix socket's peer (BSD and macOS `getpeereid`).
#[cfg(all(zkit_fuse, not(any(target_os = "linux", target_os = "android"))))]
pub fn peer_uid(stream: &std::os::unix::net::UnixStream) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut uid: libc::uid_t = 0;
    let mut gid: libc::gid_t = 0;
    // SAFETY: getpeereid writes two integers we own; the descriptor is borrowed for the call.
    let rc = unsafe { libc::getpeereid(stream.as_raw_fd(), &mut uid, &mut gid) };
    if rc == 0 {
        Ok(uid)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The signals that ask a server to shut down.
#[cfg(zkit_fuse)]
const TERMINATION: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

#[cfg(zkit_fuse)]
fn termination_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set we own; sigaddset takes valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in TERMINATION {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Block SIGINT, SIGTERM and SIGHUP in the calling thread, and so in every thread it starts
/// afterwards, so that [`wait_termination`] on one thread receives them instead of the default
/// action killing the process with a mount left behind.
#[cfg(zkit_fuse)]
pub fn block_termination() -> io::Result<()> {
    let set = termination_set();
    // SAFETY: a valid, initialised signal set; the old mask is not wanted.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Wait until one of the blocked termination signals arrives; returns its number.
#[cfg(zkit_fuse)]
pub fn wait_termination() -> i32 {
    let set = termination_set();
    let mut sig: libc::c_int = 0;
    // SAFETY: sigwait reads the set and writes one integer we own.
    while unsafe { libc::sigwait(&set, &mut sig) } != 0 {}
    sig
}

#[cfg(zkit_fuse)]
static FORWARD_TO: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// For `zmount run` while it waits for its command: SIGTERM and SIGHUP are passed on to the
/// process [`set_forward_target`] names (so `kill RUN` ends CMD, after which run still
/// unregisters and exits with CMD's status); SIGINT and SIGQUIT, which a terminal sends to the
/// whole foreground group, reach CMD by themselves and run survives them to clean up. These are
/// handlers, not ignored signals, so `exec` resets them and CMD starts with the defaults.
#[cfg(zkit_fuse)]
pub fn forward_termination() {
    extern "C" fn forward(sig: libc::c_int) {
        let pid = FORWARD_TO.load(std::sync::atomic::Ordering::SeqCst);
        if pid > 0 && (sig == libc::SIGTERM || sig == libc::SIGHUP) {
            // SAFETY: kill is async-signal-safe and takes plain integers.
            unsafe { libc::kill(pid, sig) };
        }
    }
    for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is "no flags, empty mask"; the handler only loads an
        // atomic and calls kill, both async-signal-safe.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = forward as *const () as libc::sighandler_t;
            act.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

/// The process SIGTERM and SIGHUP go to (see [`forward_termination`]).
#[cfg(zkit_fuse)]
pub fn set_forward_target(pid: u32) {
    FORWARD_TO.store(pid as i32, std::sync::atomic::Ordering::SeqCst);
}

/// The clock file timestamps are taken from, now: `(seconds, nanoseconds)`. A file changed
/// after this call gets an mtime and ctime no earlier than it.
///
/// Linux stamps files from the coarse real-time clock (multigrain timestamps are never earlier
/// than it), so reading that clock gives exactly the bound. Elsewhere, the precise clock less two
/// seconds: a safe bound for any timestamp granularity, at the price of rehashing files
/// changed in the last two seconds once more.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn file_clock_now() -> (i64, i64) {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    (t.tv_sec as i64, t.tv_nsec as i64)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn file_clock_now() -> (i64, i64) {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(std::time::Duration::from_secs(2));
    (since.as_secs() as i64, since.subsec_nanos() as i64)
}

/// Whether `fd` is a pipe; on Linux it is also widened to `size` bytes (F_SETPIPE_SZ), so a
/// writer can run ahead by that much instead of 64 KiB.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn widen_pipe(fd: impl std::os::fd::AsFd, size: usize) -> bool {
    // Fails (harmlessly) unless fd is a pipe.
    rustix::pipe::fcntl_setpipe_size(fd, size).is_ok()
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn widen_pipe(fd: impl std::os::fd::AsFd, _size: usize) -> bool {
    use rustix::fs::FileType;
    rustix::fs::fstat(fd).is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Fifo)
}

/// `mknodat(2)`: a FIFO (`S_IFIFO`), socket (`S_IFSOCK`) or device node (`S_IFCHR`/`S_IFBLK`
/// with `rdev`) called `name` in `dir`.
#[cfg(not(target_vendor = "apple"))]
pub fn mknodat(
    dir: &impl std::os::fd::AsFd,
    name: &std::ffi::CStr,
    kind: rustix::fs::FileType,
    mode: rustix::fs::Mode,
    rdev: u64,
) -> io::Result<()> {
    rustix::fs::mknodat(dir, name, kind, mode, rdev as _).map_err(io::Error::from)
}

/// `mknodat(2)` (macOS 13 and later; rustix does not wrap it there).
#[cfg(target_vendor = "apple")]
pub fn mknodat(
    dir: &impl std::os::fd::AsFd,
    name: &std::ffi::CStr,
    kind: rustix::fs::FileType,
    mode: rustix::fs::Mode,
    rdev: u64,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `name` is NUL-terminated and outlives the call; `dir` is an open descriptor.
    let rc = unsafe {
        libc::mknodat(
            dir.as_fd().as_raw_fd(),
            name.as_ptr(),
            kind.as_raw_mode() | mode.bits(),
            rdev as libc::dev_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Give the calling thread a mount namespace of its own (`unshare(CLONE_NEWNS)`), a copy of
/// the one it was in; children it starts from now on are in it too.
#[cfg(target_os = "linux")]
pub fn unshare_mount_namespace() -> io::Result<()> {
    // SAFETY: CLONE_NEWNS (which implies CLONE_FS) unshares no descriptor table, so no
    // thread can come to see descriptors it does not share; that is the only hazard the
    // function's contract names.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }?;
    Ok(())
}
