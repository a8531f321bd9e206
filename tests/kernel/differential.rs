//! The same script of changes in a plain directory, a kernel runtime and a FUSE runtime: the
//! three trees are identical, and so are the checkouts of what each commits. And the editable
//! behaviour both backends share, as one list of cases run over each.

use super::{Env, LIST, kernel_ready, listing};
use crate::require;
use crate::util;
use std::path::Path;

/// The base layer the script changes.
fn base(d: &Path) {
    util::sh(&format!(
        "cd '{}' && mkdir -p base dir/inner dir/sub deldir/y emptyish && \
         echo one > base/file1 && echo start > base/append && echo m > base/modeonly && \
         echo g > base/gone && echo r > base/re && echo l > base/linkme && echo mv > base/movefile && \
         echo a > dir/a && echo b > dir/inner/b && echo c > dir/sub/c && \
         echo x > deldir/x && echo z > deldir/y/z && echo q > emptyish/q && \
         ln -s base/file1 link && chmod 640 base/modeonly",
        d.display()
    ));
}

/// Creates, writes, appends, chmods of layer files, renames of layer directories and files,
/// deletes, recreations over whiteouts, hard links (new and layer files) and symlinks.
const SCRIPT: &str = "
echo new > created
printf w > base/file1
echo more >> base/append
chmod 600 base/modeonly
mv dir dir2
echo inside >> dir2/sub/c
mv dir2/inner inner_out
rm base/gone
rm -r deldir
rm base/re && echo back > base/re
rm -r emptyish && mkdir emptyish && echo n > emptyish/n
ln created hard
ln base/linkme base/linked
ln -s created sym
mkdir -p newdir/sub && echo deep > newdir/sub/f
mv base/movefile moved_file
rm link && ln -s dir2/a link
";

fn in_view(env: &Env, backend: &str, name: &str) -> String {
    let script = format!("{LIST}\ncd \"$ZKIT_MOUNT\"\n{SCRIPT}\nlist \"$ZKIT_MOUNT\"");
    env.run(backend, &["--edit", "--name", name, "base"], &script)
}

#[test]
fn one_script_in_a_plain_dir_a_kernel_and_a_fuse_runtime_gives_one_tree_and_one_commit() {
    require!(
        kernel_ready() && util::have_fuse(),
        "needs root, overlayfs and /dev/fuse"
    );
    let env = Env::new();
    env.layer("base", base);
    // Plain: a checkout of the base, changed by the script.
    env.checkout("plain", &["base"]);
    util::sh(&format!("cd '{}'\n{SCRIPT}", env.path("plain").display()));
    let plain = listing(&env.path("plain"));

    let kernel = in_view(&env, "kernel", "k");
    let fuse = in_view(&env, "fuse", "f");
    let _ = env.cmd("zmount").arg("stop").output();
    assert_eq!(kernel, plain, "kernel runtime vs plain directory");
    assert_eq!(fuse, plain, "FUSE runtime vs plain directory");

    // The commits: each runtime's layer over the base checks out as the plain tree does
    // (hard links become separate files in a layer, in every one of the three).
    // What a commit would record, asked before it: the same as the diff of the layers after.
    let diff = |args: &[&str]| {
        let out = env.cmd("zcommit").arg("diff").args(args).output().unwrap();
        util::stdout_of(out, "zcommit diff")
    };
    let before = diff(&["--runtime", "k"]);
    env.commit_runtime("k", "k1");
    assert_eq!(
        before,
        diff(&["base", "base,k1"]),
        "zcommit diff --runtime of a kernel runtime"
    );
    assert!(
        before.contains("D\tdir\n") && before.contains("A\tdir2/a\n"),
        "{before}"
    );
    env.commit_runtime("f", "f1");
    env.commit_dir("p1", &env.path("plain"));
    let from_plain = env.checkout("out-p", &["p1"]);
    assert_eq!(
        env.checkout("out-k", &["base", "k1"]),
        from_plain,
        "kernel commit"
    );
    assert_eq!(
        env.checkout("out-f", &["base", "f1"]),
        from_plain,
        "FUSE commit"
    );
    assert!(env.verify().contains("all good"));
}

/// A kernel runtime resumed shows what the last run left, over a remount; then it commits.
#[test]
fn editable_cases_behave_alike_on_both_backends() {
    require!(
        kernel_ready() && util::have_fuse(),
        "needs root, overlayfs and /dev/fuse"
    );
    // (setup script, check script, expected output of the check), run in a fresh runtime
    // per backend, the check in a second run (the runtime resumed).
    let cases: &[(&str, &str, &str)] = &[
        ("echo x >> base/file1", "cat base/file1", "one\nx\n"),
        (
            "chmod 700 base/file1",
            "stat -c %a base/file1; cat base/file1",
            "700\none\n",
        ),
        (
            "mv dir d2",
            "ls; cat d2/inner/b",
            "base\nd2\ndeldir\nemptyish\nlink\nb\n",
        ),
        ("rm -r dir && mkdir dir", "ls dir | wc -l", "0\n"),
        (
            "rm base/file1 && echo again > base/file1",
            "cat base/file1",
            "again\n",
        ),
        (
            "ln base/linkme hl && echo more >> hl",
            "cat hl base/linkme",
            "l\nmore\nl\nmore\n",
        ),
        (
            "mkfifo p && ln -s p s",
            "stat -c %F p; readlink s",
            "fifo\np\n",
        ),
        ("truncate -s 2 base/append", "cat base/append", "st"),
    ];
    let env = Env::new();
    env.layer("base", base);
    for backend in ["kernel", "fuse"] {
        for (i, (setup, check, want)) in cases.iter().enumerate() {
            let name = format!("{backend}-{i}");
            let setup = format!("cd \"$ZKIT_MOUNT\"; {setup}");
            env.run(backend, &["--edit", "--name", &name, "base"], &setup);
            let check = format!("cd \"$ZKIT_MOUNT\"; {check}");
            let got = env.run(backend, &["--edit", "--name", &name], &check);
            assert_eq!(&got, want, "{backend}: {setup}");
            // And committed: the layer shows the same.
            env.commit_runtime(&name, &format!("c/{name}"));
            let got = env.run(backend, &["base", &format!("c/{name}")], &check);
            assert_eq!(&got, want, "{backend}, committed: {setup}");
        }
    }
    let _ = env.cmd("zmount").arg("stop").output();
}

/// A runtime written by one backend is refused by the other, with a line naming the one to use.
#[test]
fn a_runtime_refuses_the_other_backend_by_name() {
    require!(
        kernel_ready() && util::have_fuse(),
        "needs root, overlayfs and /dev/fuse"
    );
    let env = Env::new();
    env.layer("base", base);
    env.run(
        "kernel",
        &["--edit", "--name", "k", "base"],
        "echo x > \"$ZKIT_MOUNT\"/new",
    );
    let out = env
        .cmd("zmount")
        .args([
            "run",
            "--backend",
            "fuse",
            "--edit",
            "--name",
            "k",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--backend kernel"), "{err}");
    // auto resumes it with the backend that wrote it.
    let got = env.run(
        "auto",
        &["--edit", "--name", "k"],
        "cat \"$ZKIT_MOUNT\"/new",
    );
    assert_eq!(got, "x\n");
    env.run(
        "fuse",
        &["--edit", "--name", "f", "base"],
        "echo y > \"$ZKIT_MOUNT\"/new",
    );
    let out = env
        .cmd("zmount")
        .args([
            "run",
            "--backend",
            "kernel",
            "--edit",
            "--name",
            "f",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--backend fuse"));
    let _ = env.cmd("zmount").arg("stop").output();
}

/// `zmount mount --edit` on the kernel backend: the overlay at MOUNTPOINT for everyone, a
/// runtime held until `zmount umount`, then committed.
#[test]
fn a_kernel_mount_edits_a_runtime_until_unmounted() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    env.layer("base", base);
    let mp = env.path("mp");
    std::fs::create_dir(&mp).unwrap();
    env.cmd("zmount")
        .args([
            "mount",
            "--backend",
            "kernel",
            "--edit",
            "--name",
            "m",
            "base",
        ])
        .arg(&mp)
        .assert()
        .success();
    std::fs::write(mp.join("made"), "here").unwrap();
    assert_eq!(
        std::fs::read_to_string(mp.join("base/file1")).unwrap(),
        "one\n"
    );
    let busy = env
        .cmd("zcommit")
        .args(["--runtime", "m"])
        .output()
        .unwrap();
    assert_eq!(
        busy.status.code(),
        Some(1),
        "a mounted runtime is not committed"
    );
    env.cmd("zmount").arg("umount").arg(&mp).assert().success();
    assert!(!mp.join("made").exists());
    env.commit_runtime("m", "m1");
    let got = env.run("kernel", &["base", "m1"], "cat \"$ZKIT_MOUNT\"/made");
    assert_eq!(got, "here");
}
