//! Where zmount keeps its socket, log and mount point.
//!
//! ```text
//! BASE/               0711, owned by the daemon's user: others may reach the mount point
//! BASE/control/       0700: the socket is reachable only by the owner (and root)
//! BASE/control/socket the control socket
//! BASE/control/serve.log  the background daemon's log
//! BASE/mnt            the default mount point
//! ```
//!
//! BASE is `--dir DIR` (or `$ZMOUNT_DIR`); else `/run/zmount` for root; else
//! `$XDG_RUNTIME_DIR/zmount`; else `/tmp/zmount-UID`.

use crate::error::{Error, ErrorKind, IoContext, Result};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Paths {
    pub base: PathBuf,
    pub control: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    /// Held by a running daemon for its whole life.
    pub lock: PathBuf,
    /// Serialises starting a daemon on demand.
    pub start_lock: PathBuf,
    pub default_mountpoint: PathBuf,
}

impl Paths {
    pub fn new(dir: Option<&Path>) -> Paths {
        // Absolute: the daemon leaves its working directory for `/`.
        let base = match dir {
            Some(d) => std::path::absolute(d).unwrap_or_else(|_| d.to_owned()),
            None => default_base(),
        };
        let control = base.join("control");
        Paths {
            socket: control.join("socket"),
            log: control.join("serve.log"),
            lock: control.join("lock"),
            start_lock: control.join("start.lock"),
            default_mountpoint: base.join("mnt"),
            control,
            base,
        }
    }

    /// Create BASE (0711) and BASE/control (0700); refuse directories another user owns,
    /// which could let them swap the socket.
    pub fn prepare(&self) -> Result<()> {
        make_dir(&self.base, 0o711)?;
        make_dir(&self.control, 0o700)
    }
}

fn default_base() -> PathBuf {
    let uid = rustix::process::geteuid();
    if uid.is_root() {
        return PathBuf::from("/run/zmount");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("zmount"),
        None => PathBuf::from(format!("/tmp/zmount-{}", uid.as_raw())),
    }
}

fn make_dir(dir: &Path, mode: u32) -> Result<()> {
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => return Err(Error::io(dir, "cannot create directory", e)),
    }
    let meta = std::fs::symlink_metadata(dir).at(dir, "cannot inspect directory")?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != me {
        return Err(Error::new(
            dir,
            ErrorKind::Invalid(format!(
                "not a directory owned by uid {me}; refusing to put the control socket there"
            )),
        ));
    }
    if meta.mode() & 0o7777 != mode {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .at(dir, "cannot set directory permissions")?;
    }
    Ok(())
}
