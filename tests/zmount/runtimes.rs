//! Editable runs and mounts and the runtimes they leave in the store.

use super::*;

fn runtimes(env: &Env) -> String {
    let out = env.cmd("zcommit").arg("runtimes").output().unwrap();
    util::stdout_of(out, "zcommit runtimes")
}

#[test]
fn an_unnamed_edit_run_that_changes_nothing_leaves_no_runtime() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("a", &[("x", "1")]);
    let out = env
        .zmount()
        .args(["run", "--edit", "a", "--", "cat"])
        .arg(env.mnt().join("x"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1");
    assert!(err.contains("has no changes; removed it"), "{err}");
    assert!(!runtimes(&env).contains("run-"), "{}", runtimes(&env));

    // A named runtime is the user's, changed or not; a changed unnamed one is kept.
    env.zmount()
        .args(["run", "--edit", "--name", "mine", "a", "--", "true"])
        .assert()
        .success();
    let out = env
        .zmount()
        .args([
            "run",
            "--edit",
            "a",
            "--",
            "sh",
            "-c",
            "echo 2 > \"$ZKIT_MOUNT/x\"",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let list = runtimes(&env);
    assert!(list.contains("mine  clean"), "{list}");
    assert_eq!(list.matches("run-").count(), 1, "{list}");
    assert!(list.contains("changed"), "{list}");
}

#[test]
fn a_failed_unnamed_edit_run_leaves_no_runtime() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("a", &[("x", "1")]);
    let out = env
        .zmount()
        .args(["run", "--edit", "a", "--", "/no/such/cmd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(!runtimes(&env).contains("run-"), "{}", runtimes(&env));
}

#[test]
fn mount_and_run_name_a_runtime_the_same_way() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("a", &[("x", "1")]);
    let mnt = env.scratch.path("single");
    std::fs::create_dir(&mnt).unwrap();
    env.zmount()
        .args(["mount", "--edit", "--name", "dev", "a"])
        .arg(&mnt)
        .assert()
        .success();
    std::fs::write(mnt.join("made"), "by the mount\n").unwrap();
    env.zmount().arg("umount").arg(&mnt).assert().success();
    let out = env.edit_run(
        Some("dev"),
        &[],
        "cat \"$ZKIT_MOUNT/made\" \"$ZKIT_MOUNT/x\"",
    );
    assert_eq!(
        util::stdout_of(out, "zmount run --name dev"),
        "by the mount\n1"
    );

    // Without --name both make a fresh runtime and say its name.
    let out = env
        .zmount()
        .args(["mount", "--edit", "a"])
        .arg(&mnt)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.starts_with("zmount: changes go to runtime run-"),
        "{err}"
    );
    env.zmount().arg("umount").arg(&mnt).assert().success();
    // As with run: unchanged, it goes at unmount (the server removes it as it exits);
    // changed, it stays.
    let gone = (0..250).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        !runtimes(&env).contains("run-")
    });
    assert!(gone, "{}", runtimes(&env));
    env.zmount()
        .args(["mount", "--edit", "a"])
        .arg(&mnt)
        .assert()
        .success();
    std::fs::write(mnt.join("new"), "kept\n").unwrap();
    env.zmount().arg("umount").arg(&mnt).assert().success();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let list = runtimes(&env);
    assert_eq!(list.matches("run-").count(), 1, "{list}");
    assert!(list.contains("changed"), "{list}");
}
