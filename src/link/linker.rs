//! One file through the tiers: [`Linker`].

use super::data::{self, Refusal};
use super::memory::{Ask, Memory, Pair};
use super::{Mode, Tier, backend};
use crate::atomic::{self, Target};
use crate::error::{Error, ErrorKind, IoContext, Result};
use rustix::fs::{AtFlags, FileType, Mode as Perm, OFlags, Stat, Timestamps};
use rustix::io::Errno;
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Links files through the tiers of one [`Mode`]. `Send + Sync`: one `Linker` is shared by
/// all the workers of a run, so that what one learns about a device pair (EXDEV, no
/// reflinks) spares the others the doomed system calls.
pub struct Linker {
    mode: Mode,
    replace: bool,
    memory: Memory,
    /// Root can give a copy the source's owner; others keep their own.
    root: bool,
    /// Our effective (uid, gid): what a new file gets without `fchown`.
    ids: (u32, u32),
    /// The process umask, when known: a copy whose mode survives it needs no `fchmod`.
    umask: Option<u32>,
}

/// What happened at one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The tier used; `None` when the destination already was the source's inode.
    pub tier: Option<Tier>,
    /// Bytes the copy tier wrote (a reflink or hard link writes none).
    pub bytes: u64,
    /// An existing, different destination was replaced (`-f`).
    pub replaced: bool,
}

/// One end of a link: an entry in an open directory. Paths are kept only for messages.
#[derive(Clone, Copy)]
pub(crate) struct Side<'a> {
    pub dir: BorrowedFd<'a>,
    pub dir_path: &'a Path,
    pub name: &'a CStr,
    /// `st_dev` of the directory (or the file), for what the run learns per device pair.
    pub dev: u64,
}

impl Side<'_> {
    pub fn path(&self) -> PathBuf {
        self.dir_path.join(OsStr::from_bytes(self.name.to_bytes()))
    }
}

/// The outcome of one attempt to create a destination.
enum Created {
    Done(Tier, u64),
    /// The destination name is taken; [`Linker::place`] decides what that means.
    Exists,
}

impl Linker {
    pub fn new(mode: Mode) -> Self {
        Linker {
            mode,
            replace: false,
            memory: Memory::default(),
            root: rustix::process::geteuid().is_root(),
            ids: (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            ),
            umask: read_umask(),
        }
    }

    /// Let [`Linker::place_file`] and tree mirrors replace an existing, different destination
    /// atomically (`-f`), instead of failing with [`ErrorKind::Exists`].
    pub fn replace_existing(mut self, replace: bool) -> Self {
        self.replace = replace;
        self
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether an existing, different destination is replaced (`-f`).
    pub fn replaces(&self) -> bool {
        self.replace
    }

    pub(crate) fn umask(&self) -> Option<u32> {
        self.umask
    }

    /// As root, give a new file or directory the owner of the one it mirrors.
    pub(crate) fn give_owner(&self, file: &File, st: &Stat, path: &Path) -> Result<bool> {
        if !self.root || (st.st_uid, st.st_gid) == self.ids {
            return Ok(false);
        }
        let (uid, gid) = (
            rustix::fs::Uid::from_raw(st.st_uid),
            rustix::fs::Gid::from_raw(st.st_gid),
        );
        rustix::fs::fchown(file, Some(uid), Some(gid)).at(path, "cannot set owner")?;
        Ok(true)
    }

    /// One regular file: creates `dst` (must not exist) through the mode's tiers; a copy keeps
    /// the mode bits. Returns the tier used. Errors are [`Error`]s with the errno and path.
    pub fn link_file(&self, src: &Path, dst: &Path) -> Result<Tier> {
        let (src_end, dst_end) = (Endpoint::source(src)?, Endpoint::dest(dst)?);
        match self.through_tiers(&src_end.side(), &dst_end.side())? {
            Created::Done(tier, _) => Ok(tier),
            Created::Exists => Err(Error::new(&dst_end.path, ErrorKind::Exists)),
        }
    }

    /// Like [`Linker::link_file`], but an existing `dst` is fine when it already is `src`'s
    /// inode (re-runs are idempotent), and replaced atomically when the linker was made with
    /// [`Linker::replace_existing`].
    pub fn place_file(&self, src: &Path, dst: &Path) -> Result<Placed> {
        let (src_end, dst_end) = (Endpoint::source(src)?, Endpoint::dest(dst)?);
        self.place(&src_end.side(), &dst_end.side())
    }

    /// Create `dst` from `src`, or accept or replace what is there.
    pub(crate) fn place(&self, src: &Side, dst: &Side) -> Result<Placed> {
        let (tier, bytes) = match self.through_tiers(src, dst)? {
            Created::Done(tier, bytes) => (tier, bytes),
            Created::Exists => return self.existing(src, dst),
        };
        Ok(Placed {
            tier: Some(tier),
            bytes,
            replaced: false,
        })
    }

    fn existing(&self, src: &Side, dst: &Side) -> Result<Placed> {
        let s = rustix::fs::statat(src.dir, src.name, AtFlags::SYMLINK_NOFOLLOW)
            .at(&src.path(), "cannot stat")?;
        let d = rustix::fs::statat(dst.dir, dst.name, AtFlags::SYMLINK_NOFOLLOW)
            .at(&dst.path(), "cannot stat")?;
        let same = (s.st_dev, s.st_ino) == (d.st_dev, d.st_ino);
        if same && self.mode.allows(Tier::Hardlink) {
            return Ok(Placed {
                tier: None,
                bytes: 0,
                replaced: false,
            });
        }
        if !self.replace {
            // A hard link left by an earlier run is not what a mode that never shares an inode
            // promises: someone about to edit the destination would edit the source.
            let kind = if same {
                ErrorKind::SharesInode
            } else {
                ErrorKind::Exists
            };
            return Err(Error::new(dst.path(), kind));
        }
        if FileType::from_raw_mode(d.st_mode) == FileType::Directory {
            return Err(Error::new(dst.path(), ErrorKind::IsDir));
        }
        let name = OsStr::from_bytes(dst.name.to_bytes());
        let (tier, bytes) = atomic::put_over(dst.dir, dst.dir_path, name, |temp| {
            let temp = CString::new(temp.as_bytes()).expect("file names have no NUL");
            match self.through_tiers(
                src,
                &Side {
                    name: &temp,
                    ..*dst
                },
            )? {
                Created::Done(tier, bytes) => Ok(Some((tier, bytes))),
                Created::Exists => Ok(None),
            }
        })?;
        Ok(Placed {
            tier: Some(tier),
            bytes,
            replaced: true,
        })
    }

    /// Try the mode's tiers in order for a destination that must not exist yet.
    fn through_tiers(&self, src: &Side, dst: &Side) -> Result<Created> {
        let tiers = self.mode.tiers();
        if tiers[0] == Tier::Hardlink {
            match self.hard_link(src, dst)? {
                Ok(created) => return Ok(created),
                Err(refused) if tiers.len() == 1 => {
                    let instead = link_instead(&refused);
                    return Err(refusal(dst, "hard link", refused, instead));
                }
                Err(_) => {}
            }
        }
        self.new_inode(src, dst)
    }

    /// Hard link any entry, a symlink included, when the mode allows hard links: `Ok(true)`
    /// linked, `Ok(false)` not (the name is taken, or the tier gave way; the caller recreates
    /// the entry its own way).
    pub(crate) fn try_hard_link(&self, src: &Side, dst: &Side) -> Result<bool> {
        if !self.mode.allows(Tier::Hardlink) {
            return Ok(false);
        }
        Ok(matches!(self.hard_link(src, dst)?, Ok(Created::Done(..))))
    }

    /// `Ok(Err(e))`: the tier gives way for this file (EPERM, EMLINK, EXDEV).
    fn hard_link(&self, src: &Side, dst: &Side) -> Result<Result<Created, io::Error>> {
        let pair = (src.dev, dst.dev);
        let ask = self.memory.link.ask(pair);
        if let Ask::Skip = ask {
            return Ok(Err(Errno::XDEV.into()));
        }
        let linked = rustix::fs::linkat(src.dir, src.name, dst.dir, dst.name, AtFlags::empty());
        let about_pair = match linked {
            Ok(()) => Some(true),
            Err(Errno::XDEV) => Some(false),
            Err(_) => None,
        };
        ask.report(&self.memory.link, pair, about_pair);
        match linked {
            Ok(()) => Ok(Ok(Created::Done(Tier::Hardlink, 0))),
            Err(Errno::EXIST) => Ok(Ok(Created::Exists)),
            Err(e @ (Errno::XDEV | Errno::PERM | Errno::MLINK)) => Ok(Err(e.into())),
            Err(Errno::NOENT) => Err(Error::io(
                src.path(),
                "cannot hard link",
                Errno::NOENT.into(),
            )),
            Err(e) => Err(Error::io(dst.path(), "cannot hard link", e.into())),
        }
    }

    /// The reflink and copy tiers: a new inode with the source's data, mode and times.
    fn new_inode(&self, src: &Side, dst: &Side) -> Result<Created> {
        // O_NONBLOCK: a FIFO swapped in for the file answers at once instead of waiting.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let source = File::from(
            rustix::fs::openat(src.dir, src.name, flags, Perm::empty())
                .at(&src.path(), "cannot open")?,
        );
        let st = rustix::fs::fstat(&source).at(&src.path(), "cannot stat")?;
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind != FileType::RegularFile {
            return Err(Error::new(src.path(), not_regular(kind)));
        }
        let mut refused = None;
        if self.mode.allows(Tier::Reflink) {
            match self.reflink(&source, &st, dst, (src.dev, dst.dev))? {
                Ok(created) => return Ok(created),
                Err(e) => refused = Some(e),
            }
        }
        if !self.mode.allows(Tier::Copy) {
            let e = refused.unwrap_or_else(|| Errno::OPNOTSUPP.into());
            let instead = if e.raw_os_error() == Some(libc::EINVAL) {
                "this file cannot be cloned; -m clone-or-copy would copy it"
            } else {
                REFLINK_INSTEAD
            };
            return Err(refusal(dst, "reflink", e, instead));
        }
        let Some(made) = new_file(dst, &st)? else {
            return Ok(Created::Exists);
        };
        // From here on a failure must not leave a partial destination behind.
        let guard = Unlink(dst);
        let size = u64::try_from(st.st_size).unwrap_or(0);
        let bytes = data::copy(&source, &made, size).at(&dst.path(), "cannot copy")?;
        self.keep_metadata(&made, &source, &st, dst)?;
        guard.keep();
        Ok(Created::Done(Tier::Copy, bytes))
    }

    /// The reflink tier; `Ok(Err(e))` when it gives way (no reflinks on this device pair,
    /// learnt once; or not for this file). Linux creates the file and clones into it
    /// (`FICLONE`); macOS clones by name (`fclonefileat`). A refused clone leaves nothing.
    fn reflink(
        &self,
        source: &File,
        st: &Stat,
        dst: &Side,
        pair: Pair,
    ) -> Result<Result<Created, io::Error>> {
        let ask = self.memory.reflink.ask(pair);
        if matches!(ask, Ask::Skip) {
            return Ok(Err(Errno::OPNOTSUPP.into()));
        }
        let (made, cloned) = match backend::clone_new(source, dst.dir, dst.name) {
            // The clone made the file; open it to give it the source's metadata.
            Some(Ok(())) => {
                let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                match rustix::fs::openat(dst.dir, dst.name, flags, Perm::empty()) {
                    Ok(fd) => (Some(File::from(fd)), Ok(())),
                    Err(e) => {
                        let _ = rustix::fs::unlinkat(dst.dir, dst.name, AtFlags::empty());
                        return Err(Error::io(dst.path(), "cannot open", e.into()));
                    }
                }
            }
            Some(Err(e)) => (None, Err(e)),
            None => match new_file(dst, st)? {
                Some(made) => {
                    let cloned = backend::clone(&made, source);
                    (Some(made), cloned)
                }
                None => return Ok(Ok(Created::Exists)),
            },
        };
        // Whatever was created goes again unless the clone is complete.
        let guard = made.as_ref().map(|_| Unlink(dst));
        let about_pair = match &cloned {
            Ok(()) => Some(true),
            Err(e) => match data::clone_refusal(e) {
                Some(Refusal::NoReflinks) => Some(false),
                _ => None,
            },
        };
        ask.report(&self.memory.reflink, pair, about_pair);
        match (cloned, made) {
            (Ok(()), Some(made)) => {
                self.keep_metadata(&made, source, st, dst)?;
                if let Some(guard) = guard {
                    guard.keep();
                }
                Ok(Ok(Created::Done(Tier::Reflink, 0)))
            }
            (Err(e), _) if e.raw_os_error() == Some(libc::EEXIST) => Ok(Ok(Created::Exists)),
            (Err(e), _) if data::clone_refusal(&e).is_some() => Ok(Err(e)),
            (Err(e), _) => Err(Error::io(dst.path(), "cannot reflink", e)),
            (Ok(()), None) => unreachable!("a clone that succeeded made a file"),
        }
    }

    /// Owner (as root) first, because `fchown` clears setuid/setgid; then extended attributes,
    /// because setting an ACL rewrites the group bits; then the mode; times last. Attributes
    /// the destination will not take (trusted.* for a user, a file system without them) are
    /// let go, as `cp -a` does.
    fn keep_metadata(&self, file: &File, source: &File, st: &Stat, dst: &Side) -> Result<()> {
        let wanted = mode_of(st) & 0o7777;
        // The file was created with the permission bits less the umask, no setuid/setgid/sticky.
        let mut chmod = self.umask.is_none_or(|m| wanted & 0o777 & !m != wanted);
        if self.give_owner(file, st, &dst.path())? {
            chmod = true;
        }
        // An access ACL sets the permission bits to the source's own; the mode below agrees.
        let _not_kept = atomic::copy_xattrs(file, source);
        if chmod {
            let mode = perm(wanted);
            rustix::fs::fchmod(file, mode).at(&dst.path(), "cannot set mode")?;
        }
        rustix::fs::futimens(file, &times_of(st)).at(&dst.path(), "cannot set times")
    }
}

/// Access and modification times of `st`, for `futimens`.
pub(crate) fn times_of(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

const REFLINK_INSTEAD: &str = "reflinks need a file system that shares blocks (XFS, btrfs, \
    bcachefs) and stay within it; -m clone-or-copy or -m copy would copy it";

fn link_instead(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EXDEV) => {
            "hard links cannot cross file systems; -m auto or -m copy would copy it"
        }
        Some(libc::EMLINK) => {
            "the file has as many links as its file system allows; -m auto would reflink or copy it"
        }
        _ => {
            "the kernel refuses to hard link this file (immutable or append-only, \
             protected_hardlinks, a signed bundle); -m auto would reflink or copy it"
        }
    }
}

fn refusal(dst: &Side, what: &'static str, source: io::Error, instead: &'static str) -> Error {
    Error::new(
        dst.path(),
        ErrorKind::TierRefused {
            what,
            source,
            instead,
        },
    )
}

/// The error for something that is neither a regular file, a directory nor a symlink.
pub(crate) fn not_regular(kind: FileType) -> ErrorKind {
    match kind {
        FileType::Directory => ErrorKind::IsDir,
        FileType::Symlink => ErrorKind::NotRegular,
        FileType::Fifo => ErrorKind::Special("FIFO"),
        FileType::Socket => ErrorKind::Special("socket"),
        FileType::CharacterDevice => ErrorKind::Special("character device"),
        FileType::BlockDevice => ErrorKind::Special("block device"),
        _ => ErrorKind::Special("special file"),
    }
}

/// Create the destination with the source's permission bits (less the umask, for now):
/// `None` when the name is taken.
fn new_file(dst: &Side, st: &Stat) -> Result<Option<File>> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(dst.dir, dst.name, flags, perm(mode_of(st) & 0o777)) {
        Ok(fd) => Ok(Some(File::from(fd))),
        Err(Errno::EXIST) => Ok(None),
        Err(e) => Err(Error::io(dst.path(), "cannot create", e.into())),
    }
}

/// Removes a destination we created unless told to keep it.
struct Unlink<'a, 'b>(&'a Side<'b>);

impl Unlink<'_, '_> {
    fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Unlink<'_, '_> {
    fn drop(&mut self) {
        let _ = rustix::fs::unlinkat(self.0.dir, self.0.name, AtFlags::empty());
    }
}

/// A path opened as (directory, name) for [`Linker::link_file`] and [`Linker::place_file`].
struct Endpoint {
    target: Target,
    name: CString,
    path: PathBuf,
    dev: u64,
}

impl Endpoint {
    /// A source: symlinks followed, and it must be a regular file.
    fn source(path: &Path) -> Result<Endpoint> {
        let target = Target::resolve(path)?;
        let st = rustix::fs::statat(&target.dir, &target.name, AtFlags::SYMLINK_NOFOLLOW)
            .at(&target.path, "cannot stat")?;
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind != FileType::RegularFile {
            return Err(Error::new(&target.path, not_regular(kind)));
        }
        Ok(Self::new(target, dev_of(&st)))
    }

    /// A destination: the entry itself (a symlink there is what gets replaced).
    fn dest(path: &Path) -> Result<Endpoint> {
        let target = Target::entry(path)?;
        let dev = dev_of(&rustix::fs::fstat(&target.dir).at(&target.dir_path, "cannot stat")?);
        Ok(Self::new(target, dev))
    }

    fn new(target: Target, dev: u64) -> Endpoint {
        let name = CString::new(target.name.as_bytes()).expect("file names have no NUL");
        Endpoint {
            path: target.path.clone(),
            target,
            name,
            dev,
        }
    }

    fn side(&self) -> Side<'_> {
        Side {
            dir: self.target.dir.as_fd(),
            dir_path: &self.target.dir_path,
            name: &self.name,
            dev: self.dev,
        }
    }
}

/// `st_mode` is a u32 on Linux and a u16 on the BSDs and macOS; modes are u32 here.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn mode_of(st: &Stat) -> u32 {
    st.st_mode as u32
}

/// `st_dev`: u64 on Linux and FreeBSD, i32 on macOS; only compared, so widened as it is.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn dev_of(st: &Stat) -> u64 {
    st.st_dev as u64
}

#[allow(clippy::unnecessary_cast)]
pub(crate) fn perm(mode: u32) -> Perm {
    Perm::from_raw_mode(mode as rustix::fs::RawMode)
}

/// The umask without changing it (`umask(2)` can only be read by setting it, which would race
/// with other threads creating files): Linux shows it in /proc/self/status.
fn read_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}
