//! One error type for the whole library: what happened, to which path, with the errno kept.
//!
//! Binaries print it as `TOOL: PATH: what happened (what to do)`; see [`crate::cli::report`].

use std::io;
use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error about one path.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct Error {
    pub path: PathBuf,
    #[source]
    pub kind: ErrorKind,
}

/// What went wrong, independent of the path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A system call failed; `op` says what we were doing, in words a user knows.
    #[error("{op}: {}", strerror(source))]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("file is immutable")]
    Immutable,
    #[error("file is append-only")]
    AppendOnly,
    #[error("another writer holds the file's lock")]
    Locked,
    #[error("file does not exist")]
    Missing,
    #[error("directory does not exist")]
    MissingDir,
    #[error("not a regular file")]
    NotRegular,
    #[error("{0}")]
    Invalid(String),
    /// No tag, digest or digest prefix names a layer in the store.
    #[error("no such layer")]
    UnknownLayer,
    /// A digest prefix matches several layers; they are listed.
    #[error("ambiguous layer prefix, matches {}", .0.join(" "))]
    AmbiguousLayer(Vec<String>),
    /// Stored bytes are not what their name or format promises.
    #[error("corrupt: {0}")]
    Corrupt(String),
    /// No runtime (editable view in the store) has this name.
    #[error("no such runtime")]
    UnknownRuntime,
    #[error("a runtime with this name exists")]
    RuntimeExists,
    /// A mount or a commit holds the runtime.
    #[error("runtime is in use")]
    RuntimeBusy,
    /// The overlay of a killed kernel view still writes the runtime; where it is mounted.
    #[error("runtime is still written by the overlay of a killed zmount, mounted at {0}")]
    RuntimeMounted(String),
    /// A strict link mode's only tier cannot serve this file; `instead` names what would work.
    #[error("cannot {what}: {} [{}]", strerror(source), errno_name(source))]
    TierRefused {
        what: &'static str,
        #[source]
        source: io::Error,
        instead: &'static str,
    },
    #[error("already exists and is a different file")]
    Exists,
    /// A hard link to the source where the mode wants a separate inode.
    #[error("is a hard link to the source, and this mode makes separate inodes")]
    SharesInode,
    #[error("is a directory")]
    IsDir,
    /// FIFOs, sockets and devices: linking or copying them is not what a tree mirror wants.
    #[error("is a {0}, not a regular file, directory or symlink")]
    Special(&'static str),
    #[error("destination is inside the source")]
    DestInsideSource,
    /// A file's content changed while it was being committed.
    #[error("file changed while it was being committed")]
    Changed,
    /// zmount: the kernel's FUSE device is missing.
    #[error("no FUSE device")]
    NoFuse,
    /// zmount: a normal user mounts FUSE through fusermount3, which is not installed.
    #[error("fusermount3 not found")]
    NoFusermount,
    #[error("mount point does not exist")]
    MountpointMissing,
    #[error("mount point is busy: {0}")]
    MountpointBusy(String),
    /// zmount: `/dev/fuse` is there but not open to this user; says who owns it.
    #[error("permission denied ({0})")]
    FuseDenied(String),
    /// zmount: an unmount the kernel refused; names the processes using the mount.
    #[error("mount point is in use by {0}")]
    MountInUse(String),
    #[error("the zmount daemon is not running")]
    DaemonNotRunning,
    #[error("stale control socket: no daemon answers it")]
    StaleSocket,
    #[error("a zmount daemon is already running")]
    AlreadyRunning,
    /// The daemon refused a request; its message carries its own hint.
    #[error("{0}")]
    Daemon(String),
    /// zwrite: the replacement could not be given the old file's owner, mode, ACL or xattrs,
    /// so nothing was replaced.
    #[error("cannot keep the file's {what}: {}", strerror(source))]
    MetadataNotKept {
        what: String,
        #[source]
        source: io::Error,
    },
    /// zwrite -i: the immutable or append-only flag could not be set again; `replaced` says
    /// whether the file holds the new content or the old. `fix` is the command that sets it.
    #[error(
        "{} but is no longer {flag}: {fix} (setting the flag failed: {})",
        if *.replaced { "was replaced" } else { "was left as it was" },
        strerror(source)
    )]
    NoLongerProtected {
        replaced: bool,
        flag: &'static str,
        fix: String,
        #[source]
        source: io::Error,
    },
    /// zwrite: the file cannot be replaced by a rename at all; `why` says what stands in the way.
    #[error("cannot be replaced atomically: {why}: {}", strerror(source))]
    CannotReplace {
        why: &'static str,
        #[source]
        source: io::Error,
    },
    /// zwrite --in-place: the write into the file failed after its first byte changed.
    #[error("was partly written: {}", strerror(source))]
    PartlyWritten {
        #[source]
        source: io::Error,
    },
    /// The file holds the new content, but it or its directory could not be synced: a power cut
    /// may still bring the old one back.
    #[error(
        "holds the new content, but {what} could not be synced: {}",
        strerror(source)
    )]
    NotDurable {
        /// What could not be synced: "the directory", "the file".
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub fn new(path: impl Into<PathBuf>, kind: ErrorKind) -> Self {
        Error {
            path: path.into(),
            kind,
        }
    }

    pub fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        Self::new(path, ErrorKind::Io { op, source })
    }

    /// The errno behind the error, if a system call failed.
    pub fn errno(&self) -> Option<i32> {
        match &self.kind {
            ErrorKind::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        match &self.kind {
            ErrorKind::Immutable | ErrorKind::AppendOnly => {
                Some("use -i to lift the flag for the replacement and set it again")
            }
            ErrorKind::Locked => Some("drop --no-wait to wait for it"),
            ErrorKind::MissingDir => Some("create the directory first"),
            ErrorKind::Missing => Some("drop -e to create it"),
            ErrorKind::UnknownLayer => {
                Some("name it by tag, full digest or digest prefix; `zcommit tags` lists tags")
            }
            ErrorKind::Changed => Some("commit again when nothing is writing to the tree"),
            ErrorKind::AmbiguousLayer(_) => Some("give more digits of the digest"),
            ErrorKind::Corrupt(_) => Some(
                "the store was damaged or tampered with; `zcommit verify` checks all of it, \
                 --repair removes what is damaged",
            ),
            ErrorKind::TierRefused { instead, .. } => Some(instead),
            ErrorKind::Exists => Some("use -f to replace it"),
            ErrorKind::SharesInode => Some("use -f to replace it with a reflink or copy"),
            ErrorKind::UnknownRuntime => Some("`zcommit runtimes` lists the runtimes"),
            ErrorKind::RuntimeExists => {
                Some("resume it with --name, or `zcommit discard` it first")
            }
            ErrorKind::RuntimeBusy => Some("a mount is using it: end that run or unmount it first"),
            ErrorKind::RuntimeMounted(_) => Some(
                "end the processes of that run (they still write to it), or unmount it \
                 (zmount umount MOUNTPOINT); then try again",
            ),
            ErrorKind::IsDir => Some("use -r to mirror a directory tree"),
            ErrorKind::Special(_) => Some("special files are refused; remove or skip it"),
            ErrorKind::DestInsideSource => {
                Some("the mirror would contain itself; pick a destination outside the source")
            }
            ErrorKind::NoFuse => Some("load the fuse kernel module: modprobe fuse"),
            ErrorKind::NoFusermount => {
                Some("install fuse3 (apt-get install fuse3), or run as root to mount directly")
            }
            ErrorKind::MountpointMissing => Some("create the directory first"),
            ErrorKind::MountpointBusy(_) => {
                Some("unmount it first (zmount umount), or choose another mount point")
            }
            ErrorKind::FuseDenied(_) => Some(
                "ask an administrator for access: membership in the group of /dev/fuse with \
                 mode 0660, or a udev rule such as KERNEL==\"fuse\", MODE=\"0666\"; or run \
                 zmount as root",
            ),
            ErrorKind::MountInUse(_) => Some(
                "end them first, or detach it now with `zmount umount -l` (they keep what \
                 they have open; paths they look up afterwards miss the mount)",
            ),
            ErrorKind::DaemonNotRunning => {
                Some("start it with `zmount serve`; `zmount run` starts it on demand")
            }
            ErrorKind::StaleSocket => {
                Some("the daemon died; `zmount serve` cleans up and starts a new one")
            }
            ErrorKind::AlreadyRunning => Some("`zmount status` shows it; `zmount stop` ends it"),
            ErrorKind::Daemon(_) => None,
            ErrorKind::MetadataNotKept { .. } => {
                Some("the file was left as it was; --allow-metadata-loss replaces it without them")
            }
            ErrorKind::NoLongerProtected { .. } => None,
            ErrorKind::CannotReplace { .. } => Some(
                "the file was left as it was; --in-place writes into it instead, which is not \
                 atomic: readers may see it half-written",
            ),
            ErrorKind::PartlyWritten { .. } => Some(
                "it now holds part old, part new content; write it again once the cause is fixed",
            ),
            ErrorKind::NotDurable { .. } => Some(
                "it holds the new content, which a crash may still undo; run sync to make it durable",
            ),
            ErrorKind::Io { op, .. } if *op == crate::threads::NO_THREAD => Some(
                "the system gave no new thread: raise the process limit (ulimit -u) or end \
                 other processes, then try again",
            ),
            ErrorKind::Io { .. } => match self.errno()? {
                libc::ENOSPC | libc::EDQUOT => Some("free some space; the file was left as it was"),
                libc::EACCES => Some("check the permissions of the file and its directory"),
                libc::EROFS => Some("the file system is mounted read-only"),
                libc::EPERM => Some("not permitted; run as the file's owner or root"),
                libc::EIO => Some("the device reported an I/O error; the file was left as it was"),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Attach a path and an operation to an `io::Result`.
pub trait IoContext<T> {
    fn at(self, path: &Path, op: &'static str) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path, op: &'static str) -> Result<T> {
        self.map_err(|e| Error::io(path, op, e))
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn at(self, path: &Path, op: &'static str) -> Result<T> {
        self.map_err(|e| Error::io(path, op, e.into()))
    }
}

/// The symbolic name of an errno (`EPERM`), so that a message can be searched for.
pub fn errno_name(e: &io::Error) -> String {
    let name = match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM",
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::EIO) => "EIO",
        Some(libc::EACCES) => "EACCES",
        Some(libc::EEXIST) => "EEXIST",
        Some(libc::EXDEV) => "EXDEV",
        Some(libc::ENOTDIR) => "ENOTDIR",
        Some(libc::EISDIR) => "EISDIR",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::ENOTTY) => "ENOTTY",
        Some(libc::ENOSPC) => "ENOSPC",
        Some(libc::EROFS) => "EROFS",
        Some(libc::EMLINK) => "EMLINK",
        Some(libc::EOPNOTSUPP) => "EOPNOTSUPP",
        Some(libc::ENOSYS) => "ENOSYS",
        Some(libc::EDQUOT) => "EDQUOT",
        Some(n) => return format!("errno {n}"),
        None => return "no errno".into(),
    };
    name.into()
}

/// `strerror` without Rust's " (os error N)" suffix, which means nothing to a user.
fn strerror(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
