//! What changed between two stacks of layers, or what a commit of an editable runtime would
//! record: a path-by-path comparison of manifests (and, for a runtime, of its scratch
//! directory's `lstat`s), never of file contents, so it costs the same on a tree of any size.
//!
//! Every path that differs is reported once, in name order, with one [`Change`]:
//! `A` added, `D` deleted, `T` its kind changed (a file became a directory, ...), `M` its
//! content, mode, link target or device numbers changed, and `m` only its time (reported
//! with `metadata` only). Below an added or deleted directory every path is reported too,
//! and so is everything below a path whose kind changed. Files are compared by digest and
//! size; a runtime's scratch file has no digest until it is committed, so it counts as
//! changed unless its size and time are the lower file's.

use crate::commit::walk::{self, What};
use crate::manifest::{Device, Node, NodeKind, Time};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How a path differs (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Deleted,
    Kind,
    Modified,
    Time,
}

impl Change {
    /// The letter `git diff --name-status` would print, and `m` for a time-only change.
    pub fn letter(self) -> char {
        match self {
            Change::Added => 'A',
            Change::Deleted => 'D',
            Change::Kind => 'T',
            Change::Modified => 'M',
            Change::Time => 'm',
        }
    }
}

/// One path of a tree as the comparison sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub mode: u32,
    pub mtime: Time,
    pub kind: ItemKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemKind {
    Dir(BTreeMap<Vec<u8>, Item>),
    /// `digest` is `None` for a runtime's scratch file, which has not been hashed.
    File {
        size: u64,
        digest: Option<crate::digest::Digest>,
    },
    Symlink(OsString),
    Fifo,
    Device(Device),
}

impl ItemKind {
    fn same_kind(&self, other: &ItemKind) -> bool {
        match (self, other) {
            (ItemKind::Device(a), ItemKind::Device(b)) => a.block == b.block,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Item {
    /// The tree a stack shows (see [`crate::checkout::merge`]).
    pub fn of_node(node: &Node) -> Item {
        let kind = match &node.kind {
            NodeKind::Dir { children, .. } => ItemKind::Dir(
                children
                    .iter()
                    .filter(|(_, c)| !matches!(c.kind, NodeKind::Whiteout))
                    .map(|(n, c)| (n.clone(), Item::of_node(c)))
                    .collect(),
            ),
            NodeKind::File { size, digest } => ItemKind::File {
                size: *size,
                digest: Some(*digest),
            },
            NodeKind::Symlink { target } => ItemKind::Symlink(target.clone()),
            NodeKind::Fifo => ItemKind::Fifo,
            NodeKind::Device(d) => ItemKind::Device(*d),
            NodeKind::Whiteout => unreachable!("whiteouts are filtered out above"),
        };
        Item {
            mode: node.mode,
            mtime: node.mtime,
            kind,
        }
    }

    fn children_mut(&mut self) -> Option<&mut BTreeMap<Vec<u8>, Item>> {
        match &mut self.kind {
            ItemKind::Dir(c) => Some(c),
            _ => None,
        }
    }
}

/// `base` with a runtime's scratch directory, as walked with its markers, put on top: what
/// the runtime shows, and what its commit would record over `base`.
pub fn with_scratch(mut base: Item, scratch: &walk::Walk) -> Item {
    // An overlayfs upper dir's renamed directories show their lower content, from where it
    // was (see crate::commit::overlay).
    let renamed = scratch.dirs.iter().any(|d| d.redirect.is_some());
    let original = renamed.then(|| base.clone());
    let lowers = match renamed {
        true => crate::commit::overlay::lower_paths(&scratch.dirs),
        false => Default::default(),
    };
    // Parents come before children in a walk, so each directory is there when it is reached.
    for dir in &scratch.dirs {
        let Some(at) = find_dir(&mut base, &dir.rel) else {
            continue;
        };
        if let (Some(original), Some(_)) = (&original, &dir.redirect) {
            let mut lower = Some(original);
            for part in &lowers[&dir.rel] {
                lower = match lower.map(|l| &l.kind) {
                    Some(ItemKind::Dir(c)) => c.get(part),
                    _ => None,
                };
            }
            if let Some(Item {
                kind: ItemKind::Dir(c),
                ..
            }) = lower
            {
                at.kind = ItemKind::Dir(c.clone());
            }
        }
        at.mode = dir.mode;
        at.mtime = dir.mtime;
        let children = at.children_mut().expect("find_dir gives directories");
        if dir.opaque {
            children.clear();
        }
        for found in &dir.entries {
            let kind = match &found.what {
                What::Whiteout => {
                    children.remove(&found.name);
                    continue;
                }
                What::Dir => match children.get(&found.name) {
                    Some(Item {
                        kind: ItemKind::Dir(_),
                        ..
                    }) => continue,
                    _ => ItemKind::Dir(BTreeMap::new()),
                },
                What::File { stamp, .. } => ItemKind::File {
                    size: stamp.size,
                    digest: None,
                },
                What::Lower(lower) => ItemKind::File {
                    size: lower.size,
                    digest: lower.digest,
                },
                What::Symlink(target) => ItemKind::Symlink(target.clone()),
                What::Fifo => ItemKind::Fifo,
                What::Device(d) => ItemKind::Device(*d),
            };
            let mode = match found.what {
                What::Symlink(_) => 0o777,
                _ => found.mode,
            };
            let item = Item {
                mode,
                mtime: found.mtime,
                kind,
            };
            children.insert(found.name.clone(), item);
        }
    }
    base
}

/// The directory at `rel` below `root`, if the tree has one there.
fn find_dir<'t>(root: &'t mut Item, rel: &Path) -> Option<&'t mut Item> {
    let mut at = root;
    for part in rel.components() {
        at = at.children_mut()?.get_mut(part.as_os_str().as_bytes())?;
    }
    at.children_mut().is_some().then_some(at)
}

/// Every path that differs between `a` and `b`, in name order (see the module docs).
pub fn diff(a: &Item, b: &Item, metadata: bool) -> Vec<(Change, PathBuf)> {
    let mut out = Vec::new();
    compare_dirs(a, b, Path::new(""), metadata, &mut out);
    out
}

fn compare_dirs(a: &Item, b: &Item, at: &Path, metadata: bool, out: &mut Vec<(Change, PathBuf)>) {
    let empty = BTreeMap::new();
    fn children<'i>(
        i: &'i Item,
        empty: &'i BTreeMap<Vec<u8>, Item>,
    ) -> &'i BTreeMap<Vec<u8>, Item> {
        match &i.kind {
            ItemKind::Dir(c) => c,
            _ => empty,
        }
    }
    let (ca, cb) = (children(a, &empty), children(b, &empty));
    let mut names: Vec<&Vec<u8>> = ca.keys().chain(cb.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let path = at.join(OsStr::from_bytes(name));
        match (ca.get(name), cb.get(name)) {
            (Some(x), None) => all_below(x, path, Change::Deleted, out),
            (None, Some(y)) => all_below(y, path, Change::Added, out),
            (Some(x), Some(y)) if !x.kind.same_kind(&y.kind) => {
                out.push((Change::Kind, path.clone()));
                below(x, &path, Change::Deleted, out);
                below(y, &path, Change::Added, out);
            }
            (Some(x), Some(y)) => {
                if let Some(change) = compare(x, y, metadata) {
                    out.push((change, path.clone()));
                }
                compare_dirs(x, y, &path, metadata, out);
            }
            (None, None) => unreachable!("every name is in one of the two"),
        }
    }
}

/// How two entries of the same kind differ, if they do.
fn compare(x: &Item, y: &Item, metadata: bool) -> Option<Change> {
    let content = match (&x.kind, &y.kind) {
        (
            ItemKind::File {
                size: s1,
                digest: d1,
            },
            ItemKind::File {
                size: s2,
                digest: d2,
            },
        ) => match (d1, d2) {
            (Some(d1), Some(d2)) => d1 != d2 || s1 != s2,
            // Not hashed yet: a scratch file of the same size and time is taken as the same.
            _ => s1 != s2 || x.mtime != y.mtime,
        },
        (ItemKind::Symlink(t1), ItemKind::Symlink(t2)) => t1 != t2,
        (ItemKind::Device(d1), ItemKind::Device(d2)) => d1 != d2,
        _ => false,
    };
    if content || x.mode != y.mode {
        Some(Change::Modified)
    } else if metadata && x.mtime != y.mtime {
        Some(Change::Time)
    } else {
        None
    }
}

/// `item` at `path` and everything below it, all with `change`.
fn all_below(item: &Item, path: PathBuf, change: Change, out: &mut Vec<(Change, PathBuf)>) {
    out.push((change, path.clone()));
    below(item, &path, change, out);
}

fn below(item: &Item, path: &Path, change: Change, out: &mut Vec<(Change, PathBuf)>) {
    if let ItemKind::Dir(children) = &item.kind {
        for (name, child) in children {
            all_below(child, path.join(OsStr::from_bytes(name)), change, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64, n: u8) -> Item {
        Item {
            mode: 0o644,
            mtime: Time::FIXED,
            kind: ItemKind::File {
                size,
                digest: Some(crate::digest::Digest::of_blob(&[n])),
            },
        }
    }

    fn dir(children: Vec<(&str, Item)>) -> Item {
        Item {
            mode: 0o755,
            mtime: Time::FIXED,
            kind: ItemKind::Dir(
                children
                    .into_iter()
                    .map(|(n, i)| (n.as_bytes().to_vec(), i))
                    .collect(),
            ),
        }
    }

    fn shown(changes: &[(Change, PathBuf)]) -> Vec<String> {
        changes
            .iter()
            .map(|(c, p)| format!("{} {}", c.letter(), p.display()))
            .collect()
    }

    #[test]
    fn every_kind_of_change_is_named_once_in_name_order() {
        let mut chmod = file(1, 1);
        chmod.mode = 0o755;
        let mut touched = file(1, 2);
        touched.mtime = Time { secs: 5, nanos: 0 };
        let a = dir(vec![
            ("same", file(1, 1)),
            ("edited", file(1, 1)),
            ("chmod", file(1, 1)),
            ("touched", file(1, 2)),
            ("gone", dir(vec![("inner", file(1, 3))])),
            ("became-dir", file(1, 4)),
        ]);
        let b = dir(vec![
            ("same", file(1, 1)),
            ("edited", file(1, 9)),
            ("chmod", chmod),
            ("touched", touched),
            ("new", file(2, 5)),
            ("became-dir", dir(vec![("x", file(1, 6))])),
        ]);
        assert_eq!(
            shown(&diff(&a, &b, false)),
            [
                "T became-dir",
                "A became-dir/x",
                "M chmod",
                "M edited",
                "D gone",
                "D gone/inner",
                "A new"
            ]
        );
        assert!(shown(&diff(&a, &b, true)).contains(&"m touched".to_string()));
        assert!(diff(&a, &a, true).is_empty());
    }
}
