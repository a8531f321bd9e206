//! Committing a kernel runtime: an overlayfs upper dir read as the layer it stands for.
//!
//! The commit core ([`super::commit`]) walks and hashes the upper dir as it does any tree,
//! with [`super::walk::Options::overlay`] set so that overlayfs's own records are read as
//! what they mean:
//!
//! - a character device 0:0, or an empty file with `trusted.overlay.whiteout`, is a whiteout;
//! - a directory with `trusted.overlay.opaque=y` is opaque (`x` only says it holds xattr
//!   whiteouts);
//! - a file with `trusted.overlay.metacopy` is a metadata-only copy-up (a chmod, chown, touch
//!   or link of a layer file): its mode and time are the upper file's, its content the lower
//!   file's, found by path in the base stack ([`resolve`]): the file's own redirect if it has
//!   one (a renamed metacopy file), else its name below its directory's lower path; a hard
//!   link that resolves nowhere takes the content of another name of the same inode;
//! - a directory with `trusted.overlay.redirect` is a renamed lower directory: its lower
//!   content is what the base has at the redirect (absolute from the root, or a name in the
//!   parent's lower directory). A layer has no renames, so the directory goes into the layer
//!   opaque and complete: the lower content under its new name, the upper changes applied
//!   ([`splice`]); its old name is whited out by the upper dir already.
//!
//! No `trusted.overlay.*` attribute ever reaches the layer: layers record no xattrs, and a
//! redirect read here is only a path looked up in the base's manifests, never opened.

use super::walk::{Dir, What};
use crate::below;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::manifest::{Node, NodeKind};
use crate::overlay::xattr;
use crate::store::Store;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A metacopy file as the walk found it.
#[derive(Clone, Debug)]
pub struct Lower {
    pub size: u64,
    pub ino: u64,
    /// Its own `trusted.overlay.redirect` (a renamed metacopy file).
    pub redirect: Option<Vec<u8>>,
    /// The lower file's content, once [`resolve`]d.
    pub digest: Option<Digest>,
}

/// Commit a kernel runtime's `upper` dir (its runtime locked) as a layer over `base`.
pub fn commit(
    store: &Store,
    upper: &Path,
    base: &[Digest],
    opts: &super::Options,
) -> Result<super::Outcome> {
    let layers = base
        .iter()
        .map(|d| store.load_layer(d))
        .collect::<Result<Vec<_>>>()?;
    let base = crate::manifest::merge(layers.iter());
    let opts = super::Options {
        overlay: Some(Arc::new(base)),
        markers: false,
        ..opts.clone()
    };
    super::commit(store, upper, &opts)
}

/// Read overlayfs's marks on the walked directory `dir` (below `root_dir`) and its entries.
pub(super) fn read_marks(root_dir: &File, root: &Path, dir: &mut Dir) -> Result<()> {
    let path = root.join(&dir.rel);
    let fd = below::open_dir(root_dir, &dir.rel).at(&path, "cannot read directory")?;
    let here = OsStr::new(".");
    let get =
        |name: &OsStr, attr| xattr::get(&fd, name, attr).at(&path.join(name), "cannot read xattr");
    dir.opaque = get(here, xattr::OPAQUE)?.is_some_and(|v| v == b"y");
    dir.redirect = get(here, xattr::REDIRECT)?;
    for found in &mut dir.entries {
        let name = OsStr::from_bytes(&found.name);
        let what = match &found.what {
            What::Device(d) if !d.block && d.major == 0 && d.minor == 0 => What::Whiteout,
            What::File { stamp, .. }
                if stamp.size == 0 && get(name, xattr::WHITEOUT)?.is_some() =>
            {
                What::Whiteout
            }
            What::File { stamp, .. } if get(name, xattr::METACOPY)?.is_some() => {
                What::Lower(Lower {
                    size: stamp.size,
                    ino: stamp.ino,
                    redirect: get(name, xattr::REDIRECT)?,
                    digest: None,
                })
            }
            _ => continue,
        };
        if let What::Whiteout = what {
            found.mode = 0;
            found.mtime = Default::default();
        }
        found.what = what;
    }
    Ok(())
}

/// A path in the base, as name components.
pub type LowerPath = Vec<Vec<u8>>;

/// Where a redirect points, from the lower path of the directory holding the entry.
fn redirected(parent: &LowerPath, redirect: &[u8]) -> LowerPath {
    match redirect.strip_prefix(b"/") {
        Some(abs) => abs
            .split(|&b| b == b'/')
            .filter(|p| !p.is_empty())
            .map(<[u8]>::to_vec)
            .collect(),
        None => {
            let mut p = parent.clone();
            p.push(redirect.to_vec());
            p
        }
    }
}

/// Every walked directory's path in the base (its own redirect or its parent's path and its
/// name); `dirs` are sorted parents first.
pub fn lower_paths(dirs: &[Dir]) -> HashMap<PathBuf, LowerPath> {
    let mut out: HashMap<PathBuf, LowerPath> = HashMap::new();
    for d in dirs {
        let lower = match (d.rel.parent(), d.rel.file_name()) {
            (Some(parent), Some(name)) => {
                let parent = out.get(parent).cloned().unwrap_or_default();
                match &d.redirect {
                    Some(r) => redirected(&parent, r),
                    None => {
                        let mut p = parent;
                        p.push(name.as_bytes().to_vec());
                        p
                    }
                }
            }
            _ => Vec::new(),
        };
        out.insert(d.rel.clone(), lower);
    }
    out
}

fn find<'a>(base: &'a Node, path: &LowerPath) -> Option<&'a Node> {
    path.iter()
        .try_fold(base, |n, part| n.children()?.get(part))
}

/// Give every metacopy file the digest of its lower file (see the module docs).
pub fn resolve(dirs: &mut [Dir], root: &Path, base: &Node) -> Result<()> {
    let lowers = lower_paths(dirs);
    let mut by_ino: HashMap<u64, (u64, Digest)> = HashMap::new();
    let mut unresolved: Vec<(usize, usize)> = Vec::new();
    for (d, dir) in dirs.iter_mut().enumerate() {
        let parent = &lowers[&dir.rel];
        for (e, found) in dir.entries.iter_mut().enumerate() {
            let What::Lower(lower) = &mut found.what else {
                continue;
            };
            let path = match &lower.redirect {
                Some(r) => redirected(parent, r),
                None => {
                    let mut p = parent.clone();
                    p.push(found.name.clone());
                    p
                }
            };
            match find(base, &path).map(|n| &n.kind) {
                Some(NodeKind::File { size, digest }) => {
                    (lower.size, lower.digest) = (*size, Some(*digest));
                    by_ino.insert(lower.ino, (*size, *digest));
                }
                _ => unresolved.push((d, e)),
            }
        }
    }
    for (d, e) in unresolved {
        let dir = &mut dirs[d];
        let path = root
            .join(&dir.rel)
            .join(OsStr::from_bytes(&dir.entries[e].name));
        let What::Lower(lower) = &mut dir.entries[e].what else {
            unreachable!("listed as metacopy")
        };
        let Some(&(size, digest)) = by_ino.get(&lower.ino) else {
            return Err(Error::new(
                path,
                ErrorKind::Corrupt(
                    "metacopy file whose lower file is not in the runtime's base".into(),
                ),
            ));
        };
        (lower.size, lower.digest) = (size, Some(digest));
    }
    Ok(())
}

/// Replace each redirected directory in the committed tree `root` by its complete content,
/// opaque (see the module docs). Deepest first, so that a renamed directory inside a renamed
/// one is complete before its parent is merged over the lower content.
pub(super) fn splice(root: &mut Node, dirs: &[Dir], base: &Node) {
    let lowers = lower_paths(dirs);
    let mut renamed: Vec<&Dir> = dirs.iter().filter(|d| d.redirect.is_some()).collect();
    renamed.sort_by_key(|d| std::cmp::Reverse(d.rel.components().count()));
    for d in renamed {
        let Some(slot) = d.rel.iter().try_fold(&mut *root, |n, part| {
            n.children_mut()?.get_mut(part.as_bytes())
        }) else {
            continue;
        };
        let lower = match find(base, &lowers[&d.rel]) {
            Some(n) if n.children().is_some() => n.clone(),
            _ => Node::dir(slot.mode),
        };
        let upper = std::mem::replace(slot, Node::dir(0));
        let mut full = clean(over(lower, upper));
        if let NodeKind::Dir { opaque, .. } = &mut full.kind {
            *opaque = true;
        }
        *slot = full;
    }
}

/// `upper` as a layer over `lower`.
fn over(lower: Node, upper: Node) -> Node {
    match (lower.kind, upper.kind) {
        (
            NodeKind::Dir {
                children: mut below,
                ..
            },
            NodeKind::Dir {
                opaque: false,
                children,
            },
        ) => {
            for (name, node) in children {
                match node.kind {
                    NodeKind::Whiteout => {
                        below.remove(&name);
                    }
                    NodeKind::Dir { opaque: false, .. }
                        if below.get(&name).is_some_and(|n| n.children().is_some()) =>
                    {
                        let under = below.remove(&name).expect("checked");
                        below.insert(name, over(under, node));
                    }
                    _ => {
                        below.insert(name, node);
                    }
                }
            }
            Node {
                mode: upper.mode,
                mtime: upper.mtime,
                kind: NodeKind::Dir {
                    opaque: false,
                    children: below,
                },
            }
        }
        (_, kind) => Node {
            mode: upper.mode,
            mtime: upper.mtime,
            kind,
        },
    }
}

/// A complete tree: no whiteouts (nothing below to hide) and no opaque bits.
fn clean(mut node: Node) -> Node {
    if let NodeKind::Dir { opaque, children } = &mut node.kind {
        *opaque = false;
        let taken = std::mem::take(children);
        *children = taken
            .into_iter()
            .filter(|(_, n)| !matches!(n.kind, NodeKind::Whiteout))
            .map(|(k, n)| (k, clean(n)))
            .collect::<BTreeMap<_, _>>();
    }
    node
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Time;

    fn file(byte: u8) -> Node {
        Node {
            mode: 0o644,
            mtime: Time::FIXED,
            kind: NodeKind::File {
                size: 1,
                digest: Digest::of_blob(&[byte]),
            },
        }
    }

    fn dir(children: Vec<(&str, Node)>) -> Node {
        let mut d = Node::dir(0o755);
        for (n, c) in children {
            d.children_mut().unwrap().insert(n.as_bytes().to_vec(), c);
        }
        d
    }

    #[test]
    fn redirects_are_absolute_from_the_root_or_a_name_beside() {
        let parent: LowerPath = vec![b"a".to_vec(), b"b".to_vec()];
        assert_eq!(
            redirected(&parent, b"/x//y"),
            vec![b"x".to_vec(), b"y".to_vec()]
        );
        assert_eq!(
            redirected(&parent, b"old"),
            vec![b"a".to_vec(), b"b".to_vec(), b"old".to_vec()]
        );
    }

    #[test]
    fn a_renamed_directory_is_its_lower_content_with_the_upper_changes() {
        let lower = dir(vec![
            ("keep", file(1)),
            ("gone", file(2)),
            ("sub", dir(vec![("deep", file(3))])),
        ]);
        let whiteout = Node {
            mode: 0,
            mtime: Time::default(),
            kind: NodeKind::Whiteout,
        };
        let upper = dir(vec![
            ("gone", whiteout.clone()),
            ("new", file(4)),
            ("sub", dir(vec![("deep", whiteout)])),
        ]);
        let full = clean(over(lower, upper));
        let names: Vec<&[u8]> = full.children().unwrap().keys().map(Vec::as_slice).collect();
        assert_eq!(names, [&b"keep"[..], b"new", b"sub"]);
        assert!(
            full.children().unwrap()[&b"sub"[..]]
                .children()
                .unwrap()
                .is_empty()
        );
    }
}
