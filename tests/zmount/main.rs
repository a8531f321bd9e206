//! zmount against the real kernel: routed and single-view FUSE mounts, the daemon's lifecycle
//! and its control socket. Needs root and /dev/fuse (CI has both).
//!
//! Every test has its own store, daemon directory (socket, log) and mount point, and a guard
//! that stops the daemon and lazily unmounts on drop, panics included. Every command runs
//! with a timeout, so a broken mount fails a test instead of hanging CI.
// Tests: a thread the system refuses may fail them.
#![allow(clippy::disallowed_methods)]

mod damage;
mod errors;
mod lifecycle;
mod memory;
mod runtimes;
mod status;
#[path = "../util/mod.rs"]
mod util;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use util::{bin_path, have};
use zkit::digest::Digest;
use zkit::manifest::{Manifest, Node, NodeKind};
use zkit::store::Store;

const TIMEOUT: Duration = Duration::from_secs(60);

/// A store, a daemon directory and a mount point of one test; stops and unmounts on drop
/// (see [`util::StoreEnv`]).
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

    /// `zmount ARGS...` with the test's store and daemon directory, under a timeout.
    fn zmount(&self) -> assert_cmd::Command {
        self.cmd("zmount")
    }

    fn std_zmount(&self) -> Command {
        self.std_cmd("zmount")
    }

    /// Commit `files` (path -> content; a trailing `/` makes a directory, `@target` a
    /// symlink) as a layer tagged `tag`.
    fn layer(&self, tag: &str, files: &[(&str, &str)]) -> Digest {
        let mut root = Node::dir(0o755);
        let store = Store::open(&self.store()).unwrap();
        for (path, content) in files {
            let (path, node) = if let Some(dir) = path.strip_suffix('/') {
                (dir, Node::dir(0o755))
            } else if let Some(target) = content.strip_prefix('@') {
                (
                    *path,
                    Node {
                        mode: 0o777,
                        mtime: zkit::manifest::Time::FIXED,
                        kind: NodeKind::Symlink {
                            target: target.into(),
                        },
                    },
                )
            } else {
                (*path, blob_node(&store, content.as_bytes(), 0o644))
            };
            insert(&mut root, path, node);
        }
        let digest = store.put_layer(&Manifest::from_tree(&root)).unwrap();
        store.set_tag(tag, &digest).unwrap();
        digest
    }

    fn status_json(&self) -> serde_json::Value {
        let out = self.zmount().args(["status", "--json"]).output().unwrap();
        assert!(
            out.status.success(),
            "status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }
}

fn blob_node(store: &Store, content: &[u8], mode: u32) -> Node {
    let digest = Digest::of_blob(content);
    let path = store.blob_path(&digest);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    Node {
        mode,
        mtime: zkit::manifest::Time::FIXED,
        kind: NodeKind::File {
            size: content.len() as u64,
            digest,
        },
    }
}

fn insert(root: &mut Node, path: &str, node: Node) {
    let mut at = root;
    let parts: Vec<&str> = path.split('/').collect();
    for p in &parts[..parts.len() - 1] {
        at = at
            .children_mut()
            .unwrap()
            .entry(p.as_bytes().to_vec())
            .or_insert_with(|| Node::dir(0o755));
    }
    at.children_mut()
        .unwrap()
        .insert(parts.last().unwrap().as_bytes().to_vec(), node);
}

/// Commit a real directory tree (files, dirs, symlinks, modes) as a layer.
fn commit_tree(store: &Store, dir: &Path) -> Node {
    let meta = std::fs::symlink_metadata(dir).unwrap();
    let mut node = Node::dir(meta.mode());
    let mut entries: BTreeMap<Vec<u8>, Node> = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        let name = std::os::unix::ffi::OsStrExt::as_bytes(e.file_name().as_os_str()).to_vec();
        let child = if m.is_dir() {
            commit_tree(store, &e.path())
        } else if m.file_type().is_symlink() {
            Node {
                mode: 0o777,
                mtime: zkit::manifest::Time::FIXED,
                kind: NodeKind::Symlink {
                    target: std::fs::read_link(e.path()).unwrap().into(),
                },
            }
        } else {
            blob_node(store, &std::fs::read(e.path()).unwrap(), m.mode())
        };
        entries.insert(name, child);
    }
    *node.children_mut().unwrap() = entries;
    node
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| format!("<{e}>"))
}

fn wait_child(mut c: Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("child did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `run` whose CMD writes what it, a grandchild and a double-forked daemon read, then
/// waits for `go` so that two trees are alive at once.
fn spawn_tree(env: &Env, layer: &str, tag: &str) -> Child {
    let out = env.scratch.root().display().to_string();
    let script = format!(
        r#"cat "$ZKIT_MOUNT/which" > {out}/{tag}.child
sh -c 'sh -c "cat \"\$ZKIT_MOUNT/which\" > {out}/{tag}.grandchild"'
( setsid sh -c 'while [ ! -e {out}/go ]; do sleep 0.02; done; cat "$ZKIT_MOUNT/which" > {out}/{tag}.daemon' & )
touch {out}/{tag}.started
while [ ! -e {out}/go ]; do sleep 0.02; done"#
    );
    env.std_zmount()
        .args(["run", layer, "--", "sh", "-c", &script])
        .spawn()
        .unwrap()
}

#[test]
fn two_runs_see_their_own_layers_and_outsiders_see_an_empty_root() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("a", &[("which", "tree A\n"), ("only-a", "")]);
    env.layer("b", &[("which", "tree B\n"), ("only-b/", "")]);
    let a = spawn_tree(&env, "a", "a");
    util::wait_for("tree A to start", TIMEOUT, || {
        env.scratch.path("a.started").exists()
    });
    let b = spawn_tree(&env, "b", "b");
    util::wait_for("tree B to start", TIMEOUT, || {
        env.scratch.path("b.started").exists()
    });

    // This test process is in neither tree.
    assert!(
        util::names_in(&env.mnt()).is_empty(),
        "outsider sees an empty root"
    );
    assert!(!env.mnt().join("which").exists());
    let views = env.status_json()["views"].as_array().unwrap().len();
    assert_eq!(views, 2);

    std::fs::write(env.scratch.path("go"), "").unwrap();
    assert!(wait_child(a).success());
    assert!(wait_child(b).success());
    for (tag, want) in [("a", "tree A\n"), ("b", "tree B\n")] {
        for who in ["child", "grandchild", "daemon"] {
            assert_eq!(
                read(&env.scratch.path(&format!("{tag}.{who}"))),
                want,
                "{tag} {who}"
            );
        }
    }
    // `run` waited for the daemonised descendant, then unregistered.
    assert_eq!(env.status_json()["views"].as_array().unwrap().len(), 0);
}

#[test]
fn kernel_caches_never_leak_between_views() {
    let Some(env) = Env::fuse() else {
        return;
    };
    // Same sizes, same attributes: only the routing tells them apart.
    env.layer(
        "a",
        &[
            ("same", "AAAA\n"),
            ("d/", ""),
            ("d/f", "aaaa"),
            ("d/only-a", "x"),
        ],
    );
    env.layer(
        "b",
        &[
            ("same", "BBBB\n"),
            ("d/", ""),
            ("d/f", "bbbb"),
            ("d/only-b", "x"),
        ],
    );
    let script = r#"cat "$ZKIT_MOUNT/same" "$ZKIT_MOUNT/d/f"; echo; stat -c '%i %s' "$ZKIT_MOUNT/same"; ls "$ZKIT_MOUNT/d""#;
    let mut inodes = BTreeMap::new();
    for round in 0..15 {
        for (tag, want) in [("a", "AAAA\naaaa\n"), ("b", "BBBB\nbbbb\n")] {
            let out = env
                .zmount()
                .args(["run", tag, "--", "sh", "-c", script])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8(out.stdout).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(
                format!("{}\n{}\n", lines[0], lines[1]),
                want,
                "round {round} view {tag}"
            );
            assert_eq!(lines[3], format!("f\nonly-{tag}").lines().next().unwrap());
            assert_eq!(
                lines[4],
                format!("only-{tag}"),
                "round {round} view {tag} listing"
            );
            // A new registration is a new view: its inodes never repeat an old view's.
            assert!(
                inodes.insert(lines[2].to_string(), tag).is_none(),
                "inode reused: {}",
                lines[2]
            );
        }
    }
    // The outsider still sees nothing, even right after the views' walks.
    assert!(util::names_in(&env.mnt()).is_empty());
}

/// Fail (abort the test binary) instead of hanging if `done` is not set in time: the fifo
/// opens below block until the other side appears.
fn watchdog(what: &'static str) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + 2 * TIMEOUT;
        while Instant::now() < deadline {
            if d.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("watchdog: {what} hung; aborting");
        std::process::abort();
    });
    done
}

#[test]
fn long_lived_trees_reading_the_same_path_in_turn_never_see_each_other() {
    require!(util::have_fuse(), "needs root and /dev/fuse");
    trees_in_turn(&Env::new());
}

#[test]
fn a_read_only_daemon_isolates_views_too_and_refuses_editable_ones() {
    let Some(env) = Env::fuse() else {
        return;
    };
    // Zero-message opens: the kernel opens files by itself, so isolation rests on inodes alone.
    env.zmount()
        .args(["serve", "--read-only"])
        .assert()
        .success();
    trees_in_turn(&env);
    let out = env
        .zmount()
        .args(["run", "--edit", "a", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only views"));
}

/// Two trees stay alive and read the same paths in turn, 50 times each, with an outsider
/// looking in between.
fn trees_in_turn(env: &Env) {
    env.layer(
        "a",
        &[
            ("same", "AAAA\n"),
            ("d/", ""),
            ("d/f", "aaaa"),
            ("d/only-a", "x"),
            ("a-only", ""),
        ],
    );
    env.layer(
        "b",
        &[
            ("same", "BBBB\n"),
            ("d/", ""),
            ("d/f", "bbbb"),
            ("d/only-b", "x"),
            ("b-only", ""),
        ],
    );
    let done = watchdog("cache isolation");
    let mut trees = Vec::new();
    for tag in ["a", "b"] {
        let req = env.scratch.path(&format!("{tag}.req"));
        let resp = env.scratch.path(&format!("{tag}.resp"));
        util::sh(&format!("mkfifo '{}' '{}'", req.display(), resp.display()));
        // One answer per request line: content, size and listing through the same paths.
        let script = format!(
            r#"exec 3<'{req}' 4>'{resp}'
while read -r line <&3; do
  m=$ZKIT_MOUNT; cat "$m/same" "$m/d/f" >&4; echo >&4; stat -c '%s %h' "$m/same" >&4
  ls "$m/d" | tr '\n' ' ' >&4; ls "$m" | tr '\n' ' ' >&4; echo >&4; echo END >&4
done"#,
            req = req.display(),
            resp = resp.display()
        );
        let child = env
            .std_zmount()
            .args(["run", tag, "--", "sh", "-c", &script])
            .spawn()
            .unwrap();
        let w = std::fs::OpenOptions::new().write(true).open(&req).unwrap();
        let r = std::io::BufReader::new(std::fs::File::open(&resp).unwrap());
        trees.push((tag, child, w, r));
    }
    for round in 0..50 {
        for (tag, _, w, r) in trees.iter_mut() {
            writeln!(w, "go").unwrap();
            let mut answer = String::new();
            loop {
                let mut line = String::new();
                assert!(
                    std::io::BufRead::read_line(r, &mut line).unwrap() > 0,
                    "tree {tag} died"
                );
                if line == "END\n" {
                    break;
                }
                answer.push_str(&line);
            }
            let up = tag.to_uppercase();
            let want = format!(
                "{up}{up}{up}{up}\n{tag}{tag}{tag}{tag}\n5 1\nf only-{tag} {tag}-only d same \n"
            );
            assert_eq!(answer, want, "round {round}, tree {tag}");
        }
        // And the outsider, in between, with the same paths hot in the kernel's caches.
        assert!(
            !env.mnt().join("same").exists(),
            "round {round}: outsider sees a view"
        );
    }
    for (_, child, w, _) in trees {
        drop(w);
        assert!(wait_child(child).success());
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
}

#[test]
fn registration_ends_with_its_root_process() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("a", &[("which", "A")]);
    let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
    env.zmount()
        .args(["register", &sleeper.id().to_string(), "a"])
        .assert()
        .success();
    let views = env.status_json()["views"].clone();
    assert_eq!(views[0]["root_pid"], sleeper.id());
    // A registration names the process by PID and start time: the same PID with another
    // start time (what a reused PID looks like) is refused.
    let start = std::fs::read_to_string(format!("/proc/{}/stat", sleeper.id())).unwrap();
    let start: u64 = start
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    let mut s = UnixStream::connect(env.dir().join("control/socket")).unwrap();
    let req = serde_json::json!({"op": "register", "pid": sleeper.id(), "start": start + 1,
        "store": env.store(), "layers": [env.layer("b", &[("x", "")]).to_hex()]});
    writeln!(s, "{req}").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.contains("has exited"), "{reply}");
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    // Its PID may be reused by anyone from now on: the view must go with the process.
    util::wait_for("the dead root's view to go", TIMEOUT, || {
        env.status_json()["views"].as_array().unwrap().is_empty()
    });
}

#[test]
fn another_user_cannot_register_roots_process() {
    require!(have("setpriv"), "needs setpriv (util-linux)");
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("a", &[("which", "A")]);
    env.zmount().arg("serve").assert().success();
    let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
    let nobody = |caps: bool| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        if caps {
            // Let nobody through the 0700 directory, so the daemon's own check is what stops it.
            c.args(["--inh-caps=+dac_override", "--ambient-caps=+dac_override"]);
        }
        c.arg(bin_path("zmount"))
            .args(["register", &sleeper.id().to_string(), "a"])
            .env("ZMOUNT_DIR", env.dir())
            .env("ZKIT_STORE", env.store());
        c.output().unwrap()
    };
    let out = nobody(true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("belongs to uid 0"), "{err}");
    // Without the capability the 0700 directory already keeps it out.
    let out = nobody(false);
    assert_eq!(out.status.code(), Some(1));
    assert!(env.status_json()["views"].as_array().unwrap().is_empty());
    sleeper.kill().unwrap();
    let _ = sleeper.wait();
}

#[test]
fn garbage_on_the_socket_gets_an_error_and_the_daemon_serves_on() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.zmount().arg("serve").assert().success();
    let socket = env.dir().join("control/socket");
    let exchange = |bytes: &[u8]| {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        reply
    };
    assert!(exchange(b"garbage\n").contains("\"error\""));
    assert!(exchange(b"{\"op\":\"register\",\"pid\":\"x\"}\n").contains("malformed"));
    assert!(exchange(&[0xff; 1000]).contains("incomplete"));
    assert!(exchange(&vec![b'{'; 200_000]).contains("incomplete"));
    assert!(exchange(b"{\"op\":\"unregister\",\"pid\":4000000}\n").contains("no view"));
    // A client that connects and dies mid-request.
    drop(UnixStream::connect(&socket).unwrap());
    let mut half = UnixStream::connect(&socket).unwrap();
    half.write_all(b"{\"op\":").unwrap();
    drop(half);
    assert_eq!(env.status_json()["healthy"], true);
}

#[test]
fn single_view_mount_matches_the_committed_tree() {
    let Some(env) = Env::fuse() else {
        return;
    };
    let src = env.scratch.path("src");
    util::sh(&format!(
        "set -e; mkdir -p '{s}/bin' '{s}/share/doc/a b' '{s}/empty'; cd '{s}'
         printf 'hello\\n' > 'share/doc/a b/read me'; : > share/empty-file
         head -c 300000 /dev/urandom > share/big; printf '#!/bin/sh\\necho hi\\n' > bin/tool
         chmod 755 bin/tool; chmod 600 share/big; chmod 1777 empty; ln -s ../share/big bin/link
         ln -s /nonexistent dangling",
        s = src.display()
    ));
    let store = Store::open(&env.store()).unwrap();
    let digest = store
        .put_layer(&Manifest::from_tree(&commit_tree(&store, &src)))
        .unwrap();
    store.set_tag("tree", &digest).unwrap();
    let mnt = env.scratch.path("single");
    std::fs::create_dir(&mnt).unwrap();
    env.zmount()
        .args(["mount", "tree"])
        .arg(&mnt)
        .assert()
        .success();
    assert!(util::mounted(&mnt), "mount returns once ready");

    let listing = |d: &Path| {
        util::sh(&format!(
            "cd '{}' && find . ! -type d -printf '%p %y %m %s %l\\n' -o -printf '%p %y %m\\n' | sort",
            d.display()
        ))
    };
    assert_eq!(listing(&mnt), listing(&src));
    util::sh(&format!(
        "diff -r --no-dereference '{}' '{}'",
        src.display(),
        mnt.display()
    ));
    // Directory sizes are the file system's own business; everything else must match.
    let stat = |d: &Path| {
        util::sh(&format!(
            "cd '{}' && find . -print0 | sort -z | xargs -0 stat -c '%n %F %a %h' && \
             find . ! -type d -print0 | sort -z | xargs -0 stat -c '%n %s'",
            d.display()
        ))
    };
    assert_eq!(stat(&mnt), stat(&src));
    let tar = |d: &Path| {
        util::sh(&format!(
            "tar cf - --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1 -C '{}' . | sha256sum",
            d.display()
        ))
    };
    assert_eq!(tar(&mnt), tar(&src));
    assert_eq!(std::fs::read(mnt.join("bin/link")).unwrap().len(), 300000);
    // Read-only: writes answer EROFS.
    let err = std::fs::write(mnt.join("new"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(mnt.join("share/big"))
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));

    env.zmount().arg("umount").arg(&mnt).assert().success();
    assert!(!util::mounted(&mnt));
}

#[test]
fn status_lists_live_views_and_stop_leaves_no_mount() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("app/1.0", &[("x", "1")]);
    let flag = env.scratch.path("done");
    let child = env
        .std_zmount()
        .args(["run", "app/1.0", "--", "sh", "-c"])
        .arg(format!(
            "while [ ! -e '{}' ]; do sleep 0.02; done",
            flag.display()
        ))
        .spawn()
        .unwrap();
    util::wait_for("the view", TIMEOUT, || {
        env.std_zmount()
            .args(["status", "--json"])
            .output()
            .is_ok_and(|o| {
                serde_json::from_slice::<serde_json::Value>(&o.stdout)
                    .is_ok_and(|s| s["views"].as_array().is_some_and(|v| v.len() == 1))
            })
    });
    let s = env.status_json();
    let mountpoint = std::fs::canonicalize(env.mnt()).unwrap();
    assert_eq!(s["mountpoint"], mountpoint.to_str().unwrap());
    assert_eq!(s["views"][0]["layers"][0], "app/1.0");
    assert_eq!(s["views"][0]["root_pid"], child.id());
    let human = env.zmount().arg("status").output().unwrap();
    assert!(String::from_utf8_lossy(&human.stdout).contains("app/1.0"));
    std::fs::write(&flag, "").unwrap();
    assert!(wait_child(child).success());

    env.zmount().arg("stop").assert().success();
    assert!(!util::mounted(&env.mnt()), "stop unmounts");
    let out = env.zmount().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
}

#[test]
fn a_crashed_daemon_is_replaced_by_the_next_serve() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("a", &[("which", "A\n")]);
    env.zmount().arg("serve").assert().success();
    let pid = env.status_json()["pid"].as_u64().unwrap();
    util::sh(&format!("kill -9 {pid}"));
    util::wait_for("the daemon to die", TIMEOUT, || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    // Its socket and mount are left behind: the next `run` starts a daemon that recovers.
    let out = env.zmount().args(["status"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("stale control socket"));
    let out = env
        .zmount()
        .args(["run", "a", "--", "sh", "-c", "cat \"$ZKIT_MOUNT/which\""])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "A\n");
}

#[test]
fn sigterm_to_run_reaches_cmd_and_run_still_cleans_up() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("a", &[("x", "1")]);
    let ready = env.scratch.path("ready");
    let run = env
        .std_zmount()
        .args(["run", "a", "--", "sh", "-c"])
        .arg(format!(
            "trap 'exit 42' TERM; touch '{}'; while :; do sleep 0.02; done",
            ready.display()
        ))
        .spawn()
        .unwrap();
    util::wait_for("CMD to start", TIMEOUT, || ready.exists());
    util::sh(&format!("kill -TERM {}", run.id()));
    assert_eq!(
        wait_child(run).code(),
        Some(42),
        "run exits with CMD's status"
    );
    assert!(
        env.status_json()["views"].as_array().unwrap().is_empty(),
        "and unregistered first"
    );
}

#[test]
fn errors_name_the_fix() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("a", &[("x", "1")]);
    let out = env
        .zmount()
        .args(["run", "no/such", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("zmount: no/such: no such layer ("), "{err}");
    let out = env
        .zmount()
        .args(["mount", "a"])
        .arg(env.scratch.path("missing"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("mount point does not exist (create"));
    let out = env.zmount().arg("stop").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("daemon is not running (start it"));
    let out = env
        .zmount()
        .arg("umount")
        .arg(env.scratch.root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing is mounted there"));
    let out = env
        .zmount()
        .args(["run", "a", "--", "sh", "-c", "exit 7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "run exits with CMD's status");
    let out = env
        .zmount()
        .args(["run", "a", "--", "/no/such/cmd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
}
