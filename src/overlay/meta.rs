//! Meta images: a layer in the shape overlayfs stacks, built once per layer from its manifest.
//!
//! # Layout
//!
//! ```text
//! ROOT/meta/<layer hex>      the layer's EROFS image ([`super::erofs`]): directories,
//!                            symlinks, FIFOs, device nodes, whiteouts as char 0/0 nodes,
//!                            opaque directories with trusted.overlay.opaque=y, and per
//!                            regular file an inode of its size, mode and time with no data,
//!                            carrying trusted.overlay.metacopy (empty) and
//!                            trusted.overlay.redirect=/ab/abcd… (its blob)
//! ROOT/meta/.build-<hex>     an image being written (under .lock)
//! ROOT/meta/.lock            flock'd by a builder
//! ```
//!
//! `ROOT/blobs` is the one data-only lower layer of every mount: a redirect is only ever
//! written from a manifest's digest, so it can only name a blob. The mount
//! ([`super::mount::Lower`]) is read-only and `nodev`, so nothing in an image is writable or
//! usable as a device through a view.
//!
//! # Crashes and races
//!
//! An image is written to `.build-<hex>` while holding `.lock`, synced, and renamed to `<hex>`
//! without replacing anything, so `<hex>` is complete or absent. A build killed midway leaves
//! `.build-<hex>`, which the next builder (holding the lock, so it is no one's work in
//! progress) removes and redoes. `zcommit gc` removes `<hex>` with its layer; `zcommit
//! verify` writes every image again and compares the bytes, and `--repair` removes one that
//! differs, which the next mount builds again. A directory at `<hex>` is a meta tree of an
//! older zkit: the next mount replaces it with an image.
//!
//! # What cannot be shown
//!
//! A character device 0:0 is a whiteout to overlayfs, and an EROFS inode holds a device
//! number of 12:20 bits, so a layer holding either cannot have an image: [`ensure`] refuses
//! it and names `--backend fuse`, which shows it as it is. A `.wh.NAME` entry is a plain name
//! here (overlayfs reads no name specially).

use crate::digest::Digest;
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::manifest::Manifest;
use crate::store::Store;
use rustix::fs::{FlockOperation, Mode, OFlags};
use std::fs::File;
use std::io::{ErrorKind as Io, Write};
use std::path::{Path, PathBuf};

use super::erofs;

/// `ROOT/meta`.
pub fn dir(store: &Store) -> PathBuf {
    store.root().join("meta")
}

/// Where the meta image of `layer` is (whether or not it is there).
pub fn path_of(store: &Store, layer: &Digest) -> PathBuf {
    dir(store).join(layer.to_hex())
}

/// The meta image of `layer`, built first if it is missing. Concurrent callers wait for one
/// builder; an image half written by a killed build is removed and written again.
pub fn ensure(store: &Store, layer: &Digest) -> Result<PathBuf> {
    let final_path = path_of(store, layer);
    if final_path.is_file() {
        return Ok(final_path);
    }
    // The image names the layer's blobs: no sweep while it is built (see `store::lock`).
    let _store_lock = store.write_lock()?;
    let _lock = lock(store)?;
    if final_path.is_file() {
        return Ok(final_path);
    }
    let manifest = store.load_layer(layer)?;
    check_showable(&manifest, layer)?;
    let top = dir(store);
    let hex = layer.to_hex();
    let build_name = format!(".build-{hex}");
    let build = top.join(&build_name);
    // No one else builds while we hold the lock: these are leftovers, of a killed build and
    // of an older zkit (a meta tree, a directory).
    for (path, what) in [(&build, "interrupted build"), (&final_path, "older format")] {
        if remove_any(path).at(path, "cannot remove a stale meta image")? {
            tracing::info!(layer = %hex, "removed a meta image of an {what}");
        }
    }
    let built = (|| {
        let mut file = File::create_new(&build).at(&build, "cannot create meta image")?;
        file.write_all(&erofs::image(&manifest))
            .at(&build, "cannot write meta image")?;
        file.sync_all().at(&build, "cannot sync meta image")?;
        let parent = File::open(&top).at(&top, "cannot open directory")?;
        crate::atomic::rename_noreplace(&parent, build_name.as_ref(), &parent, hex.as_ref())
            .at(&final_path, "cannot name meta image")?;
        parent.sync_all().at(&top, "cannot sync directory")
    })();
    if let Err(e) = built {
        let _ = std::fs::remove_file(&build);
        return Err(e);
    }
    Ok(final_path)
}

/// Remove a file or a whole directory; `false` when nothing was there.
fn remove_any(path: &Path) -> std::io::Result<bool> {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == Io::NotFound => Ok(false),
        Err(e) => Err(e),
    }
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

/// Refuse a layer an image cannot show as it is ([`erofs::unrepresentable`]).
fn check_showable(m: &Manifest, layer: &Digest) -> Result<()> {
    for (path, i) in m.walk() {
        if let Some(why) = erofs::unrepresentable(m, i) {
            let what = format!(
                "layer {} holds {why} (show it with --backend fuse)",
                &layer.to_hex()[..12]
            );
            return Err(Error::new(path, ErrorKind::Invalid(what)));
        }
    }
    Ok(())
}

/// Compare the meta image at `path` with the one its manifest gives; what differs, or
/// `None` when they agree.
pub fn check(path: &Path, m: &Manifest) -> Result<Option<String>> {
    let found = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => return Ok(Some(format!("cannot read: {e}"))),
    };
    let want = erofs::image(m);
    if found == want {
        return Ok(None);
    }
    let at = found.iter().zip(&want).position(|(a, b)| a != b);
    Ok(Some(match at {
        Some(at) => format!("byte {at} differs"),
        None => format!("{} bytes, not {}", found.len(), want.len()),
    }))
}

/// What [`verify`] found.
#[derive(Debug, Default)]
pub struct Report {
    pub checked: usize,
    pub problems: Vec<Error>,
    pub removed: Vec<PathBuf>,
}

/// Check every meta image against its layer's manifest; with `repair`, remove the damaged
/// ones (and those whose layer is gone), which are built again on the next mount. An older
/// zkit's meta tree (a directory) is not checked: the next mount replaces it.
pub fn verify(store: &Store, repair: bool) -> Result<Report> {
    let mut report = Report::default();
    let top = dir(store);
    let entries = match std::fs::read_dir(&top) {
        Ok(e) => e,
        Err(e) if e.kind() == Io::NotFound => return Ok(report),
        Err(e) => return Err(Error::io(&top, "cannot list meta images", e)),
    };
    let mut found: Vec<(PathBuf, Digest)> = Vec::new();
    for entry in entries {
        let entry = entry.at(&top, "cannot list meta images")?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if let Some(d) = entry.file_name().to_str().and_then(Digest::parse)
            && !is_dir
        {
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
            // A damaged layer is the store's report; its image is rebuilt once it is sound.
            Err(_) => continue,
        };
        let Some(what) = problem else { continue };
        report.problems.push(Error::new(
            &path,
            ErrorKind::Corrupt(format!("meta image differs from its layer: {what}")),
        ));
        if repair {
            match remove_any(&path) {
                Ok(_) => report.removed.push(path),
                Err(e) => {
                    report
                        .problems
                        .push(Error::io(&path, "cannot remove damaged meta image", e))
                }
            }
        }
    }
    Ok(report)
}
