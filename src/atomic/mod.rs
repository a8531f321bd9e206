//! Atomic, durable file replacement: readers see the old file or the new one, never a mix, and
//! after [`replace`] returns the new content survives a power cut.
//!
//! # The commit, step by step
//!
//! 1. Follow FILE through symlinks and open its directory; everything below is relative to that
//!    descriptor ([`Target`]).
//! 2. With `append` or `lift_flags`, take the lock described in `lock.rs`, so that concurrent
//!    writers never interleave their read-modify-write or their flag dance.
//! 3. Create the temporary in the same directory (same file system, so `rename` is atomic):
//!    `O_TMPFILE` on Linux, invisible until step 6; a named `.FILE.zw-PID-START-XXXXXXXX`
//!    elsewhere. Either way it is `flock`ed, and the name records its writer (`stale.rs`).
//!    Temporaries of FILE whose writers are gone are removed first.
//! 4. Write the content (old content first with `append`), streamed in constant memory.
//! 5. Give it the old file's owner, xattrs, mode and inode flags (immutable/append-only wait).
//!    A lost owner, xattr or mode fails the write here unless `allow_metadata_loss`; the mode
//!    is never wider than the old one.
//! 6. Write back the data, link the anonymous file under a temporary name, `fsync` it.
//! 7. `rename` over FILE. With `lift_flags` and a protected FILE, the flag dance in
//!    `protected.rs` instead: signals held, flags lifted, the two files swapped, flags set on
//!    the new one (or everything undone), the old one removed.
//! 8. `fsync` the directory, so the rename itself is durable. If that fails FILE already holds
//!    the new content: the error is [`ErrorKind::NotDurable`], not a plain I/O error.
//!
//! Where step 7 is impossible (FILE is a mount point: `EBUSY`) or step 3 is (the directory is
//! not writable), the error is [`ErrorKind::CannotReplace`]; `in_place` writes into FILE
//! instead, without atomicity (`in_place.rs`).
//!
//! # What a crash leaves behind
//!
//! Before step 6 nothing, where `O_TMPFILE` works; a named temporary elsewhere (removed on
//! SIGINT/SIGTERM/SIGHUP by binaries that install [`crate::sys::signals`]). Between steps 6
//! and 7 a `.FILE.zw-*` file can remain after SIGKILL or power loss: it is never read back,
//! FILE is untouched, and the next [`replace`] of FILE removes it (never a live writer's). After step 7 FILE is the new file. At no point is FILE partial.
//! With `lift_flags`, a SIGKILL or power loss between clearing and setting the flags can leave
//! FILE (old or new) without them; SIGINT, SIGTERM and SIGHUP wait until the flags are back.
//! Errors after a lift say whether FILE was replaced and whether it is still protected
//! ([`ErrorKind::NoLongerProtected`]).

mod in_place;
mod lock;
mod meta;
mod over;
mod protected;
mod stale;
pub(crate) use stale::remove_all as remove_stale_temporaries;
mod target;
mod temp;

/// Copy a file's extended attributes to another (best effort; returns what was not kept).
pub(crate) use meta::xattr::copy as copy_xattrs;
pub use over::put_over;
pub use target::{Existing, Target};
pub use temp::TempFile;

use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::flags;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Remove named temporaries when SIGINT, SIGTERM or SIGHUP ends the process. For binaries:
/// a library must not take over its host's signals, so nothing is installed until this is called.
pub fn remove_temporaries_on_signals() {
    crate::sys::signals::install();
}

/// How [`replace`] behaves; the defaults replace the whole file durably.
#[derive(Clone, Debug)]
pub struct Options {
    /// Keep the old content and add the input after it.
    pub append: bool,
    /// Mode of a newly created file; `None` means 0666 less the umask, like the shell's `>`.
    pub new_mode: Option<u32>,
    /// Fail instead of creating a missing file.
    pub must_exist: bool,
    /// Lift immutable/append-only flags for the rename and set them on the new file.
    pub lift_flags: bool,
    /// Wait for the lock (`false`: fail with [`ErrorKind::Locked`]).
    pub wait: bool,
    /// Leave FILE untouched, mtime included, when the new content equals the old.
    pub if_changed: bool,
    /// fsync the file and the directory (`false` is fast and not durable).
    pub sync: bool,
    /// Replace the file even when its owner, mode, ACL or xattrs cannot be carried over
    /// (they are listed in [`Outcome::not_kept`]); the mode is still never widened. `false`:
    /// fail with [`ErrorKind::MetadataNotKept`] before the rename.
    pub allow_metadata_loss: bool,
    /// Write into FILE itself instead of replacing it: not atomic (see `in_place.rs`), for
    /// files that cannot be replaced. `lift_flags` does not apply.
    pub in_place: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            append: false,
            new_mode: None,
            must_exist: false,
            lift_flags: false,
            wait: true,
            if_changed: false,
            sync: true,
            allow_metadata_loss: false,
            in_place: false,
        }
    }
}

/// Where the new content comes from.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    Stdin,
    File(&'a Path),
    /// Bytes already in memory (a tag's digest, a small record).
    Bytes(&'a [u8]),
}

/// What [`replace`] did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The final path written (symlinks followed).
    pub path: std::path::PathBuf,
    /// `false` when `if_changed` found identical content and left FILE alone.
    pub changed: bool,
    /// FILE did not exist before.
    pub created: bool,
    /// Size of the new content.
    pub bytes: u64,
    /// Old metadata that could not be carried over (e.g. the owner, for an unprivileged user).
    pub not_kept: Vec<String>,
    /// Other hard links of the old file: they were not replaced and keep the old content.
    pub other_links: u64,
}

/// Replace the file at `path` with the content of `source`, atomically and durably.
pub fn replace(path: &Path, source: Source<'_>, opts: &Options) -> Result<Outcome> {
    if opts.in_place {
        return in_place::write(path, source, opts);
    }
    // The input first: a missing input file must fail before anything else happens.
    let mut input = Input::open(source)?;
    let target = Target::resolve(path)?;
    let locking = opts.append || opts.lift_flags;
    let old = if locking {
        lock::open_locked(&target, opts.wait)?
    } else {
        target.open_existing()?
    };
    let path = &target.path;
    if old.is_none() && opts.must_exist {
        return Err(Error::new(path, ErrorKind::Missing));
    }
    let protection = old
        .as_ref()
        .map(|o| o.flags.protection())
        .unwrap_or_default();
    if !opts.lift_flags {
        if protection.is_immutable() {
            return Err(Error::new(path, ErrorKind::Immutable));
        }
        if protection.is_append_only() {
            return Err(Error::new(path, ErrorKind::AppendOnly));
        }
    }

    // Before our own temporary: on a full disk, a killed writer's leftover copy is the space
    // we need.
    stale::remove(&target.dir, temp::stem_of(&target.name));
    let mut temp = TempFile::new_in(&target.dir, &target.dir_path, &target.name)
        .map_err(|e| cannot_create_temporary(path, e, old.is_some()))?;
    if let Some(old) = &old {
        // Before any data: some flags (nocow) only take effect on an empty file.
        inherit_flags(&temp, old);
    }
    let mut out = temp.file();
    if let Some(old) = &old
        && opts.append
    {
        io::copy(&mut &old.file, &mut out).at(path, "cannot copy old content")?;
    }
    input.copy_to(out).at(path, "cannot write new content")?;
    let bytes = out.metadata().at(path, "cannot stat temporary file")?.len();

    let mut outcome = Outcome {
        path: path.clone(),
        changed: true,
        created: old.is_none(),
        bytes,
        not_kept: vec![],
        other_links: 0,
    };
    match &old {
        Some(old)
            if opts.if_changed
                && same_content(&old.file, temp.file(), bytes).at(path, "cannot compare")? =>
        {
            outcome.changed = false;
            return Ok(outcome);
        }
        Some(old) => outcome.not_kept = keep_metadata(temp.file(), old, opts, path)?,
        None => {
            if let Some(mode) = opts.new_mode {
                rustix::fs::fchmod(
                    temp.file(),
                    rustix::fs::Mode::from_raw_mode(mode as rustix::fs::RawMode),
                )
                .at(path, "cannot set mode")?;
            }
        }
    }

    temp.prepare(opts.sync)
        .at(path, "cannot write temporary file")?;
    if locking {
        lock::lock_replacement(temp.file(), &target)?;
    }
    match &old {
        Some(old) if !protection.is_empty() => {
            protected::commit(&mut temp, old, &target, protection)?;
        }
        _ => temp
            .rename_to(&target.name)
            .map_err(|e| cannot_rename(path, e))?,
    }
    if let Some(old) = &old {
        // Its other names still hold the old inode, with the old content.
        // `nlink_t` is 64 bits here, 16 on macOS.
        #[allow(clippy::unnecessary_cast)]
        let links = old.stat.st_nlink as u64;
        outcome.other_links = links.saturating_sub(1);
    }
    // From here on FILE holds the new content: errors must say so.
    if opts.sync
        && let Err(source) = target.dir.sync_all()
    {
        return Err(Error::new(
            path,
            ErrorKind::NotDurable {
                what: "the directory",
                source,
            },
        ));
    }
    Ok(outcome)
}

/// Why the temporary could not be made; for an existing FILE that may itself be writable, say
/// why that is not enough.
fn cannot_create_temporary(path: &Path, e: io::Error, exists: bool) -> Error {
    match e.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) if exists => Error::new(
            path,
            ErrorKind::CannotReplace {
                why: "its directory is not writable, and the new file must be made there",
                source: e,
            },
        ),
        _ => Error::io(path, "cannot create temporary file", e),
    }
}

/// Why the rename failed; a mount point (a bind-mounted file) can never be renamed over.
fn cannot_rename(path: &Path, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EBUSY) => Error::new(
            path,
            ErrorKind::CannotReplace {
                why: "it is a mount point (a bind-mounted file)",
                source: e,
            },
        ),
        _ => Error::io(path, "cannot rename into place", e),
    }
}

/// Give the replacement `old`'s owner, xattrs and mode. A loss fails the write unless the
/// caller allowed it; either way the replacement never grants more than `old` did.
fn keep_metadata(new: &File, old: &Existing, opts: &Options, path: &Path) -> Result<Vec<String>> {
    let mut lost = meta::inherit(new, old);
    let not_kept = |l: meta::Lost| {
        Error::new(
            path,
            ErrorKind::MetadataNotKept {
                what: l.what,
                source: l.error,
            },
        )
    };
    if !opts.allow_metadata_loss && !lost.is_empty() {
        return Err(not_kept(lost.swap_remove(0)));
    }
    meta::never_wider(new, old).map_err(not_kept)?;
    Ok(lost.into_iter().map(|l| l.what).collect())
}

/// Give the temporary the old file's inode flags, all but the protecting ones.
fn inherit_flags(temp: &TempFile<'_>, old: &Existing) {
    let Ok(now) = flags::get(temp.file()) else {
        return;
    };
    let wanted = now.inheriting(old.flags);
    if wanted != now {
        // Best effort: a file system that keeps fewer flags keeps what it can.
        let _ = flags::set(temp.file(), &temp.path(), wanted);
    }
}

/// Pipe capacity and read size for streamed input: the unprivileged maximum
/// (/proc/sys/fs/pipe-max-size).
const PIPE_PIECE: usize = 1 << 20;

enum Input<'a> {
    Stdin,
    File(File),
    Bytes(&'a [u8]),
}

impl<'a> Input<'a> {
    fn open(source: Source<'a>) -> Result<Input<'a>> {
        match source {
            Source::Stdin => Ok(Input::Stdin),
            Source::Bytes(b) => Ok(Input::Bytes(b)),
            Source::File(p) => {
                let file = File::open(p).at(p, "cannot open input")?;
                // A directory opens fine and fails only at the first read, which would then be
                // blamed on FILE. Pipes and devices (`-f <(cmd)`, `-f /dev/null`) are input too.
                if file.metadata().at(p, "cannot stat input")?.is_dir() {
                    return Err(Error::io(
                        p,
                        "cannot read input",
                        io::Error::from_raw_os_error(libc::EISDIR),
                    ));
                }
                Ok(Input::File(file))
            }
        }
    }

    /// Memory stays constant whatever the size. From a file, `io::copy` lets the kernel move
    /// the bytes (`copy_file_range`, which may share extents). From a pipe, the pipe is widened
    /// to 1 MiB and read in 1 MiB pieces: at the default 64 KiB every piece costs the writer and
    /// us a context switch, which made a 512 MiB stream 1.3x slower than a plain write loop
    /// (splice included).
    fn copy_to(&mut self, mut out: &File) -> io::Result<u64> {
        match self {
            Input::Stdin => {
                let mut stdin = io::stdin().lock();
                if !crate::sys::widen_pipe(&stdin, PIPE_PIECE) {
                    return io::copy(&mut stdin, &mut out);
                }
                let mut buf = vec![0u8; PIPE_PIECE];
                let mut total = 0u64;
                loop {
                    match io::Read::read(&mut stdin, &mut buf) {
                        Ok(0) => return Ok(total),
                        Ok(n) => {
                            io::Write::write_all(&mut out, &buf[..n])?;
                            total += n as u64;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Input::File(f) => io::copy(f, &mut out),
            Input::Bytes(b) => io::Write::write_all(&mut out, b).map(|()| b.len() as u64),
        }
    }
}

/// Whether `a` holds exactly the `len` bytes of `b`, compared in constant memory.
fn same_content(a: &File, b: &File, len: u64) -> io::Result<bool> {
    if a.metadata()?.len() != len {
        return Ok(false);
    }
    let (mut x, mut y) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(x.len() as u64) as usize;
        a.read_exact_at(&mut x[..n], at)?;
        b.read_exact_at(&mut y[..n], at)?;
        if x[..n] != y[..n] {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// Rename `old` in `from` to `new` in `to` (same file system) only if `new` is free:
/// `EEXIST` otherwise. Linux and macOS have `RENAME_NOREPLACE`; elsewhere a file is hard
/// linked then unlinked (as atomic for readers of `new`), and a directory is renamed with
/// plain `rename`, which refuses only a non-empty target (`ENOTEMPTY`).
pub fn rename_noreplace(from: &File, old: &OsStr, to: &File, new: &OsStr) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    {
        let flags = rustix::fs::RenameFlags::NOREPLACE;
        Ok(rustix::fs::renameat_with(from, old, to, new, flags)?)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
    {
        use rustix::fs::AtFlags;
        match rustix::fs::linkat(from, old, to, new, AtFlags::empty()) {
            Ok(()) => {
                let _ = rustix::fs::unlinkat(from, old, AtFlags::empty());
                Ok(())
            }
            Err(rustix::io::Errno::PERM) => Ok(rustix::fs::renameat(from, old, to, new)?),
            Err(e) => Err(e.into()),
        }
    }
}
