//! A view: a stack of layers merged into one read-only tree (bottom first, later layers win,
//! whiteouts hide lower paths, opaque directories hide everything below them).
//!
//! The merge happens once, when the view is built; the result is a flat table of nodes in
//! breadth-first order, so the children of every directory are one contiguous, name-sorted
//! run: `lookup` is a binary search and a `readdir` offset is an index that never moves.
//! Node numbers depend only on the merged tree, so the same stack always gets the same inode
//! numbers and attributes (make and rsync see a stable tree).
//!
//! A view knows nothing of editing: [`crate::edit`] puts a scratch dir on top of one, and the
//! FUSE mount pairs the two ([`crate::fuse::Served`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

pub use crate::digest::Digest;
use crate::manifest::{self, Manifest};
use std::os::unix::ffi::OsStrExt;

/// Where a view finds the content of a file: the store's blob path for a digest.
pub type Blobs = Arc<dyn Fn(&Digest) -> PathBuf + Send + Sync>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    Device { block: bool },
}

/// One node of the merged tree.
#[derive(Debug)]
pub struct Node {
    pub name: Box<[u8]>,
    pub parent: u32,
    pub mode: u32,
    /// The modification time its layer recorded (also shown as its access and change time).
    pub mtime: manifest::Time,
    pub data: Data,
}

#[derive(Debug)]
pub enum Data {
    /// Children are `nodes[first .. first + count]`, sorted by name.
    Dir {
        first: u32,
        count: u32,
        subdirs: u32,
    },
    File {
        size: u64,
        digest: Option<Digest>,
    },
    Symlink {
        target: Box<[u8]>,
    },
    /// The kernel does a FIFO's and a device's I/O itself: a view only names them.
    Fifo,
    Device(manifest::Device),
}

impl Node {
    pub fn kind(&self) -> Kind {
        match self.data {
            Data::Dir { .. } => Kind::Dir,
            Data::File { .. } => Kind::File,
            Data::Symlink { .. } => Kind::Symlink,
            Data::Fifo => Kind::Fifo,
            Data::Device(d) => Kind::Device { block: d.block },
        }
    }

    /// A device node's number (`st_rdev`); 0 for other kinds.
    pub fn rdev(&self) -> u64 {
        match self.data {
            Data::Device(d) => d.rdev(),
            _ => 0,
        }
    }

    pub fn size(&self) -> u64 {
        match &self.data {
            Data::Dir { count, .. } => 4096.max(u64::from(*count) * 32),
            Data::File { size, .. } => *size,
            Data::Symlink { target } => target.len() as u64,
            Data::Fifo | Data::Device(_) => 0,
        }
    }

    pub fn nlink(&self) -> u32 {
        match self.data {
            Data::Dir { subdirs, .. } => 2 + subdirs,
            _ => 1,
        }
    }
}

/// Who a view is for and what it shows, for `status` and for the attributes it reports.
#[derive(Clone, Debug)]
pub struct Meta {
    /// The layers, bottom first, as the user named them.
    pub layers: Vec<String>,
    /// Owner reported for every node (the user the view was made for).
    pub uid: u32,
    pub gid: u32,
    pub created: SystemTime,
}

/// A merged, immutable tree. Node 0 is the root.
pub struct View {
    /// Unique for the daemon's lifetime and never reused, so inode numbers built from it never
    /// name two different files (see [`crate::fuse`] on kernel caches).
    pub id: u32,
    pub meta: Meta,
    nodes: Vec<Node>,
    blobs: Blobs,
    total_bytes: u64,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("id", &self.id)
            .field("layers", &self.meta.layers)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

pub const ROOT: u32 = 0;

impl View {
    /// An empty read-only directory: what processes outside every registered tree see.
    pub fn empty(id: u32, meta: Meta) -> View {
        Builder::new().finish(id, meta, Arc::new(|_: &Digest| PathBuf::new()))
    }

    pub fn node(&self, n: u32) -> Option<&Node> {
        self.nodes.get(n as usize)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// The child called `name` of directory `dir`.
    pub fn lookup(&self, dir: u32, name: &[u8]) -> Option<u32> {
        let (first, count) = self.children(dir)?;
        let run = &self.nodes[first as usize..(first + count) as usize];
        run.binary_search_by(|n| (*n.name).cmp(name))
            .ok()
            .map(|i| first + i as u32)
    }

    /// The `(first, count)` run of a directory's children; `None` for a non-directory.
    pub fn children(&self, dir: u32) -> Option<(u32, u32)> {
        match self.node(dir)?.data {
            Data::Dir { first, count, .. } => Some((first, count)),
            _ => None,
        }
    }

    /// The store file holding a file node's content.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        (self.blobs)(digest)
    }

    /// A file node's content, open for reading: the blob, proven sound before its first byte
    /// is served (`EIO` when damaged; see [`crate::store::open_blob`]).
    pub fn open_blob(&self, digest: &Digest) -> std::io::Result<std::fs::File> {
        crate::store::open_blob(&self.blob_path(digest), digest)
    }
}

/// Merges layers one at a time, then freezes the result into a [`View`].
pub struct Builder {
    nodes: Vec<BNode>,
}

struct BNode {
    mode: u32,
    mtime: manifest::Time,
    kind: BKind,
}

enum BKind {
    Dir(BTreeMap<Box<[u8]>, usize>),
    File { size: u64, digest: Option<Digest> },
    Symlink(Vec<u8>),
    Fifo,
    Device(manifest::Device),
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    pub fn new() -> Builder {
        Builder {
            nodes: vec![BNode {
                mode: 0o755,
                mtime: manifest::Time::FIXED,
                kind: BKind::Dir(BTreeMap::new()),
            }],
        }
    }

    /// Put one layer on top of what is there: its entries replace lower ones of the same
    /// path, a directory over a directory merges, a whiteout removes the lower path, an opaque
    /// directory drops the lower directory's children before its own are added.
    pub fn push_layer(&mut self, m: &Manifest) {
        self.nodes[0].mode = m.entry(manifest::ROOT).mode;
        self.nodes[0].mtime = m.entry(manifest::ROOT).mtime;
        self.merge_dir(0, m, manifest::ROOT);
    }

    fn merge_dir(&mut self, at: usize, m: &Manifest, dir: u32) {
        if let manifest::Kind::Dir { opaque: true, .. } = m.entry(dir).kind {
            self.children_mut(at).clear();
        }
        for c in m.children(dir) {
            let name = m.name(c).as_bytes();
            let e = m.entry(c);
            let existing = self.children_mut(at).get(name).copied();
            let kind = match e.kind {
                manifest::Kind::Whiteout => {
                    self.children_mut(at).remove(name);
                    continue;
                }
                manifest::Kind::Dir { .. } => {
                    let i = match existing {
                        Some(i) if matches!(self.nodes[i].kind, BKind::Dir(_)) => i,
                        _ => self.add(at, name, BKind::Dir(BTreeMap::new())),
                    };
                    self.nodes[i].mode = e.mode;
                    self.nodes[i].mtime = e.mtime;
                    self.merge_dir(i, m, c);
                    continue;
                }
                manifest::Kind::File { size, digest } => BKind::File {
                    size,
                    digest: (size > 0).then_some(digest),
                },
                manifest::Kind::Symlink { .. } => {
                    BKind::Symlink(m.target(c).unwrap_or_default().as_bytes().to_vec())
                }
                manifest::Kind::Fifo => BKind::Fifo,
                manifest::Kind::Device(d) => BKind::Device(d),
            };
            let i = self.add(at, name, kind);
            self.nodes[i].mode = e.mode;
            self.nodes[i].mtime = e.mtime;
        }
    }

    fn children_mut(&mut self, at: usize) -> &mut BTreeMap<Box<[u8]>, usize> {
        match &mut self.nodes[at].kind {
            BKind::Dir(children) => children,
            _ => unreachable!("merge_dir runs on directories"),
        }
    }

    /// A new node under `at` called `name`, replacing whatever had that name.
    fn add(&mut self, at: usize, name: &[u8], kind: BKind) -> usize {
        let i = self.nodes.len();
        self.nodes.push(BNode {
            mode: 0o755,
            mtime: manifest::Time::FIXED,
            kind,
        });
        self.children_mut(at).insert(name.into(), i);
        i
    }

    /// Lay the reachable nodes out breadth first (children contiguous and sorted).
    pub fn finish(mut self, id: u32, meta: Meta, blobs: Blobs) -> View {
        let mut nodes: Vec<Node> = Vec::new();
        // (builder index, name, parent in the output)
        let mut queue = std::collections::VecDeque::from([(0usize, Box::<[u8]>::default(), 0u32)]);
        let mut total_bytes = 0;
        while let Some((b, name, parent)) = queue.pop_front() {
            let out = nodes.len() as u32;
            let kind = std::mem::replace(&mut self.nodes[b].kind, BKind::Symlink(Vec::new()));
            let data = match kind {
                BKind::Dir(children) => {
                    let first = (nodes.len() + 1 + queue.len()) as u32;
                    let count = children.len() as u32;
                    let subdirs = children
                        .values()
                        .filter(|&&c| matches!(self.nodes[c].kind, BKind::Dir(_)))
                        .count() as u32;
                    for (n, c) in children {
                        queue.push_back((c, n, out));
                    }
                    Data::Dir {
                        first,
                        count,
                        subdirs,
                    }
                }
                BKind::File { size, digest } => {
                    total_bytes += size;
                    Data::File { size, digest }
                }
                BKind::Symlink(target) => Data::Symlink {
                    target: target.into(),
                },
                BKind::Fifo => Data::Fifo,
                BKind::Device(d) => Data::Device(d),
            };
            nodes.push(Node {
                name,
                parent,
                mode: self.nodes[b].mode,
                mtime: self.nodes[b].mtime,
                data,
            });
        }
        View {
            id,
            meta,
            nodes,
            blobs,
            total_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Node as M, NodeKind};

    fn dir(children: Vec<(&str, M)>) -> M {
        let mut d = M::dir(0o755);
        d.children_mut().unwrap().extend(
            children
                .into_iter()
                .map(|(n, c)| (n.as_bytes().to_vec(), c)),
        );
        d
    }
    fn opaque(children: Vec<(&str, M)>) -> M {
        let mut d = dir(children);
        d.mode = 0o700;
        if let NodeKind::Dir { opaque, .. } = &mut d.kind {
            *opaque = true;
        }
        d
    }
    fn file(size: u64) -> M {
        M {
            mode: 0o644,
            mtime: manifest::Time::FIXED,
            kind: NodeKind::File {
                size,
                digest: Digest::of_blob(&[size as u8]),
            },
        }
    }
    fn wh() -> M {
        M {
            mode: 0,
            mtime: manifest::Time::default(),
            kind: NodeKind::Whiteout,
        }
    }

    fn build(layers: Vec<M>) -> View {
        let mut b = Builder::new();
        for l in layers {
            b.push_layer(&Manifest::from_tree(&l));
        }
        let meta = Meta {
            layers: vec![],
            uid: 0,
            gid: 0,
            created: SystemTime::UNIX_EPOCH,
        };
        b.finish(1, meta, Arc::new(|_: &Digest| PathBuf::new()))
    }

    fn paths(v: &View) -> Vec<String> {
        fn walk(v: &View, n: u32, prefix: &str, out: &mut Vec<String>) {
            if let Some((first, count)) = v.children(n) {
                for c in first..first + count {
                    let p = format!(
                        "{prefix}{}",
                        String::from_utf8_lossy(&v.node(c).unwrap().name)
                    );
                    out.push(p.clone());
                    walk(v, c, &format!("{p}/"), out);
                }
            }
        }
        let mut out = vec![];
        walk(v, ROOT, "", &mut out);
        out
    }

    #[test]
    fn later_layers_win_and_whiteouts_hide() {
        let v = build(vec![
            dir(vec![
                ("a", dir(vec![("x", file(1)), ("y", file(2))])),
                ("b", file(3)),
                ("d", dir(vec![("k", file(4))])),
            ]),
            dir(vec![
                ("a", dir(vec![("x", file(9)), ("y", wh())])),
                ("d", wh()),
                ("c", file(5)),
            ]),
        ]);
        assert_eq!(paths(&v), ["a", "a/x", "b", "c"]);
        let x = v.lookup(v.lookup(ROOT, b"a").unwrap(), b"x").unwrap();
        assert!(matches!(
            v.node(x).unwrap().data,
            Data::File { size: 9, .. }
        ));
    }

    #[test]
    fn opaque_dir_hides_lower_children_only() {
        let v = build(vec![
            dir(vec![(
                "etc",
                dir(vec![("old", file(1)), ("keep", file(1))]),
            )]),
            dir(vec![("etc", opaque(vec![("new", file(2))]))]),
        ]);
        assert_eq!(paths(&v), ["etc", "etc/new"]);
        assert_eq!(v.node(v.lookup(ROOT, b"etc").unwrap()).unwrap().mode, 0o700);
    }

    #[test]
    fn file_replaces_dir_and_dir_replaces_file() {
        let v = build(vec![
            dir(vec![("p", dir(vec![("q", file(1))])), ("f", file(1))]),
            dir(vec![("p", file(2)), ("f", dir(vec![("g", file(3))]))]),
        ]);
        assert_eq!(paths(&v), ["f", "f/g", "p"]);
    }

    #[test]
    fn children_are_contiguous_and_sorted() {
        let v = build(vec![dir(vec![
            ("z", file(1)),
            ("a", file(0)),
            ("m", dir(vec![("b", file(1)), ("a", file(1))])),
        ])]);
        let (first, count) = v.children(ROOT).unwrap();
        let names: Vec<_> = (first..first + count)
            .map(|i| v.node(i).unwrap().name.clone())
            .collect();
        assert_eq!(
            names,
            [
                b"a".as_slice().into(),
                b"m".as_slice().into(),
                b"z".as_slice().into()
            ]
        );
        let m = v.lookup(ROOT, b"m").unwrap();
        assert_eq!(v.node(m).unwrap().nlink(), 2);
        assert_eq!(v.node(ROOT).unwrap().nlink(), 3);
        assert!(v.lookup(m, b"a").is_some() && v.lookup(m, b"c").is_none());
        let a = v.lookup(ROOT, b"a").unwrap();
        assert!(matches!(
            v.node(a).unwrap().data,
            Data::File {
                size: 0,
                digest: None
            }
        ));
    }
}
