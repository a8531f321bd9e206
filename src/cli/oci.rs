//! `zcommit export`, `import`, `push` and `pull`: stacks of layers as OCI images.

use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::Manifest;
use crate::oci::{archive, export, import, layout};
use crate::store::{Compression, Store};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitCode;

/// How layer blobs are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Compress {
    /// Plain tar (`application/vnd.oci.image.layer.v1.tar`)
    None,
    /// tar+gzip, what every registry and runtime reads
    Gzip,
    /// tar+zstd: smaller and faster; needs a recent runtime on the other side
    Zstd,
}

impl From<Compress> for Compression {
    fn from(c: Compress) -> Compression {
        match c {
            Compress::None => Compression::None,
            Compress::Gzip => Compression::Gzip,
            Compress::Zstd => Compression::Zstd,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Write an OCI image layout (image spec 1.1) at DIR, naming the image REF
    /// (org.opencontainers.image.ref.name; default `latest`); an existing layout keeps its
    /// other images and blobs
    #[arg(long, value_name = "DIR[:REF]", required = true)]
    pub oci: OsString,
    /// How layers are compressed
    #[arg(long, value_enum, value_name = "HOW", default_value_t = Compress::Gzip)]
    pub compress: Compress,
    /// The stack, bottom first: layers or tags (a stack tag gives all its layers)
    #[arg(required = true, value_name = "LAYER")]
    pub layers: Vec<OsString>,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// oci:DIR[:REF] (an image layout; REF may be left out when it holds one image) or
    /// docker-archive:FILE[:REF] (what `docker save` and `podman save` write)
    #[arg(value_name = "SOURCE")]
    pub source: OsString,
    /// Point tag NAME at the imported stack (all its layers, bottom first)
    #[arg(short, long, value_name = "NAME")]
    pub tag: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// How layers are compressed
    #[arg(long, value_enum, value_name = "HOW", default_value_t = Compress::Gzip)]
    pub compress: Compress,
    /// Speak plain HTTP to the registry (loopback registries always get it)
    #[arg(long)]
    pub plain_http: bool,
    /// The stack, bottom first: layers or tags (a stack tag gives all its layers)
    #[arg(required = true, value_name = "LAYER")]
    pub layers: Vec<OsString>,
    /// Where to: REGISTRY/REPO:TAG, like 127.0.0.1:5000/app:1.0
    #[arg(value_name = "REGISTRY/REPO:TAG")]
    pub reference: String,
}

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Speak plain HTTP to the registry (loopback registries always get it)
    #[arg(long)]
    pub plain_http: bool,
    /// Point tag NAME at the pulled stack (all its layers, bottom first)
    #[arg(short, long, value_name = "NAME")]
    pub tag: Option<String>,
    /// What to pull: REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:...
    #[arg(value_name = "REGISTRY/REPO:TAG")]
    pub reference: String,
}

fn load_stack(store: &Store, names: &[OsString]) -> Result<Vec<(Digest, Manifest)>> {
    store
        .resolve_stacks(names)?
        .into_iter()
        .map(|d| Ok((d, store.load_layer(&d)?)))
        .collect()
}

/// `DIR[:REF]` split at its first `:`, as skopeo's `oci:` transport does.
fn split_spec(spec: &OsStr) -> (&Path, Option<String>) {
    let bytes = spec.as_bytes();
    match bytes.iter().position(|&b| b == b':') {
        Some(at) if at + 1 < bytes.len() => (
            Path::new(OsStr::from_bytes(&bytes[..at])),
            Some(String::from_utf8_lossy(&bytes[at + 1..]).into_owned()),
        ),
        Some(at) => (Path::new(OsStr::from_bytes(&bytes[..at])), None),
        None => (Path::new(spec), None),
    }
}

pub fn export(store: &Store, args: &ExportArgs, quiet: bool) -> Result<ExitCode> {
    let stack = load_stack(store, &args.layers)?;
    let (dir, reference) = split_spec(&args.oci);
    let reference = reference.unwrap_or_else(|| "latest".to_string());
    let done = export::to_layout(store, &stack, args.compress.into(), dir, Some(&reference))?;
    if !quiet {
        crate::errln!(
            "zcommit: oci:{}:{reference}: {} layers ({} written), manifest {}",
            dir.display(),
            stack.len(),
            done.written,
            done.manifest.digest
        );
    }
    crate::outln!("{}", done.manifest.digest);
    Ok(ExitCode::SUCCESS)
}

pub fn import(store: &Store, args: &ImportArgs, quiet: bool) -> Result<ExitCode> {
    let bytes = args.source.as_bytes();
    let imported = if let Some(rest) = bytes.strip_prefix(b"oci:") {
        let (dir, reference) = split_spec(OsStr::from_bytes(rest));
        let (image, mut blobs) = layout::open(dir, reference.as_deref())?;
        import::import(store, &image, &mut blobs, args.tag.as_deref())?
    } else if let Some(rest) = bytes.strip_prefix(b"docker-archive:") {
        let (file, reference) = split_spec(OsStr::from_bytes(rest));
        let (image, mut archive) = archive::open(file, reference.as_deref())?;
        import::import(store, &image, &mut archive, args.tag.as_deref())?
    } else {
        return Err(Error::new(
            &args.source,
            ErrorKind::Invalid(
                "name the source as oci:DIR[:REF] or docker-archive:FILE[:REF] (for a \
                 registry: zcommit pull)"
                    .into(),
            ),
        ));
    };
    report_imported(&imported, args.tag.as_deref(), quiet);
    Ok(ExitCode::SUCCESS)
}

fn report_imported(imported: &import::Imported, tag: Option<&str>, quiet: bool) {
    if !quiet {
        crate::errln!(
            "zcommit: {} layers, {} new{}",
            imported.layers.len(),
            imported.layers.len() - imported.known,
            match tag {
                Some(t) => format!(", tagged {t}"),
                None => String::new(),
            }
        );
    }
    for layer in &imported.layers {
        crate::outln!("{layer}");
    }
}

#[cfg(not(feature = "registry"))]
pub fn push(_: &Store, _: &PushArgs, _: bool) -> Result<ExitCode> {
    Err(crate::oci::not_built("zcommit push", "registry"))
}

#[cfg(not(feature = "registry"))]
pub fn pull(_: &Store, _: &PullArgs, _: bool) -> Result<ExitCode> {
    Err(crate::oci::not_built("zcommit pull", "registry"))
}

#[cfg(feature = "registry")]
pub fn push(store: &Store, args: &PushArgs, quiet: bool) -> Result<ExitCode> {
    let reference = crate::oci::registry::parse_reference(&args.reference)?;
    let stack = load_stack(store, &args.layers)?;
    let opts = crate::oci::registry::Options {
        plain_http: args.plain_http,
    };
    let pushed = crate::oci::registry::push(store, &stack, args.compress.into(), &reference, opts)?;
    if !quiet {
        crate::errln!(
            "zcommit: {}: {} blobs sent ({} bytes), {} mounted from other repositories, {} \
             already there",
            args.reference,
            pushed.sent,
            pushed.bytes,
            pushed.mounted,
            pushed.present
        );
    }
    crate::outln!("{}", pushed.manifest);
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "registry")]
pub fn pull(store: &Store, args: &PullArgs, quiet: bool) -> Result<ExitCode> {
    let reference = crate::oci::registry::parse_reference(&args.reference)?;
    let opts = crate::oci::registry::Options {
        plain_http: args.plain_http,
    };
    let (imported, _) = crate::oci::registry::pull(store, &reference, args.tag.as_deref(), opts)?;
    report_imported(&imported, args.tag.as_deref(), quiet);
    Ok(ExitCode::SUCCESS)
}
