//! zkit and the rest of the world exchange images: through a registry, an image layout and a
//! docker archive, checked by the trees each side unpacks.

use super::*;

/// Three layers: files, a setuid file, a symlink, a FIFO, a device, a name past 100 bytes;
/// then deletions (a whiteout) and a replaced directory (opaque); then more files.
fn three_layers(env: &Env) -> [String; 3] {
    let long = "n".repeat(150);
    util::sh(&format!(
        "set -e; cd '{}'
         mkdir -p l1/a/b l1/d l2/a/b l2/d l3/deep
         echo hi > l1/a/f; chmod 4755 l1/a/f; echo keep > l1/a/b/k; ln -s f l1/a/l
         mkfifo l1/fifo; mknod l1/null c 1 3; echo x > l1/gone; echo 1 > l1/d/old1; echo 2 > l1/d/old2
         touch -d '2001-02-03 04:05:06.123456789' l1/a/b/k
         echo new > l2/a/b/new; : > l2/.wh.gone; : > l2/d/.wh..wh..opq; echo fresh > l2/d/fresh
         echo deep > l3/deep/{long}; chmod 600 l3/deep/{long}; ln -s ../a/f l3/deep/up",
        env.scratch.root().display()
    ));
    ["l1", "l2", "l3"].map(|l| env.commit(l, l))
}

#[test]
fn a_pushed_stack_unpacks_with_skopeo_and_umoci_as_its_checkout() {
    require_tools!();
    let env = Env::new();
    let reg = Registry::start(&env);
    three_layers(&env);
    let target = format!("{}/zkit/app:1", reg.addr);
    let out = env
        .zcommit()
        .args(["push", "l1", "l2", "l3", &target])
        .output()
        .unwrap();
    util::stdout_of(out.clone(), "push");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("4 blobs sent"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(reg.uploads(), 4, "three layers and a config");
    // Pushed again: the registry has every blob, so none is sent.
    let again = env
        .zcommit()
        .args(["push", "l1", "l2", "l3", &target])
        .output()
        .unwrap();
    util::stdout_of(again.clone(), "push again");
    assert!(String::from_utf8_lossy(&again.stderr).contains("0 blobs sent"));
    assert_eq!(reg.uploads(), 4, "a second push sends no blob");

    let layout = env.path("from-registry");
    run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{target}"))
        .arg(format!("oci:{}:app", layout.display())));
    let theirs = umoci_unpack(&env, &layout, "app", "bundle");
    let ours = env.checkout("co", &["l1", "l2", "l3"]);
    assert!(ours.contains_key(Path::new("d/fresh")) && !ours.contains_key(Path::new("gone")));
    assert!(!ours.contains_key(Path::new("d/old1")));
    assert_same(&theirs, &ours, "umoci unpack vs zcommit checkout");
}

/// An image made by umoci: a first layer, a second that deletes a file and changes one, a
/// third (a tar of our own, added verbatim) that makes a directory opaque. The tree umoci
/// unpacks it to.
fn umoci_image(env: &Env) -> (PathBuf, Tree) {
    let img = env.path("img");
    let image = format!("{}:w", img.display());
    run(Command::new("umoci").args(["init", "--layout"]).arg(&img));
    run(Command::new("umoci").args(["new", "--image", &image]));
    // A repack adds a layer over the image its bundle was unpacked from: a bundle per layer.
    let layer = |bundle: &str, script: &str| {
        let b = env.path(bundle);
        run(Command::new("umoci")
            .args(["unpack", "--image", &image])
            .arg(&b));
        util::sh(&format!(
            "set -e; cd '{}'; {script}",
            b.join("rootfs").display()
        ));
        run(Command::new("umoci")
            .args(["repack", "--image", &image])
            .arg(&b));
    };
    layer(
        "b1",
        "mkdir -p etc d; echo v1 > etc/conf; echo x > d/x; echo y > d/y
         echo bye > gone; ln -s etc/conf link; printf '#!/bin/sh\\n' > run.sh; chmod 755 run.sh",
    );
    layer("b2", "rm gone; echo v2 > etc/conf");
    let l3 = env.path("l3src");
    util::sh(&format!(
        "set -e; mkdir -p '{0}/d'; : > '{0}/d/.wh..wh..opq'; echo z > '{0}/d/z'
         tar -C '{0}' -cf '{1}' d",
        l3.display(),
        env.path("l3.tar").display()
    ));
    run(Command::new("umoci")
        .args(["raw", "add-layer", "--image", &image])
        .arg(env.path("l3.tar")));
    let expected = umoci_unpack(env, &img, "w", "expected");
    assert!(expected.contains_key(Path::new("d/z")) && !expected.contains_key(Path::new("d/x")));
    assert!(!expected.contains_key(Path::new("gone")));
    (img, expected)
}

#[test]
fn an_image_umoci_built_pulls_from_a_registry_as_the_tree_umoci_unpacks() {
    require_tools!();
    let env = Env::new();
    let reg = Registry::start(&env);
    let (img, expected) = umoci_image(&env);
    let target = format!("{}/world/img:w", reg.addr);
    run(Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:w", img.display()))
        .arg(format!("docker://{target}")));
    let layers = env.ok(&["pull", &target, "--tag", "world"]);
    assert_eq!(layers.lines().count(), 3, "{layers}");
    assert_same(&expected, &env.checkout("co", &["world"]), "pull");
    // Pulled again: every layer is in the store, none is transferred.
    let again = env.zcommit().args(["pull", &target]).output().unwrap();
    assert_eq!(util::stdout_of(again.clone(), "pull again"), layers);
    assert!(String::from_utf8_lossy(&again.stderr).contains("0 new"));
}

#[test]
fn an_image_umoci_built_imports_from_a_layout_and_a_docker_archive() {
    require_tools!();
    let env = Env::new();
    let (img, expected) = umoci_image(&env);
    let layers = env.ok(&["import", &format!("oci:{}:w", img.display()), "--tag", "w"]);
    assert_same(&expected, &env.checkout("co", &["w"]), "import oci:");
    let archive = env.path("img.tar");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:w", img.display()))
        .arg(format!("docker-archive:{}:world/img:w", archive.display())));
    let other = Env::new();
    let from_archive = other.ok(&["import", &format!("docker-archive:{}", archive.display())]);
    assert_eq!(
        from_archive, layers,
        "the same layers, whichever way they came"
    );
}

#[test]
fn export_then_import_gives_the_same_layers_in_every_compression() {
    require_tools!();
    let env = Env::new();
    let digests = three_layers(&env);
    let ours = env.checkout("co", &["l1", "l2", "l3"]);
    env.ok(&["tag", "stack", "l1", "l2", "l3"]);
    for how in ["none", "gzip", "zstd"] {
        let dir = env.path(&format!("out-{how}"));
        let spec = format!("{}:{how}", dir.display());
        let manifest = env.ok(&["export", "--oci", &spec, "--compress", how, "stack"]);
        // The same layers give the same bytes: a second export names the same manifest.
        let other = format!("{}:again", env.path(&format!("again-{how}")).display());
        let manifest2 = env.ok(&["export", "--oci", &other, "--compress", how, "stack"]);
        assert_eq!(manifest, manifest2);
        let fresh = Env::new();
        let imported = fresh.ok(&["import", &format!("oci:{spec}")]);
        assert_eq!(imported.lines().collect::<Vec<_>>(), digests, "{how}");
        if how != "zstd" {
            // umoci 0.4 reads no zstd.
            let theirs = umoci_unpack(&env, &dir, how, &format!("bundle-{how}"));
            assert_same(&theirs, &ours, how);
        }
    }
    // The store remembers each layer's OCI digests.
    for d in &digests {
        let record = std::fs::read_to_string(env.path("store/oci").join(d)).unwrap();
        assert!(record.contains("none sha256:") && record.contains("zstd sha256:"));
    }
}

#[test]
fn a_stack_tag_names_the_whole_stack_for_checkout_and_tags_lists_it() {
    let env = Env::new();
    util::sh(&format!(
        "set -e; cd '{}'; mkdir x y; echo 1 > x/a; echo 2 > y/b",
        env.scratch.root().display()
    ));
    let x = env.commit("x", "x");
    let y = env.commit("y", "y");
    env.ok(&["tag", "both", "x", "y"]);
    let tags = env.ok(&["tags"]);
    assert!(tags.contains(&format!("{x},{y}  both")), "{tags}");
    let co = env.checkout("co", &["both"]);
    assert!(co.contains_key(Path::new("a")) && co.contains_key(Path::new("b")));
    // `ls` wants one layer and says how to name one.
    let out = env.zcommit().args(["ls", "both"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stack of 2 layers"));
}

#[test]
fn a_pull_whose_transfer_breaks_stores_no_layer_and_moves_no_tag() {
    require_tools!();
    let env = Env::new();
    let reg = Registry::start(&env);
    three_layers(&env);
    let target = format!("{}/zkit/broken:1", reg.addr);
    env.ok(&["push", "l1", "l2", "l3", &target]);
    // The registry now serves the top layer's blob cut short, as a dropped connection would.
    let top = std::fs::read_to_string(
        env.path("store/oci").join(
            env.ok(&["tags"])
                .lines()
                .find(|l| l.ends_with("  l3"))
                .unwrap()
                .split(' ')
                .next()
                .unwrap(),
        ),
    )
    .unwrap();
    let gzip = top.lines().find(|l| l.starts_with("gzip ")).unwrap();
    let hex = &gzip.split(' ').nth(1).unwrap()[7..];
    let data = env
        .path("registry-data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let bytes = std::fs::read(&data).unwrap();
    std::fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();

    let other = Env::new();
    let out = other
        .zcommit()
        .args(["pull", &target, "--tag", "t"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    assert_eq!(
        other.ok(&["layers"]),
        "",
        "no layer, not even the complete lower ones"
    );
    assert_eq!(other.ok(&["tags"]), "");
    other.ok(&["verify"]);
}

/// Stops the test's zmount daemon and lazily unmounts its mount point, panics included.
struct Daemon<'e>(&'e Env);

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        let _ = Command::new(util::bin_path("zmount"))
            .args(["stop", "--force"])
            .env("ZMOUNT_DIR", self.0.path("zm"))
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.0.path("zm/mnt"))
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn zmount_run_takes_an_image_reference_and_pulls_it_once() {
    require_tools!();
    crate::require!(util::have_fuse(), "zmount needs /dev/fuse");
    let env = Env::new();
    let reg = Registry::start(&env);
    three_layers(&env);
    let target = format!("{}/zkit/run:1", reg.addr);
    env.ok(&["push", "l1", "l2", "l3", &target]);
    let other = Env::new();
    let _daemon = Daemon(&other);
    let run = || {
        Command::new(util::bin_path("zmount"))
            .args([
                "run",
                &target,
                "--",
                "sh",
                "-c",
                "cat \"$ZKIT_MOUNT/d/fresh\"",
            ])
            .env("ZMOUNT_DIR", other.path("zm"))
            .env("ZKIT_STORE", other.path("store"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let first = run();
    assert_eq!(util::stdout_of(first.clone(), "zmount run"), "fresh\n");
    assert!(String::from_utf8_lossy(&first.stderr).contains("pulling it"));
    let second = run();
    assert_eq!(util::stdout_of(second.clone(), "zmount run"), "fresh\n");
    assert!(
        !String::from_utf8_lossy(&second.stderr).contains("pulling"),
        "pulled once: {}",
        String::from_utf8_lossy(&second.stderr)
    );
}
