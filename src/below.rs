//! Opening what lies below a directory by its descriptor, so that a tree deeper than
//! `PATH_MAX` (4096 bytes of path) commits and checks out like any other.
//!
//! The kernel takes at most `PATH_MAX` bytes of path in one call, so a relative path is
//! handed over whole when it is short (the common case: one `openat`, the kernel's own path
//! walk) and in pieces of directories when it is not, each opened `O_NOFOLLOW` from the one
//! before. Callers that must not be led elsewhere by a directory swapped for a symlink check
//! what they opened against what they walked (device and inode), as the commit does.

use rustix::fs::{Mode, OFlags, openat};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The longest relative path given to the kernel in one call (`PATH_MAX` with room to spare).
const DIRECT: usize = 4000;

/// Open `rel` (relative, empty for `root` itself) below `root` with `flags`.
pub fn open(root: &File, rel: &Path, flags: OFlags) -> io::Result<File> {
    let bytes = rel.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Ok(openat(root, ".", flags, Mode::empty())?.into());
    }
    if bytes.len() < DIRECT {
        return Ok(openat(root, rel, flags, Mode::empty())?.into());
    }
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    let dir = open_long_dir(root, parent)?;
    Ok(openat(&dir, name, flags, Mode::empty())?.into())
}

/// Open the directory `rel` below `root`.
pub fn open_dir(root: &File, rel: &Path) -> io::Result<File> {
    open(root, rel, DIR_FLAGS)
}

/// A long directory path, a run of components shorter than [`DIRECT`] at a time.
fn open_long_dir(root: &File, rel: &Path) -> io::Result<File> {
    let mut dir: File = openat(root, ".", DIR_FLAGS, Mode::empty())?.into();
    let mut chunk: Vec<u8> = Vec::new();
    for part in rel.components() {
        let name = part.as_os_str().as_bytes();
        if !chunk.is_empty() && chunk.len() + 1 + name.len() >= DIRECT {
            dir = openat(&dir, OsStr::from_bytes(&chunk), DIR_FLAGS, Mode::empty())?.into();
            chunk.clear();
        }
        if !chunk.is_empty() {
            chunk.push(b'/');
        }
        chunk.extend_from_slice(name);
    }
    if !chunk.is_empty() {
        dir = openat(&dir, OsStr::from_bytes(&chunk), DIR_FLAGS, Mode::empty())?.into();
    }
    Ok(dir)
}
