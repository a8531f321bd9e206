//! Mirroring a directory tree: directories recreated with their modes, symlinks recreated (never
//! followed), regular files placed through a shared [`Linker`] by parallel workers.
//!
//! # How the work is split
//!
//! A work item is a directory to list, or a slice of a listed directory's regular files. Each
//! holds the open source and destination directories, so every system call is `*at` one name:
//! a hard-link mirror costs one `linkat` per file and no `stat` at all. A worker that lists a
//! directory creates its subdirectories at once and queues them, so the others never starve;
//! big directories are cut into slices that workers share. The queue is a LIFO stack: the walk
//! goes deep first and holds few open directories. (Names created in one directory serialise on
//! its lock, so only copies, which spend their time on data, share a directory.)
//!
//! A directory is created with owner rwx added (so that we can fill it even when its mode
//! forbids writing), and given its real mode and its source's times when its last entry is
//! done (each entry created in it would change its mtime again).
//!
//! The first error stops the run: workers finish the file in hand, take no new work, and the
//! error is returned. What was linked until then stays.

use super::linker::{Side, dev_of, mode_of, not_regular, perm, times_of};
use super::{Linker, Placed, Stats, Tier};
use crate::atomic::{self, Target};
use crate::error::{Error, ErrorKind, IoContext, Result};
use rustix::fs::{AtFlags, Dir, FileType, Mode as Perm, OFlags, Timestamps};
use rustix::io::Errno;
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Regular files per work item when a directory's files are shared among workers: small
/// enough to spread a big directory, large enough that queueing costs nothing next to the
/// system calls.
const FILES_PER_ITEM: usize = 256;
/// Subdirectories created before they are handed to the other workers.
const DIRS_PER_PUSH: usize = 8;

/// A callback for each regular file placed: its destination and what was done.
pub type OnFile = dyn Fn(&Path, &Placed) + Sync;

/// How [`mirror`] runs.
#[derive(Clone, Copy)]
pub struct Options<'a> {
    /// Mirror directories (`-r`); without it a directory SOURCE is an error.
    pub recursive: bool,
    /// Worker threads, at least 1.
    pub jobs: usize,
    /// Called with the destination of every regular file placed (`-v`).
    pub on_file: Option<&'a OnFile>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            recursive: false,
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            on_file: None,
        }
    }
}

/// Give `dst` what `src` holds: a regular file through `linker`'s tiers; with
/// `opts.recursive`, a directory mirrored entry by entry and a symlink recreated as a symlink.
/// Without `recursive`, a symlink `src` is followed. `stats` counts what was done.
pub fn mirror(
    linker: &Linker,
    src: &Path,
    dst: &Path,
    opts: &Options,
    stats: &Stats,
) -> Result<()> {
    let meta = if opts.recursive {
        std::fs::symlink_metadata(src)
    } else {
        std::fs::metadata(src)
    }
    .at(src, "cannot stat")?;
    let kind = meta.file_type();
    if kind.is_dir() {
        if !opts.recursive {
            return Err(Error::new(src, ErrorKind::IsDir));
        }
        refuse_inside(src, dst)?;
        return Walk::new(linker, opts, stats).run(src, dst);
    }
    if kind.is_symlink() {
        let (s, d) = (Target::entry(src)?, Target::entry(dst)?);
        let (s_name, d_name) = (c_name(&s.name), c_name(&d.name));
        let s_dev = dev_of(&rustix::fs::fstat(&s.dir).at(&s.dir_path, "cannot stat")?);
        let d_dev = dev_of(&rustix::fs::fstat(&d.dir).at(&d.dir_path, "cannot stat")?);
        return symlink(
            linker,
            stats,
            &side(&s, &s_name, s_dev),
            &side(&d, &d_name, d_dev),
        );
    }
    if !kind.is_file() {
        let st = rustix::fs::stat(src).at(src, "cannot stat")?;
        return Err(Error::new(
            src,
            not_regular(FileType::from_raw_mode(st.st_mode)),
        ));
    }
    let placed = linker.place_file(src, dst)?;
    stats.record(&placed);
    if let Some(on_file) = opts.on_file {
        on_file(dst, &placed);
    }
    Ok(())
}

/// A mirror of a tree inside that tree would chase itself.
fn refuse_inside(src: &Path, dst: &Path) -> Result<()> {
    let src = src.canonicalize().at(src, "cannot resolve")?;
    // DEST may not exist yet: resolve the deepest part that does, then add the rest.
    let mut existing = dst;
    let mut rest = Vec::new();
    let resolved = loop {
        match existing.canonicalize() {
            Ok(p) => break p,
            Err(_) => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name);
                    existing = if parent.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        parent
                    };
                }
                _ => return Ok(()),
            },
        }
    };
    let dst_full = rest.iter().rev().fold(resolved, |p, name| p.join(name));
    if dst_full.starts_with(&src) {
        return Err(Error::new(dst, ErrorKind::DestInsideSource));
    }
    Ok(())
}

/// An open source directory and its open mirror.
struct DirPair {
    src: Dir,
    dst: File,
    src_path: PathBuf,
    dst_path: PathBuf,
    src_dev: u64,
    dst_dev: u64,
    /// For a directory we created: what to give it once all its entries exist.
    fix: Option<Fix>,
}

/// A new directory's mode (when it was created otherwise, to be writable) and its times (which
/// every entry created in it changes).
struct Fix {
    mode: Option<u32>,
    times: Timestamps,
}

impl DirPair {
    fn src_fd(&self) -> BorrowedFd<'_> {
        self.src
            .fd()
            .expect("an open directory stream has a descriptor")
    }

    fn src_side<'a>(&'a self, name: &'a CStr) -> Side<'a> {
        Side {
            dir: self.src_fd(),
            dir_path: &self.src_path,
            name,
            dev: self.src_dev,
        }
    }

    fn dst_side<'a>(&'a self, name: &'a CStr) -> Side<'a> {
        Side {
            dir: self.dst.as_fd(),
            dir_path: &self.dst_path,
            name,
            dev: self.dst_dev,
        }
    }

    /// All entries are in: give a directory we created its real mode and times.
    fn finish(self) -> Result<()> {
        let Some(fix) = self.fix else {
            return Ok(());
        };
        if let Some(mode) = fix.mode {
            rustix::fs::fchmod(&self.dst, perm(mode)).at(&self.dst_path, "cannot set mode")?;
        }
        rustix::fs::futimens(&self.dst, &fix.times).at(&self.dst_path, "cannot set times")
    }
}

enum Work {
    List(Box<DirPair>),
    Files(Arc<DirPair>, Vec<CString>),
}

struct Walk<'a> {
    linker: &'a Linker,
    opts: &'a Options<'a>,
    stats: &'a Stats,
    queue: Queue,
    umask: Option<u32>,
}

impl<'a> Walk<'a> {
    fn new(linker: &'a Linker, opts: &'a Options<'a>, stats: &'a Stats) -> Self {
        Walk {
            linker,
            opts,
            stats,
            queue: Queue::default(),
            umask: linker.umask(),
        }
    }

    fn run(&self, src: &Path, dst: &Path) -> Result<()> {
        let d = Target::entry(dst)?;
        let dst_dev = dev_of(&rustix::fs::fstat(&d.dir).at(&d.dir_path, "cannot stat")?);
        let root = self.enter(
            (rustix::fs::CWD, src, src.to_owned()),
            (d.dir.as_fd(), &c_name(&d.name), d.path.clone()),
            dst_dev,
        )?;
        self.queue.push_all([Work::List(Box::new(root))]);
        crate::threads::on_threads(self.opts.jobs, &|| self.work());
        match self.queue.lock().failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn work(&self) {
        let mut finished = false;
        while let Some(item) = self.queue.next(finished) {
            if let Err(e) = self.handle(item) {
                self.queue.fail(e);
            }
            finished = true;
        }
    }

    fn handle(&self, item: Work) -> Result<()> {
        let (pair, files) = match item {
            Work::List(pair) => self.list(*pair)?,
            Work::Files(pair, files) => (pair, files),
        };
        for name in &files {
            if self.queue.stopped.load(Relaxed) {
                return Ok(());
            }
            let dst = pair.dst_side(name);
            let placed = self.linker.place(&pair.src_side(name), &dst)?;
            self.stats.record(&placed);
            if let Some(on_file) = self.opts.on_file {
                on_file(&dst.path(), &placed);
            }
        }
        match Arc::into_inner(pair) {
            Some(pair) => pair.finish(),
            None => Ok(()),
        }
    }

    /// List a directory: create and queue its subdirectories, recreate its symlinks, queue all
    /// but the first slice of its files and return that one to be done here.
    fn list(&self, mut pair: DirPair) -> Result<(Arc<DirPair>, Vec<CString>)> {
        let mut files = Vec::new();
        let mut links = Vec::new();
        let mut dirs = Vec::new();
        while let Some(entry) = pair.src.next() {
            let entry = entry.at(&pair.src_path, "cannot read directory")?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let mut kind = entry.file_type();
            if kind == FileType::Unknown {
                // Some file systems do not fill in d_type.
                let st = rustix::fs::statat(pair.src_fd(), name, AtFlags::SYMLINK_NOFOLLOW)
                    .at(&pair.src_side(name).path(), "cannot stat")?;
                kind = FileType::from_raw_mode(st.st_mode);
            }
            match kind {
                FileType::RegularFile => files.push(name.to_owned()),
                FileType::Directory => dirs.push(name.to_owned()),
                FileType::Symlink => links.push(name.to_owned()),
                other => return Err(Error::new(pair.src_side(name).path(), not_regular(other))),
            }
        }
        // Subdirectories go out a few at a time: soon enough that idle workers start, in few
        // enough lock round trips that they do not queue on the queue.
        for names in dirs.chunks(DIRS_PER_PUSH) {
            let mut children = Vec::with_capacity(names.len());
            for name in names {
                children.push(Work::List(Box::new(self.enter(
                    (pair.src_fd(), name.as_c_str(), pair.src_side(name).path()),
                    (pair.dst.as_fd(), name, pair.dst_side(name).path()),
                    pair.dst_dev,
                )?)));
            }
            self.queue.push_all(children);
        }
        for name in &links {
            symlink(
                self.linker,
                self.stats,
                &pair.src_side(name),
                &pair.dst_side(name),
            )?;
        }
        let pair = Arc::new(pair);
        // Creating a name locks the directory, so workers hard-linking or reflinking into one
        // directory mostly queue on its lock (and on the file system's per-directory state);
        // measured on ext4 and XFS, sharing a directory only added sleeps and wake-ups. A copy
        // spends its time moving data outside that lock, so copies share big directories.
        if self.linker.mode().tiers()[0] != Tier::Copy || files.len() <= FILES_PER_ITEM {
            return Ok((pair, files));
        }
        let mut slices = files.chunks(FILES_PER_ITEM).map(<[CString]>::to_vec);
        let first = slices.next().unwrap_or_default();
        self.queue
            .push_all(slices.map(|slice| Work::Files(Arc::clone(&pair), slice)));
        Ok((pair, first))
    }

    /// Open the source directory `(dir, name, path for messages)`, create (or find) its
    /// mirror at `(dir, name, path)` on device `dst_dev`.
    fn enter(
        &self,
        (src_dir, src_name, src_path): (BorrowedFd, impl rustix::path::Arg, PathBuf),
        (dst_dir, dst_name, dst_path): (BorrowedFd, &CStr, PathBuf),
        dst_dev: u64,
    ) -> Result<DirPair> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let src = rustix::fs::openat(src_dir, src_name, flags, Perm::empty())
            .at(&src_path, "cannot open directory")?;
        let st = rustix::fs::fstat(&src).at(&src_path, "cannot stat")?;
        let wanted = mode_of(&st) & 0o7777;
        let created_mode = (wanted & 0o777) | 0o700;
        let created = match rustix::fs::mkdirat(dst_dir, dst_name, perm(created_mode)) {
            Ok(()) => true,
            Err(Errno::EXIST) => {
                let there = rustix::fs::statat(dst_dir, dst_name, AtFlags::SYMLINK_NOFOLLOW)
                    .at(&dst_path, "cannot stat")?;
                if FileType::from_raw_mode(there.st_mode) != FileType::Directory {
                    // Not something -f replaces: a file never turns into a directory here.
                    let e = Errno::NOTDIR.into();
                    return Err(Error::io(&dst_path, "cannot mirror a directory there", e));
                }
                false
            }
            Err(e) => return Err(Error::io(&dst_path, "cannot create directory", e.into())),
        };
        let dst = File::from(
            rustix::fs::openat(dst_dir, dst_name, flags, Perm::empty())
                .at(&dst_path, "cannot open directory")?,
        );
        let dst_dev = if created {
            self.linker.give_owner(&dst, &st, &dst_path)?;
            dst_dev
        } else {
            // An existing directory may be a mount point.
            dev_of(&rustix::fs::fstat(&dst).at(&dst_path, "cannot stat")?)
        };
        let fix = created.then(|| Fix {
            mode: match self.umask {
                Some(umask) if created_mode & !umask == wanted => None,
                _ => Some(wanted),
            },
            times: times_of(&st),
        });
        self.stats.add_dir();
        Ok(DirPair {
            src: Dir::new(src).at(&src_path, "cannot read directory")?,
            dst,
            src_path,
            dst_path,
            src_dev: dev_of(&st),
            dst_dev,
            fix,
        })
    }
}

/// Recreate the symlink `src` at `dst`. Where the mode allows hard links, the symlink itself is
/// hard linked, as `cp -al` does: one call and no new inode (on ext4 new inodes are what a big
/// mirror pays for). An existing symlink with the same target is fine; any other entry is an
/// error, or replaced atomically when the linker replaces.
fn symlink(linker: &Linker, stats: &Stats, src: &Side, dst: &Side) -> Result<()> {
    if linker.try_hard_link(src, dst)? {
        stats.add_symlink();
        return Ok(());
    }
    let target = rustix::fs::readlinkat(src.dir, src.name, Vec::new())
        .at(&src.path(), "cannot read symlink")?;
    match rustix::fs::symlinkat(target.as_c_str(), dst.dir, dst.name) {
        Ok(()) => {}
        Err(Errno::EXIST) => {
            let there = rustix::fs::readlinkat(dst.dir, dst.name, Vec::new());
            if there.is_ok_and(|t| t == target) {
                // Already there: a re-run.
            } else if linker.replaces() {
                let name = OsStr::from_bytes(dst.name.to_bytes());
                atomic::put_over(
                    dst.dir,
                    dst.dir_path,
                    name,
                    |temp| match rustix::fs::symlinkat(target.as_c_str(), dst.dir, temp) {
                        Ok(()) => Ok(Some(())),
                        Err(Errno::EXIST) => Ok(None),
                        Err(e) => Err(Error::io(dst.path(), "cannot create symlink", e.into())),
                    },
                )?;
            } else {
                return Err(Error::new(dst.path(), ErrorKind::Exists));
            }
        }
        Err(e) => return Err(Error::io(dst.path(), "cannot create symlink", e.into())),
    }
    stats.add_symlink();
    Ok(())
}

fn c_name(name: &OsStr) -> CString {
    CString::new(name.as_bytes()).expect("file names have no NUL")
}

fn side<'a>(target: &'a Target, name: &'a CStr, dev: u64) -> Side<'a> {
    Side {
        dir: target.dir.as_fd(),
        dir_path: &target.dir_path,
        name,
        dev,
    }
}

/// The shared stack of work, with a count of items queued or in hand so that idle workers
/// know when everything is done.
#[derive(Default)]
struct Queue {
    state: Mutex<State>,
    wake: Condvar,
    /// Set with `failed`, read without the lock between files.
    stopped: AtomicBool,
}

#[derive(Default)]
struct State {
    work: Vec<Work>,
    /// Items queued or being handled.
    busy: usize,
    /// Workers waiting for work.
    idle: usize,
    failed: Option<Error>,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue items under one lock, waking only as many idle workers as there is new work
    /// (each wake-up is a system call, and a wasted one when nobody sleeps).
    fn push_all(&self, items: impl IntoIterator<Item = Work>) {
        let mut state = self.lock();
        let before = state.work.len();
        state.work.extend(items);
        let added = state.work.len() - before;
        state.busy += added;
        let wake = state.idle.min(added);
        drop(state);
        for _ in 0..wake {
            self.wake.notify_one();
        }
    }

    /// Mark the item in hand done (`finished`) and take the next, in one lock; wait while
    /// others may still produce work. `None` when all is done or the run failed.
    fn next(&self, finished: bool) -> Option<Work> {
        let mut state = self.lock();
        if finished {
            state.busy -= 1;
            if state.busy == 0 && state.idle > 0 {
                self.wake.notify_all();
            }
        }
        loop {
            if state.failed.is_some() {
                return None;
            }
            if let Some(item) = state.work.pop() {
                return Some(item);
            }
            if state.busy == 0 {
                return None;
            }
            state.idle += 1;
            state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            state.idle -= 1;
        }
    }

    fn fail(&self, e: Error) {
        let mut state = self.lock();
        if state.failed.is_none() {
            state.failed = Some(e);
        }
        self.stopped.store(true, Relaxed);
        let dropped = state.work.len();
        state.work.clear();
        state.busy -= dropped;
        self.wake.notify_all();
    }
}
