//! The content-addressed store: blobs, layers and tags under one directory.
//!
//! # Layout
//!
//! ```text
//! ROOT/zkit-store          "zkit-store 1": the layout version
//! ROOT/blobs/ab/abcd…      a file's content, named by its BLAKE3 digest (64 hex), mode 0444
//! ROOT/layers/<digest>     a layer's encoded manifest (see [`crate::manifest`]), mode 0444
//! ROOT/tags/<name>         "<digest>\n"; a name like `app/1.0` is a file in a subdirectory
//! ROOT/index/              commit caches (see [`index`]); never needed for reading
//! ROOT/oci/<digest>        a layer's OCI (SHA-256) digests, once known (see `oci.rs`)
//! ROOT/runtimes/NAME/       editable runtimes (see [`crate::runtime`]); their base stacks are roots
//! ROOT/pins/PID-START-N     layers a live view shows, kept from gc (see `pins.rs`)
//! ROOT/meta/HEX, oci/HEX    data per layer ([`crate::gc::LAYER_AREAS`]), removed with its layer
//! ROOT/lock, lock.gate      the store lock: writers shared, gc's sweep exclusive
//! ```
//!
//! The root is `--store DIR`, else `$ZKIT_STORE`, else `$XDG_DATA_HOME/zkit`, else
//! `~/.local/share/zkit` ([`root_from`]), created on first use ([`Store::open`]).
//!
//! # Who can read it
//!
//! A new root is mode 0700: blobs are 0444 so that no one writes them by accident, and the
//! root is what keeps a file committed as 0600 from being read by every user. Sharing a store
//! is a decision its owner makes with `chmod` on the root; [`Store::exposed`] says when the
//! root lets others in, so that tools can say so.
//!
//! # Reading a layer (what zmount needs)
//!
//! ```no_run
//! # fn main() -> zkit::Result<()> {
//! use zkit::manifest::{Kind, ROOT};
//! use zkit::store::{self, Store};
//! let store = Store::open(&store::root_from(None)?)?;
//! let (digest, manifest) = store.open_layer("app/1.0".as_ref())?; // tag, digest or prefix
//! if let Some(i) = manifest.find("usr/bin/tool".as_ref()) {
//!     if let Kind::File { digest, .. } = manifest.entry(i).kind {
//!         let content = std::fs::read(store.blob_path(&digest));
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! [`Store::load_layer`] checks that the manifest's bytes hash to the digest it is stored
//! under and decodes it with every validation of [`crate::manifest::Manifest::decode`];
//! a damaged or forged manifest is an [`ErrorKind::Corrupt`] error, never a wrong tree.
//!
//! # Writing: what a crash leaves behind
//!
//! Every object is written into an [`atomic::TempFile`] in its final directory, synced, and
//! only then given its digest as its name, so a name in `blobs/` or `layers/` always holds
//! complete content (blobs are synced in batches, one `syncfs` for thousands: see
//! `blobs.rs`). An object is never rewritten in place: writing one that exists is a no-op,
//! and two concurrent writers of the same object give it identical bytes. A crash can leave
//! `.NAME.zw-XXXXXXXX` temporaries behind where `O_TMPFILE` is missing; readers and `verify`
//! never look at them. A layer is written only after all of its blobs are durable, and a tag
//! only after its layer, so nothing durable ever names something that is not.
//!
//! # Removing: `zcommit gc`, and the lock every writer takes
//!
//! [`Store::gc`] ([`crate::gc`]) removes what no tag, runtime, live pin or `--keep` reaches.
//! So that a writer never names an object a sweep is removing, every writer holds the lock
//! shared ([`Store::write_lock`], `lock.rs`) from its first "is this object there?" to its
//! last name (layer, tag, runtime state, pin): the commit of a directory or a runtime,
//! tagging, a view's pin, a runtime's creation, an OCI import, a meta image's build;
//! [`Store::blob_writer`], [`Store::put_layer`] and [`Store::set_tag`] take it too, for
//! writers that forget. The sweep holds it exclusively and reads its roots again
//! under it; objects that appeared after the gc began are not removed (a grace period with
//! no clock). Removal goes per-layer data, layers, sync, then blobs, so a gc killed at any
//! moment leaves a store that [`Store::verify`] calls sound.

mod blobs;
pub mod checked;
pub mod index;
mod lock;
mod oci;
mod pins;
mod tags;
mod verify;

pub use blobs::{Added, BlobWriter, hash_file};
pub use checked::open_blob;
pub use lock::WriteLock;
pub use oci::{Compression, OciBlob, OciRecord, valid_sha256};
pub use pins::Pin;
pub use tags::{Tags, check_tag, tag_matches, valid_tag};
pub use verify::Report;

use crate::atomic::{self, TempFile};
use crate::digest::{self, Digest};
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::manifest::Manifest;
use rustix::fs::{AtFlags, statat};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::ErrorKind as Io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

const LAYOUT: &[u8] = b"zkit-store 1\n";

/// Where the store is: `explicit` (`--store`), else `$ZKIT_STORE`, else
/// `$XDG_DATA_HOME/zkit`, else `$HOME/.local/share/zkit`.
pub fn root_from(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(p) = var("ZKIT_STORE") {
        return Ok(PathBuf::from(p));
    }
    // The XDG spec says to ignore a relative XDG_DATA_HOME.
    if let Some(p) = var("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Ok(p.join("zkit"));
    }
    if let Some(home) = var("HOME") {
        return Ok(PathBuf::from(home).join(".local/share/zkit"));
    }
    Err(Error::new(
        "zkit",
        ErrorKind::Invalid("no store: neither --store, $ZKIT_STORE nor $HOME is set".into()),
    ))
}

/// An open store. Cheap to share between threads (`&Store` is `Sync`).
pub struct Store {
    root: PathBuf,
    /// The root's mode when opened.
    mode: u32,
    /// `blobs/00` … `blobs/ff`, opened and listed on first use.
    fanout: Vec<OnceLock<Fanout>>,
    /// The store lock's acquisition the fanout listings date from (see `lock.rs`).
    lock_serial: std::sync::atomic::AtomicU64,
}

impl Store {
    /// Open the store at `root`, creating its directories on first use (the root 0700).
    pub fn open(root: &Path) -> Result<Store> {
        match std::fs::DirBuilder::new().mode(0o700).create(root) {
            Ok(()) => {}
            Err(e) if e.kind() == Io::AlreadyExists => {}
            Err(e) if e.kind() == Io::NotFound => {
                // Parents are the user's directories, made as `mkdir -p` would; the root is ours.
                if let Some(parent) = root.parent() {
                    std::fs::create_dir_all(parent).at(parent, "cannot create directory")?;
                }
                match std::fs::DirBuilder::new().mode(0o700).create(root) {
                    Ok(()) => {}
                    Err(e) if e.kind() == Io::AlreadyExists => {}
                    Err(e) => return Err(Error::io(root, "cannot create store directory", e)),
                }
            }
            Err(e) => return Err(Error::io(root, "cannot create store directory", e)),
        }
        let mode = std::fs::metadata(root)
            .at(root, "cannot stat store")?
            .permissions()
            .mode();
        for sub in ["blobs", "layers", "tags", "index"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).at(&dir, "cannot create store directory")?;
        }
        let marker = root.join("zkit-store");
        match std::fs::read(&marker) {
            Ok(content) if content == LAYOUT => {}
            Ok(_) => {
                return Err(Error::new(
                    &marker,
                    ErrorKind::Invalid("not a store this zkit understands".into()),
                ));
            }
            Err(e) if e.kind() == Io::NotFound => {
                let opts = atomic::Options {
                    new_mode: Some(0o644),
                    ..Default::default()
                };
                atomic::replace(&marker, atomic::Source::Bytes(LAYOUT), &opts)?;
            }
            Err(e) => return Err(Error::io(&marker, "cannot read", e)),
        }
        Ok(Store {
            root: root.to_owned(),
            mode,
            fanout: (0..256).map(|_| OnceLock::new()).collect(),
            lock_serial: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The root's permission bits when they let users other than its owner in (any group or
    /// other bit): every blob is then readable by them, whatever mode its file had.
    pub fn exposed(&self) -> Option<u32> {
        Some(self.mode & 0o777).filter(|m| m & 0o077 != 0)
    }

    /// Where a blob's content is (whether or not it is there).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root.join("blobs").join(&hex[..2]).join(hex)
    }

    pub fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let fan = self.fanout(digest)?;
        Ok(fan.knows(digest) || fan.holds(digest)?)
    }

    /// Where a layer's manifest is (whether or not it is there).
    pub fn layer_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("layers").join(digest.to_hex())
    }

    pub fn has_layer(&self, digest: &Digest) -> Result<bool> {
        exists(&self.layer_path(digest))
    }

    /// Resolve a layer's name: a tag first, then a full digest, then a unique digest prefix.
    /// A tag of a stack of several layers is refused here, naming them: use
    /// [`Store::resolve_stack`] where a stack is wanted.
    pub fn resolve(&self, name: &OsStr) -> Result<Digest> {
        let mut stack = self.resolve_stack(name)?;
        match stack.len() {
            1 => Ok(stack.remove(0)),
            n => Err(Error::new(
                name,
                ErrorKind::Invalid(format!(
                    "is a stack of {n} layers, not one layer (name one of them: zcommit tags \
                     lists them)"
                )),
            )),
        }
    }

    /// Resolve a name to its layers, bottom first: every layer of a tag (one for a plain tag),
    /// else the one layer a full digest or unique digest prefix names.
    pub fn resolve_stack(&self, name: &OsStr) -> Result<Vec<Digest>> {
        let unknown = || Error::new(name, ErrorKind::UnknownLayer);
        let text = name.to_str().ok_or_else(unknown)?;
        if valid_tag(text)
            && let Some(stack) = self.tag(text)?
        {
            return Ok(stack);
        }
        if let Some(digest) = Digest::parse(text) {
            return match self.has_layer(&digest)? {
                true => Ok(vec![digest]),
                false => Err(unknown()),
            };
        }
        if !digest::is_hex_prefix(text) {
            return Err(unknown());
        }
        let mut found: Vec<Digest> = self
            .layers()?
            .into_iter()
            .filter(|d| d.to_hex().starts_with(text))
            .collect();
        match found.len() {
            0 => Err(unknown()),
            1 => Ok(vec![found.remove(0)]),
            _ => Err(Error::new(
                name,
                ErrorKind::AmbiguousLayer(found.iter().map(Digest::to_hex).collect()),
            )),
        }
    }

    /// [`Store::resolve_stack`] of each name, concatenated: the stack `names` show.
    pub fn resolve_stacks(&self, names: &[impl AsRef<OsStr>]) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for name in names {
            out.extend(self.resolve_stack(name.as_ref())?);
        }
        Ok(out)
    }

    /// Load a layer's manifest, checking that it is what its digest says.
    pub fn load_layer(&self, digest: &Digest) -> Result<Manifest> {
        let (path, bytes) = self.layer_bytes(digest)?;
        Manifest::decode(&bytes).map_err(|e| bad_manifest(&path, e))
    }

    /// The mode of a layer's root directory, checked against its digest like
    /// [`Store::load_layer`] but without decoding its entries (a few ms for 40k files).
    pub fn layer_root_mode(&self, digest: &Digest) -> Result<u32> {
        let (path, bytes) = self.layer_bytes(digest)?;
        Manifest::decode_root_mode(&bytes).map_err(|e| bad_manifest(&path, e))
    }

    /// A layer's manifest bytes, checked against its digest.
    fn layer_bytes(&self, digest: &Digest) -> Result<(PathBuf, Vec<u8>)> {
        let path = self.layer_path(digest);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == Io::NotFound => {
                return Err(Error::new(digest.to_hex(), ErrorKind::UnknownLayer));
            }
            Err(e) => return Err(Error::io(&path, "cannot read layer", e)),
        };
        if Digest::of_layer(&bytes) != *digest {
            let what = "manifest does not match its digest".to_string();
            return Err(Error::new(&path, ErrorKind::Corrupt(what)));
        }
        Ok((path, bytes))
    }

    /// [`Store::resolve`] then [`Store::load_layer`].
    pub fn open_layer(&self, name: &OsStr) -> Result<(Digest, Manifest)> {
        let digest = self.resolve(name)?;
        Ok((digest, self.load_layer(&digest)?))
    }

    /// Store a manifest as a layer (a no-op when it is already there) and return its digest.
    /// Its blobs must already be durable in the store.
    pub fn put_layer(&self, manifest: &Manifest) -> Result<Digest> {
        let _lock = self.write_lock()?;
        let bytes = manifest.encode();
        let digest = Digest::of_layer(&bytes);
        if self.has_layer(&digest)? {
            return Ok(digest);
        }
        let dir_path = self.root.join("layers");
        let dir = File::open(&dir_path).at(&dir_path, "cannot open directory")?;
        let name = digest.to_hex();
        let mut temp = TempFile::new_in(&dir, &dir_path, name.as_ref())
            .at(&dir_path, "cannot create temporary file")?;
        let path = dir_path.join(&name);
        std::io::Write::write_all(&mut temp.file(), &bytes).at(&path, "cannot write layer")?;
        read_only(temp.file(), &path)?;
        temp.prepare(true).at(&path, "cannot write layer")?;
        temp.rename_to(name.as_ref())
            .at(&path, "cannot store layer")?;
        dir.sync_all().at(&dir_path, "cannot sync directory")?;
        Ok(digest)
    }

    /// Every layer in the store, sorted.
    pub fn layers(&self) -> Result<Vec<Digest>> {
        let dir = self.root.join("layers");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).at(&dir, "cannot list layers")? {
            let entry = entry.at(&dir, "cannot list layers")?;
            if let Some(d) = entry.file_name().to_str().and_then(Digest::parse) {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }
}

/// One `blobs/xx` directory: opened once, with the blobs it held when first listed and those
/// written since, so that a commit asks "is it there?" without a system call per file. A blob
/// another process added after the listing is not known: it is written again and renamed
/// over the identical one, which costs time, never correctness.
///
/// A listed blob is only a name: its content is trusted once this process has hashed it
/// (or written it), so that a commit that read a file never keeps a damaged blob for it
/// (see `blobs.rs`).
struct Fanout {
    path: PathBuf,
    dir: File,
    known: Mutex<HashMap<Digest, Seen>>,
}

/// What this process knows of a blob it has seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// In the directory's listing; its content has not been read.
    Listed,
    /// Written by this process, or hashed and found sound (or being checked right now).
    Sound,
}

impl Fanout {
    fn knows(&self, digest: &Digest) -> bool {
        self.known.lock().unwrap().contains_key(digest)
    }

    /// Take a blob for writing or checking, and remember it as sound from now on: what it
    /// was before (`None`: unknown, to be written).
    fn claim(&self, digest: &Digest) -> Option<Seen> {
        self.known.lock().unwrap().insert(*digest, Seen::Sound)
    }

    /// Whether the blob is there now, asked of the file system.
    fn holds(&self, digest: &Digest) -> Result<bool> {
        let name = digest.to_hex();
        match statat(&self.dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(Error::io(self.path.join(name), "cannot stat", e.into())),
        }
    }
}

impl Store {
    /// The directory `blobs/xx` for a digest, created, opened and listed once per store.
    fn fanout(&self, digest: &Digest) -> Result<&Fanout> {
        let slot = &self.fanout[digest.as_bytes()[0] as usize];
        if let Some(fan) = slot.get() {
            return Ok(fan);
        }
        let path = self.root.join("blobs").join(&digest.to_hex()[..2]);
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == Io::AlreadyExists => {}
            Err(e) => return Err(Error::io(&path, "cannot create store directory", e)),
        }
        let dir = File::open(&path).at(&path, "cannot open directory")?;
        let mut known = HashMap::new();
        for entry in std::fs::read_dir(&path).at(&path, "cannot list blobs")? {
            let entry = entry.at(&path, "cannot list blobs")?;
            if let Some(d) = entry.file_name().to_str().and_then(Digest::parse) {
                known.insert(d, Seen::Listed);
            }
        }
        let fan = Fanout {
            path,
            dir,
            known: Mutex::new(known),
        };
        Ok(slot.get_or_init(|| fan))
    }
}

fn exists(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == Io::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, "cannot stat", e)),
    }
}

fn bad_manifest(path: &Path, e: crate::manifest::DecodeError) -> Error {
    Error::new(path, ErrorKind::Corrupt(format!("bad manifest: {e}")))
}

/// Objects are read-only: a stray write or `chmod` is needed before anyone can damage one.
fn read_only(file: &File, path: &Path) -> Result<()> {
    rustix::fs::fchmod(file, rustix::fs::Mode::from_raw_mode(0o444)).at(path, "cannot set mode")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Node, NodeKind};

    fn layer_with(store: &Store, n: u32) -> Digest {
        let mut root = Node::dir(0o755);
        let link = Node {
            mode: 0o777,
            mtime: crate::manifest::Time::FIXED,
            kind: NodeKind::Symlink {
                target: format!("target-{n}").into(),
            },
        };
        root.children_mut().unwrap().insert(b"l".to_vec(), link);
        store.put_layer(&Manifest::from_tree(&root)).unwrap()
    }

    #[test]
    fn layers_resolve_by_tag_digest_and_unique_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s")).unwrap();
        // 17 layers: two of them share a first hex digit.
        let layers: Vec<Digest> = (0..17).map(|n| layer_with(&store, n)).collect();
        let d = layers[0];
        assert_eq!(store.put_layer(&store.load_layer(&d).unwrap()).unwrap(), d);
        store.set_tag("app/1.0", &d).unwrap();
        assert_eq!(store.resolve("app/1.0".as_ref()).unwrap(), d);
        assert_eq!(store.resolve(d.to_hex().as_ref()).unwrap(), d);
        assert_eq!(
            store.tags().unwrap().sound,
            vec![("app/1.0".to_string(), vec![d])]
        );
        let unique = (8..64)
            .map(|n| d.to_hex()[..n].to_string())
            .find(|p| layers.iter().filter(|l| l.to_hex().starts_with(p)).count() == 1)
            .unwrap()
            .to_string();
        assert_eq!(store.resolve(unique.as_ref()).unwrap(), d);
        let shared = layers
            .iter()
            .map(|l| l.to_hex()[..1].to_string())
            .find(|p| layers.iter().filter(|l| l.to_hex().starts_with(p)).count() > 1)
            .unwrap();
        let err = store.resolve(shared.as_ref()).unwrap_err();
        assert!(
            matches!(err.kind, ErrorKind::AmbiguousLayer(ref c) if c.len() > 1),
            "{err}"
        );
        assert!(matches!(
            store.resolve("nope".as_ref()).unwrap_err().kind,
            ErrorKind::UnknownLayer
        ));
        assert!(store.set_tag("../evil", &d).is_err());
        // A stack tag resolves to all of its layers, and is refused where one layer is wanted.
        store.set_stack_tag("img", &layers[..3]).unwrap();
        assert_eq!(store.resolve_stack("img".as_ref()).unwrap(), &layers[..3]);
        assert_eq!(
            store.resolve_stacks(&["img", "app/1.0"]).unwrap(),
            [&layers[..3], &[d]].concat()
        );
        assert!(store.resolve("img".as_ref()).is_err());
    }

    #[test]
    fn a_tampered_layer_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = layer_with(&store, 1);
        let path = store.layer_path(&d);
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            store.load_layer(&d).unwrap_err().kind,
            ErrorKind::Corrupt(_)
        ));
    }
}
