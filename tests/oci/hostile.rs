//! Hostile images: each is refused with one line naming what is wrong, and changes nothing:
//! no layer is added, the tag stays where it was, and the store still verifies.

use super::*;
use zkit::manifest::Time;
use zkit::oci::hash;
use zkit::oci::tar::{self, Header, Type};

/// One tar entry to craft.
enum E<'a> {
    File(&'a str, &'a [u8]),
    /// A file whose header declares `size` bytes but carries none.
    Declares(&'a str, u64),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
}

fn header(path: &str, kind: Type) -> Header {
    Header {
        path: path.as_bytes().to_vec(),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: Time::FIXED,
        size: 0,
        link: Vec::new(),
        major: 0,
        minor: 0,
    }
}

fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        match e {
            E::File(p, content) => {
                let mut h = header(p, Type::File);
                h.size = content.len() as u64;
                tar::write_header(&mut out, &h).unwrap();
                out.extend_from_slice(content);
                tar::pad(&mut out, h.size).unwrap();
            }
            E::Declares(p, size) => {
                let mut h = header(p, Type::File);
                h.size = *size;
                tar::write_header(&mut out, &h).unwrap();
            }
            E::Dir(p) => tar::write_header(&mut out, &header(p, Type::Dir)).unwrap(),
            E::Symlink(p, t) | E::HardLink(p, t) => {
                let kind = match e {
                    E::Symlink(..) => Type::Symlink,
                    _ => Type::HardLink,
                };
                let mut h = header(p, kind);
                h.link = t.as_bytes().to_vec();
                tar::write_header(&mut out, &h).unwrap();
            }
        }
    }
    tar::finish(&mut out).unwrap();
    out
}

/// How to spoil a layout after it is written.
#[derive(Clone, Copy, PartialEq)]
enum Spoil {
    Nothing,
    /// The first layer's blob loses a byte's worth of truth.
    Blob,
    /// The config lists another diff_id for the first layer.
    DiffId,
}

/// An image layout at `dir` (ref `x`) with these uncompressed layers.
fn layout(dir: &Path, layers: &[Vec<u8>], spoil: Spoil) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let d = hash::of(bytes);
        std::fs::write(blobs.join(&d[7..]), bytes).unwrap();
        (d, bytes.len())
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let (d, size) = put(l);
        if i == 0 && spoil == Spoil::Blob {
            // A byte of the first file's content: the tar still reads, its digest differs.
            let mut bad = l.clone();
            bad[tar::BLOCK] ^= 1;
            std::fs::write(blobs.join(&d[7..]), bad).unwrap();
        }
        diff_ids.push(match (i, spoil) {
            (0, Spoil::DiffId) => hash::of(b"something else"),
            _ => d.clone(),
        });
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": size}));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}}))
    .unwrap();
    let (cd, cs) = put(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": descs}))
    .unwrap();
    let (md, ms) = put(&manifest);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
        "annotations": {"org.opencontainers.image.ref.name": "x"}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A store with a good image imported and tagged `t`; then `layers` imported over the same
/// tag must fail with a line containing `why`, and leave layers, tag and store as they were.
fn refused(layers: &[Vec<u8>], spoil: Spoil, why: &str) {
    let env = Env::new();
    let good = env.path("good");
    layout(&good, &[tar_of(&[E::File("ok", b"fine")])], Spoil::Nothing);
    env.ok(&["import", &format!("oci:{}:x", good.display()), "--tag", "t"]);
    let tags = env.ok(&["tags"]);
    let before = env.ok(&["layers"]);
    let bad = env.path("bad");
    layout(&bad, layers, spoil);
    let out = env
        .zcommit()
        .args(["import", &format!("oci:{}:x", bad.display()), "--tag", "t"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("zcommit: ") && stderr.contains(why),
        "{stderr}"
    );
    assert_eq!(env.ok(&["tags"]), tags, "the tag did not move");
    assert_eq!(env.ok(&["layers"]), before, "no layer was added");
    env.ok(&["verify"]);
}

#[test]
fn a_path_with_dotdot_is_refused() {
    refused(
        &[tar_of(&[E::File("a/../../etc/evil", b"x")])],
        Spoil::Nothing,
        "a path with `..`",
    );
}

#[test]
fn an_absolute_path_is_refused() {
    refused(
        &[tar_of(&[E::File("/etc/evil", b"x")])],
        Spoil::Nothing,
        "an absolute path",
    );
}

#[test]
fn a_path_through_a_symlink_of_the_same_layer_is_refused() {
    refused(
        &[tar_of(&[
            E::Symlink("l", "/etc"),
            E::File("l/passwd", b"x"),
        ])],
        Spoil::Nothing,
        "through a symlink of this layer",
    );
}

#[test]
fn a_path_through_a_symlink_of_a_lower_layer_is_refused() {
    refused(
        &[
            tar_of(&[E::Dir("etc"), E::Symlink("etc/l", "/etc")]),
            tar_of(&[E::File("etc/l/passwd", b"x")]),
        ],
        Spoil::Nothing,
        "through a symlink of a lower layer",
    );
}

#[test]
fn a_hard_link_to_a_missing_file_is_refused() {
    refused(
        &[tar_of(&[E::HardLink("h", "nowhere")])],
        Spoil::Nothing,
        "a hard link to a file the layer does not have",
    );
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() {
    refused(
        &[tar_of(&[E::File("f", b"content")])],
        Spoil::Blob,
        "the archive is damaged or forged",
    );
}

#[test]
fn a_layer_that_does_not_match_its_diff_id_is_refused() {
    refused(
        &[tar_of(&[E::File("f", b"content")])],
        Spoil::DiffId,
        "diff_id is",
    );
}

#[test]
fn an_entry_declaring_more_than_its_blob_holds_is_refused() {
    refused(
        &[tar_of(&[E::Declares("bomb", 1 << 40)])],
        Spoil::Nothing,
        "declares 1099511627776 bytes",
    );
}

#[test]
fn a_hard_link_in_a_layer_is_a_file_with_its_content() {
    let env = Env::new();
    let dir = env.path("img");
    layout(
        &dir,
        &[tar_of(&[
            E::File("a", b"shared"),
            E::HardLink("b", "a"),
            E::File(&"long/".repeat(40), b"deep"),
        ])],
        Spoil::Nothing,
    );
    env.ok(&["import", &format!("oci:{}:x", dir.display()), "--tag", "h"]);
    let co = env.checkout("co", &["h"]);
    assert_eq!(co[Path::new("b")].kind, "file \"shared\"");
    let long = PathBuf::from("long/".repeat(40).trim_end_matches('/'));
    assert!(co.contains_key(&long), "{co:?}");
}
