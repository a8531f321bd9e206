//! Layers that travel: OCI images in and out of the store.
//!
//! A zkit layer is an OCI image layer already in all but encoding: a tree with whiteouts
//! (`.wh.NAME`) and opaque directories (`.wh..wh..opq`). So a stack of layers exports as an
//! image (one OCI layer per zkit layer, [`export`]), an image imports as a stack (one zkit
//! layer per image layer, [`import`]), and both go to and from any registry ([`registry`]).
//!
//! - [`tar`]: the tar format, written deterministically and read with every size bounded.
//! - [`pipe`]: the stages of making a layer blob, on threads of their own.
//! - [`layer_out`] / [`layer_in`]: one layer to a tar and back.
//! - [`image`]: the JSON of manifests, indexes and configs.
//! - [`layout`] (`oci:DIR[:REF]`) and [`archive`] (`docker-archive:FILE`): images on disk.
//! - [`registry`] and [`auth`]: the distribution API, the only async code in zkit.
//!
//! The store keeps BLAKE3 names; each layer's SHA-256 digests (its diff_id and its blobs)
//! are remembered under `ROOT/oci/` once computed ([`crate::store::OciRecord`]).

pub mod archive;
pub mod auth;
pub mod export;
pub mod hash;
pub mod image;
pub mod import;
pub mod layer_in;
pub mod layer_out;
pub mod layout;
pub mod pipe;
#[cfg(feature = "registry")]
pub mod registry;
pub mod tar;

/// The error for what this build was made without (`--no-default-features`).
pub fn not_built(what: &str, feature: &str) -> crate::Error {
    crate::Error::new(
        what,
        crate::error::ErrorKind::Invalid(format!(
            "this zkit was built without the `{feature}` feature (build it with the default \
             features)"
        )),
    )
}
