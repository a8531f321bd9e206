//! The one door for `unsafe` and for the few system calls rustix does not cover.

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
