//! Mutual exclusion between writers whose replacement depends on the old file: `-a` reads it,
//! `-i` lifts and sets its flags.
//!
//! A `flock` on FILE itself would be lost at every replacement (the next writer opens the new
//! inode), so a writer locks the inode it opened and then checks that FILE still names that
//! inode; if not, it starts over. Only the holder of the lock on the current inode can replace
//! it, so the check stays true for as long as the lock is held. When FILE does not exist the
//! directory is locked instead, and the check is that FILE still does not exist: creating it
//! takes that lock, and anyone who sees the created file only sees it after the creator's read.
//!
//! The replacement is locked before it is renamed into place ([`lock_replacement`]): a writer
//! that opens the new FILE right after the rename must wait until the first one has set the
//! flags again, or it would see an unprotected file that turns immutable under its feet.

use super::target::{Existing, Target};
use crate::error::{Error, ErrorKind, IoContext, Result};
use std::fs::{File, TryLockError};

/// Open the current file (if any) with its lock held. The lock lasts while the returned file
/// (or, for a missing file, the target's directory) stays open.
pub fn open_locked(target: &Target, wait: bool) -> Result<Option<Existing>> {
    loop {
        let mut existing = target.open_existing()?;
        let holder = existing.as_ref().map_or(&target.dir, |e| &e.file);
        lock(holder, target, wait)?;
        if target.identity()? == existing.as_ref().map(Existing::identity) {
            // The previous holder may have set flags or metadata after we opened the file.
            if let Some(e) = &mut existing {
                e.reload(&target.path)?;
            }
            return Ok(existing);
        }
        // Replaced or created between our open and our lock: that lock guards nothing.
        holder.unlock().at(&target.path, "cannot unlock")?;
    }
}

fn lock(file: &File, target: &Target, wait: bool) -> Result<()> {
    if wait {
        return file.lock().at(&target.path, "cannot lock");
    }
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(Error::new(&target.path, ErrorKind::Locked)),
        Err(TryLockError::Error(e)) => Err(Error::io(&target.path, "cannot lock", e)),
    }
}

/// Lock the not-yet-visible replacement, so it is born locked (see the module docs). Nobody
/// else can hold its lock yet, so this never waits.
pub fn lock_replacement(temp: &File, target: &Target) -> Result<()> {
    temp.lock().at(&target.path, "cannot lock")
}
