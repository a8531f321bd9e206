//! Inode flags: immutable and append-only, plus whatever else the file system keeps per inode.
//!
//! Linux keeps them behind `FS_IOC_GETFLAGS`/`FS_IOC_SETFLAGS`, the BSDs and macOS in `st_flags`
//! with `chflags(2)`. Each backend exposes the same three functions; elsewhere every file reads as
//! having no flags and setting any is `Unsupported`. Callers treat `Unsupported` as "no flags"
//! (best effort), which is what a file system without flags means too.

use std::fs::File;
use std::io;
use std::path::Path;

#[cfg(zkit_iflags = "chflags")]
#[path = "chflags.rs"]
mod imp;
#[cfg(zkit_iflags = "ioctl")]
#[path = "linux.rs"]
mod imp;
#[cfg(not(any(zkit_iflags = "ioctl", zkit_iflags = "chflags")))]
#[path = "none.rs"]
mod imp;

/// A file's inode flags, in the platform's own encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags(imp::Raw);

impl Flags {
    /// Immutable: no rename, unlink, write or metadata change, even by root.
    pub fn is_immutable(self) -> bool {
        self.0 & imp::IMMUTABLE != 0
    }

    /// Append-only: writes only at the end, no rename or unlink.
    pub fn is_append_only(self) -> bool {
        self.0 & imp::APPEND != 0
    }

    /// The flags that stop a file from being replaced (immutable, append-only).
    pub fn protection(self) -> Flags {
        Flags(self.0 & (imp::IMMUTABLE | imp::APPEND))
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// `self` with the protecting flags removed.
    pub fn unprotected(self) -> Flags {
        Flags(self.0 & !(imp::IMMUTABLE | imp::APPEND))
    }

    /// `self` plus the flags a replacement should inherit from `old` (nodump, noatime, nocow ...),
    /// never the protecting ones, which must wait until the replacement is in place.
    pub fn inheriting(self, old: Flags) -> Flags {
        Flags(self.0 | (old.0 & imp::INHERITABLE))
    }

    pub fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// The protecting flags in words, for messages: `immutable`, `append-only`.
    pub fn describe(self) -> &'static str {
        match (self.is_immutable(), self.is_append_only()) {
            (true, true) => "immutable and append-only",
            (true, false) => "immutable",
            (false, true) => "append-only",
            (false, false) => "protected",
        }
    }

    /// The shell command that sets the protecting flags of `self` on `path` again.
    pub fn set_command(self, path: &Path) -> String {
        let (tool, immutable, append) = imp::COMMAND;
        let mut wanted = Vec::new();
        if self.is_immutable() {
            wanted.push(immutable);
        }
        if self.is_append_only() {
            wanted.push(append);
        }
        format!(
            "{tool}{} {}",
            wanted.join(imp::COMMAND_JOIN),
            shell_quoted(path)
        )
    }
}

/// `path` as one shell word: as it is when that is unambiguous, else in single quotes.
fn shell_quoted(path: &Path) -> String {
    let text = path.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// The flags of an open file.
pub fn get(file: &File) -> io::Result<Flags> {
    imp::get(file).map(Flags)
}

/// Set the flags of an open file; `path` names the same file for platforms without an fd call.
pub fn set(file: &File, path: &Path, flags: Flags) -> io::Result<()> {
    imp::set(file, path, flags.0)
}
