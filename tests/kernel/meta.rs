//! Meta images: built once, checked by `zcommit verify`, rebuilt after damage or a killed
//! build, showing every kind of entry as the committed tree had it; what overlayfs cannot
//! show is refused.

use super::{Env, LIST, kernel_ready, listing, sample};
use crate::require;
use crate::util;
use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps};
use zkit::manifest::{Device, Manifest, Node, NodeKind};

fn meta_image(env: &Env, digest: &str) -> std::path::PathBuf {
    env.store().join("meta").join(digest)
}

#[test]
fn a_meta_image_is_built_once_verified_and_rebuilt_when_damaged() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    let digest = env.layer("base", sample);
    env.run("kernel", &["base"], "true");
    let meta = meta_image(&env, &digest);
    assert!(meta.is_file());
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&meta).unwrap());
    env.run("kernel", &["base"], "true");
    let again = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&meta).unwrap());
    assert_eq!(ino, again, "a second run builds nothing");
    assert!(env.verify().contains("1 meta image: all good"));
    // Damage: the redirect of `a` names another blob; verify says so, --repair removes it.
    let mut image = std::fs::read(&meta).unwrap();
    let hex = zkit::digest::Digest::of_blob(b"hello\n").to_hex();
    let at = image
        .windows(hex.len())
        .position(|w| w == hex.as_bytes())
        .expect("the image names the blob of a");
    image[at + 10] = if image[at + 10] == b'0' { b'1' } else { b'0' };
    std::fs::write(&meta, &image).unwrap();
    let out = env.cmd("zcommit").arg("verify").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "meta image differs from its layer: byte {} differs",
            at + 10
        )),
        "{err}"
    );
    env.cmd("zcommit")
        .args(["verify", "--repair"])
        .assert()
        .code(1);
    assert!(!meta.exists());
    let got = env.run("kernel", &["base"], "cat \"$ZKIT_MOUNT\"/a");
    assert_eq!(got, "hello\n");
    assert!(env.verify().contains("all good"));
}

/// A build killed at any moment leaves `.build-HEX` at most, never an image under the
/// layer's name; the next run removes it and builds the whole image.
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
    let meta = meta_image(&env, &digest);
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
            std::fs::remove_file(&meta).unwrap();
        }
    }
    // Leave a half-written image for certain, then use the layer.
    let half = env.store().join("meta").join(format!(".build-{digest}"));
    std::fs::write(&half, vec![0xe2; 4096]).unwrap();
    let got = env.run(
        "kernel",
        &["big"],
        "ls \"$ZKIT_MOUNT\" | wc -l; cat \"$ZKIT_MOUNT\"/d39/f099",
    );
    assert_eq!(got, "40\n39/99");
    assert!(!half.exists());
    assert!(env.verify().contains("1 meta image: all good"));
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

/// Every kind of entry and every size class of the image format, through a kernel run: a
/// directory of 700 long names (many directory blocks), symlinks whose targets fit inline or
/// need a block, devices (a minor above 255), a FIFO, sticky and setuid modes, an empty file
/// and directory, and a different nanosecond time on each. The view lists as the source does.
#[test]
fn an_image_shows_every_kind_and_size_of_entry_as_the_source_has_it() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    env.layer("all", |d| {
        let long = d.join("long");
        std::fs::create_dir(&long).unwrap();
        for i in 0..700 {
            let name = format!("{i:03}{}", "n".repeat(150));
            std::fs::write(long.join(name), format!("{i}\n")).unwrap();
        }
        for len in [1usize, 2000, 3000, 4050] {
            let target = "t/".repeat(len / 2) + &"x".repeat(len % 2);
            std::os::unix::fs::symlink(target, d.join(format!("s{len}"))).unwrap();
        }
        let node = |name: &str, kind, dev| {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                d.join(name),
                kind,
                Mode::from_raw_mode(0o640),
                dev,
            )
            .unwrap()
        };
        node("blk", FileType::BlockDevice, rustix::fs::makedev(8, 1));
        node(
            "chr",
            FileType::CharacterDevice,
            rustix::fs::makedev(4, 300),
        );
        node("fifo", FileType::Fifo, 0);
        std::fs::create_dir(d.join("sticky")).unwrap();
        std::fs::create_dir(d.join("sticky/empty")).unwrap();
        std::fs::write(d.join("suid"), "x\n").unwrap();
        std::fs::write(d.join("empty"), "").unwrap();
        util::sh(&format!(
            "cd '{}' && chmod 1777 sticky && chmod 6755 suid",
            d.display()
        ));
        let mut paths: Vec<_> = util::sh(&format!("cd '{}' && find . -depth", d.display()))
            .lines()
            .map(|p| d.join(p))
            .collect();
        paths.sort();
        for (i, path) in paths.iter().enumerate() {
            let t = Timespec {
                tv_sec: 1_000_000_000 + i as i64 * 1000,
                tv_nsec: (i as i64 * 7_654_321 + 1) % 1_000_000_000,
            };
            let times = Timestamps {
                last_access: t,
                last_modification: t,
            };
            rustix::fs::utimensat(rustix::fs::CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
                .unwrap();
        }
    });
    let src = env.path("src-all");
    let stamps = "stamps() (cd \"$1\" && find . -printf '%p %y %m %T@\\n' | LC_ALL=C sort)\n";
    let want = format!(
        "{}{}",
        listing(&src),
        util::sh(&format!("{stamps}stamps '{}'", src.display()))
    );
    let got = env.run(
        "kernel",
        &["all"],
        &format!("{LIST}{stamps}list \"$ZKIT_MOUNT\"; stamps \"$ZKIT_MOUNT\""),
    );
    assert_eq!(got, want);
    assert!(env.verify().contains("1 meta image: all good"));
}

/// A device number wider than an EROFS inode holds (Linux makes none, but a manifest from
/// elsewhere can hold one) is refused, as a 0:0 device is.
#[test]
fn a_layer_with_a_device_number_wider_than_erofs_holds_is_refused() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    env.layer("base", |_| {});
    let mut root = Node::dir(0o755);
    let wide = Device {
        block: false,
        major: 5000,
        minor: 1,
    };
    root.children_mut().unwrap().insert(
        b"wide".to_vec(),
        Node {
            mode: 0o600,
            mtime: Default::default(),
            kind: NodeKind::Device(wide),
        },
    );
    let store = zkit::store::Store::open(&env.store()).unwrap();
    let layer = store
        .put_layer(&Manifest::from_tree(&root))
        .unwrap()
        .to_hex();
    let out = env
        .cmd("zmount")
        .args(["run", "--backend", "kernel", &layer, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wide") && err.contains("5000:1") && err.contains("--backend fuse"),
        "{err}"
    );
}

/// File-backed EROFS cannot mount an image kept on tmpfs: `--backend kernel` says so in one
/// line naming the way out, before anything is mounted, and `auto` takes the FUSE backend.
#[test]
fn a_store_on_tmpfs_gets_the_fuse_backend_or_an_error_that_names_it() {
    require!(kernel_ready(), "needs root and overlayfs");
    let fs = util::Tmpfs::new("64m");
    let env = Env::new();
    let store = fs.path("store");
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    sample(&src);
    let commit = util::bin("zcommit")
        .env("ZKIT_STORE", &store)
        .args(["--tag", "base"])
        .arg(&src)
        .output()
        .unwrap();
    util::stdout_of(commit, "zcommit on tmpfs");
    let run = |backend: &str| {
        util::bin("zmount")
            .env("ZKIT_STORE", &store)
            .env("ZMOUNT_DIR", env.path("zm"))
            .args([
                "run",
                "--verbose",
                "--backend",
                backend,
                "base",
                "--",
                "sh",
                "-c",
            ])
            .arg("cat \"$ZKIT_MOUNT/a\"")
            .output()
            .unwrap()
    };
    let out = run("kernel");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the store is on tmpfs")
            && err.contains("--backend fuse")
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(out.stdout.is_empty());
    assert!(
        !store.join("meta").exists() || util::names_in(&store.join("meta")).is_empty(),
        "no meta image was built for a store the kernel cannot mount"
    );
    if std::path::Path::new("/dev/fuse").exists() {
        let auto = run("auto");
        // The FUSE run started a daemon for this test's zmount dir: it must not outlive it.
        let stop = util::bin("zmount")
            .env("ZMOUNT_DIR", env.path("zm"))
            .args(["stop", "--force"])
            .output()
            .unwrap();
        util::stdout_of(stop, "zmount stop");
        let err = String::from_utf8_lossy(&auto.stderr).into_owned();
        assert_eq!(
            util::stdout_of(auto, "zmount run --backend auto"),
            "hello\n"
        );
        assert!(err.contains("backend fuse: the store is on tmpfs"), "{err}");
    }
}
