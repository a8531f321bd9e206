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
    require!(util::have_fuse(), "needs root and /dev/fuse");
    let env = Env::new();
    env.layer("a", &[("bad", "sound content\n"), ("good", "fine\n")]);
    damage(&env, "sound content\n");
    let script = |cmd: &str| -> (i32, String, String) {
        let out = env
            .zmount()
            .args(["run", "--edit", "--name", "rt", "a", "--", "sh", "-c", cmd])
            .output()
            .unwrap();
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
