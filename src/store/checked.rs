//! Blobs read by a long-lived reader (zmount's views) are proven sound once, before the first
//! byte of them is served: a damaged blob answers `EIO`, never its bytes.
//!
//! A view reads a blob only where the kernel's page cache misses, often a piece at a time, so
//! the first read of a blob hashes it whole (the page cache then holds it for the reads that
//! follow) and remembers the blob file's inode as sound. A blob is never rewritten in place
//! (`verify --repair` removes it and a commit writes a new inode), so an inode proven sound
//! stays sound. The memory is bounded: past [`REMEMBERED`] inodes it starts afresh, and a
//! forgotten blob is hashed again at its next read.
//!
//! A copy-up does not read a blob twice: it opens it with [`open_for_copy`], hashes an unproven
//! one while copying (see [`crate::scratch`]'s copy-up) and reports it with [`remember_sound`];
//! one it reflinks is proven when the runtime is committed ([`blob_is_sound`]).

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::scratch::unchecked::{BlobId, blob_id};
use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

/// How many sound blob inodes are remembered (16 bytes each).
const REMEMBERED: usize = 1 << 16;

static SOUND: Mutex<Option<HashSet<(u64, u64)>>> = Mutex::new(None);

fn key(file: &File) -> io::Result<(u64, u64)> {
    let meta = file.metadata()?;
    Ok((meta.dev(), meta.ino()))
}

fn known(key: (u64, u64)) -> bool {
    let sound = SOUND.lock().unwrap_or_else(|e| e.into_inner());
    sound.as_ref().is_some_and(|s| s.contains(&key))
}

fn remember(key: (u64, u64)) {
    let mut sound = SOUND.lock().unwrap_or_else(|e| e.into_inner());
    let set = sound.get_or_insert_with(HashSet::new);
    if set.len() >= REMEMBERED {
        set.clear();
    }
    set.insert(key);
}

/// Say, once, what a damaged blob is and how to get rid of it; the answer to the reader is `EIO`.
pub fn damaged(path: &Path) -> io::Error {
    tracing::error!(
        path = %path.display(),
        "blob does not hash to its name: damaged (zcommit verify --repair removes it; \
         committing the content again restores it)"
    );
    io::Error::from_raw_os_error(libc::EIO)
}

/// Open the blob at `path` for reading, after proving once that it hashes to `digest`.
/// A damaged blob is `EIO`, logged with the command that removes it.
pub fn open_blob(path: &Path, digest: &Digest) -> io::Result<File> {
    let file = File::open(path)?;
    let key = key(&file)?;
    if known(key) {
        return Ok(file);
    }
    if super::hash_file(&file)? != *digest {
        return Err(damaged(path));
    }
    remember(key);
    Ok(file)
}

/// Open the blob at `path` to copy it, without hashing it: `true` with it when it was proven
/// sound before.
pub fn open_for_copy(path: &Path) -> io::Result<(File, bool)> {
    let file = File::open(path)?;
    let proven = known(key(&file)?);
    Ok((file, proven))
}

/// The blob open as `file` hashed to its name (a copy proved it on the way).
pub fn remember_sound(file: &File) {
    if let Ok(key) = key(file) {
        remember(key);
    }
}

/// Whether the blob `digest` of `store` is still the file `id` and hashes to its name (`false`
/// when it is missing or another file), read whole: what a commit asks of a blob a copy-up
/// reflinked unproven ([`crate::scratch::unchecked`]).
pub fn blob_is_sound(store: &super::Store, digest: &Digest, id: BlobId) -> Result<bool> {
    let path = store.blob_path(digest);
    match File::open(&path) {
        Ok(file) if blob_id(&file.metadata().at(&path, "cannot stat blob")?) != id => Ok(false),
        Ok(file) => Ok(super::hash_file(&file).at(&path, "cannot read blob")? == *digest),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(&path, "cannot open blob", e)),
    }
}
