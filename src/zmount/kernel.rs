//! The kernel backend's `zmount run`: overlayfs in a mount namespace of the run's own.
//!
//! 1. Resolve the stack (or create/resume the runtime, and lock it for the run's life) and
//!    make sure every layer has its meta image ([`crate::overlay::meta`]).
//! 2. `unshare(CLONE_NEWNS)`, then make every mount in the copy a slave: host mounts made
//!    later still appear inside, nothing mounted inside reaches the host. The copies of
//!    other kernel views are detached ([`crate::mounted::detach_copies`]): the run must not
//!    keep them mounted after their own end.
//! 3. Make the overlay ([`crate::overlay::mount`]) and attach it at the mount point; CMD runs
//!    with `$ZKIT_MOUNT` set to it, as with the daemon. Only processes of this namespace see
//!    it; another run at the same path has its own.
//! 4. Stay a child subreaper, wait for CMD and every descendant; the namespace, and with it
//!    the overlay, ends with the last of them. No daemon is involved.
//!
//! If `run` is killed alone, CMD goes on in the namespace and the overlay with it: the
//! overlay's tag (its mount source, see [`crate::mounted`]), recorded in the runtime and the
//! pin, keeps the runtime taken and the layers pinned until the namespace's last process ends.
//!
//! `zmount status` finds kernel views through `DIR/kernel/PID`, a record each run writes and
//! removes (a record whose process is gone is ignored and removed by the next reader).

use super::backend::Choice;
use super::run::{RunOptions, reap_orphans, run_command};
use super::{Paths, mounts};
use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::overlay::{meta, mount};
use crate::process::ProcId;
use crate::runtime::{self, Runtime};
use crate::store::{self, Store};
use rustix::mount::MountPropagationFlags;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The overlay stack of `base` (bottom first): meta images built where missing, top first,
/// cut below a layer whose root is opaque (it hides everything under it), with a fresh tag.
/// With the pin that keeps its layers and their meta images from `zcommit gc` while it is
/// held or the overlay is mounted; a caller that resolved `base` from names holds the store
/// lock from then until this returns. `rt`, locked, is marked as written by the overlay
/// ([`Runtime::mark_mounted`]) until the caller unmarks it.
pub fn stack_of(
    store: &Store,
    base: &[Digest],
    rt: Option<&Runtime>,
    volatile: bool,
) -> Result<(mount::Stack, store::Pin)> {
    let _lock = store.write_lock()?;
    let mut lowers = Vec::new();
    let mut used = Vec::new();
    for layer in base.iter().rev() {
        let lower = mount::Lower::mount(&meta::ensure(store, layer)?)?;
        let opaque = lower.root_opaque()?;
        lowers.push(lower);
        used.push(*layer);
        if opaque {
            break;
        }
    }
    if lowers.is_empty() {
        // An empty stack: one empty layer (overlayfs needs a lower dir).
        let empty = crate::manifest::Manifest::from_tree(&crate::manifest::Node::dir(0o755));
        let digest = store.put_layer(&empty)?;
        lowers.push(mount::Lower::mount(&meta::ensure(store, &digest)?)?);
        used.push(digest);
    }
    let tag = crate::mounted::new_tag();
    let pin = store.pin_overlay(&used, &tag)?;
    let upper = match rt {
        Some(rt) => {
            rt.mark_mounted(&tag)?;
            let work = rt.dir().join("overlay-work");
            std::fs::create_dir_all(&work).at(&work, "cannot create work directory")?;
            Some((rt.scratch_path(), work))
        }
        None => None,
    };
    let stack = mount::Stack {
        lowers,
        data: store.root().join("blobs"),
        upper,
        volatile,
        tag,
    };
    Ok((stack, pin))
}

/// What `zmount status` shows of a kernel view.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub root: ProcId,
    pub uid: u32,
    pub mountpoint: PathBuf,
    pub layers: Vec<String>,
    pub runtime: Option<String>,
    /// `run` (a private namespace) or `mount` (the host's).
    pub kind: String,
    pub volatile: bool,
    pub reason: String,
    pub created_secs: u64,
}

fn records_dir(paths: &Paths) -> PathBuf {
    paths.base.join("kernel")
}

/// Write the record of a kernel view rooted at this process; removed by [`forget`].
pub fn remember(paths: &Paths, record: &Record) -> Result<PathBuf> {
    paths.prepare()?;
    let dir = records_dir(paths);
    std::fs::create_dir_all(&dir).at(&dir, "cannot create directory")?;
    let path = dir.join(record.root.pid.to_string());
    let text = serde_json::to_vec(record).expect("records serialise");
    // Complete or absent (atomic), but not durable: it means nothing after a reboot.
    let opts = crate::atomic::Options {
        new_mode: Some(0o644),
        sync: false,
        ..Default::default()
    };
    crate::atomic::replace(&path, crate::atomic::Source::Bytes(&text), &opts)?;
    Ok(path)
}

pub fn forget(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// The kernel views whose processes are alive (stale records are removed).
pub fn records(paths: &Paths) -> Vec<Record> {
    let dir = records_dir(paths);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        match serde_json::from_slice::<Record>(&bytes) {
            Ok(r) if crate::process::alive(r.root) => out.push(r),
            _ => {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    out.sort_by_key(|r| r.root.pid);
    out
}

/// A record for a view of this process.
pub fn record_for(
    mountpoint: &Path,
    layers: &[std::ffi::OsString],
    runtime: Option<&str>,
    kind: &str,
    volatile: bool,
    choice: &Choice,
) -> Result<Record> {
    let pid = std::process::id();
    let start = crate::process::stat(pid)
        .map(|s| s.id.start)
        .at(Path::new("/proc/self"), "cannot read own process")?;
    Ok(Record {
        root: ProcId { pid, start },
        uid: rustix::process::geteuid().as_raw(),
        mountpoint: mountpoint.to_owned(),
        layers: layers
            .iter()
            .map(|l| l.to_string_lossy().into_owned())
            .collect(),
        runtime: runtime.map(str::to_owned),
        kind: kind.into(),
        volatile,
        reason: choice.reason.clone(),
        created_secs: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    })
}

/// The runtime a kernel view edits, locked for as long as it is returned: created or
/// resumed as `run --edit` does, claimed for the kernel backend.
pub fn take_runtime(
    store: &Store,
    name: Option<&str>,
    layers: &[std::ffi::OsString],
    volatile: bool,
    rebase: bool,
) -> Result<(Runtime, Vec<Digest>)> {
    let (name, base) = super::edit::prepare(
        store,
        name,
        layers,
        crate::backend::Backend::Kernel,
        volatile,
        rebase,
    )?;
    let mut rt = Runtime::open(store, &name)?;
    rt.lock(false)?;
    Ok((rt, base))
}

/// `zmount run` on the kernel backend (see the module docs).
pub fn run(opts: &RunOptions, choice: &Choice) -> Result<i32> {
    let root = super::absolute(&store::root_from(opts.store.as_deref())?);
    let store = Store::open(&root)?;
    let mountpoint = super::absolute(
        opts.mountpoint
            .as_deref()
            .unwrap_or(&opts.paths.default_mountpoint),
    );
    let fresh = opts.edit && opts.name.is_none();
    // From the names to the pin, no sweep; let go before CMD runs (it may run a gc).
    let lock = store.write_lock()?;
    let (rt, base) = match opts.edit {
        true => {
            let (rt, base) = take_runtime(
                &store,
                opts.name.as_deref(),
                &opts.layers,
                opts.volatile,
                opts.rebase,
            )?;
            (Some(rt), base)
        }
        false => (None, super::resolve_layers(&store, &opts.layers)?),
    };
    let name = rt.as_ref().map(|r| r.name().to_owned());
    let staged = stack_of(&store, &base, rt.as_ref(), opts.volatile);
    drop(lock);
    let mut _pin = None;
    let started = (|| {
        let (stack, pin) = staged?;
        _pin = Some(pin);
        mounts::ensure_dir(&mountpoint)?;
        crate::sys::unshare_mount_namespace().at(&mountpoint, "cannot make a mount namespace")?;
        rustix::mount::mount_change(
            "/",
            MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
        )
        .at(Path::new("/"), "cannot make mounts private")?;
        crate::mounted::detach_copies();
        mount::make(&stack)?.attach(&mountpoint)?;
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .at(Path::new("prctl"), "cannot become a child subreaper")
    })();
    if let Err(e) = started {
        if let Some(rt) = &rt {
            rt.unmark_mounted();
        }
        if let (true, Some(rt)) = (fresh, rt) {
            let name = rt.name().to_owned();
            drop(rt);
            let _ = runtime::discard(&store, &name);
        }
        return Err(e);
    }
    if fresh && let Some(name) = &name {
        crate::errln!("zmount: changes go to runtime {name} (zcommit --runtime {name})");
    }
    let record = record_for(
        &mountpoint,
        &opts.layers,
        name.as_deref(),
        "run",
        opts.volatile,
        choice,
    )
    .and_then(|r| remember(&opts.paths, &r));
    if let Err(e) = &record {
        tracing::warn!(error = %e, "cannot record the view for zmount status");
    }
    tracing::debug!(mountpoint = %mountpoint.display(), "overlay attached");
    let code = run_command(&opts.command, &mountpoint).unwrap_or_else(|code| code);
    reap_orphans();
    if let Ok(path) = &record {
        forget(path);
    }
    // Every process of the namespace is gone but this one: let go of the upper dir.
    let _ = rustix::mount::unmount(&mountpoint, rustix::mount::UnmountFlags::DETACH);
    if let Some(rt) = rt {
        rt.unmark_mounted();
        let name = rt.name().to_owned();
        if opts.volatile {
            crate::backend::end_volatile(rt.dir())?;
        }
        drop(rt);
        if fresh {
            match runtime::discard_if_unchanged(&store, &name) {
                Ok(true) => crate::errln!("zmount: runtime {name} has no changes; removed it"),
                Ok(false) => {}
                Err(e) => crate::errln!(
                    "zmount: {name}: cannot remove the unchanged runtime: {}",
                    e.kind
                ),
            }
        }
    }
    Ok(code)
}
