//! `zmount`: the daemon, `run`, single-view mounts, and the glue between the store, views and
//! the FUSE layer. See `zmount --help` for the user's side.

mod attach;
pub mod backend;
pub mod control;
pub mod daemon;
pub mod edit;
#[cfg(target_os = "linux")]
mod fusermount;
#[cfg(target_os = "linux")]
pub mod kernel;
#[cfg(target_os = "linux")]
pub mod kernel_mount;
pub mod mounts;
pub mod paths;
pub mod ready;
pub mod run;
pub mod single;
pub mod users;

pub use paths::Paths;

use crate::error::{Error, ErrorKind, Result};
use crate::fuse::Fs;
use crate::store::Store;
use crate::view::{Builder, Digest, Meta, View};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Open an existing store without creating anything in it: the daemon must never create
/// directories in a user's store with its own rights.
pub fn open_existing_store(root: &Path) -> Result<Store> {
    let marker = root.join("zkit-store");
    if !marker.exists() {
        return Err(Error::new(
            root,
            ErrorKind::Invalid("no zkit store here (zcommit creates one)".into()),
        ));
    }
    Store::open(root)
}

/// Resolve the user's layer names (tag, stack tag, digest, digest prefix) to digests, bottom
/// first. A name that is none of these but an image reference (`REGISTRY/REPO:TAG`) is the
/// stack it was pulled as, pulled first when the store lacks it
/// ([`crate::oci::registry::stack_of_reference`]).
pub fn resolve_layers(store: &Store, names: &[OsString]) -> Result<Vec<Digest>> {
    let mut out = Vec::new();
    for name in names {
        match store.resolve_stack(name) {
            Ok(stack) => out.extend(stack),
            #[cfg(feature = "registry")]
            Err(e) if matches!(e.kind, ErrorKind::UnknownLayer) => {
                match crate::oci::registry::stack_of_reference(store, name)? {
                    Some(stack) => out.extend(stack),
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Merge the layers (hex digests, bottom first) of the store at `root` into a view.
pub fn build_view(root: &Path, digests: &[String], id: u32, meta: Meta) -> Result<View> {
    let store = Arc::new(open_existing_store(root)?);
    let mut builder = Builder::new();
    for hex in digests {
        let digest = Digest::parse(hex).ok_or_else(|| Error::new(hex, ErrorKind::UnknownLayer))?;
        builder.push_layer(&store.load_layer(&digest)?);
    }
    let blobs = Arc::new(move |d: &Digest| store.blob_path(d));
    Ok(builder.finish(id, meta, blobs))
}

/// Mount `fs` at `mountpoint` (read-only unless `writable`: an editable view, or a routed
/// mount that may serve one), served by several threads. Root's mounts let every user in
/// (a routed mount shows each tree its own view); setuid bits from a layer are never honoured.
/// `replace_dead`: a dead FUSE mount is there (see [`mounts::recover`]) and is replaced
/// without a gap (see [`attach`]).
///
/// The session never unmounts by itself: see [`Ending`] for what happens at the end.
fn mount_session(
    fs: Fs,
    mountpoint: &Path,
    writable: bool,
    replace_dead: bool,
) -> Result<fuser::BackgroundSession> {
    use fuser::SessionACL;
    let root = rustix::process::geteuid().is_root();
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
    let opts = attach::Options {
        writable,
        allow_other: root,
    };
    let fd = attach::attach(mountpoint, &opts, replace_dead)?;
    let mut config = fuser::Config::default();
    config.acl = if root {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(threads);
    config.clone_fd = cfg!(target_os = "linux");
    fuser::Session::from_fd(fs, fd, config.acl, config)
        .and_then(fuser::Session::spawn)
        .map_err(|e| {
            // Mounted but no server: take the mount away again rather than leave it dead.
            let _ = mounts::unmount(mountpoint, true);
            Error::io(mountpoint, "cannot start the FUSE session", e)
        })
}

/// How a server leaves its mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Nobody is using the mount: take it away, the directory beneath shows again.
    Unmount,
    /// Processes may still be using it (by path, not only by open files): leave it in place
    /// and let the connection die with this process, so that every later access fails with
    /// ENOTCONN instead of silently reaching the directory beneath. The next server at this
    /// mount point replaces it; `zmount umount` takes it away.
    Abandon,
}

/// Detach the mount (for [`Ending::Unmount`]) and let the session end; never wait long for
/// it (a process still inside the mount keeps the session alive until it leaves, and that
/// is the kernel's job). With [`Ending::Abandon`] nothing is unmounted: the caller exits and
/// the kernel aborts the connection when the last descriptor of `/dev/fuse` closes.
pub(super) fn finish_session(session: fuser::BackgroundSession, mountpoint: &Path, ending: Ending) {
    if ending == Ending::Abandon {
        tracing::warn!(
            mountpoint = %mountpoint.display(),
            "leaving the mount in place without a server: processes still using it get ENOTCONN"
        );
        // The session's threads hold the descriptors, which go with the process. Dropping
        // the handle unmounts nothing: zmount, not fuser, made the mount.
        drop(session);
        return;
    }
    if let Err(e) = mounts::unmount(mountpoint, true) {
        tracing::warn!(error = %e, "cannot detach the mount");
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let joined = crate::threads::spawn(mountpoint, move || {
        let _ = session.join();
        let _ = tx.send(());
    });
    // Without a thread to wait with (the system may refuse one), the kernel ends it alone.
    if joined.is_err() || rx.recv_timeout(Duration::from_secs(3)).is_err() {
        tracing::warn!("FUSE session still busy after unmount; leaving it to the kernel");
    }
}

/// The arguments that start `zmount serve` for these paths.
fn serve_args(
    paths: &Paths,
    mountpoint: Option<&Path>,
    log_level: Option<&str>,
    read_only: bool,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--dir".into(), paths.base.clone().into()];
    if let Some(l) = log_level {
        args.extend(["--log-level".into(), l.into()]);
    }
    args.push("serve".into());
    if let Some(m) = mountpoint {
        args.extend(["--mountpoint".into(), m.into()]);
    }
    if read_only {
        args.push("--read-only".into());
    }
    args
}

/// A path made absolute against the current directory (the daemon runs elsewhere).
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}
