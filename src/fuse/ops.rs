//! The operations: plain functions of the request that return `Result<T, Errno>`.

use super::{Fs, Mode, Served};
use crate::view::{Data, Kind, ROOT, View};
use fuser::{Errno, FileAttr, FileType, FopenFlags};
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;

use std::sync::Arc;
use std::time::Duration;

/// FUSE's root inode.
const FUSE_ROOT: u64 = 1;

/// The inode number of node `n` of a view (see the module docs of [`crate::fuse`]).
pub fn ino_of(view: &View, n: u32) -> u64 {
    if n == ROOT {
        FUSE_ROOT
    } else {
        (u64::from(view.id) << 32) | u64::from(n)
    }
}

pub(super) fn split(ino: u64) -> (u32, u32) {
    ((ino >> 32) as u32, ino as u32)
}

pub struct Entry {
    pub attr: FileAttr,
    pub attr_ttl: Duration,
    pub entry_ttl: Duration,
}

pub struct Opened {
    pub fh: u64,
    pub flags: FopenFlags,
}

pub struct Statfs {
    pub blocks: u64,
    pub files: u64,
    pub bsize: u32,
}

/// Up to `size` bytes at `offset`: FUSE wants a short read only at end of file.
pub(super) fn read_at(file: &File, offset: u64, size: u32) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0; size as usize];
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(k) => done += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(done);
    Ok(buf)
}

pub fn attr(view: &View, n: u32) -> FileAttr {
    let node = view.node(n).expect("node of a live inode");
    let size = node.size();
    let time = node.mtime.to_system_time();
    FileAttr {
        ino: fuser::INodeNo(ino_of(view, n)),
        size,
        blocks: size.div_ceil(512),
        atime: time,
        mtime: time,
        ctime: time,
        crtime: time,
        kind: file_type(node.kind()),
        perm: node.mode as u16,
        nlink: node.nlink(),
        uid: view.meta.uid,
        gid: view.meta.gid,
        rdev: node.rdev() as u32,
        blksize: 4096,
        flags: 0,
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Device { block: true } => FileType::BlockDevice,
        Kind::Device { block: false } => FileType::CharDevice,
    }
}

/// One page of a directory listing, produced lazily while the reply buffer has room.
pub struct Listing {
    pub served: Arc<Served>,
    dir: u32,
    offset: u64,
    /// Entry and attribute TTL for readdirplus answers.
    pub ttl: Duration,
}

pub struct Item<'a> {
    pub ino: u64,
    /// The offset of the entry after this one.
    pub next: u64,
    pub kind: FileType,
    pub name: &'a OsStr,
    node: u32,
}

impl Listing {
    /// Offsets: 0 start, 1 after ".", 2 after "..", 3 + i after child i. A child's offset is
    /// its index in the view's node table, which never changes while the view lives.
    pub fn items(&self) -> impl Iterator<Item = Item<'_>> {
        let v = &self.served.view;
        let node = v.node(self.dir).expect("listed dir");
        let (first, count) = v.children(self.dir).unwrap_or((0, 0));
        let parent = if self.dir == ROOT { ROOT } else { node.parent };
        let dots = [(self.dir, "."), (parent, "..")]
            .into_iter()
            .enumerate()
            .map(|(i, (n, name))| Item {
                ino: ino_of(v, n),
                next: i as u64 + 1,
                kind: FileType::Directory,
                name: OsStr::new(name),
                node: n,
            });
        let children = (0..count).map(move |i| {
            let n = first + i;
            let child = v.node(n).expect("child");
            Item {
                ino: ino_of(v, n),
                next: u64::from(i) + 3,
                kind: file_type(child.kind()),
                name: OsStr::from_bytes(&child.name),
                node: n,
            }
        });
        dots.chain(children).skip(self.offset as usize)
    }

    pub fn attr(&self, item: &Item<'_>) -> FileAttr {
        attr(&self.served.view, item.node)
    }
}

impl Fs {
    /// The view a caller sees at the root.
    pub(super) fn view_of_caller(&self, pid: u32) -> Arc<Served> {
        match &self.mode {
            Mode::Single(v) => v.clone(),
            Mode::Routed { router, empty } => router.route(pid).unwrap_or_else(|| empty.clone()),
        }
    }

    /// The view and node an inode names. The root is the caller's; any other inode belongs
    /// to the view that issued it, whoever asks.
    pub(super) fn resolve(&self, pid: u32, ino: u64) -> Result<(Arc<Served>, u32), Errno> {
        if ino == FUSE_ROOT {
            return Ok((self.view_of_caller(pid), ROOT));
        }
        let (id, n) = split(ino);
        let view = match &self.mode {
            Mode::Single(v) if v.view.id == id => Some(v.clone()),
            Mode::Single(_) => None,
            Mode::Routed { router, .. } => router.view(id),
        };
        // A view that was unregistered while the kernel still held its inodes.
        let served = view.ok_or(Errno::ESTALE)?;
        if !served.has_node(n) {
            return Err(Errno::ESTALE);
        }
        Ok((served, n))
    }

    /// TTLs for a node: the routed root and its children's dentries are never cached (they
    /// differ per caller); everything else names one immutable file forever.
    pub(super) fn ttl(&self, parent_is_root: bool) -> Duration {
        if self.routed() && parent_is_root {
            Duration::ZERO
        } else {
            self.long
        }
    }

    pub(super) fn op_lookup(
        &self,
        req: &fuser::Request,
        parent: u64,
        name: &OsStr,
    ) -> Result<Entry, Errno> {
        let (served, dir) = self.resolve(req.pid(), parent)?;
        let view = &served.view;
        if view.children(dir).is_none() {
            return Err(Errno::ENOTDIR);
        }
        let n = view.lookup(dir, name.as_bytes()).ok_or(Errno::ENOENT)?;
        let entry_ttl = self.ttl(parent == FUSE_ROOT);
        Ok(Entry {
            attr: attr(view, n),
            // The child's attributes belong to its per-view inode: cacheable.
            attr_ttl: self.long,
            entry_ttl,
        })
    }

    pub(super) fn op_getattr(
        &self,
        req: &fuser::Request,
        ino: u64,
    ) -> Result<(Duration, FileAttr), Errno> {
        let (served, n) = self.resolve(req.pid(), ino)?;
        Ok((self.ttl(ino == FUSE_ROOT), attr(&served.view, n)))
    }

    pub(super) fn op_readlink(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        let (served, n) = self.resolve(0, ino)?;
        match &served.view.node(n).expect("resolved").data {
            Data::Symlink { target } => Ok(target.to_vec()),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Opening a file costs no round trip: the first OPEN answers `ENOSYS`, after which the
    /// kernel opens files by itself for the rest of the mount (`no_open`, Linux 3.14+), keeps
    /// their page cache, and sends neither OPEN nor RELEASE. Reads and writes then name the
    /// inode, never a handle: layer files are read from their blob (the content of an inode
    /// number never changes, so most opens are never followed by a read at all), and an
    /// editable view keeps its descriptors per node (see [`crate::edit`]). In a routed mount
    /// (mounted read-write for editable views), a read-only view's file thus opens for
    /// writing, and its first write or truncate answers `EROFS`.
    pub(super) fn op_open(&self, ino: u64) -> Result<Opened, Errno> {
        self.resolve(0, ino)?;
        Err(Errno::ENOSYS)
    }

    /// Nothing on this mount will ever need a real open of a directory: a single-view mount
    /// of layers alone.
    fn zero_message_opendirs(&self) -> bool {
        match &self.mode {
            Mode::Single(v) => v.edit().is_none(),
            Mode::Routed { .. } => false,
        }
    }

    /// Read straight from the inode's blob, opened for this request: only page-cache misses
    /// get here.
    pub(super) fn op_read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let (served, n) = self.resolve(0, ino)?;
        let view = &served.view;
        let digest = match view.node(n).expect("resolved").data {
            Data::File {
                digest: Some(d), ..
            } => d,
            Data::File { digest: None, .. } => return Ok(Vec::new()),
            _ => return Err(Errno::EISDIR),
        };
        let file = view.open_blob(&digest).map_err(|e| {
            let path = view.blob_path(&digest);
            tracing::warn!(path = %path.display(), error = %e, "cannot open blob");
            Errno::from(e)
        })?;
        Ok(read_at(&file, offset, size)?)
    }

    pub(super) fn op_opendir(&self, req: &fuser::Request, ino: u64) -> Result<Opened, Errno> {
        let (served, n) = self.resolve(req.pid(), ino)?;
        if served.view.children(n).is_none() {
            return Err(Errno::ENOTDIR);
        }
        if self.zero_message_opendirs() {
            // Like files: no OPENDIR/RELEASEDIR round trips, and the kernel then caches every
            // listing (`no_opendir`, Linux 5.1+). Never in a routed mount, whose root listing
            // differs per caller and must not be cached.
            return Err(Errno::ENOSYS);
        }
        if ino == FUSE_ROOT && self.routed() {
            // The listing must come from the view of whoever opened the directory, page
            // after page: remember it in the handle, and let the kernel cache nothing.
            return Ok(Opened {
                fh: u64::from(served.view.id),
                flags: FopenFlags::empty(),
            });
        }
        Ok(Opened {
            fh: 0,
            flags: FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
        })
    }

    pub(super) fn op_listing(&self, ino: u64, fh: u64, offset: u64) -> Result<Listing, Errno> {
        let (served, dir) = match (&self.mode, ino) {
            (Mode::Routed { router, empty }, FUSE_ROOT) => {
                let served = if fh == u64::from(empty.view.id) {
                    empty.clone()
                } else {
                    router.view(fh as u32).ok_or(Errno::ESTALE)?
                };
                (served, ROOT)
            }
            _ => self.resolve(0, ino)?,
        };
        Ok(Listing {
            served,
            dir,
            offset,
            ttl: self.ttl(ino == FUSE_ROOT),
        })
    }

    pub(super) fn op_statfs(&self, req: &fuser::Request, ino: u64) -> Result<Statfs, Errno> {
        let (served, _) = self.resolve(req.pid(), ino)?;
        Ok(Statfs {
            blocks: served.view.total_bytes().div_ceil(4096),
            files: served.view.len() as u64,
            bsize: 4096,
        })
    }

    pub(super) fn op_access(&self, req: &fuser::Request, ino: u64, mask: i32) -> Result<(), Errno> {
        let (served, _) = self.resolve(req.pid(), ino)?;
        if mask & libc::W_OK != 0 {
            served.writable().map_err(Errno::from_i32)?;
        }
        Ok(())
    }
}
