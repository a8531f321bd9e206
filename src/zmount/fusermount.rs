//! Mounting as a normal user, the way libfuse does: the setuid helper `fusermount3` opens
//! `/dev/fuse`, mounts it, and hands the descriptor back over a socket pair (`_FUSE_COMMFD`).
//! fuser tries a direct mount first and gives up when `/dev/fuse` itself is not open to the
//! user (mode 0600, as in some containers), so zmount goes through the helper for non-root.

use crate::error::{Error, ErrorKind, IoContext, Result};
use rustix::fd::{AsRawFd, OwnedFd};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};

/// Mount FUSE at `mountpoint` with `options` (`-o` syntax) and return the session's descriptor.
pub fn mount(mountpoint: &Path, options: &str) -> Result<OwnedFd> {
    let (ours, theirs) = UnixStream::pair().at(mountpoint, "cannot create socket pair")?;
    // The helper must inherit its end (std opens everything close-on-exec).
    rustix::io::fcntl_setfd(&theirs, rustix::io::FdFlags::empty())
        .at(mountpoint, "cannot pass a socket to fusermount3")?;
    let out = Command::new("fusermount3")
        .arg("-o")
        .arg(options)
        .arg("--")
        .arg(mountpoint)
        .env("_FUSE_COMMFD", theirs.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::new("fusermount3", ErrorKind::NoFusermount),
            _ => Error::io("fusermount3", "cannot run", e),
        })?;
    drop(theirs);
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg = msg.trim().trim_start_matches("fusermount3: ");
        if msg.contains("/dev/fuse: Permission denied") {
            return Err(super::mounts::fuse_denied());
        }
        return Err(Error::new(
            mountpoint,
            ErrorKind::Invalid(format!("fusermount3 failed: {msg}")),
        ));
    }
    let mut byte = [0u8; 1];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    rustix::net::recvmsg(
        &ours,
        &mut [IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .at(mountpoint, "no descriptor from fusermount3")?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg
            && let Some(fd) = fds.next()
        {
            return Ok(fd);
        }
    }
    Err(Error::new(
        mountpoint,
        ErrorKind::Invalid("fusermount3 sent no descriptor".into()),
    ))
}
