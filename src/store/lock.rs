//! The store lock: what keeps `zcommit gc`'s sweep from removing an object a writer is about
//! to name.
//!
//! A writer decides that a blob or layer is "already there" and then, later, writes a layer
//! or tag or runtime that names it. A sweep that removed the object in between would leave a
//! name without its object. So every writer holds `ROOT/lock` *shared* ([`Store::write_lock`])
//! from before its first "is it there?" until its last name is written (a commit from a
//! directory or a runtime holds it from the cache lookup to the tag; a view's pin from the
//! name lookup to the pin), and the sweep holds it *exclusively*, re-reading its roots
//! under the lock. Shared holders never wait for each other.
//!
//! `flock` has no queue: a sweep waiting for the exclusive lock would wait for ever behind a
//! stream of overlapping writers. So the way in goes through a second file, `ROOT/lock.gate`:
//! a writer takes the gate exclusively for a moment, takes `lock` shared, and lets the gate
//! go; a sweep takes the gate and keeps it until it has `lock`. New writers then wait at the
//! gate behind the sweep, and current ones finish.
//!
//! The lock belongs to the process: a second [`Store::write_lock`] of the same store (any
//! [`Store`] value, any thread) while one is held only counts, so nested writers (a commit
//! inside a runtime's commit, a tag inside a commit) never wait at the gate behind a sweep
//! that waits for them. The kernel drops both locks when the process dies, however it dies.
//! A holder must never wait for another process that takes the lock (a `zmount mount` client
//! lets go of it before it starts its server): behind a sweep at the gate, that would wait
//! for ever.

use super::Store;
use crate::error::{Error, ErrorKind, IoContext, Result};
use rustix::fs::{FlockOperation, Mode, OFlags};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

/// Locks this process holds shared: one per store (by the root's device and inode).
static HELD: Mutex<Vec<Held>> = Mutex::new(Vec::new());

struct Held {
    key: (u64, u64),
    _file: File,
    count: usize,
    /// Which acquisition this is, for the blob listings a [`Store`] caches.
    serial: u64,
}

/// A process-wide counter of fresh acquisitions.
static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The store lock, held shared until dropped (see the module docs).
#[must_use = "the lock is released when this is dropped"]
#[derive(Debug)]
pub struct WriteLock {
    key: (u64, u64),
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = held.iter().position(|h| h.key == self.key) {
            held[i].count -= 1;
            if held[i].count == 0 {
                // Closing the file releases the flock.
                held.swap_remove(i);
            }
        }
    }
}

/// The store lock, held exclusively by a sweep until dropped.
pub(crate) struct SweepLock {
    _file: File,
}

impl Store {
    /// Hold the store lock shared, for as long as the guard lives: no sweep of `zcommit gc`
    /// removes anything meanwhile. Every writer takes it before it asks whether an object is
    /// there and keeps it until the last layer, tag, runtime or pin that names the object is
    /// written. Waits while a sweep runs (a second or so for a large store).
    pub fn write_lock(&self) -> Result<WriteLock> {
        let key = self.lock_key()?;
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        let serial = match held.iter_mut().find(|h| h.key == key) {
            Some(h) => {
                h.count += 1;
                h.serial
            }
            None => {
                let gate = lock_file(&self.root.join("lock.gate"))?;
                flock(&gate, FlockOperation::LockExclusive, &self.root)?;
                let file = lock_file(&self.root.join("lock"))?;
                flock(&file, FlockOperation::LockShared, &self.root)?;
                drop(gate);
                let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
                held.push(Held {
                    key,
                    _file: file,
                    count: 1,
                    serial,
                });
                serial
            }
        };
        drop(held);
        // Blobs this value listed before a sweep may be gone: list them again.
        if self.lock_serial.swap(serial, Ordering::Relaxed) != serial {
            self.forget_blobs();
        }
        Ok(WriteLock { key })
    }

    /// [`Store::write_lock`] for a reader that wants its layers' blobs to stay (a checkout):
    /// `None` when the store cannot be locked because it is read-only to us, since then we
    /// cannot change it either.
    pub fn read_lock(&self) -> Result<Option<WriteLock>> {
        match self.write_lock() {
            Ok(l) => Ok(Some(l)),
            Err(Error {
                kind: ErrorKind::Io { ref source, .. },
                ..
            }) if matches!(source.raw_os_error(), Some(libc::EACCES | libc::EROFS)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The store lock, exclusively: for a sweep. Refused while this process holds it shared
    /// (it would wait for itself).
    pub(crate) fn sweep_lock(&self) -> Result<SweepLock> {
        let key = self.lock_key()?;
        if HELD
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|h| h.key == key)
        {
            return Err(Error::new(
                &self.root,
                ErrorKind::Invalid("this process holds the store's write lock".into()),
            ));
        }
        let gate = lock_file(&self.root.join("lock.gate"))?;
        flock(&gate, FlockOperation::LockExclusive, &self.root)?;
        let file = lock_file(&self.root.join("lock"))?;
        flock(&file, FlockOperation::LockExclusive, &self.root)?;
        drop(gate);
        Ok(SweepLock { _file: file })
    }

    /// Read the listings of the `blobs/xx` directories this value has opened again.
    fn forget_blobs(&self) {
        for fan in self.fanout.iter().filter_map(|slot| slot.get()) {
            let Ok(entries) = std::fs::read_dir(&fan.path) else {
                continue;
            };
            let listed: std::collections::HashMap<_, _> = entries
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(crate::digest::Digest::parse)
                })
                .map(|d| (d, super::Seen::Listed))
                .collect();
            *fan.known.lock().unwrap() = listed;
        }
    }

    fn lock_key(&self) -> Result<(u64, u64)> {
        let meta = std::fs::metadata(&self.root).at(&self.root, "cannot stat store")?;
        Ok((meta.dev(), meta.ino()))
    }
}

/// Open (creating) a lock file. Read-only is enough for `flock`, and lets users who may only
/// read a shared store take it.
fn lock_file(path: &Path) -> Result<File> {
    let flags = OFlags::RDONLY | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    match rustix::fs::open(path, flags, Mode::from_raw_mode(0o644)) {
        Ok(fd) => Ok(fd.into()),
        // A read-only file system refuses O_CREAT even for a file that exists.
        Err(first @ (rustix::io::Errno::ROFS | rustix::io::Errno::ACCESS)) => {
            let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
            match rustix::fs::open(path, flags, Mode::empty()) {
                Ok(fd) => Ok(fd.into()),
                // Not there and we may not make it: say why we could not.
                Err(rustix::io::Errno::NOENT) => {
                    Err(Error::io(path, "cannot open the store lock", first.into()))
                }
                Err(e) => Err(Error::io(path, "cannot open the store lock", e.into())),
            }
        }
        Err(e) => Err(Error::io(path, "cannot open the store lock", e.into())),
    }
}

fn flock(file: &File, op: FlockOperation, root: &Path) -> Result<()> {
    loop {
        match rustix::fs::flock(file, op) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                return Err(Error::io(
                    root.join("lock"),
                    "cannot lock the store",
                    e.into(),
                ));
            }
        }
    }
}
