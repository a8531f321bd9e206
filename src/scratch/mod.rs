//! Scratch: the writable top of an editable view, a plain directory tree in the store.
//!
//! Scratch holds what the user changed, at the same relative paths as in the view: new and
//! copied-up files, new directories (and lower directories a change inside needed), symlinks,
//! and the records of deletions ([`whiteout`]). A view shows scratch over its layers;
//! `zcommit --runtime` turns scratch into a layer.
//!
//! # Every operation stays beneath the root
//!
//! Scratch is written by a daemon, often root, on behalf of a user who can put any symlink in
//! it. So nothing here takes a joined path: a directory is reached with [`Scratch::dir`] or
//! [`Scratch::make_dirs`], which resolve beneath the root and refuse every symlink on the way
//! (see `beneath.rs`), and every operation after that is an `*at` call on that directory's
//! descriptor with one plain name, with `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW` where the call
//! would otherwise follow. A symlink `link -> /etc` in scratch is then only ever a symlink:
//! the daemon never writes through it.
//!
//! # The work directory
//!
//! Copies and new directories are built in a sibling work directory on the same file system
//! and renamed into scratch complete ([`copyup`]), so scratch never shows a half-made entry
//! and never holds a temporary under a user's name. Whatever a crash leaves in the work
//! directory is removed the next time scratch is opened.

mod beneath;
mod chmod;
mod copyup;
pub mod listing;
pub mod unchecked;
pub mod whiteout;

use crate::error::{IoContext, Result};
use rustix::fs::{AtFlags, Mode, mkdirat, unlinkat};
use rustix::io::Errno;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub use chmod::chmod_at;
pub use copyup::{Content, Copied};

/// Owner, mode and times a copied-up file or a made directory gets (the lower entry's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attrs {
    /// Permission bits with setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
}

pub struct Scratch {
    root: File,
    path: PathBuf,
    work: File,
    work_path: PathBuf,
    sync: bool,
    /// Copy-ups in flight, by path: see [`copyup`].
    copying: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch").field("path", &self.path).finish()
    }
}

impl Scratch {
    /// Open (creating them if needed) the scratch root at `path` and its work directory at
    /// `work`, which must be on the same file system. Copy-ups are fsynced before they are
    /// named (as overlayfs does) unless [`Scratch::set_sync`] turns that off.
    pub fn open(path: &Path, work: &Path) -> Result<Scratch> {
        for dir in [path, work] {
            std::fs::create_dir_all(dir).at(dir, "cannot create scratch directory")?;
        }
        let open = |p: &Path| -> Result<File> {
            let flags = rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC;
            Ok(rustix::fs::open(p, flags, Mode::empty())
                .at(p, "cannot open scratch directory")?
                .into())
        };
        let scratch = Scratch {
            root: open(path)?,
            path: path.to_owned(),
            work: open(work)?,
            work_path: work.to_owned(),
            sync: true,
            copying: Mutex::default(),
        };
        remove_contents(&scratch.work).at(work, "cannot clean the work directory")?;
        Ok(scratch)
    }

    pub fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The existing scratch directory at `rel` (relative; empty for the root), reached without
    /// following symlinks. `ENOENT` when scratch has no such directory, `ELOOP`/`ENOTDIR` when
    /// something else, a symlink included, is on the way.
    pub fn dir(&self, rel: &Path) -> io::Result<File> {
        beneath::open_dir(&self.root, rel)
    }

    /// The scratch directory at `rel`, made first where missing, each missing one with the
    /// attributes `attrs_of` gives for its path (the lower directory's, so that a copy-up deep
    /// in the tree does not change the directories above it). Each is built in the work
    /// directory and renamed into place, so a directory appears with its final mode or not at
    /// all.
    pub fn make_dirs(&self, rel: &Path, attrs_of: impl Fn(&Path) -> Attrs) -> io::Result<File> {
        if let Ok(dir) = self.dir(rel) {
            return Ok(dir);
        }
        let mut dir = self.dir(Path::new(""))?;
        let mut at = PathBuf::new();
        for part in rel.components() {
            let name = part.as_os_str();
            at.push(name);
            dir = match beneath::open_child_dir(&dir, name) {
                Ok(d) => d,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    keeping_times(&dir, || self.make_dir(&dir, name, &attrs_of(&at), false))?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(dir)
    }

    /// Make `name` in `dir` as a directory with `attrs` (and, with `opaque`, the marker that
    /// hides the layers' directory of the same path), atomically; if someone made it
    /// meanwhile, theirs is returned.
    pub fn make_dir(
        &self,
        dir: &File,
        name: &OsStr,
        attrs: &Attrs,
        opaque: bool,
    ) -> io::Result<File> {
        let temp = self.work_name(name);
        mkdirat(&self.work, &temp, Mode::from_raw_mode(0o700))?;
        let made = beneath::open_child_dir(&self.work, &temp).and_then(|d| {
            if opaque {
                whiteout::set_opaque(&d)?;
            }
            copyup::set_attrs(&d, attrs)?;
            crate::atomic::rename_noreplace(&self.work, &temp, dir, name)?;
            Ok(d)
        });
        match made {
            Ok(d) => Ok(d),
            Err(e) => {
                let _ = unlinkat(&self.work, &temp, AtFlags::REMOVEDIR);
                match e.raw_os_error() {
                    Some(libc::EEXIST) => beneath::open_child_dir(dir, name),
                    _ => Err(e),
                }
            }
        }
    }

    /// Whether scratch records no change at all.
    pub fn is_empty(&self) -> io::Result<bool> {
        let dir = self.dir(Path::new(""))?;
        let up = listing::Upper::read(&dir)?;
        Ok(up.names.is_empty() && up.whiteouts.is_empty() && !up.opaque)
    }

    fn work_name(&self, name: &OsStr) -> OsString {
        let mut temp = OsString::from(format!(".{:016x}.", crate::sys::random_u64()));
        temp.push(
            name.as_bytes()[..name.len().min(200)]
                .escape_ascii()
                .to_string(),
        );
        temp
    }
}

/// Open `name` in `dir` as a directory, never through a symlink.
pub fn open_child_dir(dir: &File, name: &OsStr) -> io::Result<File> {
    beneath::open_child_dir(dir, name)
}

/// Whether a user may use `name` for a new entry: `EPERM` for names reserved for whiteouts,
/// `ENAMETOOLONG` past `NAME_MAX`, `EINVAL` for names no directory can hold.
pub fn check_name(name: &OsStr) -> std::result::Result<(), Errno> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(Errno::INVAL);
    }
    if bytes.len() > whiteout::NAME_MAX {
        return Err(Errno::NAMETOOLONG);
    }
    if whiteout::reserved(name) {
        return Err(Errno::PERM);
    }
    Ok(())
}

/// Empty a directory we own (the work directory), subdirectories included, without
/// following symlinks.
fn remove_contents(dir: &File) -> io::Result<()> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push((OsStr::from_bytes(name).to_owned(), entry.file_type()));
        }
    }
    for (name, kind) in names {
        if kind == rustix::fs::FileType::Directory {
            let sub = beneath::open_child_dir(dir, &name)?;
            remove_contents(&sub)?;
            unlinkat(dir, &name, AtFlags::REMOVEDIR)?;
        } else {
            unlinkat(dir, &name, AtFlags::empty())?;
        }
    }
    Ok(())
}

/// Run `f`, which adds an entry to `dir` on the layers' behalf (a copy-up, or a directory made
/// to hold one), and give `dir` back the times it had: bringing a lower entry up is no change
/// of its directory, and a commit would otherwise date the directory now. Overlayfs does the
/// same after its copy-ups.
pub fn keeping_times<T>(dir: &File, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let before = rustix::fs::fstat(dir)?;
    let done = f()?;
    #[allow(clippy::unnecessary_cast)] // stat field widths differ across platforms
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: before.st_atime as _,
            tv_nsec: before.st_atime_nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: before.st_mtime as _,
            tv_nsec: before.st_mtime_nsec as _,
        },
    };
    rustix::fs::futimens(dir, &times)?;
    Ok(done)
}
