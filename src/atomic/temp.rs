//! A temporary file in the directory of the file it will replace.
//!
//! On Linux it starts anonymous (`O_TMPFILE`): until it is given a name nothing is visible, and
//! a SIGKILL leaves nothing behind. Where `O_TMPFILE` is not supported (some FUSE and network
//! file systems, other kernels) it is created under a recognisable name, `.NAME.zw-XXXXXXXX`,
//! with `O_EXCL`, removed on drop and, in binaries that call [`crate::sys::signals::install`],
//! on SIGINT, SIGTERM and SIGHUP. Either way its name records the writer and it is locked, so
//! that one a SIGKILL leaves behind can be told from a live one and removed (`stale.rs`).

use crate::sys::{self, signals};
use rustix::fs::{AtFlags, Mode, OFlags, openat, renameat, unlinkat};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Temp names keep at most this much of the target's name, so they stay under NAME_MAX.
const STEM_MAX: usize = 200;
const NAME_TRIES: usize = 16;
/// Files at least this large are written back before they get a name (see `prepare`).
const EARLY_WRITEBACK: u64 = 1 << 20;

pub struct TempFile<'d> {
    file: File,
    dir: &'d File,
    dir_path: &'d Path,
    stem: OsString,
    /// The temporary's name in `dir`, once it has one; `None` while anonymous.
    name: Option<OsString>,
    /// Set by a successful [`TempFile::rename_to`]: the name is no longer ours to remove.
    persisted: bool,
    _cleanup: Option<signals::Registration>,
}

impl<'d> TempFile<'d> {
    /// Create an empty temporary in `dir` for a file called `target_name`. Its mode is what
    /// `open(2)` with 0666 gives under the umask, like a file created by the shell's `>`.
    pub fn new_in(dir: &'d File, dir_path: &'d Path, target_name: &OsStr) -> io::Result<Self> {
        let stem =
            OsString::from_vec(target_name.as_bytes()[..target_name.len().min(STEM_MAX)].to_vec());
        let (file, name) = match anonymous(dir)? {
            Some(file) => (file, None),
            None => {
                let (file, name) = create_named(dir, &stem)?;
                (file, Some(name))
            }
        };
        // Held until we exit: it tells a later writer that this temporary is not stale (see
        // `stale.rs`). An anonymous file is locked before it ever has a name. Best effort:
        // without flock the recorded pid still speaks for us.
        let _ = file.try_lock();
        let mut temp = TempFile {
            file,
            dir,
            dir_path,
            stem,
            name: None,
            persisted: false,
            _cleanup: None,
        };
        if let Some(name) = name {
            temp.set_name(name);
        }
        Ok(temp)
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// A path for messages and for chflags(2): the temporary's name, or its /proc entry.
    pub fn path(&self) -> PathBuf {
        match &self.name {
            Some(name) => self.dir_path.join(name),
            None => anonymous_path(&self.file),
        }
    }

    /// Make the content durable and give the file a name, in the order that keeps it durable on
    /// every file system: write back the data, link the anonymous file, then `fsync` (btrfs has
    /// lost data when an unlinked `O_TMPFILE` was fsynced before `linkat`). Without `sync`, only
    /// the link.
    ///
    /// Large files are written back before the link, so that the named temporary, which a
    /// SIGKILL would leave behind, exists only for the short metadata `fsync`; for small ones
    /// that write-back would only add a device round trip.
    pub fn prepare(&mut self, sync: bool) -> io::Result<()> {
        if sync && self.file.metadata()?.len() >= EARLY_WRITEBACK {
            sys::flush_data(&self.file)?;
        }
        if self.name.is_none() {
            let name = link_anonymous(&self.file, self.dir, &self.stem)?;
            self.set_name(name);
        }
        if sync {
            self.file.sync_all()?;
        }
        Ok(())
    }

    /// Rename the (prepared) temporary over `name` in the same directory. On failure the
    /// temporary is still ours and is removed on drop.
    pub fn rename_to(&mut self, name: &OsStr) -> io::Result<()> {
        let temp = self
            .name
            .as_ref()
            .expect("prepare() names the temporary first");
        renameat(self.dir, temp, self.dir, name)?;
        self.persisted = true;
        Ok(())
    }

    /// Swap the (prepared) temporary with `name` in one step (Linux `RENAME_EXCHANGE`):
    /// `name` then holds the new file and the temporary's name the old one, which is removed on
    /// drop or by [`TempFile::remove`]. Called again, it swaps back. `Ok(false)`, with nothing
    /// changed, where the platform or file system cannot swap.
    pub fn exchange_with(&mut self, name: &OsStr) -> io::Result<bool> {
        let temp = self
            .name
            .as_ref()
            .expect("prepare() names the temporary first");
        exchange(self.dir, temp, name)
    }

    /// Remove the temporary's name now rather than on drop.
    pub fn remove(&mut self) -> io::Result<()> {
        if let (Some(name), false) = (&self.name, self.persisted) {
            unlinkat(self.dir, name, AtFlags::empty())?;
            self.persisted = true;
        }
        Ok(())
    }

    /// Rename the (prepared) temporary to `name` in `dir`, another directory on the same file
    /// system, only if `name` is free: `EEXIST` otherwise, and the temporary stays ours. For
    /// temporaries made in a work directory, so that a crash never leaves one among the
    /// names a user sees.
    pub fn move_new(&mut self, dir: &File, name: &OsStr) -> io::Result<()> {
        let temp = self
            .name
            .as_ref()
            .expect("prepare() names the temporary first");
        super::rename_noreplace(self.dir, temp, dir, name)?;
        self.persisted = true;
        Ok(())
    }

    /// Give the temporary the name `name` unless something already has it (`Ok(false)`; the
    /// temporary is then removed on drop). For content-addressed objects, where whatever holds
    /// the name holds the same bytes. Nothing is synced: make the data durable first. An
    /// anonymous temporary is linked straight to `name`, so it never has another name; a named
    /// one is renamed without replacing where the platform can (over `name` elsewhere).
    pub fn link_new(&mut self, name: &OsStr) -> io::Result<bool> {
        let done = match &self.name {
            None => link_anonymous_as(&self.file, self.dir, name),
            Some(temp) => rename_no_replace(self.dir, temp, name),
        };
        match done {
            Ok(()) => {
                self.persisted = true;
                Ok(true)
            }
            Err(Errno::EXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn set_name(&mut self, name: OsString) {
        self._cleanup = Some(signals::register(&self.dir_path.join(&name)));
        self.name = Some(name);
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if let (Some(name), false) = (&self.name, self.persisted) {
            let _ = unlinkat(self.dir, name, AtFlags::empty());
        }
    }
}

/// `.NAME.zw-PID-START-XXXXXXXX`, with NAME cut so that the whole stays under NAME_MAX; the
/// middle records the writer (see `stale.rs`).
pub(super) fn candidate_name(stem: &OsStr) -> OsString {
    let mut name = OsString::from(".");
    name.push(stem_of(stem));
    name.push(format!(
        ".zw-{}{:08x}",
        super::stale::writer_tag(),
        sys::random_u64() as u32
    ));
    name
}

/// The part of a file's name its temporaries keep.
pub(super) fn stem_of(name: &OsStr) -> &OsStr {
    OsStr::from_bytes(&name.as_bytes()[..name.len().min(STEM_MAX)])
}

fn create_named(dir: &File, stem: &OsStr) -> io::Result<(File, OsString)> {
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    for _ in 0..NAME_TRIES {
        let name = candidate_name(stem);
        match openat(dir, &name, flags, Mode::from_raw_mode(0o666)) {
            Ok(fd) => return Ok((fd.into(), name)),
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Errno::EXIST.into())
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn rename_no_replace(dir: &File, from: &OsStr, to: &OsStr) -> rustix::io::Result<()> {
    rustix::fs::renameat_with(dir, from, dir, to, rustix::fs::RenameFlags::NOREPLACE)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn rename_no_replace(dir: &File, from: &OsStr, to: &OsStr) -> rustix::io::Result<()> {
    renameat(dir, from, dir, to)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn exchange(dir: &File, a: &OsStr, b: &OsStr) -> io::Result<bool> {
    match rustix::fs::renameat_with(dir, a, dir, b, rustix::fs::RenameFlags::EXCHANGE) {
        Ok(()) => Ok(true),
        // No RENAME_EXCHANGE in this kernel or file system.
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn exchange(_dir: &File, _a: &OsStr, _b: &OsStr) -> io::Result<bool> {
    Ok(false)
}

fn anonymous_path(file: &File) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// An anonymous file in `dir`, or `None` where the platform or file system has none.
#[cfg(zkit_o_tmpfile)]
fn anonymous(dir: &File) -> io::Result<Option<File>> {
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    match openat(dir, ".", flags, Mode::from_raw_mode(0o666)) {
        Ok(fd) => Ok(Some(fd.into())),
        // Not supported by this file system (EISDIR: kernels that predate O_TMPFILE).
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Name an anonymous file in `dir` under a fresh temporary name.
#[cfg(zkit_o_tmpfile)]
fn link_anonymous(file: &File, dir: &File, stem: &OsStr) -> io::Result<OsString> {
    let proc_path = anonymous_path(file);
    for _ in 0..NAME_TRIES {
        let name = candidate_name(stem);
        // Through /proc, linkat needs no CAP_DAC_READ_SEARCH (unlike AT_EMPTY_PATH).
        let linked = match rustix::fs::linkat(
            rustix::fs::CWD,
            &proc_path,
            dir,
            &name,
            AtFlags::SYMLINK_FOLLOW,
        ) {
            Err(Errno::NOENT) => rustix::fs::linkat(file, "", dir, &name, AtFlags::EMPTY_PATH),
            other => other,
        };
        match linked {
            Ok(()) => return Ok(name),
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Errno::EXIST.into())
}

/// Link an anonymous file under exactly `name`.
#[cfg(zkit_o_tmpfile)]
fn link_anonymous_as(file: &File, dir: &File, name: &OsStr) -> rustix::io::Result<()> {
    let proc_path = anonymous_path(file);
    match rustix::fs::linkat(
        rustix::fs::CWD,
        &proc_path,
        dir,
        name,
        AtFlags::SYMLINK_FOLLOW,
    ) {
        Err(Errno::NOENT) => rustix::fs::linkat(file, "", dir, name, AtFlags::EMPTY_PATH),
        other => other,
    }
}

#[cfg(not(zkit_o_tmpfile))]
fn link_anonymous_as(_file: &File, _dir: &File, _name: &OsStr) -> rustix::io::Result<()> {
    unreachable!("only O_TMPFILE makes anonymous temporaries")
}

#[cfg(not(zkit_o_tmpfile))]
fn anonymous(_dir: &File) -> io::Result<Option<File>> {
    Ok(None)
}

#[cfg(not(zkit_o_tmpfile))]
fn link_anonymous(_file: &File, _dir: &File, _stem: &OsStr) -> io::Result<OsString> {
    unreachable!("only O_TMPFILE makes anonymous temporaries")
}
