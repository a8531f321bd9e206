//! Changing names: creating entries (files, FIFOs, sockets, directories, symlinks, hard
//! links), removing and renaming them. Whatever acts on a name uses the (parent, name) of the
//! request, never a name a node remembers: a hard-linked file has several (see [`super`]).

use super::files::Open;
use super::{
    Attr, AttrSource, Caller, Edit, Nodes, ROOT, Result, UpperDir, errno, inode_of, lstat,
};
use crate::scratch::{Attrs, check_name, whiteout};
use crate::view::{Data, View};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

impl Edit {
    /// Create a new regular file (its descriptor kept for the writes to come). On a name
    /// that exists, `O_CREAT` without `O_EXCL` opens it: `O_TRUNC` then empties it here, as
    /// the kernel takes the file for new.
    pub fn create(
        &self,
        view: &View,
        dir: u32,
        name: &OsStr,
        mode: u32,
        flags: i32,
        caller: Caller,
    ) -> Result<Attr> {
        let (updir, whited_out) = match self.prepare_new(view, dir, name) {
            Ok(d) => d,
            Err(Errno::EXIST) if flags & libc::O_EXCL == 0 => {
                // Handed to the kernel like a lookup's entry: counted, and given back if the
                // answer is an error after all.
                let attr = self.lookup_entry(view, dir, name)?;
                let opened = if attr.source.is_dir(view) {
                    Err(Errno::ISDIR)
                } else if flags & libc::O_ACCMODE != libc::O_RDONLY && flags & libc::O_TRUNC != 0 {
                    self.setattr(view, attr.node, None, None, None, Some(0), None)
                } else {
                    Ok(attr)
                };
                if opened.is_err() {
                    self.forget(attr.node, 1);
                }
                return opened;
            }
            Err(e) => return Err(e),
        };
        let oflags =
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(
            &updir,
            name,
            oflags,
            Mode::from_raw_mode((mode & 0o7777) as _),
        )?;
        self.give(&updir, name, caller, Self::inherited_gid(&updir));
        let st = rustix::fs::fstat(&fd)?;
        let node = self.made(&updir, dir, name, whited_out)?;
        self.files.keep(node, Open::scratch(Arc::new(fd.into())));
        let source = AttrSource::Upper(st);
        Ok(Attr { node, source })
    }

    pub fn mknod(
        &self,
        view: &View,
        dir: u32,
        name: &OsStr,
        mode: u32,
        rdev: u64,
        caller: Caller,
    ) -> Result<Attr> {
        // The kernel has already refused a device node to a caller without CAP_MKNOD, as it
        // does on any file system; a daemon without it gets EPERM from mknodat itself.
        let kind = FileType::from_raw_mode(mode as _);
        let (updir, whited_out) = self.prepare_new(view, dir, name)?;
        make_node(
            &updir,
            name,
            kind,
            Mode::from_raw_mode((mode & 0o7777) as _),
            rdev,
        )?;
        self.give(&updir, name, caller, Self::inherited_gid(&updir));
        self.made_attr(&updir, dir, name, whited_out)
    }

    /// [`Edit::made`], with the new entry's attributes.
    fn made_attr(&self, updir: &File, dir: u32, name: &OsStr, whited_out: bool) -> Result<Attr> {
        let st = lstat(updir, name)?.ok_or(Errno::NOENT)?;
        let node = self.made(updir, dir, name, whited_out)?;
        let source = AttrSource::Upper(st);
        Ok(Attr { node, source })
    }

    pub fn mkdir(
        &self,
        view: &View,
        dir: u32,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> Result<Attr> {
        let (updir, whited_out) = self.prepare_new(view, dir, name)?;
        let now = SystemTime::now();
        let attrs = Attrs {
            mode: mode & 0o7777,
            uid: caller.uid,
            gid: Self::inherited_gid(&updir).unwrap_or(caller.gid),
            atime: now,
            mtime: now,
        };
        // A layer entry under this name was deleted (else the name would not be free): the new
        // directory must not show the old one's contents.
        let opaque = whited_out;
        let fd = self
            .scratch
            .make_dir(&updir, name, &attrs, opaque)
            .map_err(errno)?;
        let st = rustix::fs::fstat(&fd)?;
        let node = self.made(&updir, dir, name, whited_out)?;
        self.keep_dir(node, fd, Some(opaque))?;
        let source = AttrSource::Upper(st);
        Ok(Attr { node, source })
    }

    pub fn symlink(
        &self,
        view: &View,
        dir: u32,
        name: &OsStr,
        target: &Path,
        caller: Caller,
    ) -> Result<Attr> {
        let (updir, whited_out) = self.prepare_new(view, dir, name)?;
        rustix::fs::symlinkat(target, &updir, name)?;
        self.give(&updir, name, caller, Self::inherited_gid(&updir));
        self.made_attr(&updir, dir, name, whited_out)
    }

    pub fn link(&self, view: &View, n: u32, dir: u32, name: &OsStr) -> Result<Attr> {
        if self.attr_source(view, n)?.is_dir(view) {
            return Err(Errno::PERM);
        }
        let (updir, whited_out) = self.prepare_new(view, dir, name)?;
        let (src_dir, src_name) = self.copy_up(view, n)?;
        rustix::fs::linkat(&src_dir, &src_name, &updir, name, AtFlags::empty())?;
        if whited_out {
            whiteout::remove(&updir, name).map_err(errno)?;
        }
        self.changed();
        // The new name is the same file: the same node, so the kernel sees one inode.
        let st = lstat(&updir, name)?.ok_or(Errno::NOENT)?;
        let mut nodes = self.nodes.write().unwrap();
        let src_parent = src_parent_of(&nodes, n);
        nodes.insert_linked(src_parent, &src_name, inode_of(&st), false);
        let node = nodes.insert_linked(dir, name, inode_of(&st), true);
        drop(nodes);
        let source = AttrSource::Upper(st);
        Ok(Attr { node, source })
    }

    pub fn readlink(&self, view: &View, n: u32) -> Result<Vec<u8>> {
        match self.attr_source(view, n)? {
            AttrSource::Lower(l) => match &view.node(l).ok_or(Errno::STALE)?.data {
                Data::Symlink { target } => Ok(target.to_vec()),
                _ => Err(Errno::INVAL),
            },
            AttrSource::Upper(_) => {
                let (parent, name) = self.parent_and_name(n)?;
                let dir = self.upper_dir(parent)?.ok_or(Errno::NOENT)?;
                Ok(rustix::fs::readlinkat(&dir.fd, &name, Vec::new())?.into_bytes())
            }
            AttrSource::Missing => Err(Errno::NOENT),
        }
    }

    // ---- removing and renaming ---------------------------------------------------------------

    /// `unlink` (`dir == false`) or `rmdir` (`dir == true`) of `name` in directory `parent`.
    pub fn remove(&self, view: &View, parent: u32, name: &OsStr, dir: bool) -> Result<()> {
        let attr = self.lookup(view, parent, name)?;
        let is_dir = attr.source.is_dir(view);
        match (dir, is_dir) {
            (false, true) => return Err(Errno::ISDIR),
            (true, false) => return Err(Errno::NOTDIR),
            _ => {}
        }
        if is_dir && !self.merged(view, attr.node)?.is_empty() {
            return Err(Errno::NOTEMPTY);
        }
        let updir = self.upper_dir_made(view, parent)?;
        let open = self.last_open(view, &attr);
        // The whiteout first: a crash after it leaves the entry deleted or, if the scratch
        // entry is still there, shown (an entry wins over its whiteout) — never half gone.
        if self.lower_has(view, parent, name) {
            whiteout::add(&updir, name).map_err(errno)?;
        }
        if let AttrSource::Upper(_) = attr.source {
            if is_dir {
                let sub = crate::scratch::open_child_dir(&updir, name).map_err(errno)?;
                whiteout::clear_records(&sub).map_err(errno)?;
                rustix::fs::unlinkat(&updir, name, AtFlags::REMOVEDIR)?;
                self.forget_dir(attr.node);
            } else {
                rustix::fs::unlinkat(&updir, name, AtFlags::empty())?;
            }
        }
        let mut nodes = self.nodes.write().unwrap();
        nodes.forget_name(parent, name);
        self.orphan_if_gone(&nodes, attr.node, open);
        drop(nodes);
        self.changed();
        Ok(())
    }

    /// Rename `name` in `parent` to `newname` in `newparent`. `noreplace`: `EEXIST` if the
    /// new name is taken. A directory with a layer part answers `EXDEV`.
    pub fn rename(
        &self,
        view: &View,
        parent: u32,
        name: &OsStr,
        newparent: u32,
        newname: &OsStr,
        noreplace: bool,
    ) -> Result<()> {
        check_name(newname)?;
        let src = self.lookup(view, parent, name)?;
        let src_is_dir = src.source.is_dir(view);
        if src_is_dir && self.lower(src.node).is_some() {
            return Err(Errno::XDEV);
        }
        if src_is_dir && self.is_ancestor(src.node, newparent) {
            return Err(Errno::INVAL);
        }
        let dst = match self.lookup(view, newparent, newname) {
            Ok(a) => Some(a),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(e),
        };
        if let Some(dst) = &dst {
            if dst.node == src.node {
                return Ok(());
            }
            if noreplace {
                return Err(Errno::EXIST);
            }
            match (src_is_dir, dst.source.is_dir(view)) {
                (false, true) => return Err(Errno::ISDIR),
                (true, false) => return Err(Errno::NOTDIR),
                (true, true) if !self.merged(view, dst.node)?.is_empty() => {
                    return Err(Errno::NOTEMPTY);
                }
                _ => {}
            }
        }
        let src_dir = self.upper_entry(view, parent, &src)?;
        let src_name = name;
        let dst_dir = self.upper_dir_made(view, newparent)?;
        if let Some(dst) = &dst
            && dst.source.is_dir(view)
            && let AttrSource::Upper(_) = dst.source
        {
            // Only whiteouts and markers are left in it (it looks empty): clear them so the
            // kernel's rename can replace it.
            let sub = crate::scratch::open_child_dir(&dst_dir, newname).map_err(errno)?;
            whiteout::clear_records(&sub).map_err(errno)?;
        }
        if src_is_dir && self.lower_has(view, newparent, newname) {
            // The moved directory must hide the layers' directory it lands on.
            let sub = crate::scratch::open_child_dir(&src_dir, src_name).map_err(errno)?;
            whiteout::set_opaque(&sub).map_err(errno)?;
        }
        let replaced = dst.as_ref().and_then(|d| self.last_open(view, d));
        rustix::fs::renameat(&src_dir, src_name, &dst_dir, newname)?;
        if src_is_dir {
            // It may have become opaque; its descriptor is still right, its flag not.
            self.forget_dir(src.node);
        }
        if let Some(dst) = &dst {
            self.forget_dir(dst.node);
        }
        // After the rename: a crash in between shows the layers' old entry again next to the
        // new one, and loses nothing.
        if self.lower_has(view, parent, name) {
            whiteout::add(&src_dir, name).map_err(errno)?;
        }
        if self.lower_has(view, newparent, newname) {
            whiteout::remove(&dst_dir, newname).map_err(errno)?;
        }
        let mut nodes = self.nodes.write().unwrap();
        nodes.rename(parent, name, newparent, newname);
        if let Some(dst) = &dst {
            self.orphan_if_gone(&nodes, dst.node, replaced);
        }
        drop(nodes);
        self.changed();
        Ok(())
    }

    /// The scratch directory of `parent`, holding the entry a lookup of a name in it gave as
    /// `attr` (copied up first if it is a layer entry). A hard-linked file is one node with
    /// several names, and the node remembers only one of them: an operation on a name must
    /// use the (parent, name) the kernel gave, never the node's.
    fn upper_entry(&self, view: &View, parent: u32, attr: &Attr) -> Result<Arc<UpperDir>> {
        if let AttrSource::Lower(_) = attr.source {
            // A layer entry's node is its one name (layers hold no links): the copy lands at
            // (parent, name).
            self.copy_up(view, attr.node)?;
        }
        self.upper_dir(parent)?.ok_or(Errno::NOENT)
    }

    fn is_ancestor(&self, a: u32, mut n: u32) -> bool {
        let nodes = self.nodes.read().unwrap();
        loop {
            if n == a {
                return true;
            }
            if n == ROOT {
                return false;
            }
            match nodes.get(n) {
                Some(r) => n = r.parent,
                None => return false,
            }
        }
    }
}

/// A regular file, FIFO, socket or device node (what `mknod` may make).
pub(super) fn make_node(
    dir: &File,
    name: &OsStr,
    kind: FileType,
    mode: Mode,
    rdev: u64,
) -> Result<()> {
    if kind == FileType::RegularFile {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        return rustix::fs::openat(dir, name, flags | OFlags::CLOEXEC, mode).map(drop);
    }
    if !matches!(
        kind,
        FileType::Fifo | FileType::Socket | FileType::CharacterDevice | FileType::BlockDevice
    ) {
        return Err(Errno::INVAL);
    }
    let name = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(name))
        .map_err(|_| Errno::INVAL)?;
    crate::sys::mknodat(dir, &name, kind, mode, rdev)
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
}

fn src_parent_of(nodes: &Nodes, n: u32) -> u32 {
    nodes.get(n).map_or(ROOT, |r| r.parent)
}
