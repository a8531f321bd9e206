//! Directory listings of editable views: `.`, `..` and the merged entries of a directory
//! (see [`listing`]), as READDIR and READDIRPLUS replies.

use super::Served;
use super::ops::{attr as lower_attr, ino_of};
use super::respond::Respond;
use super::write::file_attr;
use crate::edit::{Attr, Child, Edit};
use crate::scratch::listing::{self, Merged};
use fuser::{Errno, FileAttr, FileType, Generation, INodeNo, ReplyDirectory, ReplyDirectoryPlus};
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

/// A page of an editable directory: `.` (offset 1), `..` (2), then the merged entries in
/// cookie order (see [`listing`]).
pub struct EditListing {
    pub(super) served: Arc<Served>,
    pub(super) edit: Arc<Edit>,
    pub(super) dir: u32,
    pub(super) parent: u32,
    pub(super) entries: Arc<Vec<Merged<Child>>>,
    pub(super) offset: u64,
    pub(super) ttl: Duration,
}

struct Item<'a> {
    ino: u64,
    next: u64,
    name: &'a OsStr,
    attr: Option<Attr>,
    /// The listing's entry (`None` for `.` and `..`).
    entry: Option<&'a Merged<Child>>,
}

impl EditListing {
    fn items(&self) -> impl Iterator<Item = Item<'_>> {
        let v = &self.served.view;
        let dots = [(self.dir, ".", 1u64), (self.parent, "..", 2)]
            .into_iter()
            .filter(|&(_, _, next)| next > self.offset)
            .map(|(n, name, next)| Item {
                ino: ino_of(v, n),
                next,
                name: OsStr::new(name),
                attr: None,
                entry: None,
            });
        let rest = listing::after(&self.entries, self.offset.max(2))
            .iter()
            .map(|e| Item {
                ino: ino_of(v, e.item.node),
                next: e.cookie,
                name: &e.name,
                attr: Some(Attr {
                    node: e.item.node,
                    source: e.item.source,
                }),
                entry: Some(e),
            });
        dots.chain(rest)
    }

    fn kind(&self, item: &Item<'_>) -> FileType {
        match &item.attr {
            None => FileType::Directory,
            Some(a) => file_attr(&self.served.view, a).kind,
        }
    }

    fn attr(&self, item: &Item<'_>) -> FileAttr {
        match &item.attr {
            Some(a) => file_attr(&self.served.view, a),
            None => {
                let n = if item.name == ".." {
                    self.parent
                } else {
                    self.dir
                };
                match self.edit.getattr(&self.served.view, n) {
                    Ok(a) => file_attr(&self.served.view, &a),
                    Err(_) => lower_attr(&self.served.view, crate::view::ROOT),
                }
            }
        }
    }
}

impl Respond<ReplyDirectory> for Result<EditListing, Errno> {
    fn respond(self, mut reply: ReplyDirectory) {
        match self {
            Ok(l) => {
                for item in l.items() {
                    if reply.add(INodeNo(item.ino), item.next, l.kind(&item), item.name) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }
}

impl Respond<ReplyDirectoryPlus> for Result<EditListing, Errno> {
    /// Every entry but `.` and `..` hands the kernel an inode: its node is counted before
    /// the entry goes in, and given back when the reply has no room for it.
    fn respond(self, mut reply: ReplyDirectoryPlus) {
        match self {
            Ok(l) => {
                for item in l.items() {
                    let (ino, attr, node) = match item.entry {
                        Some(entry) => {
                            let node = l.edit.listed_entry(&l.served.view, l.dir, entry);
                            let attr = file_attr(
                                &l.served.view,
                                &Attr {
                                    node,
                                    source: entry.item.source,
                                },
                            );
                            (attr.ino.0, attr, Some(node))
                        }
                        None => (item.ino, l.attr(&item), None),
                    };
                    let full = reply.add(
                        INodeNo(ino),
                        item.next,
                        item.name,
                        &l.ttl,
                        &attr,
                        Generation(0),
                    );
                    if full {
                        if let Some(node) = node {
                            l.edit.forget(node, 1);
                        }
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }
}
