//! Put a new entry over an existing name in one step: build it under a temporary name in the
//! same directory, then `rename` it over the name.
//!
//! [`TempFile`](super::TempFile) covers a fresh file whose content we write. This covers the
//! entries it cannot make: a hard link to an existing inode, a symlink, a file made by a
//! reflink or copy routine that creates its own destination. Readers of the name see the old
//! entry or the new one, never none. Nothing is synced: callers that promise durability use
//! [`replace`](super::replace).
//!
//! What a crash leaves behind: between the creation and the rename, a `.NAME.zw-PID-START-X`
//! entry (removed on SIGINT/SIGTERM/SIGHUP in binaries that install the signal handlers; a
//! regular file left by SIGKILL is removed by the next [`replace`](super::replace) of NAME);
//! the name itself is never missing.

use super::temp::candidate_name;
use crate::error::{Error, Result};
use crate::sys::signals;
use rustix::fs::{AtFlags, renameat, unlinkat};
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::Path;

/// Attempts at a free temporary name before giving up.
const NAME_TRIES: usize = 16;

/// Replace the entry `name` in `dir` (whose path, for messages, is `dir_path`) with one that
/// `create` makes under the temporary name it is given. `create` returns `Ok(None)` when that
/// name is taken (EEXIST), and a fresh name is tried; when it fails it must leave nothing
/// under the temporary name. If the rename fails, the temporary is removed. Either way `name`
/// is left as it was.
pub fn put_over<T>(
    dir: impl AsFd,
    dir_path: &Path,
    name: &OsStr,
    mut create: impl FnMut(&OsStr) -> Result<Option<T>>,
) -> Result<T> {
    let dir = dir.as_fd();
    let path = dir_path.join(name);
    for _ in 0..NAME_TRIES {
        let temp = candidate_name(name);
        let _cleanup = signals::register(&dir_path.join(&temp));
        let Some(made) = create(&temp)? else {
            continue;
        };
        if let Err(e) = renameat(dir, &temp, dir, name) {
            let _ = unlinkat(dir, &temp, AtFlags::empty());
            return Err(Error::io(&path, "cannot rename into place", e.into()));
        }
        return Ok(made);
    }
    Err(Error::io(
        &path,
        "cannot find a free temporary name",
        rustix::io::Errno::EXIST.into(),
    ))
}
