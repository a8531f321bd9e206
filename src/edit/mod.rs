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
//! file that was not copied up and for merging a directory's lower entries). Node numbers
//! are never reused while the view lives, so the kernel never confuses two files.
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
//! of a layer file copies it into scratch ([`Scratch::copy_up`]: atomic, once), along with the
//! directories above it (with the layers' modes). A directory in the layers is never moved:
//! renaming one answers `EXDEV`, and `mv` falls back to copying, as with overlayfs.

mod attrs;
mod files;
mod names;

pub use attrs::{Attr, AttrSource};

use crate::runtime::Runtime;
use crate::scratch::listing::{self, Merged, Upper};
use crate::scratch::{Attrs, Scratch, check_name, whiteout};
use crate::view::{Data, View};
use files::{Files, Open};
use names::Nodes;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, statat};
use rustix::io::Errno;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub type Result<T> = std::result::Result<T, Errno>;

/// The node of the view's root.
pub const ROOT: u32 = 0;

/// The time the layers' entries report (see the read path), also given to directories that a
/// copy-up makes in scratch for them.
pub const LOWER_TIME: Duration = Duration::from_secs(1);

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

/// A directory listing being read: the merged entries as of `generation`.
struct Listing {
    dir: u32,
    generation: u64,
    entries: Arc<Vec<Merged<Child>>>,
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
    /// Take `runtime` (locked for the view's life) and open its scratch dir.
    pub fn new(mut runtime: Runtime, uid: u32, gid: u32) -> crate::Result<Edit> {
        runtime.lock(false)?;
        let scratch = runtime.scratch()?;
        raise_fd_limit();
        Ok(Edit {
            scratch,
            updirs: Mutex::default(),
            xattrs: runtime.xattrs_used().into(),
            runtime,
            nodes: RwLock::new(Nodes::new()),
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

    /// The child `name` of directory node `dir`, made a node.
    pub fn lookup(&self, view: &View, dir: u32, name: &OsStr) -> Result<Attr> {
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
                let node = self.node_for_upper(dir, name, &st, lower);
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
        let node = self.nodes.write().unwrap().insert(dir, name, Some(child));
        Ok(Attr {
            node,
            source: AttrSource::Lower(child),
        })
    }

    /// The node of a scratch entry: one node per hard-linked file, else per name.
    fn node_for_upper(&self, dir: u32, name: &OsStr, st: &Stat, lower: Option<u32>) -> u32 {
        let mut nodes = self.nodes.write().unwrap();
        match linked(st) {
            Some(inode) => nodes.insert_linked(dir, name, inode),
            None => nodes.insert(dir, name, lower),
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

    // ---- listings --------------------------------------------------------------------------

    pub fn opendir(&self, view: &View, dir: u32) -> Result<u64> {
        if !self.attr_source(view, dir)?.is_dir(view) {
            return Err(Errno::NOTDIR);
        }
        let fh = self.next_fh.fetch_add(1, Relaxed);
        let listing = Listing {
            dir,
            generation: u64::MAX,
            entries: Arc::default(),
        };
        self.dirs.lock().unwrap().insert(fh, listing);
        Ok(fh)
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.lock().unwrap().remove(&fh);
    }

    /// The entries of an open directory after `offset` (see [`listing`] on offsets), and the
    /// directory's node. Re-read when the view changed since the last page.
    pub fn readdir(
        &self,
        view: &View,
        fh: u64,
        offset: u64,
    ) -> Result<(u32, Arc<Vec<Merged<Child>>>)> {
        let (dir, cached) = {
            let dirs = self.dirs.lock().unwrap();
            let l = dirs.get(&fh).ok_or(Errno::BADF)?;
            let now = self.generation.load(Relaxed);
            let fresh = offset > 0 && l.generation == now;
            (l.dir, fresh.then(|| l.entries.clone()))
        };
        if let Some(entries) = cached {
            return Ok((dir, entries));
        }
        let generation = self.generation.load(Relaxed);
        let entries = Arc::new(self.merged(view, dir)?);
        if let Some(l) = self.dirs.lock().unwrap().get_mut(&fh) {
            l.generation = generation;
            l.entries = entries.clone();
        }
        Ok((dir, entries))
    }

    /// Scratch over layers for directory `dir`, every entry a node.
    fn merged(&self, view: &View, dir: u32) -> Result<Vec<Merged<Child>>> {
        let upper_dir = self.upper_dir(dir)?;
        let upper = match &upper_dir {
            Some(d) => Upper::read(d).map_err(errno)?,
            None => Upper::default(),
        };
        let dir_lower = self.lower(dir).filter(|&l| view.children(l).is_some());
        let lower: Vec<(OsString, Child)> = match dir_lower.and_then(|l| view.children(l)) {
            Some((first, count)) => (first..first + count)
                .map(|c| {
                    let name = OsStr::from_bytes(&view.node(c).expect("child").name).to_owned();
                    (
                        name,
                        Child {
                            node: 0,
                            source: AttrSource::Lower(c),
                        },
                    )
                })
                .collect(),
            None => Vec::new(),
        };
        let mut merged = listing::merge(lower, &upper, |_, _| Child {
            node: 0,
            source: AttrSource::Missing,
        });
        let mut nodes = self.nodes.write().unwrap();
        merged.retain_mut(|e| {
            if let AttrSource::Missing = e.item.source {
                let Some(up) = &upper_dir else { return false };
                // Gone between the listing and the stat: leave it out.
                let Ok(Some(st)) = lstat(up, &e.name) else {
                    return false;
                };
                let lower = self
                    .lower_under_upper(
                        view,
                        up,
                        &e.name,
                        &st,
                        dir_lower.and_then(|l| view.lookup(l, e.name.as_bytes())),
                    )
                    .unwrap_or(None);
                e.item = Child {
                    node: match linked(&st) {
                        Some(inode) => nodes.insert_linked(dir, &e.name, inode),
                        None => nodes.insert(dir, &e.name, lower),
                    },
                    source: AttrSource::Upper(st),
                };
            } else if let AttrSource::Lower(c) = e.item.source {
                e.item.node = nodes.insert(dir, &e.name, Some(c));
            }
            true
        });
        Ok(merged)
    }

    /// The parent node of a directory, for `..`.
    pub fn parent(&self, n: u32) -> u32 {
        self.nodes.read().unwrap().get(n).map_or(ROOT, |r| r.parent)
    }

    // ---- making scratch hold what a change needs ----------------------------------------------

    /// Attributes for a scratch directory standing in for the layers' directory at `rel`.
    fn lower_dir_attrs(&self, view: &View, rel: &Path) -> Attrs {
        let mut at = crate::view::ROOT;
        for part in rel.components() {
            match view.lookup(at, part.as_os_str().as_bytes()) {
                Some(c) => at = c,
                None => break,
            }
        }
        self.layer_attrs(view.node(at).map_or(0o755, |n| n.mode))
    }

    /// What a layer entry of mode `mode` shows: the view's owner and the layers' time.
    fn layer_attrs(&self, mode: u32) -> Attrs {
        Attrs {
            mode,
            uid: self.uid,
            gid: self.gid,
            atime: UNIX_EPOCH + LOWER_TIME,
            mtime: UNIX_EPOCH + LOWER_TIME,
        }
    }

    /// The scratch directory of directory node `dir`, made (with the directories above it)
    /// where it is missing.
    fn upper_dir_made(&self, view: &View, dir: u32) -> Result<Arc<UpperDir>> {
        if let Some(d) = self.upper_dir(dir)? {
            return Ok(d);
        }
        let path = self.path(dir)?;
        let fd = self
            .scratch
            .make_dirs(&path, |p| self.lower_dir_attrs(view, p))
            .map_err(errno)?;
        self.keep_dir(dir, fd, None)
    }

    /// Make sure node `n` is in scratch (copy it up if it is a layer file, symlink or
    /// directory); returns its scratch parent directory and name.
    fn copy_up(&self, view: &View, n: u32) -> Result<(Arc<UpperDir>, OsString)> {
        self.copy_up_as(view, n, true)
    }

    /// [`Edit::copy_up`]; without `content` a layer file comes up empty (it is about to be
    /// truncated: `>` over a big file copies nothing).
    fn copy_up_as(&self, view: &View, n: u32, content: bool) -> Result<(Arc<UpperDir>, OsString)> {
        let (parent, name) = self.parent_and_name(n)?;
        if n == ROOT {
            return Err(Errno::INVAL);
        }
        let source = self.attr_source(view, n)?;
        let pdir = self.upper_dir_made(view, parent)?;
        let AttrSource::Lower(l) = source else {
            return Ok((pdir, name));
        };
        let node = view.node(l).ok_or(Errno::STALE)?;
        let attrs = self.layer_attrs(node.mode);
        match &node.data {
            Data::File { digest, .. } => {
                let content = match digest {
                    Some(d) if content => Some(File::open(view.blob_path(d)).map_err(errno)?),
                    _ => None,
                };
                let ppath = self.path(parent)?;
                self.scratch
                    .copy_up(&pdir, &ppath, &name, content.as_ref(), &attrs)
                    .map_err(errno)?;
                // Its blob is no longer its content once the copy changes.
                self.files.drop_cached(n);
            }
            Data::Symlink { target } => {
                match rustix::fs::symlinkat(OsStr::from_bytes(target), &pdir, &name) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e),
                }
                let _ = rustix::fs::chownat(
                    &pdir,
                    &name,
                    Some(rustix::fs::Uid::from_raw(self.uid)),
                    Some(rustix::fs::Gid::from_raw(self.gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                );
            }
            Data::Dir { .. } => {
                self.upper_dir_made(view, n)?;
            }
        }
        self.changed();
        Ok((pdir, name))
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
        Ok(self.nodes.write().unwrap().insert(dir, name, None))
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

    // ---- file content ------------------------------------------------------------------------

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
                        Some(d) => Some(Arc::new(File::open(view.blob_path(d)).map_err(errno)?)),
                        None => None,
                    },
                },
                Data::Dir { .. } => return Err(Errno::ISDIR),
                Data::Symlink { .. } => return Err(Errno::INVAL),
            },
            AttrSource::Missing => return Err(Errno::NOENT),
        };
        self.files.keep(n, open.clone());
        Ok(open)
    }

    /// Node `n`'s scratch file, open for writing: a layer file is copied up first.
    fn writer(&self, view: &View, n: u32) -> Result<Arc<File>> {
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
                let attrs = self.layer_attrs(node.mode);
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
            let st = rustix::fs::fstat(file.as_ref())?;
            if st.st_mode & 0o6000 != 0 {
                let mode = Mode::from_raw_mode((st.st_mode & 0o1777) as _);
                rustix::fs::fchmod(file.as_ref(), mode)?;
            }
        }
        file.write_all_at(data, offset).map_err(errno)
    }

    /// `fallocate(2)` of node `n` with the caller's `mode` bits, passed to its scratch file
    /// (a layer file is copied up first): the scratch file system answers for every mode,
    /// `EOPNOTSUPP` included, as overlayfs leaves it to its upper file system. (The kernel's
    /// FUSE client itself refuses `COLLAPSE_RANGE` and `INSERT_RANGE` before asking.)
    pub fn fallocate(
        &self,
        view: &View,
        n: u32,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> Result<()> {
        let file = self.writer(view, n)?;
        let flags = rustix::fs::FallocateFlags::from_bits_retain(mode as _);
        match rustix::fs::fallocate(file.as_ref(), flags, offset, length) {
            // ENOSYS would make the kernel stop asking, for every file of the mount.
            Err(Errno::NOSYS) => Err(Errno::OPNOTSUPP),
            r => r,
        }
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

    /// The kernel evicted inode `n`: it has no open file of it any more.
    pub fn forget(&self, n: u32) {
        self.files.forget(n);
    }

    /// Before the name of node `attr.node` goes: a descriptor that keeps its data reachable
    /// for whoever has it open, should this be its last name.
    fn last_open(&self, view: &View, attr: &Attr) -> Option<Open> {
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
    fn orphan_if_gone(&self, nodes: &Nodes, n: u32, open: Option<Open>) {
        if let Some(open) = open
            && nodes.get(n).is_none()
        {
            self.files.orphan(n, open);
        }
    }

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
                let attr = self.lookup(view, dir, name)?;
                if attr.source.is_dir(view) {
                    return Err(Errno::ISDIR);
                }
                let writing = flags & libc::O_ACCMODE != libc::O_RDONLY;
                if writing && flags & libc::O_TRUNC != 0 {
                    return self.setattr(view, attr.node, None, None, None, Some(0), None);
                }
                return Ok(attr);
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
        caller: Caller,
    ) -> Result<Attr> {
        let kind = FileType::from_raw_mode(mode as _);
        if !matches!(
            kind,
            FileType::RegularFile | FileType::Fifo | FileType::Socket
        ) {
            // Device nodes would be a way around nodev; a layer cannot hold them anyway.
            return Err(Errno::PERM);
        }
        let (updir, whited_out) = self.prepare_new(view, dir, name)?;
        make_node(
            &updir,
            name,
            kind,
            Mode::from_raw_mode((mode & 0o7777) as _),
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
        nodes.insert_linked(src_parent, &src_name, inode_of(&st));
        let node = nodes.insert_linked(dir, name, inode_of(&st));
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

/// A regular file, FIFO or socket node (what `mknod` may make).
fn make_node(dir: &File, name: &OsStr, kind: FileType, mode: Mode) -> Result<()> {
    if kind == FileType::RegularFile {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        return rustix::fs::openat(dir, name, flags | OFlags::CLOEXEC, mode).map(drop);
    }
    #[cfg(not(target_vendor = "apple"))]
    return rustix::fs::mknodat(dir, name, kind, mode, 0);
    // No mknodat(2) on macOS: FIFOs and sockets stay a Linux and BSD feature.
    #[cfg(target_vendor = "apple")]
    Err(Errno::NOTSUP)
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

fn src_parent_of(nodes: &Nodes, n: u32) -> u32 {
    nodes.get(n).map_or(ROOT, |r| r.parent)
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
