//! Attach a FUSE connection at a mount point and hand back its `/dev/fuse` descriptor.
//!
//! zmount mounts itself instead of letting fuser do it, for one reason: whoever holds the
//! mount decides when it goes, and a mount that goes while a view's process is still alive
//! lets that process's next `open("$ZKIT_MOUNT/f", O_CREAT)` land in the directory *under*
//! the mount point, with success. fuser unmounts when its session ends; zmount instead leaves
//! a mount that lost its server in place (every access then fails with ENOTCONN) until the
//! next server replaces it.
//!
//! Replacing is gap-free for root: the new mount is built detached (`fsopen`/`fsmount`),
//! slid *beneath* the dead one (`MOVE_MOUNT_BENEATH`, Linux 6.5+) and only then is the dead
//! one detached, so a path walk finds either the dead mount (ENOTCONN) or the new one, never
//! the bare directory. Without the new mount API, and for normal users (the setuid helper
//! `fusermount3` can only mount on top of a live directory), the dead mount is detached first
//! and the new one mounted right after: a short window, logged.

// Only Linux mounts FUSE itself; elsewhere the options and the fallback go unread.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use super::mounts;
use crate::error::{Error, ErrorKind, Result};
use rustix::fd::OwnedFd;
use std::path::Path;

/// How a mount looks from outside: writable or not, and who may enter.
pub struct Options {
    pub writable: bool,
    /// Everyone may enter (root's mounts); else only the mounting user.
    pub allow_other: bool,
}

/// Mount FUSE at `mountpoint`, replacing the dead FUSE mount there if `replace_dead`.
pub fn attach(mountpoint: &Path, opts: &Options, replace_dead: bool) -> Result<OwnedFd> {
    #[cfg(target_os = "linux")]
    {
        if rustix::process::geteuid().is_root() {
            return linux::attach_as_root(mountpoint, opts, replace_dead);
        }
        if replace_dead {
            detach_dead(mountpoint)?;
        }
        let options = format!(
            "{},nodev,nosuid,default_permissions,fsname=zmount,subtype=zmount",
            if opts.writable { "rw" } else { "ro" }
        );
        super::fusermount::mount(mountpoint, &options)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (mountpoint, opts, replace_dead);
        Err(Error::new(
            mountpoint,
            ErrorKind::Invalid("zmount mounts FUSE on Linux only in this build".into()),
        ))
    }
}

/// The fallback with a window: take the dead mount away, then the caller mounts.
fn detach_dead(mountpoint: &Path) -> Result<()> {
    tracing::warn!(
        mountpoint = %mountpoint.display(),
        "detaching a dead FUSE mount before mounting (processes that still use it by path \
         may reach the directory beneath until the new mount is up)"
    );
    mounts::unmount(mountpoint, true)
}

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    use rustix::mount::{
        FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, fsconfig_create,
        fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
    };

    pub fn attach_as_root(
        mountpoint: &Path,
        opts: &Options,
        replace_dead: bool,
    ) -> Result<OwnedFd> {
        let dev = rustix::fs::open("/dev/fuse", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| match e {
                Errno::NOENT => Error::new("/dev/fuse", ErrorKind::NoFuse),
                e => Error::io("/dev/fuse", "cannot open", e.into()),
            })?;
        let detached = match build(&dev, opts) {
            Ok(m) => m,
            // No new mount API (before Linux 5.2): the classic mount(2), after the dead one.
            Err(Errno::NOSYS) => {
                if replace_dead {
                    detach_dead(mountpoint)?;
                }
                classic(&dev, mountpoint, opts)?;
                return Ok(dev);
            }
            Err(e) => {
                return Err(Error::io(
                    mountpoint,
                    "cannot set up the FUSE mount",
                    e.into(),
                ));
            }
        };
        let empty = rustix::fs::CWD;
        if replace_dead {
            match move_mount(
                &detached,
                "",
                empty,
                mountpoint,
                MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_BENEATH,
            ) {
                Ok(()) => {
                    // Now the dead mount is on top of ours: taking it away reveals ours.
                    tracing::warn!(
                        mountpoint = %mountpoint.display(),
                        "replaced a dead FUSE mount left by a server that died"
                    );
                    mounts::unmount(mountpoint, true)?;
                    return Ok(dev);
                }
                // Before Linux 6.5, or a mount that cannot have one beneath.
                Err(Errno::INVAL) => detach_dead(mountpoint)?,
                Err(e) => return Err(move_error(mountpoint, e)),
            }
        }
        move_mount(
            &detached,
            "",
            empty,
            mountpoint,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| move_error(mountpoint, e))?;
        Ok(dev)
    }

    fn move_error(mountpoint: &Path, e: Errno) -> Error {
        match e {
            Errno::NOENT => Error::new(mountpoint, ErrorKind::MountpointMissing),
            e => Error::io(mountpoint, "cannot mount", e.into()),
        }
    }

    /// A detached FUSE mount on `dev`, ready to be moved into place.
    fn build(dev: &OwnedFd, opts: &Options) -> rustix::io::Result<OwnedFd> {
        let fs = fsopen("fuse", FsOpenFlags::FSOPEN_CLOEXEC)?;
        let fd = rustix::fd::AsRawFd::as_raw_fd(dev).to_string();
        fsconfig_set_string(&fs, "source", "zmount")?;
        fsconfig_set_string(&fs, "subtype", "zmount")?;
        fsconfig_set_string(&fs, "fd", fd.as_str())?;
        fsconfig_set_string(&fs, "rootmode", "40000")?;
        fsconfig_set_string(&fs, "user_id", "0")?;
        fsconfig_set_string(&fs, "group_id", "0")?;
        fsconfig_set_flag(&fs, "default_permissions")?;
        if opts.allow_other {
            fsconfig_set_flag(&fs, "allow_other")?;
        }
        fsconfig_create(&fs)?;
        let mut attrs = MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV;
        if !opts.writable {
            attrs |= MountAttrFlags::MOUNT_ATTR_RDONLY;
        }
        fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
    }

    fn classic(dev: &OwnedFd, mountpoint: &Path, opts: &Options) -> Result<()> {
        use rustix::mount::MountFlags;
        let mut data = format!(
            "fd={},rootmode=40000,user_id=0,group_id=0,default_permissions",
            rustix::fd::AsRawFd::as_raw_fd(dev)
        );
        if opts.allow_other {
            data.push_str(",allow_other");
        }
        let mut flags = MountFlags::NOSUID | MountFlags::NODEV;
        if !opts.writable {
            flags |= MountFlags::RDONLY;
        }
        let data = std::ffi::CString::new(data).expect("no NUL in mount options");
        rustix::mount::mount("zmount", mountpoint, "fuse.zmount", flags, data.as_c_str())
            .map_err(|e| move_error(mountpoint, e))
    }
}
