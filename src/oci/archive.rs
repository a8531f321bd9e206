//! Docker archives (`docker save`, `podman save`, `skopeo copy ... docker-archive:FILE`): a tar
//! holding `manifest.json` (`[{"Config": ..., "RepoTags": [...], "Layers": [...]}]`), the
//! config and one tar per layer, each a member read in place (nothing is unpacked).
//!
//! The archive names its layers by path, not digest: each layer is checked against the
//! config's diff_id, and the config against its name when that is a digest (`<hex>.json`,
//! `blobs/sha256/<hex>`, as Docker and podman write it).

use super::hash;
use super::import::{Image, LayerDesc, Source};
use super::tar::{self, Type};
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::store::OciBlob;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Counts what passes, so a member's offset in the archive is known.
struct Counting<R> {
    inner: R,
    at: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// An opened docker archive: where each member is.
pub struct Archive {
    path: PathBuf,
    members: HashMap<Vec<u8>, (u64, u64)>,
    layers: Vec<Vec<u8>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn bad(path: &Path, what: String) -> Error {
    Error::new(path, ErrorKind::Invalid(what))
}

/// Open the archive at `path` and describe the image `reference` names among its RepoTags
/// (the only image, without one).
pub fn open(path: &Path, reference: Option<&str>) -> Result<(Image, Archive)> {
    let file = File::open(path).at(path, "cannot open")?;
    let mut reader = tar::Reader::new(Counting {
        inner: io::BufReader::new(file),
        at: 0,
    });
    let mut members = HashMap::new();
    loop {
        let h = match reader.next_header() {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(tar::ReadError::Io(e)) => return Err(Error::io(path, "cannot read", e)),
            Err(tar::ReadError::Bad(m)) => {
                return Err(bad(path, format!("not a docker archive: {m}")));
            }
        };
        if h.kind == Type::File {
            let at = reader.content_offset();
            let name = h.path.strip_prefix(b"./").unwrap_or(&h.path).to_vec();
            members.insert(name, (at, h.size));
        }
    }
    let mut archive = Archive {
        path: path.to_owned(),
        members,
        layers: Vec::new(),
    };
    let manifest = archive.small(b"manifest.json")?;
    let entries: Vec<Entry> = serde_json::from_slice(&manifest).map_err(|e| {
        bad(
            path,
            format!("manifest.json is not a docker archive's: {e}"),
        )
    })?;
    let entry = match reference {
        Some(r) => entries.iter().find(|e| {
            e.repo_tags
                .iter()
                .flatten()
                .any(|t| t == r || t.strip_prefix("localhost/") == Some(r))
        }),
        None if entries.len() == 1 => entries.first(),
        None => {
            return Err(bad(
                path,
                "the archive holds several images: name one as docker-archive:FILE:REF".into(),
            ));
        }
    }
    .ok_or_else(|| bad(path, "no such image in the archive".into()))?;
    let config = archive.small(entry.config.as_bytes())?;
    let stem = entry
        .config
        .rsplit('/')
        .next()
        .unwrap_or("")
        .trim_end_matches(".json");
    if stem.len() == 64 && hash::of(&config) != format!("sha256:{stem}") {
        return Err(bad(
            path,
            format!(
                "{} does not hash to its name (the archive is damaged or forged; nothing was \
                 stored)",
                entry.config
            ),
        ));
    }
    let what = format!("docker-archive:{}", path.display());
    let diff_ids = super::image::diff_ids(&config, &what)?;
    if diff_ids.len() != entry.layers.len() {
        return Err(bad(
            path,
            format!(
                "manifest.json lists {} layers but the config {} diff_ids",
                entry.layers.len(),
                diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (member, diff_id) in entry.layers.iter().zip(diff_ids) {
        let key = member
            .strip_prefix("./")
            .unwrap_or(member)
            .as_bytes()
            .to_vec();
        let &(_, size) = archive
            .members
            .get(&key)
            .ok_or_else(|| bad(path, format!("layer {member} is not in the archive")))?;
        // Docker 25+ writes an OCI layout inside: the member's name is its digest.
        let blob = member
            .strip_prefix("blobs/sha256/")
            .filter(|h| h.len() == 64)
            .map(|h| OciBlob {
                digest: format!("sha256:{h}"),
                size,
            });
        archive.layers.push(key);
        layers.push(LayerDesc {
            compression: None,
            blob,
            diff_id,
        });
    }
    Ok((Image { what, layers }, archive))
}

impl Archive {
    /// A member's bytes, whole (manifest.json, the config).
    fn small(&self, name: &[u8]) -> Result<Vec<u8>> {
        let &(at, size) = self.members.get(name).ok_or_else(|| {
            bad(
                &self.path,
                format!(
                    "{} is not in the archive: not a docker archive",
                    String::from_utf8_lossy(name)
                ),
            )
        })?;
        if size > super::layout::MAX_JSON {
            return Err(bad(
                &self.path,
                format!("{} is too large", String::from_utf8_lossy(name)),
            ));
        }
        let mut bytes = Vec::new();
        self.member(at, size)?
            .read_to_end(&mut bytes)
            .at(&self.path, "cannot read")?;
        Ok(bytes)
    }

    fn member(&self, at: u64, size: u64) -> Result<io::Take<File>> {
        let mut file = File::open(&self.path).at(&self.path, "cannot open")?;
        file.seek(SeekFrom::Start(at))
            .at(&self.path, "cannot read")?;
        Ok(file.take(size))
    }
}

impl Source for Archive {
    fn open(&mut self, i: usize, _layer: &LayerDesc) -> Result<Box<dyn Read + '_>> {
        let &(at, size) = &self.members[&self.layers[i]];
        Ok(Box::new(self.member(at, size)?))
    }
}

impl<R: Read> tar::Reader<Counting<R>> {
    /// Where the current entry's content starts in the archive.
    fn content_offset(&self) -> u64 {
        self.inner_ref().at
    }
}
