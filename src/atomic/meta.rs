//! Carry an old file's metadata over to its replacement: owner and group, extended attributes
//! (POSIX ACLs and security labels are xattrs on Linux), mode with setuid/setgid/sticky.
//!
//! The order matters: `fchown` clears setuid/setgid and file capabilities, and setting an ACL
//! rewrites the group bits, so owner first, then xattrs, then the mode.

use super::target::Existing;
use rustix::fs::{Gid, Mode, RawMode, Uid, fchmod, fchown, fstat};
use std::fs::File;

/// Apply `old`'s owner, xattrs and mode to `new`. Returns what could not be kept, for a
/// warning: an unprivileged user cannot give a file away, some file systems take no xattrs.
pub fn inherit(new: &File, old: &Existing) -> Vec<String> {
    let mut lost = Vec::new();
    let (uid, gid) = (old.stat.st_uid, old.stat.st_gid);
    let ours = fstat(new)
        .map(|st| (st.st_uid, st.st_gid))
        .unwrap_or((u32::MAX, u32::MAX));
    if ours != (uid, gid) {
        let owner = Some(Uid::from_raw(uid));
        let group = Some(Gid::from_raw(gid));
        if fchown(new, owner, group).is_err() {
            // Not root: we may still keep the group if we are a member of it.
            if fchown(new, None, group).is_err() {
                lost.push(format!("owner {uid}:{gid}"));
            } else if ours.0 != uid {
                lost.push(format!("owner {uid}"));
            }
        }
    }
    lost.extend(xattr::copy(new, &old.file));
    if fchmod(
        new,
        Mode::from_raw_mode((old.stat.st_mode & 0o7777) as RawMode),
    )
    .is_err()
    {
        lost.push(format!("mode {:o}", old.stat.st_mode & 0o7777));
    }
    lost
}

#[cfg(zkit_xattr)]
pub(super) mod xattr {
    use rustix::fs::{XattrFlags, fgetxattr, flistxattr, fsetxattr};
    use rustix::io::Errno;
    use std::ffi::OsStr;
    use std::fs::File;
    use std::os::unix::ffi::OsStrExt;

    pub fn copy(new: &File, old: &File) -> Vec<String> {
        let mut lost = Vec::new();
        let names = match list(old) {
            Ok(names) => names,
            Err(Errno::OPNOTSUPP) => return lost,
            Err(_) => return vec!["extended attributes".into()],
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
            if copied.is_err() {
                lost.push(format!("xattr {}", name.to_string_lossy()));
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
    pub fn copy(_new: &std::fs::File, _old: &std::fs::File) -> Vec<String> {
        Vec::new()
    }
}
