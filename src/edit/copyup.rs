//! Copy-up: making scratch hold what a change needs. A layer file, symlink, FIFO or device
//! node is copied into scratch before its first change, along with the directories above it
//! (with the layers' modes and times); see [`crate::scratch`]'s copy-up for what a crash
//! leaves and how a blob is proven on the way.

use super::{AttrSource, Edit, ROOT, Result, UpperDir, errno, namespace};
use crate::digest::Digest;
use crate::manifest::Time;
use crate::scratch::{Attrs, Content, Copied};
use crate::store::checked;
use crate::view::{Data, View};
use rustix::fs::{AtFlags, FileType, Mode};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

impl Edit {
    /// Attributes for a scratch directory standing in for the layers' directory at `rel`.
    pub(super) fn lower_dir_attrs(&self, view: &View, rel: &Path) -> Attrs {
        let mut at = crate::view::ROOT;
        for part in rel.components() {
            match view.lookup(at, part.as_os_str().as_bytes()) {
                Some(c) => at = c,
                None => break,
            }
        }
        match view.node(at) {
            Some(node) => self.layer_attrs(node),
            None => Attrs {
                mode: 0o755,
                uid: self.uid,
                gid: self.gid,
                atime: Time::FIXED.to_system_time(),
                mtime: Time::FIXED.to_system_time(),
            },
        }
    }

    /// What a layer entry shows, and so what its copy-up gets: its mode and recorded time, and
    /// the view's owner.
    pub(super) fn layer_attrs(&self, node: &crate::view::Node) -> Attrs {
        Attrs {
            mode: node.mode,
            uid: self.uid,
            gid: self.gid,
            atime: node.mtime.to_system_time(),
            mtime: node.mtime.to_system_time(),
        }
    }

    /// The scratch directory of directory node `dir`, made (with the directories above it)
    /// where it is missing.
    pub(super) fn upper_dir_made(&self, view: &View, dir: u32) -> Result<Arc<UpperDir>> {
        if let Some(d) = self.upper_dir(dir)? {
            return Ok(d);
        }
        let path = self.path(dir)?;
        let fd = self
            .scratch
            .make_dirs(&path, |p| self.lower_dir_attrs(view, p))
            .map_err(errno)?;
        self.keep_dir(dir, fd, None)
    }

    /// Make sure node `n` is in scratch (copy it up if it is a layer file, symlink or
    /// directory); returns its scratch parent directory and name.
    pub(super) fn copy_up(&self, view: &View, n: u32) -> Result<(Arc<UpperDir>, OsString)> {
        self.copy_up_as(view, n, true)
    }

    /// [`Edit::copy_up`]; without `content` a layer file comes up empty (it is about to be
    /// truncated: `>` over a big file copies nothing).
    pub(super) fn copy_up_as(
        &self,
        view: &View,
        n: u32,
        content: bool,
    ) -> Result<(Arc<UpperDir>, OsString)> {
        let (parent, name) = self.parent_and_name(n)?;
        if n == ROOT {
            return Err(Errno::INVAL);
        }
        let source = self.attr_source(view, n)?;
        let pdir = self.upper_dir_made(view, parent)?;
        let AttrSource::Lower(l) = source else {
            return Ok((pdir, name));
        };
        let node = view.node(l).ok_or(Errno::STALE)?;
        let attrs = self.layer_attrs(node);
        match &node.data {
            Data::File { digest, .. } => {
                let digest = digest.as_ref().filter(|_| content);
                let ppath = self.path(parent)?;
                self.copy_up_blob(view, digest, &pdir, &ppath, &name, &attrs)?;
                // Its blob is no longer its content once the copy changes.
                self.files.drop_cached(n);
            }
            Data::Symlink { target } => {
                crate::scratch::keeping_times(&pdir, || {
                    match rustix::fs::symlinkat(OsStr::from_bytes(target), &pdir, &name) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    let _ = rustix::fs::chownat(
                        &pdir,
                        &name,
                        Some(rustix::fs::Uid::from_raw(self.uid)),
                        Some(rustix::fs::Gid::from_raw(self.gid)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    );
                    Ok(())
                })
                .map_err(errno)?;
            }
            Data::Dir { .. } => {
                self.upper_dir_made(view, n)?;
            }
            Data::Fifo | Data::Device(_) => {
                crate::scratch::keeping_times(&pdir, || {
                    copy_up_special(&pdir, &name, node, &attrs).map_err(io::Error::from)
                })
                .map_err(errno)?;
            }
        }
        self.changed();
        Ok((pdir, name))
    }

    /// Copy a layer file with blob `digest` (`None`: empty) up to `name` in the scratch dir
    /// `dir` (`dir_rel` beneath the root). Not hashed first: the copy proves an unproven blob
    /// on the way (see [`crate::scratch`]'s copy-up), so a blob is read once; a damaged one
    /// is `EIO`.
    fn copy_up_blob(
        &self,
        view: &View,
        digest: Option<&Digest>,
        dir: &File,
        dir_rel: &Path,
        name: &OsStr,
        attrs: &Attrs,
    ) -> Result<()> {
        let blob = match digest {
            Some(d) => {
                let path = view.blob_path(d);
                let (file, proven) = checked::open_for_copy(&path).map_err(errno)?;
                Some((file, (!proven).then_some(d), path))
            }
            None => None,
        };
        let content = blob.as_ref().map(|(file, unproven, _)| Content {
            file,
            unproven: *unproven,
        });
        let copied = self
            .scratch
            .copy_up_content(dir, dir_rel, name, content, attrs);
        match (copied, &blob) {
            (Ok(Copied::Made { proven: true }), Some((file, ..))) => checked::remember_sound(file),
            (Err(e), Some((.., path))) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(errno(checked::damaged(path)));
            }
            (copied, _) => {
                copied.map_err(errno)?;
            }
        }
        Ok(())
    }
}

/// A layer's FIFO or device node made again in scratch (a chmod or link of it copies it up),
/// with its mode, time and the view's owner.
fn copy_up_special(
    dir: &File,
    name: &OsStr,
    node: &crate::view::Node,
    attrs: &Attrs,
) -> Result<()> {
    let (kind, rdev) = match node.data {
        Data::Device(d) if d.block => (FileType::BlockDevice, d.rdev()),
        Data::Device(d) => (FileType::CharacterDevice, d.rdev()),
        _ => (FileType::Fifo, 0),
    };
    let mode = Mode::from_raw_mode(node.mode as _);
    match namespace::make_node(dir, name, kind, mode, rdev) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e),
    }
    let _ = rustix::fs::chownat(
        dir,
        name,
        Some(rustix::fs::Uid::from_raw(attrs.uid)),
        Some(rustix::fs::Gid::from_raw(attrs.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    );
    rustix::fs::chmodat(dir, name, mode, AtFlags::empty())?;
    let times = rustix::fs::Timestamps {
        last_access: node.mtime.to_timespec(),
        last_modification: node.mtime.to_timespec(),
    };
    rustix::fs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)
}
