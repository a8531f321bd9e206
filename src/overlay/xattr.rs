//! The `trusted.overlay.*` extended attributes, by directory descriptor and name (no joined
//! paths: a tree deeper than `PATH_MAX` reads like any other, and a symlink is never followed).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
use {std::os::fd::AsRawFd, std::os::unix::ffi::OsStrExt, std::path::PathBuf};

/// A regular file whose data is in a lower layer; the upper or meta file is sparse.
pub const METACOPY: &str = "trusted.overlay.metacopy";
/// Where a metacopy file's data or a renamed directory's lower content is: an absolute path
/// from a lower layer's root, or a plain name in the same lower parent directory.
pub const REDIRECT: &str = "trusted.overlay.redirect";
/// `y`: the directory hides what lower layers have below it. `x`: it holds xattr whiteouts.
pub const OPAQUE: &str = "trusted.overlay.opaque";
/// An empty regular file carrying it is a whiteout (the form unprivileged layers use).
pub const WHITEOUT: &str = "trusted.overlay.whiteout";
/// Every attribute overlayfs reads starts with this; none of them is ever part of a layer.
pub const PREFIX: &[u8] = b"trusted.overlay.";

/// `/proc/self/fd/N/NAME`: a path to `name` in the open directory `dir` that the kernel
/// resolves from the descriptor, so the `l*xattr` calls never follow a symlink on the way.
#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
fn proc_path(dir: &File, name: &OsStr) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
}

/// The value of attribute `attr` on `name` in `dir` (`.` for `dir` itself; a symlink is not
/// followed), `None` when it has none (or its file system keeps no xattrs).
#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
pub fn get(dir: &File, name: &OsStr, attr: &str) -> io::Result<Option<Vec<u8>>> {
    let path = proc_path(dir, name);
    let read = |buf: &mut Vec<u8>| match name.as_bytes() {
        // The descriptor's own link in /proc is a symlink: ask the descriptor.
        b"." => rustix::fs::fgetxattr(dir, attr, rustix::buffer::spare_capacity(buf)),
        _ => rustix::fs::lgetxattr(&path, attr, rustix::buffer::spare_capacity(buf)),
    };
    let mut buf = Vec::with_capacity(256);
    match read(&mut buf) {
        Ok(_) => Ok(Some(buf)),
        Err(rustix::io::Errno::NODATA) | Err(rustix::io::Errno::OPNOTSUPP) => Ok(None),
        Err(rustix::io::Errno::RANGE) => {
            let mut buf = Vec::with_capacity(64 * 1024);
            read(&mut buf)?;
            Ok(Some(buf))
        }
        Err(e) => Err(e.into()),
    }
}

/// Set attribute `attr` on an open file or directory.
#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
pub fn set(file: &File, attr: &str, value: &[u8]) -> io::Result<()> {
    rustix::fs::fsetxattr(file, attr, value, rustix::fs::XattrFlags::empty())?;
    Ok(())
}

// The BSDs keep extended attributes in another API (extattr), and have no overlayfs to read
// these ones: a tree there carries none of them.
#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
pub fn get(_dir: &File, _name: &OsStr, _attr: &str) -> io::Result<Option<Vec<u8>>> {
    Ok(None)
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
pub fn set(_file: &File, _attr: &str, _value: &[u8]) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}
