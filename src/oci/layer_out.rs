//! A zkit layer as an OCI layer tar: the same layer gives the same bytes on every machine.
//!
//! Entries come depth first in name-byte order, the root first as `./`; each with the mode
//! and time the layer records (PAX `mtime` when it has nanoseconds), owner 0:0 and no owner
//! names, no other times, no xattrs. Whiteouts are empty files `.wh.NAME`, an opaque
//! directory is followed at once by its `.wh..wh..opq` (before its own entries, so that an
//! extractor clears the lower contents before it writes this layer's), FIFOs and devices are
//! tar entries of their kinds. File contents come from the store's blobs, each hashed as it
//! is read: a damaged blob fails the export rather than travel.
//!
//! [`write_blob`] wraps the tar in the chosen compression and hashes both streams: the tar's
//! SHA-256 is the layer's `diff_id`, the blob's names it in a registry or an image layout;
//! both are remembered in the store ([`Store::remember_oci`]).

use super::hash::HashWriter;
use super::pipe::{Pipe, piped};
use super::tar::{self, Header, Type};
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::manifest::{Kind, Manifest, ROOT};
use crate::store::{Compression, OciBlob, Store};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// zstd's level for layers: its default, what `tar --zstd` and podman use.
#[cfg(feature = "zstd")]
const ZSTD_LEVEL: i32 = 3;

/// Write `manifest`'s tar to `out`.
pub fn write_tar(store: &Store, manifest: &Manifest, out: &mut impl Write) -> Result<()> {
    let here = Path::new("layer");
    let root = manifest.entry(ROOT);
    let header = |path: Vec<u8>, kind: Type, mode: u32, mtime| Header {
        path,
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime,
        size: 0,
        link: Vec::new(),
        major: 0,
        minor: 0,
    };
    let io = |e: io::Error| Error::io(here, "cannot write the layer's tar", e);
    tar::write_header(
        out,
        &header(b"./".to_vec(), Type::Dir, root.mode, root.mtime),
    )
    .map_err(io)?;
    if let Kind::Dir { opaque: true, .. } = root.kind {
        let marker = header(b".wh..wh..opq".to_vec(), Type::File, 0, root.mtime);
        tar::write_header(out, &marker).map_err(io)?;
    }
    let mut buf = vec![0u8; 256 * 1024];
    for (path, i) in manifest.walk() {
        let e = manifest.entry(i);
        let mut name = path.as_os_str().as_bytes().to_vec();
        match e.kind {
            Kind::Dir { opaque, .. } => {
                name.push(b'/');
                let marker_path = [&name[..], b".wh..wh..opq"].concat();
                tar::write_header(out, &header(name, Type::Dir, e.mode, e.mtime)).map_err(io)?;
                if opaque {
                    let marker = header(marker_path, Type::File, 0, e.mtime);
                    tar::write_header(out, &marker).map_err(io)?;
                }
            }
            Kind::File { size, digest } => {
                let mut h = header(name, Type::File, e.mode, e.mtime);
                h.size = size;
                tar::write_header(out, &h).map_err(io)?;
                copy_blob(store, &digest, size, &path, out, &mut buf)?;
                tar::pad(out, size).map_err(io)?;
            }
            Kind::Symlink { .. } => {
                let mut h = header(name, Type::Symlink, e.mode, e.mtime);
                h.link = manifest.target(i).unwrap_or_default().as_bytes().to_vec();
                tar::write_header(out, &h).map_err(io)?;
            }
            Kind::Fifo => {
                tar::write_header(out, &header(name, Type::Fifo, e.mode, e.mtime)).map_err(io)?
            }
            Kind::Device(d) => {
                let kind = if d.block { Type::Block } else { Type::Char };
                let mut h = header(name, kind, e.mode, e.mtime);
                (h.major, h.minor) = (d.major, d.minor);
                tar::write_header(out, &h).map_err(io)?;
            }
            Kind::Whiteout => {
                let base = manifest.name(i).as_bytes();
                let mut wh = name[..name.len() - base.len()].to_vec();
                wh.extend_from_slice(b".wh.");
                wh.extend_from_slice(base);
                tar::write_header(out, &header(wh, Type::File, e.mode, e.mtime)).map_err(io)?;
            }
        }
    }
    tar::finish(out).map_err(io)
}

/// Copy a blob's content, checking that it hashes to its name and has the size the layer says.
fn copy_blob(
    store: &Store,
    digest: &Digest,
    size: u64,
    path: &Path,
    out: &mut impl Write,
    buf: &mut [u8],
) -> Result<()> {
    let blob = store.blob_path(digest);
    let mut file = File::open(&blob).at(&blob, "cannot open blob")?;
    let mut hasher = Digest::blob_hasher();
    let mut copied = 0u64;
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(&blob, "cannot read blob", e)),
        };
        copied += n as u64;
        if copied > size {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| Error::io("layer", "cannot write the layer's tar", e))?;
    }
    if copied != size || Digest::from(hasher.finalize()) != *digest {
        return Err(Error::new(
            &blob,
            ErrorKind::Corrupt(format!(
                "blob of {} does not match its digest (zcommit verify --repair, then commit \
                 the file again)",
                path.display()
            )),
        ));
    }
    Ok(())
}

/// Write `layer`'s blob in `form` to `out`; return its diff_id and blob identities, and
/// remember both in the store.
///
/// The stages run on threads of their own ([`piped`]): this one makes the tar (reading and
/// checking the store's blobs), the next hashes it (the diff_id) and compresses it, the last
/// hashes the blob and writes it to `out`. Uncompressed, the tar's hash is the blob's. The
/// bytes are those the stages made one after the other: a compressor's output does not
/// depend on how its input was cut into writes, only on where it is flushed (at the end).
pub fn write_blob(
    store: &Store,
    layer: &Digest,
    manifest: &Manifest,
    form: Compression,
    out: impl Write + Send,
) -> Result<(OciBlob, OciBlob)> {
    let io = |e: io::Error| Error::io("layer", "cannot write the layer's blob", e);
    let tar = |w: &mut Pipe| write_tar(store, manifest, w);
    let blob_out = HashWriter::new(out);
    let (diff, blob_out) = match form {
        Compression::None => {
            let ((), blob_out) = piped(blob_out, io, tar)?;
            let (out, diff) = blob_out.finish();
            (diff, HashWriter::new(out))
        }
        Compression::Gzip => piped(blob_out, io, |w| {
            let gz = flate2::GzBuilder::new()
                .mtime(0)
                .write(w, flate2::Compression::default());
            let ((), tar_out) = piped(HashWriter::new(gz), io, tar)?;
            let (gz, diff) = tar_out.finish();
            gz.finish().map_err(io)?;
            Ok(diff)
        })?,
        #[cfg(feature = "zstd")]
        Compression::Zstd => piped(blob_out, io, |w| {
            let z = zstd::stream::write::Encoder::new(w, ZSTD_LEVEL).map_err(io)?;
            let ((), tar_out) = piped(HashWriter::new(z), io, tar)?;
            let (z, diff) = tar_out.finish();
            z.finish().map_err(io)?;
            Ok(diff)
        })?,
        #[cfg(not(feature = "zstd"))]
        Compression::Zstd => return Err(super::not_built("zstd layers", "zstd")),
    };
    let (mut out, mut blob) = blob_out.finish();
    out.flush().map_err(io)?;
    if form == Compression::None {
        blob = diff.clone();
    }
    store.remember_oci(layer, Compression::None, &diff)?;
    store.remember_oci(layer, form, &blob)?;
    Ok((diff, blob))
}
