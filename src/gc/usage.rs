//! `zcommit du`: what layers cost, and what the store holds.
//!
//! A layer's bytes are those of the distinct blobs it names (a file stored twice in one layer
//! is one blob); its unique bytes are those of the blobs no other layer in the store names
//! (what removing the layer alone would give back), and the rest is shared. Sizes come from
//! the manifests, so this reads no blob.

use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{Kind, Manifest};
use crate::store::Store;
use std::collections::HashMap;

/// What one layer costs.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LayerUsage {
    pub digest: String,
    /// Entries in the manifest, the root included.
    pub entries: usize,
    pub files: usize,
    /// Distinct blobs it names, and their bytes.
    pub blobs: usize,
    pub bytes: u64,
    /// Bytes of the blobs no other layer names.
    pub unique: u64,
    /// `bytes - unique`.
    pub shared: u64,
}

/// What the store holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreUsage {
    pub blobs: usize,
    /// Their lengths on disk.
    pub blob_bytes: u64,
    pub layers: usize,
    pub layer_bytes: u64,
    /// What `zcommit gc` would remove now, and its bytes.
    pub reclaimable_items: usize,
    pub reclaimable_bytes: u64,
}

impl Store {
    /// The usage of each of `layers`, counted against every layer in the store.
    pub fn layer_usage(&self, layers: &[Digest]) -> Result<Vec<LayerUsage>> {
        // Blob -> how many layers name it.
        let mut named: HashMap<Digest, u32> = HashMap::new();
        let mut wanted: HashMap<Digest, Manifest> = HashMap::new();
        let all = self.layers()?;
        for layer in all.iter().chain(layers) {
            if wanted.contains_key(layer) {
                continue;
            }
            let manifest = self.load_layer(layer).map_err(|e| match e.kind {
                ErrorKind::Corrupt(_) => Error::new(
                    e.path.clone(),
                    ErrorKind::Invalid(format!(
                        "{}; what it shares cannot be known (run `zcommit verify --repair`)",
                        e.kind
                    )),
                ),
                _ => e,
            })?;
            for (digest, _) in distinct_blobs(&manifest) {
                *named.entry(digest).or_default() += 1;
            }
            wanted.insert(*layer, manifest);
        }
        Ok(layers
            .iter()
            .map(|layer| {
                let m = &wanted[layer];
                let blobs = distinct_blobs(m);
                let bytes = blobs.values().sum();
                let unique = blobs
                    .iter()
                    .filter(|(d, _)| named.get(*d).is_none_or(|&n| n <= 1))
                    .map(|(_, size)| size)
                    .sum();
                LayerUsage {
                    digest: layer.to_hex(),
                    entries: m.len(),
                    files: m
                        .entries()
                        .iter()
                        .filter(|e| matches!(e.kind, Kind::File { .. }))
                        .count(),
                    blobs: blobs.len(),
                    bytes,
                    unique,
                    shared: bytes - unique,
                }
            })
            .collect())
    }

    /// Blobs and layers on disk, and what a gc would remove now.
    pub fn store_usage(&self) -> Result<StoreUsage> {
        let mut usage = StoreUsage::default();
        for (path, _) in self.blob_files()? {
            if let Ok(m) = std::fs::symlink_metadata(&path) {
                usage.blobs += 1;
                usage.blob_bytes += m.len();
            }
        }
        for layer in self.layers()? {
            if let Ok(m) = std::fs::symlink_metadata(self.layer_path(&layer)) {
                usage.layers += 1;
                usage.layer_bytes += m.len();
            }
        }
        let would = self.gc(&super::Options {
            keep: Vec::new(),
            dry_run: true,
            jobs: 1,
        })?;
        usage.reclaimable_items = would.items.len();
        usage.reclaimable_bytes = would.bytes();
        Ok(usage)
    }
}

/// Each blob a manifest names, once, with its size.
fn distinct_blobs(m: &Manifest) -> HashMap<Digest, u64> {
    m.entries()
        .iter()
        .filter_map(|e| match e.kind {
            Kind::File { digest, size } => Some((digest, size)),
            _ => None,
        })
        .collect()
}
