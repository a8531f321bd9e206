//! What a layer records besides names, modes and contents: modification times (to the
//! nanosecond), FIFOs and device nodes; and `--reproducible` / `SOURCE_DATE_EPOCH`, which fix
//! or clamp the times. Each is checked where a user would look: a checkout, a view mounted
//! by zmount, and the digest of a commit made again.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use util::{Scratch, sh};

const TIMEOUT: Duration = Duration::from_secs(60);

/// A store and a zmount directory of one test; unmounts what it mounted, and stops the daemon
/// a `zmount run` started, when dropped.
struct Env {
    s: Scratch,
    mounts: Vec<PathBuf>,
}

impl Env {
    fn new() -> Env {
        Env {
            s: Scratch::new(),
            mounts: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.s.path(name)
    }

    fn cmd(&self, bin: &str) -> assert_cmd::Command {
        let mut c = util::bin(bin);
        c.env("ZKIT_STORE", self.path("store"))
            .env("ZMOUNT_DIR", self.path("zm"))
            .env_remove("SOURCE_DATE_EPOCH")
            .timeout(TIMEOUT);
        c
    }

    /// Commit `dir` with `args`; the digest, and stderr (warnings).
    fn commit(&self, args: &[&str], dir: &Path) -> (String, String) {
        let out = self.cmd("zcommit").args(args).arg(dir).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "zcommit failed: {err}");
        (
            String::from_utf8(out.stdout).unwrap().trim().to_string(),
            err,
        )
    }

    fn checkout(&self, dest: &str, layer: &str) -> PathBuf {
        let dest = self.path(dest);
        self.cmd("zcommit")
            .arg("checkout")
            .arg(&dest)
            .arg(layer)
            .assert()
            .success();
        dest
    }

    /// `zmount mount LAYER MP`: one view for everyone.
    fn mount(&mut self, layer: &str, mp: &str) -> PathBuf {
        let mp = self.path(mp);
        std::fs::create_dir_all(&mp).unwrap();
        self.cmd("zmount")
            .arg("mount")
            .arg(layer)
            .arg(&mp)
            .assert()
            .success();
        self.mounts.push(mp.clone());
        mp
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = Command::new(util::bin_path("zmount"))
            .env("ZMOUNT_DIR", self.path("zm"))
            .args(["stop", "--force"])
            .stderr(Stdio::null())
            .status();
        for m in &self.mounts {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(m)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Every entry below `dir` with its kind, mode, modification time (ns), link target and
/// device numbers, one line each, sorted: what `rsync -t`, `make` and `tar` would compare.
fn listing(dir: &Path) -> String {
    sh(&format!(
        "cd '{}' && find . -mindepth 1 -printf '%P %y %m %T@ %l\\n' | sort && \
         find . -mindepth 1 \\( -type b -o -type c \\) -exec stat -c '%n %t:%T' {{}} + | sort",
        dir.display()
    ))
}

/// A tree whose every entry has a time of its own, nanoseconds included: files, a
/// directory, a symlink (dated itself, not its target) and an empty file.
fn dated_tree(root: &Path) {
    sh(&format!(
        "set -e; export TZ=UTC; cd '{}'; mkdir -p src/lib; echo 'int main;' > src/main.c; : > empty; \
         echo lib > src/lib/a.c; ln -s main.c src/link; \
         touch -d '2001-02-03 04:05:06.123456789' src/main.c; \
         touch -d '1999-12-31 23:59:59.5' empty; \
         touch -d '2010-01-01 00:00:00.000000001' src/lib/a.c; \
         touch -h -d '2005-05-05 05:05:05.55' src/link; \
         touch -d '2012-12-12 12:12:12' src/lib src; \
         touch -d '1960-06-01 00:00:00' .",
        root.display()
    ));
}

#[test]
fn checkouts_and_views_show_the_times_the_tree_had_and_recommit_to_the_same_layer() {
    require!(util::have_fuse(), "the view half needs root and /dev/fuse");
    let mut env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    dated_tree(&src);
    let (layer, _) = env.commit(&[], &src);

    let out = env.checkout("out", &layer);
    assert_eq!(listing(&out), listing(&src));
    // The root keeps its time too (1960: before the epoch).
    assert_eq!(
        sh(&format!("stat -c %Y '{}'", out.display())).trim(),
        "-302486400"
    );
    // A checkout is the tree again: committing it gives the same layer.
    assert_eq!(env.commit(&[], &out).0, layer);

    let mp = env.mount(&layer, "mnt");
    assert_eq!(listing(&mp), listing(&src));
}

#[test]
fn reproducible_commits_of_differently_dated_copies_are_one_layer() {
    let env = Env::new();
    let (a, b) = (env.path("a"), env.path("b"));
    std::fs::create_dir(&a).unwrap();
    dated_tree(&a);
    // The same content, written later: every time differs.
    sh(&format!("cp -r '{}' '{}'", a.display(), b.display()));
    assert_ne!(env.commit(&[], &a).0, env.commit(&[], &b).0);
    let (ra, rb) = (
        env.commit(&["--reproducible"], &a).0,
        env.commit(&["--reproducible"], &b).0,
    );
    assert_eq!(ra, rb);
    let out = env.checkout("out", &ra);
    let times = sh(&format!(
        "find '{}' -printf '%T@\\n' | sort -u",
        out.display()
    ));
    assert_eq!(times.trim(), "1.0000000000", "one fixed time: {times}");

    // SOURCE_DATE_EPOCH: --reproducible fixes every time at it; alone, it clamps.
    let epoch = "1000000000"; // 2001-09-09, between the tree's oldest and newest times
    let fixed = env
        .cmd("zcommit")
        .env("SOURCE_DATE_EPOCH", epoch)
        .arg("--reproducible")
        .arg(&b)
        .output()
        .unwrap();
    assert!(fixed.status.success());
    let fixed = String::from_utf8(fixed.stdout).unwrap();
    let out = env.checkout("fixed", fixed.trim());
    let times = sh(&format!(
        "find '{}' -printf '%T@\\n' | sort -u",
        out.display()
    ));
    assert_eq!(times.trim(), format!("{epoch}.0000000000"));

    let clamped = env
        .cmd("zcommit")
        .env("SOURCE_DATE_EPOCH", epoch)
        .arg(&a)
        .output()
        .unwrap();
    assert!(clamped.status.success());
    let clamped = String::from_utf8(clamped.stdout).unwrap();
    let out = env.checkout("clamped", clamped.trim());
    let stat = |p: &str| sh(&format!("stat -c %Y '{}'", out.join(p).display()));
    assert_eq!(
        stat("empty").trim(),
        "946684799",
        "older than the epoch: kept"
    );
    assert_eq!(
        stat("src/lib/a.c").trim(),
        epoch,
        "newer than the epoch: clamped"
    );

    let bad = env
        .cmd("zcommit")
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .arg(&a)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("SOURCE_DATE_EPOCH") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn fifos_and_device_nodes_are_recorded_and_come_back_sockets_are_left_out_with_a_note() {
    require!(
        util::have_fuse(),
        "device nodes and the view need root and /dev/fuse"
    );
    let mut env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    sh(&format!(
        "set -e; export TZ=UTC; cd '{}'; mkdir dev; mkfifo -m 640 dev/pipe; mknod -m 666 dev/null c 1 3; \
         mknod -m 660 dev/loop9 b 7 9; touch -d '2003-03-03' dev/pipe dev/null dev/loop9; \
         python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"dev/sock\")'",
        src.display()
    ));
    let (layer, err) = env.commit(&[], &src);
    assert!(
        err.contains("dev/sock") && !err.contains("pipe") && !err.contains("null"),
        "only the socket is left out, and said so: {err}"
    );
    let ls = env.cmd("zcommit").arg("ls").arg(&layer).output().unwrap();
    let ls = String::from_utf8(ls.stdout).unwrap();
    for line in ["prw-r-----", "crw-rw-rw-", "1, 3", "brw-rw----", "7, 9"] {
        assert!(ls.contains(line), "zcommit ls shows {line}: {ls}");
    }

    // The socket is not in the layer, so the trees compare without it (and with the time
    // its directory had when it was committed).
    sh(&format!(
        "cd '{}' && touch -r dev ../dev-time && rm dev/sock && touch -r ../dev-time dev",
        src.display()
    ));
    let out = env.checkout("out", &layer);
    assert_eq!(listing(&out), listing(&src));
    let mp = env.mount(&layer, "mnt");
    assert_eq!(listing(&mp), listing(&src));
}

#[test]
fn an_editable_runtime_keeps_layer_times_through_copy_up_and_commits_new_fifos_and_devices() {
    require!(util::have_fuse(), "needs root and /dev/fuse");
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    dated_tree(&src);
    let (base, _) = env.commit(&["--tag", "base"], &src);
    let script = "set -e; cd \"$ZKIT_MOUNT\"; chmod 600 src/main.c; chmod 700 src/lib; \
                  mkfifo made.pipe; mknod made.null c 1 3; echo new > new.c; \
                  python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"made.sock\")'";
    env.cmd("zmount")
        .args([
            "run", "--edit", "--name", "dev", "base", "--", "sh", "-c", script,
        ])
        .assert()
        .success();
    let out = env
        .cmd("zcommit")
        .args(["--runtime", "dev"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("runtime dev/made.sock: warning: a socket; left out"),
        "a runtime's commit says what it leaves out: {err}"
    );
    let top = String::from_utf8(out.stdout).unwrap();
    let dest = env.path("out");
    env.cmd("zcommit")
        .arg("checkout")
        .arg(&dest)
        .args([base.as_str(), top.trim()])
        .assert()
        .success();
    let stat = |p: &str| {
        sh(&format!(
            "stat -c '%F %a %t:%T %.9Y' '{}'",
            dest.join(p).display()
        ))
    };
    // A chmod changes the mode, never the time (as on any file system).
    assert_eq!(
        stat("src/main.c").trim(),
        "regular file 600 0:0 981173106.123456789"
    );
    assert_eq!(
        stat("src/lib").trim(),
        "directory 700 0:0 1355314332.000000000"
    );
    // Copying main.c and lib up into scratch's src is no change of src.
    assert_eq!(stat("src").trim(), "directory 755 0:0 1355314332.000000000");
    assert!(
        stat("made.pipe").starts_with("fifo "),
        "{}",
        stat("made.pipe")
    );
    assert!(stat("made.null").starts_with("character special file 644 1:3 "));
}
