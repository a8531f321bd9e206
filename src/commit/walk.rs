//! Reading a directory tree in parallel: every directory's entries with their `lstat`, before
//! any file is read.

use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::manifest::{Device, Time};
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
    pub mtime: Time,
    pub opaque: bool,
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
        meta: Box<Metadata>,
        job: usize,
    },
    Symlink(OsString),
    Fifo,
    Device(Device),
    Whiteout,
}

/// What the walk found: every directory, and the paths it had to leave out.
pub struct Walk {
    pub dirs: Vec<Dir>,
    /// Sockets: a layer cannot hold them (they only mean something to a running process).
    pub skipped: Vec<PathBuf>,
}

/// Read the tree at `root` with `jobs` threads. With `markers`, `.wh.NAME` is a whiteout for
/// NAME and `.wh..wh..opq` makes its directory opaque, as in an editable view's scratch.
pub fn walk(root: &Path, jobs: usize, markers: bool) -> Result<Walk> {
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
        |(dirs, skipped): &mut (Vec<Dir>, Vec<PathBuf>), rel: PathBuf, more| {
            let dir = read_dir(root, rel, markers, skipped)?;
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
    };
    for (dirs, skipped) in states {
        walk.dirs.extend(dirs);
        walk.skipped.extend(skipped);
    }
    // Parents before children, and the same order whatever the threads did.
    walk.dirs.sort_by(|a, b| a.rel.cmp(&b.rel));
    walk.skipped.sort();
    Ok(walk)
}

fn read_dir(root: &Path, rel: PathBuf, markers: bool, skipped: &mut Vec<PathBuf>) -> Result<Dir> {
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
        mtime: Time::of(&meta),
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
        let (mode, mtime) = (meta.mode() & 0o7777, Time::of(&meta));
        let what = if kind.is_dir() {
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
        } else if kind.is_fifo() {
            What::Fifo
        } else if let Some(device) = Device::of(&meta) {
            What::Device(device)
        } else {
            debug_assert!(kind.is_socket());
            skipped.push(dir.rel.join(entry.file_name()));
            continue;
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
