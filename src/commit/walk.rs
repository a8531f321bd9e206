//! Reading a directory tree in parallel: every directory's entries with their `lstat`, before
//! any file is read.

use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::pool;
use crate::scratch::whiteout;
use std::ffi::{OsStr, OsString};
use std::fs::Metadata;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// One directory as found.
pub struct Dir {
    /// Relative to the root; empty for the root.
    pub rel: PathBuf,
    pub mode: u32,
    pub opaque: bool,
    pub entries: Vec<Found>,
}

pub struct Found {
    pub name: Vec<u8>,
    pub what: What,
}

pub enum What {
    Dir,
    /// A regular file and its `lstat`; `job` is filled in when the files are listed.
    File {
        meta: Box<Metadata>,
        job: usize,
    },
    Symlink(OsString),
    Whiteout,
}

/// What the walk found: every directory, and the paths it had to leave out.
pub struct Walk {
    pub dirs: Vec<Dir>,
    /// Sockets, FIFOs and device nodes: a layer cannot hold them.
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
    /// A directory, by (device, inode), that is left out wherever it is found: the store,
    /// which would otherwise commit itself, and change with every commit.
    pub exclude: Option<(u64, u64)>,
}

/// Read the tree at `root` with `opts.jobs` threads.
pub fn walk(root: &Path, opts: &Options) -> Result<Walk> {
    let (jobs, markers) = (opts.jobs, opts.markers);
    let meta = std::fs::metadata(root).at(root, "cannot read directory")?;
    if !meta.is_dir() {
        return Err(Error::new(
            root,
            ErrorKind::Invalid("not a directory".into()),
        ));
    }
    let states = pool::queue(
        jobs,
        vec![PathBuf::new()],
        || (Vec::new(), Vec::new()),
        |(dirs, skipped): &mut (Vec<Dir>, Vec<Left>), rel: PathBuf, more| {
            let dir = read_dir(root, rel, markers, opts.exclude, skipped)?;
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
    root: &Path,
    rel: PathBuf,
    markers: bool,
    exclude: Option<(u64, u64)>,
    skipped: &mut Vec<Left>,
) -> Result<Dir> {
    let path = root.join(&rel);
    // The root may be reached through a symlink; anything below is read without following.
    let meta = if rel.as_os_str().is_empty() {
        std::fs::metadata(&path)
    } else {
        std::fs::symlink_metadata(&path)
    }
    .at(&path, "cannot stat directory")?;
    let mut dir = Dir {
        rel,
        mode: meta.mode() & 0o7777,
        opaque: false,
        entries: Vec::new(),
    };
    let mut whiteouts = Vec::new();
    for entry in std::fs::read_dir(&path).at(&path, "cannot read directory")? {
        let entry = entry.at(&path, "cannot read directory")?;
        let name = entry.file_name().into_vec();
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
        // d_type alone cannot be trusted on every file system, and files need the stat anyway.
        let meta = entry.metadata().at(&entry.path(), "cannot stat")?;
        let kind = meta.file_type();
        let what = if kind.is_dir() {
            if exclude == Some((meta.dev(), meta.ino())) {
                skipped.push(Left::Excluded(dir.rel.join(entry.file_name())));
                continue;
            }
            What::Dir
        } else if kind.is_file() {
            What::File {
                meta: Box::new(meta),
                job: usize::MAX,
            }
        } else if kind.is_symlink() {
            let target =
                std::fs::read_link(entry.path()).at(&entry.path(), "cannot read symlink")?;
            What::Symlink(target.into_os_string())
        } else {
            debug_assert!(
                kind.is_fifo()
                    || kind.is_socket()
                    || kind.is_block_device()
                    || kind.is_char_device()
            );
            skipped.push(Left::Special(dir.rel.join(entry.file_name())));
            continue;
        };
        dir.entries.push(Found { name, what });
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
            what: What::Whiteout,
        });
    }
    Ok(dir)
}
