//! Reading a directory tree in parallel: every directory's entries with their `lstat`, before
//! any file is read. Directories are opened below the root's descriptor ([`crate::below`]) and
//! their entries asked of that descriptor (`fstatat`, `readlinkat`), so depth is no limit.

use crate::below;
use crate::error::{IoContext, Result};
use crate::manifest::{Device, Time};
use crate::pool;
use crate::scratch::whiteout;
use crate::store::index::Stamp;
use rustix::fs::{AtFlags, FileType};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// One directory as found.
pub struct Dir {
    /// Relative to the root; empty for the root.
    pub rel: PathBuf,
    pub mode: u32,
    pub mtime: Time,
    pub opaque: bool,
    /// An overlayfs upper dir's `trusted.overlay.redirect` (a renamed lower directory).
    pub redirect: Option<Vec<u8>>,
    pub entries: Vec<Found>,
}

pub struct Found {
    pub name: Vec<u8>,
    /// Permission bits and modification time (whiteouts: 0 and the epoch).
    pub mode: u32,
    pub mtime: Time,
    pub what: What,
}

pub enum What {
    Dir,
    /// A regular file and its `lstat`; `job` is filled in when the files are listed.
    File {
        stamp: Stamp,
        job: usize,
    },
    Symlink(OsString),
    Fifo,
    Device(Device),
    Whiteout,
    /// An overlayfs metacopy file: its content is a lower layer's, found by
    /// [`super::overlay::resolve`] (`digest`), not in the file.
    Lower(super::overlay::Lower),
}

/// What the walk found: every directory, and the paths it had to leave out.
pub struct Walk {
    pub dirs: Vec<Dir>,
    /// Sockets: a layer cannot hold them (they only mean something to a running process).
    pub skipped: Vec<PathBuf>,
    /// Directories left out because they are [`Options::exclude`] (the store).
    pub excluded: Vec<PathBuf>,
}

/// How [`walk`] reads a tree.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub jobs: usize,
    /// Read `.wh.NAME` as a whiteout for NAME and `.wh..wh..opq` as "this directory is
    /// opaque", as in an editable view's scratch.
    pub markers: bool,
    /// Read the tree as an overlayfs upper dir (char 0:0 and xattr whiteouts, opaque and
    /// redirect xattrs, metacopy files): see [`super::overlay`].
    pub overlay: bool,
    /// A directory, by (device, inode), that is left out wherever it is found: the store,
    /// which would otherwise commit itself, and change with every commit.
    pub exclude: Option<(u64, u64)>,
}

/// Read the tree at `root` (open as `root_dir`) with `opts.jobs` threads.
pub fn walk(root_dir: &File, root: &Path, opts: &Options) -> Result<Walk> {
    let (jobs, markers) = (opts.jobs, opts.markers);
    let overlay = opts.overlay;
    let states = pool::queue(
        jobs,
        vec![PathBuf::new()],
        || (Vec::new(), Vec::new()),
        |(dirs, skipped): &mut (Vec<Dir>, Vec<Left>), rel: PathBuf, more| {
            let mut dir = read_dir(root_dir, root, rel, markers, opts.exclude, skipped)?;
            if overlay {
                super::overlay::read_marks(root_dir, root, &mut dir)?;
            }
            for e in &dir.entries {
                if let What::Dir = e.what {
                    more.push(dir.rel.join(OsStr::from_bytes(&e.name)));
                }
            }
            dirs.push(dir);
            Ok(())
        },
    )?;
    let mut walk = Walk {
        dirs: Vec::new(),
        skipped: Vec::new(),
        excluded: Vec::new(),
    };
    for (dirs, left) in states {
        walk.dirs.extend(dirs);
        for l in left {
            match l {
                Left::Special(p) => walk.skipped.push(p),
                Left::Excluded(p) => walk.excluded.push(p),
            }
        }
    }
    // Parents before children, and the same order whatever the threads did.
    walk.dirs.sort_by(|a, b| a.rel.cmp(&b.rel));
    walk.skipped.sort();
    walk.excluded.sort();
    Ok(walk)
}

/// A path the walk leaves out, and why.
enum Left {
    Special(PathBuf),
    Excluded(PathBuf),
}

fn read_dir(
    root_dir: &File,
    root: &Path,
    rel: PathBuf,
    markers: bool,
    exclude: Option<(u64, u64)>,
    skipped: &mut Vec<Left>,
) -> Result<Dir> {
    let path = root.join(&rel);
    // The root may be reached through a symlink; anything below is opened without following.
    let fd = below::open_dir(root_dir, &rel).at(&path, "cannot read directory")?;
    let st = rustix::fs::fstat(&fd).at(&path, "cannot stat directory")?;
    let mut dir = Dir {
        rel,
        mode: crate::link::mode_of(&st) & 0o7777,
        mtime: Time::of_stat(&st),
        opaque: false,
        redirect: None,
        entries: Vec::new(),
    };
    let mut whiteouts = Vec::new();
    for entry in rustix::fs::Dir::read_from(&fd).at(&path, "cannot read directory")? {
        let entry = entry.at(&path, "cannot read directory")?;
        let c_name = entry.file_name();
        let name = c_name.to_bytes().to_vec();
        if name == b"." || name == b".." {
            continue;
        }
        // An editable view's scratch spells deletions as files (see crate::scratch::whiteout).
        if markers {
            match whiteout::classify(OsStr::from_bytes(&name)) {
                whiteout::Entry::Opaque => {
                    dir.opaque = true;
                    continue;
                }
                whiteout::Entry::Whiteout(hidden) => {
                    whiteouts.push(hidden.as_bytes().to_vec());
                    continue;
                }
                whiteout::Entry::Plain(_) => {}
            }
        }
        let entry_path = || path.join(OsStr::from_bytes(&name));
        // d_type alone cannot be trusted on every file system, and files need the stat anyway.
        let st = rustix::fs::statat(&fd, c_name, AtFlags::SYMLINK_NOFOLLOW)
            .at(&entry_path(), "cannot stat")?;
        let (mode, mtime) = (crate::link::mode_of(&st) & 0o7777, Time::of_stat(&st));
        let what = match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                if exclude == Some((crate::link::dev_of(&st), st.st_ino)) {
                    skipped.push(Left::Excluded(dir.rel.join(OsStr::from_bytes(&name))));
                    continue;
                }
                What::Dir
            }
            FileType::RegularFile => What::File {
                stamp: Stamp::of_stat(&st),
                job: usize::MAX,
            },
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(&fd, c_name, Vec::new())
                    .at(&entry_path(), "cannot read symlink")?;
                What::Symlink(OsString::from_vec(target.into_bytes()))
            }
            FileType::Fifo => What::Fifo,
            FileType::CharacterDevice | FileType::BlockDevice => What::Device(Device::of_stat(&st)),
            // Sockets (and kinds no file system has yet).
            _ => {
                skipped.push(Left::Special(dir.rel.join(OsStr::from_bytes(&name))));
                continue;
            }
        };
        dir.entries.push(Found {
            name,
            mode,
            mtime,
            what,
        });
    }
    // A name both deleted and present is a file recreated after its deletion: the file wins.
    let present: std::collections::HashSet<&[u8]> = match whiteouts.is_empty() {
        true => Default::default(),
        false => dir.entries.iter().map(|e| e.name.as_slice()).collect(),
    };
    let whiteouts: Vec<Vec<u8>> = whiteouts
        .into_iter()
        .filter(|n| crate::manifest::valid_name(n) && !present.contains(n.as_slice()))
        .collect();
    for name in whiteouts {
        dir.entries.push(Found {
            name,
            mode: 0,
            mtime: Time::default(),
            what: What::Whiteout,
        });
    }
    Ok(dir)
}
