//! The open files of an editable view, by node.
//!
//! The mount answers the kernel's OPEN with `ENOSYS` (see `op_open` in [`crate::fuse`]), so
//! reads, writes and attribute changes of a regular file arrive naming the inode, not a
//! handle. The descriptors they go through are kept here, per node:
//!
//! - **open**: a scratch file or a layer blob of a node that still has a name. A cache,
//!   bounded: one it dropped is opened again by path.
//! - **orphans**: nodes whose last name was removed or renamed over. The kernel may still
//!   have them open, and this is their only way to their data, so they stay until the
//!   kernel forgets the inode (FORGET comes after the last close, once for each inode).

use crate::edit::AttrSource;
use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex};

/// Descriptors kept for named nodes at once.
const MAX_OPEN: usize = 1024;

/// A node's descriptor.
#[derive(Clone)]
pub enum Open {
    /// A scratch file: read-write, or read-only where the daemon could not open it for writing.
    Scratch { file: Arc<File>, writable: bool },
    /// The store blob of layer node `lower`, for reading only (`file` is `None` for an empty
    /// file, which has no blob).
    Layer { lower: u32, file: Option<Arc<File>> },
}

impl Open {
    /// A scratch file open read-write.
    pub fn scratch(file: Arc<File>) -> Open {
        Open::Scratch {
            file,
            writable: true,
        }
    }

    /// The writable scratch file, if this is one.
    pub fn writable(&self) -> Option<Arc<File>> {
        match self {
            Open::Scratch {
                file,
                writable: true,
            } => Some(file.clone()),
            _ => None,
        }
    }
}

#[derive(Default)]
pub struct Files {
    inner: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    open: HashMap<u32, Open>,
    orphans: HashMap<u32, Open>,
}

impl Files {
    /// Node `n`'s descriptor: an orphan's, else the cached one.
    pub fn get(&self, n: u32) -> Option<Open> {
        let t = self.inner.lock().unwrap();
        t.orphans.get(&n).or_else(|| t.open.get(&n)).cloned()
    }

    /// Keep `open` for named node `n` (an orphan keeps the one it has).
    pub fn keep(&self, n: u32, open: Open) {
        let mut t = self.inner.lock().unwrap();
        if let Some(orphan) = t.orphans.get_mut(&n) {
            *orphan = open;
            return;
        }
        if t.open.len() >= MAX_OPEN {
            t.open.clear();
        }
        t.open.insert(n, open);
    }

    /// Node `n`'s content moved (a copy-up): its cached layer blob must not be read again.
    pub fn drop_cached(&self, n: u32) {
        self.inner.lock().unwrap().open.remove(&n);
    }

    /// Node `n` lost its last name; `open` (taken before the name went) is now its only way
    /// to its data.
    pub fn orphan(&self, n: u32, open: Open) {
        let mut t = self.inner.lock().unwrap();
        t.open.remove(&n);
        t.orphans.insert(n, open);
    }

    pub fn is_orphan(&self, n: u32) -> bool {
        self.inner.lock().unwrap().orphans.contains_key(&n)
    }

    /// An orphan's attributes: its scratch file's, or its layer node's.
    pub fn orphan_source(&self, n: u32) -> Option<rustix::io::Result<AttrSource>> {
        let open = self.inner.lock().unwrap().orphans.get(&n).cloned()?;
        Some(match open {
            Open::Scratch { file, .. } => rustix::fs::fstat(file.as_ref()).map(AttrSource::Upper),
            Open::Layer { lower, .. } => Ok(AttrSource::Lower(lower)),
        })
    }

    /// The kernel forgot inode `n`: nothing can reach its descriptor any more.
    pub fn forget(&self, n: u32) {
        let mut t = self.inner.lock().unwrap();
        t.open.remove(&n);
        t.orphans.remove(&n);
    }
}
