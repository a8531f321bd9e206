//! The store's own safety: tags that name what a runtime shows, a tree that holds the store,
//! who can read the store, tag files that went bad.

use super::*;

#[test]
fn a_tag_on_an_unchanged_runtime_points_at_its_top_layer_or_fails() {
    use zkit::runtime::{self, Runtime};
    let s = Scratch::new();
    let store = s.path("store");
    let (old, base) = (s.path("old"), s.path("base"));
    for (dir, body) in [(&old, "old output"), (&base, "current output")] {
        fs::create_dir(dir).unwrap();
        fs::write(dir.join("out"), body).unwrap();
    }
    let old = commit(&store, &["--tag", "build/out"], &old);
    let base = commit(&store, &[], &base);
    let st = zkit::store::Store::open(&store).unwrap();
    drop(Runtime::create(&st, "dev", &[Digest::parse(&base).unwrap()]).unwrap());
    drop(Runtime::create(&st, "empty", &[]).unwrap());
    let tag_of = |name: &str| -> String {
        let out = zc(&store).arg("tags").output().unwrap();
        let tags = String::from_utf8(out.stdout).unwrap();
        let line = tags.lines().find(|l| l.ends_with(&format!("  {name}")));
        line.unwrap().split(' ').next().unwrap().to_string()
    };
    assert_eq!(tag_of("build/out"), old);

    // Nothing to commit on an empty stack: no layer to tag, so it fails and keeps the runtime.
    let out = zc(&store)
        .args(["--runtime", "empty", "--discard", "--tag", "build/out"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("no base layer"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(tag_of("build/out"), old);
    assert!(Runtime::open(&st, "empty").is_ok());

    // The tag starts on the old layer each time: a stale tag must not survive.
    for discard in [false, true] {
        zc(&store)
            .args(["tag", "build/out", &old])
            .assert()
            .success();
        let mut cmd = zc(&store);
        cmd.args(["--runtime", "dev", "--tag", "build/out"]);
        if discard {
            cmd.arg("--discard");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert!(out.stdout.is_empty());
        assert_eq!(tag_of("build/out"), base, "discard: {discard}");
    }
    assert!(runtime::list(&st).unwrap().iter().all(|r| r.name != "dev"));
    let dest = s.path("checked-out");
    checkout(&store, &dest, &["build/out"]);
    assert_eq!(fs::read(dest.join("out")).unwrap(), b"current output");
}

#[test]
fn a_tree_that_holds_the_store_is_committed_without_it_and_the_same_each_time() {
    let s = Scratch::new();
    let src = s.path("src");
    let store = src.join("cache/zkit");
    fs::create_dir_all(src.join("cache")).unwrap();
    fs::write(src.join("cache/kept"), b"mine").unwrap();
    fs::write(src.join("f"), b"content").unwrap();
    let mut layers = Vec::new();
    for _ in 0..3 {
        let out = zc(&store).arg(&src).output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let err = stderr_of(&out);
        let said = format!("{}: warning: this is the store", store.display());
        assert_eq!(err.matches(&said).count(), 1, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        layers.push(String::from_utf8(out.stdout).unwrap().trim().to_string());
    }
    assert!(layers.iter().all(|l| *l == layers[0]), "{layers:?}");
    let listing = zc(&store)
        .arg("ls")
        .arg(&layers[0])
        .output()
        .unwrap()
        .stdout;
    let listing = String::from_utf8_lossy(&listing);
    assert!(
        listing.contains("cache/kept") && !listing.contains("zkit"),
        "{listing}"
    );
    // The store itself is no tree to commit.
    let out = zc(&store).arg(&store).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("is the store itself"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn a_new_store_is_private_and_a_shared_one_is_pointed_out() {
    require!(util::is_root(), "reading as another user needs root");
    let s = Scratch::new();
    // The scratch directory itself must not be what stops the other user.
    fs::set_permissions(s.root(), fs::Permissions::from_mode(0o755)).unwrap();
    let (store, src) = (s.path("store"), s.path("src"));
    fs::create_dir(&src).unwrap();
    fs::write(src.join("secret"), b"password=hunter2").unwrap();
    fs::set_permissions(src.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    let out = zc(&store).arg(&src).output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(fs::metadata(&store).unwrap().mode() & 0o7777, 0o700);
    let blob = blob_of(&store, b"password=hunter2");
    let read_as_nobody = || {
        std::process::Command::new("runuser")
            .args(["-u", "nobody", "--", "cat"])
            .arg(&blob)
            .output()
            .unwrap()
    };
    let peek = read_as_nobody();
    assert!(
        !peek.status.success(),
        "another user read a 0600 file's blob"
    );
    assert!(!String::from_utf8_lossy(&peek.stdout).contains("hunter2"));
    // Shared on purpose (or by accident): every run says so, once.
    fs::set_permissions(&store, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(read_as_nobody().status.success());
    let out = zc(&store).arg("tags").output().unwrap();
    assert!(out.status.success());
    let err = stderr_of(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "zcommit: {}: warning: the store is mode 0755",
            store.display()
        )) && err.contains("chmod 700"),
        "{err}"
    );
    let out = zc(&store).args(["-q", "tags"]).output().unwrap();
    assert!(out.stderr.is_empty());
}

#[test]
fn a_garbage_tag_is_named_and_the_sound_ones_are_still_listed() {
    let s = Scratch::new();
    let (store, src) = (s.path("store"), s.path("src"));
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    let layer = commit(&store, &["--tag", "app/1.0"], &src);
    zc(&store)
        .args(["tag", "zz-last", &layer])
        .assert()
        .success();
    zc(&store)
        .args(["tag", "app/2.0", &layer])
        .assert()
        .success();
    let bad = store.join("tags/app/2.0");
    fs::write(&bad, b"\x00garbage, not a digest\n").unwrap();
    let out = zc(&store).arg("tags").output().unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{layer}  app/1.0\n{layer}  zz-last\n")
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&bad.display().to_string()), "{err}");
    // verify names it too, among everything else it checks.
    let out = zc(&store).arg("verify").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains(&bad.display().to_string()));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 tags"));
}
