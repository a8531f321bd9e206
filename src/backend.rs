//! Which zmount backend a runtime belongs to, and the mark a volatile run leaves on it.
//!
//! A runtime's scratch dir has one of two formats: the FUSE backend's ([`crate::scratch`]:
//! `.wh.NAME` files) or overlayfs's upper dir (char 0:0 whiteouts, `trusted.overlay.*`
//! attributes; see [`crate::commit::overlay`]). The first backend to use a runtime records
//! itself in `ROOT/runtimes/NAME/backend` (a runtime without the file is a FUSE one, as every
//! runtime made before the kernel backend); the other backend then refuses it and names the
//! one to use, and `zcommit --runtime` reads the format the file names.
//!
//! `ROOT/runtimes/NAME/volatile` holds the boot id of the `--volatile` runs that wrote to the
//! runtime since it was last synced. Nothing such a run wrote was synced, not even at its end,
//! so a runtime marked by an earlier boot (the machine crashed, lost power or rebooted) may
//! hold anything and is refused until discarded. A mark of this boot means the kernel still
//! has every write: a run that is not volatile syncs once and removes it, and a commit (whose
//! layer is durable, and which leaves an empty scratch dir) removes it.

use crate::error::{Error, ErrorKind, IoContext, Result};
use std::io::ErrorKind as Io;
use std::path::Path;

/// A zmount backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The PID-routed FUSE daemon (or a single-view FUSE mount).
    Fuse,
    /// Kernel overlayfs over the store's meta images, one mount namespace per run.
    Kernel,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Fuse => "fuse",
            Backend::Kernel => "kernel",
        }
    }
}

/// The backend recorded for the runtime at `dir`: [`Backend::Fuse`] when none is.
pub fn of_runtime(dir: &Path) -> Result<Backend> {
    let path = dir.join("backend");
    match std::fs::read(&path) {
        Ok(b) if b == b"kernel\n" => Ok(Backend::Kernel),
        Ok(b) if b == b"fuse\n" => Ok(Backend::Fuse),
        Ok(_) => Err(Error::new(
            &path,
            ErrorKind::Corrupt("unknown backend record".into()),
        )),
        Err(e) if e.kind() == Io::NotFound => Ok(Backend::Fuse),
        Err(e) => Err(Error::io(&path, "cannot read", e)),
    }
}

/// Claim the runtime at `dir` (named `name`) for `backend`: record it if the runtime has no
/// changes yet, else refuse a runtime of the other backend with a message that names it.
pub fn claim(dir: &Path, name: &str, backend: Backend, changed: bool) -> Result<()> {
    let had = of_runtime(dir)?;
    if had == backend {
        return Ok(());
    }
    if changed {
        return Err(Error::new(
            name,
            ErrorKind::Invalid(format!(
                "runtime was written by the {} backend, whose format this one cannot read \
                 (resume it with --backend {}, or commit it first)",
                had.name(),
                had.name()
            )),
        ));
    }
    // Nothing written yet: the runtime can change hands.
    let opts = crate::atomic::Options {
        new_mode: Some(0o644),
        ..Default::default()
    };
    let text = format!("{}\n", backend.name());
    crate::atomic::replace(
        &dir.join("backend"),
        crate::atomic::Source::Bytes(text.as_bytes()),
        &opts,
    )
    .map(drop)
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Before a run uses the runtime at `dir` (locked): refuse it when a volatile run of an
/// earlier boot left it, then mark it for this run when `volatile`. A mark of this boot is
/// an earlier volatile run (ended or killed) whose writes the kernel still holds: a run that
/// is not volatile syncs them (`upper` is the scratch dir) and the mark goes.
pub fn begin_volatile(dir: &Path, name: &str, upper: &Path, volatile: bool) -> Result<()> {
    let mark = dir.join("volatile");
    match std::fs::read_to_string(&mark) {
        Ok(id) if id.trim() != boot_id() => {
            return Err(Error::new(
                name,
                ErrorKind::Invalid(format!(
                    "runtime was left by a --volatile run that the machine did not survive: \
                     its changes may be incomplete (zcommit discard {name})"
                )),
            ));
        }
        Ok(_) if !volatile => make_durable(dir, upper)?,
        Ok(_) => {}
        Err(e) if e.kind() == Io::NotFound => {}
        Err(e) => return Err(Error::io(&mark, "cannot read", e)),
    }
    if volatile {
        let opts = crate::atomic::Options {
            new_mode: Some(0o644),
            ..Default::default()
        };
        let text = format!("{}\n", boot_id());
        crate::atomic::replace(&mark, crate::atomic::Source::Bytes(text.as_bytes()), &opts)?;
    }
    Ok(())
}

/// After a volatile run's view is gone. Nothing is synced: a sync of everything the run wrote
/// (a 512 MiB copy-up, say) costs what --volatile is asked to save, and syncs the whole file
/// system's dirty data besides. The mark stays, so the runtime is refused after a crash of
/// the machine, until [`make_durable`] or a commit ([`forget_volatile`]). Only overlayfs's own
/// mark goes (`work/work/incompat/volatile`, which would make it refuse the next mount): the
/// kernel still has every write, so the upper dir is sound for as long as this boot lasts.
pub fn end_volatile(dir: &Path) -> Result<()> {
    let incompat = dir.join("overlay-work/work/incompat");
    match std::fs::remove_dir_all(&incompat) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == Io::NotFound => Ok(()),
        Err(e) => Err(Error::io(&incompat, "cannot remove", e)),
    }
}

/// Make what volatile runs of this boot wrote to the runtime at `dir` durable (one `syncfs`
/// of `upper`, its scratch dir), and drop the mark.
pub fn make_durable(dir: &Path, upper: &Path) -> Result<()> {
    let mark = dir.join("volatile");
    if !mark.exists() {
        return Ok(());
    }
    let top = std::fs::File::open(upper).at(upper, "cannot open scratch")?;
    crate::sys::sync_file_system(&top).at(upper, "cannot sync scratch")?;
    end_volatile(dir)?;
    std::fs::remove_file(&mark).at(&mark, "cannot remove")
}

/// The runtime's scratch was committed (the layer is durable) and replaced by an empty one:
/// a mark of this boot has nothing left to protect. A mark of an earlier boot stays.
pub fn forget_volatile(dir: &Path) -> Result<()> {
    let mark = dir.join("volatile");
    match std::fs::read_to_string(&mark) {
        Ok(id) if id.trim() == boot_id() => std::fs::remove_file(&mark).at(&mark, "cannot remove"),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == Io::NotFound => Ok(()),
        Err(e) => Err(Error::io(&mark, "cannot read", e)),
    }
}
