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
use crate::manifest::{Device, Kind, Manifest, Node, NodeKind, Time};
use std::cmp::Ordering;
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

/// What the comparison reads of a tree: each entry's attributes, and a directory's entries in
/// name order without whiteouts. A merged stack is an [`Item`] tree; a single layer is read
/// straight from its [`Manifest`], whose directories are already sorted, so comparing two
/// layers builds nothing.
pub trait Tree {
    type Node<'t>: Copy
    where
        Self: 't;
    fn root(&self) -> Self::Node<'_>;
    fn shown<'t>(&'t self, node: Self::Node<'t>) -> Shown<'t>;
    fn children<'t>(
        &'t self,
        dir: Self::Node<'t>,
    ) -> impl Iterator<Item = (&'t [u8], Self::Node<'t>)>;
}

/// One entry as the comparison sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shown<'t> {
    pub mode: u32,
    pub mtime: Time,
    pub kind: ShownKind<'t>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShownKind<'t> {
    Dir,
    File {
        size: u64,
        digest: Option<crate::digest::Digest>,
    },
    Symlink(&'t OsStr),
    Fifo,
    Device(Device),
}

impl ShownKind<'_> {
    fn same_kind(&self, other: &ShownKind) -> bool {
        match (self, other) {
            (ShownKind::Device(a), ShownKind::Device(b)) => a.block == b.block,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Tree for Item {
    type Node<'t> = &'t Item;

    fn root(&self) -> &Item {
        self
    }

    fn shown<'t>(&'t self, item: &'t Item) -> Shown<'t> {
        let kind = match &item.kind {
            ItemKind::Dir(_) => ShownKind::Dir,
            ItemKind::File { size, digest } => ShownKind::File {
                size: *size,
                digest: *digest,
            },
            ItemKind::Symlink(target) => ShownKind::Symlink(target),
            ItemKind::Fifo => ShownKind::Fifo,
            ItemKind::Device(d) => ShownKind::Device(*d),
        };
        Shown {
            mode: item.mode,
            mtime: item.mtime,
            kind,
        }
    }

    fn children<'t>(&'t self, dir: &'t Item) -> impl Iterator<Item = (&'t [u8], &'t Item)> {
        let children = match &dir.kind {
            ItemKind::Dir(c) => Some(c),
            _ => None,
        };
        children
            .into_iter()
            .flatten()
            .map(|(name, item)| (name.as_slice(), item))
    }
}

impl Tree for Manifest {
    type Node<'t> = u32;

    fn root(&self) -> u32 {
        crate::manifest::ROOT
    }

    fn shown(&self, index: u32) -> Shown<'_> {
        let e = self.entry(index);
        let kind = match e.kind {
            Kind::Dir { .. } => ShownKind::Dir,
            Kind::File { size, digest } => ShownKind::File {
                size,
                digest: Some(digest),
            },
            Kind::Symlink { .. } => ShownKind::Symlink(self.target(index).unwrap_or_default()),
            Kind::Fifo => ShownKind::Fifo,
            Kind::Device(d) => ShownKind::Device(d),
            // A layer seen alone shows nothing of its whiteouts; children() skips them.
            Kind::Whiteout => unreachable!("children() leaves whiteouts out"),
        };
        Shown {
            mode: e.mode,
            mtime: e.mtime,
            kind,
        }
    }

    fn children(&self, dir: u32) -> impl Iterator<Item = (&[u8], u32)> {
        Manifest::children(self, dir)
            .filter(|&i| !matches!(self.entry(i).kind, Kind::Whiteout))
            .map(|i| (self.name(i).as_bytes(), i))
    }
}

/// A stack as [`diff`] reads it: one layer as it is stored, or several merged.
pub enum Stack {
    Layer(Manifest),
    Merged(Item),
}

impl Stack {
    /// The tree the layers (bottom first) show.
    pub fn of(mut layers: Vec<Manifest>) -> Stack {
        match layers.len() {
            1 => Stack::Layer(layers.remove(0)),
            _ => Stack::Merged(Item::of_node(&crate::manifest::merge(&layers))),
        }
    }
}

#[derive(Clone, Copy)]
pub enum StackNode<'t> {
    Layer(u32),
    Merged(&'t Item),
}

impl Tree for Stack {
    type Node<'t> = StackNode<'t>;

    fn root(&self) -> StackNode<'_> {
        match self {
            Stack::Layer(m) => StackNode::Layer(m.root()),
            Stack::Merged(i) => StackNode::Merged(i),
        }
    }

    fn shown<'t>(&'t self, node: StackNode<'t>) -> Shown<'t> {
        match (self, node) {
            (Stack::Layer(m), StackNode::Layer(n)) => m.shown(n),
            (Stack::Merged(i), StackNode::Merged(n)) => i.shown(n),
            _ => unreachable!("a stack's nodes are its own"),
        }
    }

    fn children<'t>(
        &'t self,
        dir: StackNode<'t>,
    ) -> impl Iterator<Item = (&'t [u8], StackNode<'t>)> {
        let (layer, merged) = match (self, dir) {
            (Stack::Layer(m), StackNode::Layer(n)) => (Some(Tree::children(m, n)), None),
            (Stack::Merged(i), StackNode::Merged(n)) => (None, Some(Tree::children(i, n))),
            _ => unreachable!("a stack's nodes are its own"),
        };
        let layer = layer.into_iter().flatten();
        let merged = merged.into_iter().flatten();
        layer
            .map(|(name, n)| (name, StackNode::Layer(n)))
            .chain(merged.map(|(name, n)| (name, StackNode::Merged(n))))
    }
}

/// Every path that differs between `a` and `b`, in name order (see the module docs).
pub fn diff(a: &impl Tree, b: &impl Tree, metadata: bool) -> Vec<(Change, PathBuf)> {
    let mut cmp = Compare {
        a,
        b,
        metadata,
        at: Vec::new(),
        out: Vec::new(),
    };
    cmp.dirs(a.root(), b.root());
    cmp.out
}

/// A merge-join of two trees. `at` is the path being compared, grown and cut back as the walk
/// goes down and up, so an entry that did not change costs no allocation.
struct Compare<'c, A, B> {
    a: &'c A,
    b: &'c B,
    metadata: bool,
    at: Vec<u8>,
    out: Vec<(Change, PathBuf)>,
}

impl<'c, A: Tree, B: Tree> Compare<'c, A, B> {
    /// Walk two directories' sorted entries side by side.
    fn dirs(&mut self, x: A::Node<'c>, y: B::Node<'c>) {
        let (a, b) = (self.a, self.b);
        let mut xs = a.children(x).peekable();
        let mut ys = b.children(y).peekable();
        loop {
            let order = match (xs.peek(), ys.peek()) {
                (None, None) => return,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((nx, _)), Some((ny, _))) => nx.cmp(ny),
            };
            let parent = self.at.len();
            match order {
                Ordering::Less => {
                    let (name, x) = xs.next().expect("peeked");
                    self.enter(name);
                    self.all_below(a, x, Change::Deleted);
                }
                Ordering::Greater => {
                    let (name, y) = ys.next().expect("peeked");
                    self.enter(name);
                    self.all_below(b, y, Change::Added);
                }
                Ordering::Equal => {
                    let ((name, x), (_, y)) =
                        (xs.next().expect("peeked"), ys.next().expect("peeked"));
                    self.enter(name);
                    self.entry(x, y);
                }
            }
            self.at.truncate(parent);
        }
    }

    fn entry(&mut self, x: A::Node<'c>, y: B::Node<'c>) {
        let (sx, sy) = (self.a.shown(x), self.b.shown(y));
        if !sx.kind.same_kind(&sy.kind) {
            self.record(Change::Kind);
            self.below(self.a, x, Change::Deleted);
            self.below(self.b, y, Change::Added);
            return;
        }
        if let Some(change) = compare(&sx, &sy, self.metadata) {
            self.record(change);
        }
        if sx.kind == ShownKind::Dir {
            self.dirs(x, y);
        }
    }

    /// `node`, at the current path, and everything below it, all with `change`.
    fn all_below<'t, T: Tree>(&mut self, tree: &'t T, node: T::Node<'t>, change: Change) {
        self.record(change);
        self.below(tree, node, change);
    }

    fn below<'t, T: Tree>(&mut self, tree: &'t T, node: T::Node<'t>, change: Change) {
        for (name, child) in tree.children(node) {
            let parent = self.at.len();
            self.enter(name);
            self.all_below(tree, child, change);
            self.at.truncate(parent);
        }
    }

    fn enter(&mut self, name: &[u8]) {
        if !self.at.is_empty() {
            self.at.push(b'/');
        }
        self.at.extend_from_slice(name);
    }

    fn record(&mut self, change: Change) {
        let path = OsStr::from_bytes(&self.at).to_owned();
        self.out.push((change, PathBuf::from(path)));
    }
}

/// How two entries of the same kind differ, if they do.
fn compare(x: &Shown, y: &Shown, metadata: bool) -> Option<Change> {
    let content = match (&x.kind, &y.kind) {
        (
            ShownKind::File {
                size: s1,
                digest: d1,
            },
            ShownKind::File {
                size: s2,
                digest: d2,
            },
        ) => match (d1, d2) {
            (Some(d1), Some(d2)) => d1 != d2 || s1 != s2,
            // Not hashed yet: a scratch file of the same size and time is taken as the same.
            _ => s1 != s2 || x.mtime != y.mtime,
        },
        (ShownKind::Symlink(t1), ShownKind::Symlink(t2)) => t1 != t2,
        (ShownKind::Device(d1), ShownKind::Device(d2)) => d1 != d2,
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

    /// A small deterministic generator, so the trees are the same on every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// A random layer over a few shared names, so two of them overlap, with every kind of
    /// entry, whiteouts and opaque directories among them.
    fn random_dir(rng: &mut Rng, depth: u32) -> Node {
        let mut dir = Node::dir(0o755 - 0o20 * rng.below(2) as u32);
        if let NodeKind::Dir { opaque, children } = &mut dir.kind {
            *opaque = rng.below(4) == 0;
            for name in ["a", "b", "c", "d", "e"] {
                let kind = match rng.below(9) {
                    0 | 1 => continue,
                    2 if depth < 3 => {
                        children.insert(name.into(), random_dir(rng, depth + 1));
                        continue;
                    }
                    3 => NodeKind::Symlink {
                        target: ["x", "y"][rng.below(2) as usize].into(),
                    },
                    4 => NodeKind::Fifo,
                    5 => NodeKind::Device(Device {
                        block: rng.below(2) == 0,
                        major: 1,
                        minor: rng.below(2) as u32,
                    }),
                    6 => NodeKind::Whiteout,
                    _ => NodeKind::File {
                        size: rng.below(2),
                        digest: crate::digest::Digest::of_blob(&[rng.below(2) as u8]),
                    },
                };
                let node = Node {
                    mode: 0o644 | (rng.below(2) as u32 * 0o100),
                    mtime: Time {
                        secs: rng.below(2) as i64,
                        nanos: 0,
                    },
                    kind,
                };
                children.insert(name.into(), node);
            }
        }
        dir
    }

    #[test]
    fn two_layers_compare_alike_read_as_stored_and_merged() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut differed = 0;
        for _ in 0..2000 {
            let a = Manifest::from_tree(&random_dir(&mut rng, 0));
            let b = Manifest::from_tree(&random_dir(&mut rng, 0));
            let merged = |m: &Manifest| Item::of_node(&crate::manifest::merge([m]));
            for metadata in [false, true] {
                let stored = diff(&a, &b, metadata);
                assert_eq!(stored, diff(&merged(&a), &merged(&b), metadata));
                assert_eq!(
                    stored,
                    diff(&Stack::of(vec![a.clone()]), &merged(&b), metadata)
                );
                differed += !stored.is_empty() as usize;
            }
        }
        assert!(differed > 1000, "the generator makes differing pairs");
    }
}
