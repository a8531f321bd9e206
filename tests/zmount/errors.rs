//! Errors that name the fix: usage, FUSE permissions, busy mounts.

use super::*;

#[test]
fn run_without_double_dash_says_to_use_it() {
    let env = Env::new();
    let out = env.zmount().args(["run", "a", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("zmount: run: the command must come after `--` (zmount run LAYER... -- "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // Other usage errors stay clap's.
    let out = env.zmount().args(["run", "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<LAYER>"));
}

#[test]
fn a_user_without_access_to_dev_fuse_is_told_what_to_ask_for() {
    require!(
        util::is_root(),
        "needs root (to set up a private /dev/fuse)"
    );
    require!(
        have("unshare") && have("setpriv"),
        "needs unshare and setpriv (util-linux)"
    );
    let env = Env::new();
    let mnt = env.scratch.path("single");
    std::fs::create_dir(&mnt).unwrap();
    // In a private mount namespace, a /dev/fuse only root may open, whatever the host has.
    let node = env.scratch.path("fuse");
    let script = format!(
        "mknod '{node}' c 10 229 && chmod 0600 '{node}' && mount --bind '{node}' /dev/fuse && \
         exec setpriv --reuid 65534 --regid 65534 --clear-groups '{bin}' mount a '{mnt}'",
        node = node.display(),
        bin = bin_path("zmount").display(),
        mnt = mnt.display(),
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env("ZKIT_STORE", env.store())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(
            "zmount: /dev/fuse: permission denied (mode 0600, owner root, group root) (ask an \
             administrator for access: "
        ),
        "{err}"
    );
    for fix in ["group", "udev rule", "run zmount as root"] {
        assert!(err.contains(fix), "names {fix}: {err}");
    }
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn umount_of_a_busy_mount_names_who_uses_it_and_dash_l() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("a", &[("x", "1")]);
    let mnt = env.scratch.path("single");
    std::fs::create_dir(&mnt).unwrap();
    env.zmount()
        .arg("mount")
        .arg("a")
        .arg(&mnt)
        .assert()
        .success();
    let mut inside = Command::new("sh")
        .arg("-c")
        .arg(format!("cd '{}' && exec sleep 60", mnt.display()))
        .spawn()
        .unwrap();
    let mut reader = Command::new("sleep")
        .arg("60")
        .stdin(std::fs::File::open(mnt.join("x")).unwrap())
        .spawn()
        .unwrap();
    util::wait_for("sleep in the mount", TIMEOUT, || {
        std::fs::read_link(format!("/proc/{}/cwd", inside.id())).is_ok_and(|c| c.starts_with(&mnt))
    });

    let out = env.zmount().arg("umount").arg(&mnt).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "zmount: {}: mount point is in use by pid {} (sleep, {}), pid {} (sleep, {}) (end them \
         first, or detach it now with `zmount umount -l`",
        mnt.display(),
        inside.id().min(reader.id()),
        if inside.id() < reader.id() {
            "cwd"
        } else {
            "open file"
        },
        inside.id().max(reader.id()),
        if inside.id() < reader.id() {
            "open file"
        } else {
            "cwd"
        },
    );
    assert!(err.starts_with(&want), "{err}\nwant: {want}");
    assert!(util::mounted(&mnt), "a refused unmount leaves the mount");

    for c in [&mut inside, &mut reader] {
        let _ = c.kill();
        let _ = c.wait();
    }
    env.zmount().arg("umount").arg(&mnt).assert().success();
}
