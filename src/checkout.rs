//! Materialising a stack of layers into a plain directory, by linking out of the store.
//!
//! Layers apply bottom first: a later layer's file, symlink or directory replaces what lower
//! layers have at that path, a whiteout removes it, and an opaque directory hides everything
//! lower layers have below it ([`merge`]). Files come out of the store through zlink's tiers
//! ([`crate::link::Linker`]), `clone-or-copy` by default: a hard link shares the store's
//! read-only inode, so an edit through it would damage the store, and every link has the
//! blob's mode (0444) rather than the manifest's.
//!
//! Directories are created writable and get their modes last, deepest first, so that a
//! read-only directory in a layer can still be filled. Every entry gets the modification time
//! its layer recorded (directories last, as filling them changes theirs), so `make` and
//! `rsync -t` see the tree that was committed, and committing a checkout again gives the same
//! layer. A hard-linked file is the blob itself: it keeps the store's mode and time, as one
//! blob may stand for files of different modes and times. FIFOs are made with `mknod`, and so
//! are device nodes, which need root (or `CAP_MKNOD`).

use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::link::{Linker, Mode, Tier};
use crate::manifest::{Kind, Manifest, Node, NodeKind, ROOT, Time};
use crate::pool;
use crate::store::Store;
use std::collections::btree_map::Entry;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The merged tree of a stack of layers, bottom first. It has no whiteouts and no opaque
/// bits left: only what a reader of the stack sees.
pub fn merge(layers: &[Manifest]) -> Node {
    let mut root = Node::dir(0o755);
    for layer in layers {
        apply(&mut root, layer, ROOT);
    }
    root
}

fn apply(lower: &mut Node, layer: &Manifest, dir: u32) {
    let Kind::Dir { opaque, .. } = layer.entry(dir).kind else {
        return;
    };
    lower.mode = layer.entry(dir).mode;
    lower.mtime = layer.entry(dir).mtime;
    let children = lower.children_mut().expect("apply() is given directories");
    if opaque {
        children.clear();
    }
    for child in layer.children(dir) {
        let name = layer.name(child).as_bytes().to_vec();
        let e = layer.entry(child);
        match e.kind {
            Kind::Whiteout => {
                children.remove(&name);
            }
            Kind::Dir { .. } => {
                let slot = match children.entry(name) {
                    Entry::Occupied(o) if o.get().children().is_some() => o.into_mut(),
                    Entry::Occupied(mut o) => {
                        o.insert(Node::dir(e.mode).at(e.mtime));
                        o.into_mut()
                    }
                    Entry::Vacant(v) => v.insert(Node::dir(e.mode).at(e.mtime)),
                };
                apply(slot, layer, child);
            }
            Kind::File { size, digest } => {
                children.insert(name, leaf(e, NodeKind::File { size, digest }));
            }
            Kind::Symlink { .. } => {
                let target = layer.target(child).unwrap_or_default().to_owned();
                children.insert(name, leaf(e, NodeKind::Symlink { target }));
            }
            Kind::Fifo => {
                children.insert(name, leaf(e, NodeKind::Fifo));
            }
            Kind::Device(d) => {
                children.insert(name, leaf(e, NodeKind::Device(d)));
            }
        }
    }
}

fn leaf(e: &crate::manifest::Entry, kind: NodeKind) -> Node {
    Node {
        mode: e.mode,
        mtime: e.mtime,
        kind,
    }
}

/// What [`checkout`] did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub dirs: usize,
    pub files: usize,
    pub symlinks: usize,
    /// FIFOs and device nodes.
    pub specials: usize,
    /// Files per tier: hard link, reflink, copy.
    pub tiers: [usize; 3],
}

/// Write the merged tree of `layers` (bottom first) into `dest`, which must not exist or be
/// an empty directory. Files are linked out of `store` with `mode`, `jobs` at a time.
pub fn checkout(
    store: &Store,
    layers: &[Manifest],
    dest: &Path,
    mode: Mode,
    jobs: usize,
) -> Result<Outcome> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::new(
                    dest,
                    ErrorKind::Invalid("destination is not empty".into()),
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(dest).at(dest, "cannot create directory")?;
        }
        Err(e) => return Err(Error::io(dest, "cannot read directory", e)),
    }
    let tree = merge(layers);
    let mut outcome = Outcome::default();
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    lay_out(&tree, dest.to_owned(), &mut dirs, &mut files, &mut outcome)?;

    let linker = Linker::new(mode);
    let tiers = pool::each(
        jobs,
        files.len(),
        || Ok([0usize; 3]),
        |tiers, i| {
            let (dst, node) = &files[i];
            let NodeKind::File { digest, .. } = &node.kind else {
                unreachable!("only files are linked")
            };
            let tier = linker.link_file(&store.blob_path(digest), dst)?;
            // A hard link is the blob itself: its mode and time are the store's.
            if tier != Tier::Hardlink {
                set_mode(dst, node.mode)?;
                set_mtime(dst, node.mtime)?;
            }
            tiers[tier as usize] += 1;
            Ok(())
        },
        |_| Ok(()),
    )?;
    for t in tiers {
        for (sum, n) in outcome.tiers.iter_mut().zip(t) {
            *sum += n;
        }
    }
    outcome.files = files.len();
    // Deepest first, so a read-only parent is closed only after its children are done.
    for (path, mode, mtime) in dirs.iter().rev() {
        set_mode(path, *mode)?;
        set_mtime(path, *mtime)?;
    }
    outcome.dirs = dirs.len();
    Ok(outcome)
}

type FileJob<'t> = (PathBuf, &'t Node);

/// Create directories, symlinks and special files now (in order), collect files for the
/// parallel pass.
fn lay_out<'t>(
    node: &'t Node,
    path: PathBuf,
    dirs: &mut Vec<(PathBuf, u32, Time)>,
    files: &mut Vec<FileJob<'t>>,
    outcome: &mut Outcome,
) -> Result<()> {
    let children = node.children().expect("lay_out() is given directories");
    dirs.push((path.clone(), node.mode, node.mtime));
    for (name, child) in children {
        let p = path.join(OsStr::from_bytes(name));
        match &child.kind {
            NodeKind::Dir { .. } => {
                std::fs::create_dir(&p).at(&p, "cannot create directory")?;
                set_mode(&p, 0o700)?;
                lay_out(child, p, dirs, files, outcome)?;
            }
            NodeKind::File { .. } => files.push((p, child)),
            NodeKind::Symlink { target } => {
                std::os::unix::fs::symlink(target, &p).at(&p, "cannot create symlink")?;
                set_mtime(&p, child.mtime)?;
                outcome.symlinks += 1;
            }
            NodeKind::Fifo => {
                crate::sys::mknod(&p, FIFO_BITS, child.mode, 0).at(&p, "cannot create FIFO")?;
                set_mode(&p, child.mode)?;
                set_mtime(&p, child.mtime)?;
                outcome.specials += 1;
            }
            NodeKind::Device(d) => {
                crate::sys::mknod(&p, d.file_type_bits(), child.mode, d.rdev()).map_err(
                    |e| match e.raw_os_error() {
                        Some(libc::EPERM) => Error::new(
                            &p,
                            ErrorKind::Invalid(
                                "cannot create a device node without root (CAP_MKNOD): \
                                 check the stack out as root"
                                    .into(),
                            ),
                        ),
                        _ => Error::io(&p, "cannot create device node", e),
                    },
                )?;
                set_mode(&p, child.mode)?;
                set_mtime(&p, child.mtime)?;
                outcome.specials += 1;
            }
            NodeKind::Whiteout => {}
        }
    }
    Ok(())
}

#[allow(clippy::unnecessary_cast)] // mode_t is u16 on macOS
const FIFO_BITS: u32 = libc::S_IFIFO as u32;

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .at(path, "cannot set mode")
}

/// The recorded modification time, on the entry itself (never through a symlink); the access
/// time is left as the checkout made it.
fn set_mtime(path: &Path, mtime: Time) -> Result<()> {
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: mtime.to_timespec(),
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .at(path, "cannot set times")
}
