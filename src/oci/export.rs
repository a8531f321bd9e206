//! A stack of layers as an OCI image: into an image layout, or described for a push.

use super::image;
use super::layer_out;
use super::layout;
use crate::digest::Digest;
use crate::error::Result;
use crate::manifest::Manifest;
use crate::store::{Compression, OciBlob, Store};

/// A stack's image: its layers' blobs, config and manifest.
pub struct Plan {
    /// Per layer: the zkit layer, its diff_id and its blob.
    pub layers: Vec<(Digest, OciBlob, OciBlob)>,
    pub form: Compression,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl Plan {
    /// The image of `layers` (each: the zkit layer, its diff_id and its blob in `form`).
    pub fn of(layers: Vec<(Digest, OciBlob, OciBlob)>, form: Compression) -> Plan {
        let diff_ids: Vec<String> = layers.iter().map(|(_, d, _)| d.digest.clone()).collect();
        let config = image::config_json(&diff_ids);
        let config_blob = OciBlob {
            digest: super::hash::of(&config),
            size: config.len() as u64,
        };
        let blobs: Vec<(Compression, OciBlob)> =
            layers.iter().map(|(_, _, b)| (form, b.clone())).collect();
        let manifest = image::manifest_json(&config_blob, &blobs);
        Plan {
            layers,
            form,
            config,
            manifest,
        }
    }
}

/// What [`to_layout`] wrote.
pub struct Exported {
    pub manifest: OciBlob,
    /// Layer blobs written (the others were in the layout already).
    pub written: usize,
}

/// Write the image of `stack` into the layout at `dir`, named `reference`.
pub fn to_layout(
    store: &Store,
    stack: &[(Digest, Manifest)],
    form: Compression,
    dir: &std::path::Path,
    reference: Option<&str>,
) -> Result<Exported> {
    let out = layout::Writer::create(dir)?;
    let mut layers = Vec::new();
    let mut written = 0;
    for (digest, manifest) in stack {
        let record = store.oci_record(digest);
        let known = (
            record.forms.get(&Compression::None),
            record.forms.get(&form),
        );
        if let (Some(diff), Some(blob)) = known
            && out.has(&blob.digest)
        {
            layers.push((*digest, diff.clone(), blob.clone()));
            continue;
        }
        let mut diff = None;
        let blob = out.put(|file| {
            let (d, blob) = layer_out::write_blob(store, digest, manifest, form, file)?;
            diff = Some(d);
            Ok(blob)
        })?;
        let diff = diff.expect("put() ran the writer");
        layers.push((*digest, diff, blob));
        written += 1;
    }
    let plan = Plan::of(layers, form);
    out.put_bytes(&plan.config)?;
    let manifest = out.put_bytes(&plan.manifest)?;
    out.add_to_index(&manifest, reference)?;
    Ok(Exported { manifest, written })
}
