//! Bringing files into the store as blobs, durably and in batches.
//!
//! # Writing one blob
//!
//! 1. If `blobs/xx/DIGEST` exists, nothing is written: the name is only ever given to
//!    complete content.
//! 2. An [`TempFile`] is created in `blobs/xx` (anonymous with `O_TMPFILE`) and filled from the
//!    source by a reflink where the file system shares blocks, else a kernel copy
//!    ([`crate::link::clone_or_copy`]). A hard link is never used: a later edit of the user's
//!    file would change the blob under its digest.
//! 3. The copy is hashed again. The source's digest was computed before the copy, and the
//!    user may have changed the file in between: only content whose own hash is DIGEST is
//!    ever named DIGEST (otherwise [`ErrorKind::Changed`]).
//! 4. Mode 0444. The temporary waits in a batch.
//!
//! # Making a batch durable
//!
//! One `syncfs` on the store's file system makes every waiting temporary's data durable
//! (where there is no `syncfs`, each file is `fsync`ed); then each is linked under its
//! temporary name and renamed to its digest. That is the order of [`TempFile::prepare`]
//! (data first, then the name, then the rename) with one sync for the batch instead of one per
//! file. [`Store::sync`] after the last batch makes the renames durable before a layer names
//! the blobs.

use super::Store;
use crate::atomic::TempFile;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::link::{self, Mode, Tier};
use rustix::fs::{AtFlags, statat};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Read buffer for hashing.
const CHUNK: usize = 256 * 1024;

/// Writes blobs for one thread; temporaries wait until [`BlobWriter::flush`].
pub struct BlobWriter<'s> {
    store: &'s Store,
    mode: Mode,
    pending: Vec<(TempFile<'s>, String)>,
    batch: usize,
}

/// What [`BlobWriter::add`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// The store had it.
    Existing,
    /// Written, by this tier.
    New(Tier),
}

impl Store {
    /// A writer of blobs that brings files in with `mode` (`clone-or-copy`, `reflink` or
    /// `copy`) and holds at most `batch` open temporaries.
    pub fn blob_writer(&self, mode: Mode, batch: usize) -> Result<BlobWriter<'_>> {
        match mode {
            Mode::CloneOrCopy | Mode::Reflink | Mode::Copy => Ok(BlobWriter {
                store: self,
                mode,
                pending: Vec::new(),
                batch: batch.max(1),
            }),
            Mode::Hardlink | Mode::Auto => Err(Error::new(
                mode.name(),
                ErrorKind::Invalid(
                    "the store never hard-links a file in: a later edit of it would corrupt the \
                     store; use clone-or-copy, reflink or copy"
                        .into(),
                ),
            )),
        }
    }

    /// Make everything written so far durable: blob renames before the layer that names them.
    pub fn sync(&self) -> Result<()> {
        let root = File::open(&self.root).at(&self.root, "cannot open store")?;
        if !crate::sys::sync_file_system(&root).at(&self.root, "cannot sync store")? {
            for sub in ["blobs", "layers"] {
                let dir = self.root.join(sub);
                File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .at(&dir, "cannot sync directory")?;
            }
            for slot in &self.fanout {
                if let Some((path, dir)) = slot.get() {
                    dir.sync_all().at(path, "cannot sync directory")?;
                }
            }
        }
        Ok(())
    }

    pub(super) fn blob_exists_in(&self, dir: &File, dir_path: &Path, name: &str) -> Result<bool> {
        match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(Error::io(dir_path.join(name), "cannot stat", e.into())),
        }
    }
}

impl<'s> BlobWriter<'s> {
    /// Store the content of `src` (open, at `src_path`), whose digest is `digest`.
    pub fn add(&mut self, src: &File, src_path: &Path, digest: &Digest) -> Result<Added> {
        let (dir_path, dir) = self.store.fanout_dir(digest)?;
        let name = digest.to_hex();
        if self.store.blob_exists_in(dir, dir_path, &name)? {
            return Ok(Added::Existing);
        }
        let blob = dir_path.join(&name);
        let temp = TempFile::new_in(dir, dir_path, name.as_ref())
            .at(&blob, "cannot create temporary blob")?;
        let tier = match self.mode {
            Mode::Copy => io::copy(&mut &*src, &mut temp.file())
                .map(|_| Tier::Copy)
                .at(src_path, "cannot copy into the store")?,
            _ => {
                link::clone_or_copy(src, temp.file()).at(src_path, "cannot copy into the store")?
            }
        };
        if self.mode == Mode::Reflink && tier != Tier::Reflink {
            return Err(Error::new(
                src_path,
                ErrorKind::Invalid(
                    "the store's file system cannot reflink this file (use --link-mode \
                     clone-or-copy)"
                        .into(),
                ),
            ));
        }
        if hash_file(temp.file()).at(&blob, "cannot read temporary blob")? != *digest {
            return Err(Error::new(src_path, ErrorKind::Changed));
        }
        super::read_only(temp.file(), &blob)?;
        self.pending.push((temp, name));
        if self.pending.len() >= self.batch {
            self.flush()?;
        }
        Ok(Added::New(tier))
    }

    /// Make the waiting temporaries durable and give them their digests as names.
    pub fn flush(&mut self) -> Result<()> {
        let Some((first, _)) = self.pending.first() else {
            return Ok(());
        };
        if !crate::sys::sync_file_system(first.file()).at(self.store.root(), "cannot sync store")? {
            for (temp, name) in &self.pending {
                temp.file()
                    .sync_all()
                    .at(&self.store.blob_path_hex(name), "cannot sync blob")?;
            }
        }
        for (mut temp, name) in self.pending.drain(..) {
            let path = self.store.blob_path_hex(&name);
            temp.prepare(false).at(&path, "cannot name blob")?;
            temp.rename_to(name.as_ref())
                .at(&path, "cannot store blob")?;
        }
        Ok(())
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        // Unflushed temporaries are removed by their own drop; nothing is named half-way.
        self.pending.clear();
    }
}

thread_local! {
    /// One hashing buffer per thread: a fresh 256 KiB buffer per file would be an mmap and
    /// 64 page faults each time.
    static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; CHUNK]);
}

/// The blob digest of an open file's content, read from its start.
pub fn hash_file(file: &File) -> io::Result<Digest> {
    BUF.with_borrow_mut(|buf| {
        let mut hasher = Digest::blob_hasher();
        let mut at = 0u64;
        loop {
            let n = match file.read_at(buf, at) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        Ok(hasher.finalize().into())
    })
}

impl Store {
    fn blob_path_hex(&self, hex: &str) -> PathBuf {
        self.root.join("blobs").join(&hex[..2]).join(hex)
    }
}
