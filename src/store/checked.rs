//! Blobs read by a long-lived reader (zmount's views) are proven sound once, before the first
//! byte of them is served: a damaged blob answers `EIO`, never its bytes.
//!
//! A view reads a blob only where the kernel's page cache misses, often a piece at a time, so
//! the first read of a blob hashes it whole (the page cache then holds it for the reads that
//! follow) and remembers the blob file's inode as sound. A blob is never rewritten in place
//! (`verify --repair` removes it and a commit writes a new inode), so an inode proven sound
//! stays sound. The memory is bounded: past [`REMEMBERED`] inodes it starts afresh, and a
//! forgotten blob is hashed again at its next read.

use crate::digest::Digest;
use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

/// How many sound blob inodes are remembered (16 bytes each).
const REMEMBERED: usize = 1 << 16;

static SOUND: Mutex<Option<HashSet<(u64, u64)>>> = Mutex::new(None);

/// Open the blob at `path` for reading, after proving once that it hashes to `digest`.
/// A damaged blob is `EIO`, logged with the command that removes it.
pub fn open_blob(path: &Path, digest: &Digest) -> io::Result<File> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    let key = (meta.dev(), meta.ino());
    let known = |set: &Option<HashSet<(u64, u64)>>| set.as_ref().is_some_and(|s| s.contains(&key));
    if known(&SOUND.lock().unwrap_or_else(|e| e.into_inner())) {
        return Ok(file);
    }
    if super::hash_file(&file)? != *digest {
        tracing::error!(
            path = %path.display(),
            "blob does not hash to its name: damaged (zcommit verify --repair removes it; \
             committing the content again restores it)"
        );
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    let mut sound = SOUND.lock().unwrap_or_else(|e| e.into_inner());
    let set = sound.get_or_insert_with(HashSet::new);
    if set.len() >= REMEMBERED {
        set.clear();
    }
    set.insert(key);
    Ok(file)
}
