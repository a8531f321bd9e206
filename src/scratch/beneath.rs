//! Opening directories beneath the scratch root without following a single symlink.
//!
//! A user of an editable view can make any symlink inside scratch (`link -> /etc`), and can
//! rename a directory away and put a symlink in its place while the daemon still holds the old
//! directory's path. So the daemon never lets the kernel walk a scratch path with symlink
//! following: on Linux 5.6+ one `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` (the
//! kernel refuses `..` escapes and every symlink, magic links included); elsewhere, or where
//! `openat2` is filtered, one `openat(O_NOFOLLOW | O_DIRECTORY)` per component, starting from
//! the root's descriptor. Either way a symlink anywhere on the path is an error (`ELOOP` or
//! `ENOTDIR`), never a hop.

use rustix::fs::{Mode, OFlags, openat};
use rustix::io::Errno;
use std::fs::File;
use std::io;
use std::path::{Component, Path};

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The directory at `rel` (relative, only normal components) beneath `root`.
pub(super) fn open_dir(root: &File, rel: &Path) -> io::Result<File> {
    check_relative(rel)?;
    if rel.as_os_str().is_empty() {
        return Ok(openat(root, ".", DIR_FLAGS, Mode::empty())?.into());
    }
    match backend::open_dir(root, rel) {
        Some(done) => done,
        None => walk(root, rel),
    }
}

/// The portable way: one `openat(O_NOFOLLOW | O_DIRECTORY)` per component.
fn walk(root: &File, rel: &Path) -> io::Result<File> {
    let mut dir = openat(root, ".", DIR_FLAGS, Mode::empty())?;
    for part in rel.components() {
        dir = openat(&dir, part.as_os_str(), DIR_FLAGS, Mode::empty())?;
    }
    Ok(dir.into())
}

/// Open `name` in `dir` as a directory, without following a symlink.
pub(super) fn open_child_dir(dir: &File, name: &std::ffi::OsStr) -> io::Result<File> {
    Ok(openat(dir, name, DIR_FLAGS, Mode::empty())?.into())
}

/// Scratch paths come from the view's tree, never from a user's string; anything but plain
/// names is a bug upstream, refused rather than resolved.
fn check_relative(rel: &Path) -> io::Result<()> {
    if rel.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(())
    } else {
        Err(Errno::INVAL.into())
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod backend {
    use super::DIR_FLAGS;
    use rustix::fs::{Mode, ResolveFlags, openat2};
    use rustix::io::Errno;
    use std::fs::File;
    use std::io;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

    /// Cleared once the kernel (or a seccomp filter) answers `ENOSYS`/`EPERM` to `openat2`.
    static HAVE_OPENAT2: AtomicBool = AtomicBool::new(true);

    /// `None`: fall back to the component walk.
    pub fn open_dir(root: &File, rel: &Path) -> Option<io::Result<File>> {
        if !HAVE_OPENAT2.load(Relaxed) {
            return None;
        }
        let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        // EAGAIN: a concurrent rename somewhere on the file system made the kernel unsure the
        // walk stayed beneath; it asks to retry. After a few tries the component walk is as good.
        for _ in 0..4 {
            match openat2(root, rel, DIR_FLAGS, Mode::empty(), how) {
                Ok(fd) => return Some(Ok(fd.into())),
                Err(Errno::AGAIN) => continue,
                Err(Errno::NOSYS | Errno::PERM) => {
                    HAVE_OPENAT2.store(false, Relaxed);
                    return None;
                }
                Err(e) => return Some(Err(e.into())),
            }
        }
        None
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod backend {
    use std::fs::File;
    use std::io;
    use std::path::Path;

    pub fn open_dir(_root: &File, _rel: &Path) -> Option<io::Result<File>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways refuse a symlink anywhere on the path, whatever it points at.
    #[test]
    fn symlinks_are_never_followed_by_either_way() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, outside) = (tmp.path().join("root"), tmp.path().join("outside"));
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        std::os::unix::fs::symlink("a", root.join("rel")).unwrap();
        std::os::unix::fs::symlink("../..", root.join("a/up")).unwrap();
        let root = File::open(&root).unwrap();
        for way in [open_dir as fn(&File, &Path) -> io::Result<File>, walk] {
            assert!(way(&root, Path::new("a/b")).is_ok());
            for bad in ["abs", "rel", "rel/b", "a/up", "a/up/outside"] {
                let err = way(&root, Path::new(bad)).unwrap_err().raw_os_error();
                assert!(
                    matches!(err, Some(libc::ELOOP | libc::ENOTDIR)),
                    "{bad}: {err:?}"
                );
            }
        }
        assert!(open_dir(&root, Path::new("a/../a")).is_err());
        assert!(open_dir(&root, Path::new("/etc")).is_err());
    }
}
