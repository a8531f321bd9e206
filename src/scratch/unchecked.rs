//! Blobs a copy-up shared blocks with before anything proved them sound.
//!
//! A copy-up by read/write hashes the blob on the way and fails with `EIO` when it is damaged
//! (see [`super::copyup`]). A reflink reads nothing, and hashing a 512 MiB blob first costs
//! some thirty times the reflinked copy-up (bench/results/edit.md); so the blob is recorded
//! instead, before the copy is named, and `zcommit --runtime` proves sound the blob of every
//! recorded copy still in scratch before it commits anything ([`prove`], called by
//! [`crate::commit::commit`] for a scratch tree). A damaged blob thus never reaches a layer
//! unnoticed; until that commit, the copy reads as whatever the blob held.
//!
//! The record sits beside the scratch dir (in a runtime, in its directory), never inside it,
//! where a commit would take it for a file: a line per copy, the blob's digest, the copy's
//! inode number (a copy keeps its inode through writes and renames; one that is gone needs no
//! proof) and the blob's identity ([`BlobId`]: a blob replaced since, by `verify --repair` and
//! a new commit, proves nothing about the blocks the copy shares with the old one), appended
//! and synced with the copy-up unless scratch is volatile.

use super::Scratch;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, IoContext, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const NAME: &str = "unchecked-blobs";

/// Which file a blob was: its inode number and change time (ns). A number alone is not
/// enough, file systems hand a freed one to the next new file; a new file's change time is
/// when it was made.
pub type BlobId = (u64, i64);

pub fn blob_id(meta: &std::fs::Metadata) -> BlobId {
    (meta.ino(), meta.ctime() * 1_000_000_000 + meta.ctime_nsec())
}

fn record_path(scratch: &Path) -> PathBuf {
    scratch.with_file_name(NAME)
}

impl Scratch {
    /// Note that `copy` (not yet named) shares blocks with `blob`, which should hash to
    /// `digest` but is unproven.
    pub(super) fn record_unchecked(
        &self,
        digest: &Digest,
        blob: &File,
        copy: &File,
    ) -> io::Result<()> {
        let path = record_path(&self.path);
        let (ino, (blob_ino, blob_ctime)) = (copy.metadata()?.ino(), blob_id(&blob.metadata()?));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let new = file.metadata()?.len() == 0;
        let line = format!("{} {ino} {blob_ino} {blob_ctime}\n", digest.to_hex());
        file.write_all(line.as_bytes())?;
        if self.sync {
            file.sync_data()?;
            if new && let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        Ok(())
    }
}

/// Before the scratch tree at `scratch` is committed: `sound` must say yes for the blob (its
/// digest and the file it was) of every recorded copy still in it, else nothing is
/// committed (the error names the copy). Once all are proven the record goes.
pub fn prove(scratch: &Path, sound: impl Fn(&Digest, BlobId) -> Result<bool>) -> Result<()> {
    let record = record_path(scratch);
    let text = match std::fs::read_to_string(&record) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&record, "cannot read", e)),
    };
    let mut wanted: HashMap<u64, (Digest, BlobId)> = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut fields = line.split(' ');
        let mut entry = || {
            let digest = Digest::parse(fields.next()?)?;
            let ino = fields.next()?.parse().ok()?;
            let blob_ino = fields.next()?.parse().ok()?;
            let blob_ctime = fields.next()?.parse().ok()?;
            Some((ino, (digest, (blob_ino, blob_ctime))))
        };
        let Some((ino, blob)) = entry() else {
            let what = format!("not a record of copied-up blobs: {line:?}");
            return Err(Error::new(&record, ErrorKind::Corrupt(what)));
        };
        wanted.insert(ino, blob);
    }
    let mut copies = Vec::new();
    files_of(scratch, &wanted, &mut copies)?;
    for (path, (digest, blob)) in copies {
        if !sound(&digest, blob)? {
            let what = format!(
                "copied up from blob {}, which is damaged, missing or replaced since: nothing \
                 was committed (remove the file in the runtime, or put a new file in its place, \
                 and commit again)",
                digest.to_hex()
            );
            return Err(Error::new(&path, ErrorKind::Corrupt(what)));
        }
    }
    std::fs::remove_file(&record).at(&record, "cannot remove")
}

/// The regular files below `dir` whose inode is in `wanted`, with their blob; symlinks are
/// never followed.
fn files_of(
    dir: &Path,
    wanted: &HashMap<u64, (Digest, BlobId)>,
    out: &mut Vec<(PathBuf, (Digest, BlobId))>,
) -> Result<()> {
    for entry in std::fs::read_dir(dir).at(dir, "cannot read directory")? {
        let entry = entry.at(dir, "cannot read directory")?;
        let path = entry.path();
        let meta = entry.metadata().at(&path, "cannot stat")?;
        if meta.is_dir() {
            files_of(&path, wanted, out)?;
        } else if meta.is_file()
            && let Some(blob) = wanted.get(&meta.ino())
        {
            out.push((path, *blob));
        }
    }
    Ok(())
}
