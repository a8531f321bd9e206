//! Linux: `FS_IOC_GETFLAGS`/`FS_IOC_SETFLAGS` (chattr/lsattr), through rustix.

use rustix::fs::{IFlags, ioctl_getflags, ioctl_setflags};
use std::fs::File;
use std::io;
use std::path::Path;

pub type Raw = u32;

pub const IMMUTABLE: Raw = IFlags::IMMUTABLE.bits();
pub const APPEND: Raw = IFlags::APPEND.bits();
/// Flags a user chose for the file that say nothing about its content. Not copied: the
/// file system's own bookkeeping (extents, inline data, encryption, verity, casefold).
pub const INHERITABLE: Raw = IFlags::NOATIME.bits()
    | IFlags::NODUMP.bits()
    | IFlags::SYNC.bits()
    | IFlags::NOCOW.bits()
    | IFlags::COMPRESSED.bits()
    | IFlags::JOURNALING.bits()
    | IFlags::SECURE_REMOVAL.bits()
    | IFlags::UNRM.bits()
    | FS_NOCOMP_FL;

const FS_NOCOMP_FL: Raw = 0x0000_0400;
/// The command a user runs to set the flags again: (tool and separator, immutable, append).
pub const COMMAND: (&str, &str, &str) = ("chattr +", "i", "a");
pub const COMMAND_JOIN: &str = "";

pub fn get(file: &File) -> io::Result<Raw> {
    Ok(ioctl_getflags(file)?.bits())
}

pub fn set(file: &File, _path: &Path, flags: Raw) -> io::Result<()> {
    Ok(ioctl_setflags(file, IFlags::from_bits_retain(flags))?)
}
