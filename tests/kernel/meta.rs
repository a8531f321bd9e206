//! Meta trees: built once, checked by `zcommit verify`, rebuilt after damage or a killed
//! build; what overlayfs cannot show is refused.

use super::{Env, kernel_ready, sample};
use crate::require;
use crate::util;

fn meta_dir(env: &Env, digest: &str) -> std::path::PathBuf {
    env.store().join("meta").join(digest)
}

#[test]
fn a_meta_tree_is_built_once_verified_and_rebuilt_when_damaged() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    let digest = env.layer("base", sample);
    env.run("kernel", &["base"], "true");
    let meta = meta_dir(&env, &digest);
    assert!(meta.is_dir());
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&meta).unwrap());
    env.run("kernel", &["base"], "true");
    let again = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&meta).unwrap());
    assert_eq!(ino, again, "a second run builds nothing");
    assert!(env.verify().contains("1 meta tree: all good"));
    // Damage: a file's redirect names another blob; verify says so, --repair removes it.
    util::sh(&format!(
        "setfattr -n trusted.overlay.redirect -v /00/00 '{}' 2>/dev/null || \
         python3 -c 'import os,sys; os.setxattr(sys.argv[1], \"trusted.overlay.redirect\", b\"/00/00\")' '{}'",
        meta.join("a").display(),
        meta.join("a").display()
    ));
    let out = env.cmd("zcommit").arg("verify").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/a: redirect differs"));
    env.cmd("zcommit")
        .args(["verify", "--repair"])
        .assert()
        .code(1);
    assert!(!meta.exists());
    let got = env.run("kernel", &["base"], "cat \"$ZKIT_MOUNT\"/a");
    assert_eq!(got, "hello\n");
    assert!(env.verify().contains("all good"));
}

/// A build killed at any moment leaves `.build-HEX` at most, never a tree under the layer's
/// name; the next run removes it and builds the whole tree.
#[test]
fn a_meta_build_killed_midway_is_redone_never_used() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    let digest = env.layer("big", |d| {
        for i in 0..40 {
            let sub = d.join(format!("d{i:02}"));
            std::fs::create_dir(&sub).unwrap();
            for j in 0..100 {
                std::fs::write(sub.join(format!("f{j:03}")), format!("{i}/{j}")).unwrap();
            }
        }
    });
    let meta = meta_dir(&env, &digest);
    for delay_ms in [5u64, 20, 40, 80, 150] {
        let mut child = env
            .std_cmd("zmount")
            .args(["run", "--backend", "kernel", "big", "--", "true"])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        if meta.exists() {
            // Finished before the kill: complete, or verify would say otherwise.
            assert!(
                env.verify().contains("all good"),
                "after a kill at {delay_ms} ms"
            );
            std::fs::remove_dir_all(&meta).unwrap();
        }
    }
    // Leave a half-built tree for certain, then use the layer.
    let half = env.store().join("meta").join(format!(".build-{digest}"));
    std::fs::create_dir_all(half.join("d00")).unwrap();
    let got = env.run(
        "kernel",
        &["big"],
        "ls \"$ZKIT_MOUNT\" | wc -l; cat \"$ZKIT_MOUNT\"/d39/f099",
    );
    assert_eq!(got, "40\n39/99");
    assert!(!half.exists());
    assert!(env.verify().contains("1 meta tree: all good"));
}

/// A character device 0:0 in a layer is a device to zkit and FUSE, and a whiteout to
/// overlayfs: the kernel backend refuses the layer with a line that names --backend fuse.
#[test]
fn a_layer_with_a_char_device_0_0_is_refused_by_the_kernel_backend() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    env.layer("dev", |d| {
        util::sh(&format!("mknod '{}' c 0 0", d.join("null0").display()));
    });
    let out = env
        .cmd("zmount")
        .args(["run", "--backend", "kernel", "dev", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("null0") && err.contains("--backend fuse"),
        "{err}"
    );
    assert!(
        !env.store()
            .join("meta")
            .read_dir()
            .unwrap()
            .any(|e| { e.unwrap().file_name().to_string_lossy().len() == 64 })
    );
}

/// A whiteout or opaque directory in a layer reaches overlayfs as its own records.
#[test]
fn whiteouts_and_opaque_dirs_of_layers_stack_in_the_kernel() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    env.layer("base", sample);
    env.run(
        "kernel",
        &["--edit", "--name", "r", "base"],
        "cd \"$ZKIT_MOUNT\"; rm a; rm -r dir; mkdir dir; echo n > dir/n",
    );
    env.commit_runtime("r", "top");
    let got = env.run("kernel", &["base", "top"], "cd \"$ZKIT_MOUNT\"; ls; ls dir");
    assert_eq!(got, "dir\nempty\nfifo\nlink\nn\n");
}
