//! Mount-table facts and unmounting: is a path a (live or dead) FUSE mount, and take it away.
// The mountinfo parsing and fusermount3 lookup are Linux's; elsewhere they are unused.
#![cfg_attr(not(target_os = "linux"), allow(dead_code, unused_imports))]

use crate::error::{Error, ErrorKind, IoContext, Result};
use std::path::Path;

/// The file system type and source mounted exactly at `path`, from `/proc/self/mountinfo`
/// (the last one when mounts are stacked). zmount's own mounts are `fuse` (or `fuse.zmount`
/// through fusermount3) with source `zmount`, and kernel overlays with `zmount:ID` (see
/// [`crate::mounted`]).
#[cfg(target_os = "linux")]
pub fn fstype_at(path: &Path) -> Option<(String, String)> {
    let table = std::fs::read("/proc/self/mountinfo").ok()?;
    let want = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    crate::sys::mountinfo::entries(&table)
        .filter(|e| e.mountpoint == want)
        .last()
        .map(|e| (e.fstype, e.source))
}

#[cfg(not(target_os = "linux"))]
pub fn fstype_at(_path: &Path) -> Option<(String, String)> {
    None
}

/// A FUSE mount whose server is gone answers ENOTCONN to everything.
pub fn is_dead_fuse(path: &Path) -> bool {
    matches!(std::fs::metadata(path), Err(e) if e.raw_os_error() == Some(libc::ENOTCONN))
}

/// Take the mount at `path` away. `lazy` detaches it even while it is in use (the kernel
/// finishes it when the last user leaves). Root unmounts directly; a normal user goes
/// through `fusermount3 -u`.
pub fn unmount(path: &Path, lazy: bool) -> Result<()> {
    if rustix::process::geteuid().is_root() {
        #[cfg(target_os = "linux")]
        {
            use rustix::mount::UnmountFlags;
            let flags = if lazy {
                UnmountFlags::DETACH
            } else {
                UnmountFlags::empty()
            };
            return rustix::mount::unmount(path, flags).map_err(|e| {
                if e == rustix::io::Errno::BUSY {
                    Error::new(
                        path,
                        ErrorKind::MountpointBusy("files are open in it".into()),
                    )
                } else {
                    Error::io(path, "cannot unmount", e.into())
                }
            });
        }
    }
    // A normal user on Linux goes through the setuid helper; macOS has umount(8).
    let (tool, lazy_flag) = match cfg!(target_os = "linux") {
        true => ("fusermount3", "-z"),
        false => ("umount", "-f"),
    };
    let mut cmd = std::process::Command::new(tool);
    if tool == "fusermount3" {
        cmd.arg("-u");
    }
    if lazy {
        cmd.arg(lazy_flag);
    }
    let out = cmd.arg(path).output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::new(path, ErrorKind::NoFusermount),
        _ => Error::io(path, "cannot run the unmount helper", e),
    })?;
    if out.status.success() {
        return Ok(());
    }
    let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if msg.contains("busy") {
        return Err(Error::new(path, ErrorKind::MountpointBusy(msg)));
    }
    Err(Error::new(
        path,
        ErrorKind::Invalid(format!("{tool} failed: {msg}")),
    ))
}

/// Can FUSE be mounted here by us at all? Names the fix when not.
pub fn check_fuse(mountpoint: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        if !Path::new("/dev/fuse").exists() {
            return Err(Error::new("/dev/fuse", ErrorKind::NoFuse));
        }
        if !rustix::process::geteuid().is_root() {
            if !in_path("fusermount3") {
                return Err(Error::new("fusermount3", ErrorKind::NoFusermount));
            }
            // fusermount3 opens the device with the user's own rights.
            use rustix::fs::{Access, access};
            if access("/dev/fuse", Access::READ_OK | Access::WRITE_OK)
                == Err(rustix::io::Errno::ACCESS)
            {
                return Err(fuse_denied());
            }
        }
    }
    match std::fs::metadata(mountpoint) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::new(
            mountpoint,
            ErrorKind::Invalid("mount point is not a directory".into()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::new(mountpoint, ErrorKind::MountpointMissing))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
        Err(e) => Err(Error::io(mountpoint, "cannot use mount point", e)),
    }
}

/// `/dev/fuse` is not open to us: say who owns it, for the administrator.
pub fn fuse_denied() -> Error {
    use std::os::unix::fs::MetadataExt;
    let what = match std::fs::metadata("/dev/fuse") {
        Ok(m) => format!(
            "mode {:04o}, owner {}, group {}",
            m.mode() & 0o7777,
            name_of("/etc/passwd", m.uid()),
            name_of("/etc/group", m.gid())
        ),
        Err(_) => "cannot inspect it".to_string(),
    };
    Error::new("/dev/fuse", ErrorKind::FuseDenied(what))
}

/// The name of an id in a passwd or group file, else the number.
fn name_of(file: &str, id: u32) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)? == id.to_string()).then(|| name.to_string())
        })
        .unwrap_or_else(|| id.to_string())
}

fn in_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// What a crashed server left at `mountpoint`: `Ok(true)` for a dead FUSE mount, which is
/// left in place for the next mount to replace (see `attach`): taking it away first would let
/// a process still using it by path reach the directory beneath. A live mount of anything
/// is "busy".
pub fn recover(mountpoint: &Path) -> Result<bool> {
    if is_dead_fuse(mountpoint) {
        return Ok(true);
    }
    if let Some((fs, _)) = fstype_at(mountpoint) {
        return Err(Error::new(
            mountpoint,
            ErrorKind::MountpointBusy(format!("{fs} is mounted there")),
        ));
    }
    Ok(false)
}

/// Create the default mount point if it is missing (user-given ones must exist).
pub fn ensure_dir(path: &Path) -> Result<()> {
    if is_dead_fuse(path) {
        return Ok(());
    }
    std::fs::create_dir_all(path).at(path, "cannot create mount point")
}
