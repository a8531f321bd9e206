//! An editable view: a runtime's scratch dir over a merged stack of layers.
//!
//! A [`View`] is immutable; an editable view adds an [`Edit`], which owns the scratch dir
//! (see [`crate::scratch`]) and a table of nodes, and answers every operation by looking at
//! scratch first and the layers second, at the time of the request:
//!
//! - a name that exists in scratch is that entry (a copied-up or new file, a directory,
//!   a symlink, a FIFO, a Unix socket);
//! - otherwise a whiteout for it, or an opaque scratch directory above it, hides it;
//! - otherwise the layers' entry shows, if there is one.
//!
//! # Nodes
//!
//! Scratch changes under the kernel's feet (renames, deletions), so nodes are not the view's
//! fixed node indices: each node is a (parent node, name) pair that lookups create and that
//! renames move, plus the layer node that shows through at its path (`lower`, for reading a
//! file that was not copied up and for merging a directory's lower entries). A node lives
//! while the kernel holds its inode, counted as the kernel counts lookups (see [`names`]),
//! so a daemon that runs for weeks keeps only what the kernel keeps. A scratch node's number
//! is never reused while the view lives, so the kernel never confuses two files.
//!
//! A hard-linked scratch file is one node for all its names (one inode for the kernel), and
//! the node records one of them. So whatever acts on a name (rename, unlink) uses the
//! (parent, name) of the request; only what acts on the file (read, write, attributes) may
//! go through the node's recorded name.
//!
//! # Open files
//!
//! The kernel opens files without asking (see `op_open` in [`crate::fuse`]): reads, writes
//! and attribute changes of a regular file name its node, and [`files`] keeps descriptors per
//! node, including those of removed files someone may still have open.
//!
//! # Copy-up
//!
//! The first write, truncate, fallocate, chmod, chown, utimens, setxattr, hard link or rename
//! of a layer file copies it into scratch ([`copyup`], through [`Scratch::copy_up_content`]:
//! atomic, once, the blob read once), along with the directories above it (with the layers'
//! modes). A directory in the layers is never moved:
//! renaming one answers `EXDEV`, and `mv` falls back to copying, as with overlayfs.
//!
//! # Where to look
//!
//! This file answers "what is at this name" (lookups), [`dirs`] "what is in this directory"
//! (listings); [`copyup`] makes scratch hold what a change needs, [`content`] answers "what
//! are its bytes", [`attrs`] "what are its attributes", and [`namespace`] changes names
//! (create, link, remove, rename).

mod attrs;
mod content;
mod copyup;
mod dirs;
mod files;
mod names;
mod namespace;

pub use attrs::{Attr, AttrSource};

use crate::runtime::Runtime;
use crate::scratch::listing::Merged;
use crate::scratch::{Scratch, check_name, whiteout};
use crate::view::View;
use dirs::Listing;
use files::Files;
use names::Nodes;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, statat};
use rustix::io::Errno;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

pub type Result<T> = std::result::Result<T, Errno>;

/// The node of the view's root.
pub const ROOT: u32 = 0;

fn errno(e: io::Error) -> Errno {
    Errno::from_io_error(&e).unwrap_or(Errno::IO)
}

/// Who asks: new entries belong to them.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

/// A scratch directory kept open for a node, and whether it is opaque.
struct UpperDir {
    fd: File,
    opaque: bool,
}

impl std::os::fd::AsFd for UpperDir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl std::ops::Deref for UpperDir {
    type Target = File;
    fn deref(&self) -> &File {
        &self.fd
    }
}

/// Scratch directories kept open at once (each is a descriptor).
const MAX_DIRS: usize = 512;

pub struct Edit {
    scratch: Scratch,
    updirs: Mutex<HashMap<u32, Arc<UpperDir>>>,
    /// Whether scratch may hold extended attributes (see [`Runtime::xattrs_used`]).
    xattrs: std::sync::atomic::AtomicBool,
    /// Held for the view's life: the runtime's lock (see [`crate::runtime`]).
    runtime: Runtime,
    nodes: RwLock<Nodes>,
    /// Regular files' descriptors, by node (see [`files`]).
    files: Files,
    dirs: Mutex<HashMap<u64, Listing>>,
    next_fh: AtomicU64,
    /// Bumped by every change of any directory's entries: a paged listing reads the directory
    /// again when it changed since the last page.
    generation: AtomicU64,
    /// Owner reported for the layers' entries.
    uid: u32,
    gid: u32,
}

/// One entry of a listing: its node and how to get its attributes.
#[derive(Clone, Debug)]
pub struct Child {
    pub node: u32,
    pub source: AttrSource,
}

impl std::fmt::Debug for Edit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edit")
            .field("scratch", &self.scratch)
            .finish()
    }
}

impl Edit {
    /// Take `runtime` (locked for the view's life) and open its scratch dir, over a view of
    /// `lower_nodes` layer nodes.
    pub fn new(
        mut runtime: Runtime,
        uid: u32,
        gid: u32,
        lower_nodes: usize,
    ) -> crate::Result<Edit> {
        runtime.lock(false)?;
        let mut scratch = runtime.scratch()?;
        // A --volatile run marked the runtime: copy-ups need not be durable.
        scratch.set_sync(!runtime.dir().join("volatile").exists());
        raise_fd_limit();
        Ok(Edit {
            scratch,
            updirs: Mutex::default(),
            xattrs: runtime.xattrs_used().into(),
            runtime,
            nodes: RwLock::new(Nodes::new(lower_nodes)),
            files: Files::default(),
            dirs: Mutex::default(),
            next_fh: AtomicU64::new(1),
            generation: AtomicU64::new(0),
            uid,
            gid,
        })
    }

    /// The runtime this view edits.
    pub fn runtime_name(&self) -> &str {
        self.runtime.name()
    }

    /// Whether node `n` exists: it has a name, or lost its last one while it may still be open
    /// (an orphan, see [`files`]). A node deleted since answers ENOENT to operations by name.
    pub fn has(&self, n: u32) -> bool {
        self.nodes.read().unwrap().get(n).is_some() || self.files.is_orphan(n)
    }

    fn path(&self, n: u32) -> Result<PathBuf> {
        self.nodes.read().unwrap().path(n).ok_or(Errno::STALE)
    }

    fn parent_and_name(&self, n: u32) -> Result<(u32, OsString)> {
        let nodes = self.nodes.read().unwrap();
        let rec = nodes.get(n).ok_or(Errno::STALE)?;
        Ok((rec.parent, rec.name.clone()))
    }

    fn lower(&self, n: u32) -> Option<u32> {
        self.nodes.read().unwrap().get(n).and_then(|r| r.lower)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Relaxed);
    }

    // ---- what is where -------------------------------------------------------------------

    /// The scratch directory of directory node `n`, if scratch has one. Opened once beneath
    /// the root and then kept: a descriptor follows its directory through renames, so it
    /// never has to be resolved by path again.
    fn upper_dir(&self, n: u32) -> Result<Option<Arc<UpperDir>>> {
        if let Some(d) = self.updirs.lock().unwrap().get(&n) {
            return Ok(Some(d.clone()));
        }
        let path = self.path(n)?;
        match self.scratch.dir(&path) {
            Ok(fd) => Ok(Some(self.keep_dir(n, fd, None)?)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(errno(e)),
        }
    }

    /// Cache `fd` as node `n`'s scratch directory (`opaque`, when the caller knows it).
    fn keep_dir(&self, n: u32, fd: File, opaque: Option<bool>) -> Result<Arc<UpperDir>> {
        let opaque = match opaque {
            Some(o) => o,
            None => whiteout::is_opaque(&fd).map_err(errno)?,
        };
        let dir = Arc::new(UpperDir { fd, opaque });
        let mut dirs = self.updirs.lock().unwrap();
        if dirs.len() >= MAX_DIRS {
            // Descriptors are a bounded resource; the ones needed again are reopened.
            dirs.clear();
        }
        dirs.insert(n, dir.clone());
        Ok(dir)
    }

    /// Node `n`'s scratch directory changed identity (removed, replaced, marked opaque).
    fn forget_dir(&self, n: u32) {
        self.updirs.lock().unwrap().remove(&n);
    }

    /// What node `n` is now: its scratch entry's `lstat`, else its layer node.
    pub fn attr_source(&self, view: &View, n: u32) -> Result<AttrSource> {
        if n == ROOT {
            let root = self.upper_dir(ROOT)?.ok_or(Errno::NOENT)?;
            return Ok(AttrSource::Upper(rustix::fs::fstat(&root.fd)?));
        }
        let (parent, name) = match self.parent_and_name(n) {
            Ok(found) => found,
            Err(e) => return self.files.orphan_source(n).unwrap_or(Err(e)),
        };
        if let Some(dir) = self.upper_dir(parent)?
            && let Some(st) = lstat(&dir.fd, &name)?
        {
            return Ok(AttrSource::Upper(st));
        }
        match self.lower(n) {
            Some(l) if view.node(l).is_some() => Ok(AttrSource::Lower(l)),
            _ => Err(Errno::NOENT),
        }
    }

    /// The attributes of node `n`.
    pub fn getattr(&self, view: &View, n: u32) -> Result<Attr> {
        Ok(Attr {
            node: n,
            source: self.attr_source(view, n)?,
        })
    }

    /// How many nodes the view keeps for the kernel now (see [`names`]).
    pub fn node_count(&self) -> usize {
        self.nodes.read().unwrap().len()
    }

    /// The child `name` of directory node `dir`, made a node, for the daemon's own use.
    pub fn lookup(&self, view: &View, dir: u32, name: &OsStr) -> Result<Attr> {
        self.lookup_as(view, dir, name, false)
    }

    /// [`Edit::lookup`] for a reply to the kernel: the node is counted as held by it.
    pub fn lookup_entry(&self, view: &View, dir: u32, name: &OsStr) -> Result<Attr> {
        self.lookup_as(view, dir, name, true)
    }

    fn lookup_as(&self, view: &View, dir: u32, name: &OsStr, held: bool) -> Result<Attr> {
        if whiteout::reserved(name) {
            return Err(Errno::NOENT);
        }
        if name.len() > whiteout::NAME_MAX {
            return Err(Errno::NAMETOOLONG);
        }
        let upper = self.upper_dir(dir)?;
        let dir_lower = self.lower(dir).filter(|&l| view.children(l).is_some());
        // The layers first (memory); scratch's whiteout matters only for a name they have.
        let lower_child = dir_lower.and_then(|l| view.lookup(l, name.as_bytes()));
        if let Some(up) = &upper {
            if let Some(st) = lstat(&up.fd, name)? {
                let lower = self.lower_under_upper(view, &up.fd, name, &st, lower_child)?;
                let node = self.node_for_upper(dir, name, &st, lower, held);
                return Ok(Attr {
                    node,
                    source: AttrSource::Upper(st),
                });
            }
            if lower_child.is_some()
                && (up.opaque || whiteout::exists(&up.fd, name).map_err(errno)?)
            {
                return Err(Errno::NOENT);
            }
        } else if lower_child.is_none()
            && self.attr_source(view, dir).is_ok_and(|s| !s.is_dir(view))
        {
            return Err(Errno::NOTDIR);
        }
        let child = lower_child.ok_or(Errno::NOENT)?;
        let node = self
            .nodes
            .write()
            .unwrap()
            .insert(dir, name, Some(child), held);
        Ok(Attr {
            node,
            source: AttrSource::Lower(child),
        })
    }

    /// The node of a scratch entry: one node per hard-linked file, else per name.
    fn node_for_upper(
        &self,
        dir: u32,
        name: &OsStr,
        st: &Stat,
        lower: Option<u32>,
        held: bool,
    ) -> u32 {
        let mut nodes = self.nodes.write().unwrap();
        match linked(st) {
            Some(inode) => nodes.insert_linked(dir, name, inode, held),
            None => nodes.insert(dir, name, lower, held),
        }
    }

    /// A listing's entry `child` of directory `dir`, handed to the kernel by readdirplus:
    /// its node, counted as held. The listing may be older than the node's record, which
    /// then is made again.
    pub fn listed_entry(&self, view: &View, dir: u32, child: &Merged<Child>) -> u32 {
        {
            let mut nodes = self.nodes.write().unwrap();
            if let Some(n) = nodes.acquire(dir, &child.name) {
                return n;
            }
            if let AttrSource::Lower(c) = child.item.source {
                return nodes.insert(dir, &child.name, Some(c), true);
            }
        }
        let AttrSource::Upper(st) = child.item.source else {
            return child.item.node;
        };
        let lower = match self.upper_dir(dir) {
            Ok(Some(up)) => {
                let dir_lower = self.lower(dir).filter(|&l| view.children(l).is_some());
                let lower_child = dir_lower.and_then(|l| view.lookup(l, child.name.as_bytes()));
                self.lower_under_upper(view, &up.fd, &child.name, &st, lower_child)
                    .unwrap_or(None)
            }
            _ => None,
        };
        self.node_for_upper(dir, &child.name, &st, lower, true)
    }

    /// The kernel forgot `count` entries of node `n` (its inode is gone from the kernel):
    /// at zero the node goes, with its kept descriptors.
    pub fn forget(&self, n: u32, count: u64) {
        let (known, gone) = {
            let mut nodes = self.nodes.write().unwrap();
            let known = nodes.get(n).is_some();
            (known, nodes.forget(n, count))
        };
        if !known {
            // Nameless already (an orphan): nothing can reach its descriptor any more.
            self.files.forget(n);
        }
        for g in gone {
            self.forget_dir(g);
            self.files.forget(g);
        }
    }

    /// The layer node showing through at a scratch entry: only a non-opaque scratch directory
    /// over a layer directory merges with it.
    fn lower_under_upper(
        &self,
        view: &View,
        up: &File,
        name: &OsStr,
        st: &Stat,
        lower_child: Option<u32>,
    ) -> Result<Option<u32>> {
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Ok(None);
        }
        let Some(child) = lower_child else {
            return Ok(None);
        };
        if view.children(child).is_none() {
            return Ok(None);
        }
        let sub = crate::scratch::open_child_dir(up, name).map_err(errno)?;
        Ok((!whiteout::is_opaque(&sub).map_err(errno)?).then_some(child))
    }

    /// The parent node of a directory, for `..`.
    pub fn parent(&self, n: u32) -> u32 {
        self.nodes.read().unwrap().get(n).map_or(ROOT, |r| r.parent)
    }

    /// Whether the layers have an entry at (dir, name) that scratch would have to hide.
    fn lower_has(&self, view: &View, dir: u32, name: &OsStr) -> bool {
        self.lower(dir)
            .and_then(|l| view.lookup(l, name.as_bytes()))
            .is_some()
    }

    /// Before a new entry `name` goes in directory `dir`: the name must be free in the view.
    /// Returns the scratch directory to make it in, and whether a deleted layer entry had
    /// the name (so a whiteout may be there).
    fn prepare_new(&self, view: &View, dir: u32, name: &OsStr) -> Result<(Arc<UpperDir>, bool)> {
        check_name(name)?;
        match self.lookup(view, dir, name) {
            Ok(_) => return Err(Errno::EXIST),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
        Ok((
            self.upper_dir_made(view, dir)?,
            self.lower_has(view, dir, name),
        ))
    }

    /// After a new entry `name` was made in `updir`: a whiteout for it is obsolete (the entry
    /// wins over it anyway, so the order is safe), and it becomes a node.
    fn made(&self, updir: &File, dir: u32, name: &OsStr, whited_out: bool) -> Result<u32> {
        if whited_out {
            whiteout::remove(updir, name).map_err(errno)?;
        }
        self.changed();
        // Made for a reply to the kernel (create, mkdir, mknod, symlink): counted.
        Ok(self.nodes.write().unwrap().insert(dir, name, None, true))
    }

    fn give(&self, updir: &File, name: &OsStr, caller: Caller, gid_of_dir: Option<u32>) {
        let gid = gid_of_dir.unwrap_or(caller.gid);
        // Best effort: an unprivileged daemon's files are its own user's already.
        let _ = rustix::fs::chownat(
            updir,
            name,
            Some(rustix::fs::Uid::from_raw(caller.uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        );
    }

    /// A setgid directory gives its group to new entries.
    fn inherited_gid(updir: &File) -> Option<u32> {
        let st = rustix::fs::fstat(updir).ok()?;
        (st.st_mode & 0o2000 != 0).then_some(st.st_gid)
    }

    /// File system figures of the scratch dir's file system.
    pub fn statfs(&self) -> Result<rustix::fs::StatVfs> {
        let root = self.scratch.dir(Path::new("")).map_err(errno)?;
        rustix::fs::fstatvfs(&root)
    }
}

/// Kept directories and open files are descriptors: allow as many as the hard limit does.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

#[allow(clippy::unnecessary_cast)] // dev_t and ino_t widths differ across platforms
fn inode_of(st: &Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

/// A regular file with more than one name: its (device, inode).
fn linked(st: &Stat) -> Option<(u64, u64)> {
    let file = FileType::from_raw_mode(st.st_mode) != FileType::Directory;
    (file && st.st_nlink > 1).then(|| inode_of(st))
}

/// `lstat` of `name` in `dir`; `None` if there is no such entry.
fn lstat(dir: &File, name: &OsStr) -> Result<Option<Stat>> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn access_flags(flags: i32) -> i32 {
    flags & (libc::O_ACCMODE | libc::O_APPEND | libc::O_TRUNC | libc::O_NONBLOCK)
}

/// Open an existing scratch entry with the caller's access flags, never through a symlink.
fn open_at(dir: &File, name: &OsStr, flags: i32) -> Result<File> {
    let oflags = OFlags::from_bits_retain(access_flags(flags) as _)
        | OFlags::NOFOLLOW
        | OFlags::CLOEXEC
        | OFlags::NOCTTY;
    Ok(rustix::fs::openat(dir, name, oflags, Mode::empty())?.into())
}
