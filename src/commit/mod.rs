//! Turning a directory into a layer: walk, hash, store what is missing, write the manifest.
//!
//! # Steps
//!
//! 1. Note the time on the clock files are stamped with (see [`index`]) and load the cache.
//! 2. Walk the tree with `jobs` threads ([`walk`]): each directory's entries and `lstat`s.
//! 3. Hash the files with `jobs` threads. A file whose `lstat` matches a settled cache entry
//!    and whose blob is in the store is not read. Others are opened without following
//!    symlinks, hashed, checked unchanged (`fstat` before and after), and brought in when the
//!    store lacks them ([`crate::store::BlobWriter`]: reflink, else copy; a small file is
//!    written from the bytes just hashed once the store has shown it cannot reflink; synced
//!    in batches, renamed).
//! 4. Sync the store, then write the manifest as a layer (its digest covers every name, mode,
//!    size, digest and link target), then save the cache.
//!
//! The result depends only on the tree: names, kinds, permission bits, modification times,
//! content, link targets and device numbers. Owners and xattrs are not recorded, so the same
//! tree committed twice gives the same digest and stores nothing new. [`Times`] can fix or
//! clamp the times, so that the same content gives the same digest wherever it is committed
//! (`--reproducible`, `SOURCE_DATE_EPOCH`). FIFOs and device nodes are entries; sockets are
//! left out and reported. So is the store, when the tree holds it (found by device and
//! inode, at any depth): a layer of its own store would change with every commit. A tree
//! that *is* the store is refused.
//!
//! # Damaged blobs
//!
//! A file this commit reads whose blob the store already holds has that blob hashed too; a
//! blob that does not hash to its name (a flipped bit, a stray write) is replaced from the
//! file ([`Outcome::healed`]). A file whose digest comes from the cache is read by no one,
//! and neither is its blob: re-committing an unchanged tree costs one `lstat` per file and
//! heals nothing, since proving a blob sound means reading it whole. To heal, run
//! `zcommit verify --repair` (it removes what is damaged; the next commit, cached or not,
//! writes it again) or commit with `--no-cache` (reads every file and checks every blob).
//!
//! [`commit`] is the core an editable runtime's commit reuses: with `markers`, a scratch
//! directory's `.wh.NAME` files become whiteouts and `.wh..wh..opq` makes a directory opaque.

pub mod overlay;
pub mod walk;

use crate::atomic::TempFile;
use crate::below;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::link::{Mode, Tier};
use crate::manifest::{Manifest, Node, NodeKind, Time};
use crate::pool;
use crate::progress::Progress;
use crate::store::index::{self, Index, Stamp};
use crate::store::{Added, Store, hash_file};
use rustix::fs::OFlags;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use walk::What;

#[derive(Clone, Debug)]
pub struct Options {
    /// Threads for walking and hashing.
    pub jobs: usize,
    /// How files enter the store: `clone-or-copy` (default), `reflink` or `copy`.
    pub link_mode: Mode,
    /// Read `.wh.NAME` and `.wh..wh..opq` as whiteouts and opaque markers.
    pub markers: bool,
    /// Use and update the commit cache.
    pub cache: bool,
    /// Show a progress bar on a terminal for long runs.
    pub progress: bool,
    /// Which modification times the layer records.
    pub times: Times,
    /// Read the tree as an overlayfs upper dir over this merged base (a kernel runtime's
    /// commit: see [`overlay`]).
    pub overlay: Option<std::sync::Arc<Node>>,
}

/// Which modification times a commit records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Times {
    /// Each entry's own, as `lstat` gives it.
    #[default]
    Recorded,
    /// Each entry's own, but none later than this (reproducible-builds' `SOURCE_DATE_EPOCH`:
    /// files a build made now carry the sources' date).
    ClampedTo(Time),
    /// This one for every entry: the same content gives the same layer, whenever its files
    /// were written.
    Fixed(Time),
}

impl Times {
    /// `--reproducible` fixes every time at `SOURCE_DATE_EPOCH`, else at [`Time::FIXED`];
    /// without it, a set `SOURCE_DATE_EPOCH` clamps, as reproducible-builds tools do.
    pub fn choose(
        reproducible: bool,
        source_date_epoch: Option<&std::ffi::OsStr>,
    ) -> Result<Times> {
        let epoch = match source_date_epoch.filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => {
                let secs = v
                    .to_str()
                    .and_then(|v| v.parse::<i64>().ok())
                    .ok_or_else(|| {
                        Error::new(
                            Path::new("SOURCE_DATE_EPOCH"),
                            ErrorKind::Invalid(format!(
                                "{} is not a number of seconds since 1970 (unset it, or set it \
                             like `SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)`)",
                                v.to_string_lossy()
                            )),
                        )
                    })?;
                Some(Time { secs, nanos: 0 })
            }
        };
        Ok(match (reproducible, epoch) {
            (true, epoch) => Times::Fixed(epoch.unwrap_or(Time::FIXED)),
            (false, Some(epoch)) => Times::ClampedTo(epoch),
            (false, None) => Times::Recorded,
        })
    }

    fn apply(self, t: Time) -> Time {
        match self {
            Times::Recorded => t,
            Times::ClampedTo(max) => t.min(max),
            Times::Fixed(fixed) => fixed,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            jobs: default_jobs(),
            link_mode: Mode::CloneOrCopy,
            markers: false,
            cache: true,
            progress: false,
            times: Times::Recorded,
            overlay: None,
        }
    }
}

/// What a commit did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub digest: Digest,
    /// Entries in the manifest, the root included.
    pub entries: usize,
    pub files: usize,
    /// Files read and hashed (the others were unchanged since the last commit).
    pub hashed: usize,
    /// Blobs the store did not have.
    pub new_blobs: usize,
    pub new_bytes: u64,
    pub reflinked: usize,
    /// Files whose blob was in the store but damaged (its content did not hash to its name),
    /// and was replaced from the file: relative paths.
    pub healed: Vec<PathBuf>,
    /// Paths left out: sockets.
    pub skipped: Vec<PathBuf>,
    /// Where the store itself was found inside the tree, and left out.
    pub store_left_out: Vec<PathBuf>,
}

/// Commit the tree at `dir` into `store` as a layer.
pub fn commit(store: &Store, dir: &Path, opts: &Options) -> Result<Outcome> {
    let root = std::fs::canonicalize(dir).map_err(|e| match e.kind() {
        // Not "create it": an empty new directory is rarely what was meant, and a mistyped
        // subcommand is taken for a directory.
        std::io::ErrorKind::NotFound => Error::new(
            dir,
            ErrorKind::Invalid(
                "no such directory (check the path; `zcommit --help` lists the subcommands)".into(),
            ),
        ),
        _ => Error::io(dir, "cannot resolve", e),
    })?;
    // From the first "is this blob there?" to the layer (see `store::lock`); a caller that
    // tags the layer holds its own lock across both.
    let _lock = store.write_lock()?;
    if opts.markers {
        // A scratch tree: the blobs its copy-ups reflinked unread are proven first.
        crate::scratch::unchecked::prove(&root, |d, id| {
            crate::store::checked::blob_is_sound(store, d, id)
        })?;
    }
    let index_dir_path = store.root().join("index");
    let index_dir = File::open(&index_dir_path).at(&index_dir_path, "cannot open directory")?;
    let index_name = Digest::of_blob(root.as_os_str().as_bytes()).to_hex();
    let old = match opts.cache {
        true => Index::load(&index_dir_path.join(&index_name)),
        false => Index::default(),
    };
    let start = crate::sys::file_clock_now();

    let store_id = std::fs::metadata(store.root())
        .map(|m| (m.dev(), m.ino()))
        .at(store.root(), "cannot stat store")?;
    let root_dir = File::open(&root).at(&root, "cannot read directory")?;
    let meta = root_dir.metadata().at(&root, "cannot stat")?;
    if !meta.is_dir() {
        return Err(Error::new(
            &root,
            ErrorKind::Invalid("not a directory".into()),
        ));
    }
    if (meta.dev(), meta.ino()) == store_id {
        return Err(Error::new(
            dir,
            ErrorKind::Invalid(
                "is the store itself (commit the directory that holds what you want, or \
                 use another --store)"
                    .into(),
            ),
        ));
    }
    let walk_opts = walk::Options {
        jobs: opts.jobs,
        markers: opts.markers,
        overlay: opts.overlay.is_some(),
        exclude: Some(store_id),
    };
    let mut tree = walk::walk(&root_dir, &root, &walk_opts)?;
    if let Some(base) = &opts.overlay {
        overlay::resolve(&mut tree.dirs, &root, base)?;
    }
    let mut jobs = Vec::new();
    for (d, dir) in tree.dirs.iter_mut().enumerate() {
        for (e, found) in dir.entries.iter_mut().enumerate() {
            if let What::File { job, .. } = &mut found.what {
                *job = jobs.len();
                jobs.push((d, e));
            }
        }
    }
    let meta_of = |(d, e): (usize, usize)| -> (PathBuf, Stamp) {
        let dir = &tree.dirs[d];
        let found = &dir.entries[e];
        let What::File { stamp, .. } = &found.what else {
            unreachable!("jobs are files")
        };
        (dir.rel.join(OsStr::from_bytes(&found.name)), *stamp)
    };
    let total: u64 = jobs.iter().map(|&j| meta_of(j).1.size).sum();
    let progress = Progress::bytes(opts.progress, total, "committing");
    let batch = batch_size(opts.jobs);

    struct Worker<'s> {
        writer: crate::store::BlobWriter<'s>,
        done: Vec<(usize, Digest, Stamp)>,
        hashed: usize,
        new_blobs: usize,
        new_bytes: u64,
        reflinked: usize,
        healed: Vec<PathBuf>,
    }
    let workers = pool::each(
        opts.jobs,
        jobs.len(),
        || {
            Ok(Worker {
                writer: store.blob_writer(opts.link_mode, batch)?,
                done: Vec::new(),
                hashed: 0,
                new_blobs: 0,
                new_bytes: 0,
                reflinked: 0,
                healed: Vec::new(),
            })
        },
        |w, i| {
            let (rel, walked) = meta_of(jobs[i]);
            let stamp = walked;
            if let Some(digest) = old.get(rel.as_os_str().as_bytes(), &stamp)
                && store.has_blob(&digest)?
            {
                w.done.push((i, digest, stamp));
                progress.inc(stamp.size);
                return Ok(());
            }
            let path = root.join(&rel);
            let (digest, stamp, added) =
                bring_in(&mut w.writer, &root_dir, &rel, &path, &walked, start)?;
            w.hashed += 1;
            match added {
                Added::Existing => {}
                Added::New(tier) | Added::Healed(tier) => {
                    w.new_blobs += 1;
                    w.new_bytes += stamp.size;
                    w.reflinked += usize::from(tier == Tier::Reflink);
                }
            }
            if let Added::Healed(_) = added {
                w.healed.push(rel);
            }
            w.done.push((i, digest, stamp));
            progress.inc(stamp.size);
            Ok(())
        },
        // Each thread names its own blobs: one syncfs, then renames in parallel.
        |w| w.writer.flush(),
    )?;
    drop(progress);

    let mut outcome = Outcome {
        files: jobs.len(),
        skipped: std::mem::take(&mut tree.skipped),
        store_left_out: std::mem::take(&mut tree.excluded),
        ..Default::default()
    };
    let mut results: Vec<Option<(Digest, Stamp)>> = vec![None; jobs.len()];
    for w in workers {
        outcome.hashed += w.hashed;
        outcome.new_blobs += w.new_blobs;
        outcome.new_bytes += w.new_bytes;
        outcome.reflinked += w.reflinked;
        outcome.healed.extend(w.healed);
        for (i, digest, stamp) in w.done {
            results[i] = Some((digest, stamp));
        }
    }
    let results: Vec<(Digest, Stamp)> = results
        .into_iter()
        .map(|r| r.expect("every file was hashed"))
        .collect();

    let mut top = build_tree(&tree.dirs, &results, opts.times);
    if let Some(base) = &opts.overlay {
        overlay::splice(&mut top, &tree.dirs, base);
    }
    let manifest = Manifest::from_tree(&top);
    outcome.entries = manifest.len();
    if outcome.new_blobs > 0 {
        store.sync()?;
    }
    outcome.digest = store.put_layer(&manifest)?;

    // Every file came from a settled entry of the old cache: the new one would be the same.
    outcome.healed.sort();
    let unchanged = outcome.hashed == 0 && old.len() == results.len();
    if opts.cache && !unchanged {
        let rels: Vec<PathBuf> = jobs.iter().map(|&j| meta_of(j).0).collect();
        let bytes = index::encode(
            rels.iter()
                .zip(&results)
                .map(|(rel, (digest, stamp))| (rel.as_os_str().as_bytes(), *stamp, *digest)),
            start,
        );
        // Only a cache: a failure to save it costs the next commit time, not correctness.
        let _ = TempFile::new_in(&index_dir, &index_dir_path, index_name.as_ref()).and_then(
            |mut temp| {
                std::io::Write::write_all(&mut temp.file(), &bytes)?;
                temp.prepare(false)?;
                temp.rename_to(index_name.as_ref())
            },
        );
    }
    Ok(outcome)
}

/// Files up to this size are read whole into memory, hashed, and written from there when the
/// store cannot reflink them (see [`crate::store::BlobWriter::wants_bytes`]).
const SMALL: usize = 1 << 20;

thread_local! {
    static SMALL_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Hash the file at `rel` below `root_dir` (`path` in messages; found as `walked`) and store
/// it if the store lacks it.
fn bring_in(
    writer: &mut crate::store::BlobWriter<'_>,
    root_dir: &File,
    rel: &Path,
    path: &Path,
    walked: &Stamp,
    start: (i64, i64),
) -> Result<(Digest, Stamp, Added)> {
    // O_NOFOLLOW and O_NONBLOCK: if the file was swapped for a symlink or FIFO since the walk,
    // fail instead of following it or waiting for a writer. The inode check below catches a
    // directory on the way swapped for a symlink.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = below::open(root_dir, rel, flags).at(path, "cannot open")?;
    let before = file.metadata().at(path, "cannot stat")?;
    if !before.is_file() || before.ino() != walked.ino || before.dev() != walked.dev {
        return Err(Error::new(path, ErrorKind::Changed));
    }
    let stamp = Stamp::of(&before);
    if stamp.size <= SMALL as u64 && writer.wants_bytes() {
        return SMALL_BUF.with_borrow_mut(|buf| {
            buf.clear();
            // One byte more than expected, to see a file that grew.
            let mut limited = std::io::Read::take(&file, stamp.size + 1);
            std::io::Read::read_to_end(&mut limited, buf).at(path, "cannot read")?;
            let after = Stamp::of(&file.metadata().at(path, "cannot stat")?);
            if buf.len() as u64 != stamp.size || after != stamp {
                return Err(Error::new(path, ErrorKind::Changed));
            }
            let digest = Digest::of_blob(buf);
            Ok((digest, stamp, writer.add_bytes(buf, &digest)?))
        });
    }
    let digest = hash_file(&file).at(path, "cannot read")?;
    if Stamp::of(&file.metadata().at(path, "cannot stat")?) != stamp {
        return Err(Error::new(path, ErrorKind::Changed));
    }
    // The copy holds what was hashed if the stamp still holds and cannot be racy (the cache's
    // rule); otherwise the store hashes the copy again.
    let unchanged =
        || stamp.settled_before(start) && file.metadata().is_ok_and(|now| Stamp::of(&now) == stamp);
    let added = writer.add(&file, path, &digest, unchanged)?;
    Ok((digest, stamp, added))
}

/// The manifest tree from the walked directories (sorted, so parents come first), the files'
/// digests, and the times to record.
fn build_tree(dirs: &[walk::Dir], files: &[(Digest, Stamp)], times: Times) -> Node {
    let by_rel: HashMap<&Path, usize> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| (d.rel.as_path(), i))
        .collect();
    let build_ctx = (dirs, &by_rel, files, times);
    type Ctx<'a> = (
        &'a [walk::Dir],
        &'a HashMap<&'a Path, usize>,
        &'a [(Digest, Stamp)],
        Times,
    );
    fn build(d: usize, ctx: &Ctx<'_>) -> Node {
        let (dirs, by_rel, files, times) = *ctx;
        let dir = &dirs[d];
        let mut children = BTreeMap::new();
        for found in &dir.entries {
            let kind = match &found.what {
                What::Dir => {
                    let rel = dir.rel.join(OsStr::from_bytes(&found.name));
                    children.insert(found.name.clone(), build(by_rel[rel.as_path()], ctx));
                    continue;
                }
                What::File { job, .. } => NodeKind::File {
                    size: files[*job].1.size,
                    digest: files[*job].0,
                },
                What::Symlink(target) => NodeKind::Symlink {
                    target: target.clone(),
                },
                What::Fifo => NodeKind::Fifo,
                What::Device(device) => NodeKind::Device(*device),
                What::Whiteout => NodeKind::Whiteout,
                What::Lower(lower) => NodeKind::File {
                    size: lower.size,
                    digest: lower.digest.expect("metacopy files are resolved before"),
                },
            };
            // A symlink's own mode means nothing on Linux and is 0777 there: record that.
            let mode = match found.what {
                What::Symlink(_) => 0o777,
                _ => found.mode,
            };
            let mtime = match found.what {
                What::Whiteout => Time::default(),
                _ => times.apply(found.mtime),
            };
            children.insert(found.name.clone(), Node { mode, mtime, kind });
        }
        Node {
            mode: dir.mode,
            mtime: times.apply(dir.mtime),
            kind: NodeKind::Dir {
                opaque: dir.opaque,
                children,
            },
        }
    }
    build(0, &build_ctx)
}

/// Four threads per CPU: a commit spends most of its time in system calls that wait for the
/// file system's journal and the disk, not on the CPU.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 4
}

/// Blobs a thread keeps open until one sync: half the descriptor limit, shared by the threads.
pub(crate) fn batch_size(jobs: usize) -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1024) as usize;
    (limit.saturating_sub(64) / (2 * jobs.max(1))).clamp(1, 4096)
}
