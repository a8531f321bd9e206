//! What the store remembers of each layer's OCI form: `ROOT/oci/<layer-hex>`.
//!
//! The store names everything by BLAKE3; OCI names blobs by SHA-256. A layer's tar (its
//! `diff_id`) and each compressed form of it have SHA-256 digests that are only known after
//! the bytes have been made, so they are kept here once computed: a layer exported or pushed
//! once is not tarred again to learn them (a registry that has the blob is asked by digest),
//! and an import or pull of a blob some layer came from finds that layer without reading the
//! blob. The file is small text, one form a line:
//!
//! ```text
//! none sha256:<64 hex> <size>      the uncompressed tar: its digest is the diff_id
//! gzip sha256:<64 hex> <size>
//! zstd sha256:<64 hex> <size>
//! from sha256:<64 hex> REGISTRY/REPO   a repository that blob was pushed to
//! ```
//!
//! The `from` lines let a push to another repository of the same registry ask it to mount
//! the blob from one it already holds instead of sending it; the most recent few are kept.
//!
//! It is a cache: a missing or unreadable record is computed again, never trusted over the
//! layer. It is replaced atomically ([`crate::atomic`]), so a reader sees the old or new
//! record. `zcommit gc` removes a swept layer's record with it.

use super::Store;
use crate::atomic;
use crate::digest::Digest;
use crate::error::{IoContext, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How a layer's tar is compressed in an OCI blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    fn parse(s: &str) -> Option<Compression> {
        match s {
            "none" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// A blob's OCI identity: `sha256:<hex>` and its size in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciBlob {
    pub digest: String,
    pub size: u64,
}

/// The most repositories remembered per layer (the newest first).
const REPOS: usize = 8;

/// A layer's known OCI forms; `forms[None]`'s digest is the layer's diff_id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OciRecord {
    pub forms: BTreeMap<Compression, OciBlob>,
    /// Blobs of the layer and a repository (`REGISTRY/REPO`) that holds each, newest first.
    pub repos: Vec<(String, String)>,
}

impl OciRecord {
    pub fn diff_id(&self) -> Option<&str> {
        self.forms
            .get(&Compression::None)
            .map(|b| b.digest.as_str())
    }

    /// Repositories (`REGISTRY/REPO`) that hold the blob `digest`, newest first.
    pub fn repos_of<'a>(&'a self, digest: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.repos
            .iter()
            .filter(move |(d, _)| d == digest)
            .map(|(_, r)| r.as_str())
    }

    fn parse(text: &str) -> OciRecord {
        let mut forms = BTreeMap::new();
        let mut repos = Vec::new();
        for line in text.lines() {
            let mut parts = line.split(' ');
            let (Some(c), Some(d), Some(n), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if c == "from" {
                if valid_sha256(d) && !n.is_empty() {
                    repos.push((d.to_string(), n.to_string()));
                }
                continue;
            }
            let (Some(c), Ok(size)) = (Compression::parse(c), n.parse()) else {
                continue;
            };
            if valid_sha256(d) {
                let digest = d.to_string();
                forms.insert(c, OciBlob { digest, size });
            }
        }
        OciRecord { forms, repos }
    }

    fn encode(&self) -> String {
        let forms = self
            .forms
            .iter()
            .map(|(c, b)| format!("{} {} {}\n", c.name(), b.digest, b.size));
        let repos = self.repos.iter().map(|(d, r)| format!("from {d} {r}\n"));
        forms.chain(repos).collect()
    }
}

/// `sha256:` and 64 lowercase hex digits.
pub fn valid_sha256(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl Store {
    fn oci_record_path(&self, layer: &Digest) -> PathBuf {
        self.root.join("oci").join(layer.to_hex())
    }

    /// What is known of `layer`'s OCI forms (empty when nothing is).
    pub fn oci_record(&self, layer: &Digest) -> OciRecord {
        match std::fs::read_to_string(self.oci_record_path(layer)) {
            Ok(text) => OciRecord::parse(&text),
            Err(_) => OciRecord::default(),
        }
    }

    /// Remember `form` of `layer`, with what was known before.
    pub fn remember_oci(&self, layer: &Digest, form: Compression, blob: &OciBlob) -> Result<()> {
        self.update_oci(layer, |record| {
            if record.forms.get(&form) == Some(blob) {
                return false;
            }
            record.forms.insert(form, blob.clone());
            true
        })
    }

    /// Remember that the repository `repo` (`REGISTRY/REPO`) holds `layer`'s blob `digest`.
    pub fn remember_repo(&self, layer: &Digest, digest: &str, repo: &str) -> Result<()> {
        self.update_oci(layer, |record| {
            let entry = (digest.to_string(), repo.to_string());
            if record.repos.first() == Some(&entry) {
                return false;
            }
            record.repos.retain(|e| *e != entry);
            record.repos.insert(0, entry);
            record.repos.truncate(REPOS);
            true
        })
    }

    /// Change `layer`'s record by `change` (which says whether it changed anything).
    fn update_oci(
        &self,
        layer: &Digest,
        change: impl FnOnce(&mut OciRecord) -> bool,
    ) -> Result<()> {
        // Not for a layer a sweep is removing: its record would outlive it.
        let _lock = self.write_lock()?;
        if !self.has_layer(layer)? {
            return Ok(());
        }
        let mut record = self.oci_record(layer);
        if !change(&mut record) {
            return Ok(());
        }
        let dir = self.root.join("oci");
        std::fs::create_dir_all(&dir).at(&dir, "cannot create store directory")?;
        let opts = atomic::Options {
            new_mode: Some(0o644),
            ..Default::default()
        };
        let text = record.encode();
        let path = self.oci_record_path(layer);
        atomic::replace(&path, atomic::Source::Bytes(text.as_bytes()), &opts)?;
        Ok(())
    }

    /// A layer still in the store whose record names the blob `digest` (its diff_id or a
    /// compressed form).
    pub fn layer_of_oci_blob(&self, digest: &str) -> Result<Option<Digest>> {
        let dir = self.root.join("oci");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(crate::Error::io(&dir, "cannot list", e)),
        };
        for entry in entries {
            let entry = entry.at(&dir, "cannot list")?;
            let Some(layer) = entry.file_name().to_str().and_then(Digest::parse) else {
                continue;
            };
            let record = self.oci_record(&layer);
            if record.forms.values().any(|b| b.digest == digest) && self.has_layer(&layer)? {
                return Ok(Some(layer));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_ignore_junk() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let text = format!(
            "none {d} 10\ngzip {d} 3\nbogus line\nzstd sha256:xyz 1\nfrom {d} reg:5000/a/b\n"
        );
        let r = OciRecord::parse(&text);
        assert_eq!(r.forms.len(), 2);
        assert_eq!(r.repos_of(&d).collect::<Vec<_>>(), ["reg:5000/a/b"]);
        assert_eq!(r.diff_id(), Some(d.as_str()));
        assert_eq!(OciRecord::parse(&r.encode()), r);
    }
}
