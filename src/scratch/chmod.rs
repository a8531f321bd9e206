//! Changing the mode of a scratch entry by name: without opening it for I/O and without
//! following a symlink.
//!
//! `fchmod` needs a descriptor, but opening a socket answers `ENXIO`, opening a FIFO for
//! writing blocks or fails, and an unprivileged daemon cannot open its user's mode-000 file;
//! `chmod` must work on all of them. Linux's `fchmodat` ignores `AT_SYMLINK_NOFOLLOW` (before
//! `fchmodat2`, 6.6), and following is what a user's symlink must never get from the daemon.
//! So on Linux the entry is opened `O_PATH | O_NOFOLLOW` (no I/O, works on every kind; a
//! symlink is then the link itself, and refused), and its `/proc/self/fd` entry is changed:
//! that names the inode the descriptor holds, not a path anyone can swap. Without `/proc`,
//! the entry is opened read-only and non-blocking for `fchmod`, which covers all but sockets.
//! Elsewhere `fchmodat(AT_SYMLINK_NOFOLLOW)` does it in one call.

use rustix::fs::Mode;
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fs::File;

/// Set the permission bits (with setuid, setgid, sticky) of `name` in `dir`. `EOPNOTSUPP`
/// for a symlink, whose mode means nothing.
pub fn chmod_at(dir: &File, name: &OsStr, mode: u32) -> Result<(), Errno> {
    backend::chmod_at(dir, name, Mode::from_raw_mode((mode & 0o7777) as _))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod backend {
    use rustix::fs::{FileType, Mode, OFlags, openat};
    use rustix::io::Errno;
    use std::ffi::OsStr;
    use std::fs::File;
    use std::os::fd::AsRawFd;

    pub fn chmod_at(dir: &File, name: &OsStr, mode: Mode) -> Result<(), Errno> {
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = openat(dir, name, flags, Mode::empty())?;
        if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) == FileType::Symlink {
            return Err(Errno::OPNOTSUPP);
        }
        let by_fd = format!("/proc/self/fd/{}", fd.as_raw_fd());
        match rustix::fs::chmod(by_fd.as_str(), mode) {
            // No /proc here: the descriptor way, for what can be opened without blocking.
            Err(Errno::NOENT) => {
                let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let f = openat(dir, name, flags | OFlags::NOCTTY, Mode::empty())?;
                rustix::fs::fchmod(&f, mode)
            }
            r => r,
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod backend {
    use rustix::fs::{AtFlags, Mode};
    use rustix::io::Errno;
    use std::ffi::OsStr;
    use std::fs::File;

    pub fn chmod_at(dir: &File, name: &OsStr, mode: Mode) -> Result<(), Errno> {
        rustix::fs::chmodat(dir, name, mode, AtFlags::SYMLINK_NOFOLLOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Sockets, FIFOs and files change mode by name; a symlink is refused and its target
    /// keeps its mode.
    #[test]
    fn every_kind_but_a_symlink_changes_mode_and_no_symlink_is_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let at = |n: &str| tmp.path().join(n);
        let _sock = std::os::unix::net::UnixListener::bind(at("sock")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(at("fifo"))
            .status();
        assert!(made.unwrap().success());
        std::fs::write(at("file"), "x").unwrap();
        std::os::unix::fs::symlink(at("file"), at("link")).unwrap();
        let dir = File::open(tmp.path()).unwrap();
        for name in ["sock", "fifo", "file"] {
            chmod_at(&dir, OsStr::new(name), 0o4710).unwrap();
            let mode = std::fs::symlink_metadata(at(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o7777, 0o4710, "{name}");
        }
        assert_eq!(
            chmod_at(&dir, OsStr::new("link"), 0o777),
            Err(Errno::OPNOTSUPP)
        );
        let mode = std::fs::metadata(at("file")).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o4710);
    }
}
