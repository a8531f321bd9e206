//! `--edit`: editable views backed by a runtime in the store (see [`crate::runtime`]).
//!
//! The client (`zmount run --edit`, `zmount mount --edit`) creates or resumes the runtime
//! with the user's own rights and tells the server its name; the server opens it, takes its
//! lock for as long as it serves the view, and puts its scratch dir over the base layers.

use crate::backend::Backend;
use crate::edit::Edit;
use crate::error::{Error, ErrorKind, Result};
use crate::fuse::Served;
use crate::runtime::{self, Runtime};
use crate::store::Store;
use crate::view::{Digest, Meta};
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

/// The runtime a command edits with `backend`: `name`'s, resumed (its base must be `layers`
/// or `layers` empty; it must be `backend`'s, see [`crate::backend::claim`]), else a new one
/// on `layers` (named `name`, or a fresh name). With `rebase`, an existing runtime on other
/// layers is rebased onto `layers` instead (see [`Runtime::rebase_onto`]). Marks it for a
/// `volatile` run (see [`crate::backend::begin_volatile`]). Returns its name and its base.
pub fn prepare(
    store: &Store,
    name: Option<&str>,
    layers: &[OsString],
    backend: Backend,
    volatile: bool,
    rebase: bool,
) -> Result<(String, Vec<Digest>)> {
    let (name, base) = find_or_create(store, name, layers, backend, rebase)?;
    let rt = Runtime::open(store, &name)?;
    crate::backend::claim(rt.dir(), &name, backend, rt.changed()?)?;
    crate::backend::begin_volatile(rt.dir(), &name, &rt.scratch_path(), volatile)?;
    Ok((name, base))
}

fn find_or_create(
    store: &Store,
    name: Option<&str>,
    layers: &[OsString],
    backend: Backend,
    rebase: bool,
) -> Result<(String, Vec<Digest>)> {
    // From the names to the runtime that keeps their layers (see `store::lock`).
    let _lock = store.write_lock()?;
    let wanted = super::resolve_layers(store, layers)?;
    if let Some(name) = name {
        match Runtime::open(store, name) {
            Ok(rt) => {
                // Its upstream, or all of its base (what `mount` passes on to its server).
                let same = layers.is_empty()
                    || rt.upstream() == wanted.as_slice()
                    || rt.base() == wanted.as_slice();
                if same {
                    return Ok((name.to_owned(), rt.base().to_vec()));
                }
                if !rebase {
                    let base: Vec<String> = rt
                        .upstream()
                        .iter()
                        .map(|d| d.to_hex()[..12].to_string())
                        .collect();
                    return Err(Error::new(
                        name,
                        ErrorKind::Invalid(format!(
                            "runtime exists on another stack ({}); give no LAYER to resume it, \
                             --rebase to move its changes onto these LAYERs, or another --name",
                            base.join(" ")
                        )),
                    ));
                }
                // The backend that will show it must be able to read it before it moves.
                crate::backend::claim(rt.dir(), name, backend, rt.changed()?)?;
                runtime::rebase(store, name, &wanted)?;
                let rt = Runtime::open(store, name)?;
                return Ok((name.to_owned(), rt.base().to_vec()));
            }
            Err(Error {
                kind: ErrorKind::UnknownRuntime,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
    }
    let name = name.map_or_else(runtime::fresh_name, str::to_owned);
    let rt = Runtime::create(store, &name, &wanted)?;
    Ok((name, rt.base().to_vec()))
}

/// Build the editable view of runtime `name` in the store at `root`: its base layers merged,
/// its scratch dir on top (locked for the view's life).
pub fn view(root: &Path, name: &str, id: u32, meta: Meta) -> Result<Served> {
    let store = super::open_existing_store(root)?;
    let rt = Runtime::open(&store, name)?;
    let hex: Vec<String> = rt.base().iter().map(|d| d.to_hex()).collect();
    let (uid, gid) = (meta.uid, meta.gid);
    let view = super::build_view(root, &hex, id, meta)?;
    let lower_nodes = view.len();
    Ok(Served::editable(
        view,
        Edit::new(rt, uid, gid, lower_nodes)?,
    ))
}

/// The end of a run that made its runtime under a fresh name: nothing changed means nothing
/// to resume or commit, so the runtime goes (`zcommit runtimes` would only list litter).
/// `Ok(true)` when it was removed. The daemon lets go of the runtime when the view is
/// unregistered, a moment after; a runtime still busy after a few seconds is kept.
pub fn remove_if_unchanged(store: &Store, name: &str) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match runtime::discard_if_unchanged(store, name) {
            Err(Error {
                kind: ErrorKind::RuntimeBusy,
                ..
            }) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            other => return other,
        }
    }
}
