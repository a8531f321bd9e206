//! Linux: `FICLONE` (btrfs, XFS, bcachefs, OCFS2, overlayfs on those) and `copy_file_range`
//! (which the kernel may itself serve by sharing extents, or by a server-side copy on NFS).

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;

/// Make `dst` share all of `src`'s data blocks, copy-on-write.
pub fn clone(dst: &File, src: &File) -> io::Result<()> {
    rustix::fs::ioctl_ficlone(dst, src).map_err(Into::into)
}

/// Copy up to `len` bytes in the kernel between explicit offsets, which it advances.
pub fn copy_range(
    src: &File,
    off_in: &mut u64,
    dst: &File,
    off_out: &mut u64,
    len: usize,
) -> io::Result<usize> {
    rustix::fs::copy_file_range(src, Some(off_in), dst, Some(off_out), len).map_err(Into::into)
}

/// Cloning to a new name: not how Linux does it (it clones between open files, [`clone`]).
pub fn clone_new(_src: &File, _dir: BorrowedFd, _name: &CStr) -> Option<io::Result<()>> {
    None
}
