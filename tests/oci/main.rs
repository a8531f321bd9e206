//! zcommit export/import/push/pull against the real other side: Debian's `docker-registry` on
//! loopback (started per test, killed on drop), `skopeo` and `umoci`. Needs root (umoci
//! unpack restores owners and devices; checkout makes device nodes).
//!
//! Trees are compared as a user would compare them: every path's kind, permission bits,
//! content, symlink target, device numbers and modification time (to the nanosecond).

mod auth;
mod blobs;
mod hostile;
#[path = "../util/mod.rs"]
mod util;
mod world;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use util::{Scratch, have, is_root};

const TIMEOUT: Duration = Duration::from_secs(120);

/// A test's directory and store.
pub struct Env {
    pub scratch: Scratch,
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

impl Env {
    pub fn new() -> Env {
        Env {
            scratch: Scratch::new(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.scratch.path(name)
    }

    /// `zcommit --store STORE ARGS...` under a timeout.
    pub fn zcommit(&self) -> assert_cmd::Command {
        let mut c = util::bin("zcommit");
        c.arg("--store").arg(self.path("store")).timeout(TIMEOUT);
        c
    }

    /// Run zcommit with `args`; its stdout (it must succeed).
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.zcommit().args(args).output().unwrap();
        util::stdout_of(out, &format!("zcommit {}", args.join(" ")))
    }

    /// Commit `dir` (relative to the scratch dir), markers read, tagged `tag`.
    pub fn commit(&self, dir: &str, tag: &str) -> String {
        let dir = self.path(dir);
        self.ok(&["--whiteouts", "--tag", tag, dir.to_str().unwrap()])
            .trim()
            .to_string()
    }

    /// `zcommit checkout` of `layers` into `dest`; the tree.
    pub fn checkout(&self, dest: &str, layers: &[&str]) -> Tree {
        let d = self.path(dest);
        let mut args = vec!["checkout", d.to_str().unwrap()];
        args.extend_from_slice(layers);
        self.ok(&args);
        tree(&d)
    }
}

/// Run a tool, panicking with its output if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    util::stdout_of(out, &format!("{cmd:?}"))
}

/// The prerequisites of every test here.
#[macro_export]
macro_rules! require_tools {
    () => {
        $crate::require!(
            is_root() && have("skopeo") && have("umoci") && Path::new(REGISTRY).exists(),
            "root, skopeo, umoci and docker-registry (ci/deps installs them)"
        );
    };
}

pub const REGISTRY: &str = "/usr/bin/docker-registry";

/// One path as a user sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub kind: String,
    pub mode: u32,
    pub mtime: (i64, i64),
}

pub type Tree = BTreeMap<PathBuf, Seen>;

/// Every path under `root` (not the root itself) with what a user would check.
pub fn tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn walk(root: &Path, rel: &Path, out: &mut Tree) {
    let mut names: Vec<_> = std::fs::read_dir(root.join(rel))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let path = root.join(&rel);
        let m = std::fs::symlink_metadata(&path).unwrap();
        let t = m.file_type();
        let kind = if t.is_dir() {
            "dir".to_string()
        } else if t.is_symlink() {
            format!(
                "symlink -> {}",
                std::fs::read_link(&path).unwrap().display()
            )
        } else if t.is_file() {
            format!(
                "file {:?}",
                String::from_utf8_lossy(&std::fs::read(&path).unwrap())
            )
        } else if t.is_fifo() {
            "fifo".to_string()
        } else if t.is_char_device() || t.is_block_device() {
            let c = if t.is_char_device() { 'c' } else { 'b' };
            format!(
                "{c} {}:{}",
                libc::major(m.rdev() as libc::dev_t),
                libc::minor(m.rdev() as libc::dev_t)
            )
        } else {
            "other".to_string()
        };
        // A symlink's own time is not what tools compare (and not all extractors set it).
        let mtime = if t.is_symlink() {
            (0, 0)
        } else {
            (m.mtime(), m.mtime_nsec())
        };
        out.insert(
            rel.clone(),
            Seen {
                kind,
                mode: m.mode() & 0o7777,
                mtime,
            },
        );
        if t.is_dir() {
            walk(root, &rel, out);
        }
    }
}

/// Assert two trees are equal, showing the first paths that differ.
pub fn assert_same(a: &Tree, b: &Tree, what: &str) {
    if a == b {
        return;
    }
    let mut diffs = Vec::new();
    for (p, x) in a {
        match b.get(p) {
            Some(y) if x == y => {}
            other => diffs.push(format!("{}: {x:?} vs {other:?}", p.display())),
        }
    }
    for p in b.keys().filter(|p| !a.contains_key(*p)) {
        diffs.push(format!("{}: missing vs {:?}", p.display(), b[p]));
    }
    panic!("{what}: trees differ:\n{}", diffs.join("\n"));
}

/// Debian's docker-registry on a free loopback port, with its own storage and log; killed
/// when dropped.
pub struct Registry {
    child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl Registry {
    pub fn start(env: &Env) -> Registry {
        Registry::start_with(env, "")
    }

    /// With `extra` appended to its configuration (top-level YAML sections).
    pub fn start_with(env: &Env, extra: &str) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = env.path("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {addr}\n{extra}",
                env.path("registry-data").display()
            ),
        )
        .unwrap();
        let log = env.path("registry.log");
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .unwrap();
        let reg = Registry { child, addr, log };
        let start = Instant::now();
        while std::net::TcpStream::connect(&reg.addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the registry did not start: {}",
                std::fs::read_to_string(&reg.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    /// Blob uploads the registry has started (one per blob sent).
    pub fn uploads(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .filter(|l| l.contains("\"POST /v2/") && l.contains("/blobs/uploads/"))
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `umoci unpack` of `image` (`DIR:REF`) into `bundle`; the rootfs tree.
pub fn umoci_unpack(env: &Env, image: &Path, reference: &str, bundle: &str) -> Tree {
    let b = env.path(bundle);
    run(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{reference}", image.display()))
        .arg(&b));
    tree(&b.join("rootfs"))
}
