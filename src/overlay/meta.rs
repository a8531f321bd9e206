//! Meta trees: a layer in the shape overlayfs stacks, built once per layer from its manifest.
//!
//! # Layout
//!
//! ```text
//! ROOT/meta/<layer hex>/     the layer's tree: directories (mode, time), symlinks, FIFOs,
//!                            device nodes, whiteouts as char 0/0 nodes, opaque directories
//!                            with trusted.overlay.opaque=y, and per regular file a sparse
//!                            file of its size, mode and time carrying trusted.overlay.metacopy
//!                            (empty) and trusted.overlay.redirect=/ab/abcd… (its blob)
//! ROOT/meta/.build-<hex>/    a tree being built (under .lock)
//! ROOT/meta/.lock            flock'd by a builder
//! ```
//!
//! `ROOT/blobs` is the one data-only lower layer of every mount: a redirect is only ever
//! written from a manifest's digest, so it can only name a blob. Empty files are plain empty
//! files (there is nothing to redirect to).
//!
//! # Crashes and races
//!
//! A tree is built under `.build-<hex>` while holding `.lock`, synced (one `syncfs`), and
//! renamed to `<hex>` without replacing anything, so `<hex>` is complete or absent. A build
//! killed midway leaves `.build-<hex>`, which the next builder (holding the lock, so it is no
//! one's work in progress) removes and redoes. `zcommit gc` removes `<hex>` with its layer;
//! `zcommit verify` checks every tree against its manifest and `--repair` removes damaged
//! ones, which the next mount builds again.
//!
//! # What cannot be shown
//!
//! A character device 0:0 is a whiteout to overlayfs, so a layer holding one cannot have a
//! meta tree: [`ensure`] refuses it and names `--backend fuse`, which shows it as it is. A
//! `.wh.NAME` entry is a plain name here (overlayfs reads no name specially).

use crate::commit::at;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::manifest::{Kind, Manifest, ROOT};
use crate::store::Store;
use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags, Timestamps};
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::ErrorKind as Io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::xattr;

/// `ROOT/meta`.
pub fn dir(store: &Store) -> PathBuf {
    store.root().join("meta")
}

/// Where the meta tree of `layer` is (whether or not it is there).
pub fn path_of(store: &Store, layer: &Digest) -> PathBuf {
    dir(store).join(layer.to_hex())
}

/// The redirect a file with this content gets: its blob's path below `ROOT/blobs`.
pub fn redirect_of(digest: &Digest) -> String {
    let hex = digest.to_hex();
    format!("/{}/{hex}", &hex[..2])
}

/// Whether `layer`'s meta tree is there (built complete, see the module docs).
pub fn exists(store: &Store, layer: &Digest) -> bool {
    path_of(store, layer).is_dir()
}

/// The meta tree of `layer`, built first if it is missing. Concurrent callers wait for one
/// builder; a half-built tree left by a crash is removed and built again.
pub fn ensure(store: &Store, layer: &Digest) -> Result<PathBuf> {
    let final_path = path_of(store, layer);
    if final_path.is_dir() {
        return Ok(final_path);
    }
    // The tree names the layer's blobs: no sweep while it is built (see `store::lock`).
    let _store_lock = store.write_lock()?;
    let _lock = lock(store)?;
    if final_path.is_dir() {
        return Ok(final_path);
    }
    let manifest = store.load_layer(layer)?;
    check_showable(&manifest, layer)?;
    let top = dir(store);
    let hex = layer.to_hex();
    let build_name = format!(".build-{hex}");
    let build = top.join(&build_name);
    // No one else builds while we hold the lock: this is a killed build's leftover.
    match std::fs::remove_dir_all(&build) {
        Ok(()) => tracing::info!(layer = %hex, "removing a meta tree whose build was interrupted"),
        Err(e) if e.kind() == Io::NotFound => {}
        Err(e) => return Err(Error::io(&build, "cannot remove a half-built meta tree", e)),
    }
    let built = (|| {
        std::fs::create_dir(&build).at(&build, "cannot create meta tree")?;
        write_tree(&build, &manifest)?;
        let root = File::open(&build).at(&build, "cannot open meta tree")?;
        crate::sys::sync_file_system(&root).at(&build, "cannot sync meta tree")?;
        let parent = File::open(&top).at(&top, "cannot open directory")?;
        crate::atomic::rename_noreplace(&parent, build_name.as_ref(), &parent, hex.as_ref())
            .at(&final_path, "cannot name meta tree")?;
        parent.sync_all().at(&top, "cannot sync directory")
    })();
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&build);
        return Err(e);
    }
    Ok(final_path)
}

/// Whether the layer of the meta tree at `tree` has an opaque root: it hides every layer below.
pub fn root_opaque(tree: &Path) -> Result<bool> {
    let dir = File::open(tree).at(tree, "cannot open meta tree")?;
    let mark = xattr::get(&dir, OsStr::new("."), xattr::OPAQUE).at(tree, "cannot read xattr")?;
    Ok(mark.is_some_and(|v| v == b"y"))
}

/// Take the builders' lock (waiting for a build in progress).
fn lock(store: &Store) -> Result<File> {
    let top = dir(store);
    match std::fs::DirBuilder::new().create(&top) {
        Ok(()) => {}
        Err(e) if e.kind() == Io::AlreadyExists => {}
        Err(e) => return Err(Error::io(&top, "cannot create directory", e)),
    }
    let path = top.join(".lock");
    let file = rustix::fs::open(
        &path,
        OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )
    .at(&path, "cannot open lock")?;
    rustix::fs::flock(&file, FlockOperation::LockExclusive).at(&path, "cannot lock")?;
    Ok(file.into())
}

/// Refuse a layer overlayfs would misread: a char device 0:0 is its whiteout.
fn check_showable(m: &Manifest, layer: &Digest) -> Result<()> {
    for (path, i) in m.walk() {
        if let Kind::Device(d) = m.entry(i).kind
            && !d.block
            && d.major == 0
            && d.minor == 0
        {
            let what = format!(
                "layer {} holds a character device 0:0, which overlayfs reads as a whiteout \
                 (show it with --backend fuse)",
                &layer.to_hex()[..12]
            );
            return Err(Error::new(path, ErrorKind::Invalid(what)));
        }
    }
    Ok(())
}

/// Fill the empty directory `root` with the tree of `m`: every directory's entries in
/// parallel, then the directories' modes and times, deepest first (filling one changes its
/// time, and a read-only mode must not stop it being filled).
fn write_tree(root: &Path, m: &Manifest) -> Result<()> {
    let root_dir = File::open(root).at(root, "cannot open meta tree")?;
    // Overlayfs ignores an opaque layer root; the mount leaves out what is below it instead
    // (see [`root_opaque`]), and the mark says so without a look at the manifest.
    if let Kind::Dir { opaque: true, .. } = m.entry(ROOT).kind {
        xattr::set(&root_dir, xattr::OPAQUE, b"y").at(root, "cannot mark opaque")?;
    }
    // Threads mostly wait on the file system (as a commit does), not on the CPU.
    let jobs = crate::commit::default_jobs();
    let states = crate::pool::queue(
        jobs,
        vec![ROOT],
        Vec::new,
        |dirs: &mut Vec<u32>, index: u32, more| {
            let rel = m.path(index);
            let fd = at::open_dir(&root_dir, &rel).at(&root.join(&rel), "cannot open directory")?;
            for child in m.children(index) {
                if let Kind::Dir { .. } = m.entry(child).kind {
                    more.push(child);
                }
                make(&fd, m, child, &root.join(&rel))?;
            }
            dirs.push(index);
            Ok(())
        },
    )?;
    let mut dirs: Vec<(PathBuf, u32)> = states
        .into_iter()
        .flatten()
        .map(|i| (m.path(i), i))
        .collect();
    dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
    for (rel, i) in dirs {
        let e = m.entry(i);
        let path = root.join(&rel);
        let fd = at::open_dir(&root_dir, &rel).at(&path, "cannot open directory")?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(e.mode as _)).at(&path, "cannot set mode")?;
        rustix::fs::futimens(&fd, &times(e.mtime)).at(&path, "cannot set time")?;
    }
    Ok(())
}

fn times(t: crate::manifest::Time) -> Timestamps {
    Timestamps {
        last_access: t.to_timespec(),
        last_modification: t.to_timespec(),
    }
}

/// Make entry `i` of `m` in the directory `dir` (at `dir_path`, for messages).
#[allow(clippy::unnecessary_cast)] // mode_t is u16 on macOS
fn make(dir: &File, m: &Manifest, i: u32, dir_path: &Path) -> Result<()> {
    let name = m.name(i);
    let path = dir_path.join(name);
    let c = CString::new(name.as_bytes()).expect("manifest names hold no NUL");
    let e = m.entry(i);
    let perm = Mode::from_raw_mode(e.mode as _);
    let set_time = |flags| {
        rustix::fs::utimensat(dir, c.as_c_str(), &times(e.mtime), flags)
            .at(&path, "cannot set time")
    };
    let node = |kind: FileType, rdev: u64| -> Result<()> {
        crate::sys::mknodat(dir, &c, kind, Mode::from_raw_mode(0o600), rdev)
            .at(&path, "cannot make node")?;
        rustix::fs::chmodat(dir, c.as_c_str(), perm, AtFlags::empty()).at(&path, "cannot set mode")
    };
    match e.kind {
        Kind::Dir { opaque, .. } => {
            rustix::fs::mkdirat(dir, c.as_c_str(), Mode::from_raw_mode(0o700))
                .at(&path, "cannot make directory")?;
            if opaque {
                let sub: File = rustix::fs::openat(dir, c.as_c_str(), at::DIR_FLAGS, Mode::empty())
                    .at(&path, "cannot open directory")?
                    .into();
                xattr::set(&sub, xattr::OPAQUE, b"y").at(&path, "cannot mark opaque")?;
            }
        }
        Kind::File { size, digest } => {
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
            let file: File =
                rustix::fs::openat(dir, c.as_c_str(), flags, Mode::from_raw_mode(0o600))
                    .at(&path, "cannot create file")?
                    .into();
            if size > 0 {
                file.set_len(size).at(&path, "cannot size file")?;
                xattr::set(&file, xattr::METACOPY, b"").at(&path, "cannot mark metacopy")?;
                xattr::set(&file, xattr::REDIRECT, redirect_of(&digest).as_bytes())
                    .at(&path, "cannot set redirect")?;
            }
            rustix::fs::fchmod(&file, perm).at(&path, "cannot set mode")?;
            rustix::fs::futimens(&file, &times(e.mtime)).at(&path, "cannot set time")?;
        }
        Kind::Symlink { .. } => {
            let target = m.target(i).unwrap_or_default();
            rustix::fs::symlinkat(target, dir, c.as_c_str()).at(&path, "cannot make symlink")?;
            set_time(AtFlags::SYMLINK_NOFOLLOW)?;
        }
        Kind::Fifo => {
            node(FileType::Fifo, 0)?;
            set_time(AtFlags::empty())?;
        }
        Kind::Device(d) => {
            let kind = match d.block {
                true => FileType::BlockDevice,
                false => FileType::CharacterDevice,
            };
            node(kind, d.rdev())?;
            set_time(AtFlags::SYMLINK_NOFOLLOW)?;
        }
        Kind::Whiteout => {
            crate::sys::mknodat(dir, &c, FileType::CharacterDevice, Mode::empty(), 0)
                .at(&path, "cannot make whiteout")?;
        }
    }
    Ok(())
}

/// Compare the meta tree at `path` with the manifest it was built from; the first difference
/// found, as `PATH: what`, or `None` when they agree.
pub fn check(path: &Path, m: &Manifest) -> Result<Option<String>> {
    let root = match File::open(path) {
        Ok(f) => f,
        Err(e) => return Ok(Some(format!("cannot open: {e}"))),
    };
    let mut stack = vec![ROOT];
    while let Some(index) = stack.pop() {
        let rel = m.path(index);
        let fd = match at::open_dir(&root, &rel) {
            Ok(fd) => fd,
            Err(e) => {
                return Ok(Some(format!(
                    "{}: cannot open directory: {e}",
                    rel.display()
                )));
            }
        };
        let st = rustix::fs::fstat(&fd).at(&path.join(&rel), "cannot stat")?;
        if let Some(bad) = differs(&fd, OsStr::new("."), &st, m, index)? {
            return Ok(Some(format!("/{}: {bad}", rel.display())));
        }
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&fd).at(&path.join(&rel), "cannot list")? {
            let entry = entry.at(&path.join(&rel), "cannot list")?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        }
        names.sort();
        let wanted: Vec<Vec<u8>> = m
            .children(index)
            .map(|c| m.name(c).as_bytes().to_vec())
            .collect();
        if names != wanted {
            return Ok(Some(format!(
                "/{}: other entries than the layer's",
                rel.display()
            )));
        }
        for child in m.children(index) {
            let name = m.name(child);
            let st = rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW)
                .at(&path.join(&rel).join(name), "cannot stat")?;
            if let Kind::Dir { .. } = m.entry(child).kind {
                stack.push(child);
                continue;
            }
            if let Some(bad) = differs(&fd, name, &st, m, child)? {
                return Ok(Some(format!("/{}: {bad}", rel.join(name).display())));
            }
        }
    }
    Ok(None)
}

/// How `name` in `dir` (stat `st`) differs from entry `i`, if it does.
#[allow(clippy::unnecessary_cast)] // stat field widths differ across platforms
fn differs(
    dir: &File,
    name: &OsStr,
    st: &rustix::fs::Stat,
    m: &Manifest,
    i: u32,
) -> Result<Option<&'static str>> {
    let e = m.entry(i);
    let kind = FileType::from_raw_mode(st.st_mode);
    let xattr = |attr| xattr::get(dir, name, attr).at(Path::new(name), "cannot read xattr");
    let mode_ok = (st.st_mode as u32 & 0o7777) == e.mode;
    let time_ok = crate::manifest::Time::of_stat(st) == e.mtime;
    let bad = match e.kind {
        Kind::Dir { opaque, .. } => {
            let marked = xattr(xattr::OPAQUE)?.is_some_and(|v| v == b"y");
            match () {
                _ if kind != FileType::Directory => Some("not a directory"),
                _ if !mode_ok || !time_ok => Some("mode or time differs"),
                _ if marked != opaque => Some("opaque mark differs"),
                _ => None,
            }
        }
        Kind::File { size, digest } => {
            let want = (size > 0).then(|| redirect_of(&digest).into_bytes());
            let metacopy = xattr(xattr::METACOPY)?.is_some();
            match () {
                _ if kind != FileType::RegularFile => Some("not a regular file"),
                _ if st.st_size as u64 != size => Some("size differs"),
                _ if !mode_ok || !time_ok => Some("mode or time differs"),
                _ if metacopy != (size > 0) => Some("metacopy mark differs"),
                _ if xattr(xattr::REDIRECT)? != want => Some("redirect differs"),
                _ => None,
            }
        }
        Kind::Symlink { .. } => {
            let target = rustix::fs::readlinkat(dir, name, Vec::new()).ok();
            let want = m.target(i).map(|t| t.as_bytes());
            match () {
                _ if kind != FileType::Symlink => Some("not a symlink"),
                _ if target.as_ref().map(|t| t.as_bytes()) != want => Some("target differs"),
                _ if !time_ok => Some("time differs"),
                _ => None,
            }
        }
        Kind::Fifo => match () {
            _ if kind != FileType::Fifo => Some("not a FIFO"),
            _ if !mode_ok || !time_ok => Some("mode or time differs"),
            _ => None,
        },
        Kind::Device(d) => match () {
            _ if !matches!(kind, FileType::CharacterDevice | FileType::BlockDevice) => {
                Some("not a device")
            }
            _ if crate::manifest::Device::of_stat(st) != d => Some("device differs"),
            _ if !mode_ok || !time_ok => Some("mode or time differs"),
            _ => None,
        },
        Kind::Whiteout => match kind == FileType::CharacterDevice && st.st_rdev == 0 {
            true => None,
            false => Some("not a whiteout"),
        },
    };
    Ok(bad)
}

/// What [`verify`] found.
#[derive(Debug, Default)]
pub struct Report {
    pub checked: usize,
    pub problems: Vec<Error>,
    pub removed: Vec<PathBuf>,
}

/// Check every meta tree against its layer's manifest; with `repair`, remove the damaged ones
/// (and those whose layer is gone), which are built again on the next mount.
pub fn verify(store: &Store, repair: bool) -> Result<Report> {
    let mut report = Report::default();
    let top = dir(store);
    let entries = match std::fs::read_dir(&top) {
        Ok(e) => e,
        Err(e) if e.kind() == Io::NotFound => return Ok(report),
        Err(e) => return Err(Error::io(&top, "cannot list meta trees", e)),
    };
    let mut found: Vec<(PathBuf, Digest)> = Vec::new();
    for entry in entries {
        let entry = entry.at(&top, "cannot list meta trees")?;
        if let Some(d) = entry.file_name().to_str().and_then(Digest::parse) {
            found.push((entry.path(), d));
        }
    }
    found.sort();
    let _lock = lock(store)?;
    for (path, layer) in found {
        report.checked += 1;
        let problem = match store.load_layer(&layer) {
            Ok(m) => check(&path, &m)?,
            Err(Error {
                kind: ErrorKind::UnknownLayer,
                ..
            }) => Some("its layer is missing".into()),
            // A damaged layer is the store's report; its tree is rebuilt once it is sound.
            Err(_) => continue,
        };
        let Some(what) = problem else { continue };
        report.problems.push(Error::new(
            &path,
            ErrorKind::Corrupt(format!("meta tree differs from its layer: {what}")),
        ));
        if repair {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => report.removed.push(path),
                Err(e) => {
                    report
                        .problems
                        .push(Error::io(&path, "cannot remove damaged meta tree", e))
                }
            }
        }
    }
    Ok(report)
}
