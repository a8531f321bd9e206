//! The one place a backend is chosen, and the one seam `run`, `mount` and `status` go through.
//!
//! - **fuse**: the PID-routed daemon ([`super::run`]) and single-view FUSE mounts
//!   ([`super::single`]).
//! - **kernel** (Linux, root): overlayfs over the store's meta images ([`super::kernel`]),
//!   one mount namespace per run, no daemon.
//!
//! `auto` is kernel where [`crate::overlay::mount::probe`] says this process can mount
//! overlayfs with data-only lower layers and [`crate::overlay::mount::probe_store`] finds the
//! store on a file system EROFS can mount images from, else fuse; a resumed runtime keeps the
//! backend that wrote it (see [`crate::backend`]). The reason is kept for `status` and
//! `--verbose`.

use super::run::RunOptions;
use super::single::MountOptions;
pub use crate::backend::Backend;
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::Runtime;
use crate::store::{self, Store};
use std::path::Path;

/// What the user asked for (`--backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Wanted {
    /// kernel where this process may mount overlayfs with data-only lower layers, else fuse
    #[default]
    Auto,
    /// kernel overlayfs in a private mount namespace (Linux, root)
    Kernel,
    /// the FUSE daemon (any user; macOS)
    Fuse,
}

/// A backend and why it was chosen.
#[derive(Clone, Debug)]
pub struct Choice {
    pub backend: Backend,
    pub reason: String,
}

/// Why the kernel backend can or cannot be used here, with the store at `store` (if known).
pub fn kernel_support(store: Option<&Path>) -> std::result::Result<(), String> {
    #[cfg(target_os = "linux")]
    return crate::overlay::mount::probe()
        .and_then(|()| store.map_or(Ok(()), crate::overlay::mount::probe_store));
    #[cfg(not(target_os = "linux"))]
    {
        let _ = store;
        Err("not Linux".into())
    }
}

/// Pick the backend for `wanted` with the store at `store` (if known); `runtime` is the
/// backend of a runtime being resumed.
pub fn choose(wanted: Wanted, runtime: Option<Backend>, store: Option<&Path>) -> Result<Choice> {
    let kernel = kernel_support(store);
    let choice = |backend, reason: String| Ok(Choice { backend, reason });
    match (wanted, runtime) {
        (Wanted::Fuse, _) => choice(Backend::Fuse, "asked for (--backend fuse)".into()),
        (Wanted::Kernel, _) => match kernel {
            Ok(()) => choice(Backend::Kernel, "asked for (--backend kernel)".into()),
            Err(why) => Err(Error::new(
                "--backend kernel",
                ErrorKind::Invalid(format!(
                    "cannot use the kernel backend: {why} (use --backend fuse)"
                )),
            )),
        },
        (Wanted::Auto, Some(Backend::Kernel)) => match kernel {
            Ok(()) => choice(Backend::Kernel, "the runtime was written by it".into()),
            Err(why) => Err(Error::new(
                "--backend auto",
                ErrorKind::Invalid(format!(
                    "the runtime was written by the kernel backend, which cannot be used here: \
                     {why} (run as root on Linux 6.8+)"
                )),
            )),
        },
        (Wanted::Auto, _) => match kernel {
            Ok(()) => choice(
                Backend::Kernel,
                "root, and overlayfs has data-only lower layers".into(),
            ),
            Err(why) => choice(Backend::Fuse, why),
        },
    }
}

/// The store a command would use (its `--store`, else the environment's), if one can be named.
pub fn store_root(explicit: Option<&Path>) -> Option<std::path::PathBuf> {
    store::root_from(explicit).ok().map(|p| super::absolute(&p))
}

/// The backend for a command on the store `explicit` (its `--store`, else the environment's)
/// that resumes runtime `name`, if any; the store's root is resolved once for both.
fn choose_for(wanted: Wanted, explicit: Option<&Path>, name: Option<&str>) -> Result<Choice> {
    // Without a store to name, only resuming a runtime is an error: `auto` just probes less.
    let root = match (store::root_from(explicit), name) {
        (Err(e), Some(_)) => return Err(e),
        (root, _) => root.ok().map(|p| super::absolute(&p)),
    };
    let resumed = match (&root, name) {
        (Some(root), Some(name)) => runtime_backend(root, name)?,
        _ => None,
    };
    let choice = choose(wanted, resumed, root.as_deref())?;
    tracing::debug!(backend = choice.backend.name(), reason = %choice.reason, "backend chosen");
    Ok(choice)
}

/// The backend of runtime `name` in the store at `root` if it exists and has changes (an
/// unchanged one can go to either backend).
fn runtime_backend(root: &Path, name: &str) -> Result<Option<Backend>> {
    if !root.join("zkit-store").exists() {
        return Ok(None);
    }
    let store = Store::open(root)?;
    match Runtime::open(&store, name) {
        Ok(rt) if rt.changed()? => Ok(Some(crate::backend::of_runtime(rt.dir())?)),
        Ok(_) => Ok(None),
        Err(Error {
            kind: ErrorKind::UnknownRuntime,
            ..
        }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `zmount run` with the chosen backend.
pub fn run(opts: &RunOptions) -> Result<i32> {
    let name = opts.name.as_deref().filter(|_| opts.edit);
    let choice = choose_for(opts.backend, opts.store.as_deref(), name)?;
    match choice.backend {
        Backend::Fuse => super::run::run(opts),
        #[cfg(target_os = "linux")]
        Backend::Kernel => super::kernel::run(opts, &choice),
        #[cfg(not(target_os = "linux"))]
        Backend::Kernel => unreachable!("choose() never picks kernel off Linux"),
    }
}

/// `zmount mount` with the chosen backend.
pub fn mount(opts: &MountOptions) -> Result<()> {
    let name = opts.edit.as_ref().and_then(|n| n.as_deref());
    let choice = choose_for(opts.backend, opts.store.as_deref(), name)?;
    match choice.backend {
        Backend::Fuse => super::single::mount(opts),
        #[cfg(target_os = "linux")]
        Backend::Kernel => super::kernel_mount::mount(opts, &choice),
        #[cfg(not(target_os = "linux"))]
        Backend::Kernel => unreachable!("choose() never picks kernel off Linux"),
    }
}

/// A kernel view, as `zmount status` lists it.
#[cfg(target_os = "linux")]
pub type KernelView = super::kernel::Record;
#[cfg(not(target_os = "linux"))]
pub type KernelView = ();

/// The live kernel views recorded under zmount's directory.
pub fn kernel_views(paths: &super::Paths) -> Vec<KernelView> {
    #[cfg(target_os = "linux")]
    return super::kernel::records(paths);
    #[cfg(not(target_os = "linux"))]
    {
        let _ = paths;
        Vec::new()
    }
}

/// `status`'s lines for the backend `auto` picks here (and why) and the kernel views.
pub fn render(views: &[KernelView], verbose: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = match choose(Wanted::Auto, None, store_root(None).as_deref()) {
        Ok(c) => writeln!(out, "backend (auto): {}: {}", c.backend.name(), c.reason),
        Err(e) => writeln!(out, "backend (auto): {}", e.kind),
    };
    #[cfg(target_os = "linux")]
    {
        use super::control::shown;
        use std::os::unix::ffi::OsStrExt;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let _ = writeln!(out, "kernel views: {}", views.len());
        for v in views {
            let layers: Vec<String> = v.layers.iter().map(|l| shown(l.as_bytes())).collect();
            let edit = match &v.runtime {
                Some(r) => format!(", editing runtime {}", shown(r.as_bytes())),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "  kernel {} {}: pid {} (uid {}), {}s old{edit}{}: {}",
                v.kind,
                shown(v.mountpoint.as_os_str().as_bytes()),
                v.root.pid,
                v.uid,
                now.saturating_sub(v.created_secs),
                if v.volatile { ", volatile" } else { "" },
                layers.join(" ")
            );
            if verbose {
                let _ = writeln!(out, "    backend: {}", v.reason);
                for (i, l) in layers.iter().enumerate() {
                    let _ = writeln!(out, "    layer {}: {l}", i + 1);
                }
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (views, verbose);
    out
}

/// Add `backend` and `kernel_views` to `status --json`.
pub fn add_json(value: &mut serde_json::Value, views: &[KernelView]) {
    let backend = match choose(Wanted::Auto, None, store_root(None).as_deref()) {
        Ok(c) => serde_json::json!({ "auto": c.backend.name(), "reason": c.reason }),
        Err(e) => serde_json::json!({ "auto": null, "reason": e.kind.to_string() }),
    };
    if let Some(map) = value.as_object_mut() {
        map.insert("backend".into(), backend);
        map.insert(
            "kernel_views".into(),
            serde_json::to_value(views).unwrap_or_default(),
        );
    }
}
