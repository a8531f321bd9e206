//! macOS: APFS clones a file into a new name (`fclonefileat`), which suits the linker (whose
//! destination must not exist) but not two files already open (`clone` refuses, so
//! [`crate::link::clone_or_copy`] copies there). No in-kernel copy between open files.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

pub fn clone(_dst: &File, _src: &File) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::ENOTSUP))
}

/// Create `name` in `dir` sharing `src`'s blocks; ENOTSUP off APFS, EXDEV across volumes.
pub fn clone_new(src: &File, dir: BorrowedFd, name: &CStr) -> Option<io::Result<()>> {
    Some(crate::sys::fclonefileat(src.as_fd(), dir, name))
}

pub fn copy_range(
    _src: &File,
    _off_in: &mut u64,
    _dst: &File,
    _off_out: &mut u64,
    _len: usize,
) -> io::Result<usize> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}
