//! An OCI layer tar read into a zkit layer, its files streamed into the store as blobs.
//!
//! Nothing is unpacked: each file's bytes go from the tar stream through BLAKE3 into a blob
//! (held in memory up to [`IN_MEMORY`], else in an anonymous file in the store), and the
//! entries become a [`Node`] tree. What the layer means is kept: `.wh.NAME` and character
//! devices 0:0 (overlayfs's form) are whiteouts, `.wh..wh..opq` makes its directory opaque,
//! hard links are files with their target's content, devices and FIFOs are entries; owners
//! are dropped, as zkit layers have none.
//!
//! A hostile archive is refused before it can name anything outside the layer: a path with
//! `..` or a leading `/`, a path through a symlink (made earlier in this layer or present in
//! the stack below it), a hard link to something that is not a file of the layer or the
//! stack, an entry whose declared size is beyond what the store's file system has free (or,
//! in an uncompressed blob, beyond the blob itself), more than [`MAX_ENTRIES`] entries.

use super::tar::{self, Header, Type};
use crate::atomic::TempFile;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::manifest::{Device, Node, NodeKind, valid_name};
use crate::store::{BlobWriter, Store};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// Files up to this size are hashed and stored from memory.
const IN_MEMORY: u64 = 32 << 20;

/// The most entries one layer may have.
pub const MAX_ENTRIES: u64 = 10_000_000;

/// What bounds a layer's declared sizes.
pub struct Limits {
    /// No entry may declare more bytes than this (the store's free space, or for an
    /// uncompressed blob its size).
    pub entry_size: u64,
    pub why: &'static str,
}

/// The error for a hostile or broken archive, naming the entry.
fn refuse(what: &str, path: &[u8], why: impl std::fmt::Display) -> Error {
    Error::new(
        what,
        ErrorKind::Invalid(format!(
            "{}: {why} (the archive is refused; nothing was stored)",
            String::from_utf8_lossy(path)
        )),
    )
}

/// Read one layer's tar from `input` over the stack `lower` (merged, as
/// [`crate::checkout::merge`] gives it). `what` names the layer in errors.
pub fn read_layer(
    store: &Store,
    writer: &mut BlobWriter<'_>,
    lower: &Node,
    input: impl Read,
    limits: &Limits,
    what: &str,
) -> Result<Node> {
    let mut root = Node::dir(0o755);
    let mut reader = tar::Reader::new(input);
    let mut buf = Vec::new();
    let spill_dir = store.root().join("oci");
    loop {
        let h = match reader.next_header() {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(tar::ReadError::Io(e)) => return Err(io_error(what, e)),
            Err(tar::ReadError::Bad(m)) => {
                return Err(Error::new(
                    what,
                    ErrorKind::Invalid(format!("{m} (the archive is refused; nothing was stored)")),
                ));
            }
        };
        if reader.entries > MAX_ENTRIES {
            return Err(refuse(
                what,
                &h.path,
                format!("more than {MAX_ENTRIES} entries in one layer"),
            ));
        }
        if h.size > limits.entry_size {
            return Err(refuse(
                what,
                &h.path,
                format!(
                    "declares {} bytes, more than {} ({})",
                    h.size, limits.entry_size, limits.why
                ),
            ));
        }
        let parts = split_path(&h.path).map_err(|why| refuse(what, &h.path, why))?;
        let Some((name, dirs)) = parts.split_last() else {
            // The root itself.
            if h.kind == Type::Dir {
                root.mode = h.mode;
                root.mtime = h.mtime;
            }
            continue;
        };
        let name = name.to_vec();
        // The directory the entry goes in, made where the archive implies it.
        let dir = parent(&mut root, lower, dirs).map_err(|why| refuse(what, &h.path, why))?;
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            if hidden == b".wh..opq" {
                if let NodeKind::Dir { opaque, .. } = &mut dir.kind {
                    *opaque = true;
                }
                continue;
            }
            if hidden.starts_with(b".wh.") {
                // aufs's own bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not content.
                continue;
            }
            if !valid_name(hidden) {
                return Err(refuse(what, &h.path, "a whiteout of no valid name"));
            }
            let children = dir.children_mut().expect("parent() gives directories");
            // A whiteout hides lower layers only: this layer's own entry stays.
            children.entry(hidden.to_vec()).or_insert(Node {
                mode: h.mode,
                mtime: h.mtime,
                kind: NodeKind::Whiteout,
            });
            continue;
        }
        let kind = match h.kind {
            Type::Dir => {
                let children = dir.children_mut().expect("parent() gives directories");
                match children.get_mut(&name) {
                    Some(existing) if existing.children().is_some() => {
                        existing.mode = h.mode;
                        existing.mtime = h.mtime;
                    }
                    _ => {
                        children.insert(name, Node::dir(h.mode).at(h.mtime));
                    }
                }
                continue;
            }
            Type::File => {
                let mut content = reader.content();
                let digest = store_content(
                    writer,
                    &mut content,
                    h.size,
                    &mut buf,
                    &spill_dir,
                    what,
                    &h.path,
                )?;
                NodeKind::File {
                    size: h.size,
                    digest,
                }
            }
            Type::HardLink => {
                let target =
                    hard_link_target(&root, lower, &h).map_err(|why| refuse(what, &h.path, why))?;
                let dir =
                    parent(&mut root, lower, dirs).map_err(|why| refuse(what, &h.path, why))?;
                dir.children_mut()
                    .expect("parent() gives directories")
                    .insert(name, target);
                continue;
            }
            Type::Symlink => NodeKind::Symlink {
                target: OsString::from_vec(h.link.clone()),
            },
            Type::Fifo => NodeKind::Fifo,
            Type::Char if h.major == 0 && h.minor == 0 => NodeKind::Whiteout,
            Type::Char | Type::Block => NodeKind::Device(Device {
                block: h.kind == Type::Block,
                major: h.major,
                minor: h.minor,
            }),
        };
        let dir = parent(&mut root, lower, dirs).map_err(|why| refuse(what, &h.path, why))?;
        dir.children_mut()
            .expect("parent() gives directories")
            .insert(
                name,
                Node {
                    mode: h.mode,
                    mtime: h.mtime,
                    kind,
                },
            );
    }
    Ok(root)
}

fn io_error(what: &str, e: io::Error) -> Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<super::hash::TooLong>())
    {
        Some(too_long) => Error::new(
            what,
            ErrorKind::Invalid(format!(
                "the blob is {too_long} (the archive is refused; nothing was stored)"
            )),
        ),
        None => Error::io(what, "cannot read the layer", e),
    }
}

/// A tar path as names: `./` and empty parts dropped; `..` and absolute paths refused.
fn split_path(path: &[u8]) -> std::result::Result<Vec<&[u8]>, &'static str> {
    if path.first() == Some(&b'/') {
        return Err("an absolute path");
    }
    let mut out = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("a path with `..`"),
            p if !valid_name(p) => return Err("a name that cannot be a file name"),
            p => out.push(p),
        }
    }
    Ok(out)
}

/// The directory `dirs` names in this layer, made (as the stack below has it, or 0755) where
/// the archive has not said; refused when a part is a symlink here or below, or not a
/// directory here.
fn parent<'t>(
    root: &'t mut Node,
    lower: &Node,
    dirs: &[&[u8]],
) -> std::result::Result<&'t mut Node, &'static str> {
    let mut here = root;
    let mut below = Some(lower);
    for part in dirs {
        if part.starts_with(b".wh.") {
            return Err("a whiteout name used as a directory");
        }
        if let NodeKind::Dir { opaque: true, .. } = here.kind {
            below = None;
        }
        let under = below.and_then(|b| b.children()).and_then(|c| c.get(*part));
        let children = here.children_mut().expect("only directories are descended");
        let next = match children.get(*part).map(|n| &n.kind) {
            Some(NodeKind::Dir { .. }) => None,
            Some(NodeKind::Symlink { .. }) => return Err("a path through a symlink of this layer"),
            Some(NodeKind::Whiteout) => Some(Node {
                kind: NodeKind::Dir {
                    opaque: true,
                    children: BTreeMap::new(),
                },
                ..Node::dir(0o755)
            }),
            Some(_) => return Err("a path through something that is not a directory"),
            None => match under.map(|n| &n.kind) {
                Some(NodeKind::Symlink { .. }) => {
                    return Err("a path through a symlink of a lower layer");
                }
                Some(NodeKind::Dir { .. }) => {
                    let u = under.expect("matched");
                    Some(Node::dir(u.mode).at(u.mtime))
                }
                _ => Some(Node::dir(0o755)),
            },
        };
        if let Some(node) = next {
            children.insert(part.to_vec(), node);
        }
        // An opaque directory here cuts the stack below off (checked as the loop goes on).
        below = under.filter(|u| u.children().is_some());
        here = children.get_mut(*part).expect("inserted above");
    }
    Ok(here)
}

/// The file a hard link names, in this layer or the stack below, as a node of its own.
fn hard_link_target(
    root: &Node,
    lower: &Node,
    h: &Header,
) -> std::result::Result<Node, &'static str> {
    let parts = split_path(&h.link)?;
    let find = |top: &Node| -> std::result::Result<Option<Node>, &'static str> {
        let mut at = top;
        for (i, part) in parts.iter().enumerate() {
            let Some(next) = at.children().and_then(|c| c.get(*part)) else {
                return Ok(None);
            };
            if i + 1 < parts.len() && matches!(next.kind, NodeKind::Symlink { .. }) {
                return Err("a hard link through a symlink");
            }
            at = next;
        }
        Ok(Some(at.clone()))
    };
    let found = match find(root)? {
        Some(n) => Some(n),
        None => find(lower)?,
    };
    match found {
        Some(n) if matches!(n.kind, NodeKind::File { .. }) => Ok(n),
        Some(_) => Err("a hard link to something that is not a regular file"),
        None => Err("a hard link to a file the layer does not have"),
    }
}

/// Hash a file's content into a blob; its digest.
fn store_content(
    writer: &mut BlobWriter<'_>,
    content: &mut impl Read,
    size: u64,
    buf: &mut Vec<u8>,
    spill_dir: &Path,
    what: &str,
    path: &[u8],
) -> Result<Digest> {
    let read_err = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof => refuse(what, path, "the archive ends inside this file"),
        _ => io_error(what, e),
    };
    if size <= IN_MEMORY {
        buf.clear();
        buf.resize(size as usize, 0);
        content.read_exact(buf).map_err(read_err)?;
        let digest = Digest::of_blob(buf);
        writer.add_bytes(buf, &digest)?;
        return Ok(digest);
    }
    // Too large to hold: an anonymous file in the store, hashed as it is written, then
    // brought in as any file is (a reflink where the file system shares blocks).
    std::fs::create_dir_all(spill_dir).at(spill_dir, "cannot create store directory")?;
    let dir = File::open(spill_dir).at(spill_dir, "cannot open directory")?;
    let temp = TempFile::new_in(&dir, spill_dir, "import".as_ref())
        .at(spill_dir, "cannot create temporary file")?;
    let mut hasher = Digest::blob_hasher();
    let mut chunk = vec![0u8; 1 << 20];
    let mut out = temp.file();
    loop {
        let n = content.read(&mut chunk).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&chunk[..n]);
        out.write_all(&chunk[..n])
            .at(spill_dir, "cannot write temporary file")?;
    }
    let digest = Digest::from(hasher.finalize());
    let shown = PathBuf::from(OsString::from_vec(path.to_vec()));
    // Nothing else has the anonymous file: it holds what was hashed.
    writer.add(temp.file(), &shown, &digest, || true)?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_dotdot_or_a_leading_slash_are_refused() {
        assert_eq!(split_path(b"./a//b/").unwrap(), vec![&b"a"[..], b"b"]);
        assert!(split_path(b"/etc/passwd").is_err());
        assert!(split_path(b"a/../../b").is_err());
        assert!(split_path(b"./").unwrap().is_empty());
    }
}
