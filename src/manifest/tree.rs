//! A manifest as a tree of nodes: how a commit builds a layer and how a stack is merged.

use super::{Device, Entry, Kind, Manifest, ROOT, Span, Time};
use crate::digest::Digest;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// One path's node; a directory owns its children, sorted by name bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub mode: u32,
    pub mtime: Time,
    pub kind: NodeKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Dir {
        opaque: bool,
        children: BTreeMap<Vec<u8>, Node>,
    },
    File {
        size: u64,
        digest: Digest,
    },
    Symlink {
        target: OsString,
    },
    Fifo,
    Device(Device),
    Whiteout,
}

impl Node {
    /// An empty directory dated [`Time::FIXED`] (see [`Node::at`]).
    pub fn dir(mode: u32) -> Node {
        Node {
            mode: mode & 0o7777,
            mtime: Time::FIXED,
            kind: NodeKind::Dir {
                opaque: false,
                children: BTreeMap::new(),
            },
        }
    }

    /// The same node with modification time `mtime`.
    pub fn at(self, mtime: Time) -> Node {
        Node { mtime, ..self }
    }

    pub fn children(&self) -> Option<&BTreeMap<Vec<u8>, Node>> {
        match &self.kind {
            NodeKind::Dir { children, .. } => Some(children),
            _ => None,
        }
    }

    pub fn children_mut(&mut self) -> Option<&mut BTreeMap<Vec<u8>, Node>> {
        match &mut self.kind {
            NodeKind::Dir { children, .. } => Some(children),
            _ => None,
        }
    }
}

/// Breadth first, so that every directory's children are one contiguous, sorted run.
pub(super) fn flatten(root: &Node) -> Manifest {
    let mut m = Manifest::default();
    let mut queue: std::collections::VecDeque<(&Node, &[u8], u32)> =
        std::collections::VecDeque::from([(root, &[][..], ROOT)]);
    // Children of the directory at the queue's front start right after everything queued.
    let mut next = 1u32;
    while let Some((node, name, parent)) = queue.pop_front() {
        let name = push(&mut m.heap, name);
        let kind = match &node.kind {
            NodeKind::Dir { opaque, children } => {
                let first = next;
                let index = m.entries.len() as u32;
                next += children.len() as u32;
                for (child_name, child) in children {
                    queue.push_back((child, child_name, index));
                }
                Kind::Dir {
                    opaque: *opaque,
                    first,
                    len: children.len() as u32,
                }
            }
            NodeKind::File { size, digest } => Kind::File {
                size: *size,
                digest: *digest,
            },
            NodeKind::Symlink { target } => Kind::Symlink {
                target: push(&mut m.heap, target.as_bytes()),
            },
            NodeKind::Fifo => Kind::Fifo,
            NodeKind::Device(d) => Kind::Device(*d),
            NodeKind::Whiteout => Kind::Whiteout,
        };
        m.entries.push(Entry {
            name,
            parent,
            mode: node.mode & 0o7777,
            mtime: node.mtime,
            kind,
        });
    }
    m
}

pub(super) fn unflatten(m: &Manifest, index: u32) -> Node {
    let e = m.entry(index);
    let kind = match e.kind {
        Kind::Dir { opaque, .. } => NodeKind::Dir {
            opaque,
            children: m
                .children(index)
                .map(|c| (m.name(c).as_bytes().to_vec(), unflatten(m, c)))
                .collect(),
        },
        Kind::File { size, digest } => NodeKind::File { size, digest },
        Kind::Symlink { .. } => NodeKind::Symlink {
            target: OsString::from_vec(m.target(index).unwrap_or_default().as_bytes().to_vec()),
        },
        Kind::Fifo => NodeKind::Fifo,
        Kind::Device(d) => NodeKind::Device(d),
        Kind::Whiteout => NodeKind::Whiteout,
    };
    Node {
        mode: e.mode,
        mtime: e.mtime,
        kind,
    }
}

pub(super) fn push(heap: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let start = heap.len() as u32;
    heap.extend_from_slice(bytes);
    Span {
        start,
        len: bytes.len() as u32,
    }
}
