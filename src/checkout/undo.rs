//! Taking back a checkout that failed: removing what it made, by directory descriptor (the
//! tree may be deeper than `PATH_MAX`), making read-only directories writable on the way.

use rustix::fs::{AtFlags, Dir, Mode, OFlags, openat, unlinkat};
use rustix::io::Errno;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Remove the entries `names` of `dest` (with everything below them), then `dest` itself if
/// `remove_dest`; `dest` keeps the mode it had otherwise.
pub fn take_back<'a>(
    dest: &Path,
    names: impl Iterator<Item = &'a [u8]>,
    remove_dest: bool,
) -> io::Result<()> {
    let dir = File::open(dest)?;
    let mode = rustix::fs::fstat(&dir)?.st_mode & 0o7777;
    // Our own checkout may have closed it already (a mode without owner write). If that
    // fails, removing may still work: try.
    let _ = rustix::fs::fchmod(&dir, Mode::from_raw_mode(0o700));
    let mut first_error = Ok(());
    for name in names {
        let name = CString::new(name).expect("manifest names have no NUL");
        match remove_entry(&dir, &name) {
            // Not made before the checkout stopped.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) if first_error.is_ok() => first_error = Err(e),
            _ => {}
        }
    }
    rustix::fs::fchmod(&dir, Mode::from_raw_mode(mode))?;
    first_error?;
    if remove_dest {
        std::fs::remove_dir(dest)?;
    }
    Ok(())
}

/// Remove everything in `dir`: all of it is the checkout's own.
fn empty_dir(dir: &File) -> io::Result<()> {
    // Our own checkout may already have closed it (a mode without owner write).
    rustix::fs::fchmod(dir, Mode::from_raw_mode(0o700))?;
    let mut names = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    for name in names {
        remove_entry(dir, &name)?;
    }
    Ok(())
}

fn remove_entry(dir: &File, name: &CStr) -> io::Result<()> {
    match unlinkat(dir.as_fd(), name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(Errno::ISDIR | Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let sub = File::from(openat(dir, name, DIR_FLAGS, Mode::empty())?);
    empty_dir(&sub)?;
    unlinkat(dir.as_fd(), name, AtFlags::REMOVEDIR)?;
    Ok(())
}
