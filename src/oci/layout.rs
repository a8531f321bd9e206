//! OCI image layouts on disk (image spec 1.1): `oci-layout`, `index.json`, `blobs/sha256/`.
//!
//! Writing: each blob goes into a temporary file in `blobs/sha256` and is renamed to its digest
//! once complete (a blob already there is not written again), and `index.json` is replaced
//! atomically last, so a reader of the layout never sees a manifest that names a missing or
//! partial blob. An image already in the index under the same ref is replaced; others stay.

use super::hash;
use super::image::{self, Descriptor, Index};
use super::import::{Image, LayerDesc, Source, layer_desc};
use crate::atomic::{self, TempFile};
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::store::OciBlob;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The largest manifest, index or config a reader accepts.
pub const MAX_JSON: u64 = 4 << 20;

/// `DIR[:REF]` as skopeo's `oci:` transport writes it: the first `:` ends the directory.
pub fn split_ref(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((dir, r)) if !r.is_empty() => (dir, Some(r)),
        Some((dir, _)) => (dir, None),
        None => (spec, None),
    }
}

/// An image layout being written.
pub struct Writer {
    pub dir: PathBuf,
    blobs: PathBuf,
    blobs_dir: File,
}

impl Writer {
    /// Open (creating) the layout at `dir`.
    pub fn create(dir: &Path) -> Result<Writer> {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).at(&blobs, "cannot create directory")?;
        let marker = dir.join("oci-layout");
        match std::fs::read(&marker) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                atomic::replace(&marker, atomic::Source::Bytes(LAYOUT), &json_opts())?;
            }
            Err(e) => return Err(Error::io(&marker, "cannot read", e)),
        }
        let blobs_dir = File::open(&blobs).at(&blobs, "cannot open directory")?;
        Ok(Writer {
            dir: dir.to_owned(),
            blobs,
            blobs_dir,
        })
    }

    pub fn has(&self, digest: &str) -> bool {
        blob_path(&self.dir, digest).is_some_and(|p| p.exists())
    }

    /// Write a blob: `fill` writes its bytes to the file it is given and returns their
    /// digest and size (hashed as they were made, so they are not read again).
    pub fn put(&self, fill: impl FnOnce(&File) -> Result<OciBlob>) -> Result<OciBlob> {
        let mut temp = TempFile::new_in(&self.blobs_dir, &self.blobs, "blob".as_ref())
            .at(&self.blobs, "cannot create temporary file")?;
        let blob = fill(temp.file())?;
        let hex = &blob.digest["sha256:".len()..];
        let path = self.blobs.join(hex);
        temp.prepare(true).at(&path, "cannot write blob")?;
        temp.rename_to(hex.as_ref())
            .at(&path, "cannot write blob")?;
        Ok(blob)
    }

    pub fn put_bytes(&self, bytes: &[u8]) -> Result<OciBlob> {
        let blob = OciBlob {
            digest: hash::of(bytes),
            size: bytes.len() as u64,
        };
        if self.has(&blob.digest) {
            return Ok(blob);
        }
        self.put(|mut file| {
            file.write_all(bytes).at(&self.blobs, "cannot write blob")?;
            Ok(blob)
        })
    }

    /// Name the manifest `manifest` in `index.json`, under `reference` if given.
    pub fn add_to_index(&self, manifest: &OciBlob, reference: Option<&str>) -> Result<()> {
        let path = self.dir.join("index.json");
        let mut index: Index = match std::fs::read(&path) {
            Ok(bytes) => image::parse(&bytes, &path.to_string_lossy())?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Index {
                schema_version: 2,
                media_type: image::INDEX.to_string(),
                manifests: Vec::new(),
            },
            Err(e) => return Err(Error::io(&path, "cannot read", e)),
        };
        let mut d = Descriptor {
            media_type: image::MANIFEST.to_string(),
            digest: manifest.digest.clone(),
            size: manifest.size,
            ..Default::default()
        };
        match reference {
            Some(r) => {
                index
                    .manifests
                    .retain(|m| m.annotations.get(image::REF_NAME).map(String::as_str) != Some(r));
                d.annotations
                    .insert(image::REF_NAME.to_string(), r.to_string());
            }
            None => index
                .manifests
                .retain(|m| !(m.digest == d.digest && m.annotations.is_empty())),
        }
        index.manifests.push(d);
        let bytes = serde_json::to_vec(&index).expect("an index serialises");
        let opts = json_opts();
        atomic::replace(&path, atomic::Source::Bytes(&bytes), &opts)?;
        Ok(())
    }
}

fn json_opts() -> atomic::Options {
    atomic::Options {
        new_mode: Some(0o644),
        ..Default::default()
    }
}

/// Where a blob is in a layout; `None` for a digest that is not `sha256:<hex>` (so that no
/// digest can name a path outside `blobs/sha256`).
fn blob_path(dir: &Path, digest: &str) -> Option<PathBuf> {
    crate::store::valid_sha256(digest).then(|| dir.join("blobs/sha256").join(&digest[7..]))
}

/// Read a small blob (manifest, index, config) whole, checking its digest and size.
fn read_json_blob(dir: &Path, d: &Descriptor, what: &str) -> Result<Vec<u8>> {
    let path = blob_path(dir, &d.digest).ok_or_else(|| {
        Error::new(
            what,
            ErrorKind::Invalid(format!("digest {:?} is not sha256", d.digest)),
        )
    })?;
    if d.size > MAX_JSON {
        return Err(Error::new(
            what,
            ErrorKind::Invalid(format!(
                "a {} of {} bytes is beyond the {MAX_JSON} a reader accepts",
                d.media_type, d.size
            )),
        ));
    }
    let mut bytes = Vec::new();
    File::open(&path)
        .and_then(|f| f.take(MAX_JSON + 1).read_to_end(&mut bytes))
        .at(&path, "cannot read blob")?;
    check_small(&bytes, d, what)?;
    Ok(bytes)
}

/// A small blob's bytes against its descriptor.
pub fn check_small(bytes: &[u8], d: &Descriptor, what: &str) -> Result<()> {
    let got = hash::of(bytes);
    if got != d.digest || bytes.len() as u64 != d.size {
        return Err(Error::new(
            what,
            ErrorKind::Invalid(format!(
                "{} is {got} ({} bytes), but its descriptor says {} ({} bytes) (the image is \
                 damaged or forged; nothing was stored)",
                d.media_type,
                bytes.len(),
                d.digest,
                d.size
            )),
        ));
    }
    Ok(())
}

/// The image `reference` names in the layout at `dir` (the only one, without a reference).
pub fn open(dir: &Path, reference: Option<&str>) -> Result<(Image, Blobs)> {
    let what = match reference {
        Some(r) => format!("oci:{}:{r}", dir.display()),
        None => format!("oci:{}", dir.display()),
    };
    let index_path = dir.join("index.json");
    let mut bytes = Vec::new();
    File::open(&index_path)
        .and_then(|f| f.take(MAX_JSON + 1).read_to_end(&mut bytes))
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::new(
                &index_path,
                ErrorKind::Invalid("no index.json: not an OCI image layout".into()),
            ),
            _ => Error::io(&index_path, "cannot read", e),
        })?;
    let index: Index = image::parse(&bytes, &what)?;
    let chosen: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|m| match reference {
            Some(r) => m.annotations.get(image::REF_NAME).map(String::as_str) == Some(r),
            None => true,
        })
        .collect();
    let refs: Vec<&str> = index
        .manifests
        .iter()
        .filter_map(|m| m.annotations.get(image::REF_NAME).map(String::as_str))
        .collect();
    let d = match chosen[..] {
        [one] => one.clone(),
        [] => {
            return Err(Error::new(
                &what,
                ErrorKind::Invalid(format!(
                    "no such image in the layout (its refs: {})",
                    if refs.is_empty() {
                        "none".to_string()
                    } else {
                        refs.join(" ")
                    }
                )),
            ));
        }
        _ => {
            return Err(Error::new(
                &what,
                ErrorKind::Invalid(format!(
                    "the layout holds several images: name one as oci:DIR:REF (its refs: {})",
                    refs.join(" ")
                )),
            ));
        }
    };
    let image = read_image(dir, &d, &what)?;
    Ok((
        image,
        Blobs {
            dir: dir.to_owned(),
        },
    ))
}

/// The manifest `d` (or the index it names: this machine's image in it) and its config.
fn read_image(dir: &Path, d: &Descriptor, what: &str) -> Result<Image> {
    let mut d = d.clone();
    if d.media_type == image::INDEX || d.media_type == image::DOCKER_LIST {
        let bytes = read_json_blob(dir, &d, what)?;
        let nested: Index = image::parse(&bytes, what)?;
        d = image::pick_platform(&nested, what)?.clone();
    }
    let bytes = read_json_blob(dir, &d, what)?;
    let manifest: image::Manifest = image::parse(&bytes, what)?;
    let config = read_json_blob(dir, &manifest.config, what)?;
    image_of(&manifest, &config, what)
}

/// An [`Image`] from a manifest and its (checked) config.
pub fn image_of(manifest: &image::Manifest, config: &[u8], what: &str) -> Result<Image> {
    let diff_ids = image::diff_ids(config, what)?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(Error::new(
            what,
            ErrorKind::Invalid(format!(
                "the manifest has {} layers but the config {} diff_ids",
                manifest.layers.len(),
                diff_ids.len()
            )),
        ));
    }
    let layers = manifest
        .layers
        .iter()
        .zip(&diff_ids)
        .map(|(d, id)| layer_desc(d, id, what))
        .collect::<Result<Vec<LayerDesc>>>()?;
    Ok(Image {
        what: what.to_string(),
        layers,
    })
}

/// Layer blobs of a layout.
pub struct Blobs {
    dir: PathBuf,
}

impl Source for Blobs {
    fn open(&mut self, i: usize, layer: &LayerDesc) -> Result<Box<dyn Read + '_>> {
        let digest = layer.blob.as_ref().map(|b| b.digest.as_str()).unwrap_or("");
        let path = blob_path(&self.dir, digest).ok_or_else(|| {
            Error::new(
                &self.dir,
                ErrorKind::Invalid(format!("layer {} has no sha256 digest", i + 1)),
            )
        })?;
        let file = File::open(&path).at(&path, "cannot open blob")?;
        Ok(Box::new(file))
    }
}
