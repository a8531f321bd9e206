//! zmount's kernel backend against the real kernel: meta images, overlayfs in a private mount
//! namespace, editable runtimes in overlayfs's upper format and their commits, compared with
//! the FUSE backend and a plain directory. Needs root (CI runs as root on Linux 6.8+).
//!
//! Every test has its own store, zmount directory and mount points; runs end with their
//! command (the namespace takes its overlay along), and every command runs under a timeout.
//! Linux only: the kernel backend exists nowhere else.
#![cfg(target_os = "linux")]

mod crash;
mod differential;
mod killed;
mod meta;
#[path = "../util/mod.rs"]
mod util;

use std::path::{Path, PathBuf};
use std::time::Duration;
use util::Scratch;

const TIMEOUT: Duration = Duration::from_secs(120);

/// What every test here needs.
fn kernel_ready() -> bool {
    util::is_root()
        && (Path::new("/sys/module/overlay").exists()
            || std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("overlay")))
}

pub struct Env {
    pub t: Scratch,
}

#[allow(clippy::new_without_default)]
impl Env {
    pub fn new() -> Env {
        let t = Scratch::new();
        std::fs::create_dir_all(t.path("zm")).unwrap();
        Env { t }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.t.path(p)
    }

    pub fn store(&self) -> PathBuf {
        self.path("store")
    }

    /// A command for `bin` with this test's store and zmount directory.
    pub fn cmd(&self, bin: &str) -> assert_cmd::Command {
        let mut c = util::bin(bin);
        c.env("ZKIT_STORE", self.store())
            .env("ZMOUNT_DIR", self.path("zm"))
            .timeout(TIMEOUT);
        c
    }

    /// A `std::process::Command` for `bin` with this test's store and zmount directory, for
    /// processes a test spawns and keeps running.
    pub fn std_cmd(&self, bin: &str) -> std::process::Command {
        let mut c = std::process::Command::new(util::bin_path(bin));
        c.env("ZKIT_STORE", self.store())
            .env("ZMOUNT_DIR", self.path("zm"));
        c
    }

    /// `zmount run --backend B ARGS... -- sh -c SCRIPT`, which must succeed; its stdout.
    pub fn run(&self, backend: &str, args: &[&str], script: &str) -> String {
        let out = self
            .cmd("zmount")
            .args(["run", "--backend", backend])
            .args(args)
            .args(["--", "sh", "-ec", script])
            .output()
            .unwrap();
        util::stdout_of(out, &format!("zmount run {args:?} -- {script}"))
    }

    /// Build a directory with `fill` and commit it, tagged `tag`; its digest.
    pub fn layer(&self, tag: &str, fill: impl FnOnce(&Path)) -> String {
        let dir = self.path(&format!("src-{}", tag.replace('/', "_")));
        std::fs::create_dir_all(&dir).unwrap();
        fill(&dir);
        self.commit_dir(tag, &dir)
    }

    pub fn commit_dir(&self, tag: &str, dir: &Path) -> String {
        let out = self
            .cmd("zcommit")
            .args(["--tag", tag])
            .arg(dir)
            .output()
            .unwrap();
        util::stdout_of(out, "zcommit").trim().to_string()
    }

    /// `zcommit --runtime NAME --tag TAG`.
    pub fn commit_runtime(&self, name: &str, tag: &str) {
        let out = self
            .cmd("zcommit")
            .args(["--runtime", name, "--tag", tag])
            .output()
            .unwrap();
        util::stdout_of(out, "zcommit --runtime");
    }

    /// `zcommit checkout DEST LAYER...`, then DEST's listing.
    pub fn checkout(&self, dest: &str, layers: &[&str]) -> String {
        let d = self.path(dest);
        let out = self
            .cmd("zcommit")
            .arg("checkout")
            .arg(&d)
            .args(layers)
            .output()
            .unwrap();
        util::stdout_of(out, "zcommit checkout");
        listing(&d)
    }

    pub fn verify(&self) -> String {
        let out = self.cmd("zcommit").arg("verify").output().unwrap();
        util::stdout_of(out, "zcommit verify")
    }
}

/// A shell function `list DIR`: every path below DIR, sorted, with its kind, mode, size, link
/// count and content digest (files), or target (symlinks). What a user compares trees by.
pub const LIST: &str = r#"list() (
  cd "$1"
  find . -mindepth 1 | LC_ALL=C sort | while IFS= read -r p; do
    if [ -L "$p" ]; then echo "$p l $(readlink "$p")"
    elif [ -f "$p" ]; then echo "$p f $(stat -c %a:%s:%h "$p") $(md5sum < "$p" | cut -c1-32)"
    elif [ -d "$p" ]; then echo "$p d $(stat -c %a "$p")"
    else echo "$p o $(stat -c %F:%a:%t:%T "$p")"; fi
  done
)
"#;

/// The listing of a directory outside any view.
pub fn listing(dir: &Path) -> String {
    util::sh(&format!("{LIST}\nlist '{}'", dir.display()))
}

/// A small tree of every kind.
pub fn sample(d: &Path) {
    util::sh(&format!(
        "cd '{}' && mkdir -p dir/sub && echo hello > a && echo world > dir/f && echo x > dir/sub/g \
         && ln -s a link && mkfifo fifo && chmod 4755 a && : > empty && chmod 700 dir/sub",
        d.display()
    ));
}

/// A read-only kernel run shows the stack: kinds, modes, contents, symlinks; and nothing of it
/// is visible outside the run.
#[test]
fn a_kernel_run_shows_the_stack_only_to_its_own_processes() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    env.layer("base", sample);
    let want = listing(&env.path("src-base"));
    let mp = env.path("zm/mnt");
    let script = format!(
        "{LIST}\nlist \"$ZKIT_MOUNT\"; test \"$ZKIT_MOUNT\" = '{}'",
        mp.display()
    );
    let got = env.run("kernel", &["base"], &script);
    assert_eq!(got, want);
    // Outside: the directory beneath, empty; no overlay in the host's mount table.
    assert!(util::names_in(&mp).is_empty());
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&*mp.to_string_lossy())
    );
}

/// `auto` picks the kernel as root and says why with --verbose; the kernel backend refuses
/// an unprivileged user with a line that names --backend fuse.
#[test]
fn auto_picks_the_kernel_as_root_and_says_why() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    env.layer("base", sample);
    let out = env
        .cmd("zmount")
        .args(["run", "--backend", "auto", "-v", "base", "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("backend kernel: root"), "{err}");
    require!(util::have("setpriv"), "setpriv");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(util::bin_path("zmount"))
        .args(["run", "--backend", "kernel", "base", "--", "true"])
        .env("ZKIT_STORE", env.store())
        .env("ZMOUNT_DIR", env.path("zm-nobody"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--backend fuse") && err.lines().count() == 1,
        "{err}"
    );
}

/// Two concurrent kernel runs of different stacks at the same mount point each see their own
/// stack and never the other's files.
#[test]
fn concurrent_kernel_runs_at_one_mount_point_are_isolated() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    env.layer("one", |d| std::fs::write(d.join("one"), "1").unwrap());
    env.layer("two", |d| std::fs::write(d.join("two"), "2").unwrap());
    let go = env.path("go");
    let spawn = |tag: &str| {
        let script = format!(
            "ls \"$ZKIT_MOUNT\" > '{out}.before'; while [ ! -e '{go}' ]; do sleep 0.02; done; \
             ls \"$ZKIT_MOUNT\" > '{out}.after'",
            out = env.path(tag).display(),
            go = go.display()
        );
        env.std_cmd("zmount")
            .args(["run", "--backend", "kernel", tag, "--", "sh", "-c", &script])
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn("one"), spawn("two"));
    util::wait_for("both runs", TIMEOUT, || {
        env.path("one.before").exists() && env.path("two.before").exists()
    });
    // Outside, meanwhile: nothing at the mount point.
    assert!(util::names_in(&env.path("zm/mnt")).is_empty());
    std::fs::write(&go, "").unwrap();
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    for (tag, want) in [("one", "one\n"), ("two", "two\n")] {
        for when in ["before", "after"] {
            let seen = std::fs::read_to_string(env.path(&format!("{tag}.{when}"))).unwrap();
            assert_eq!(seen, want, "{tag} {when}");
        }
    }
}

/// More layers than a 4 KiB mount option string could name: every one is its own fsconfig key.
#[test]
fn a_stack_of_many_layers_mounts() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    let mut tags = Vec::new();
    for i in 0..60 {
        let tag = format!("l{i:03}");
        env.layer(&tag, |d| {
            std::fs::write(d.join(format!("f{i:03}")), format!("{i}")).unwrap()
        });
        tags.push(tag);
    }
    // 60 meta-tree paths of ~110 bytes each: far past 4096 bytes of lowerdir=.
    let mut args: Vec<&str> = tags.iter().map(String::as_str).collect();
    args.push("--");
    let out = env
        .cmd("zmount")
        .args(["run", "--backend", "kernel"])
        .args(&args)
        .args([
            "sh",
            "-c",
            "ls \"$ZKIT_MOUNT\" | wc -l; cat \"$ZKIT_MOUNT\"/f059",
        ])
        .output()
        .unwrap();
    assert_eq!(util::stdout_of(out, "zmount run"), "60\n59");
}

/// `zmount status` lists a kernel run while it lasts, without a daemon.
#[test]
fn status_lists_kernel_runs() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    env.layer("base", sample);
    let flag = env.path("flag");
    let go = env.path("go");
    let mut c = env.std_cmd("zmount");
    c.args([
        "run",
        "--backend",
        "kernel",
        "--edit",
        "--name",
        "st",
        "base",
        "--",
        "sh",
        "-c",
    ])
    .arg(format!(
        "touch '{}'; while [ ! -e '{}' ]; do sleep 0.02; done",
        flag.display(),
        go.display()
    ));
    let mut child = c.spawn().unwrap();
    util::wait_for("the run", TIMEOUT, || flag.exists());
    let out = env.cmd("zmount").args(["status"]).output().unwrap();
    let text = util::stdout_of(out, "zmount status");
    assert!(text.contains("daemon: not running"), "{text}");
    assert!(text.contains("kernel views: 1"), "{text}");
    assert!(text.contains("editing runtime st: base"), "{text}");
    assert!(text.contains("backend (auto): kernel"), "{text}");
    let out = env
        .cmd("zmount")
        .args(["status", "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&util::stdout_of(out, "status")).unwrap();
    assert_eq!(json["kernel_views"][0]["runtime"], "st");
    std::fs::write(&go, "").unwrap();
    assert!(child.wait().unwrap().success());
    let out = env.cmd("zmount").args(["status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "no daemon and no kernel views");
}

#[test]
fn an_unnamed_kernel_mount_that_changes_nothing_leaves_no_runtime() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    env.layer("a", |d| std::fs::write(d.join("x"), "1").unwrap());
    let mnt = env.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let runtimes = || {
        let out = env.cmd("zcommit").arg("runtimes").output().unwrap();
        util::stdout_of(out, "zcommit runtimes")
    };
    for change in [false, true] {
        let out = env
            .cmd("zmount")
            .args(["mount", "--backend", "kernel", "--edit", "a"])
            .arg(&mnt)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains("removed at unmount if nothing changed"),
            "{err}"
        );
        if change {
            std::fs::write(mnt.join("new"), "kept\n").unwrap();
        }
        let out = env.cmd("zmount").arg("umount").arg(&mnt).output().unwrap();
        util::stdout_of(out, "zmount umount");
        // The server that held the runtime removes it as it exits.
        let settled = (0..250).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            runtimes().matches("run-").count() == usize::from(change)
        });
        assert!(settled, "{}", runtimes());
    }
}
