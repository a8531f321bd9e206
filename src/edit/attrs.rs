//! What a node's attributes are: where they come from ([`AttrSource`]), and changing them
//! (`setattr`, extended attributes), in scratch, after a copy-up.

use super::{Edit, ROOT, Result, errno, open_at};
use crate::view::{Data, View};
use rustix::fs::{AtFlags, FileType, Mode, Stat};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

/// A node's attributes: a scratch entry's `lstat`, or a layer node (the read path's
/// attributes for it).
#[derive(Clone, Copy)]
// FreeBSD's `stat` is 224 bytes; an answer lives for one request, and a box per lookup would
// cost more than the copy.
#[allow(clippy::large_enum_variant)]
pub enum AttrSource {
    Upper(Stat),
    Lower(u32),
    /// Not known yet (a listing entry before its `lstat`).
    Missing,
}

impl std::fmt::Debug for AttrSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttrSource::Upper(st) => write!(f, "Upper(mode {:o})", st.st_mode),
            AttrSource::Lower(n) => write!(f, "Lower({n})"),
            AttrSource::Missing => write!(f, "Missing"),
        }
    }
}

impl AttrSource {
    pub fn file_type(&self, view: &View) -> Option<FileType> {
        match self {
            AttrSource::Upper(st) => Some(FileType::from_raw_mode(st.st_mode)),
            AttrSource::Lower(n) => view.node(*n).map(|node| match node.data {
                Data::Dir { .. } => FileType::Directory,
                Data::File { .. } => FileType::RegularFile,
                Data::Symlink { .. } => FileType::Symlink,
                Data::Fifo => FileType::Fifo,
                Data::Device(d) if d.block => FileType::BlockDevice,
                Data::Device(_) => FileType::CharacterDevice,
            }),
            AttrSource::Missing => None,
        }
    }

    pub fn is_dir(&self, view: &View) -> bool {
        self.file_type(view) == Some(FileType::Directory)
    }
}

/// A node and its attributes' source.
#[derive(Clone, Copy, Debug)]
pub struct Attr {
    pub node: u32,
    pub source: AttrSource,
}

impl Edit {
    // ---- attributes --------------------------------------------------------------------------

    /// chmod, chown, truncate and utimens, each optional, after a copy-up.
    #[allow(clippy::too_many_arguments)]
    pub fn setattr(
        &self,
        view: &View,
        n: u32,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        times: Option<(rustix::fs::Timespec, rustix::fs::Timespec)>,
    ) -> Result<Attr> {
        // A file being written (or an orphan, which has nothing else): fchown, fchmod,
        // ftruncate, futimens on its descriptor, no lookups.
        let open = match self.files.is_orphan(n) {
            true => Some(self.writer(view, n)?),
            false => self.files.get(n).and_then(|o| o.writable()),
        };
        if let Some(f) = open {
            let f = f.as_ref();
            if uid.is_some() || gid.is_some() {
                let (u, g) = (
                    uid.map(rustix::fs::Uid::from_raw),
                    gid.map(rustix::fs::Gid::from_raw),
                );
                rustix::fs::fchown(f, u, g)?;
            }
            if let Some(mode) = mode {
                rustix::fs::fchmod(f, Mode::from_raw_mode((mode & 0o7777) as _))?;
            }
            if let Some(size) = size {
                rustix::fs::ftruncate(f, size)?;
            }
            if let Some((atime, mtime)) = times {
                let ts = rustix::fs::Timestamps {
                    last_access: atime,
                    last_modification: mtime,
                };
                rustix::fs::futimens(f, &ts)?;
            }
            self.changed();
            let source = AttrSource::Upper(rustix::fs::fstat(f)?);
            return Ok(Attr { node: n, source });
        }
        let (dir, name, own) = if n == ROOT {
            let root = self.upper_dir(ROOT)?.ok_or(Errno::NOENT)?;
            (root, OsString::from("."), true)
        } else {
            // `truncate -s 0` of a layer file copies nothing up.
            let keep = size != Some(0);
            let (d, name) = self.copy_up_as(view, n, keep)?;
            (d, name, false)
        };
        let kind = FileType::from_raw_mode(
            rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW)?.st_mode,
        );
        if uid.is_some() || gid.is_some() {
            rustix::fs::chownat(
                &dir,
                &name,
                uid.map(rustix::fs::Uid::from_raw),
                gid.map(rustix::fs::Gid::from_raw),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        if let Some(mode) = mode {
            if kind == FileType::Symlink {
                return Err(Errno::OPNOTSUPP);
            }
            match own {
                true => rustix::fs::fchmod(&dir.fd, Mode::from_raw_mode((mode & 0o7777) as _))?,
                // By name: sockets and FIFOs are not opened (see `scratch::chmod_at`).
                false => crate::scratch::chmod_at(&dir, &name, mode)?,
            }
        }
        if let Some(size) = size {
            if kind == FileType::Directory {
                return Err(Errno::ISDIR);
            }
            let f = open_at(&dir, &name, libc::O_WRONLY | libc::O_NONBLOCK)?;
            rustix::fs::ftruncate(&f, size)?;
        }
        if let Some((atime, mtime)) = times {
            let ts = rustix::fs::Timestamps {
                last_access: atime,
                last_modification: mtime,
            };
            rustix::fs::utimensat(&dir, &name, &ts, AtFlags::SYMLINK_NOFOLLOW)?;
        }
        self.changed();
        self.getattr(view, n)
    }

    // ---- extended attributes -------------------------------------------------------------------

    /// Layer entries have none; scratch files and directories keep theirs.
    pub fn getxattr(&self, view: &View, n: u32, name: &OsStr) -> Result<Vec<u8>> {
        if !self.xattrs.load(Relaxed) {
            return Err(NO_XATTR);
        }
        match self.xattr_file(view, n, false)? {
            None => Err(NO_XATTR),
            Some(f) => xattr::get(&f, name),
        }
    }

    pub fn listxattr(&self, view: &View, n: u32) -> Result<Vec<u8>> {
        if !self.xattrs.load(Relaxed) {
            return Ok(Vec::new());
        }
        match self.xattr_file(view, n, false)? {
            None => Ok(Vec::new()),
            Some(f) => xattr::list(&f),
        }
    }

    pub fn setxattr(
        &self,
        view: &View,
        n: u32,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        let f = self.xattr_file(view, n, true)?.ok_or(Errno::NOTSUP)?;
        if !self.xattrs.load(Relaxed) {
            self.runtime
                .mark_xattrs_used()
                .map_err(|e| match e.errno() {
                    Some(n) => Errno::from_raw_os_error(n),
                    None => Errno::IO,
                })?;
            self.xattrs.store(true, Relaxed);
        }
        xattr::set(&f, name, value, flags)
    }

    pub fn removexattr(&self, view: &View, n: u32, name: &OsStr) -> Result<()> {
        if !self.xattrs.load(Relaxed) {
            return Err(NO_XATTR);
        }
        match self.xattr_file(view, n, false)? {
            None => Err(NO_XATTR),
            Some(f) => xattr::remove(&f, name),
        }
    }

    /// The scratch file or directory of node `n`, opened for its xattrs (copied up first
    /// with `copy`); `None` for a layer entry. Symlinks have no user xattrs on Linux.
    fn xattr_file(&self, view: &View, n: u32, copy: bool) -> Result<Option<File>> {
        if n == ROOT {
            return Ok(Some(self.scratch.dir(Path::new("")).map_err(errno)?));
        }
        let source = self.attr_source(view, n)?;
        if let AttrSource::Lower(_) = source
            && !copy
        {
            return Ok(None);
        }
        let (dir, name) = self.copy_up(view, n)?;
        let st = rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW)?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile | FileType::Directory => Ok(Some(open_at(
                &dir,
                &name,
                libc::O_RDONLY | libc::O_NONBLOCK,
            )?)),
            _ => Err(Errno::NOTSUP),
        }
    }
}

/// "No such attribute": `ENODATA` on Linux, `ENOATTR` on the BSDs and macOS.
#[cfg(any(target_os = "linux", target_os = "android"))]
const NO_XATTR: Errno = Errno::NODATA;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const NO_XATTR: Errno = Errno::NOATTR;

#[cfg(zkit_xattr)]
mod xattr {
    use super::Result;
    use rustix::fs::XattrFlags;
    use std::ffi::OsStr;
    use std::fs::File;

    pub fn get(f: &File, name: &OsStr) -> Result<Vec<u8>> {
        loop {
            let mut buf = vec![0u8; rustix::fs::fgetxattr_query(f, name)?];
            match rustix::fs::fgetxattr(f, name, &mut buf[..]) {
                Ok(n) => return Ok(buf[..n].to_vec()),
                Err(rustix::io::Errno::RANGE) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn list(f: &File) -> Result<Vec<u8>> {
        loop {
            let mut buf = vec![0u8; rustix::fs::flistxattr_query(f)?];
            match rustix::fs::flistxattr(f, &mut buf[..]) {
                Ok(n) => return Ok(buf[..n].to_vec()),
                Err(rustix::io::Errno::RANGE) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn set(f: &File, name: &OsStr, value: &[u8], flags: i32) -> Result<()> {
        rustix::fs::fsetxattr(f, name, value, XattrFlags::from_bits_retain(flags as _))
    }

    pub fn remove(f: &File, name: &OsStr) -> Result<()> {
        rustix::fs::fremovexattr(f, name)
    }
}

#[cfg(not(zkit_xattr))]
mod xattr {
    use super::Result;
    use rustix::io::Errno;
    use std::ffi::OsStr;
    use std::fs::File;

    pub fn get(_f: &File, _name: &OsStr) -> Result<Vec<u8>> {
        Err(Errno::NOTSUP)
    }
    pub fn list(_f: &File) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }
    pub fn set(_f: &File, _name: &OsStr, _value: &[u8], _flags: i32) -> Result<()> {
        Err(Errno::NOTSUP)
    }
    pub fn remove(_f: &File, _name: &OsStr) -> Result<()> {
        Err(Errno::NOTSUP)
    }
}
