//! The kernel backend's `zmount mount`: overlayfs at MOUNTPOINT in the host's namespace.
//!
//! The mount needs no server, but an editable one needs its runtime locked for as long as
//! the overlay writes its upper dir (a commit must never read it under a live mount). So, as
//! for FUSE, a detached `zmount mount --foreground` holds the runtime and waits: until the
//! overlay is unmounted (`zmount umount`, `umount(8)`), or until a signal, on which it
//! unmounts (and keeps waiting while the mount is busy). Then it records a volatile run's
//! changes as durable, lets go of the runtime and exits.

use super::backend::Choice;
use super::kernel::{forget, record_for, remember, stack_of, take_runtime};
use super::single::MountOptions;
use super::{Paths, ready};
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::overlay::mount;
use crate::store::{self, Store};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub fn mount(opts: &MountOptions, choice: &Choice) -> Result<()> {
    let mountpoint = super::absolute(&opts.mountpoint);
    if !mountpoint.is_dir() {
        return Err(Error::new(&mountpoint, ErrorKind::MissingDir));
    }
    let root = super::absolute(&store::root_from(opts.store.as_deref())?);
    let store = Store::open(&root)?;
    // From the names to the pin on their layers, no sweep (see `store::lock`): the client's
    // pin covers the moments until its server has its own.
    let lock = store.write_lock()?;
    if !opts.foreground {
        let mut args: Vec<OsString> = vec!["--dir".into(), opts.paths.base.clone().into()];
        if let Some(l) = &opts.log_level {
            args.extend(["--log-level".into(), l.into()]);
        }
        args.extend([
            "mount".into(),
            "--foreground".into(),
            "--backend".into(),
            "kernel".into(),
            "--store".into(),
            root.into(),
        ]);
        let (pinned, layers): (Vec<_>, Vec<OsString>) = match &opts.edit {
            Some(given) => {
                // Made here, so the name is printed in the user's terminal.
                let (name, base) = super::edit::prepare(
                    &store,
                    given.as_deref(),
                    &opts.layers,
                    crate::backend::Backend::Kernel,
                    opts.volatile,
                    opts.rebase,
                )?;
                args.extend(["--edit".into(), "--name".into(), name.clone().into()]);
                if given.is_none() {
                    crate::errln!(
                        "zmount: changes go to runtime {name} (zcommit --runtime {name}; \
                         removed at unmount if nothing changed)"
                    );
                    args.push("--fresh-runtime".into());
                }
                (base, Vec::new())
            }
            None => {
                let digests = super::resolve_layers(&store, &opts.layers)?;
                let hex = digests.iter().map(|d| OsString::from(d.to_hex())).collect();
                (digests, hex)
            }
        };
        let _pin = store.pin(&pinned, None)?;
        drop(lock);
        if opts.volatile {
            args.push("--volatile".into());
        }
        args.extend(layers);
        args.push(mountpoint.into());
        ready::spawn_and_wait(&args)?;
        return Ok(());
    }
    crate::sys::block_termination().at(&mountpoint, "cannot set up signal handling")?;
    let (rt, base) = match &opts.edit {
        Some(given) => {
            let (rt, base) =
                take_runtime(&store, given.as_deref(), &opts.layers, opts.volatile, false)?;
            (Some(rt), base)
        }
        None => (None, super::resolve_layers(&store, &opts.layers)?),
    };
    let (stack, _pin) = stack_of(&store, &base, rt.as_ref(), opts.volatile)?;
    drop(lock);
    let before = std::fs::metadata(&mountpoint)
        .at(&mountpoint, "cannot stat")?
        .dev();
    mount::make(&stack)?.attach(&mountpoint)?;
    let ours = std::fs::metadata(&mountpoint)
        .at(&mountpoint, "cannot stat")?
        .dev();
    // Resolved here from digests or a runtime's base: name them by short digest.
    let shown: Vec<OsString> = base.iter().map(|d| d.to_hex()[..12].into()).collect();
    let record = record_for(
        &mountpoint,
        &shown,
        rt.as_ref().map(|r| r.name()),
        "mount",
        opts.volatile,
        choice,
    )
    .and_then(|r| remember(&opts.paths, &r));
    let stop = Arc::new(AtomicBool::new(false));
    let watched = mountpoint.clone();
    let flag = stop.clone();
    let watcher = crate::threads::spawn(&mountpoint, move || {
        loop {
            let sig = crate::sys::wait_termination();
            tracing::info!(signal = sig, "unmounting on signal");
            match rustix::mount::unmount(&watched, rustix::mount::UnmountFlags::empty()) {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %std::io::Error::from(e), "cannot unmount; still mounted")
                }
            }
        }
        flag.store(true, Ordering::SeqCst);
    });
    if let Err(e) = watcher {
        // Nothing could unmount it on a signal: take it away now, before anyone uses it.
        let _ = rustix::mount::unmount(&mountpoint, rustix::mount::UnmountFlags::DETACH);
        if let Ok(path) = &record {
            forget(path);
        }
        if let Some(rt) = &rt {
            rt.unmark_mounted();
        }
        return Err(e);
    }
    ready::notify(None)?;
    wait_unmounted(&mountpoint, ours, before, &stop);
    if let Ok(path) = &record {
        forget(path);
    }
    if let Some(rt) = rt {
        rt.unmark_mounted();
        if opts.volatile {
            crate::backend::end_volatile(rt.dir())?;
        }
        // Like `run --edit` without --name: an unchanged fresh runtime is litter.
        if opts.fresh {
            let name = rt.name().to_owned();
            drop(rt);
            if let Err(e) = super::edit::remove_if_unchanged(&store, &name) {
                tracing::warn!(runtime = %name, error = %e, "cannot remove runtime");
            }
        }
    }
    Ok(())
}

/// Wait until `mountpoint` no longer shows the overlay (device `ours`): woken by each change
/// of the mount table (`poll` on `/proc/self/mountinfo`), with a timeout as a backstop.
fn wait_unmounted(mountpoint: &Path, ours: u64, before: u64, stop: &AtomicBool) {
    let table = std::fs::File::open("/proc/self/mountinfo").ok();
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match std::fs::metadata(mountpoint) {
            Ok(m) if m.dev() == ours && ours != before => {}
            _ => return,
        }
        match &table {
            Some(t) => {
                let mut fds = [rustix::event::PollFd::new(t, rustix::event::PollFlags::PRI)];
                let timeout = rustix::time::Timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                };
                let _ = rustix::event::poll(&mut fds, Some(&timeout));
            }
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// After `zmount umount` of a kernel mount: wait (a few seconds at most) for the process that
/// holds its runtime to let go, so that a `zcommit --runtime` right after finds it free.
pub fn wait_released(paths: &Paths, mountpoint: &Path) {
    let mountpoint = super::absolute(mountpoint);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let held = super::kernel::records(paths)
            .iter()
            .any(|r| r.kind == "mount" && r.mountpoint == mountpoint);
        if !held {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
