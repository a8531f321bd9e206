//! What a node's bytes are: its descriptor (a scratch file, or its layer blob until a write
//! copies it up), reads, writes, fallocate and fsync through it, and the descriptors that
//! keep a removed file's data for whoever still has it open (see [`super::files`]).

use super::files::Open;
use super::{Attr, AttrSource, Edit, Nodes, Result, errno, open_at};
use crate::view::{Data, View};
use rustix::fs::{FileType, Mode};
use rustix::io::Errno;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

impl Edit {
    /// Node `n`'s descriptor for reading: its scratch file (opened read-write where it can be,
    /// so a later write finds it ready), else its layer blob.
    fn reader(&self, view: &View, n: u32) -> Result<Open> {
        self.retry_orphan(n, || self.reader_once(view, n))
    }

    fn reader_once(&self, view: &View, n: u32) -> Result<Open> {
        if let Some(open) = self.files.get(n) {
            return Ok(open);
        }
        let open = match self.attr_source(view, n)? {
            AttrSource::Upper(st) => {
                match FileType::from_raw_mode(st.st_mode) {
                    FileType::RegularFile => {}
                    FileType::Directory => return Err(Errno::ISDIR),
                    _ => return Err(Errno::INVAL),
                }
                let (parent, name) = self.parent_and_name(n)?;
                let dir = self.upper_dir(parent)?.ok_or(Errno::NOENT)?;
                match open_at(&dir, &name, libc::O_RDWR) {
                    Ok(f) => Open::scratch(Arc::new(f)),
                    // An unprivileged daemon may not write a read-only file of its user's.
                    Err(Errno::ACCESS | Errno::PERM) => Open::Scratch {
                        file: Arc::new(open_at(&dir, &name, libc::O_RDONLY)?),
                        writable: false,
                    },
                    Err(e) => return Err(e),
                }
            }
            AttrSource::Lower(l) => match &view.node(l).ok_or(Errno::STALE)?.data {
                Data::File { digest, .. } => Open::Layer {
                    lower: l,
                    file: match digest {
                        Some(d) => Some(Arc::new(view.open_blob(d).map_err(errno)?)),
                        None => None,
                    },
                },
                Data::Dir { .. } => return Err(Errno::ISDIR),
                // The kernel does FIFO and device I/O itself and never opens them through us.
                Data::Symlink { .. } | Data::Fifo | Data::Device(_) => return Err(Errno::INVAL),
            },
            AttrSource::Missing => return Err(Errno::NOENT),
        };
        self.files.keep(n, open.clone());
        Ok(open)
    }

    /// Node `n`'s scratch file, open for writing: a layer file is copied up first.
    pub(super) fn writer(&self, view: &View, n: u32) -> Result<Arc<File>> {
        self.retry_orphan(n, || self.writer_once(view, n))
    }

    fn writer_once(&self, view: &View, n: u32) -> Result<Arc<File>> {
        if let Some(open) = self.files.get(n) {
            if let Some(file) = open.writable() {
                return Ok(file);
            }
            if let Open::Layer { lower, file } = &open
                && self.files.is_orphan(n)
            {
                // A removed layer file someone still has open: it gets a scratch copy of its
                // own, with no name.
                let node = view.node(*lower).ok_or(Errno::STALE)?;
                let attrs = self.layer_attrs(node);
                let copy = self
                    .scratch
                    .anonymous_copy(file.as_deref(), &attrs)
                    .map_err(errno)?;
                let file = Arc::new(copy);
                self.files.keep(n, Open::scratch(file.clone()));
                return Ok(file);
            }
        }
        let (dir, name) = self.copy_up(view, n)?;
        let file = Arc::new(open_at(&dir, &name, libc::O_RDWR)?);
        self.files.keep(n, Open::scratch(file.clone()));
        Ok(file)
    }

    /// Run `op` again if it failed because node `n` lost its last name meanwhile: it is an
    /// orphan now, with its descriptor kept.
    fn retry_orphan<T>(&self, n: u32, op: impl Fn() -> Result<T>) -> Result<T> {
        match op() {
            Err(Errno::STALE | Errno::NOENT) if self.files.is_orphan(n) => op(),
            r => r,
        }
    }

    /// Node `n`'s content for reading: `None` for an empty layer file.
    pub fn read_file(&self, view: &View, n: u32) -> Result<Option<Arc<File>>> {
        Ok(match self.reader(view, n)? {
            Open::Scratch { file, .. } => Some(file),
            Open::Layer { file, .. } => file,
        })
    }

    /// Write `data` at `offset` of node `n`. `kill_suidgid`: the writer lacks `CAP_FSETID`
    /// (the kernel says so with FUSE_HANDLE_KILLPRIV_V2), so setuid and setgid go, as the
    /// kernel would have done; the daemon writes as root, which would keep them.
    pub fn write(
        &self,
        view: &View,
        n: u32,
        offset: u64,
        data: &[u8],
        kill_suidgid: bool,
    ) -> Result<()> {
        let file = self.writer(view, n)?;
        if kill_suidgid {
            drop_suidgid(&file)?;
        }
        file.write_all_at(data, offset).map_err(errno)
    }

    /// `fallocate(2)` of node `n` with the caller's `mode` bits, passed to its scratch file
    /// (a layer file is copied up first): the scratch file system answers for every mode,
    /// `EOPNOTSUPP` included, as overlayfs leaves it to its upper file system. (The kernel's
    /// FUSE client itself refuses `COLLAPSE_RANGE` and `INSERT_RANGE` before asking.)
    /// `kill_suidgid` as for [`Edit::write`]: the kernel clears setuid and setgid on a
    /// fallocate as on a write, but tells a FUSE daemon only of writes.
    pub fn fallocate(
        &self,
        view: &View,
        n: u32,
        offset: u64,
        length: u64,
        mode: i32,
        kill_suidgid: bool,
    ) -> Result<()> {
        let file = self.writer(view, n)?;
        let flags = rustix::fs::FallocateFlags::from_bits_retain(mode as _);
        match rustix::fs::fallocate(file.as_ref(), flags, offset, length) {
            // ENOSYS would make the kernel stop asking, for every file of the mount.
            Err(Errno::NOSYS) => return Err(Errno::OPNOTSUPP),
            r => r?,
        }
        if kill_suidgid {
            drop_suidgid(&file)?;
        }
        Ok(())
    }

    /// Flush node `n`'s data to disk; a layer file is durable already.
    pub fn fsync(&self, view: &View, n: u32, datasync: bool) -> Result<()> {
        let Open::Scratch { file, .. } = self.reader(view, n)? else {
            return Ok(());
        };
        match datasync {
            true => file.sync_data(),
            false => file.sync_all(),
        }
        .map_err(errno)
    }

    /// Before the name of node `attr.node` goes: a descriptor that keeps its data reachable
    /// for whoever has it open, should this be its last name.
    pub(super) fn last_open(&self, view: &View, attr: &Attr) -> Option<Open> {
        if attr.source.file_type(view) != Some(FileType::RegularFile) {
            return None;
        }
        match self.reader(view, attr.node) {
            Ok(open) => Some(open),
            Err(e) => {
                tracing::debug!(node = attr.node, error = %e, "cannot keep a removed file open");
                None
            }
        }
    }

    /// After a name went: node `n` is an orphan if that was its last name. `nodes` is still
    /// locked, so whoever misses the node there finds it among the orphans.
    pub(super) fn orphan_if_gone(&self, nodes: &Nodes, n: u32, open: Option<Open>) {
        if let Some(open) = open
            && nodes.get(n).is_none()
        {
            self.files.orphan(n, open);
        }
    }
}

/// Clear setuid and setgid, as the kernel does when someone without `CAP_FSETID` changes
/// a file's content.
fn drop_suidgid(file: &File) -> Result<()> {
    let st = rustix::fs::fstat(file)?;
    if st.st_mode & 0o6000 != 0 {
        let mode = Mode::from_raw_mode((st.st_mode & 0o1777) as _);
        rustix::fs::fchmod(file, mode)?;
    }
    Ok(())
}
