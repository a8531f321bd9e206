//! Materialising a stack of layers into a plain directory, by linking out of the store.
//!
//! Layers apply bottom first: a later layer's file, symlink or directory replaces what lower
//! layers have at that path, a whiteout removes it, and an opaque directory hides everything
//! lower layers have below it ([`crate::manifest::merge`]). Files come out of the store
//! through zlink's tiers ([`crate::link::Linker`]), `clone-or-copy` by default: a hard link
//! shares the store's read-only inode, so an edit through it would damage the store, and
//! every link has the blob's mode (0444) rather than the manifest's.
//!
//! Directories are created writable and get their modes last, deepest first, so that a
//! read-only directory in a layer can still be filled. Every entry gets the modification time
//! its layer recorded (directories last, as filling them changes theirs), so `make` and
//! `rsync -t` see the tree that was committed, and committing a checkout again gives the same
//! layer. A hard-linked file is the blob itself: it keeps the store's mode and time, as one
//! blob may stand for files of different modes and times. FIFOs are made with `mknod`, and so
//! are device nodes, which need root (or `CAP_MKNOD`). Everything below DEST is made by
//! directory descriptor and name (`mkdirat`, `symlinkat`, `linkat`, `openat` with
//! `O_NOFOLLOW`), so a tree deeper than `PATH_MAX` checks out like any other.
//!
//! # Damaged and missing blobs
//!
//! A blob that comes out by copy is read in full, so the copy is hashed and must match its
//! digest; with [`Options::verify`], reflinked and hard-linked files are read and checked
//! too. A blob that is missing or damaged fails the checkout with an error naming the blob,
//! the layer and the path, and nothing is left behind ([`undo`]): what the checkout made in
//! DEST is removed, by name, and so is DEST if the checkout created it.

mod undo;

use crate::below::{self, DIR_FLAGS};
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::link::{Linker, Mode, Tier};
use crate::manifest::{Kind, Manifest, Node, NodeKind, Time};
use crate::pool;
use crate::store::{Store, hash_file};
use rustix::fs::{AtFlags, Mode as Perm, OFlags};
use rustix::io::Errno;
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How [`checkout`] runs.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// How files come out of the store (zlink's tiers).
    pub mode: Mode,
    /// Worker threads for the files.
    pub jobs: usize,
    /// Hash every file checked out, not only the copies.
    pub verify: bool,
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
    /// Files whose content was hashed and found to match its digest.
    pub verified: usize,
}

/// Write the merged tree of `layers` (bottom first, each with its digest, which messages
/// name) into `dest`, which must not exist or be an empty directory. On any error nothing
/// is left in `dest` (see the module docs).
pub fn checkout(
    store: &Store,
    layers: &[(Digest, Manifest)],
    dest: &Path,
    opts: &Options,
) -> Result<Outcome> {
    let created = match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::new(
                    dest,
                    ErrorKind::Invalid("destination is not empty".into()),
                ));
            }
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(dest).at(dest, "cannot create directory")?;
            true
        }
        Err(e) => return Err(Error::io(dest, "cannot read directory", e)),
    };
    let tree = crate::manifest::merge(layers.iter().map(|(_, m)| m));
    let done = File::open(dest)
        .at(dest, "cannot open directory")
        .and_then(|root| fill(store, layers, &tree, &root, dest, opts));
    if done.is_err() {
        // Only the names this checkout made: whatever else appeared in DEST meanwhile stays.
        // Best effort: the error that stopped the checkout is what the user needs to see.
        let ours = tree
            .children()
            .expect("a merged tree is a directory")
            .keys();
        let _ = undo::take_back(dest, ours.map(Vec::as_slice), created);
    }
    done
}

/// A directory of the checkout, by its path below DEST.
struct DirJob {
    rel: PathBuf,
}

/// A file to link out of the store into the directory `dirs[dir]`.
struct FileJob {
    dir: usize,
    name: CString,
    mode: u32,
    mtime: Time,
    digest: Digest,
}

fn fill(
    store: &Store,
    layers: &[(Digest, Manifest)],
    tree: &Node,
    root: &File,
    dest: &Path,
    opts: &Options,
) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let mut dirs = vec![DirJob {
        rel: PathBuf::new(),
    }];
    let mut files = Vec::new();
    lay_out(tree, root, dest, 0, &mut dirs, &mut files, &mut outcome)?;

    // Files in runs of one directory, so a worker opens each directory once per run.
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        match runs.last_mut() {
            Some(r) if files[r.start].dir == f.dir && r.len() < FILES_PER_RUN => r.end = i + 1,
            _ => runs.push(i..i + 1),
        }
    }
    let linker = Linker::new(opts.mode);
    let out = Out {
        store,
        layers,
        linker: &linker,
        verify: opts.verify,
        blobs: store.root().join("blobs"),
        dst_dev: crate::link::dev_of(&rustix::fs::fstat(root).at(dest, "cannot stat")?),
    };
    let workers = pool::each(
        opts.jobs,
        runs.len(),
        || Ok(Worker::default()),
        |w, r| {
            let run = runs[r].clone();
            let dir_rel = &dirs[files[run.start].dir].rel;
            let dir_path = dest.join(dir_rel);
            let dir = below::open_dir(root, dir_rel).at(&dir_path, "cannot open directory")?;
            files[run]
                .iter()
                .try_for_each(|f| out.link(w, (&dir, dir_rel, &dir_path), f))
        },
        |_| Ok(()),
    )?;
    for w in workers {
        for (sum, n) in outcome.tiers.iter_mut().zip(w.tiers) {
            *sum += n;
        }
        outcome.verified += w.verified;
    }
    outcome.files = files.len();
    finish_modes(tree, root, dest)?;
    rustix::fs::fchmod(root, crate::link::perm(tree.mode)).at(dest, "cannot set mode")?;
    rustix::fs::futimens(root, &times(tree.mtime)).at(dest, "cannot set times")?;
    outcome.dirs = dirs.len();
    Ok(outcome)
}

/// Files a worker links in one go from one directory.
const FILES_PER_RUN: usize = 256;

/// What every worker of the file pass shares.
struct Out<'a> {
    store: &'a Store,
    layers: &'a [(Digest, Manifest)],
    linker: &'a Linker,
    verify: bool,
    blobs: PathBuf,
    dst_dev: u64,
}

/// One worker's counts, and the `blobs/xx` directories it has open (with their device).
#[derive(Default)]
struct Worker {
    tiers: [usize; 3],
    verified: usize,
    fanout: HashMap<u8, (File, u64)>,
}

impl Out<'_> {
    /// Link one file out of the store into `dir` (at `dir_rel` below DEST, `dir_path` for
    /// messages), check it when it was copied (or `verify`), and give it its mode.
    fn link(&self, w: &mut Worker, dir: (&File, &Path, &Path), f: &FileJob) -> Result<()> {
        let (dir, dir_rel, dir_path) = dir;
        let hex = f.digest.to_hex();
        let fan_path = self.blobs.join(&hex[..2]);
        let (fan_dir, src_dev) = self.fanout_dir(w, f.digest.as_bytes()[0], &fan_path)?;
        let blob_name = CString::new(hex.as_bytes()).expect("hex has no NUL");
        let src = crate::link::Side {
            dir: fan_dir.as_fd(),
            dir_path: &fan_path,
            name: &blob_name,
            dev: src_dev,
        };
        let dst = crate::link::Side {
            dir: dir.as_fd(),
            dir_path,
            name: &f.name,
            dev: self.dst_dev,
        };
        let blame = || {
            let rel = dir_rel.join(OsStr::from_bytes(f.name.to_bytes()));
            blame(self.layers, &rel)
        };
        let placed = self.linker.place(&src, &dst).map_err(|e| {
            match rustix::fs::statat(fan_dir, &blob_name, AtFlags::SYMLINK_NOFOLLOW) {
                Err(Errno::NOENT) => Error::new(
                    self.store.blob_path(&f.digest),
                    ErrorKind::Corrupt(format!("blob is missing; {}", blame())),
                ),
                _ => e,
            }
        })?;
        // Nothing was there before us: an existing same inode is a hard link.
        let tier = placed.tier.unwrap_or(Tier::Hardlink);
        w.tiers[tier as usize] += 1;
        // A copy has been read anyway; a hard link is the blob itself, mode and all.
        let check = self.verify || tier == Tier::Copy;
        if !check && tier == Tier::Hardlink {
            return Ok(());
        }
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let file = rustix::fs::openat(dir, &f.name, flags, Perm::empty())
            .map(File::from)
            .at(&dst.path(), "cannot open")?;
        if check {
            if hash_file(&file).at(&dst.path(), "cannot read")? != f.digest {
                return Err(Error::new(
                    self.store.blob_path(&f.digest),
                    ErrorKind::Corrupt(format!(
                        "blob content does not hash to its name; {}",
                        blame()
                    )),
                ));
            }
            w.verified += 1;
        }
        // A hard link is the blob itself: its mode and time are the store's.
        if tier != Tier::Hardlink {
            rustix::fs::fchmod(&file, crate::link::perm(f.mode))
                .at(&dst.path(), "cannot set mode")?;
            rustix::fs::futimens(&file, &times(f.mtime)).at(&dst.path(), "cannot set times")?;
        }
        Ok(())
    }

    /// `blobs/xx`, opened once per worker. Where it does not exist, `blobs/` stands in: the
    /// blob is then missing, and reported as such by name.
    fn fanout_dir<'w>(&self, w: &'w mut Worker, fan: u8, path: &Path) -> Result<(&'w File, u64)> {
        let (dir, dev) = match w.fanout.entry(fan) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let dir = File::open(path)
                    .or_else(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => File::open(&self.blobs),
                        _ => Err(e),
                    })
                    .at(path, "cannot open directory")?;
                let dev = crate::link::dev_of(&rustix::fs::fstat(&dir).at(path, "cannot stat")?);
                v.insert((dir, dev))
            }
        };
        Ok((dir, *dev))
    }
}

/// "layer HEX has it at PATH": the topmost layer that puts this file at `rel`.
fn blame(layers: &[(Digest, Manifest)], rel: &Path) -> String {
    let found = layers.iter().rev().find(|(_, m)| {
        m.find(rel)
            .is_some_and(|i| matches!(m.entry(i).kind, Kind::File { .. }))
    });
    let mut text = match found {
        Some((d, _)) => format!("layer {d} needs it for "),
        None => "needed for ".to_string(),
    };
    text.push_str(&rel.to_string_lossy());
    text
}

/// Create directories (writable for now) and symlinks below `dir` in tree order; collect
/// the files for the parallel pass.
fn lay_out(
    node: &Node,
    dir: &File,
    dir_path: &Path,
    index: usize,
    dirs: &mut Vec<DirJob>,
    files: &mut Vec<FileJob>,
    outcome: &mut Outcome,
) -> Result<()> {
    let children = node.children().expect("lay_out() is given directories");
    for (name, child) in children {
        let c_name = CString::new(name.clone()).expect("manifest names have no NUL");
        let p = dir_path.join(OsStr::from_bytes(name));
        match &child.kind {
            NodeKind::Dir { .. } => {
                rustix::fs::mkdirat(dir, &c_name, Perm::from_raw_mode(0o700))
                    .at(&p, "cannot create directory")?;
                let sub = File::from(
                    rustix::fs::openat(dir, &c_name, DIR_FLAGS, Perm::empty())
                        .at(&p, "cannot open directory")?,
                );
                // mkdir's mode passed through the umask.
                rustix::fs::fchmod(&sub, Perm::from_raw_mode(0o700)).at(&p, "cannot set mode")?;
                let rel = dirs[index].rel.join(OsStr::from_bytes(name));
                dirs.push(DirJob { rel });
                let sub_index = dirs.len() - 1;
                lay_out(child, &sub, &p, sub_index, dirs, files, outcome)?;
            }
            NodeKind::File { digest, .. } => files.push(FileJob {
                dir: index,
                name: c_name,
                mode: child.mode,
                mtime: child.mtime,
                digest: *digest,
            }),
            NodeKind::Symlink { target } => {
                rustix::fs::symlinkat(target.as_os_str(), dir, &c_name)
                    .at(&p, "cannot create symlink")?;
                rustix::fs::utimensat(dir, &c_name, &times(child.mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .at(&p, "cannot set times")?;
                outcome.symlinks += 1;
            }
            NodeKind::Fifo | NodeKind::Device(_) => {
                let (file_type, rdev) = match &child.kind {
                    NodeKind::Device(d) => (d.file_type_bits(), d.rdev()),
                    _ => (FIFO_BITS, 0),
                };
                crate::sys::mknodat(
                    dir,
                    &c_name,
                    rustix::fs::FileType::from_raw_mode(file_type as _),
                    rustix::fs::Mode::from_raw_mode(child.mode as _),
                    rdev,
                )
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::EPERM) => Error::new(
                        &p,
                        ErrorKind::Invalid(
                            "cannot create a device node without root (CAP_MKNOD): \
                                 check the stack out as root"
                                .into(),
                        ),
                    ),
                    _ => Error::io(&p, "cannot create special file", e),
                })?;
                // mknod's mode passed through the umask.
                rustix::fs::chmodat(
                    dir,
                    &c_name,
                    crate::link::perm(child.mode),
                    AtFlags::empty(),
                )
                .at(&p, "cannot set mode")?;
                rustix::fs::utimensat(dir, &c_name, &times(child.mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .at(&p, "cannot set times")?;
                outcome.specials += 1;
            }
            NodeKind::Whiteout => {}
        }
    }
    Ok(())
}

/// Give every directory below `dir` its mode and time, deepest first, so that a read-only
/// directory is closed only after everything in it is done.
fn finish_modes(node: &Node, dir: &File, dir_path: &Path) -> Result<()> {
    for (name, child) in node.children().expect("directories only") {
        if child.children().is_none() {
            continue;
        }
        let p = dir_path.join(OsStr::from_bytes(name));
        let sub = File::from(
            rustix::fs::openat(dir, OsStr::from_bytes(name), DIR_FLAGS, Perm::empty())
                .at(&p, "cannot open directory")?,
        );
        finish_modes(child, &sub, &p)?;
        rustix::fs::fchmod(&sub, crate::link::perm(child.mode)).at(&p, "cannot set mode")?;
        rustix::fs::futimens(&sub, &times(child.mtime)).at(&p, "cannot set times")?;
    }
    Ok(())
}

#[allow(clippy::unnecessary_cast)] // mode_t is u16 on macOS
const FIFO_BITS: u32 = libc::S_IFIFO as u32;

/// The recorded modification time; the access time is left as the checkout made it.
fn times(mtime: Time) -> rustix::fs::Timestamps {
    rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: mtime.to_timespec(),
    }
}
