//! Copy-up: a lower file becomes a scratch file before its first change.
//!
//! # What a crash leaves behind
//!
//! The copy is built in scratch's work directory (same file system, never listed to users):
//! an `O_TMPFILE` where the file system has it, else a named temporary. Content by reflink where
//! the store and scratch share a reflinking file system, else by an in-kernel copy (by
//! read/write, hashing on the way, for a blob not yet proven sound: see below); then owner,
//! mode (after the owner: `chown` clears setuid/setgid) and times; then, with `sync`, an
//! fsync; and only then one `rename(RENAME_NOREPLACE)` to the file's name in scratch. So the
//! name in scratch is absent (the lower file shows) or the complete copy, never a truncated
//! file shadowing the original. Leftovers in the work directory are removed when scratch is
//! opened again.
//!
//! # Once per file
//!
//! FUSE requests run on several threads, and two processes may open one lower file for
//! writing at the same moment. Copy-ups of one path are serialised by a per-path lock, and
//! the second finds the copy made and returns `false`; `RENAME_NOREPLACE` also makes sure that
//! a copy never lands over a file someone created under the name meanwhile.
//!
//! # Damaged blobs
//!
//! A blob no reader has proven sound yet ([`crate::store::open_blob`]) is hashed while it is
//! copied, one read for both; when it does not hash to its name the copy-up fails (the view
//! answers `EIO`) and the copy is removed, so nothing of it reaches scratch. A reflink reads
//! nothing: the blob is recorded instead and proven at commit ([`super::unchecked`]).

use super::{Attrs, Scratch};
use crate::atomic::TempFile;
use crate::digest::Digest;
use rustix::fs::{AtFlags, Gid, Mode, Timespec, Timestamps, Uid, fchmod, fchown, futimens, statat};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// What a copy-up copies: a layer file's blob, and the digest it must hash to while it is not
/// yet proven sound.
#[derive(Clone, Copy, Debug)]
pub struct Content<'a> {
    pub file: &'a File,
    pub unproven: Option<&'a Digest>,
}

/// What a copy-up did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copied {
    /// The name was in scratch already (copied up, or created by someone else).
    Exists,
    /// Copied up; `proven`: the unproven blob was hashed on the way and is sound.
    Made { proven: bool },
}

/// Read/write pieces of a hashing copy; three are in flight (read and hashed, being written,
/// free).
const PIECE: usize = 1 << 20;

impl Scratch {
    /// Copy a lower file up to `name` in the scratch directory `dir` (which is `dir_rel` beneath
    /// the root). `content` is the lower file's data (`None`: an empty file). Returns `false`
    /// when `name` already exists in scratch, copied up or created by someone else.
    pub fn copy_up(
        &self,
        dir: &File,
        dir_rel: &Path,
        name: &OsStr,
        content: Option<&File>,
        attrs: &Attrs,
    ) -> io::Result<bool> {
        let content = content.map(|file| Content {
            file,
            unproven: None,
        });
        let copied = self.copy_up_content(dir, dir_rel, name, content, attrs)?;
        Ok(copied != Copied::Exists)
    }

    /// [`Scratch::copy_up`] of a blob that may be unproven (see the module docs):
    /// `InvalidData` when it is damaged, and nothing of it is left.
    pub fn copy_up_content(
        &self,
        dir: &File,
        dir_rel: &Path,
        name: &OsStr,
        content: Option<Content>,
        attrs: &Attrs,
    ) -> io::Result<Copied> {
        let key = dir_rel.join(name);
        let lock = self.copy_lock(&key);
        let held = lock.lock().unwrap_or_else(|p| p.into_inner());
        let done = super::keeping_times(dir, || self.copy_up_locked(dir, name, content, attrs));
        drop(held);
        self.release_copy_lock(&key, lock);
        done
    }

    fn copy_up_locked(
        &self,
        dir: &File,
        name: &OsStr,
        content: Option<Content>,
        attrs: &Attrs,
    ) -> io::Result<Copied> {
        if present(dir, name)? {
            return Ok(Copied::Exists);
        }
        // Dropped on every error: the partial copy goes with it.
        let mut temp = TempFile::new_in(&self.work, &self.work_path, name)?;
        let proven = match content {
            None => false,
            Some(Content {
                file,
                unproven: None,
            }) => {
                crate::link::clone_or_copy(file, temp.file())?;
                false
            }
            Some(Content {
                file,
                unproven: Some(digest),
            }) => {
                if crate::link::try_clone(file, temp.file())? {
                    self.record_unchecked(digest, file, temp.file())?;
                    false
                } else {
                    copy_hashing(file, temp.file(), digest)?;
                    true
                }
            }
        };
        set_attrs(temp.file(), attrs)?;
        temp.prepare(self.sync)?;
        match temp.move_new(dir, name) {
            Ok(()) => Ok(Copied::Made { proven }),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(Copied::Exists),
            Err(e) => Err(e),
        }
    }

    /// An unnamed scratch file with `content` (`None`: empty) and `attrs`: the copy a removed
    /// layer file gets when someone who still has it open writes to it. Nothing of it is
    /// left behind once the descriptor is closed.
    pub fn anonymous_copy(&self, content: Option<&File>, attrs: &Attrs) -> io::Result<File> {
        let temp = TempFile::new_in(&self.work, &self.work_path, OsStr::new("removed"))?;
        if let Some(src) = content {
            crate::link::clone_or_copy(src, temp.file())?;
        }
        set_attrs(temp.file(), attrs)?;
        // Dropping `temp` removes its name, if the file system gave it one.
        temp.file().try_clone()
    }

    fn copy_lock(&self, key: &Path) -> Arc<Mutex<()>> {
        let mut locks = self.copying.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(key.to_owned()).or_default().clone()
    }

    /// Drop the path's lock from the table once nobody else waits on it, so the table holds
    /// only copy-ups in flight.
    fn release_copy_lock(&self, key: &Path, lock: Arc<Mutex<()>>) {
        let mut locks = self.copying.lock().unwrap_or_else(|p| p.into_inner());
        // Ours and the table's: no other thread holds a clone.
        if Arc::strong_count(&lock) == 2 {
            locks.remove(key);
        }
    }
}

/// Copy `src` into the empty `dst` by read/write, hashing what is read: `InvalidData` when it
/// does not hash to `digest`. A second thread writes while this one reads and hashes the next
/// piece, so where a core is free the copy costs about the read and the hash alone.
fn copy_hashing(src: &File, dst: &File, digest: &Digest) -> io::Result<()> {
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, u64)>(1);
    let (free_tx, free_rx) = mpsc::sync_channel::<Vec<u8>>(3);
    for _ in 0..3 {
        let _ = free_tx.send(vec![0u8; PIECE]);
    }
    std::thread::scope(|s| {
        let writer = std::thread::Builder::new().spawn_scoped(s, move || -> io::Result<()> {
            for (buf, at) in full_rx {
                dst.write_all_at(&buf, at)?;
                // The reader may be done and gone: then nothing needs the buffer.
                let _ = free_tx.send(buf);
            }
            Ok(())
        })?;
        let mut hasher = Digest::blob_hasher();
        let mut at = 0u64;
        let read = loop {
            // No free buffer: the writer failed and dropped its end.
            let Ok(mut buf) = free_rx.recv() else {
                break Ok(());
            };
            buf.resize(PIECE, 0);
            let n = match read_at(src, &mut buf, at) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            buf.truncate(n);
            hasher.update(&buf);
            if full_tx.send((buf, at)).is_err() {
                break Ok(());
            }
            at += n as u64;
        };
        drop(full_tx);
        let written = writer.join().expect("the copy-up writer does not panic");
        read?;
        written?;
        match Digest::from(hasher.finalize()) == *digest {
            true => Ok(()),
            false => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "blob does not hash to its name",
            )),
        }
    })
}

fn read_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, at) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Owner first (it clears setuid/setgid), then mode, then times (any change above bumps them).
/// An unprivileged daemon cannot give files away: the owner is kept where it can be.
pub(super) fn set_attrs(file: &File, attrs: &Attrs) -> io::Result<()> {
    let st = rustix::fs::fstat(file)?;
    if (st.st_uid, st.st_gid) != (attrs.uid, attrs.gid) {
        let (uid, gid) = (Uid::from_raw(attrs.uid), Gid::from_raw(attrs.gid));
        if fchown(file, Some(uid), Some(gid)).is_err() {
            let _ = fchown(file, None, Some(gid));
        }
    }
    fchmod(file, Mode::from_raw_mode((attrs.mode & 0o7777) as _))?;
    futimens(
        file,
        &Timestamps {
            last_access: timespec(attrs.atime),
            last_modification: timespec(attrs.mtime),
        },
    )?;
    Ok(())
}

pub(super) fn timespec(t: SystemTime) -> Timespec {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timespec {
        tv_sec: d.as_secs() as _,
        tv_nsec: d.subsec_nanos() as _,
    }
}

pub(super) fn present(dir: &File, name: &OsStr) -> io::Result<bool> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
