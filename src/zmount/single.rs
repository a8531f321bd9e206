//! `zmount mount LAYER... MOUNTPOINT`: one view, no routing, every cache on. And `umount`.

use super::{mounts, ready};
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::fuse::{Fs, Mode, Served};
use crate::store::{self, Store};
use crate::view::Meta;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

pub struct MountOptions {
    /// zmount's directory (kernel mounts are recorded there for `status`).
    pub paths: super::Paths,
    pub store: Option<PathBuf>,
    pub layers: Vec<OsString>,
    pub mountpoint: PathBuf,
    pub foreground: bool,
    pub log_level: Option<String>,
    /// Editable: the runtime (created on `layers` if missing, a fresh one for `Some(None)`)
    /// whose scratch dir goes on top, named the way `run --edit [--name NAME]` names it.
    pub edit: Option<Option<String>>,
    /// The runtime in `edit` was made under a fresh name for this mount: like `run --edit`
    /// without `--name`, it is removed at unmount when nothing changed (the background
    /// server is told so by the client that named it).
    pub fresh: bool,
    /// Which backend shows the view (see [`super::backend`]).
    pub backend: super::backend::Wanted,
    /// Skip the syncs that make copy-ups durable (see [`crate::backend`]).
    pub volatile: bool,
    /// With a named runtime: rebase it onto `layers` (see [`super::edit::prepare`]).
    pub rebase: bool,
}

/// Mount and serve. In the background (the default) this returns once the mount is ready and
/// a detached copy of this program serves it; with `foreground` it serves until unmounted or
/// signalled.
pub fn mount(opts: &MountOptions) -> Result<()> {
    let mountpoint = super::absolute(&opts.mountpoint);
    // Fail early, in the caller's terminal, with the message that names the fix.
    mounts::check_fuse(&mountpoint)?;
    let dead = mounts::recover(&mountpoint)?;
    let root = super::absolute(&store::root_from(opts.store.as_deref())?);
    let store = Store::open(&root)?;
    let mut fresh = opts.fresh;
    // The layers stay while this process lives: a background client's pin covers the
    // moments until its server has its own.
    let lock = store.write_lock()?;
    let (digests, runtime) = match &opts.edit {
        // The server mounts the runtime's base; the client creates or checks it.
        Some(given) => {
            let (name, base) = super::edit::prepare(
                &store,
                given.as_deref(),
                &opts.layers,
                crate::backend::Backend::Fuse,
                opts.volatile,
                opts.rebase,
            )?;
            if given.is_none() {
                crate::errln!(
                    "zmount: changes go to runtime {name} (zcommit --runtime {name}; removed \
                     at unmount if nothing changed)"
                );
                fresh = true;
            }
            (base, Some(name))
        }
        None => (super::resolve_layers(&store, &opts.layers)?, None),
    };
    let _pin = store.pin(&digests, None)?;
    drop(lock);
    if !opts.foreground {
        let mut args: Vec<OsString> = Vec::new();
        if let Some(l) = &opts.log_level {
            args.extend(["--log-level".into(), l.into()]);
        }
        args.extend([
            "mount".into(),
            "--foreground".into(),
            "--store".into(),
            root.into(),
        ]);
        if let Some(name) = &runtime {
            args.extend(["--edit".into(), "--name".into(), name.into()]);
            if fresh {
                args.push("--fresh-runtime".into());
            }
            if opts.volatile {
                args.push("--volatile".into());
            }
        }
        // Digests, so the server mounts exactly what was resolved here.
        args.extend(digests.iter().map(|d| OsString::from(d.to_hex())));
        args.push(mountpoint.into());
        ready::spawn_and_wait(&args)?;
        return Ok(());
    }
    crate::sys::block_termination().at(&mountpoint, "cannot set up signal handling")?;
    let meta = Meta {
        layers: opts
            .layers
            .iter()
            .map(|l| l.to_string_lossy().into_owned())
            .collect(),
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        created: SystemTime::now(),
    };
    let hex: Vec<String> = digests.iter().map(|d| d.to_hex()).collect();
    let served = match &runtime {
        Some(name) => super::edit::view(&root, name, 1, meta)?,
        None => Served::read_only(super::build_view(&root, &hex, 1, meta)?),
    };
    let nodes = served.view.len();
    tracing::info!(mountpoint = %mountpoint.display(), nodes, "mounting single view");
    let writable = served.edit().is_some();
    let session = super::mount_session(
        Fs::new(Mode::Single(Arc::new(served))),
        &mountpoint,
        writable,
        dead,
    )?;
    // Serve until a signal; an external unmount ends the session, and with it the process.
    let watched = mountpoint.clone();
    let watcher = crate::threads::spawn(&mountpoint, move || {
        let sig = crate::sys::wait_termination();
        tracing::info!(signal = sig, "stopping on signal");
        if end_on_signal(&watched) == super::Ending::Abandon {
            // Not busy-free: leave the mount dead (ENOTCONN) rather than let the processes
            // in it reach the directory beneath; exiting cuts the connection.
            std::process::exit(0);
        }
    });
    if let Err(e) = watcher {
        super::finish_session(session, &mountpoint, super::Ending::Unmount);
        return Err(e);
    }
    ready::notify(None)?;
    let _ = session.join();
    // The session (and with it the view's hold on the runtime) is gone.
    if let Some(name) = &runtime {
        super::run::end_volatile(&store, name)?;
        if fresh {
            match super::edit::remove_if_unchanged(&store, name) {
                Ok(true) => tracing::info!(runtime = %name, "no changes: runtime removed"),
                Ok(false) => {}
                Err(e) => tracing::warn!(runtime = %name, error = %e, "cannot remove runtime"),
            }
        }
    }
    Ok(())
}

/// A signal asks a single-view server to end. Cached writes are sent first (an editable view
/// lets the kernel cache them); then an ordinary unmount, which the kernel refuses while any
/// process has its directory or a file in the mount. Then the mount is left dead instead: a
/// lazy unmount would detach it and send those processes' later path lookups beneath it.
fn end_on_signal(mountpoint: &Path) -> super::Ending {
    if let Ok(root) = std::fs::File::open(mountpoint) {
        let _ = crate::sys::sync_file_system(&root);
    }
    match mounts::unmount(mountpoint, false) {
        Ok(()) => super::Ending::Unmount,
        Err(e) => {
            tracing::warn!(error = %e, "cannot unmount; leaving the mount without a server");
            super::Ending::Abandon
        }
    }
}

/// Unmount a zmount mount point (refusing other file systems); `lazy` detaches a busy one.
pub fn umount(mountpoint: &Path, lazy: bool) -> Result<()> {
    let mountpoint = super::absolute(mountpoint);
    if cfg!(target_os = "linux") && !mounts::is_dead_fuse(&mountpoint) {
        match mounts::fstype_at(&mountpoint) {
            Some((t, source))
                if (t.starts_with("fuse") || t == "overlay")
                    && crate::mounted::is_ours(&source) => {}
            Some((t, _)) => {
                let what = format!("{t} is mounted there, not zmount; use umount(8)");
                return Err(Error::new(&mountpoint, ErrorKind::Invalid(what)));
            }
            None => {
                let what = "nothing is mounted there".to_string();
                return Err(Error::new(&mountpoint, ErrorKind::Invalid(what)));
            }
        }
    }
    match mounts::unmount(&mountpoint, lazy) {
        Err(Error {
            kind: ErrorKind::MountpointBusy(_),
            ..
        }) if !lazy => {
            // Name who holds it: the path as /proc shows it (resolved without entering the
            // mount, which may be dead).
            let shown = match (mountpoint.parent(), mountpoint.file_name()) {
                (Some(dir), Some(name)) => std::fs::canonicalize(dir)
                    .map(|d| d.join(name))
                    .unwrap_or_else(|_| mountpoint.clone()),
                _ => mountpoint.clone(),
            };
            let users = super::users::users(&shown);
            let who = match users.is_empty() {
                true => "processes you cannot see (other users')".to_string(),
                false => super::users::describe(&users),
            };
            Err(Error::new(&mountpoint, ErrorKind::MountInUse(who)))
        }
        other => other,
    }
}
