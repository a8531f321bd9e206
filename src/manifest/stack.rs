//! The merged tree of a stack of layers: what a reader of the stack sees.

use super::{Entry, Kind, Manifest, Node, NodeKind, ROOT};
use std::collections::btree_map::Entry as Slot;
use std::os::unix::ffi::OsStrExt;

/// The merged tree of a stack of layers, bottom first. It has no whiteouts and no opaque
/// bits left: only what a reader of the stack sees.
pub fn merge<'a>(layers: impl IntoIterator<Item = &'a Manifest>) -> Node {
    let mut root = Node::dir(0o755);
    for layer in layers {
        apply(&mut root, layer, ROOT);
    }
    root
}

fn apply(lower: &mut Node, layer: &Manifest, dir: u32) {
    let Kind::Dir { opaque, .. } = layer.entry(dir).kind else {
        return;
    };
    lower.mode = layer.entry(dir).mode;
    lower.mtime = layer.entry(dir).mtime;
    let children = lower.children_mut().expect("apply() is given directories");
    if opaque {
        children.clear();
    }
    for child in layer.children(dir) {
        let name = layer.name(child).as_bytes().to_vec();
        let e = layer.entry(child);
        match e.kind {
            Kind::Whiteout => {
                children.remove(&name);
            }
            Kind::Dir { .. } => {
                let slot = match children.entry(name) {
                    Slot::Occupied(o) if o.get().children().is_some() => o.into_mut(),
                    Slot::Occupied(mut o) => {
                        o.insert(Node::dir(e.mode).at(e.mtime));
                        o.into_mut()
                    }
                    Slot::Vacant(v) => v.insert(Node::dir(e.mode).at(e.mtime)),
                };
                apply(slot, layer, child);
            }
            Kind::File { size, digest } => {
                children.insert(name, leaf(e, NodeKind::File { size, digest }));
            }
            Kind::Symlink { .. } => {
                let target = layer.target(child).unwrap_or_default().to_owned();
                children.insert(name, leaf(e, NodeKind::Symlink { target }));
            }
            Kind::Fifo => {
                children.insert(name, leaf(e, NodeKind::Fifo));
            }
            Kind::Device(d) => {
                children.insert(name, leaf(e, NodeKind::Device(d)));
            }
        }
    }
}

fn leaf(e: &Entry, kind: NodeKind) -> Node {
    Node {
        mode: e.mode,
        mtime: e.mtime,
        kind,
    }
}
