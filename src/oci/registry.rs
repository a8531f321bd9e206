//! Push and pull through an OCI registry (the distribution API, by the `oci-client` crate).
//!
//! The rest of zkit is synchronous; the async client runs here only, on a current-thread
//! tokio runtime built for one push or pull. Bytes cross between the two worlds through
//! bounded channels: a push makes each layer's blob on a thread of its own (the same bytes
//! an export writes; the tar is deterministic, so the digest remembered in the store is the
//! digest sent) and the runtime streams it to the registry; a pull streams each blob the
//! store lacks to the import ([`super::import`]) on a thread of its own, which verifies and
//! stores it exactly as an import from a file does. So an interrupted pull stores no layer.
//!
//! Blobs the registry has (a `HEAD` by digest) are not sent, nor those it holds in another
//! repository a push from this store went to (a cross-repository mount). Credentials come from
//! [`super::auth`]. HTTPS unless `--plain-http`, or the registry is on a loopback address.

use super::auth;
use super::export::Plan;
use super::image;
use super::import::{self, Image, Imported, LayerDesc, Source};
use super::layer_out;
use super::layout;
use crate::atomic::TempFile;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::manifest::Manifest;
use crate::store::{Compression, OciRecord, Store};
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::io::{self, Read, Seek, Write};
use tokio::sync::mpsc;

/// Chunks in flight between a thread and the runtime.
const CHANNEL: usize = 8;
const CHUNK: usize = 1 << 20;

/// How to reach a registry.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Speak plain HTTP (always done for loopback registries).
    pub plain_http: bool,
}

/// What a push did.
#[derive(Debug, Default)]
pub struct Pushed {
    /// Blobs sent, and their bytes.
    pub sent: usize,
    pub bytes: u64,
    /// Blobs the registry had already in this repository.
    pub present: usize,
    /// Blobs the registry mounted from another of its repositories (no bytes sent).
    pub mounted: usize,
    /// The manifest's digest.
    pub manifest: String,
}

/// `REGISTRY/REPO:TAG` (or `@sha256:...`) as a reference.
pub fn parse_reference(s: &str) -> Result<Reference> {
    let r: Reference = s.parse().map_err(|e| {
        Error::new(
            s,
            ErrorKind::Invalid(format!(
                "not an image reference ({e}): write REGISTRY/REPO:TAG, like 127.0.0.1:5000/app:1.0"
            )),
        )
    })?;
    Ok(r)
}

/// Whether the registry's host is a loopback address (`localhost`, `127.x`, `[::1]`).
fn loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => registry.split(':').next().unwrap_or(""),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A runtime, a client and the credentials for `reference`.
fn connect(
    reference: &Reference,
    opts: Options,
) -> Result<(tokio::runtime::Runtime, Client, RegistryAuth)> {
    // rustls needs one crypto provider installed; ring, the one built in (installing twice is
    // harmless: the first stays).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = reference.resolve_registry().to_string();
    let protocol = match opts.plain_http || loopback(&registry) {
        true => ClientProtocol::HttpsExcept(vec![registry.clone()]),
        false => ClientProtocol::Https,
    };
    let config = ClientConfig {
        protocol,
        use_monolithic_push: true,
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("zcommit", "cannot start the network runtime", e))?;
    let auth = match auth::login_for(reference.registry())? {
        Some(l) => RegistryAuth::Basic(l.user, l.password),
        None => RegistryAuth::Anonymous,
    };
    Ok((runtime, Client::new(config), auth))
}

fn registry_error(reference: &Reference, e: OciDistributionError) -> Error {
    let hint = match &e {
        OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::UnauthorizedError { .. } => {
            " (log in with `podman login` or `docker login`)"
        }
        OciDistributionError::RequestError(_) => {
            " (is the registry up? --plain-http if it does not speak HTTPS)"
        }
        _ => "",
    };
    Error::new(
        reference.whole(),
        ErrorKind::Invalid(format!("registry: {e}{hint}")),
    )
}

/// Push the stack (its layers and manifests, bottom first) as `reference`.
///
/// A layer's blob is made once however the push goes: with its digests remembered, the
/// registry is asked for it by digest and it is made as it is sent; without them, it is made
/// into an anonymous file in the store (learning its digests), and sent from that file if
/// the registry lacks it.
pub fn push(
    store: &Store,
    stack: &[(Digest, Manifest)],
    form: Compression,
    reference: &Reference,
    opts: Options,
) -> Result<Pushed> {
    let (runtime, client, auth) = connect(reference, opts)?;
    let err = |e| registry_error(reference, e);
    let spool = Spool::open(store)?;
    let spool_path = spool.path.as_path();
    let here = repo_name(reference);
    let mut out = Pushed::default();
    std::thread::scope(|scope| {
        runtime.block_on(async {
            client
                .store_auth_if_needed(reference.resolve_registry(), &auth)
                .await;
            let mut layers = Vec::new();
            for (digest, manifest) in stack {
                let record = store.oci_record(digest);
                let known = (
                    record.forms.get(&Compression::None),
                    record.forms.get(&form),
                );
                let (diff, blob, staged) = match known {
                    (Some(diff), Some(blob)) => (diff.clone(), blob.clone(), None),
                    _ => {
                        let temp = spool.temp()?;
                        let (diff, blob) =
                            layer_out::write_blob(store, digest, manifest, form, temp.file())?;
                        (diff, blob, Some(temp))
                    }
                };
                layers.push((*digest, diff, blob.clone()));
                if client
                    .blob_exists(reference, &blob.digest)
                    .await
                    .map_err(err)?
                {
                    out.present += 1;
                    store.remember_repo(digest, &blob.digest, &here)?;
                    continue;
                }
                if mount(&client, reference, &record, &blob.digest).await {
                    out.mounted += 1;
                    store.remember_repo(digest, &blob.digest, &here)?;
                    continue;
                }
                let staged =
                    match &staged {
                        Some(temp) => Some(temp.file().try_clone().map_err(|e| {
                            Error::io(&spool.path, "cannot reopen temporary file", e)
                        })?),
                        None => None,
                    };
                let (tx, rx) = mpsc::channel::<io::Result<bytes::Bytes>>(CHANNEL);
                let staged_blob = blob.clone();
                let maker = crate::threads::spawn_scoped(scope, spool_path, move || {
                    let mut w = ChannelWriter {
                        tx,
                        buf: Vec::with_capacity(CHUNK),
                    };
                    let made = match staged {
                        Some(file) => send_file(file, spool_path, &mut w).map(|()| staged_blob),
                        None => layer_out::write_blob(store, digest, manifest, form, &mut w)
                            .map(|(_, blob)| blob),
                    };
                    if let Err(e) = &made {
                        let _ = w.tx.blocking_send(Err(io::Error::other(e.to_string())));
                    }
                    made
                })?;
                let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|item| {
                        (
                            item.map_err(|e| {
                                OciDistributionError::GenericError(Some(e.to_string()))
                            }),
                            rx,
                        )
                    })
                });
                let sent = client
                    .push_blob_stream(reference, stream.boxed(), &blob.digest, Some(blob.size))
                    .await;
                let made = maker.join().expect("the layer writer does not panic")?;
                sent.map_err(err)?;
                if made != blob {
                    return Err(Error::new(
                        digest.to_hex(),
                        ErrorKind::Corrupt(format!(
                            "its blob came out as {}, not the {} remembered (remove {} and \
                             push again)",
                            made.digest,
                            blob.digest,
                            store.root().join("oci").join(digest.to_hex()).display()
                        )),
                    ));
                }
                out.sent += 1;
                out.bytes += blob.size;
                store.remember_repo(digest, &blob.digest, &here)?;
            }
            let plan = Plan::of(layers, form);
            let config_digest = super::hash::of(&plan.config);
            if client
                .blob_exists(reference, &config_digest)
                .await
                .map_err(err)?
            {
                out.present += 1;
            } else {
                client
                    .push_blob(reference, plan.config.clone(), &config_digest)
                    .await
                    .map_err(err)?;
                out.sent += 1;
                out.bytes += plan.config.len() as u64;
            }
            let content_type = image::MANIFEST.parse().expect("a valid header value");
            client
                .push_manifest_raw(reference, plan.manifest.clone(), content_type)
                .await
                .map_err(err)?;
            out.manifest = super::hash::of(&plan.manifest);
            Ok(())
        })
    })?;
    Ok(out)
}

/// `REGISTRY/REPO` of a reference, as the store remembers where blobs went.
fn repo_name(reference: &Reference) -> String {
    format!("{}/{}", reference.registry(), reference.repository())
}

/// Ask the registry to mount `digest` into `reference`'s repository from another of its
/// repositories that the store remembers holding it (a push there went before). Whether it
/// did: a registry may refuse (it answers by starting an upload instead, which is left to
/// expire), and then the blob is sent.
async fn mount(client: &Client, reference: &Reference, record: &OciRecord, digest: &str) -> bool {
    let prefix = format!("{}/", reference.registry());
    for repo in record.repos_of(digest) {
        let Some(name) = repo.strip_prefix(&prefix) else {
            continue;
        };
        if name == reference.repository() {
            continue;
        }
        let from = Reference::with_digest(
            reference.registry().to_string(),
            name.to_string(),
            digest.to_string(),
        );
        if client.mount_blob(reference, &from, digest).await.is_ok() {
            return true;
        }
    }
    false
}

/// Sends what is written as chunks to the runtime; a closed channel (the push failed) is a
/// broken pipe, which ends the writer.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Where a push makes the blobs of layers whose digests it does not know yet: anonymous
/// files in `ROOT/oci` (the store's file system, gone when closed, whatever ends the push).
struct Spool {
    path: std::path::PathBuf,
    dir: std::fs::File,
}

impl Spool {
    fn open(store: &Store) -> Result<Spool> {
        let path = store.root().join("oci");
        std::fs::create_dir_all(&path).at(&path, "cannot create store directory")?;
        let dir = std::fs::File::open(&path).at(&path, "cannot open directory")?;
        Ok(Spool { path, dir })
    }

    fn temp(&self) -> Result<TempFile<'_>> {
        TempFile::new_in(&self.dir, &self.path, "push".as_ref())
            .at(&self.path, "cannot create temporary file")
    }
}

/// Send a blob made into `file` from its first byte.
fn send_file(mut file: std::fs::File, path: &std::path::Path, w: &mut ChannelWriter) -> Result<()> {
    let read_err = |e| Error::io(path, "cannot read temporary file", e);
    file.seek(io::SeekFrom::Start(0)).map_err(read_err)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        w.write_all(&buf[..n])
            .map_err(|e| Error::io("registry", "cannot send the blob", e))?;
    }
    w.flush()
        .map_err(|e| Error::io("registry", "cannot send the blob", e))
}

/// Pull `reference` into the store and, with `tag`, tag the stack.
pub fn pull(
    store: &Store,
    reference: &Reference,
    tag: Option<&str>,
    opts: Options,
) -> Result<(Imported, Image)> {
    let (runtime, client, auth) = connect(reference, opts)?;
    let err = |e| registry_error(reference, e);
    let what = reference.whole();
    let (image, repo) = runtime.block_on(async {
        let (bytes, digest) = client
            .pull_manifest_raw(reference, &auth, image::ACCEPTED)
            .await
            .map_err(err)?;
        let mut bytes = bytes.to_vec();
        let mut digest = digest;
        if is_index(&bytes) {
            let index: image::Index = image::parse(&bytes, &what)?;
            let chosen = image::pick_platform(&index, &what)?.clone();
            let by_digest = Reference::with_digest(
                reference.registry().to_string(),
                reference.repository().to_string(),
                chosen.digest.clone(),
            );
            let (b, d) = client
                .pull_manifest_raw(&by_digest, &auth, image::ACCEPTED)
                .await
                .map_err(err)?;
            layout::check_small(&b, &chosen, &what)?;
            (bytes, digest) = (b.to_vec(), d);
        }
        if let Some(want) = reference.digest()
            && want != digest
            && super::hash::of(&bytes) != want
        {
            return Err(Error::new(
                &what,
                ErrorKind::Invalid(format!(
                    "the manifest is not {want} (the registry sent {digest})"
                )),
            ));
        }
        let manifest: image::Manifest = image::parse(&bytes, &what)?;
        if manifest.config.size > layout::MAX_JSON {
            return Err(Error::new(
                &what,
                ErrorKind::Invalid("the image config is too large".into()),
            ));
        }
        let mut config = Vec::new();
        client
            .pull_blob(reference, manifest.config.digest.as_str(), &mut config)
            .await
            .map_err(err)?;
        layout::check_small(&config, &manifest.config, &what)?;
        let image = layout::image_of(&manifest, &config, &what)?;
        Ok::<_, Error>((image, reference.clone()))
    })?;
    let (req_tx, mut req_rx) = mpsc::channel::<(usize, mpsc::Sender<io::Result<bytes::Bytes>>)>(1);
    let imported = std::thread::scope(|scope| {
        let importing = crate::threads::spawn_scoped(scope, store.root(), || {
            let mut source = Remote { requests: req_tx };
            import::import(store, &image, &mut source, tag)
        })?;
        runtime.block_on(async {
            while let Some((i, chunks)) = req_rx.recv().await {
                let digest = image.layers[i]
                    .blob
                    .as_ref()
                    .map(|b| b.digest.clone())
                    .unwrap_or_default();
                match client.pull_blob_stream(&repo, digest.as_str()).await {
                    Ok(mut stream) => {
                        while let Some(chunk) = stream.next().await {
                            let failed = chunk.is_err();
                            if chunks.send(chunk).await.is_err() || failed {
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = chunks
                            .send(Err(io::Error::other(registry_error(&repo, e).to_string())))
                            .await;
                    }
                }
            }
        });
        importing.join().expect("the import does not panic")
    })?;
    Ok((imported, image))
}

/// The tag an image reference is pulled into for `zmount run`: `oci/` and the reference with
/// each `:` as `+` (`127.0.0.1:5000/app:1.0` is `oci/127.0.0.1+5000/app+1.0`).
pub fn pulled_tag(reference: &str) -> String {
    format!("oci/{}", reference.replace(':', "+"))
}

/// Whether `name` names an image in a registry: a reference whose first part is a host
/// (has a `.` or `:`, or is `localhost`), so that a tag like `app/1.0` never is one.
fn is_image_reference(name: &str) -> bool {
    let Some((host, rest)) = name.split_once('/') else {
        return false;
    };
    !rest.is_empty()
        && (host.contains('.') || host.contains(':') || host == "localhost")
        && parse_reference(name).is_ok()
}

/// The stack the image `name` names, for a command that takes layers (`zmount run`): the tag
/// [`pulled_tag`] once pulled, else pulled now into it (said on stderr). `None` when `name`
/// is not an image reference.
pub fn stack_of_reference(store: &Store, name: &std::ffi::OsStr) -> Result<Option<Vec<Digest>>> {
    let Some(name) = name.to_str().filter(|n| is_image_reference(n)) else {
        return Ok(None);
    };
    let tag = pulled_tag(name);
    if !crate::store::valid_tag(&tag) {
        return Ok(None);
    }
    if let Some(stack) = store.tag(&tag)? {
        return Ok(Some(stack));
    }
    crate::errln!("zmount: {name}: not in the store; pulling it (as tag {tag})");
    let reference = parse_reference(name)?;
    let (imported, _) = pull(store, &reference, Some(&tag), Options::default())?;
    Ok(Some(imported.layers))
}

fn is_index(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: String,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Probe>(bytes).is_ok_and(|p| {
        p.media_type == image::INDEX || p.media_type == image::DOCKER_LIST || p.manifests.is_some()
    })
}

/// Layer blobs fetched by the runtime on request.
struct Remote {
    requests: mpsc::Sender<(usize, mpsc::Sender<io::Result<bytes::Bytes>>)>,
}

impl Source for Remote {
    fn open(&mut self, i: usize, _layer: &LayerDesc) -> Result<Box<dyn Read + '_>> {
        let (tx, rx) = mpsc::channel(CHANNEL);
        self.requests
            .blocking_send((i, tx))
            .map_err(|_| Error::new("registry", ErrorKind::Invalid("the transfer ended".into())))?;
        Ok(Box::new(ChannelReader {
            rx,
            chunk: bytes::Bytes::new(),
        }))
    }
}

/// Reads the chunks the runtime sends; the end of the channel is the end of the blob.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(c)) => self.chunk = c,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_with_a_registry_host_are_image_references() {
        assert!(is_image_reference("127.0.0.1:5000/app:1.0"));
        assert!(is_image_reference("ghcr.io/org/app:v2"));
        assert!(is_image_reference("localhost/app"));
        assert!(!is_image_reference("app/1.0"));
        assert!(!is_image_reference("app"));
        assert_eq!(
            pulled_tag("127.0.0.1:5000/app:1.0"),
            "oci/127.0.0.1+5000/app+1.0"
        );
        assert!(crate::store::valid_tag(&pulled_tag("reg.example/a/b:v1")));
    }
}
