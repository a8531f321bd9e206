//! `zmount run LAYER... -- CMD`: show a stack to one process tree.
//!
//! 1. Become a child subreaper: a descendant that daemonises (double fork) is reparented to
//!    us, not to init, so it stays in the tree, and in the view, until it exits.
//! 2. Make sure the daemon runs (start it on demand) and register a view for our own process
//!    (PID and start time): CMD and all its descendants are below it.
//! 3. Run CMD with `$ZKIT_MOUNT` set to the mount point; wait for it, then for every other
//!    descendant (reaped as orphans come to us), then unregister.
//!
//! If `run` is killed before unregistering, the daemon notices the root process is gone and
//! drops the registration itself.
//!
//! A daemon started on demand is orphaned at once and adopted by init, or by the nearest
//! subreaper: a `run` nested in another `run` that has to start a daemon of its own (another
//! `--dir`) leaves it to the outer `run`, which then waits for that daemon too.

use super::control::{self, Reply, Request};
use super::{Paths, daemon};
use crate::error::{Error, ErrorKind, Result};
use crate::runtime;
use crate::store::{self, Store};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct RunOptions {
    pub paths: Paths,
    pub store: Option<PathBuf>,
    pub mountpoint: Option<PathBuf>,
    pub layers: Vec<OsString>,
    pub command: Vec<OsString>,
    pub log_level: Option<String>,
    /// Editable: changes go to a runtime's scratch dir (see [`super::edit`]).
    pub edit: bool,
    /// The runtime to create or resume (with `edit`); a fresh name otherwise.
    pub name: Option<String>,
    /// Which backend shows the view (see [`super::backend`]).
    pub backend: super::backend::Wanted,
    /// Skip the syncs that make copy-ups durable (see [`crate::backend`]).
    pub volatile: bool,
    /// With `name`: rebase an existing runtime onto `layers` (see [`super::edit::prepare`]).
    pub rebase: bool,
}

/// What a registration shows: layers, or a runtime's base and scratch dir.
#[derive(Clone, Copy, Debug)]
pub enum Editing<'a> {
    ReadOnly,
    /// Create or resume this runtime (a fresh one for `None`), volatile or not, rebased onto
    /// the layers if it is on others and `rebase` (the last field) says so.
    Runtime(Option<&'a str>, bool, bool),
}

/// A registered view: where it is, and the runtime it edits.
pub struct Registered {
    pub mountpoint: PathBuf,
    pub store: Store,
    pub runtime: Option<String>,
    /// Keeps the view's layers from `zcommit gc` until dropped (see [`store::Pin`]).
    pub pin: store::Pin,
}

/// Register a view of `layers` for process `pid` with the daemon at `paths` (starting it if
/// needed).
pub fn register(
    paths: &Paths,
    store: Option<&Path>,
    mountpoint: Option<&Path>,
    layers: &[OsString],
    pid: u32,
    log_level: Option<&str>,
    editing: Editing<'_>,
) -> Result<Registered> {
    let root = super::absolute(&store::root_from(store)?);
    let store = Store::open(&root)?;
    // From the names to the pin on their layers, no sweep (see `store::lock`).
    let lock = store.write_lock()?;
    let (digests, edit) = match editing {
        Editing::ReadOnly => (super::resolve_layers(&store, layers)?, None),
        Editing::Runtime(given, volatile, rebase) => {
            let (name, base) = super::edit::prepare(
                &store,
                given,
                layers,
                crate::backend::Backend::Fuse,
                volatile,
                rebase,
            )?;
            (base, Some(name))
        }
    };
    let start = crate::process::stat(pid).ok().map(|s| s.id.start);
    let owner = crate::process::ProcId {
        pid,
        start: start.unwrap_or(0),
    };
    let pin = store.pin(&digests, Some(owner))?;
    drop(lock);
    let req = Request::Register {
        pid,
        start,
        store: root,
        layers: digests.iter().map(|d| d.to_hex()).collect(),
        names: layers
            .iter()
            .map(|l| l.to_string_lossy().into_owned())
            .collect(),
        edit: edit.clone(),
    };
    let reply = daemon::ensure_running(paths, mountpoint, log_level)
        .and_then(|_| control::call(&paths.socket, &req));
    let registered = match reply {
        Ok(Reply::Registered { mountpoint, .. }) => mountpoint,
        other => {
            // A runtime made for this run and never shown to anyone is litter.
            if let (Editing::Runtime(None, ..), Some(name)) = (editing, &edit) {
                let _ = runtime::discard(&store, name);
            }
            return Err(other.map_or_else(|e| e, |r| unexpected(&paths.socket, r)));
        }
    };
    if let (Editing::Runtime(None, ..), Some(name)) = (editing, &edit) {
        // The user needs the name to resume, commit or discard what they change.
        crate::errln!("zmount: changes go to runtime {name} (zcommit --runtime {name})");
    }
    Ok(Registered {
        mountpoint: registered,
        store,
        runtime: edit,
        pin,
    })
}

pub fn unregister(paths: &Paths, pid: u32) -> Result<()> {
    match control::call(&paths.socket, &Request::Unregister { pid })? {
        Reply::Unregistered => Ok(()),
        other => Err(unexpected(&paths.socket, other)),
    }
}

fn unexpected(socket: &Path, reply: Reply) -> Error {
    Error::new(
        socket,
        ErrorKind::Daemon(format!("unexpected reply from the daemon: {reply:?}")),
    )
}

/// Run the command in its view; returns the exit code to leave with (CMD's status, or
/// 128 + N if a signal N killed it).
pub fn run(opts: &RunOptions) -> Result<i32> {
    let me = std::process::id();
    // Registering first may start the daemon; only then become a subreaper, so that the
    // daemon is never reparented to us.
    let Registered {
        mountpoint,
        store,
        runtime,
        pin: _pin,
    } = register(
        &opts.paths,
        opts.store.as_deref(),
        opts.mountpoint.as_deref(),
        &opts.layers,
        me,
        opts.log_level.as_deref(),
        match opts.edit {
            true => Editing::Runtime(opts.name.as_deref(), opts.volatile, opts.rebase),
            false => Editing::ReadOnly,
        },
    )?;
    tracing::debug!(mountpoint = %mountpoint.display(), "view registered");
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        let _ = unregister(&opts.paths, me);
        return Err(Error::io(
            "prctl",
            "cannot become a child subreaper",
            e.into(),
        ));
    }
    let code = match run_command(&opts.command, &mountpoint) {
        Ok(code) => code,
        Err(code) => {
            if unregister(&opts.paths, me).is_ok() {
                remove_fresh_runtime(opts, &store, runtime.as_deref());
            }
            return Ok(code);
        }
    };
    reap_orphans();
    match unregister(&opts.paths, me) {
        // `stop --force` or a crash ended the daemon under CMD, which got errors from the
        // mount from then on; its status says how it coped.
        Err(Error {
            kind: ErrorKind::DaemonNotRunning | ErrorKind::StaleSocket,
            ..
        }) => crate::errln!("zmount: the daemon stopped while CMD ran; the view ended early"),
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    if let Some(name) = &runtime
        && let Err(e) = end_volatile(&store, name)
    {
        crate::errln!("zmount: {name}: cannot end the volatile run: {}", e.kind);
    }
    remove_fresh_runtime(opts, &store, runtime.as_deref());
    Ok(code)
}

/// After a run: let a volatile run's runtime be mounted again (see
/// [`crate::backend::end_volatile`]).
pub(super) fn end_volatile(store: &Store, name: &str) -> Result<()> {
    let rt = runtime::Runtime::open(store, name)?;
    crate::backend::end_volatile(rt.dir())
}

/// Run CMD with `$ZKIT_MOUNT` set, forwarding termination signals to it, and wait for it:
/// its exit code (128 + N if signal N killed it), or, when it could not be started (reported
/// here), the code to exit with (127: not found, 126: not runnable).
pub(super) fn run_command(
    command: &[OsString],
    mountpoint: &Path,
) -> std::result::Result<i32, i32> {
    let (program, args) = command.split_first().expect("clap requires a command");
    crate::sys::forward_termination();
    let status = Command::new(program)
        .args(args)
        .env("ZKIT_MOUNT", mountpoint)
        .spawn()
        .and_then(|mut child| {
            crate::sys::set_forward_target(child.id());
            let status = child.wait();
            // Reaped: its PID may name a stranger from now on.
            crate::sys::set_forward_target(0);
            status
        });
    match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            Ok(s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)))
        }
        Err(e) => {
            crate::errln!(
                "zmount: {}: cannot run: {}",
                Path::new(program).display(),
                e
            );
            Err(match e.kind() {
                std::io::ErrorKind::NotFound => 127,
                _ => 126,
            })
        }
    }
}

/// Remove the runtime of a run that named it itself (no `--name`) if it ends unchanged; a
/// named one is the user's to keep.
fn remove_fresh_runtime(opts: &RunOptions, store: &Store, runtime: Option<&str>) {
    let Some(name) = runtime.filter(|_| opts.name.is_none()) else {
        return;
    };
    match super::edit::remove_if_unchanged(store, name) {
        Ok(true) => crate::errln!("zmount: runtime {name} has no changes; removed it"),
        Ok(false) => {}
        Err(e) => crate::errln!(
            "zmount: {name}: cannot remove the unchanged runtime: {}",
            e.kind
        ),
    }
}

/// Wait for every remaining descendant: as a subreaper we inherit the orphans of the tree.
pub(super) fn reap_orphans() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    while rustix::process::wait(rustix::process::WaitOptions::empty()).is_ok_and(|r| r.is_some()) {}
}
