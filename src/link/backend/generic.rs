//! Elsewhere: no clone between open files and no in-kernel copy, so the callers fall back to
//! read/write. (macOS's `fclonefileat` makes its own destination and does not fit between two
//! open files.)

use std::fs::File;
use std::io;

pub fn clone(_dst: &File, _src: &File) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::ENOTSUP))
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
