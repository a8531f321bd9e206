//! macOS and the BSDs: `st_flags` and `chflags(2)`, through nix.

use nix::sys::stat::{FileFlag, fstat};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

pub type Raw = u64;

pub const IMMUTABLE: Raw = (FileFlag::UF_IMMUTABLE.bits() | FileFlag::SF_IMMUTABLE.bits()) as Raw;
pub const APPEND: Raw = (FileFlag::UF_APPEND.bits() | FileFlag::SF_APPEND.bits()) as Raw;
pub const INHERITABLE: Raw = FileFlag::UF_NODUMP.bits() as Raw;
/// The command a user runs to set the flags again: (tool and separator, immutable, append).
pub const COMMAND: (&str, &str, &str) = ("chflags ", "schg", "sappnd");
pub const COMMAND_JOIN: &str = ",";

pub fn get(file: &File) -> io::Result<Raw> {
    Ok(fstat(file.as_fd())?.st_flags as Raw)
}

pub fn set(_file: &File, path: &Path, flags: Raw) -> io::Result<()> {
    let flags = FileFlag::from_bits_retain(flags as _);
    Ok(nix::unistd::chflags(path, flags)?)
}
