//! The bytes of a layer's blobs: the same as they always were, and made once per push.

use super::*;

/// A tree whose every mode and time is fixed, so that its layer is the same everywhere.
fn fixed_tree(env: &Env) {
    util::sh(&format!(
        "set -e; cd '{}'; mkdir -p g/d
         seq 1 120000 > g/d/big; echo small > g/small; ln -s d/big g/link
         chmod 644 g/d/big; chmod 600 g/small; chmod 755 g/d g
         touch -h -d '2020-01-02 03:04:05.5 UTC' g/link g/d/big g/small g/d g",
        env.scratch.root().display()
    ));
}

#[test]
fn an_export_gives_the_bytes_it_always_gave_in_every_compression() {
    let env = Env::new();
    fixed_tree(&env);
    env.commit("g", "g");
    // The manifests zkit wrote for this layer before its export ran in stages: they name the
    // config and the layer blob, so any changed byte changes them. The blobs' digests are
    // remembered in stores and registries; a new zkit must make the same ones.
    for (how, manifest) in [
        (
            "none",
            "sha256:9734c7a9fedf4b084cf1cc544ea28069beeb64be5c8b3e5d1992d85b96c69555",
        ),
        (
            "gzip",
            "sha256:3f771592f47d69f3b6173af290da35d35f8e007b71f42cbafe43eb6388231fb1",
        ),
        (
            "zstd",
            "sha256:55faff11915208a42bdfab083ecd35cd113cbc3d1d4054e276fe773228e6f7b7",
        ),
    ] {
        let dir = env.path(&format!("img-{how}"));
        let out = env.ok(&[
            "export",
            "--compress",
            how,
            "--oci",
            dir.to_str().unwrap(),
            "g",
        ]);
        assert_eq!(out.trim(), manifest, "{how}");
    }
}

/// Opens of the store's blob files by `zcommit ARGS...`, as strace sees them.
fn blob_opens(env: &Env, args: &[&str]) -> usize {
    let log = env.path("strace.log");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=openat", "-o"])
        .arg(&log)
        .arg(util::bin_path("zcommit"))
        .arg("--store")
        .arg(env.path("store"))
        .args(args)
        .output()
        .unwrap();
    util::stdout_of(out, &format!("strace zcommit {}", args.join(" ")));
    let blobs = format!("\"{}/blobs/", env.path("store").display());
    std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains(&blobs))
        .count()
}

#[test]
fn a_push_of_a_layer_never_exported_reads_each_blob_once() {
    require_tools!();
    crate::require!(have("strace"), "strace");
    let env = Env::new();
    let reg = Registry::start(&env);
    fixed_tree(&env);
    env.commit("g", "g");
    // Two file blobs (big, small); the store knows no OCI digest of the layer yet.
    let first = format!("{}/zkit/once:1", reg.addr);
    assert_eq!(blob_opens(&env, &["push", "g", &first]), 2, "tarred once");
    assert_eq!(reg.uploads(), 2, "the layer and the config");
    // Digests now remembered: a push to another registry makes the blob as it sends it, once.
    let elsewhere = Env::new();
    let other = Registry::start(&elsewhere);
    let second = format!("{}/zkit/twice:1", other.addr);
    assert_eq!(blob_opens(&env, &["push", "g", &second]), 2);
    assert_eq!(other.uploads(), 2);
    // The blob made before asking the registry was an anonymous file: none is left.
    let names = util::names_in(&env.path("store/oci"));
    assert_eq!(names.len(), 1, "only the layer's record: {names:?}");
    // And what was pushed from that file is what an export makes.
    let theirs = env.path("pulled");
    run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{first}"))
        .arg(format!("oci:{}:x", theirs.display())));
    assert_same(
        &umoci_unpack(&env, &theirs, "x", "bundle"),
        &env.checkout("co", &["g"]),
        "pushed from the staged blob",
    );
}

#[test]
fn a_push_to_another_repository_mounts_the_blobs_a_push_there_sent() {
    require_tools!();
    let env = Env::new();
    let reg = Registry::start(&env);
    fixed_tree(&env);
    env.commit("g", "g");
    env.ok(&["push", "g", &format!("{}/zkit/first:1", reg.addr)]);
    let second = format!("{}/zkit/second:1", reg.addr);
    let out = env.zcommit().args(["push", "g", &second]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    util::stdout_of(out, "push to another repository");
    // The layer is mounted from the first repository; the config is small and sent.
    assert!(
        err.contains("1 blobs sent") && err.contains("1 mounted"),
        "{err}"
    );
    let log = std::fs::read_to_string(&reg.log).unwrap();
    let requests = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    let mounts = requests("\"POST /v2/zkit/second/blobs/uploads/?mount=");
    let granted = requests("&from=zkit%2Ffirst HTTP/1.1\" 201");
    assert_eq!((mounts, granted), (1, 1), "one mount, granted");
    assert_eq!(
        requests("\"PUT /v2/zkit/second/blobs/uploads/"),
        1,
        "only the config's bytes were uploaded"
    );
    let theirs = env.path("pulled");
    run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{second}"))
        .arg(format!("oci:{}:x", theirs.display())));
    assert_same(
        &umoci_unpack(&env, &theirs, "x", "bundle"),
        &env.checkout("co", &["g"]),
        "the mounted image",
    );
}
