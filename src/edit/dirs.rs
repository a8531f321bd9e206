//! Listing an editable view's directories: open handles, and the merged entries of scratch
//! over the layers, cached per handle until the view changes.

use super::{AttrSource, Child, Edit, Result, errno, linked, lstat};
use crate::scratch::listing::{self, Merged, Upper};
use crate::view::View;
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// A directory listing being read: the merged entries as of `generation`.
pub(super) struct Listing {
    dir: u32,
    generation: u64,
    entries: Arc<Vec<Merged<Child>>>,
}

impl Edit {
    pub fn opendir(&self, view: &View, dir: u32) -> Result<u64> {
        if !self.attr_source(view, dir)?.is_dir(view) {
            return Err(Errno::NOTDIR);
        }
        let fh = self.next_fh.fetch_add(1, Relaxed);
        let listing = Listing {
            dir,
            generation: u64::MAX,
            entries: Arc::default(),
        };
        self.dirs.lock().unwrap().insert(fh, listing);
        Ok(fh)
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.lock().unwrap().remove(&fh);
    }

    /// The entries of an open directory after `offset` (see [`listing`] on offsets), and the
    /// directory's node. Re-read when the view changed since the last page.
    pub fn readdir(
        &self,
        view: &View,
        fh: u64,
        offset: u64,
    ) -> Result<(u32, Arc<Vec<Merged<Child>>>)> {
        let (dir, cached) = {
            let dirs = self.dirs.lock().unwrap();
            let l = dirs.get(&fh).ok_or(Errno::BADF)?;
            let now = self.generation.load(Relaxed);
            let fresh = offset > 0 && l.generation == now;
            (l.dir, fresh.then(|| l.entries.clone()))
        };
        if let Some(entries) = cached {
            return Ok((dir, entries));
        }
        let generation = self.generation.load(Relaxed);
        let entries = Arc::new(self.merged(view, dir)?);
        if let Some(l) = self.dirs.lock().unwrap().get_mut(&fh) {
            l.generation = generation;
            l.entries = entries.clone();
        }
        Ok((dir, entries))
    }

    /// Scratch over layers for directory `dir`, every entry a node.
    pub(super) fn merged(&self, view: &View, dir: u32) -> Result<Vec<Merged<Child>>> {
        let upper_dir = self.upper_dir(dir)?;
        let upper = match &upper_dir {
            Some(d) => Upper::read(d).map_err(errno)?,
            None => Upper::default(),
        };
        let dir_lower = self.lower(dir).filter(|&l| view.children(l).is_some());
        let lower: Vec<(OsString, Child)> = match dir_lower.and_then(|l| view.children(l)) {
            Some((first, count)) => (first..first + count)
                .map(|c| {
                    let name = OsStr::from_bytes(&view.node(c).expect("child").name).to_owned();
                    (
                        name,
                        Child {
                            node: 0,
                            source: AttrSource::Lower(c),
                        },
                    )
                })
                .collect(),
            None => Vec::new(),
        };
        let mut merged = listing::merge(lower, &upper, |_, _| Child {
            node: 0,
            source: AttrSource::Missing,
        });
        let mut nodes = self.nodes.write().unwrap();
        merged.retain_mut(|e| {
            if let AttrSource::Missing = e.item.source {
                let Some(up) = &upper_dir else { return false };
                // Gone between the listing and the stat: leave it out.
                let Ok(Some(st)) = lstat(up, &e.name) else {
                    return false;
                };
                let lower = self
                    .lower_under_upper(
                        view,
                        up,
                        &e.name,
                        &st,
                        dir_lower.and_then(|l| view.lookup(l, e.name.as_bytes())),
                    )
                    .unwrap_or(None);
                e.item = Child {
                    node: match linked(&st) {
                        Some(inode) => nodes.insert_linked(dir, &e.name, inode, false),
                        None => nodes.insert(dir, &e.name, lower, false),
                    },
                    source: AttrSource::Upper(st),
                };
            } else if let AttrSource::Lower(c) = e.item.source {
                e.item.node = nodes.insert(dir, &e.name, Some(c), false);
            }
            true
        });
        Ok(merged)
    }
}
