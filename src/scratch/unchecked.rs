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
//! where a commit would take it for a file: a line per copy, the blob's digest and the copy's
//! inode number (a copy keeps its inode through writes and renames; one that is gone needs no
//! proof), appended and synced with the copy-up unless scratch is volatile.

use super::Scratch;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, IoContext, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const NAME: &str = "unchecked-blobs";

fn record_path(scratch: &Path) -> PathBuf {
    scratch.with_file_name(NAME)
}

impl Scratch {
    /// Note that `copy` (not yet named) shares blocks with the unproven blob `digest`.
    pub(super) fn record_unchecked(&self, digest: &Digest, copy: &File) -> io::Result<()> {
        let path = record_path(&self.path);
        let ino = copy.metadata()?.ino();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let new = file.metadata()?.len() == 0;
        file.write_all(format!("{} {ino}\n", digest.to_hex()).as_bytes())?;
        if self.sync {
            file.sync_data()?;
            if new && let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        Ok(())
    }
}

/// Before the scratch tree at `scratch` is committed: `sound` must say yes for the blob of
/// every recorded copy still in it, else nothing is committed (the error names the copy).
/// Once all are proven the record goes.
pub fn prove(scratch: &Path, sound: impl Fn(&Digest) -> Result<bool>) -> Result<()> {
    let record = record_path(scratch);
    let text = match std::fs::read_to_string(&record) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&record, "cannot read", e)),
    };
    let mut wanted: HashMap<u64, Digest> = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let entry = line
            .split_once(' ')
            .and_then(|(hex, ino)| Some((ino.parse().ok()?, Digest::parse(hex)?)));
        let Some((ino, digest)) = entry else {
            let what = format!("not a record of copied-up blobs: {line:?}");
            return Err(Error::new(&record, ErrorKind::Corrupt(what)));
        };
        wanted.insert(ino, digest);
    }
    let mut copies = Vec::new();
    files_of(scratch, &wanted, &mut copies)?;
    for (path, digest) in copies {
        if !sound(&digest)? {
            let what = format!(
                "copied up from blob {}, which is damaged or missing: nothing was committed \
                 (remove the file in the runtime, or write it again, and commit)",
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
    wanted: &HashMap<u64, Digest>,
    out: &mut Vec<(PathBuf, Digest)>,
) -> Result<()> {
    for entry in std::fs::read_dir(dir).at(dir, "cannot read directory")? {
        let entry = entry.at(dir, "cannot read directory")?;
        let path = entry.path();
        let meta = entry.metadata().at(&path, "cannot stat")?;
        if meta.is_dir() {
            files_of(&path, wanted, out)?;
        } else if meta.is_file()
            && let Some(digest) = wanted.get(&meta.ino())
        {
            out.push((path, *digest));
        }
    }
    Ok(())
}
