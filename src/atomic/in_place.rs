//! `--in-place`: write the new content into FILE itself, for the files that cannot be replaced
//! (a bind-mounted file such as a container's `/etc/resolv.conf`, where `rename` gives `EBUSY`;
//! a writable file in a directory we cannot write, where no temporary can be made).
//!
//! What it gives up: readers can see the file half-written, and a crash or an I/O error in the
//! middle of the write leaves a mix of old and new content ([`ErrorKind::PartlyWritten`]).
//! What it keeps: the inode, so mode, owner, xattrs, flags and every hard link stay as they are.
//!
//! To keep the window small and nothing lost before it opens, the input is first read in full
//! into an anonymous temporary in the system's temporary directory (so a failing input never
//! touches FILE); then the space is reserved (`fallocate`, where supported, so a full disk fails
//! before the first byte changes); then the content is written from offset 0, the file cut to
//! its new length and synced. The lock of `lock.rs` keeps in-place writers from interleaving.

use super::target::Target;
use super::{Input, Options, Outcome, Source, TempFile, lock, same_content};
use crate::error::{Error, ErrorKind, IoContext, Result};
use rustix::fs::{Mode, OFlags, ftruncate, openat};
use std::fs::File;
use std::io::{self, Seek};
use std::path::Path;

pub fn write(path: &Path, source: Source<'_>, opts: &Options) -> Result<Outcome> {
    let mut input = Input::open(source)?;
    let target = Target::resolve(path)?;
    let path = &target.path;
    let old = lock::open_locked(&target, opts.wait)?;
    if old.is_none() && opts.must_exist {
        return Err(Error::new(path, ErrorKind::Missing));
    }
    if let Some(old) = &old {
        let protection = old.flags.protection();
        if protection.is_immutable() {
            return Err(Error::new(path, ErrorKind::Immutable));
        }
        if protection.is_append_only() && !opts.append {
            return Err(Error::new(path, ErrorKind::AppendOnly));
        }
    }

    let spool_dir_path = std::env::temp_dir();
    let spool_dir = File::open(&spool_dir_path).at(&spool_dir_path, "cannot open directory")?;
    let spool = TempFile::new_in(&spool_dir, &spool_dir_path, "zwrite-in-place".as_ref())
        .at(&spool_dir_path, "cannot create temporary file")?;
    input.copy_to(spool.file()).at(
        &spool_dir_path,
        "cannot read the new content into a temporary file",
    )?;
    let bytes = spool.file().metadata().at(path, "cannot stat")?.len();
    let mut outcome = Outcome {
        path: path.clone(),
        changed: true,
        created: old.is_none(),
        bytes,
        not_kept: vec![],
        other_links: 0,
    };
    if let Some(old) = &old
        && opts.if_changed
        && !opts.append
        && same_content(&old.file, spool.file(), bytes).at(path, "cannot compare")?
    {
        outcome.changed = false;
        return Ok(outcome);
    }

    let file = open_for_writing(&target, opts, old.as_ref().map(|o| o.identity()))?;
    let start = if opts.append {
        file.metadata().at(path, "cannot stat")?.len()
    } else {
        0
    };
    reserve(&file, start, bytes).at(path, "cannot reserve space for the new content")?;
    // From the first byte on, FILE is no longer what it was.
    let partly = |source: io::Error| Error::new(path, ErrorKind::PartlyWritten { source });
    copy_at(spool.file(), &file, start).map_err(partly)?;
    if !opts.append {
        ftruncate(&file, bytes).map_err(|e| partly(e.into()))?;
    }
    if opts.sync
        && let Err(source) = file.sync_all()
    {
        let what = "the file";
        return Err(Error::new(path, ErrorKind::NotDurable { what, source }));
    }
    // As for a replacement: the size of the new content, old part included.
    outcome.bytes = start + bytes;
    Ok(outcome)
}

/// Open FILE for writing (creating it if missing), checking that it is still the file we
/// locked (`identity`; `None`: it did not exist).
fn open_for_writing(target: &Target, opts: &Options, identity: Option<(u64, u64)>) -> Result<File> {
    let path = &target.path;
    let mut flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if opts.append {
        flags |= OFlags::APPEND;
    }
    if identity.is_none() {
        flags |= OFlags::CREATE | OFlags::EXCL;
    }
    let mode = Mode::from_raw_mode(opts.new_mode.unwrap_or(0o666) as rustix::fs::RawMode);
    let file = File::from(
        openat(&target.dir, &target.name, flags, mode).at(path, "cannot open for writing")?,
    );
    if let Some(mode) = opts.new_mode
        && identity.is_none()
    {
        // open(2) applied the umask; -c means exactly this mode.
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode as rustix::fs::RawMode))
            .at(path, "cannot set mode")?;
    }
    if let Some(id) = identity {
        let st = rustix::fs::fstat(&file).at(path, "cannot stat")?;
        #[allow(clippy::unnecessary_cast)]
        let now = (st.st_dev as u64, st.st_ino as u64);
        if now != id {
            // Cannot happen while we hold the lock, unless a writer that takes none replaced it.
            return Err(Error::io(
                path,
                "the file was replaced meanwhile",
                io::Error::from_raw_os_error(libc::EAGAIN),
            ));
        }
    }
    Ok(file)
}

/// Copy all of `from` (from its start) into `to` at `at`.
fn copy_at(mut from: &File, mut to: &File, at: u64) -> io::Result<()> {
    from.rewind()?;
    to.seek(io::SeekFrom::Start(at))?;
    io::copy(&mut from, &mut to).map(drop)
}

/// Allocate `len` bytes at `at` without changing the file's size or content, so that a full disk
/// fails here rather than halfway through the write. Where the file system cannot, nothing is
/// reserved.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn reserve(file: &File, at: u64, len: u64) -> io::Result<()> {
    use rustix::fs::{FallocateFlags, fallocate};
    use rustix::io::Errno;
    match fallocate(file, FallocateFlags::KEEP_SIZE, at, len) {
        Ok(()) | Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn reserve(_file: &File, _at: u64, _len: u64) -> io::Result<()> {
    Ok(())
}
