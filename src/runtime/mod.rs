//! Runtimes: editable views that live in the store, so they outlive the processes that use
//! them, a daemon restart and a crash, and can be resumed, committed or discarded.
//!
//! # Layout
//!
//! ```text
//! ROOT/runtimes/NAME/state       "zkit-runtime 1", then "scratch DIR", then "layer HEX" per
//!                                layer of the upstream stack (what the runtime was made or
//!                                rebased on), then "commit HEX" per layer committed from the
//!                                runtime since; bottom first
//! ROOT/runtimes/NAME/DIR/        the scratch dir (see [`crate::scratch`])
//! ROOT/runtimes/NAME/work/       scratch's work dir, same file system
//! ROOT/runtimes/NAME/lock        flock'd by whoever uses the runtime (a mount, a commit)
//! ROOT/runtimes/NAME/overlay     the tag of the kernel overlay writing scratch, while one may
//! ```
//!
//! # Crashes
//!
//! A runtime appears complete or not at all: it is built under a hidden name in `runtimes/` and
//! renamed to NAME without replacing anything. Its state file is replaced atomically, and a
//! commit moves the runtime to a new base stack *and* a fresh, empty scratch dir in that one
//! replacement ([`Runtime::rebase`]); the old scratch dir is removed afterwards, and a crash
//! in between only leaves an unreferenced dir that the next rebase or [`discard`] removes.
//! Discarding renames the runtime to a hidden name first, so it vanishes at once.
//!
//! # Rebasing
//!
//! [`Runtime::rebase_onto`] (`zmount run --edit --rebase`, `zcommit --runtime --rebase`) swaps
//! the upstream layers for others and keeps everything that is the runtime's own: the layers
//! committed from it and its scratch dir, which is not touched. It is one replacement of the
//! state file, so a crash leaves the runtime on the old base or on the new one. Scratch means
//! the same over any base: a whiteout hides whatever the new base has at its name, an opaque
//! directory hides the new base's directory, and a copied-up file is the runtime's copy even
//! where the new base changed the file below it (as in overlayfs, the upper file wins).
//!
//! # Who may use it
//!
//! One user at a time: a mount holds `lock` exclusively for as long as it serves the runtime,
//! and commit and discard take it without waiting, so they never change scratch under a live
//! view. The lock is the kernel's (`flock`): a killed daemon releases it.
//!
//! A kernel view's overlay writes scratch without any process of ours: kill a `zmount run`
//! alone and CMD, and whatever it started, go on writing in the run's mount namespace; kill
//! a `zmount mount` holder and the overlay stays in the host's table. So the holder writes
//! the overlay's tag to `overlay` before mounting it ([`Runtime::mark_mounted`]) and removes
//! it once the overlay is gone, and [`Runtime::lock`] refuses the runtime, the flock
//! notwithstanding, while an overlay with that tag is mounted in any mount namespace
//! ([`crate::mounted`]): until the last process of a killed run has ended, or a killed
//! holder's mount is unmounted. Then the first taker removes the stale tag.

mod commit;

pub use commit::{After, Committed, commit};

use crate::atomic;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::scratch::Scratch;
use crate::store::Store;
use rustix::fs::{FlockOperation, Mode, OFlags};
use std::ffi::OsStr;
use std::fs::File;
use std::io::ErrorKind as Io;
use std::path::{Path, PathBuf};

const STATE_HEADER: &str = "zkit-runtime 1";

/// Whether `name` can name a runtime: 1 to 100 letters, digits and `._+-@=`, not starting with
/// `.` (hidden names are the store's temporaries).
pub fn valid_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-@=".contains(&b))
}

/// A fresh name for a runtime the user did not name (`zmount run --edit` without `--name`).
pub fn fresh_name() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!("run-{secs}-{:06x}", crate::sys::random_u64() & 0xff_ffff)
}

/// An editable view's home in the store.
#[derive(Debug)]
pub struct Runtime {
    name: String,
    dir: PathBuf,
    scratch_dir: String,
    base: Vec<Digest>,
    /// How many of `base`'s layers (from the bottom) are upstream; the rest were committed
    /// from the runtime.
    upstream: usize,
    lock: Option<File>,
}

/// What [`list`] says about a runtime.
#[derive(Debug, Clone)]
pub struct Info {
    pub name: String,
    pub base: Vec<Digest>,
    /// Scratch records changes.
    pub changed: bool,
    /// A mount (or a commit) holds it now.
    pub in_use: bool,
}

fn runtimes(store: &Store) -> PathBuf {
    store.root().join("runtimes")
}

fn check_name(name: &str) -> Result<()> {
    if valid_name(name) {
        return Ok(());
    }
    Err(Error::new(
        name,
        ErrorKind::Invalid(
            "invalid runtime name (use 1 to 100 letters, digits and `._+-@=`)".into(),
        ),
    ))
}

impl Runtime {
    /// Make a new runtime on `base` (bottom first) with an empty scratch dir. Fails with
    /// [`ErrorKind::RuntimeExists`] when the name is taken.
    pub fn create(store: &Store, name: &str, base: &[Digest]) -> Result<Runtime> {
        check_name(name)?;
        // The base must not be swept before the state names it; callers that resolved it
        // from names hold the lock from then on.
        let _lock = store.write_lock()?;
        // The top layer's root mode is the view's: scratch's root must not change it when
        // committed over it.
        let root_mode = match base.last() {
            Some(top) => store.layer_root_mode(top)?,
            None => 0o755,
        };
        let all = runtimes(store);
        std::fs::create_dir_all(&all).at(&all, "cannot create runtimes directory")?;
        let hidden = all.join(format!(".new-{:016x}", crate::sys::random_u64()));
        let final_path = all.join(name);
        let built = (|| {
            std::fs::create_dir(&hidden).at(&hidden, "cannot create runtime")?;
            let rt = Runtime {
                name: name.to_owned(),
                dir: hidden.clone(),
                scratch_dir: "scratch-0".into(),
                base: base.to_vec(),
                upstream: base.len(),
                lock: None,
            };
            let scratch = rt.dir.join(&rt.scratch_dir);
            std::fs::create_dir(&scratch).at(&hidden, "cannot create scratch")?;
            set_mode(&scratch, root_mode)?;
            std::fs::create_dir(rt.dir.join("work")).at(&hidden, "cannot create scratch")?;
            rt.write_state(&rt.base, rt.upstream, &rt.scratch_dir)?;
            let dir = File::open(&all).at(&all, "cannot open runtimes directory")?;
            crate::atomic::rename_noreplace(&dir, hidden.file_name().unwrap(), &dir, name.as_ref())
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::EEXIST | libc::ENOTEMPTY) => {
                        Error::new(&final_path, ErrorKind::RuntimeExists)
                    }
                    _ => Error::io(&final_path, "cannot create runtime", e),
                })?;
            dir.sync_all().at(&all, "cannot sync runtimes directory")?;
            Ok(Runtime {
                dir: final_path.clone(),
                ..rt
            })
        })();
        if built.is_err() {
            let _ = std::fs::remove_dir_all(&hidden);
        }
        built
    }

    /// An existing runtime.
    pub fn open(store: &Store, name: &str) -> Result<Runtime> {
        check_name(name)?;
        let dir = runtimes(store).join(name);
        let state_path = dir.join("state");
        let text = match std::fs::read_to_string(&state_path) {
            Ok(t) => t,
            Err(e) if e.kind() == Io::NotFound => {
                return Err(Error::new(name, ErrorKind::UnknownRuntime));
            }
            Err(e) => return Err(Error::io(&state_path, "cannot read runtime state", e)),
        };
        let (scratch_dir, base, upstream) = parse_state(&text).ok_or_else(|| {
            Error::new(&state_path, ErrorKind::Corrupt("bad runtime state".into()))
        })?;
        Ok(Runtime {
            name: name.to_owned(),
            dir,
            scratch_dir,
            base,
            upstream,
            lock: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The base stack, bottom first: the upstream layers, then those committed from the
    /// runtime.
    pub fn base(&self) -> &[Digest] {
        &self.base
    }

    /// The runtime's directory (`ROOT/runtimes/NAME`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The layers the runtime was made or last rebased on, bottom first.
    pub fn upstream(&self) -> &[Digest] {
        &self.base[..self.upstream]
    }

    pub fn scratch_path(&self) -> PathBuf {
        self.dir.join(&self.scratch_dir)
    }

    /// Whether any extended attribute was ever set in this scratch dir: until one is, every
    /// xattr question (the kernel asks for `security.capability` before each write) has
    /// the answer "none" without a look at the file.
    pub fn xattrs_used(&self) -> bool {
        self.dir.join("xattrs").exists()
    }

    /// Record that scratch holds extended attributes (before the first one is set).
    pub fn mark_xattrs_used(&self) -> Result<()> {
        let path = self.dir.join("xattrs");
        let opts = atomic::Options {
            new_mode: Some(0o644),
            ..Default::default()
        };
        atomic::replace(&path, atomic::Source::Bytes(b""), &opts).map(drop)
    }

    /// Open the scratch dir (see [`Scratch::open`]). Take [`Runtime::lock`] first.
    pub fn scratch(&self) -> Result<Scratch> {
        Scratch::open(&self.scratch_path(), &self.dir.join("work"))
    }

    /// Whether scratch records any change.
    pub fn changed(&self) -> Result<bool> {
        let path = self.scratch_path();
        let scratch = Scratch::open(&path, &self.dir.join("work"))?;
        Ok(!scratch.is_empty().at(&path, "cannot read scratch")?)
    }

    /// Take the runtime for this process (until it is dropped). Without `wait`, a runtime
    /// someone else holds is [`ErrorKind::RuntimeBusy`].
    pub fn lock(&mut self, wait: bool) -> Result<()> {
        if self.lock.is_some() {
            return Ok(());
        }
        let path = self.dir.join("lock");
        let file = rustix::fs::open(
            &path,
            OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        )
        .at(&path, "cannot open runtime lock")?;
        let op = if wait {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::NonBlockingLockExclusive
        };
        match rustix::fs::flock(&file, op) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(Error::new(&self.name, ErrorKind::RuntimeBusy));
            }
            Err(e) => return Err(Error::io(&path, "cannot lock runtime", e.into())),
        }
        self.lock = Some(file.into());
        if let Err(e) = self.check_not_mounted() {
            self.lock = None;
            return Err(e);
        }
        // Another process may have committed between our open and our lock.
        let fresh = Runtime::open_at(&self.dir, &self.name)?;
        (self.scratch_dir, self.base, self.upstream) =
            (fresh.scratch_dir, fresh.base, fresh.upstream);
        Ok(())
    }

    /// Record that the overlay tagged `tag` is about to write scratch (see "Who may use it"
    /// in the module docs). Needs [`Runtime::lock`]; undone by [`Runtime::unmark_mounted`].
    pub fn mark_mounted(&self, tag: &str) -> Result<()> {
        assert!(self.lock.is_some(), "mark_mounted needs the runtime's lock");
        let opts = atomic::Options {
            new_mode: Some(0o644),
            // A reboot ends every mount: the tag means nothing after a crash of the machine.
            sync: false,
            ..Default::default()
        };
        let path = self.dir.join("overlay");
        atomic::replace(&path, atomic::Source::Bytes(tag.as_bytes()), &opts).map(drop)
    }

    /// The overlay [`Runtime::mark_mounted`] named is unmounted everywhere.
    pub fn unmark_mounted(&self) {
        let _ = std::fs::remove_file(self.dir.join("overlay"));
    }

    /// Under the flock: refuse while the overlay of a killed holder still writes scratch.
    fn check_not_mounted(&self) -> Result<()> {
        let path = self.dir.join("overlay");
        let tag = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == Io::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&path, "cannot read runtime", e)),
        };
        match crate::mounted::find(tag.trim()) {
            Some(place) => Err(Error::new(
                &self.name,
                ErrorKind::RuntimeMounted(format!(
                    "{} in the mount namespace of process {}",
                    place.mountpoint.display(),
                    place.pid
                )),
            )),
            None => {
                self.unmark_mounted();
                Ok(())
            }
        }
    }

    fn open_at(dir: &Path, name: &str) -> Result<Runtime> {
        let state_path = dir.join("state");
        let text =
            std::fs::read_to_string(&state_path).at(&state_path, "cannot read runtime state")?;
        let (scratch_dir, base, upstream) = parse_state(&text).ok_or_else(|| {
            Error::new(&state_path, ErrorKind::Corrupt("bad runtime state".into()))
        })?;
        Ok(Runtime {
            name: name.to_owned(),
            dir: dir.to_owned(),
            scratch_dir,
            base,
            upstream,
            lock: None,
        })
    }

    /// Put the runtime's own layers and its scratch dir over `upstream` instead of the
    /// layers they are on now (see "Rebasing" in the module docs); `Ok(false)` when that is
    /// its upstream already. Needs [`Runtime::lock`].
    pub fn rebase_onto(&mut self, upstream: &[Digest]) -> Result<bool> {
        assert!(self.lock.is_some(), "rebase_onto needs the runtime's lock");
        if self.upstream() == upstream {
            return Ok(false);
        }
        // A kernel runtime's metadata-only copy-ups and renamed directories name their
        // content by its path in the old layers; on new ones the same path may hold other
        // content. A commit turns them into a layer, which then moves like any other.
        let scratch = self.scratch_path();
        if let Some(path) = crate::overlay::depends_on_lower(&scratch)
            .at(&scratch, "cannot read the runtime's changes")?
        {
            let what = format!(
                "{} takes its content from the old layers (a chmod or rename of a layer \
                 entry in a kernel runtime): commit the runtime first (zcommit --runtime {}), \
                 then rebase",
                path.strip_prefix(&scratch).unwrap_or(&path).display(),
                self.name
            );
            return Err(Error::new(&self.name, ErrorKind::Invalid(what)));
        }
        let mut base = upstream.to_vec();
        base.extend_from_slice(&self.base[self.upstream..]);
        self.write_state(&base, upstream.len(), &self.scratch_dir)?;
        (self.base, self.upstream) = (base, upstream.len());
        Ok(true)
    }

    /// Move the runtime to a new base stack with an empty scratch dir, in one atomic step (see
    /// the module docs); the old scratch dir is removed after. `base` keeps the upstream
    /// layers at its bottom: what lies above them counts as committed from the runtime.
    /// Needs [`Runtime::lock`].
    pub fn rebase(&mut self, base: &[Digest]) -> Result<()> {
        assert!(self.lock.is_some(), "rebase needs the runtime's lock");
        debug_assert!(base.starts_with(self.upstream()));
        let old = self.scratch_dir.clone();
        let number = old
            .strip_prefix("scratch-")
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        let new = format!("scratch-{}", number + 1);
        let new_path = self.dir.join(&new);
        // Leftover of a crash between a previous state write and this point: empty it.
        if new_path.exists() {
            std::fs::remove_dir_all(&new_path).at(&new_path, "cannot remove old scratch")?;
        }
        std::fs::create_dir(&new_path).at(&new_path, "cannot create scratch")?;
        // The committed layer's root mode is the old scratch root's.
        let old_path = self.dir.join(&old);
        let mode = std::fs::symlink_metadata(&old_path).at(&old_path, "cannot stat scratch")?;
        set_mode(
            &new_path,
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()),
        )?;
        self.write_state(base, self.upstream, &new)?;
        (self.scratch_dir, self.base) = (new, base.to_vec());
        // The new scratch dir has no extended attributes (layers carry none).
        let xattrs = self.dir.join("xattrs");
        if let Err(e) = std::fs::remove_file(&xattrs)
            && e.kind() != Io::NotFound
        {
            return Err(Error::io(&xattrs, "cannot remove", e));
        }
        self.remove_stale_scratch()
    }

    /// Scratch dirs the state does not name (left by a crash during [`Runtime::rebase`]).
    fn remove_stale_scratch(&self) -> Result<()> {
        for entry in std::fs::read_dir(&self.dir).at(&self.dir, "cannot list runtime")? {
            let entry = entry.at(&self.dir, "cannot list runtime")?;
            let name = entry.file_name();
            let stale = name.to_str().is_some_and(|n| n.starts_with("scratch-"))
                && name != OsStr::new(&self.scratch_dir);
            if stale {
                let p = entry.path();
                std::fs::remove_dir_all(&p).at(&p, "cannot remove old scratch")?;
            }
        }
        Ok(())
    }

    fn write_state(&self, base: &[Digest], upstream: usize, scratch_dir: &str) -> Result<()> {
        let mut text = format!("{STATE_HEADER}\nscratch {scratch_dir}\n");
        for (i, d) in base.iter().enumerate() {
            let what = if i < upstream { "layer" } else { "commit" };
            text.push_str(&format!("{what} {}\n", d.to_hex()));
        }
        let opts = atomic::Options {
            new_mode: Some(0o644),
            ..Default::default()
        };
        atomic::replace(
            &self.dir.join("state"),
            atomic::Source::Bytes(text.as_bytes()),
            &opts,
        )?;
        Ok(())
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    let perms = std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777);
    std::fs::set_permissions(path, perms).at(path, "cannot set mode")
}

/// The scratch dir, the base stack and how many of its layers are upstream.
fn parse_state(text: &str) -> Option<(String, Vec<Digest>, usize)> {
    let mut lines = text.lines();
    if lines.next()? != STATE_HEADER {
        return None;
    }
    let scratch = lines.next()?.strip_prefix("scratch ")?;
    let valid = scratch
        .strip_prefix("scratch-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        return None;
    }
    let (mut base, mut upstream) = (Vec::new(), 0);
    for line in lines {
        let hex = match line.split_once(' ')? {
            // Upstream layers come first: a "layer" after a "commit" is not a state we write.
            ("layer", hex) if upstream == base.len() => {
                upstream += 1;
                hex
            }
            ("commit", hex) => hex,
            _ => return None,
        };
        base.push(Digest::parse(hex)?);
    }
    Some((scratch.to_owned(), base, upstream))
}

/// Rebase runtime `name` onto `upstream` ([`Runtime::rebase_onto`]); refused while a mount
/// uses it. `Ok(false)` when it is on `upstream` already.
pub fn rebase(store: &Store, name: &str, upstream: &[Digest]) -> Result<bool> {
    let mut rt = Runtime::open(store, name)?;
    rt.lock(false)?;
    rt.rebase_onto(upstream)
}

/// Every runtime in the store, opened (not locked), in no particular order; one discarded
/// meanwhile is left out.
pub fn open_all(store: &Store) -> Result<Vec<Runtime>> {
    let all = runtimes(store);
    let entries = match std::fs::read_dir(&all) {
        Ok(e) => e,
        Err(e) if e.kind() == Io::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&all, "cannot list runtimes", e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.at(&all, "cannot list runtimes")?;
        let Some(name) = entry
            .file_name()
            .to_str()
            .filter(|n| valid_name(n))
            .map(str::to_owned)
        else {
            continue;
        };
        match Runtime::open(store, &name) {
            Ok(rt) => out.push(rt),
            Err(Error {
                kind: ErrorKind::UnknownRuntime,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Every runtime in the store, sorted by name.
pub fn list(store: &Store) -> Result<Vec<Info>> {
    let mut out = Vec::new();
    for mut rt in open_all(store)? {
        let in_use = match rt.lock(false) {
            Ok(()) => false,
            Err(Error {
                kind: ErrorKind::RuntimeBusy | ErrorKind::RuntimeMounted(_),
                ..
            }) => true,
            Err(e) => return Err(e),
        };
        out.push(Info {
            changed: rt.changed()?,
            base: rt.base.clone(),
            in_use,
            name: rt.name.clone(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Remove a runtime and its scratch dir for good. Refused while it is in use.
pub fn discard(store: &Store, name: &str) -> Result<()> {
    let mut rt = Runtime::open(store, name)?;
    rt.lock(false)?;
    remove_locked(store, rt)
}

/// [`discard`] a runtime only if its scratch records no change (checked under its lock, so
/// no mount can change it in between); `Ok(false)` when it was kept.
pub fn discard_if_unchanged(store: &Store, name: &str) -> Result<bool> {
    let mut rt = Runtime::open(store, name)?;
    rt.lock(false)?;
    if rt.changed()? {
        return Ok(false);
    }
    remove_locked(store, rt).map(|()| true)
}

fn remove_locked(store: &Store, rt: Runtime) -> Result<()> {
    let all = runtimes(store);
    let hidden = all.join(format!(".trash-{:016x}", crate::sys::random_u64()));
    std::fs::rename(&rt.dir, &hidden).at(&rt.dir, "cannot remove runtime")?;
    drop(rt);
    std::fs::remove_dir_all(&hidden).at(&hidden, "cannot remove runtime")?;
    remove_leftovers(&all);
    Ok(())
}

/// Hidden dirs of creations and discards that a crash interrupted.
fn remove_leftovers(all: &Path) {
    let Ok(entries) = std::fs::read_dir(all) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let bytes = name.as_encoded_bytes();
        if bytes.starts_with(b".trash-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
