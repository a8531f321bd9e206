//! Elsewhere (FreeBSD and the rest): no clone and no in-kernel copy between open files, so the
//! callers fall back to read/write.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;

pub fn clone(_dst: &File, _src: &File) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}

pub fn clone_new(_src: &File, _dir: BorrowedFd, _name: &CStr) -> Option<io::Result<()>> {
    None
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
