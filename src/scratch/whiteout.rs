//! How scratch records deletions: whiteouts and opaque directories, as AUFS and OCI image
//! layers spell them.
//!
//! - `.wh.NAME`, an empty regular file: NAME is deleted; lower layers' NAME is hidden.
//! - `.wh..wh..opq` inside a directory: the directory replaced a lower one; nothing of the lower
//!   directory shows through.
//!
//! Ordinary files make these survive any copy, tar or backup of scratch, and need no
//! privilege (overlayfs's 0/0 character devices need `CAP_MKNOD`). The price is that users may
//! not have names starting with `.wh.` ([`reserved`]), and that a lower name longer than
//! `NAME_MAX - 4` bytes cannot be whited out (`ENAMETOOLONG`).

use rustix::fs::{AtFlags, Mode, OFlags, openat, statat, unlinkat};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

pub const PREFIX: &[u8] = b".wh.";
pub const OPAQUE: &[u8] = b".wh..wh..opq";

/// The longest name a directory entry can have (Linux, macOS and the BSDs alike).
pub const NAME_MAX: usize = 255;

/// Whether a user-given name is reserved for scratch's own records.
pub fn reserved(name: &OsStr) -> bool {
    name.as_bytes().starts_with(PREFIX)
}

/// The whiteout file's name for `name`.
pub fn name_of(name: &OsStr) -> io::Result<OsString> {
    if PREFIX.len() + name.len() > NAME_MAX {
        return Err(Errno::NAMETOOLONG.into());
    }
    let mut out = PREFIX.to_vec();
    out.extend_from_slice(name.as_bytes());
    Ok(OsString::from_vec(out))
}

/// What a scratch directory entry is.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A name the user sees.
    Plain(&'a OsStr),
    /// A whiteout for this name.
    Whiteout(&'a OsStr),
    /// The directory's opaque marker.
    Opaque,
}

pub fn classify(name: &OsStr) -> Entry<'_> {
    let bytes = name.as_bytes();
    if bytes == OPAQUE {
        Entry::Opaque
    } else if let Some(hidden) = bytes.strip_prefix(PREFIX) {
        Entry::Whiteout(OsStr::from_bytes(hidden))
    } else {
        Entry::Plain(name)
    }
}

/// Record that `name` in `dir` is deleted. Idempotent.
pub fn add(dir: &File, name: &OsStr) -> io::Result<()> {
    touch(dir, &name_of(name)?)
}

/// Forget a whiteout; `true` if there was one.
pub fn remove(dir: &File, name: &OsStr) -> io::Result<bool> {
    let Ok(wh) = name_of(name) else {
        return Ok(false);
    };
    gone(unlinkat(dir, &wh, AtFlags::empty()))
}

pub fn exists(dir: &File, name: &OsStr) -> io::Result<bool> {
    let Ok(wh) = name_of(name) else {
        return Ok(false);
    };
    present(dir, &wh)
}

/// Mark `dir` as replacing the lower directory of the same path.
pub fn set_opaque(dir: &File) -> io::Result<()> {
    touch(dir, OsStr::from_bytes(OPAQUE))
}

pub fn is_opaque(dir: &File) -> io::Result<bool> {
    present(dir, OsStr::from_bytes(OPAQUE))
}

/// Remove the records (whiteouts, opaque marker) a directory holds, so that `rmdir` can take
/// it when the user sees it empty. Fails with `ENOTEMPTY` at the first plain name.
pub fn clear_records(dir: &File) -> io::Result<()> {
    let mut records = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        match classify(name) {
            Entry::Plain(_) => return Err(Errno::NOTEMPTY.into()),
            _ => records.push(name.to_owned()),
        }
    }
    for name in records {
        gone(unlinkat(dir, &name, AtFlags::empty()))?;
    }
    Ok(())
}

fn touch(dir: &File, name: &OsStr) -> io::Result<()> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    openat(dir, name, flags, Mode::from_raw_mode(0o600))?;
    Ok(())
}

fn present(dir: &File, name: &OsStr) -> io::Result<bool> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn gone(r: rustix::io::Result<()>) -> io::Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
