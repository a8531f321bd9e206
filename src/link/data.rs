//! Data between two open files: a clone where the file system shares blocks, else an in-kernel
//! copy, else read/write. Never an inode shared, never a sync.

use super::Tier;
use super::backend;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Read/write buffer when the kernel will not copy for us; under malloc's mmap threshold, so
/// that each small file does not cost an mmap/munmap pair.
const BUF: usize = 64 * 1024;
/// One `copy_file_range` call asks for this much; the kernel caps it anyway.
const RANGE: usize = 1 << 30;

/// Give the empty file `dst` the content of `src`: `FICLONE` where the file system shares
/// blocks (XFS, btrfs, bcachefs), else `copy_file_range`, else read/write. Returns the tier
/// that served. `dst` must be empty and open for writing; its metadata is not touched, and
/// nothing is synced. This is the store's ingest and the editable views' copy-up.
pub fn clone_or_copy(src: &File, dst: &File) -> io::Result<Tier> {
    if try_clone(src, dst)? {
        return Ok(Tier::Reflink);
    }
    let size = src.metadata()?.len();
    copy(src, dst, size)?;
    Ok(Tier::Copy)
}

/// Give the empty file `dst` the content of `src` by `FICLONE` alone: `false` when the file
/// system (pair) or this file refuses one, and the caller copies instead.
pub fn try_clone(src: &File, dst: &File) -> io::Result<bool> {
    match backend::clone(dst, src) {
        Ok(()) => Ok(true),
        Err(e) if clone_refusal(&e).is_some() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Why a clone was refused, when the refusal means "use another tier" rather than an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The file system (pair) has no reflinks: true for every file on it.
    NoReflinks,
    /// This file cannot be cloned (EINVAL: e.g. a swap file, mismatched inode flags).
    ThisFile,
}

pub(super) fn clone_refusal(e: &io::Error) -> Option<Refusal> {
    match e.raw_os_error()? {
        // ENOTTY: a file system without the ioctl at all; EXDEV: two file systems.
        libc::EOPNOTSUPP | libc::ENOTTY | libc::EXDEV | libc::ENOSYS => Some(Refusal::NoReflinks),
        #[allow(unreachable_patterns)] // ENOTSUP == EOPNOTSUPP on Linux, not on macOS
        libc::ENOTSUP => Some(Refusal::NoReflinks),
        libc::EINVAL => Some(Refusal::ThisFile),
        _ => None,
    }
}

/// Copy `src` (expected `size` bytes) into the empty `dst` from offset 0; returns the bytes
/// written. The kernel copies where it can; a file that reports no size (procfs) or that
/// shrinks is finished by read/write to its real end.
pub(super) fn copy(src: &File, dst: &File, size: u64) -> io::Result<u64> {
    let (mut off_in, mut off_out) = (0u64, 0u64);
    while off_in < size {
        let want = usize::try_from(size - off_in).unwrap_or(RANGE).min(RANGE);
        match backend::copy_range(src, &mut off_in, dst, &mut off_out, want) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // No in-kernel copy for this pair of files (old kernels across file systems,
            // special files, FUSE without support): read/write takes over where it stopped.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(
                        libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP | libc::EBADF
                    )
                ) =>
            {
                break;
            }
            Err(e) => return Err(e),
        }
    }
    if off_in < size || size == 0 {
        read_write(src, off_in, dst, off_out)
    } else {
        Ok(off_out)
    }
}

fn read_write(src: &File, mut off_in: u64, dst: &File, mut off_out: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match src.read_at(&mut buf, off_in) {
            Ok(0) => return Ok(off_out),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.write_all_at(&buf[..n], off_out)?;
        off_in += n as u64;
        off_out += n as u64;
    }
}
