//! Carry an old file's metadata over to its replacement: owner and group, extended attributes
//! (POSIX ACLs and security labels are xattrs on Linux), mode with setuid/setgid/sticky.
//!
//! The order matters: `fchown` clears setuid/setgid and file capabilities, and setting an ACL
//! rewrites the group bits, so owner first, then xattrs, then the mode.
//!
//! Whatever cannot be carried over is returned, with its errno; [`super::replace`] fails before
//! the rename unless the caller allowed the loss, and even then [`never_wider`] makes sure the
//! replacement grants no permission bit the old file did not.

use super::target::Existing;
use rustix::fs::{Gid, Mode, RawMode, Uid, fchmod, fchown, fstat};
use std::fs::File;
use std::io;

/// One piece of the old file's metadata that its replacement could not be given.
#[derive(Debug)]
pub struct Lost {
    /// What, in words: `owner 65534:65534`, `mode 600`, `xattr user.x`.
    pub what: String,
    pub error: io::Error,
}

impl Lost {
    fn new(what: impl Into<String>, error: impl Into<io::Error>) -> Self {
        Lost {
            what: what.into(),
            error: error.into(),
        }
    }
}

/// Apply `old`'s owner, xattrs and mode to `new`; returns what could not be kept (an
/// unprivileged user cannot give a file away, some file systems take no xattrs).
pub fn inherit(new: &File, old: &Existing) -> Vec<Lost> {
    let mut lost = Vec::new();
    let (uid, gid) = (old.stat.st_uid, old.stat.st_gid);
    match fstat(new) {
        Ok(st) if (st.st_uid, st.st_gid) == (uid, gid) => {}
        Ok(st) => {
            let owner = Some(Uid::from_raw(uid));
            let group = Some(Gid::from_raw(gid));
            if let Err(e) = fchown(new, owner, group) {
                // Not root: we may still keep the group if we are a member of it.
                if fchown(new, None, group).is_err() {
                    lost.push(Lost::new(format!("owner {uid}:{gid}"), e));
                } else if st.st_uid != uid {
                    lost.push(Lost::new(format!("owner {uid}"), e));
                }
            }
        }
        Err(e) => lost.push(Lost::new(format!("owner {uid}:{gid}"), e)),
    }
    lost.extend(xattr::copy(new, &old.file));
    let mode = old.stat.st_mode & 0o7777;
    if let Err(e) = fchmod(new, Mode::from_raw_mode(mode as RawMode)) {
        lost.push(Lost::new(format!("mode {mode:o}"), e));
    }
    lost
}

/// Make sure `new` grants nothing `old` does not: a replacement whose mode could not be set
/// must not come out world-readable where the old file was private. Narrows the mode when it
/// is wider; fails when it cannot.
pub fn never_wider(new: &File, old: &Existing) -> Result<(), Lost> {
    let allowed = old.stat.st_mode & 0o7777;
    let now = fstat(new).map_err(|e| Lost::new("mode", e))?.st_mode & 0o7777;
    if now & !allowed == 0 {
        return Ok(());
    }
    let narrowed = now & allowed;
    fchmod(new, Mode::from_raw_mode(narrowed as RawMode))
        .map_err(|e| Lost::new(format!("mode {allowed:o} (it would be {now:o})"), e))
}

#[cfg(zkit_xattr)]
pub(super) mod xattr {
    use super::Lost;
    use rustix::fs::{XattrFlags, fgetxattr, flistxattr, fsetxattr};
    use rustix::io::Errno;
    use std::ffi::OsStr;
    use std::fs::File;
    use std::os::unix::ffi::OsStrExt;

    pub fn copy(new: &File, old: &File) -> Vec<Lost> {
        let mut lost = Vec::new();
        let names = match list(old) {
            Ok(names) => names,
            Err(Errno::OPNOTSUPP) => return lost,
            Err(e) => return vec![Lost::new("extended attributes", e)],
        };
        for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let name = OsStr::from_bytes(name);
            let copied = get(old, name).and_then(|value| {
                // A file system may already have given the new file the same value (a security
                // label, say); only a real difference counts as lost.
                if get(new, name).is_ok_and(|v| v == value) {
                    return Ok(());
                }
                fsetxattr(new, name, &value, XattrFlags::empty())
            });
            if let Err(e) = copied {
                lost.push(Lost::new(format!("xattr {}", name.to_string_lossy()), e));
            }
        }
        lost
    }

    /// Query size, then read; retry when the value grew in between (ERANGE).
    fn list(file: &File) -> Result<Vec<u8>, Errno> {
        loop {
            let mut buf = vec![0u8; rustix::fs::flistxattr_query(file)?];
            match flistxattr(file, &mut buf[..]) {
                Ok(n) => return Ok(truncated(buf, n)),
                Err(Errno::RANGE) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn get(file: &File, name: &OsStr) -> Result<Vec<u8>, Errno> {
        loop {
            let mut buf = vec![0u8; rustix::fs::fgetxattr_query(file, name)?];
            match fgetxattr(file, name, &mut buf[..]) {
                Ok(n) => return Ok(truncated(buf, n)),
                Err(Errno::RANGE) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn truncated(mut buf: Vec<u8>, n: usize) -> Vec<u8> {
        buf.truncate(n);
        buf
    }
}

/// No xattr(2) family here (FreeBSD's extattr(2) is another interface): nothing to copy.
#[cfg(not(zkit_xattr))]
pub(super) mod xattr {
    pub fn copy(_new: &std::fs::File, _old: &std::fs::File) -> Vec<super::Lost> {
        Vec::new()
    }
}
