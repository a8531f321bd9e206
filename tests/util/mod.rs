//! The one test harness: a fresh directory per test, a command for each binary, and the
//! prerequisites (root, tools) that a test states before it runs.
#![allow(dead_code)]

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use std::process::Command as Std;
use std::time::{Duration, Instant};

/// A fresh directory, removed when the test ends (immutable bits are lifted first).
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("zkit-test-")
            .tempdir()
            .expect("temp dir");
        Scratch { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).expect("write fixture");
        p
    }

    /// Names in the directory, sorted.
    pub fn names(&self) -> Vec<String> {
        names_in(self.root())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // chattr'd files would make the removal fail and leave litter behind.
        let _ = Std::new("chattr")
            .args(["-R", "-ia"])
            .arg(self.root())
            .output();
    }
}

pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A command for one of the package's binaries.
/// zmount's commands run on the FUSE backend unless a test asks for another
/// (`ZMOUNT_BACKEND`): the kernel backend has its own suite (tests/kernel).
pub fn bin(name: &str) -> Command {
    let mut c = Command::new(bin_path(name));
    if name == "zmount" {
        c.env("ZMOUNT_BACKEND", "fuse");
    }
    c
}

pub fn bin_path(name: &str) -> PathBuf {
    match name {
        "zwrite" => PathBuf::from(env!("CARGO_BIN_EXE_zwrite")),
        "zlink" => PathBuf::from(env!("CARGO_BIN_EXE_zlink")),
        "zcommit" => PathBuf::from(env!("CARGO_BIN_EXE_zcommit")),
        "zmount" => PathBuf::from(env!("CARGO_BIN_EXE_zmount")),
        other => panic!("unknown binary {other}"),
    }
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Run a shell snippet, panicking with its output if it fails.
pub fn sh(script: &str) -> String {
    let out = Std::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run sh");
    stdout_of(out, script)
}

/// The standard output of a command that must have succeeded (`what` names it on failure).
pub fn stdout_of(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "`{what}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn have(tool: &str) -> bool {
    Std::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// State what a test needs. Outside CI a missing prerequisite skips the test loudly; in CI
/// (`CI` set) it fails, so a machine without root or FUSE can never pass by skipping.
#[macro_export]
macro_rules! require {
    ($cond:expr, $why:expr) => {
        if !$cond {
            if std::env::var_os("CI").is_some() {
                panic!("prerequisite missing in CI: {}", $why);
            }
            eprintln!("SKIPPED {}: {}", module_path!(), $why);
            return;
        }
    };
}

/// [`require!`] for helpers that make a test's environment: `false` (and the test returns)
/// when `cond` does not hold outside CI, a failure in CI.
pub fn required(cond: bool, why: &str) -> bool {
    if !cond {
        if std::env::var_os("CI").is_some() {
            panic!("prerequisite missing in CI: {why}");
        }
        let test = std::thread::current().name().unwrap_or("?").to_string();
        eprintln!("SKIPPED {test}: {why}");
    }
    cond
}

pub fn lsattr(path: &Path) -> String {
    let out = sh(&format!("lsattr -d '{}'", path.display()));
    out.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted (lazily) on drop.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn new(size: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("zkit-tmpfs-")
            .tempdir()
            .expect("temp dir");
        sh(&format!(
            "mount -t tmpfs -o size={size} zkit-test '{}'",
            dir.path().display()
        ));
        Tmpfs { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Std::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Random bits for tests that pick random moments; seeded by the OS.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// A small file system of `kind` (`xfs` with reflinks, or `ext4`) in a sparse image file,
/// loop-mounted on a fresh directory; unmounted (lazily) and its loop device detached on drop.
/// Every external command runs under `timeout`, so a wedged mount fails the test instead of
/// hanging CI.
pub struct LoopFs {
    pub dir: tempfile::TempDir,
    image: PathBuf,
    _image_dir: tempfile::TempDir,
}

impl LoopFs {
    pub fn new(kind: &str) -> Self {
        let image_dir = tempfile::Builder::new()
            .prefix("zkit-img-")
            .tempdir()
            .expect("temp dir");
        let image = image_dir.path().join(format!("{kind}.img"));
        let mkfs = match kind {
            "xfs" => "mkfs.xfs -q -m reflink=1",
            "ext4" => "mkfs.ext4 -q -F",
            other => panic!("no loop file system recipe for {other}"),
        };
        sh(&format!(
            "truncate -s 300M '{0}' && timeout 60 {mkfs} '{0}'",
            image.display()
        ));
        let dir = tempfile::Builder::new()
            .prefix("zkit-loop-")
            .tempdir()
            .expect("temp dir");
        sh(&format!(
            "timeout 60 mount -o loop '{}' '{}'",
            image.display(),
            dir.path().display()
        ));
        LoopFs {
            dir,
            image,
            _image_dir: image_dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Std::new("chattr")
            .args(["-R", "-ia"])
            .arg(self.dir.path())
            .output();
        let devices = Std::new("losetup").arg("-j").arg(&self.image).output();
        let _ = Std::new("timeout")
            .args(["30", "umount", "-l"])
            .arg(self.dir.path())
            .status();
        // `mount -o loop` sets autoclear, but a lazy unmount may leave the device bound.
        if let Ok(out) = devices {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some(dev) = line.split(':').next() {
                    let _ = Std::new("losetup").args(["-d", dev]).output();
                }
            }
        }
    }
}

/// Root and /dev/fuse: what a real FUSE mount needs.
pub fn have_fuse() -> bool {
    is_root() && Path::new("/dev/fuse").exists()
}

/// Poll until `cond` holds, failing after `timeout` (never a fixed sleep).
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether something is mounted at `path` (by /proc/mounts).
pub fn mounted(path: &Path) -> bool {
    let p = std::fs::canonicalize(path).unwrap_or(path.to_owned());
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(1) == p.to_str())
}

/// A test's own store (`store`), zmount directory (`zm`: socket, log, default mount point
/// `zm/mnt`) and commands that use them, each under a timeout. Dropping it, panics included,
/// stops the daemon (forced: a test that failed half-way may leave views) and lazily unmounts
/// whatever is mounted below the test's directory, deepest first, so a broken mount fails a
/// test instead of hanging CI or the next test.
pub struct StoreEnv {
    pub scratch: Scratch,
    timeout: Duration,
}

impl StoreEnv {
    /// For a test that mounts: `None` (the test returns, see [`required`]) without root and
    /// /dev/fuse.
    pub fn for_fuse(timeout: Duration) -> Option<Self> {
        required(have_fuse(), "needs root and /dev/fuse").then(|| StoreEnv::new(timeout))
    }

    pub fn new(timeout: Duration) -> Self {
        let scratch = Scratch::new();
        std::fs::create_dir(scratch.path("store")).expect("store dir");
        // World-traversable, so tests that switch users can reach what they are meant to.
        std::fs::set_permissions(
            scratch.root(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod test dir");
        StoreEnv { scratch, timeout }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.scratch.path(name)
    }
    pub fn store(&self) -> PathBuf {
        self.path("store")
    }
    /// zmount's directory (`ZMOUNT_DIR`).
    pub fn dir(&self) -> PathBuf {
        self.path("zm")
    }
    /// The routed daemon's mount point.
    pub fn mnt(&self) -> PathBuf {
        self.path("zm/mnt")
    }

    /// One of the binaries with the test's store and zmount directory, under the timeout.
    pub fn cmd(&self, name: &str) -> Command {
        let mut c = bin(name);
        c.env("ZKIT_STORE", self.store())
            .env("ZMOUNT_DIR", self.dir())
            .timeout(self.timeout);
        c
    }

    /// `zmount run --edit [--name NAME] LAYERS... -- sh -c SCRIPT`: the script finds the
    /// view at `$ZKIT_MOUNT`; no LAYERS resumes the runtime.
    pub fn edit_run(
        &self,
        name: Option<&str>,
        layers: &[&str],
        script: &str,
    ) -> std::process::Output {
        let mut c = self.cmd("zmount");
        c.args(["run", "--edit"]);
        if let Some(name) = name {
            c.args(["--name", name]);
        }
        c.args(layers).args(["--", "sh", "-c", script]);
        c.output().expect("run zmount")
    }

    /// [`StoreEnv::cmd`] as a plain `std::process::Command` (for spawning), without the
    /// timeout.
    pub fn std_cmd(&self, name: &str) -> Std {
        let mut c = Std::new(bin_path(name));
        if name == "zmount" {
            c.env("ZMOUNT_BACKEND", "fuse");
        }
        c.env("ZKIT_STORE", self.store())
            .env("ZMOUNT_DIR", self.dir());
        c
    }
}

impl Drop for StoreEnv {
    fn drop(&mut self) {
        let _ = self
            .std_cmd("zmount")
            .args(["stop", "--force"])
            .stderr(std::process::Stdio::null())
            .status();
        // Every mount under the test's directory (a forced stop leaves its mount dead).
        let root = std::fs::canonicalize(self.scratch.root()).unwrap();
        let mut mounts: Vec<PathBuf> = std::fs::read("/proc/self/mountinfo")
            .unwrap_or_default()
            .split(|&b| b == b'\n')
            .filter_map(|l| l.split(|&b| b == b' ').nth(4).map(unescape_mount_path))
            .filter(|p| p.starts_with(&root))
            .collect();
        mounts.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for m in mounts {
            let _ = Std::new("umount")
                .arg("-l")
                .arg(&m)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// A mountinfo path field: space, tab, newline and backslash are `\ooo`.
pub fn unescape_mount_path(field: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let mut out = Vec::new();
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(std::str::from_utf8(o).ok()?, 8).ok());
        match (field[i], octal) {
            (b'\\', Some(v)) => {
                out.push(v);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}
