//! Where a node's attributes come from.

use crate::view::{Data, View};
use rustix::fs::{FileType, Stat};

/// A node's attributes: a scratch entry's `lstat`, or a layer node (the read path's
/// attributes for it).
#[derive(Clone, Copy)]
// FreeBSD's `stat` is 224 bytes; an answer lives for one request, and a box per lookup would
// cost more than the copy.
#[allow(clippy::large_enum_variant)]
pub enum AttrSource {
    Upper(Stat),
    Lower(u32),
    /// Not known yet (a listing entry before its `lstat`).
    Missing,
}

impl std::fmt::Debug for AttrSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttrSource::Upper(st) => write!(f, "Upper(mode {:o})", st.st_mode),
            AttrSource::Lower(n) => write!(f, "Lower({n})"),
            AttrSource::Missing => write!(f, "Missing"),
        }
    }
}

impl AttrSource {
    pub fn file_type(&self, view: &View) -> Option<FileType> {
        match self {
            AttrSource::Upper(st) => Some(FileType::from_raw_mode(st.st_mode)),
            AttrSource::Lower(n) => view.node(*n).map(|node| match node.data {
                Data::Dir { .. } => FileType::Directory,
                Data::File { .. } => FileType::RegularFile,
                Data::Symlink { .. } => FileType::Symlink,
            }),
            AttrSource::Missing => None,
        }
    }

    pub fn is_dir(&self, view: &View) -> bool {
        self.file_type(view) == Some(FileType::Directory)
    }
}

/// A node and its attributes' source.
#[derive(Clone, Copy, Debug)]
pub struct Attr {
    pub node: u32,
    pub source: AttrSource,
}
