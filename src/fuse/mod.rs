//! The FUSE file system over views: routed (one mount, a view per process tree) or single
//! (one view, no routing).
//!
//! The [`fuser::Filesystem`] impl in this file is a list of thin methods: each calls an `op`
//! in [`ops`] that returns `Result<T, Errno>`, and [`Respond`] sends the answer, in one place.
//!
//! # Inode numbers and the kernel's caches
//!
//! The kernel caches dentries, attributes and file pages per inode, for every process alike;
//! it knows nothing of PID routing. So the mount never lets one view's answer be reused for
//! another view:
//!
//! - Node `n` of view `v` is inode `v << 32 | n`; view ids are never reused in a daemon's life,
//!   so an inode number always names the same immutable file. Page and attribute caches of an
//!   inode can therefore be kept (`keep_cache`, long attribute TTLs): no other view can reach
//!   that inode by path.
//! - Only the mount's root (inode 1) is shared. Its attributes and its children's dentries get
//!   a zero TTL, so every path walk asks the daemon again at the root, and the daemon answers
//!   with the caller's own view's inode. A cached dentry from another view fails revalidation
//!   (different node id) and is dropped by the kernel. The root is listed per caller and never
//!   cached (no `cache_dir` on it).
//! - Below the root every dentry's parent is a per-view inode, so those dentries are private to
//!   the view and are cached like in a single-view mount.
//!
//! A file descriptor opened inside a view keeps reading that view's file, whoever holds it
//! later (as with any open file).
//!
//! # Opens
//!
//! Opening a file costs no round trip on any mount (`no_open`, see `op_open`): reads and
//! writes name the inode, and editable views keep their descriptors per node. A single-view
//! mount of layers caches everything for a year and opens directories without a round trip
//! too (`no_opendir`): warm reads come from the page cache as fast as from a plain directory.
//! FUSE passthrough is not used: it needs a real OPEN reply per file, which costs two
//! requests per file where the page cache costs none once warm.

mod edit_listing;
mod ops;
mod rename_flags;
mod respond;
mod served;
mod write;

use crate::router::Router;
use fuser::{
    Errno, FileHandle, Filesystem, INodeNo, KernelConfig, LockOwner, OpenFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use respond::Respond;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use ops::ino_of;
pub use served::Served;

/// What the mount serves.
pub enum Mode {
    /// One view for every caller; everything may be cached.
    Single(Arc<Served>),
    /// A view per registered process tree; callers in none see `empty`.
    Routed {
        router: Arc<Router<Served>>,
        empty: Arc<Served>,
    },
}

pub struct Fs {
    mode: Mode,
    /// TTL of what the kernel may cache for a long time (immutable per-view inodes).
    long: Duration,
}

impl Fs {
    pub fn new(mode: Mode) -> Fs {
        Fs {
            mode,
            long: Duration::from_secs(365 * 24 * 3600),
        }
    }

    fn routed(&self) -> bool {
        matches!(self.mode, Mode::Routed { .. })
    }

    /// Whether to ask the kernel to cache writes: only for a single editable view. With the
    /// writeback cache, every close marks the file's block count stale, so the next `stat`
    /// of any file costs a GETATTR; a routed mount is mostly read (one more round trip per
    /// file made `tar cf` of a layer 3.4x overlayfs instead of 2.7x).
    fn writeback_wanted(&self) -> bool {
        match &self.mode {
            Mode::Single(view) => view.edit().is_some(),
            Mode::Routed { .. } => false,
        }
    }
}

impl Filesystem for Fs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        use fuser::InitFlags as F;
        // readdirplus saves a lookup per entry for `ls -l`, `find -printf` and tar; symlink
        // targets are immutable per inode, so the kernel may cache them.
        let wanted = F::FUSE_DO_READDIRPLUS
            | F::FUSE_READDIRPLUS_AUTO
            | F::FUSE_PARALLEL_DIROPS
            | F::FUSE_CACHE_SYMLINKS
            // Editable views clear setuid/setgid on writes themselves (see `write.rs`); the
            // kernel then stops asking for security.capability before every write.
            | F::FUSE_HANDLE_KILLPRIV_V2;
        // The kernel gathers writes in its page cache and sends them in large pieces when the
        // file is closed, synced or written back: a `tar xf` sends one WRITE per file instead
        // of one per 4 KiB page it touched (see `write.rs`).
        let wanted = match self.writeback_wanted() {
            true => wanted | F::FUSE_WRITEBACK_CACHE,
            false => wanted,
        };
        let granted = wanted & config.capabilities();
        let _ = config.add_capabilities(granted);
        let _ = config.set_max_readahead(1 << 20);
        tracing::debug!(
            routed = self.routed(),
            writeback = granted.contains(F::FUSE_WRITEBACK_CACHE),
            "FUSE session initialised"
        );
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if let Some(r) = self.edit_lookup(req, parent.0, name) {
            return r.respond(reply);
        }
        self.op_lookup(req, parent.0, name).respond(reply);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.edit_forget(ino.0, nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if let Some(r) = self.edit_getattr(req, ino.0) {
            return r.respond(reply);
        }
        self.op_getattr(req, ino.0).respond(reply);
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        if let Some(r) = self.edit_readlink(ino.0) {
            return r.respond(reply);
        }
        self.op_readlink(ino.0).respond(reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.op_open(ino.0).respond(reply);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if let Some(r) = self.edit_read(ino.0, offset, size) {
            return r.respond(reply);
        }
        self.op_read(ino.0, offset, size).respond(reply);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // Only files made by CREATE are released; I/O goes by inode (see `op_open`).
        reply.ok();
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if let Some(r) = self.edit_opendir(req, ino.0) {
            return r.respond(reply);
        }
        self.op_opendir(req, ino.0).respond(reply);
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        if let Some(r) = self.edit_listing(req, ino.0, fh.0, offset) {
            return r.respond(reply);
        }
        self.op_listing(ino.0, fh.0, offset).respond(reply);
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        if let Some(r) = self.edit_listing(req, ino.0, fh.0, offset) {
            return r.respond(reply);
        }
        self.op_listing(ino.0, fh.0, offset).respond(reply);
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        if let Some(r) = self.edit_statfs(req, ino.0) {
            return r.respond(reply);
        }
        self.op_statfs(req, ino.0).respond(reply);
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if let Some(r) = self.edit_getxattr(req, ino.0, name, size) {
            return r.respond(reply);
        }
        // Layers carry no extended attributes: every name is absent.
        self.op_getattr(req, ino.0)
            .and(Err::<respond::Xattr, _>(Errno::NO_XATTR))
            .respond(reply);
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if let Some(r) = self.edit_listxattr(req, ino.0, size) {
            return r.respond(reply);
        }
        self.op_getattr(req, ino.0)
            .and_then(|_| respond::Xattr::answer(&[], size))
            .respond(reply);
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        self.op_access(req, ino.0, mask.bits()).respond(reply);
    }

    // Writes: an editable view takes them (see `write.rs`); a stack of layers answers EROFS.

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.op_setattr(req, ino.0, mode, uid, gid, size, atime, mtime)
            .respond(reply);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.op_mknod(req, parent.0, name, mode, umask, rdev)
            .respond(reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.op_mkdir(req, parent.0, name, mode, umask)
            .respond(reply);
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.op_remove(req, parent.0, name, false).respond(reply);
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.op_remove(req, parent.0, name, true).respond(reply);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        self.op_symlink(req, parent.0, link_name, target)
            .respond(reply);
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.op_rename(req, parent.0, name, newparent.0, newname, flags)
            .respond(reply);
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.op_link(req, ino.0, newparent.0, newname)
            .respond(reply);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        self.op_write(ino.0, offset, data, kill).respond(reply);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Writes go straight to scratch: nothing is buffered here. ENOSYS (not Ok) tells the
        // kernel so for the whole mount (`no_flush`), saving a round trip on every close.
        reply.error(Errno::ENOSYS);
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.op_fsync(ino.0, datasync).respond(reply);
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.op_fallocate(req, ino.0, offset, length, mode)
            .respond(reply);
    }

    fn releasedir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.edit_releasedir(req, ino.0, fh.0);
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.op_create(req, parent.0, name, mode, umask, flags)
            .respond(reply);
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.op_setxattr(req, ino.0, name, value, flags)
            .respond(reply);
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.op_removexattr(req, ino.0, name).respond(reply);
    }
}
