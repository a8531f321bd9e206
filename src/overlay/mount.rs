//! Making the overlay of a stack with the new mount API.
//!
//! Each layer's meta image is mounted first ([`Lower`]: `fsopen("erofs")` on the image file,
//! read-only and `nodev`, attached nowhere). Then `fsopen("overlay")`, one `fsconfig` key
//! per layer (`lowerdir+` with the root of its image's mount, top first; `datadir+` for
//! `ROOT/blobs`), `upperdir`/`workdir` when editable, `metacopy=on` and `redirect_dir=on`
//! (what the meta images and a commit of the upper dir rely on), `volatile` when asked; then
//! `fsmount` and `move_mount`. Each layer is its own key, so the 4 KiB limit of a `mount(2)`
//! option string never caps the number of layers. The kernel explains a refusal in the log
//! of the configuration descriptor; that text goes into the error.

use super::xattr;
use crate::error::{Error, ErrorKind, IoContext, Result};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, fsconfig_create, fsconfig_set_fd,
    fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
};
use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A layer's meta image, mounted read-only in no mount table: what an overlay stacks. The
/// overlay holds its own reference; this one only has to live until the overlay is made.
pub struct Lower {
    image: PathBuf,
    root: File,
    /// The mount itself: closing it before the overlay is made unmounts it, and the overlay
    /// then cannot take the layer ("failed to clone lowerpath").
    _mount: OwnedFd,
}

impl Lower {
    /// Mount the EROFS image at `image`.
    pub fn mount(image: &Path) -> Result<Lower> {
        let fs = fsopen("erofs", FsOpenFlags::FSOPEN_CLOEXEC)
            .map_err(|e| Error::io(image, "cannot open EROFS", e.into()))?;
        let fail = |what: &str, e| refused(&fs, "EROFS", what, image, e);
        fsconfig_set_string(&fs, "source", image).map_err(|e| fail("the image", e))?;
        fsconfig_create(&fs).map_err(|e| match e {
            // File-backed EROFS reads through the page cache of a disk file system only;
            // probe_store names the file systems known to lack it before anything is mounted.
            rustix::io::Errno::NOTBLK => Error::new(
                image,
                ErrorKind::Invalid(
                    "EROFS cannot mount an image kept on this file system: keep the store on a \
                     disk file system, or use --backend fuse"
                        .into(),
                ),
            ),
            e => fail("the image", e),
        })?;
        let attrs = MountAttrFlags::MOUNT_ATTR_RDONLY
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOSUID;
        let mount =
            fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs).map_err(|e| fail("the mount", e))?;
        let root = rustix::fs::openat(
            &mount,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .at(image, "cannot open the image's root")?;
        Ok(Lower {
            image: image.to_owned(),
            root: root.into(),
            _mount: mount,
        })
    }

    /// Whether the layer's root is opaque: it hides every layer below. Overlayfs ignores the
    /// mark on a layer's root; the stack leaves out what is below it instead.
    pub fn root_opaque(&self) -> Result<bool> {
        let mark = xattr::get(&self.root, OsStr::new("."), xattr::OPAQUE)
            .at(&self.image, "cannot read xattr")?;
        Ok(mark.is_some_and(|v| v == b"y"))
    }
}

/// What to stack.
pub struct Stack {
    /// Meta images, top first.
    pub lowers: Vec<Lower>,
    /// `ROOT/blobs`, the data-only layer.
    pub data: PathBuf,
    /// Editable: the upper and work dirs (same file system).
    pub upper: Option<(PathBuf, PathBuf)>,
    /// Skip every sync (overlayfs `volatile`); a crash of the machine loses the upper dir.
    pub volatile: bool,
    /// The mount source, `zmount:ID` ([`crate::mounted::new_tag`]): what finds this overlay
    /// in any mount table after the process that made it is gone.
    pub tag: String,
}

/// A configured, not yet attached overlay.
pub struct Detached(OwnedFd);

/// Configure and create the overlay of `stack`, not attached anywhere yet.
pub fn make(stack: &Stack) -> Result<Detached> {
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| Error::io("overlay", "cannot open overlayfs", e.into()))?;
    let fail = |what: &str, path: &Path, e| refused(&fs, "overlayfs", what, path, e);
    let set = |key: &str, value: &Path| {
        fsconfig_set_string(&fs, key, value).map_err(|e| fail(key, value, e))
    };
    set("source", Path::new(&stack.tag))?;
    for lower in &stack.lowers {
        fsconfig_set_fd(&fs, "lowerdir+", lower.root.as_fd())
            .map_err(|e| fail("lowerdir+", &lower.image, e))?;
    }
    set("datadir+", &stack.data)?;
    if let Some((upper, work)) = &stack.upper {
        set("upperdir", upper)?;
        set("workdir", work)?;
    }
    set("metacopy", Path::new("on"))?;
    set("redirect_dir", Path::new("on"))?;
    if stack.volatile {
        fsconfig_set_flag(&fs, "volatile")
            .map_err(|e| fail("volatile", Path::new("volatile"), e))?;
    }
    let here = stack
        .lowers
        .first()
        .map_or(PathBuf::new(), |l| l.image.clone());
    fsconfig_create(&fs).map_err(|e| fail("the stack", &here, e))?;
    let mut attrs = MountAttrFlags::MOUNT_ATTR_NODEV | MountAttrFlags::MOUNT_ATTR_NOSUID;
    if stack.upper.is_none() {
        attrs |= MountAttrFlags::MOUNT_ATTR_RDONLY;
    }
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
        .map_err(|e| fail("the mount", &here, e))?;
    Ok(Detached(mnt))
}

impl Detached {
    /// Attach the overlay at `mountpoint` (in the caller's mount namespace).
    pub fn attach(self, mountpoint: &Path) -> Result<()> {
        move_mount(
            self.0.as_fd(),
            "",
            rustix::fs::CWD,
            mountpoint,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| Error::io(mountpoint, "cannot attach the overlay", e.into()))
    }
}

/// The error for a refused step of configuring `fs` (`fsname`): the kernel's explanation
/// from the descriptor's log, or the errno's.
fn refused(fs: &OwnedFd, fsname: &str, what: &str, path: &Path, e: rustix::io::Errno) -> Error {
    let log = kernel_log(fs);
    let why = match log.is_empty() {
        true => std::io::Error::from(e).to_string(),
        false => log,
    };
    Error::new(
        path,
        ErrorKind::Invalid(format!("{fsname} refused {what}: {why}")),
    )
}

/// The messages the kernel left on a configuration descriptor, one line.
fn kernel_log(fs: &OwnedFd) -> String {
    let mut lines = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = rustix::io::read(fs, &mut buf) {
        if n == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf[..n]);
        // "e overlay: ..." (error), "w ..." (warning), "i ..." (info).
        lines.push(line.get(2..).unwrap_or(&line).trim().to_string());
    }
    lines.join("; ")
}

/// Whether this process can use the kernel backend: `Ok(())`, or why not (for `auto` to fall
/// back and for `zmount status` and `--verbose` to say). Probed once per process.
pub fn probe() -> std::result::Result<(), String> {
    static PROBED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    PROBED.get_or_init(probe_now).clone()
}

/// Why the meta images of the store at `root` cannot be mounted, if a look at its file system
/// says so: file-backed EROFS reads an image through the page cache of the file system that
/// holds it, which tmpfs, ramfs and overlayfs (a container's root) do not offer, and the mount
/// fails with ENOTBLK. A store not made yet is judged by the directory it will be made in.
pub fn probe_store(root: &Path) -> std::result::Result<(), String> {
    const TMPFS: u32 = 0x0102_1994;
    const RAMFS: u32 = 0x8584_58f6;
    const OVERLAYFS: u32 = 0x794c_7630;
    let Some(fs) = root.ancestors().find_map(|d| rustix::fs::statfs(d).ok()) else {
        return Ok(());
    };
    let name = match fs.f_type as u32 {
        TMPFS => "tmpfs",
        RAMFS => "ramfs",
        OVERLAYFS => "overlayfs",
        _ => return Ok(()),
    };
    Err(format!(
        "the store is on {name}, where EROFS cannot mount its meta images"
    ))
}

fn probe_now() -> std::result::Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("not root (overlayfs with metacopy needs CAP_SYS_ADMIN)".into());
    }
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| match e {
        rustix::io::Errno::NODEV => "the kernel has no overlayfs".to_string(),
        rustix::io::Errno::NOSYS => "the kernel has no fsopen (needs Linux 5.2+)".to_string(),
        e => format!("cannot open overlayfs: {}", std::io::Error::from(e)),
    })?;
    let root = File::open("/").map_err(|e| format!("cannot open /: {e}"))?;
    fsconfig_set_fd(&fs, "lowerdir+", root.as_fd()).map_err(|_| {
        "the kernel's overlayfs takes no layer as a descriptor (needs Linux 6.15+)".to_string()
    })?;
    fsconfig_set_string(&fs, "datadir+", "/").map_err(|_| {
        "the kernel's overlayfs has no data-only lower layers through fsconfig \
         (needs Linux 6.8+)"
            .to_string()
    })?;
    fsopen("erofs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| match e {
        rustix::io::Errno::NODEV => "the kernel has no EROFS (needs CONFIG_EROFS_FS)".to_string(),
        e => format!("cannot open EROFS: {}", std::io::Error::from(e)),
    })?;
    Ok(())
}
