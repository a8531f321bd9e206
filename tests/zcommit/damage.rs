//! Damaged and missing blobs: healed by a commit that reads the file, refused by checkout
//! (which takes back what it made), removed by `verify --repair`.

use super::*;

/// Flip one bit of a stored blob, as a failing disk or a stray write would (the blob is
/// read-only; root writes it anyway, others make it writable first).
fn damage(blob: &Path) {
    fs::set_permissions(blob, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(blob).unwrap();
    bytes[3] ^= 0x20;
    fs::write(blob, bytes).unwrap();
    fs::set_permissions(blob, fs::Permissions::from_mode(0o444)).unwrap();
}

/// A tree with nested and read-only directories, so that undoing a checkout has work to do.
fn nested_tree(src: &Path) {
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    fs::write(src.join("a"), b"precious data").unwrap();
    fs::write(src.join("sub/b"), b"other data").unwrap();
    fs::write(src.join("sub/deeper/c"), b"more data").unwrap();
    fs::set_permissions(src.join("sub"), fs::Permissions::from_mode(0o555)).unwrap();
}

#[test]
fn a_commit_that_reads_a_file_heals_its_damaged_blob() {
    let s = Scratch::new();
    let (store, src) = (s.path("store"), s.path("src"));
    nested_tree(&src);
    let layer = commit(&store, &[], &src);
    let victim = blob_of(&store, b"precious data");
    for args in [&["--no-cache"][..], &[]] {
        damage(&victim);
        // --no-cache reads every file; a copy of the tree elsewhere has no cache yet.
        let dir = match args.is_empty() {
            true => {
                let copy = s.path("copy");
                sh(&format!("cp -a '{}' '{}'", src.display(), copy.display()));
                copy
            }
            false => src.clone(),
        };
        let out = zc(&store).args(args).arg(&dir).output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), layer);
        let err = stderr_of(&out);
        assert!(
            err.contains(&format!("{}: warning: its blob", dir.join("a").display())),
            "{err}"
        );
        assert_eq!(fs::read(&victim).unwrap(), b"precious data");
        assert_eq!(fs::metadata(&victim).unwrap().mode() & 0o7777, 0o444);
        verify_clean(&store);
    }
}

#[test]
fn checkout_refuses_a_damaged_blob_and_leaves_no_destination() {
    let s = Scratch::new();
    let (store, src) = (s.path("store"), s.path("src"));
    nested_tree(&src);
    let layer = commit(&store, &[], &src);
    let victim = blob_of(&store, b"other data");
    damage(&victim);
    let empty = s.path("empty");
    fs::create_dir(&empty).unwrap();
    fs::set_permissions(&empty, fs::Permissions::from_mode(0o750)).unwrap();
    // A copy is read anyway and always checked; linked files are checked with --verify.
    for args in [
        &["--link-mode", "copy"][..],
        &["--link-mode", "hardlink", "--verify"],
    ] {
        for dest in [s.path("out"), empty.clone()] {
            let out = zc(&store)
                .arg("checkout")
                .args(args)
                .arg(&dest)
                .arg(&layer)
                .output()
                .unwrap();
            let err = stderr_of(&out);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(
                err.contains(&victim.display().to_string())
                    && err.contains(&format!("layer {layer}"))
                    && err.contains("sub/b"),
                "{err}"
            );
            if dest == empty {
                assert!(util::names_in(&empty).is_empty(), "{args:?}");
                assert_eq!(fs::metadata(&empty).unwrap().mode() & 0o7777, 0o750);
            } else {
                assert!(!dest.exists(), "{args:?}: half-made destination left");
            }
        }
    }
}

#[test]
fn checkout_names_a_missing_blob_and_the_layer_that_needs_it() {
    let s = Scratch::new();
    let (store, lower, upper) = (s.path("store"), s.path("lower"), s.path("upper"));
    nested_tree(&lower);
    fs::create_dir_all(upper.join("etc")).unwrap();
    fs::write(upper.join("etc/conf"), b"upper only").unwrap();
    let l = commit(&store, &[], &lower);
    let u = commit(&store, &[], &upper);
    let victim = blob_of(&store, b"upper only");
    fs::remove_file(&victim).unwrap();
    let dest = s.path("out");
    let out = zc(&store)
        .arg("checkout")
        .arg(&dest)
        .args([&l, &u])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&victim.display().to_string())
            && err.contains("missing")
            && err.contains(&format!("layer {u}"))
            && err.contains("etc/conf"),
        "{err}"
    );
    assert!(!dest.exists(), "half-made destination left");
}

#[test]
fn verify_repair_removes_damaged_objects_and_the_next_commit_restores_them() {
    let s = Scratch::new();
    let (store, src) = (s.path("store"), s.path("src"));
    nested_tree(&src);
    let layer = commit(&store, &[], &src);
    let victim = blob_of(&store, b"precious data");
    damage(&victim);
    let out = zc(&store).args(["verify", "--repair"]).output().unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{}: removed", victim.display())),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 removed"));
    assert!(!victim.exists());
    // Missing now, and said so, rather than served damaged.
    let out = zc(&store).arg("verify").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("missing"), "{}", stderr_of(&out));
    // Even a commit through the cache puts it back: the blob is not there.
    assert_eq!(commit(&store, &[], &src), layer);
    verify_clean(&store);
    let dest = s.path("out");
    checkout(&store, &dest, &[&layer]);
    assert_eq!(snapshot(&src), snapshot(&dest));
}

#[test]
fn an_io_error_midway_through_a_checkout_leaves_no_destination() {
    require!(util::have("strace"), "strace injects the error");
    let s = Scratch::new();
    let (store, src) = (s.path("store"), s.path("src"));
    nested_tree(&src);
    let layer = commit(&store, &[], &src);
    // The disk fills up on the 3rd file's copy, once every directory and two files are in.
    let dest = s.path("out");
    let out = injected(
        &store,
        "copy_file_range:error=ENOSPC:when=3",
        &[
            "-j".as_ref(),
            "1".as_ref(),
            "checkout".as_ref(),
            dest.as_os_str(),
            layer.as_ref(),
        ],
    );
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!dest.exists(), "half-made destination left");
}

#[test]
fn a_system_that_refuses_every_new_thread_still_commits_checks_out_and_diffs() {
    require!(util::have("strace"), "strace refuses the threads");
    let s = Scratch::new();
    let (store, src) = (s.path("store"), s.path("src"));
    nested_tree(&src);
    let layer = commit(&store, &[], &src);
    // As at the user's process limit: every clone3 fails with EAGAIN, so a tool that needs a
    // second thread must say so and one that only goes faster with more must do without.
    let refused = |args: &[&OsStr]| {
        let jobs: [&OsStr; 2] = ["-j".as_ref(), "4".as_ref()];
        let out = injected(&store, "clone3:error=EAGAIN", &[&jobs[..], args].concat());
        assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    fs::write(src.join("new"), "new\n").unwrap();
    let again = refused(&[src.as_os_str()]);
    let dest = s.path("out");
    refused(&["checkout".as_ref(), dest.as_os_str(), again.trim().as_ref()]);
    assert_eq!(snapshot(&src), snapshot(&dest));
    let diff = refused(&["diff".as_ref(), layer.as_ref(), again.trim().as_ref()]);
    assert!(diff.contains("new"), "{diff}");
    verify_clean(&store);
}

/// `zcommit --store STORE ARGS` under strace, which injects the fault `inject`.
fn injected(store: &Path, inject: &str, args: &[&OsStr]) -> Output {
    std::process::Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "-e"])
        .arg(format!("inject={inject}"))
        .arg(util::bin_path("zcommit"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}
