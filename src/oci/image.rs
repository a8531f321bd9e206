//! The JSON of an OCI image (image spec 1.1): descriptors, manifests, indexes and the config,
//! with Docker's media types read as their OCI equivalents.

use crate::error::{Error, ErrorKind, Result};
use crate::store::{Compression, OciBlob};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The manifest types a pull accepts, most wanted first.
pub const ACCEPTED: &[&str] = &[MANIFEST, INDEX, DOCKER_MANIFEST, DOCKER_LIST];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// A layer's media type for a compression.
pub fn layer_type(form: Compression) -> &'static str {
    match form {
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

/// The compression a layer's media type names (Docker's and OCI's); `None` for a type that
/// is not a layer, so that an artifact is refused rather than read as a tar.
pub fn compression_of(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// The architecture as OCI (Go) names it.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        other => other,
    }
}

/// The image config of a stack: its diff_ids, bottom first; nothing that depends on when or
/// where it was made, so the same stack gives the same config digest.
pub fn config_json(diff_ids: &[String]) -> Vec<u8> {
    let config = serde_json::json!({
        "architecture": host_architecture(),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    serde_json::to_vec(&config).expect("a JSON value serialises")
}

/// The image manifest naming a config and layers.
pub fn manifest_json(config: &OciBlob, layers: &[(Compression, OciBlob)]) -> Vec<u8> {
    let m = Manifest {
        schema_version: 2,
        media_type: MANIFEST.to_string(),
        config: Descriptor {
            media_type: CONFIG.to_string(),
            digest: config.digest.clone(),
            size: config.size,
            ..Default::default()
        },
        layers: layers
            .iter()
            .map(|(form, b)| Descriptor {
                media_type: layer_type(*form).to_string(),
                digest: b.digest.clone(),
                size: b.size,
                ..Default::default()
            })
            .collect(),
    };
    serde_json::to_vec(&m).expect("a manifest serialises")
}

/// The diff_ids an image config lists.
pub fn diff_ids(config: &[u8], what: &str) -> Result<Vec<String>> {
    let value: serde_json::Value = serde_json::from_slice(config).map_err(|e| {
        Error::new(
            what,
            ErrorKind::Invalid(format!("the image config is not JSON: {e}")),
        )
    })?;
    let ids = value
        .pointer("/rootfs/diff_ids")
        .and_then(|v| v.as_array())
        .ok_or_else(|| {
            Error::new(
                what,
                ErrorKind::Invalid("the image config has no rootfs.diff_ids".into()),
            )
        })?;
    ids.iter()
        .map(|v| match v.as_str() {
            Some(s) if crate::store::valid_sha256(s) => Ok(s.to_string()),
            _ => Err(Error::new(
                what,
                ErrorKind::Invalid(
                    "the image config has a diff_id that is not a sha256 digest".into(),
                ),
            )),
        })
        .collect()
}

/// Parse JSON of type `T`, naming `what` when it is not.
pub fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::new(
            what,
            ErrorKind::Invalid(format!("not a valid OCI document: {e}")),
        )
    })
}

/// Of an index's manifests, the one for this machine (or the only one).
pub fn pick_platform<'a>(index: &'a Index, what: &str) -> Result<&'a Descriptor> {
    let arch = host_architecture();
    let images: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| d.media_type == MANIFEST || d.media_type == DOCKER_MANIFEST)
        .collect();
    if let [one] = images[..] {
        return Ok(one);
    }
    images
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .copied()
        .ok_or_else(|| {
            Error::new(
                what,
                ErrorKind::Invalid(format!(
                    "the index has no image for linux/{arch} (found {})",
                    images.len()
                )),
            )
        })
}
