//! Importing an image: one zkit layer per image layer, every byte checked against the digest
//! that names it, nothing in the store named until everything is.
//!
//! # Steps
//!
//! 1. The source ([`Source`]: an image layout, a docker archive, a registry) says what the
//!    image's layers are ([`Image`]): media type, blob digest and size when it has them, and
//!    the config's diff_id for each.
//! 2. A layer whose blob or diff_id the store already knows ([`Store::layer_of_oci_blob`]) is
//!    that layer: its blob is not read (a pull transfers nothing for it).
//! 3. Others are streamed: the blob through SHA-256 (refused past its declared size), then
//!    its decompressor, then SHA-256 again (the diff_id), then the tar reader, which puts each
//!    file's content in the store as a blob ([`super::layer_in`]). Blobs are content: an
//!    import that fails leaves only blobs no layer names (sound, swept by `zcommit gc`).
//! 4. Only when every layer's digests match are the layers written, their OCI digests
//!    remembered, and the tag set. So a hostile or truncated image changes no layer and no
//!    tag, whatever fails where.
//!
//! [`import`] is the one function that writes to the store.

use super::hash::HashReader;
use super::image;
use super::layer_in::{self, Limits};
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::link::Mode;
use crate::manifest::Manifest;
use crate::store::{Compression, OciBlob, Store};
use std::io::{BufRead, BufReader, Read};

/// One layer of an image, as its manifest and config describe it.
#[derive(Clone, Debug)]
pub struct LayerDesc {
    /// The compression its media type names; `None`: find out from its first bytes (a docker
    /// archive does not say).
    pub compression: Option<Compression>,
    /// The blob's `sha256:` digest and size, when the source names them.
    pub blob: Option<OciBlob>,
    /// The uncompressed tar's digest, from the image config.
    pub diff_id: String,
}

/// What an image is made of, bottom layer first.
#[derive(Clone, Debug)]
pub struct Image {
    /// How to name the image in messages (`oci:DIR:REF`).
    pub what: String,
    pub layers: Vec<LayerDesc>,
}

/// Where an image's layer blobs come from.
pub trait Source {
    /// The blob of layer `i`, from its first byte.
    fn open(&mut self, i: usize, layer: &LayerDesc) -> Result<Box<dyn Read + '_>>;
}

/// What [`import`] did.
#[derive(Debug, Default)]
pub struct Imported {
    /// The stack, bottom first.
    pub layers: Vec<Digest>,
    /// Layers the store already had (their blobs were not read).
    pub known: usize,
}

/// The largest uncompressed layer any import accepts: well beyond real images, and a bound
/// on a decompression bomb that the per-entry free-space check would let through in pieces.
const MAX_LAYER: u64 = 1 << 42;

/// A layer read by [`import`], to be written: its place in the stack, its diff_id, and its
/// blob's form when the source named the blob.
type Pending = (usize, OciBlob, Option<(Compression, OciBlob)>);

/// Import `image` from `source` into `store` and, if `tag` is given, point it at the stack.
pub fn import(
    store: &Store,
    image: &Image,
    source: &mut dyn Source,
    tag: Option<&str>,
) -> Result<Imported> {
    if let Some(tag) = tag {
        crate::store::check_tag(tag)?;
    }
    // From the first "is this layer or blob there?" to the tag: no sweep (see `store::lock`).
    let _lock = store.write_lock()?;
    let mut writer = store.blob_writer(Mode::CloneOrCopy, crate::commit::batch_size(1))?;
    let mut stack: Vec<Manifest> = Vec::new();
    let mut out = Imported::default();
    // Layers read here, to be written once all are sound: (manifest, diff_id, blob form).
    let mut new: Vec<Pending> = Vec::new();
    for (i, layer) in image.layers.iter().enumerate() {
        let what = format!("{} layer {}", image.what, i + 1);
        let known = match &layer.blob {
            Some(b) => store.layer_of_oci_blob(&b.digest)?,
            None => None,
        };
        let known = match known {
            Some(k) => Some(k),
            None => store.layer_of_oci_blob(&layer.diff_id)?,
        };
        if let Some(digest) = known {
            stack.push(store.load_layer(&digest)?);
            out.layers.push(digest);
            out.known += 1;
            continue;
        }
        let lower = crate::manifest::merge(&stack);
        let raw = source.open(i, layer)?;
        let declared = layer.blob.as_ref().map(|b| b.size);
        let mut blob_in = HashReader::new(raw, declared.unwrap_or(u64::MAX));
        let mut buffered = BufReader::with_capacity(1 << 20, &mut blob_in);
        let compression = match layer.compression {
            Some(c) => c,
            None => sniff(&mut buffered).map_err(|e| Error::io(&what, "cannot read", e))?,
        };
        let free = free_space(store);
        let limits = match (compression, declared) {
            (Compression::None, Some(size)) => Limits {
                entry_size: size.min(free),
                why: "the size of the blob that holds it",
            },
            _ => Limits {
                entry_size: free,
                why: "the free space of the store's file system",
            },
        };
        let decoded: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(buffered),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            #[cfg(feature = "zstd")]
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(buffered)
                    .map_err(|e| Error::io(&what, "cannot read", e))?,
            ),
            #[cfg(not(feature = "zstd"))]
            Compression::Zstd => return Err(super::not_built("zstd layers", "zstd")),
        };
        let mut tar_in = HashReader::new(decoded, MAX_LAYER);
        let node = layer_in::read_layer(store, &mut writer, &lower, &mut tar_in, &limits, &what)?;
        let (decoded, diff) = tar_in
            .finish()
            .map_err(|e| corrupt_stream(&what, compression, e))?;
        drop(decoded);
        let (_, blob) = blob_in
            .finish()
            .map_err(|e| Error::io(&what, "cannot read", e))?;
        if let Some(want) = &layer.blob
            && (want.digest != blob.digest || want.size != blob.size)
        {
            return Err(mismatch(&what, "blob", &want.digest, want.size, &blob));
        }
        if diff.digest != layer.diff_id {
            return Err(mismatch(&what, "diff_id", &layer.diff_id, diff.size, &diff));
        }
        stack.push(Manifest::from_tree(&node));
        let form = layer.blob.as_ref().map(|_| (compression, blob));
        new.push((stack.len() - 1, diff, form));
        out.layers.push(Digest::default());
    }
    // Everything matched: name the blobs, then the layers, then the tag.
    writer.flush()?;
    store.sync()?;
    for (at, diff, form) in new {
        let digest = store.put_layer(&stack[at])?;
        store.remember_oci(&digest, Compression::None, &diff)?;
        if let Some((c, blob)) = form {
            store.remember_oci(&digest, c, &blob)?;
        }
        out.layers[at] = digest;
    }
    if let Some(tag) = tag {
        store.set_stack_tag(tag, &out.layers)?;
    }
    Ok(out)
}

/// The compression a blob's first bytes show.
fn sniff(r: &mut impl BufRead) -> std::io::Result<Compression> {
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    })
}

fn corrupt_stream(what: &str, c: Compression, e: std::io::Error) -> Error {
    Error::new(
        what,
        ErrorKind::Invalid(format!(
            "the {} stream is damaged: {e} (the archive is refused; nothing was stored)",
            c.name()
        )),
    )
}

fn mismatch(what: &str, which: &str, want: &str, size: u64, got: &OciBlob) -> Error {
    Error::new(
        what,
        ErrorKind::Invalid(format!(
            "{which} is {} ({} bytes), but the image says {want} ({size} bytes) (the archive is \
             damaged or forged; nothing was stored)",
            got.digest, got.size
        )),
    )
}

/// Bytes free to the store's owner on its file system (unbounded if it cannot be asked).
fn free_space(store: &Store) -> u64 {
    match rustix::fs::statvfs(store.root()) {
        #[allow(clippy::unnecessary_cast)]
        Ok(s) => (s.f_bavail as u64).saturating_mul(s.f_frsize as u64),
        Err(_) => u64::MAX,
    }
}

/// A layer description from a manifest's descriptor and the config's diff_id.
pub fn layer_desc(d: &image::Descriptor, diff_id: &str, what: &str) -> Result<LayerDesc> {
    let compression = image::compression_of(&d.media_type).ok_or_else(|| {
        Error::new(
            what,
            ErrorKind::Invalid(format!(
                "layer media type {:?} is not a tar layer zkit can read",
                d.media_type
            )),
        )
    })?;
    if !crate::store::valid_sha256(&d.digest) {
        return Err(Error::new(
            what,
            ErrorKind::Invalid(format!("layer digest {:?} is not sha256", d.digest)),
        ));
    }
    Ok(LayerDesc {
        compression: Some(compression),
        blob: Some(OciBlob {
            digest: d.digest.clone(),
            size: d.size,
        }),
        diff_id: diff_id.to_string(),
    })
}
