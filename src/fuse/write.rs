//! Editable views through FUSE: the write operations, and the read operations of an editable
//! view (whose nodes are [`crate::edit`]'s, not the merged tree's). Each op resolves the inode
//! to its view; a read-only view answers writes with `EROFS` (through [`Served::writable`]),
//! and its reads stay in `ops.rs`.
//!
//! # Kernel caches
//!
//! An editable view's inodes are per view like any other (`view << 32 | node`), so no other
//! view's process can reach them except through the mount's root, whose entries are never
//! cached in a routed mount (see [`crate::fuse`]). Their nodes live while the kernel holds them: every
//! reply that hands the kernel an entry counts one (lookup, create, mkdir, mknod, symlink,
//! link, and each readdirplus entry but `.` and `..`, counted before it goes into the reply
//! and given back if it does not fit), and FORGET takes the kernel's count off (see
//! [`crate::edit`]'s `names` for why a FORGET racing a new lookup is safe). What one tree writes is therefore never
//! seen by another through a cached dentry, attribute or page. Within the view, the kernel
//! learns of every change because every change goes through it; attributes and entries are
//! cached briefly ([`EDIT_TTL`]). Reads and writes name the inode, not a handle (see
//! `op_open`), and each file is one inode, so its kept page cache is always the file's
//! content, across opens and copy-ups alike.
//!
//! In a single-view mount, writes are cached (`FUSE_WRITEBACK_CACHE`; a routed mount does
//! not ask for it, see `Fs::writeback_wanted`): the kernel keeps them in its page cache, owns
//! the size and times of regular files, and sends the pages when the file is closed or
//! synced, before any change of owner, mode or times, and on background writeback. They reach
//! scratch before the daemon lets go of the runtime (an unmount writes back first), so a
//! commit sees them. A daemon killed while a file is still open loses at most what was written
//! to it since it was last synced or written back; a closed file loses nothing. A write to a
//! setuid or setgid file bypasses the cache, so the daemon still sees the flag below.
//!
//! Either way the daemon writes at the offset the kernel gives, appends included: the kernel
//! places them at the size it knows, which every write and truncate of the file went through.
//!
//! # setuid and setgid
//!
//! The mount asks for `FUSE_HANDLE_KILLPRIV_V2`: a write by someone without `CAP_FSETID`
//! arrives flagged, and the daemon (which writes as root, and so would keep them) clears
//! setuid/setgid itself; a truncate by anyone but root does the same. In exchange the kernel
//! stops asking for `security.capability` before every write, a round trip per write. The
//! kernel does not learn of that mode change from the write, so `stat` may show the old mode
//! until the attribute expires ([`EDIT_TTL`]); scratch, and so a commit, has the new one.

use super::edit_listing::EditListing;
use super::ops::{Entry, Opened, Statfs, attr as lower_attr, ino_of};
use super::respond::Xattr;
use super::{Fs, Served};
use crate::edit::{Attr, AttrSource, Caller, Edit};
use crate::view::View;
use fuser::{Errno, FileAttr, FileType, FopenFlags, INodeNo, TimeOrNow};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// How long the kernel may trust an editable view's entries and attributes.
pub const EDIT_TTL: Duration = Duration::from_secs(1);

fn errno(e: rustix::io::Errno) -> Errno {
    Errno::from_i32(e.raw_os_error())
}

type Editable = (Arc<Served>, Arc<Edit>, u32);

fn caller(req: &fuser::Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

impl Fs {
    /// The editable view and node behind `ino`; `None` when the inode is a read-only view's.
    fn editable(&self, pid: u32, ino: u64) -> Option<Result<Editable, Errno>> {
        match self.resolve(pid, ino) {
            Ok((served, n)) => {
                let edit = served.edit()?.clone();
                Some(Ok((served, edit, n)))
            }
            Err(e) => Some(Err(e)),
        }
    }

    /// For writes: the editable view, or the read-only view's refusal.
    fn for_write(&self, pid: u32, ino: u64) -> Result<Editable, Errno> {
        match self.editable(pid, ino) {
            Some(r) => r,
            None => Err(Errno::EROFS),
        }
    }

    fn entry(&self, view: &View, parent: u64, attr: &Attr) -> Entry {
        Entry {
            attr: file_attr(view, attr),
            attr_ttl: EDIT_TTL,
            entry_ttl: self.ttl(parent == 1).min(EDIT_TTL),
        }
    }

    pub(super) fn edit_lookup(
        &self,
        req: &fuser::Request,
        parent: u64,
        name: &OsStr,
    ) -> Option<Result<Entry, Errno>> {
        Some(
            self.editable(req.pid(), parent)?
                .and_then(|(served, edit, dir)| {
                    let attr = edit.lookup_entry(&served.view, dir, name).map_err(errno)?;
                    Ok(self.entry(&served.view, parent, &attr))
                }),
        )
    }

    pub(super) fn edit_getattr(
        &self,
        req: &fuser::Request,
        ino: u64,
    ) -> Option<Result<(Duration, FileAttr), Errno>> {
        Some(
            self.editable(req.pid(), ino)?
                .and_then(|(served, edit, n)| {
                    let attr = edit.getattr(&served.view, n).map_err(errno)?;
                    Ok((
                        self.ttl(ino == 1).min(EDIT_TTL),
                        file_attr(&served.view, &attr),
                    ))
                }),
        )
    }

    pub(super) fn edit_readlink(&self, ino: u64) -> Option<Result<Vec<u8>, Errno>> {
        Some(
            self.editable(0, ino)?
                .and_then(|(served, edit, n)| edit.readlink(&served.view, n).map_err(errno)),
        )
    }

    pub(super) fn edit_read(
        &self,
        ino: u64,
        offset: u64,
        size: u32,
    ) -> Option<Result<Vec<u8>, Errno>> {
        Some(self.editable(0, ino)?.and_then(|(served, edit, n)| {
            match edit.read_file(&served.view, n).map_err(errno)? {
                Some(file) => Ok(super::ops::read_at(&file, offset, size)?),
                None => Ok(Vec::new()),
            }
        }))
    }

    pub(super) fn op_write(
        &self,
        ino: u64,
        offset: u64,
        data: &[u8],
        kill_suidgid: bool,
    ) -> Result<u32, Errno> {
        let (served, edit, n) = self.for_write(0, ino)?;
        edit.write(&served.view, n, offset, data, kill_suidgid)
            .map_err(errno)?;
        Ok(data.len() as u32)
    }

    pub(super) fn op_fallocate(
        &self,
        req: &fuser::Request,
        ino: u64,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> Result<(), Errno> {
        let (served, edit, n) = self.for_write(req.pid(), ino)?;
        // As for a truncate (see `op_setattr`): anyone but root loses setuid and setgid.
        let kill = req.uid() != 0;
        edit.fallocate(&served.view, n, offset, length, mode, kill)
            .map_err(errno)
    }

    pub(super) fn op_fsync(&self, ino: u64, datasync: bool) -> Result<(), Errno> {
        match self.editable(0, ino) {
            Some(found) => {
                let (served, edit, n) = found?;
                edit.fsync(&served.view, n, datasync).map_err(errno)
            }
            // Layers are always durable.
            None => Ok(()),
        }
    }

    /// The kernel evicted an inode it had had `nlookup` entries of: an editable view drops
    /// the node at zero (see [`crate::edit`]). The root (shared by every view of a routed
    /// mount) is never forgotten before the unmount.
    pub(super) fn edit_forget(&self, ino: u64, nlookup: u64) {
        if ino == 1 {
            return;
        }
        let (id, n) = super::ops::split(ino);
        let view = match &self.mode {
            super::Mode::Single(v) if v.view.id == id => Some(v.clone()),
            super::Mode::Single(_) => None,
            super::Mode::Routed { router, .. } => router.view(id),
        };
        if let Some(edit) = view.as_ref().and_then(|v| v.edit()) {
            edit.forget(n, nlookup);
        }
    }

    pub(super) fn op_create(
        &self,
        req: &fuser::Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Result<(Entry, Opened), Errno> {
        let (served, edit, dir) = self.for_write(req.pid(), parent)?;
        let attr = edit
            .create(&served.view, dir, name, mode & !umask, flags, caller(req))
            .map_err(errno)?;
        // Like every open (see `op_open`): I/O goes by inode, the handle is not used.
        let opened = Opened {
            fh: 0,
            flags: FopenFlags::FOPEN_KEEP_CACHE,
        };
        Ok((self.entry(&served.view, parent, &attr), opened))
    }

    pub(super) fn op_mknod(
        &self,
        req: &fuser::Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> Result<Entry, Errno> {
        let (served, edit, dir) = self.for_write(req.pid(), parent)?;
        let mode = (mode & !0o7777) | (mode & 0o7777 & !umask);
        let attr = edit
            .mknod(&served.view, dir, name, mode, rdev.into(), caller(req))
            .map_err(errno)?;
        Ok(self.entry(&served.view, parent, &attr))
    }

    pub(super) fn op_mkdir(
        &self,
        req: &fuser::Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> Result<Entry, Errno> {
        let (served, edit, dir) = self.for_write(req.pid(), parent)?;
        let attr = edit
            .mkdir(&served.view, dir, name, mode & !umask, caller(req))
            .map_err(errno)?;
        Ok(self.entry(&served.view, parent, &attr))
    }

    pub(super) fn op_symlink(
        &self,
        req: &fuser::Request,
        parent: u64,
        name: &OsStr,
        target: &Path,
    ) -> Result<Entry, Errno> {
        let (served, edit, dir) = self.for_write(req.pid(), parent)?;
        let attr = edit
            .symlink(&served.view, dir, name, target, caller(req))
            .map_err(errno)?;
        Ok(self.entry(&served.view, parent, &attr))
    }

    pub(super) fn op_link(
        &self,
        req: &fuser::Request,
        ino: u64,
        newparent: u64,
        newname: &OsStr,
    ) -> Result<Entry, Errno> {
        let (served, edit, n) = self.for_write(req.pid(), ino)?;
        let (_, _, dir) = self.for_write(req.pid(), newparent)?;
        let attr = edit.link(&served.view, n, dir, newname).map_err(errno)?;
        Ok(self.entry(&served.view, newparent, &attr))
    }

    pub(super) fn op_remove(
        &self,
        req: &fuser::Request,
        parent: u64,
        name: &OsStr,
        dir: bool,
    ) -> Result<(), Errno> {
        let (served, edit, p) = self.for_write(req.pid(), parent)?;
        edit.remove(&served.view, p, name, dir).map_err(errno)
    }

    pub(super) fn op_rename(
        &self,
        req: &fuser::Request,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: fuser::RenameFlags,
    ) -> Result<(), Errno> {
        let (served, edit, p) = self.for_write(req.pid(), parent)?;
        let (_, other, np) = self.for_write(req.pid(), newparent)?;
        if !Arc::ptr_eq(&edit, &other) {
            return Err(Errno::EXDEV);
        }
        let noreplace = super::rename_flags::noreplace(flags)?;
        edit.rename(&served.view, p, name, np, newname, noreplace)
            .map_err(errno)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn op_setattr(
        &self,
        req: &fuser::Request,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
    ) -> Result<(Duration, FileAttr), Errno> {
        let (served, edit, n) = self.for_write(req.pid(), ino)?;
        let times = match (atime, mtime) {
            (None, None) => None,
            (a, m) => Some((timespec(a), timespec(m))),
        };
        let mut attr = edit
            .setattr(&served.view, n, mode, uid, gid, size, times)
            .map_err(errno)?;
        // A truncate by anyone but root drops setuid/setgid, as the kernel would have.
        let perm = file_attr(&served.view, &attr).perm;
        if size.is_some() && mode.is_none() && req.uid() != 0 && perm & 0o6000 != 0 {
            let mode = Some(u32::from(perm & 0o1777));
            attr = edit
                .setattr(&served.view, n, mode, None, None, None, None)
                .map_err(errno)?;
        }
        Ok((
            self.ttl(ino == 1).min(EDIT_TTL),
            file_attr(&served.view, &attr),
        ))
    }

    pub(super) fn edit_getxattr(
        &self,
        req: &fuser::Request,
        ino: u64,
        name: &OsStr,
        size: u32,
    ) -> Option<Result<Xattr, Errno>> {
        Some(
            self.editable(req.pid(), ino)?
                .and_then(|(served, edit, n)| {
                    let value = edit.getxattr(&served.view, n, name).map_err(errno)?;
                    Xattr::answer(&value, size)
                }),
        )
    }

    pub(super) fn edit_listxattr(
        &self,
        req: &fuser::Request,
        ino: u64,
        size: u32,
    ) -> Option<Result<Xattr, Errno>> {
        Some(
            self.editable(req.pid(), ino)?
                .and_then(|(served, edit, n)| {
                    let names = edit.listxattr(&served.view, n).map_err(errno)?;
                    Xattr::answer(&names, size)
                }),
        )
    }

    pub(super) fn op_setxattr(
        &self,
        req: &fuser::Request,
        ino: u64,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<(), Errno> {
        let (served, edit, n) = self.for_write(req.pid(), ino)?;
        edit.setxattr(&served.view, n, name, value, flags)
            .map_err(errno)
    }

    pub(super) fn op_removexattr(
        &self,
        req: &fuser::Request,
        ino: u64,
        name: &OsStr,
    ) -> Result<(), Errno> {
        let (served, edit, n) = self.for_write(req.pid(), ino)?;
        edit.removexattr(&served.view, n, name).map_err(errno)
    }

    pub(super) fn edit_statfs(
        &self,
        req: &fuser::Request,
        ino: u64,
    ) -> Option<Result<Statfs, Errno>> {
        Some(self.editable(req.pid(), ino)?.and_then(|(_, edit, _)| {
            let st = edit.statfs().map_err(errno)?;
            Ok(Statfs {
                blocks: st.f_blocks * st.f_frsize / 4096,
                files: st.f_files,
                bsize: 4096,
            })
        }))
    }

    pub(super) fn edit_opendir(
        &self,
        req: &fuser::Request,
        ino: u64,
    ) -> Option<Result<Opened, Errno>> {
        Some(
            self.editable(req.pid(), ino)?
                .and_then(|(served, edit, n)| {
                    let fh = edit.opendir(&served.view, n).map_err(errno)?;
                    Ok(Opened {
                        fh,
                        flags: FopenFlags::empty(),
                    })
                }),
        )
    }

    /// `false` when the inode is a read-only view's.
    pub(super) fn edit_releasedir(&self, req: &fuser::Request, ino: u64, fh: u64) -> bool {
        match self.editable(req.pid(), ino) {
            Some(Ok((_, edit, _))) => {
                edit.releasedir(fh);
                true
            }
            Some(Err(_)) => true,
            None => false,
        }
    }

    pub(super) fn edit_listing(
        &self,
        req: &fuser::Request,
        ino: u64,
        fh: u64,
        offset: u64,
    ) -> Option<Result<EditListing, Errno>> {
        Some(
            self.editable(req.pid(), ino)?
                .and_then(|(served, edit, _)| {
                    let (dir, entries) = edit.readdir(&served.view, fh, offset).map_err(errno)?;
                    let parent = edit.parent(dir);
                    Ok(EditListing {
                        ttl: self.ttl(ino == 1).min(EDIT_TTL),
                        served,
                        edit,
                        dir,
                        parent,
                        entries,
                        offset,
                    })
                }),
        )
    }
}

fn timespec(t: Option<TimeOrNow>) -> rustix::fs::Timespec {
    match t {
        None => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        Some(TimeOrNow::Now) => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        Some(TimeOrNow::SpecificTime(t)) => {
            let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
            rustix::fs::Timespec {
                tv_sec: d.as_secs() as _,
                tv_nsec: d.subsec_nanos() as _,
            }
        }
    }
}

/// FUSE attributes of an editable view's node.
pub(super) fn file_attr(view: &View, a: &Attr) -> FileAttr {
    let ino = ino_of(view, a.node);
    match a.source {
        AttrSource::Upper(st) => stat_attr(ino, &st),
        AttrSource::Lower(l) => FileAttr {
            ino: INodeNo(ino),
            ..lower_attr(view, l)
        },
        AttrSource::Missing => FileAttr {
            ino: INodeNo(ino),
            ..lower_attr(view, crate::view::ROOT)
        },
    }
}

#[allow(clippy::unnecessary_cast)] // stat field widths differ across platforms
fn stat_attr(ino: u64, st: &rustix::fs::Stat) -> FileAttr {
    let time = |s: i64, ns: i64| {
        if s >= 0 {
            UNIX_EPOCH + Duration::new(s as u64, ns as u32)
        } else {
            UNIX_EPOCH - Duration::from_secs(s.unsigned_abs())
        }
    };
    let mtime = time(st.st_mtime as i64, st.st_mtime_nsec as i64);
    let kind = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::Directory => FileType::Directory,
        rustix::fs::FileType::Symlink => FileType::Symlink,
        rustix::fs::FileType::Fifo => FileType::NamedPipe,
        rustix::fs::FileType::Socket => FileType::Socket,
        rustix::fs::FileType::CharacterDevice => FileType::CharDevice,
        rustix::fs::FileType::BlockDevice => FileType::BlockDevice,
        _ => FileType::RegularFile,
    };
    FileAttr {
        ino: INodeNo(ino),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime as i64, st.st_atime_nsec as i64),
        mtime,
        ctime: time(st.st_ctime as i64, st.st_ctime_nsec as i64),
        crtime: mtime,
        kind,
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: 4096,
        flags: 0,
    }
}
