//! Platforms without inode flags: nothing is ever immutable, nothing can be set.

use std::fs::File;
use std::io;
use std::path::Path;

pub type Raw = u32;

pub const IMMUTABLE: Raw = 0;
pub const APPEND: Raw = 0;
pub const INHERITABLE: Raw = 0;
/// The command a user runs to set the flags again: (tool and separator, immutable, append).
pub const COMMAND: (&str, &str, &str) = ("chattr +", "i", "a");
pub const COMMAND_JOIN: &str = "";

pub fn get(_file: &File) -> io::Result<Raw> {
    Ok(0)
}

pub fn set(_file: &File, _path: &Path, _flags: Raw) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}
