//! Where a replacement lands: the file a path finally names, its directory and the file in it.

use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::flags::{self, Flags};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, openat, statat};
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Symlink hops before we give up, as the kernel's ELOOP limit does.
const MAX_HOPS: usize = 40;

/// The file a path names after following symlinks, held by its directory's descriptor.
///
/// Every later operation is relative to `dir`, so a path relative to the current directory, or
/// a directory renamed meanwhile, cannot make the replacement land somewhere else.
pub struct Target {
    /// The final path, after symlinks: what messages name.
    pub path: PathBuf,
    pub dir: File,
    pub dir_path: PathBuf,
    pub name: OsString,
}

/// The file currently at a [`Target`], open for reading.
pub struct Existing {
    pub file: File,
    pub stat: Stat,
    pub flags: Flags,
}

impl Target {
    /// Follow `path` through symlinks (a dangling one names the file to create) and open the
    /// directory that holds the final name.
    pub fn resolve(path: &Path) -> Result<Target> {
        Self::entry(&follow_symlinks(path)?)
    }

    /// The directory entry `path` names, itself (a final symlink is not followed): for
    /// replacing whatever the name holds, as `zlink -f` does.
    pub fn entry(path: &Path) -> Result<Target> {
        let path = path.to_owned();
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(Error::new(
                &path,
                ErrorKind::Invalid("not a file name".into()),
            ));
        };
        let dir_path = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        let dir = openat(
            rustix::fs::CWD,
            dir_path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::NOENT => Error::new(dir_path, ErrorKind::MissingDir),
            e => Error::io(dir_path, "cannot open directory", e.into()),
        })?;
        Ok(Target {
            name: name.to_owned(),
            dir_path: dir_path.to_owned(),
            dir: dir.into(),
            path,
        })
    }

    /// Open the file now at the target, if there is one. Only regular files can be replaced.
    pub fn open_existing(&self) -> Result<Option<Existing>> {
        // O_NONBLOCK so that a FIFO answers at once (and is then refused) instead of waiting
        // for a writer.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match openat(&self.dir, &self.name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(Error::io(&self.path, "cannot open", e.into())),
        };
        let file = File::from(fd);
        let stat = rustix::fs::fstat(&file).at(&self.path, "cannot stat")?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(Error::new(&self.path, ErrorKind::NotRegular));
        }
        let flags = flags::get(&file).unwrap_or_default();
        Ok(Some(Existing { file, stat, flags }))
    }

    /// Device and inode of what the name points at now, without following a symlink.
    pub fn identity(&self) -> Result<Option<(u64, u64)>> {
        match statat(&self.dir, &self.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(identity(&st))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(Error::io(&self.path, "cannot stat", e.into())),
        }
    }
}

impl Existing {
    pub fn identity(&self) -> (u64, u64) {
        identity(&self.stat)
    }

    /// Read metadata and flags again: what was read before a lock was taken may be stale.
    pub fn reload(&mut self, path: &Path) -> Result<()> {
        self.stat = rustix::fs::fstat(&self.file).at(path, "cannot stat")?;
        self.flags = flags::get(&self.file).unwrap_or_default();
        Ok(())
    }
}

/// Device and inode, widened: `dev_t` and `ino_t` differ in width across platforms.
#[allow(clippy::unnecessary_cast)]
fn identity(st: &Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

fn follow_symlinks(path: &Path) -> Result<PathBuf> {
    let mut path = path.to_owned();
    for _ in 0..MAX_HOPS {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&path).at(&path, "cannot read symlink")?;
                path = match path.parent() {
                    Some(parent) if link.is_relative() => parent.join(link),
                    _ => link,
                };
            }
            Ok(_) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(path),
            Err(e) => return Err(Error::io(&path, "cannot stat", e)),
        }
    }
    Err(Error::io(
        path,
        "cannot follow symlinks",
        io::Error::from_raw_os_error(libc::ELOOP),
    ))
}
