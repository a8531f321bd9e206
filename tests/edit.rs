//! Editable views against the real kernel: copy-up, whiteouts, merged listings, POSIX answers,
//! crashes and commits of runtimes. Needs root and /dev/fuse (CI has both).
//!
//! Every test has its own store, daemon directory and mount points; a guard stops the daemon
//! and lazily unmounts on drop, panics included, and every command runs under a timeout.
// Tests: a thread the system refuses may fail them.
#![allow(clippy::disallowed_methods)]

mod util;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};
use util::have;
use zkit::digest::Digest;

const TIMEOUT: Duration = Duration::from_secs(120);

/// The test's store and daemon directory (see [`util::StoreEnv`]: stops the daemon and
/// lazily unmounts every mount point below the test's directory on drop).
struct Env(util::StoreEnv);

impl std::ops::Deref for Env {
    type Target = util::StoreEnv;
    fn deref(&self) -> &util::StoreEnv {
        &self.0
    }
}

impl Env {
    fn new() -> Env {
        Env(util::StoreEnv::new(TIMEOUT))
    }

    /// For a test that mounts: `None` (the test returns) without root and /dev/fuse.
    fn fuse() -> Option<Env> {
        util::StoreEnv::for_fuse(TIMEOUT).map(Env)
    }

    /// [`Env::fuse`] with [`base_tree`] committed as layer `base`.
    fn with_base() -> Option<Env> {
        let env = Env::fuse()?;
        env.layer("base", base_tree);
        Some(env)
    }

    /// Commit the directory `src` (made by `fill`) as a layer tagged `tag`.
    fn layer(&self, tag: &str, fill: impl FnOnce(&Path)) -> Digest {
        let src = self.path(&format!("src-{}", tag.replace('/', "-")));
        std::fs::create_dir_all(&src).unwrap();
        fill(&src);
        let out = self
            .cmd("zcommit")
            .arg("--tag")
            .arg(tag)
            .arg(&src)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Digest::parse(String::from_utf8(out.stdout).unwrap().trim()).unwrap()
    }

    /// `zmount mount [--edit --name NAME] LAYERS... MP`, unmounted on drop.
    fn mount(&self, edit: Option<&str>, layers: &[&str], mp: &str) -> PathBuf {
        let mp = self.path(mp);
        std::fs::create_dir_all(&mp).unwrap();
        let mut c = self.cmd("zmount");
        c.arg("mount");
        if let Some(name) = edit {
            c.args(["--edit", "--name", name]);
        }
        c.args(layers).arg(&mp).assert().success();
        mp
    }

    fn umount(&self, mp: &Path) {
        self.cmd("zmount").arg("umount").arg(mp).assert().success();
        util::wait_for("the server to let go of the runtime", TIMEOUT, || {
            !util::mounted(mp) && server_pid(mp).is_none()
        });
    }

    /// Start the routed daemon (explicitly, so `run` finds it ready).
    fn serve(&self) {
        self.cmd("zmount").arg("serve").assert().success();
    }

    /// Run a python `script` in a routed edit view of runtime `name` over layer `base`;
    /// its output. The script finds the view at `$ZKIT_MOUNT`.
    fn python_run(&self, name: &str, script: &str) -> String {
        let out = self
            .cmd("zmount")
            .args(["run", "--edit", "--name", name, "base", "--"])
            .args(["python3", "-c", script])
            .output()
            .unwrap();
        util::stdout_of(out, "zmount run")
    }

    fn zcommit_runtime(&self, name: &str) -> Option<Digest> {
        let out = self
            .cmd("zcommit")
            .args(["--runtime", name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Digest::parse(String::from_utf8(out.stdout).unwrap().trim())
    }
}

/// The `zmount mount --foreground` process serving `mp`.
fn server_pid(mp: &Path) -> Option<i32> {
    let needle = mp.as_os_str().as_encoded_bytes();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args.iter().any(|a| a.ends_with(b"zmount"))
            && args.contains(&&b"--foreground"[..])
            && args.contains(&needle)
        {
            return Some(pid);
        }
    }
    None
}

fn sh_in(dir: &Path, script: &str) -> std::process::Output {
    Command::new("timeout")
        .arg(TIMEOUT.as_secs().to_string())
        .args(["sh", "-c", script])
        .current_dir(dir)
        .output()
        .unwrap()
}

fn ok_in(dir: &Path, script: &str) -> String {
    util::stdout_of(sh_in(dir, script), script)
}

fn python(script: &str, args: &[&Path]) -> String {
    let out = Command::new("timeout")
        .arg(TIMEOUT.as_secs().to_string())
        .args(["python3", "-c", script])
        .args(args)
        .output()
        .unwrap();
    util::stdout_of(out, "python3")
}

fn base_tree(d: &Path) {
    std::fs::create_dir_all(d.join("dir/sub")).unwrap();
    std::fs::write(d.join("existing"), "base line\n").unwrap();
    std::fs::set_permissions(d.join("existing"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::write(d.join("dir/lower"), "lower\n").unwrap();
    std::fs::write(d.join("dir/sub/deep"), "deep\n").unwrap();
    std::fs::write(d.join("gone"), "bye\n").unwrap();
    std::os::unix::fs::symlink("existing", d.join("link")).unwrap();
}

/// The seed's workflow: append to a layer file in an edit runtime, commit, see it in a new
/// read-only run; the base layer is unchanged.
#[test]
fn appending_to_a_layer_file_copies_it_up_and_a_commit_keeps_it() {
    let Some(env) = Env::fuse() else {
        return;
    };
    let base = env.layer("base", base_tree);
    env.serve();
    let before = SystemTime::now() - Duration::from_secs(2);
    let out = env.edit_run(
        Some("dev"),
        &["base"],
        r#"cd "$ZKIT_MOUNT" && echo appended >> existing && cat existing && stat -c '%a %s %Y' existing"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("base line"));
    assert_eq!(lines.next(), Some("appended"));
    let stat: Vec<&str> = lines.next().unwrap().split(' ').collect();
    assert_eq!(stat[..2], ["640", "19"]);
    let mtime: u64 = stat[2].parse().unwrap();
    assert!(
        mtime
            >= before
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs()
    );

    let new = env.zcommit_runtime("dev").expect("a layer");
    let out = env
        .cmd("zmount")
        .args(["run", "base", &new.to_hex(), "--", "sh", "-c"])
        .arg(r#"cat "$ZKIT_MOUNT/existing"; touch "$ZKIT_MOUNT/x" 2>&1 || true"#)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("base line\nappended\n"), "{text}");
    assert!(text.contains("Read-only file system"), "{text}");
    let plain = env.path("plain-base");
    env.cmd("zcommit")
        .arg("checkout")
        .arg(&plain)
        .arg(base.to_hex())
        .assert()
        .success();
    assert_eq!(
        std::fs::read(plain.join("existing")).unwrap(),
        b"base line\n"
    );
    // The runtime goes on over base + new, with nothing left to commit.
    assert_eq!(env.zcommit_runtime("dev"), None);
}

/// A copy-up of a blob no read has proven yet copies and hashes it in pieces: a file of many
/// pieces, not a multiple of one, comes up whole, in a routed and in a single-view mount.
#[test]
fn a_big_layer_file_copies_up_whole() {
    let Some(env) = Env::fuse() else {
        return;
    };
    // 3 MiB and a bit of bytes that do not repeat with any power-of-two period.
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 4099u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    env.layer("base", |d| std::fs::write(d.join("big"), &big).unwrap());
    let mut expected = big.clone();
    expected.extend_from_slice(b"tail\n");
    env.serve();
    let copy = env.path("copy");
    let out = env.edit_run(
        Some("r"),
        &["base"],
        &format!(
            r#"echo tail >> "$ZKIT_MOUNT/big" && cat "$ZKIT_MOUNT/big" > {}"#,
            copy.display()
        ),
    );
    util::stdout_of(out, "zmount run");
    assert!(std::fs::read(&copy).unwrap() == expected, "routed copy-up");
    let mp = env.mount(Some("s"), &["base"], "mnt");
    ok_in(&mp, "echo tail >> big");
    env.umount(&mp);
    let mp = env.mount(Some("s"), &[], "mnt");
    assert!(
        std::fs::read(mp.join("big")).unwrap() == expected,
        "single-view copy-up"
    );
    env.umount(&mp);
}

#[test]
fn a_removed_layer_file_is_gone_and_the_commit_hides_it() {
    let Some(env) = Env::with_base() else {
        return;
    };
    let mp = env.mount(Some("rm"), &["base"], "mnt");
    ok_in(&mp, "rm gone dir/sub/deep && rmdir dir/sub");
    let listing = ok_in(&mp, "ls -a . dir");
    assert!(
        !listing.contains("gone") && !listing.contains("sub"),
        "{listing}"
    );
    assert!(!listing.contains(".wh."), "{listing}");
    for script in ["stat gone", "cat gone", "ls dir/sub", "cat dir/sub/deep"] {
        assert!(!sh_in(&mp, script).status.success(), "{script} succeeded");
    }
    // A new file of a deleted directory's name starts empty.
    ok_in(&mp, "mkdir dir/sub && test -z \"$(ls -A dir/sub)\"");
    env.umount(&mp);
    let new = env.zcommit_runtime("rm").unwrap();
    let ls = env
        .cmd("zcommit")
        .args(["ls", &new.to_hex()])
        .output()
        .unwrap();
    let ls = String::from_utf8(ls.stdout).unwrap();
    assert!(
        ls.lines()
            .any(|l| l.starts_with('w') && l.ends_with(" gone")),
        "{ls}"
    );
    assert!(ls.contains("dir/sub (opaque)"), "{ls}");
    let ro = env.mount(None, &["base", &new.to_hex()], "ro");
    assert_eq!(ok_in(&ro, "ls -A; ls -A dir/sub"), "dir\nexisting\nlink\n");
}

/// The same operations on a plain directory and on an edit view over the same tree give
/// the same results, errors included, and the same tree.
#[test]
fn namespace_operations_match_a_plain_directory() {
    require!(have("python3"), "python3");
    let Some(env) = Env::with_base() else {
        return;
    };
    let plain = env.path("plain");
    std::fs::create_dir(&plain).unwrap();
    base_tree(&plain);
    let mp = env.mount(Some("diff"), &["base"], "mnt");
    let script = r#"
import os, sys, errno, stat
root = sys.argv[1]
os.chdir(root)
ops = [
    ("mkdir", "a"), ("mkdir", "a"), ("mkdir", "dir"), ("mkdir", "a/b/c"),
    ("rmdir", "nope"), ("rmdir", "dir"), ("rmdir", "existing"), ("unlink", "dir"),
    ("write", "a/f", "one"), ("rename", "a/f", "dir"), ("rename", "dir", "existing"),
    ("rename", "a", "a/x"), ("rename", "a/f", "a/g"), ("rename", "existing", "a/moved"),
    ("symlink", "../a/moved", "dir/ln"), ("symlink", "x", "dir/ln"),
    ("chmod", "a/moved", 0o600), ("chmod", "dir/lower", 0o751), ("truncate", "dir/lower", 2),
    ("truncate", "a/g", 10), ("truncate", "dir", 0), ("write", "existing", "new again"),
    ("mkdir", "d2"), ("write", "d2/x", "x"), ("rename", "d2", "a"), ("unlink", "d2/x"),
    ("rename", "d2", "a"), ("rmdir", "a"), ("rename", "gone", "dir/sub/deep"),
    ("unlink", "link"), ("symlink", "dir/sub", "link"),
    ("mkdir", "dir/sub/e"), ("rmdir", "dir/sub/e"), ("unlink", "nope"), ("mkdir", "x" * 256),
    ("rename", "a/g", "a/g"), ("link", "a/moved", "hard"), ("write", "hard", "via hard"),
]
for op in ops:
    name, args = op[0], op[1:]
    try:
        if name == "write":
            with open(args[0], "w") as f:
                f.write(args[1])
        elif name == "truncate":
            os.truncate(args[0], args[1])
        elif name == "chmod":
            os.chmod(args[0], args[1])
        elif name == "symlink":
            os.symlink(args[0], args[1])
        else:
            getattr(os, name)(*args)
        r = "ok"
    except OSError as e:
        r = errno.errorcode[e.errno]
    print(name, args[0][:20], r)
for d, dirs, files in sorted(os.walk(".")):
    dirs.sort()
    for n in sorted(dirs + files):
        p = os.path.join(d, n)
        st = os.lstat(p)
        extra = os.readlink(p) if stat.S_ISLNK(st.st_mode) else (
            open(p, "rb").read() if stat.S_ISREG(st.st_mode) else b"")
        mode = oct(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            mode = "link"
        print(p, mode, st.st_nlink if stat.S_ISREG(st.st_mode) else "", extra)
try:
    os.rename("dir/sub", "subdir-moved")
    print("rename dir/sub ok")
except OSError as e:
    print("rename dir/sub", errno.errorcode[e.errno])
"#;
    let want = python(script, &[&plain]);
    let got = python(script, &[&mp]);
    let (mut want, mut got): (Vec<_>, Vec<_>) = (want.lines().collect(), got.lines().collect());
    // Renaming a layer directory answers EXDEV (mv copies instead): the one difference,
    // made last, after the trees were listed.
    assert_eq!(want.pop(), Some("rename dir/sub ok"));
    assert_eq!(got.pop(), Some("rename dir/sub EXDEV"));
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w, g);
    }
    assert_eq!(want.len(), got.len());
}

#[test]
fn moving_a_layer_directory_falls_back_to_copying() {
    let Some(env) = Env::with_base() else {
        return;
    };
    let mp = env.mount(Some("mv"), &["base"], "mnt");
    ok_in(
        &mp,
        "mv dir moved && test ! -e dir && cat moved/sub/deep moved/lower >/dev/null",
    );
    assert_eq!(ok_in(&mp, "ls"), "existing\ngone\nlink\nmoved\n");
}

/// A directory of 5000 entries (layer and scratch) is listed in pages while names come
/// and go: every name that is there throughout is listed exactly once.
#[test]
fn a_big_directory_lists_every_stable_name_once_while_it_changes() {
    require!(have("python3"), "python3");
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("big", |d| {
        std::fs::create_dir(d.join("big")).unwrap();
        for i in 0..3000 {
            std::fs::write(d.join(format!("big/lower-{i:05}")), "").unwrap();
        }
    });
    let mp = env.mount(Some("big"), &["big"], "mnt");
    let script = r#"
import os, sys
d = os.path.join(sys.argv[1], "big")
for i in range(2000):
    open(os.path.join(d, "upper-%05d" % i), "w").close()
stable = set(os.listdir(d))
assert len(stable) == 5000, len(stable)
seen = []
with os.scandir(d) as it:
    for n, e in enumerate(it):
        seen.append(e.name)
        if n % 50 == 0:
            # Between pages: new names appear, others go and come back.
            open(os.path.join(d, "new-%05d" % n), "w").close()
            victim = os.path.join(d, "upper-%05d" % (n % 2000))
            os.unlink(victim)
            open(victim, "w").close()
            os.unlink(os.path.join(d, "lower-%05d" % (n % 3000)))
            open(os.path.join(d, "lower-%05d" % (n % 3000)), "w").close()
dups = len(seen) - len(set(seen))
print(dups, len(stable - set(seen)), len(seen))
"#;
    let out = python(script, &[&mp]);
    let nums: Vec<usize> = out.split_whitespace().map(|n| n.parse().unwrap()).collect();
    // Names deleted and recreated between pages may show once or not at all; every other
    // stable name exactly once and nothing twice.
    assert_eq!(nums[0], 0, "names listed twice: {out}");
    assert!(nums[2] >= 4800, "{out}");
}

/// SIGKILL the server in the middle of writes: the next mount of the runtime finds scratch
/// as the kernel left it, and it commits.
#[test]
fn a_killed_daemon_leaves_scratch_intact_and_the_runtime_commits() {
    let Some(env) = Env::with_base() else {
        return;
    };
    let mp = env.mount(Some("crash"), &["base"], "mnt");
    ok_in(
        &mp,
        "echo before > kept && sync kept && mkdir -p deep/er && echo x > deep/er/f",
    );
    let mut writer = Command::new("sh")
        .arg("-c")
        .arg("i=0; while :; do echo line $i >> existing || exit 0; i=$((i+1)); done")
        .current_dir(&mp)
        .spawn()
        .unwrap();
    util::wait_for("writes to start", TIMEOUT, || {
        std::fs::metadata(mp.join("existing")).is_ok_and(|m| m.len() > 100_000)
    });
    let pid = server_pid(&mp).expect("server process");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let _ = writer.kill();
    let _ = writer.wait();
    let _ = Command::new("umount").arg("-l").arg(&mp).status();
    util::wait_for("the killed server to be gone", TIMEOUT, || {
        server_pid(&mp).is_none()
    });

    let mp = env.mount(Some("crash"), &[], "mnt2");
    assert_eq!(ok_in(&mp, "cat kept deep/er/f"), "before\nx\n");
    let text = ok_in(&mp, "head -c 10 existing; tail -n 1 existing | cut -c1-5");
    assert_eq!(text, "base line\nline \n");
    env.umount(&mp);
    assert!(env.zcommit_runtime("crash").is_some());
}

/// The daemon resolves scratch paths without following symlinks: a directory replaced by a
/// symlink behind the view's back (it cached the directory) is never written through.
#[test]
fn a_symlink_in_scratch_never_redirects_a_write() {
    require!(have("python3"), "python3");
    let Some(env) = Env::with_base() else {
        return;
    };
    let outside = env.path("etc");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("passwd"), "root:x:0:0\n").unwrap();
    let mp = env.mount(Some("esc"), &["base"], "mnt");
    // Inside the view: a symlink is a symlink; a relative one resolves inside the view.
    ok_in(
        &mp,
        "mkdir d && ln -s d ln && echo in > ln/passwd && test -f d/passwd",
    );
    // A descriptor of a directory the user then swaps for a symlink to the outside.
    let script = r#"
import os, sys, errno
mp, outside = sys.argv[1], sys.argv[2]
fd = os.open(os.path.join(mp, "d"), os.O_RDONLY | os.O_DIRECTORY)
os.rename(os.path.join(mp, "d"), os.path.join(mp, "d2"))
os.symlink(outside, os.path.join(mp, "d"))
try:
    os.close(os.open("passwd", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, dir_fd=fd))
    print("opened")
except OSError as e:
    print(errno.errorcode[e.errno])
"#;
    let out = python(script, &[&mp, &outside]);
    assert_eq!(out.trim(), "opened"); // the renamed directory's own file
    assert_eq!(std::fs::read(mp.join("d2/passwd")).unwrap(), b"");
    // Behind the daemon's back, straight in scratch: `d2` becomes a symlink to the outside.
    let scratch = env.store().join("runtimes/esc/scratch-0");
    std::fs::rename(scratch.join("d2"), scratch.join("d3")).unwrap();
    std::os::unix::fs::symlink(&outside, scratch.join("d2")).unwrap();
    // The daemon still holds the real directory (now `d3`) or refuses; it never follows
    // the symlink.
    let _ = sh_in(&mp, "echo evil > d2/passwd; echo evil > d2/new");
    assert_eq!(
        std::fs::read(outside.join("passwd")).unwrap(),
        b"root:x:0:0\n"
    );
    assert_eq!(util::names_in(&outside), ["passwd"]);
}

#[test]
fn whiteout_names_are_refused_and_never_shown() {
    let Some(env) = Env::with_base() else {
        return;
    };
    let mp = env.mount(Some("wh"), &["base"], "mnt");
    ok_in(&mp, "rm gone");
    for script in [
        "touch .wh.x",
        "mkdir .wh..wh..opq",
        "ln -s x .wh.y",
        "mv existing .wh.existing",
        "cat .wh.gone",
    ] {
        let out = sh_in(&mp, script);
        assert!(!out.status.success(), "{script} succeeded");
    }
    let err = String::from_utf8(sh_in(&mp, "touch .wh.x").stderr).unwrap();
    assert!(err.contains("Operation not permitted"), "{err}");
    assert!(!ok_in(&mp, "ls -a").contains(".wh."));
}

/// Two routed edit runs: neither sees the other's writes, however the kernel caches.
#[test]
fn routed_edit_views_never_see_each_others_writes() {
    let Some(env) = Env::with_base() else {
        return;
    };
    env.serve();
    let script = |tag: &str| {
        format!(
            r#"cd "$ZKIT_MOUNT" || exit 1
echo {tag} > mine-{tag}; echo {tag} >> existing; mkdir -p dir/{tag}
for i in $(seq 200); do
  for other in a b; do
    [ $other = {tag} ] && continue
    if [ -e mine-$other ] || [ -e dir/$other ] || grep -qx "$other" existing; then echo LEAK; exit 1; fi
  done
done
cat existing"#
        )
    };
    let spawn = |tag: &str| {
        env.std_cmd("zmount")
            .args([
                "run",
                "--edit",
                "--name",
                tag,
                "base",
                "--",
                "sh",
                "-c",
                &script(tag),
            ])
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn("a"));
        let b = s.spawn(|| spawn("b"));
        (a.join().unwrap(), b.join().unwrap())
    });
    for (out, tag) in [(a, "a"), (b, "b")] {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{tag}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(text, format!("base line\n{tag}\n"));
    }
}

/// Unpack a small C project, `make` it with gcc inside an edit runtime, commit the outputs.
#[test]
fn a_real_build_runs_inside_an_edit_runtime_and_its_outputs_commit() {
    require!(have("gcc") && have("make"), "gcc and make");
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("proj", |d| {
        std::fs::write(d.join("util.h"), "int twice(int);\n").unwrap();
        std::fs::write(d.join("util.c"), "#include \"util.h\"\nint twice(int x) { return 2 * x; }\n").unwrap();
        std::fs::write(
            d.join("main.c"),
            "#include <stdio.h>\n#include \"util.h\"\nint main(void) { printf(\"%d\\n\", twice(21)); return 0; }\n",
        )
        .unwrap();
        std::fs::write(
            d.join("Makefile"),
            "app: main.o util.o\n\tgcc -o $@ $^\n%.o: %.c util.h\n\tgcc -c -o $@ $<\nclean:\n\trm -f app *.o\n",
        )
        .unwrap();
    });
    let mp = env.mount(Some("build"), &["proj"], "mnt");
    assert_eq!(ok_in(&mp, "make -s && ./app"), "42\n");
    // Unchanged sources: make finds nothing to do (stable times in the layers).
    assert!(ok_in(&mp, "make").contains("up to date"));
    ok_in(&mp, "sed -i 's/2 \\* x/3 * x/' util.c && make -s");
    assert_eq!(ok_in(&mp, "./app"), "63\n");
    env.umount(&mp);
    let new = env.zcommit_runtime("build").unwrap();
    let ro = env.mount(None, &["proj", &new.to_hex()], "ro");
    assert_eq!(ok_in(&ro, "./app"), "63\n");
    let names = ok_in(&ro, "ls");
    assert_eq!(
        names,
        "Makefile\napp\nmain.c\nmain.o\nutil.c\nutil.h\nutil.o\n"
    );
    let m = std::fs::metadata(ro.join("app")).unwrap();
    assert!(m.mode() & 0o111 != 0);
}

/// Extended attributes live on scratch entries (a layer file gets copied up for one), and
/// survive a remount of the runtime.
#[test]
fn xattrs_are_kept_on_scratch_files() {
    require!(have("python3"), "python3");
    let Some(env) = Env::with_base() else {
        return;
    };
    let mp = env.mount(Some("xa"), &["base"], "mnt");
    let script = r#"
import os, sys
os.chdir(sys.argv[1])
print(os.listxattr("existing"))
open("new", "w").close()
os.setxattr("new", "user.k", b"v1")
os.setxattr("existing", "user.k", b"v2")
print(os.getxattr("new", "user.k"), os.getxattr("existing", "user.k"), os.listxattr("new"))
os.removexattr("new", "user.k")
try:
    os.getxattr("new", "user.k")
except OSError as e:
    print("gone", e.errno == 61)
"#;
    let out = python(script, &[&mp]);
    assert_eq!(out, "[]\nb'v1' b'v2' ['user.k']\ngone True\n");
    env.umount(&mp);
    let mp = env.mount(Some("xa"), &[], "mnt2");
    let out = python(
        "import os, sys; print(os.getxattr(os.path.join(sys.argv[1], 'existing'), 'user.k'))",
        &[&mp],
    );
    assert_eq!(out, "b'v2'\n");
}

/// FIFOs, hard links inside scratch, chown, and permission checks for other users.
#[test]
fn fifos_hard_links_owners_and_permissions_work() {
    require!(have("setpriv"), "setpriv (util-linux)");
    let Some(env) = Env::with_base() else {
        return;
    };
    let mp = env.mount(Some("misc"), &["base"], "mnt");
    let out = ok_in(
        &mp,
        "mkfifo p && stat -c %F p && ln existing hard && stat -c %h hard && \
         echo more >> hard && cat existing && chown 1234:5678 hard && stat -c %u:%g existing",
    );
    assert_eq!(out, "fifo\n2\nbase line\nmore\n1234:5678\n");
    // default_permissions: the kernel checks modes for other users.
    let nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups";
    let out = sh_in(&mp, &format!("{nobody} sh -c 'echo x >> dir/lower'"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Permission denied"),
        "{err}"
    );
    ok_in(&mp, "chmod 777 dir && chmod 666 dir/lower");
    ok_in(
        &mp,
        &format!("{nobody} sh -c 'echo x >> dir/lower && touch dir/mine'"),
    );
    assert_eq!(ok_in(&mp, "stat -c %u dir/mine"), "65534\n");
    // A write or truncate by someone else drops setuid/setgid, as on any file system.
    ok_in(&mp, "chmod 6777 existing dir/lower");
    ok_in(
        &mp,
        &format!("{nobody} sh -c 'echo x >> existing && truncate -s 1 dir/lower'"),
    );
    // In scratch at once; the kernel may show the old mode until its attribute cache
    // expires (EDIT_TTL), as it is not told about a change the write itself made.
    let scratch = env.store().join("runtimes/misc/scratch-0");
    let mode = |p: &str| std::fs::metadata(scratch.join(p)).unwrap().mode() & 0o7777;
    assert_eq!((mode("existing"), mode("dir/lower")), (0o777, 0o777));
}

/// `>` and `truncate -s 0` over a layer file leave it empty (nothing is copied first), and
/// `sed -i` / vim-style saves (write a temporary, rename over) work.
#[test]
fn truncating_and_replacing_layer_files_work() {
    let Some(env) = Env::with_base() else {
        return;
    };
    let mp = env.mount(Some("tr"), &["base"], "mnt");
    let out = ok_in(
        &mp,
        "echo new > existing && cat existing && truncate -s 0 dir/lower && stat -c %s dir/lower && \
         stat -c %a existing && sed -i s/deep/DEEP/ dir/sub/deep && cat dir/sub/deep && \
         printf saved > .gone.swp && mv .gone.swp gone && cat gone",
    );
    assert_eq!(out, "new\n0\n640\nDEEP\nsaved");
}

/// Creating and removing entries updates the directory's mtime, also for a layer directory;
/// `run --edit` without `--name` names the runtime it made.
#[test]
fn directory_times_follow_changes_and_unnamed_runtimes_are_announced() {
    let Some(env) = Env::with_base() else {
        return;
    };
    let mp = env.mount(Some("times"), &["base"], "mnt");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = ok_in(
        &mp,
        "a=$(stat -c %Y dir); touch dir/new; b=$(stat -c %Y dir); rm dir/lower; \
         c=$(stat -c %Z dir); echo $a $b $c",
    );
    let t: Vec<u64> = out.split_whitespace().map(|n| n.parse().unwrap()).collect();
    // The layer directory shows the time it was committed with; a change makes it now.
    assert!(t[0] <= t[1] && t[1] <= t[2] && t[1] >= before, "{out}");
    env.serve();
    let out = env.edit_run(None, &["base"], r#"echo x > "$ZKIT_MOUNT/made""#);
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    let name = err
        .split_whitespace()
        .find(|w| w.starts_with("run-"))
        .expect("the runtime's name");
    let list = env.cmd("zcommit").arg("runtimes").output().unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(list.contains(&format!("{name}  changed  idle")), "{list}");
}

/// `tar xf` into an edit view gives what it gives in a plain directory: contents (partial
/// pages included), owners, modes and times, also after the daemon has let go of the runtime
/// and a new mount reads scratch. Writes are cached by the kernel and reach scratch later than
/// the owner, mode and times set after them; this is where an order mistake would show.
#[test]
fn an_extracted_archive_matches_a_plain_directory_before_and_after_a_remount() {
    require!(have("tar"), "tar");
    let Some(env) = Env::with_base() else {
        return;
    };
    let src = env.path("tree");
    std::fs::create_dir_all(&src).unwrap();
    ok_in(
        &src,
        "mkdir -p a/b && for n in 0 1 4095 4097 10000 200000; do head -c $n /dev/urandom > a/f$n; done && \
         printf x > a/b/small && ln -s ../a/f1 a/b/link && chmod 600 a/f0 && chmod 4755 a/f1 && \
         chown 1234:5678 a/f4095 a/b && chmod 2750 a/b && \
         touch -h -d @1000000000 a/f10000 a/b/link && touch -d @1234567890 a/b a && \
         tar cf ../tree.tar .",
    );
    let listing = "find . -mindepth 1 -printf '%p %y %s %m %U:%G %T@ %l\\n' | sort && \
                   find . -type f -exec md5sum {} + | sort";
    let plain = env.path("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let archive = env.path("tree.tar");
    let extract = format!("tar xf {}", archive.display());
    ok_in(&plain, &extract);
    let want = ok_in(&plain, listing);

    let mp = env.mount(Some("tar"), &["base"], "mnt");
    ok_in(&mp, &format!("mkdir x && cd x && {extract}"));
    assert_eq!(ok_in(&mp.join("x"), listing), want);
    env.umount(&mp);
    let mp = env.mount(Some("tar"), &[], "mnt2");
    assert_eq!(ok_in(&mp.join("x"), listing), want);
}

/// Open descriptors in an edit view behave as on a plain directory, in a single mount and in
/// a routed view alike: a file removed or renamed over while open keeps its data for whoever
/// has it (a layer file too, and written after its removal), `O_TRUNC` empties it for every
/// reader, appends from two descriptors interleave, shared mmaps write. Pages are dropped
/// before each read, so the reads reach the daemon. Nothing of the removed files reaches the
/// commit, and the daemon lets go of them once they are closed.
#[test]
fn open_files_outlive_their_names_like_on_a_plain_directory() {
    require!(util::have_fuse(), "needs root and /dev/fuse");
    require!(have("python3"), "python3");
    let script = r#"
import mmap, os, sys
os.chdir(sys.argv[1] if len(sys.argv) > 1 else os.environ["ZKIT_MOUNT"])
def read(fd):
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    return os.pread(fd, 100, 0)
fd = os.open("new", os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"hello")
os.unlink("new")
os.write(fd, b" world")
os.fsync(fd)
st = os.fstat(fd)
print("new", read(fd), st.st_size, st.st_nlink, os.path.exists("new"))
os.ftruncate(fd, 3)
os.fchmod(fd, 0o600)
print("new", read(fd), oct(os.fstat(fd).st_mode & 0o7777))
os.close(fd)
fd = os.open("dir/lower", os.O_RDONLY)
os.unlink("dir/lower")
print("lower", read(fd), os.path.exists("dir/lower"))
os.close(fd)
fd = os.open("existing", os.O_RDWR)
os.unlink("existing")
os.pwrite(fd, b"BASE", 0)
print("existing", read(fd), os.fstat(fd).st_size, oct(os.fstat(fd).st_mode & 0o7777))
os.close(fd)
with open("a", "w") as f:
    f.write("old a\n")
ra, rd = os.open("a", os.O_RDONLY), os.open("dir/sub/deep", os.O_RDONLY)
with open("b", "w") as f:
    f.write("new b\n")
os.rename("b", "a")
with open("c", "w") as f:
    f.write("new c\n")
os.rename("c", "dir/sub/deep")
print("renamed over", read(ra), read(rd), open("a").read(), open("dir/sub/deep").read())
os.close(ra)
os.close(rd)
r = os.open("gone", os.O_RDONLY)
print("gone", read(r))
w = os.open("gone", os.O_WRONLY | os.O_TRUNC)
os.write(w, b"xy")
print("gone", read(r), os.fstat(r).st_size)
os.close(w)
os.close(r)
a1 = os.open("log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
a2 = os.open("log", os.O_WRONLY | os.O_APPEND)
for fd, data in [(a1, b"1"), (a2, b"22"), (a1, b"333")]:
    os.write(fd, data)
os.close(a1)
os.close(a2)
fd = os.open("a", os.O_RDWR)
m = mmap.mmap(fd, 0)
m[0:3] = b"NEW"
m.flush()
m.close()
print("mmap", read(fd))
os.close(fd)
for d, dirs, files in sorted(os.walk(".")):
    dirs.sort()
    for n in sorted(files):
        p = os.path.join(d, n)
        print(p, oct(os.lstat(p).st_mode), open(p, "rb").read() if os.path.isfile(p) else "")
"#;
    let env = Env::new();
    env.layer("base", base_tree);
    let plain = env.path("plain");
    std::fs::create_dir(&plain).unwrap();
    base_tree(&plain);
    let want = python(script, &[&plain]);
    assert!(
        want.starts_with("new b'hello world' 11 0 False\n"),
        "{want}"
    );
    let tree = |out: &str| {
        let at = out.find("\n./").expect("a listing");
        out[at + 1..].to_owned()
    };

    let mp = env.mount(Some("single"), &["base"], "mnt");
    assert_eq!(python(script, &[&mp]), want, "single mount");
    let pid = server_pid(&mp).expect("the mount's server");
    // (The server's pin on its layers is a file made unnamed and then linked into
    // store/pins: /proc still shows its first, unnamed path.)
    let pins = env.path("store/pins");
    util::wait_for("the daemon to close removed files", TIMEOUT, || {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap();
        !fds.flatten().any(|fd| {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            target.to_string_lossy().ends_with(" (deleted)") && !target.starts_with(&pins)
        })
    });
    env.umount(&mp);

    env.serve();
    assert_eq!(env.python_run("routed", script), want, "routed view");

    // The committed trees hold what the plain directory holds, and no removed file.
    let listing = &script[script.find("for d, dirs").unwrap()..];
    let listing = format!("import os, sys\nos.chdir(sys.argv[1])\n{listing}");
    for runtime in ["single", "routed"] {
        let new = env.zcommit_runtime(runtime).unwrap();
        let ro = env.mount(None, &["base", &new.to_hex()], &format!("ro-{runtime}"));
        assert_eq!(python(&listing, &[&ro]), tree(&want), "{runtime} commit");
    }
}

/// A file written through a shared mapping and never synced (as linkers write their output)
/// is in the commit of a routed run: the pages reach scratch by inode, written back when the
/// mapping goes, while the view is still there to take them.
#[test]
fn pages_written_through_a_mapping_reach_the_commit_of_a_routed_run() {
    require!(have("python3"), "python3");
    let Some(env) = Env::with_base() else {
        return;
    };
    env.serve();
    let script = r#"
import mmap, os
os.chdir(os.environ["ZKIT_MOUNT"])
fd = os.open("out.bin", os.O_RDWR | os.O_CREAT, 0o755)
os.ftruncate(fd, 8192)
m = mmap.mmap(fd, 8192)
os.close(fd)
m[0:5] = b"hello"
m[4096:4101] = b"world"
m.close()
"#;
    env.python_run("ld", script);
    let new = env.zcommit_runtime("ld").unwrap();
    let dir = env.path("checkout");
    env.cmd("zcommit")
        .arg("checkout")
        .arg(&dir)
        .arg(new.to_hex())
        .assert()
        .success();
    let data = std::fs::read(dir.join("out.bin")).unwrap();
    assert_eq!(
        (&data[..5], &data[4096..4101]),
        (&b"hello"[..], &b"world"[..])
    );
}

/// Hard links in an edit view behave as in a plain directory: renaming or removing one name
/// of a linked file moves or removes that name and no other, in one directory and across
/// directories, on scratch files and on copied-up layer files, in a single mount and in a
/// routed view. Each view is read back through the mount and again from its commit.
#[test]
fn renaming_and_removing_hard_links_act_on_the_name_given() {
    require!(util::have_fuse(), "needs root and /dev/fuse");
    require!(have("python3"), "python3");
    let first = r#"ops = [
    (write, "f", "d\n"), (os.link, "f", "f.l"), (os.rename, "f.l", "f.r"),
    (os.link, "f.r", "f.2"), (os.rename, "f", "f.m"), (os.unlink, "f.2"),
    (os.mkdir, "a"), (os.mkdir, "b"), (write, "a/f", "a\n"), (os.link, "a/f", "b/g"),
    (os.rename, "b/g", "b/h"), (os.unlink, "b/h"),
    (write, "c", "c\n"), (os.link, "c", "a/c"), (os.rename, "c", "b/c"), (os.unlink, "a/c"),
    (os.link, "existing", "dir/ex.l"), (os.rename, "dir/ex.l", "dir/ex.r"),
    (os.rename, "existing", "ex.moved"), (write, "dir/ex.r", "through the link\n"),
    (os.link, "dir/lower", "lower.l"), (os.unlink, "dir/lower"),
    (os.rename, "lower.l", "dir/lower.back"),
    (os.link, "ex.moved", "same"), (os.rename, "same", "ex.moved"),
    (write, "o", "o\n"), (os.link, "o", "o.l"), (os.rename, "a/f", "o.l"),
    (os.link, "dir/sub/deep", "deep.l"), (os.rename, "deep.l", "dir/deep.r"),
    (os.unlink, "dir/sub/deep"), (os.link, "dir/deep.r", "dir/sub/deep"),
    (os.rename, "dir/deep.r", "gone"),
]"#;
    // On the links the first left, after a remount: the new daemon learns them from scratch.
    let again = r#"ops = [
    (os.rename, "f.r", "b/f.r"), (os.unlink, "f.m"), (os.rename, "same", "dir/same"),
    (os.unlink, "ex.moved"), (os.link, "dir/same", "again"), (os.rename, "dir/ex.r", "again"),
    (os.rename, "gone", "dir/sub/deep"), (os.unlink, "dir/sub/deep"), (os.rename, "b/c", "c"),
]"#;
    let template = r#"
import errno, os, sys
os.chdir(sys.argv[1] if len(sys.argv) > 1 else os.environ["ZKIT_MOUNT"])
def write(p, data):
    with open(p, "w") as f:
        f.write(data)
OPS
for op, *args in ops:
    try:
        op(*args)
        r = "ok"
    except OSError as e:
        r = errno.errorcode[e.errno]
    print(op.__name__, *args[:2], r)
for d, dirs, files in sorted(os.walk(".")):
    dirs.sort()
    for n in sorted(files):
        p = os.path.join(d, n)
        try:
            st = os.lstat(p)
            data = os.readlink(p) if os.path.islink(p) else open(p, "rb").read()
            print(p, oct(st.st_mode), st.st_nlink, data)
        except OSError as e:
            print(p, "listed but", errno.errorcode[e.errno], 0, "")
"#;
    let env = Env::new();
    env.layer("base", base_tree);
    let plain = env.path("plain");
    std::fs::create_dir(&plain).unwrap();
    base_tree(&plain);
    let script = template.replace("OPS", first);
    let want = python(&script, &[&plain]);
    assert!(want.contains("./f.m 0o100644 2 b'd\\n'\n"), "{want}");
    let mp = env.mount(Some("single"), &["base"], "mnt");
    assert_eq!(python(&script, &[&mp]), want, "single mount");
    env.umount(&mp);

    let script_again = template.replace("OPS", again);
    let want_again = python(&script_again, &[&plain]);
    assert!(
        want_again.contains("./again 0o100640 3 b'through"),
        "{want_again}"
    );
    let mp = env.mount(Some("single"), &[], "mnt-again");
    assert_eq!(python(&script_again, &[&mp]), want_again, "after a remount");
    env.umount(&mp);

    env.serve();
    assert_eq!(env.python_run("routed", &script), want, "routed view");

    // A commit does not record links: every name is a file of its own, with the same bytes.
    let files = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.starts_with("./"))
            .map(|l| {
                let f: Vec<&str> = l.splitn(4, ' ').collect();
                format!("{} {} {}", f[0], f[1], f[3])
            })
            .collect()
    };
    let listing = &script[script.find("for d, dirs").unwrap()..];
    let listing = format!("import errno, os, sys\nos.chdir(sys.argv[1])\n{listing}");
    for (runtime, want) in [("single", &want_again), ("routed", &want)] {
        let new = env.zcommit_runtime(runtime).unwrap();
        let dir = env.path(&format!("checkout-{runtime}"));
        env.cmd("zcommit")
            .arg("checkout")
            .arg(&dir)
            .args(["base", &new.to_hex()])
            .assert()
            .success();
        assert_eq!(
            files(&python(&listing, &[&dir])),
            files(want),
            "{runtime} commit"
        );
    }
}

/// Unix sockets and FIFOs in an edit view behave as in a plain directory, in a single mount
/// and in a routed view: `bind` makes a socket (in scratch, and in a layer directory), clients
/// connect through it, also by a new name or a hard link; `chmod`, `chown`, `utime`, `link`,
/// `rename` and `unlink` work on both kinds (a socket is never opened), and bytes go through
/// a FIFO. A commit of the runtime leaves them out and keeps the rest.
#[test]
fn sockets_and_fifos_work_like_in_a_plain_directory() {
    require!(util::have_fuse(), "needs root and /dev/fuse");
    require!(have("python3"), "python3");
    let script = r#"
import errno, os, socket, stat, sys
os.chdir(sys.argv[1] if len(sys.argv) > 1 else os.environ["ZKIT_MOUNT"])
def attempt(what, f, *args):
    try:
        r = f(*args)
        print(what, "ok" if r is None else r)
    except OSError as e:
        print(what, errno.errorcode[e.errno])
def talk(path):
    c = socket.socket(socket.AF_UNIX)
    c.connect(path)
    a, _ = server.accept()
    c.sendall(path.encode())
    r = a.recv(100)
    a.close()
    c.close()
    return r
def listen(path):
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.listen(4)
    return s
server = listen("sock")
attempt("talk", talk, "sock")
attempt("bind over", listen, "sock")
attempt("bind in a layer dir", lambda: listen("dir/sub/sock").close())
attempt("chmod sock", os.chmod, "sock", 0o600)
attempt("chown sock", os.chown, "sock", 1234, 5678)
attempt("utime sock", os.utime, "sock", (1000000000, 1000000000))
attempt("open sock", lambda: os.close(os.open("sock", os.O_RDONLY)))
attempt("link sock", os.link, "sock", "sock.l")
attempt("talk by link", talk, "sock.l")
attempt("rename sock", os.rename, "sock", "dir/sock.r")
attempt("talk after rename", talk, "dir/sock.r")
attempt("unlink sock", os.unlink, "sock.l")
st = os.lstat("dir/sock.r")
print("sock", stat.filemode(st.st_mode), st.st_nlink, st.st_uid, st.st_gid, st.st_mtime)
server.close()
def through(path):
    r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    w = os.open(path, os.O_WRONLY)
    os.write(w, path.encode())
    data = os.read(r, 100)
    os.close(w)
    os.close(r)
    return data
attempt("mkfifo", os.mkfifo, "fifo", 0o644)
attempt("mkfifo in a layer dir", os.mkfifo, "dir/fifo")
attempt("mkfifo over", os.mkfifo, "fifo")
attempt("through fifo", through, "fifo")
attempt("chmod fifo", os.chmod, "fifo", 0o600)
attempt("chown fifo", os.chown, "fifo", 4321, 8765)
attempt("utime fifo", os.utime, "fifo", (1000000000, 1000000000))
# Before more writes: the kernel does not tell a FUSE daemon of the times a pipe write sets.
st = os.lstat("fifo")
print("fifo", stat.filemode(st.st_mode), st.st_nlink, st.st_uid, st.st_gid, st.st_mtime)
attempt("truncate fifo", os.truncate, "fifo", 0)
attempt("link fifo", os.link, "fifo", "fifo.l")
attempt("through the link", through, "fifo.l")
attempt("rename fifo", os.rename, "dir/fifo", "fifo.2")
attempt("through the new name", through, "fifo.2")
attempt("unlink fifo", os.unlink, "fifo.l")
for d, dirs, files in sorted(os.walk(".")):
    dirs.sort()
    for n in sorted(files):
        p = os.path.join(d, n)
        st = os.lstat(p)
        data = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else ""
        print(p, stat.filemode(st.st_mode), st.st_nlink, data)
"#;
    let env = Env::new();
    env.layer("base", base_tree);
    let plain = env.path("plain");
    std::fs::create_dir(&plain).unwrap();
    base_tree(&plain);
    let want = python(script, &[&plain]);
    assert!(want.contains("talk after rename b'dir/sock.r'\n"), "{want}");
    assert!(want.contains("./dir/sock.r srw-------"), "{want}");

    let mp = env.mount(Some("single"), &["base"], "mnt");
    assert_eq!(python(script, &[&mp]), want, "single mount");
    env.umount(&mp);
    env.serve();
    assert_eq!(env.python_run("routed", script), want, "routed view");

    let kept = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.starts_with("./"))
            // Sockets are left out of a layer; files, symlinks and FIFOs come back.
            .filter(|l| matches!(l.split(' ').nth(1), Some(m) if m.starts_with(['-', 'l', 'p'])))
            .map(str::to_owned)
            .collect()
    };
    let listing = &script[script.find("for d, dirs").unwrap()..];
    let listing = format!("import os, stat, sys\nos.chdir(sys.argv[1])\n{listing}");
    for runtime in ["single", "routed"] {
        let new = env.zcommit_runtime(runtime).unwrap();
        let dir = env.path(&format!("checkout-{runtime}"));
        env.cmd("zcommit")
            .arg("checkout")
            .arg(&dir)
            .args(["base", &new.to_hex()])
            .assert()
            .success();
        assert_eq!(kept(&python(&listing, &[&dir])), kept(&want), "{runtime}");
    }
}

/// `fallocate(1)` on layer files (copied up first) and on new files gives in an edit view
/// what it gives in a plain directory on the scratch's file system: the same answer, size,
/// content and allocated blocks, in a single mount and in a routed view. The kernel's FUSE
/// client passes only preallocation, `KEEP_SIZE`, `PUNCH_HOLE` and `ZERO_RANGE` to a daemon;
/// it answers `COLLAPSE_RANGE` and `INSERT_RANGE` itself, with `EOPNOTSUPP`, and the file
/// stays as it was.
#[test]
fn fallocate_modes_match_a_plain_directory() {
    require!(util::have_fuse(), "needs root and /dev/fuse");
    require!(have("fallocate"), "fallocate (util-linux)");
    require!(have("setpriv"), "setpriv (util-linux)");
    let pattern: Vec<u8> = (0..=255u8).cycle().take(20480).collect();
    const MODES: [(&str, &str); 8] = [
        ("plain", "-o 4096 -l 40960"),
        ("keep", "-n -o 0 -l 1048576"),
        ("punch", "-p -o 4096 -l 8192"),
        ("zero", "-z -o 100 -l 30000"),
        ("zero-keep", "-z -n -o 16000 -l 10000"),
        ("collapse", "-c -o 4096 -l 8192"),
        ("insert", "-i -o 8192 -l 4096"),
        ("past-end", "-c -o 16384 -l 8192"),
    ];
    let files = |d: &Path| {
        for (m, _) in MODES {
            std::fs::write(d.join(format!("layer-{m}")), &pattern).unwrap();
        }
        std::fs::write(d.join("pattern"), &pattern).unwrap();
    };
    let mut script =
        String::from("set -u\necho \"pattern $(stat -c '%s %b' pattern) $(md5sum < pattern)\"\n");
    for kind in ["layer", "new"] {
        for (m, args) in MODES {
            let f = format!("{kind}-{m}");
            if kind == "new" {
                script += &format!("cat pattern > {f}\n");
            }
            script += &format!(
                "if err=$(fallocate {args} {f} 2>&1); then r=ok; else r=\"${{err##*: }}\"; fi\n\
                 echo \"{f} $r $(stat -c '%s %b' {f}) $(md5sum < {f})\"\n"
            );
        }
    }
    let env = Env::new();
    env.layer("base", files);
    let plain = env.path("plain");
    std::fs::create_dir(&plain).unwrap();
    files(&plain);
    let plain_out = ok_in(&plain, &script);
    assert!(plain_out.contains("layer-collapse ok 12288"), "{plain_out}");
    let untouched = plain_out
        .lines()
        .next()
        .unwrap()
        .strip_prefix("pattern ")
        .unwrap();
    let want: String = plain_out
        .lines()
        .map(|l| {
            let name = l.split(' ').next().unwrap();
            match ["-collapse", "-insert", "-past-end"]
                .iter()
                .any(|m| name.ends_with(m))
            {
                true => format!("{name} Operation not supported {untouched}\n"),
                false => format!("{l}\n"),
            }
        })
        .collect();

    let mp = env.mount(Some("single"), &["base"], "mnt");
    assert_eq!(ok_in(&mp, &script), want, "single mount");
    // Someone else's fallocate drops setuid and setgid, as their write would. In scratch at
    // once; the kernel may show the old mode until its attribute cache expires.
    let nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups";
    let suid = format!(
        "cat pattern > s && chmod 6777 s layer-plain && \
         {nobody} fallocate -z -o 0 -l 100 s && {nobody} fallocate -p -o 0 -l 100 layer-plain"
    );
    ok_in(&plain, &suid);
    ok_in(&mp, &suid);
    env.umount(&mp);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    let scratch = env.store().join("runtimes/single/scratch-0");
    for f in ["s", "layer-plain"] {
        assert_eq!(mode(&plain.join(f)), 0o777, "{f} in the plain directory");
        assert_eq!(mode(&scratch.join(f)), 0o777, "{f} in scratch");
    }
    env.serve();
    let out = env
        .cmd("zmount")
        .args(["run", "--edit", "--name", "routed", "base", "--"])
        .args(["sh", "-c", &format!("cd \"$ZKIT_MOUNT\" && {script}")])
        .output()
        .unwrap();
    assert_eq!(util::stdout_of(out, "zmount run"), want, "routed view");
}
