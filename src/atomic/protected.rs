//! The `-i` commit: replace a file that carries the immutable or append-only flag, which the
//! kernel will not let anyone rename over, and leave the flag on whichever file FILE names
//! when we are done.
//!
//! 1. SIGINT, SIGTERM and SIGHUP are held back (blocked, not lost) from before the flag is
//!    lifted until it is set again, so a Ctrl-C or `kill` cannot end us inside the window; they
//!    are delivered, and end the process as usual, once the flag is back.
//! 2. Lift the flags on the old file.
//! 3. Where the file system can (Linux `RENAME_EXCHANGE`), swap the replacement and FILE: FILE
//!    names the new file and the temporary's name the old one, which stays open and locked.
//!    Elsewhere, `rename` over FILE.
//! 4. Set the flags on the new file, retrying. If that keeps failing after a swap, swap back
//!    and put the flags back on the old file: FILE is untouched and protected again. After a
//!    plain rename there is no old file to go back to.
//! 5. Remove the old file's temporary name.
//!
//! Every step that fails tries to put the flags back on whatever FILE names, and the error
//! says what FILE holds and whether it is protected ([`ErrorKind::NoLongerProtected`]).
//!
//! A SIGKILL (or power loss) between steps 2 and 4 cannot be held back: it leaves FILE, old or
//! new, without its flag (`chattr +i FILE` sets it again), and after a swap the old content
//! under `.FILE.zw-*`, which the next zwrite of FILE removes (see `stale.rs`).

use super::TempFile;
use super::target::{Existing, Target};
use crate::error::{Error, ErrorKind, Result};
use crate::flags::{self, Flags};
use crate::sys::signals;
use std::fs::File;
use std::io;
use std::path::Path;

/// Attempts at setting flags before we report them lost: an `FS_IOC_SETFLAGS` that failed for
/// want of journal space or on a transient I/O error may well pass the next time.
const TRIES: usize = 3;

/// Put `temp` in place of `old` (which carries `protection`) and protect it as `old` was.
pub fn commit(
    temp: &mut TempFile<'_>,
    old: &Existing,
    target: &Target,
    protection: Flags,
) -> Result<()> {
    let path = &target.path;
    let _held = signals::hold();
    set(&old.file, path, old.flags.unprotected())
        .map_err(|e| Error::io(path, "cannot lift the file's flags", e))?;
    let restored = |error: Error| match set(&old.file, path, old.flags) {
        Ok(()) => error,
        Err(restore) => lost(path, protection, false, restore),
    };
    let swapped = match temp.exchange_with(&target.name) {
        Ok(swapped) => swapped,
        Err(e) => return Err(restored(super::cannot_rename(path, e))),
    };
    if !swapped && let Err(e) = temp.rename_to(&target.name) {
        return Err(restored(super::cannot_rename(path, e)));
    }
    let now = flags::get(temp.file()).unwrap_or_default();
    if let Err(e) = set(temp.file(), path, now.union(protection)) {
        if !swapped {
            return Err(lost(path, protection, true, e));
        }
        if let Err(back) = temp.exchange_with(&target.name) {
            return Err(lost(path, protection, true, back));
        }
        return Err(restored(Error::io(
            path,
            "cannot set the flags on the new file, so it was not kept",
            e,
        )));
    }
    if swapped {
        // The old file, now under the temporary's name. Left behind, it is a stale temporary
        // that the next writer removes.
        let _ = temp.remove();
    }
    Ok(())
}

/// Set flags, retrying a few times.
fn set(file: &File, path: &Path, wanted: Flags) -> io::Result<()> {
    let mut result = flags::set(file, path, wanted);
    for _ in 1..TRIES {
        if result.is_ok() {
            break;
        }
        result = flags::set(file, path, wanted);
    }
    result
}

fn lost(path: &Path, protection: Flags, replaced: bool, source: io::Error) -> Error {
    Error::new(
        path,
        ErrorKind::NoLongerProtected {
            replaced,
            flag: protection.describe(),
            fix: protection.set_command(path),
            source,
        },
    )
}
