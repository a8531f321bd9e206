//! Bringing files into the store as blobs, durably and in batches.
//!
//! # Writing one blob
//!
//! 1. If this process wrote `blobs/xx/DIGEST` or has already hashed it, nothing is written.
//!    If it is only in the directory's listing (read once), it is hashed first: a blob damaged
//!    on disk (a flipped bit, a stray write) is replaced from the source at hand, so
//!    committing a file again heals its blob ([`Added::Healed`]). The name is only ever given
//!    to complete content. (A commit that takes a digest from its cache reads neither the
//!    file nor the blob and heals nothing: see [`crate::commit`].)
//! 2. A [`TempFile`] is created in `blobs/xx` and filled from the source by a reflink where the
//!    file system shares blocks, else a kernel copy ([`crate::link::clone_or_copy`]); once the
//!    store has answered a reflink with a copy, a small file is written from the bytes already
//!    read to hash it. A hard link is never used: a later edit of the user's file would change
//!    the blob under its digest.
//! 3. The source's digest was computed before the copy, and the user may have changed the file
//!    in between: only content whose own hash is DIGEST is ever named DIGEST (otherwise
//!    [`ErrorKind::Changed`]). So a copy is hashed again, unless the caller proves the source
//!    unchanged (same stamp as before hashing, last changed before the commit began: the rule
//!    of the commit cache). Bytes written from memory are what was hashed.
//! 4. The temporary (mode 0444, anonymous with `O_TMPFILE`) waits, open, in a batch.
//!
//! # Making a batch durable
//!
//! One `syncfs` on the store's file system makes the data of every waiting temporary durable
//! (where there is no `syncfs`, each file was `fsync`ed when filled); only then is each given
//! its digest as its name, and only if no one else has ([`TempFile::link_new`]: a `linkat` of
//! the anonymous file, so it never has any other name; a rename without replacing where
//! `O_TMPFILE` is missing). So a blob's name never reaches the disk before its data, as with
//! [`TempFile::prepare`], but a commit of 40,000 files pays a few `syncfs` instead of 40,000
//! `fsync`s, and one directory operation per blob instead of a create and a rename. A batch
//! is as large as the descriptor limit allows. [`Store::sync`] after the last batch makes the
//! names durable before a layer names the blobs. A crash leaves nothing behind where
//! `O_TMPFILE` works (a `.DIGEST16.zw-*` temporary elsewhere), never a partial blob.

use super::{Fanout, Seen, Store};
use crate::atomic::TempFile;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::link::{self, Mode, Tier};
use rustix::fs::OFlags;
use rustix::io::Errno;
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
    /// Filled temporaries, their digests, and whether each replaces a damaged blob; dropped
    /// unnamed if the commit fails.
    pending: Vec<(TempFile<'s>, String, bool)>,
    /// Temporaries that may wait, open, for one sync.
    batch: usize,
    /// A reflink was answered with a copy: this file system does not share blocks with the
    /// sources (see [`BlobWriter::wants_bytes`]).
    copies: bool,
    /// No sweep while blobs are being written (see `lock.rs`); a writer that then names
    /// them in a layer holds its own [`Store::write_lock`] across both.
    _lock: super::WriteLock,
}

/// What [`BlobWriter::add`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// The store had it.
    Existing,
    /// Written, by this tier.
    New(Tier),
    /// The store had it, but its content did not hash to its name: replaced, by this tier.
    Healed(Tier),
}

impl Store {
    /// A writer of blobs that brings files in with `mode` (`clone-or-copy`, `reflink` or
    /// `copy`).
    pub fn blob_writer(&self, mode: Mode, batch: usize) -> Result<BlobWriter<'_>> {
        match mode {
            Mode::CloneOrCopy | Mode::Reflink | Mode::Copy => Ok(BlobWriter {
                store: self,
                mode,
                pending: Vec::new(),
                batch: batch.max(1),
                copies: false,
                _lock: self.write_lock()?,
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

    /// `syncfs` the store's file system (where there is one).
    fn sync_data(&self) -> Result<bool> {
        let root = File::open(&self.root).at(&self.root, "cannot open store")?;
        crate::sys::sync_file_system(&root).at(&self.root, "cannot sync store")
    }

    /// Make everything written so far durable: blob renames before the layer that names them.
    pub fn sync(&self) -> Result<()> {
        if !self.sync_data()? {
            for sub in ["blobs", "layers"] {
                let dir = self.root.join(sub);
                File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .at(&dir, "cannot sync directory")?;
            }
            for fan in self.fanout.iter().filter_map(|slot| slot.get()) {
                fan.dir.sync_all().at(&fan.path, "cannot sync directory")?;
            }
        }
        Ok(())
    }
}

impl<'s> BlobWriter<'s> {
    /// Store the content of `src` (open, at `src_path`), whose digest is `digest`.
    ///
    /// `unchanged` is asked after the copy whether `src` provably still holds what was hashed
    /// (for a commit: the same stamp as before hashing, and changed before the commit began;
    /// see [`crate::store::index`]). If it cannot say yes, the copy is hashed again.
    pub fn add(
        &mut self,
        src: &File,
        src_path: &Path,
        digest: &Digest,
        unchanged: impl FnOnce() -> bool,
    ) -> Result<Added> {
        let mode = self.mode;
        let added = self.add_with(digest, |temp, blob| {
            let tier = match mode {
                Mode::Copy => io::copy(&mut &*src, &mut &*temp)
                    .map(|_| Tier::Copy)
                    .at(src_path, "cannot copy into the store")?,
                _ => link::clone_or_copy(src, temp).at(src_path, "cannot copy into the store")?,
            };
            if mode == Mode::Reflink && tier != Tier::Reflink {
                return Err(Error::new(
                    src_path,
                    ErrorKind::Invalid(
                        "the store's file system cannot reflink this file (use --link-mode \
                         clone-or-copy)"
                            .into(),
                    ),
                ));
            }
            if !unchanged() && hash_file(temp).at(blob, "cannot read temporary blob")? != *digest {
                return Err(Error::new(src_path, ErrorKind::Changed));
            }
            Ok(tier)
        })?;
        if added == Added::New(Tier::Copy) {
            self.copies = true;
        }
        Ok(added)
    }

    /// Whether a small file is best given as the bytes already read for hashing
    /// ([`BlobWriter::add_bytes`]): in `copy` mode, or in `clone-or-copy` mode once the store's
    /// file system has answered a reflink with a copy. Writing bytes in hand saves reading the
    /// file again, and nothing can change between hashing and storing them.
    pub fn wants_bytes(&self) -> bool {
        self.mode == Mode::Copy || (self.mode == Mode::CloneOrCopy && self.copies)
    }

    /// Store `bytes`, whose digest is `digest`.
    pub fn add_bytes(&mut self, bytes: &[u8], digest: &Digest) -> Result<Added> {
        self.add_with(digest, |mut temp, blob| {
            io::Write::write_all(&mut temp, bytes).at(blob, "cannot write temporary blob")?;
            Ok(Tier::Copy)
        })
    }

    /// Unless the blob is known, create its temporary, let `fill` give it the content, and
    /// queue it for the next [`BlobWriter::flush`].
    fn add_with(
        &mut self,
        digest: &Digest,
        fill: impl FnOnce(&File, &Path) -> Result<Tier>,
    ) -> Result<Added> {
        let fan = self.store.fanout(digest)?;
        let name = digest.to_hex();
        let blob = fan.path.join(&name);
        let heal = match fan.claim(digest) {
            // Written, or being written, by this commit; or already checked.
            Some(Seen::Sound) => return Ok(Added::Existing),
            // The caller read the source: read the blob too, or a damaged one stays forever.
            Some(Seen::Listed) => match sound(fan, &name, digest)? {
                Some(true) => return Ok(Added::Existing),
                Some(false) => true,
                // Removed since the listing (`verify --repair`): an ordinary new blob.
                None => false,
            },
            None => false,
        };
        // Anonymous where O_TMPFILE works: it gets no name until its digest, after the sync.
        let temp = TempFile::new_in(&fan.dir, &fan.path, name[..16].as_ref())
            .at(&blob, "cannot create temporary blob")?;
        super::read_only(temp.file(), &blob)?;
        let tier = fill(temp.file(), &blob)?;
        if !crate::sys::HAS_SYNCFS {
            temp.file().sync_all().at(&blob, "cannot sync blob")?;
        }
        self.pending.push((temp, name, heal));
        if self.pending.len() >= self.batch {
            self.flush()?;
        }
        Ok(match heal {
            true => Added::Healed(tier),
            false => Added::New(tier),
        })
    }

    /// Make the waiting temporaries durable and give them their digests as names.
    pub fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        // Where there is no syncfs, each file was fsynced when it was filled.
        if crate::sys::HAS_SYNCFS {
            self.store.sync_data()?;
        }
        for (mut temp, name, heal) in self.pending.drain(..) {
            let path = self.store.blob_path_hex(&name);
            if heal {
                // Over the damaged blob, in one step: a reader sees it or the sound one.
                temp.prepare(false)
                    .and_then(|()| temp.rename_to(name.as_ref()))
                    .at(&path, "cannot replace damaged blob")?;
                continue;
            }
            // Taken meanwhile by a concurrent commit: the same bytes are there already.
            temp.link_new(name.as_ref())
                .at(&path, "cannot store blob")?;
        }
        Ok(())
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

/// Whether the blob `name` in `fan` hashes to `digest`; `None` when it is not there.
fn sound(fan: &Fanout, name: &str, digest: &Digest) -> Result<Option<bool>> {
    let path = fan.path.join(name);
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let file = match rustix::fs::openat(&fan.dir, name, flags, rustix::fs::Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(Error::io(&path, "cannot open blob", e.into())),
    };
    let found = hash_file(&file).at(&path, "cannot read blob")?;
    Ok(Some(found == *digest))
}

impl Store {
    fn blob_path_hex(&self, hex: &str) -> PathBuf {
        self.root.join("blobs").join(&hex[..2]).join(hex)
    }
}
