//! A damaged blob is never served as sound: every kind of view answers EIO for it, and an
//! editable view never copies it into a runtime.

use super::*;

/// Flip one byte of the blob holding `content`, keeping its size.
fn damage(env: &Env, content: &str) {
    let store = Store::open(&env.store()).unwrap();
    let digest = zkit::store::hash_file(&tempfile_with(content)).unwrap();
    let path = store.blob_path(&digest);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0x20;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
}

fn tempfile_with(content: &str) -> std::fs::File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(content.as_bytes()).unwrap();
    f
}

#[test]
fn a_damaged_blob_reads_as_eio_in_every_view_and_is_never_copied_up() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("a", &[("bad", "sound content\n"), ("good", "fine\n")]);
    damage(&env, "sound content\n");
    let script = |cmd: &str| -> (i32, String, String) {
        let out = env.edit_run(Some("rt"), &["a"], cmd);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Routed, editable: reading fails, and so does a change that needs a copy-up.
    let (code, out, err) = script("cat \"$ZKIT_MOUNT/good\"; cat \"$ZKIT_MOUNT/bad\"");
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "fine\n");
    assert!(err.contains("Input/output error"), "{err}");
    let (code, _, err) = script("echo more >> \"$ZKIT_MOUNT/bad\"");
    assert_ne!(code, 0, "{err}");
    let scratch = env.store().join("runtimes/rt");
    let copied = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("grep -r -l 'more' {} || true", scratch.display()))
        .output()
        .unwrap();
    assert!(copied.stdout.is_empty(), "the damaged blob was copied up");
    // Not even in part: the copy that found the damage on the way was removed, work dir and all.
    let partial = util::sh(&format!(
        "grep -r -l 'ound content' {} || true",
        env.store().join("runtimes/rt").display()
    ));
    assert!(partial.is_empty(), "a partial copy was left: {partial}");

    // Routed, read-only, and a single-view mount.
    let out = env
        .zmount()
        .args(["run", "a", "--", "cat"])
        .arg(env.mnt().join("bad"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let mnt = env.scratch.path("single");
    std::fs::create_dir(&mnt).unwrap();
    env.zmount()
        .arg("mount")
        .arg("a")
        .arg(&mnt)
        .assert()
        .success();
    let bad = std::fs::read(mnt.join("bad"));
    let good = std::fs::read(mnt.join("good"));
    env.zmount().arg("umount").arg(&mnt).assert().success();
    assert_eq!(bad.unwrap_err().raw_os_error(), Some(libc::EIO));
    assert_eq!(good.unwrap(), b"fine\n");
}

/// `zmount run --edit --name NAME a -- sh -c SCRIPT`: its exit code and stderr.
fn edit_run(env: &Env, name: &str, script: &str) -> (Option<i32>, String) {
    let out = env.edit_run(Some(name), &["a"], script);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn commit_runtime(env: &Env, name: &str) -> std::process::Output {
    env.cmd("zcommit")
        .args(["--runtime", name])
        .output()
        .unwrap()
}

/// With the store on a reflinking file system a copy-up reads nothing, so it cannot see the
/// damage: the commit proves the blob instead, and refuses while a copy of a damaged blob is
/// in the runtime. A sound blob's copy commits as usual.
#[test]
fn a_reflinked_copy_of_a_damaged_blob_is_refused_at_commit() {
    require!(util::have_fuse(), "needs root and /dev/fuse");
    require!(
        util::have("mkfs.xfs"),
        "needs xfsprogs for a reflinking store"
    );
    let xfs = util::LoopFs::new("xfs");
    let env = Env::new();
    // The store on XFS (the test's directory stays where the daemon's socket can be).
    std::fs::remove_dir(env.store()).unwrap();
    std::fs::create_dir(xfs.path("store")).unwrap();
    std::os::unix::fs::symlink(xfs.path("store"), env.store()).unwrap();
    env.layer("a", &[("bad", "sound content\n"), ("good", "fine\n")]);
    damage(&env, "sound content\n");

    let (code, err) = edit_run(&env, "rt", "echo more >> \"$ZKIT_MOUNT/bad\"");
    assert_eq!(code, Some(0), "a reflink copy-up reads nothing: {err}");
    let runtime = env.store().join("runtimes/rt");
    let state = std::fs::read(runtime.join("state")).unwrap();
    let out = commit_runtime(&env, "rt");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a damaged blob was committed");
    assert!(err.contains("bad") && err.contains("damaged"), "{err}");
    assert_eq!(
        std::fs::read(runtime.join("state")).unwrap(),
        state,
        "the runtime changed"
    );

    // Repairing the store does not make the copy sound: it shares the damaged blocks.
    env.cmd("zcommit")
        .args(["verify", "--repair"])
        .output()
        .unwrap();
    let fix = env.path("fix");
    std::fs::create_dir(&fix).unwrap();
    std::fs::write(fix.join("bad"), "sound content\n").unwrap();
    env.cmd("zcommit").arg(&fix).assert().success();
    let out = commit_runtime(&env, "rt");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a copy of a damaged blob was committed"
    );
    assert!(err.contains("bad") && err.contains("replaced"), "{err}");
    assert_eq!(
        std::fs::read(runtime.join("state")).unwrap(),
        state,
        "the runtime changed"
    );

    // The copy gone, nothing needs proving; a sound blob's reflinked copy commits.
    let (code, err) = edit_run(
        &env,
        "rt",
        "rm \"$ZKIT_MOUNT/bad\" && echo more >> \"$ZKIT_MOUNT/good\"",
    );
    assert_eq!(code, Some(0), "{err}");
    let out = commit_runtime(&env, "rt");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.edit_run(
        Some("rt"),
        &[],
        "cat \"$ZKIT_MOUNT/good\"; ls \"$ZKIT_MOUNT\"",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "fine\nmore\ngood\n");
}
