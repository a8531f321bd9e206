//! Kernel views whose zmount was killed while their overlay lives on: a `run` killed alone
//! (CMD still writing in its namespace), a `mount` holder killed (the overlay still in the
//! host's table). The runtime stays taken and the layers pinned for as long as the overlay
//! is mounted anywhere, and are free, and swept, once it is gone.

use super::{Env, TIMEOUT, kernel_ready};
use crate::require;
use crate::util;
use rustix::process::{Pid, Signal, kill_process, kill_process_group};
use std::os::unix::process::CommandExt;
use std::path::Path;

fn kill(pid: u32) {
    kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::KILL).unwrap();
}

/// Kills a process group when dropped: a failed test leaves no writer behind.
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = kill_process_group(Pid::from_raw(self.0 as i32).unwrap(), Signal::KILL);
    }
}

/// Detaches whatever is still mounted at a path when dropped (a failed test's mount).
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

/// `zmount mount --backend kernel ARGS` at a new mount point, unmounted when the guard goes.
fn mount_kernel(env: &Env, args: &[&str]) -> (std::path::PathBuf, Unmount) {
    let mnt = env.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = env
        .cmd("zmount")
        .args(["mount", "--backend", "kernel"])
        .args(args)
        .arg(&mnt)
        .output()
        .unwrap();
    util::stdout_of(out, "zmount mount");
    (mnt.clone(), Unmount(mnt))
}

/// An editable kernel mount of a layer `base` as runtime `m`, its holder SIGKILLed and gone:
/// the overlay stays in the host's table with nobody holding it.
fn orphaned_mount(env: &Env) -> (std::path::PathBuf, Unmount) {
    env.layer("base", |d| std::fs::write(d.join("a"), "a\n").unwrap());
    let mounted = mount_kernel(env, &["--edit", "--name", "m", "base"]);
    let pid = holder(env);
    kill(pid);
    wait_dead(pid);
    mounted
}

/// `zcommit --runtime NAME --tag done`: whether it worked, and its stderr.
fn try_commit(env: &Env, name: &str) -> (bool, String) {
    let out = env
        .cmd("zcommit")
        .args(["--runtime", name, "--tag", "done"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), err)
}

/// The pid of the one kernel view `zmount status` lists.
fn holder(env: &Env) -> u32 {
    let out = env
        .cmd("zmount")
        .args(["status", "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&util::stdout_of(out, "status")).unwrap();
    json["kernel_views"][0]["root"]["pid"].as_u64().unwrap() as u32
}

fn wait_dead(pid: u32) {
    let proc = format!("/proc/{pid}/stat");
    // A zombie until reaped by init (the test is not its parent): gone or 'Z'.
    util::wait_for("the holder's end", TIMEOUT, || {
        std::fs::read_to_string(&proc).map_or(true, |s| s.contains(") Z "))
    });
}

/// SIGKILL of `run` alone: CMD goes on appending in the run's namespace. Until it ends,
/// neither a commit nor another run may take the runtime; after, the commit has every line.
#[test]
fn a_run_killed_alone_keeps_its_runtime_until_cmd_ends() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    env.layer("base", |d| {
        std::fs::write(d.join("log"), "start\n").unwrap()
    });
    let (ready, stop) = (env.path("ready"), env.path("stop"));
    // CMD closes the inherited descriptors it can, as a daemon would: what keeps the
    // runtime taken must not be a descriptor.
    let script = format!(
        "exec 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-; cd \"$ZKIT_MOUNT\"; i=0; \
         while [ ! -e '{stop}' ]; do i=$((i+1)); echo $i >> log; [ $i = 5 ] && touch '{ready}'; \
         sleep 0.01; done; echo end >> log",
        stop = stop.display(),
        ready = ready.display()
    );
    let mut run = env
        .std_cmd("zmount")
        .args([
            "run",
            "--backend",
            "kernel",
            "--edit",
            "--name",
            "w",
            "base",
        ])
        .args(["--", "sh", "-c"])
        .arg(&script)
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _group = Group(run.id());
    util::wait_for("writes", TIMEOUT, || ready.exists());
    kill(run.id());
    run.wait().unwrap();
    let (ok, err) = try_commit(&env, "w");
    assert!(!ok, "committed while CMD still writes");
    assert!(err.contains("still written by the overlay"), "{err}");
    let out = env
        .cmd("zmount")
        .args([
            "run",
            "--backend",
            "kernel",
            "--edit",
            "--name",
            "w",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a second run took the runtime");
    let out = env.cmd("zcommit").arg("runtimes").output().unwrap();
    assert!(util::stdout_of(out, "runtimes").contains("in-use"));
    // The run's pin outlives it too, for as long as its overlay does.
    let pins = env.store().join("pins");
    env.cmd("zcommit").arg("gc").assert().success();
    assert_eq!(util::names_in(&pins).len(), 1, "the killed run's pin stays");
    std::fs::write(&stop, "").unwrap();
    util::wait_for("the runtime", TIMEOUT, || try_commit(&env, "w").0);
    env.cmd("zcommit").arg("gc").assert().success();
    assert!(
        util::names_in(&pins).is_empty(),
        "{:?}",
        util::names_in(&pins)
    );
    env.checkout("out", &["base", "done"]);
    let log = std::fs::read_to_string(env.path("out/log")).unwrap();
    assert!(
        log.starts_with("start\n1\n2\n") && log.ends_with("\nend\n"),
        "{log}"
    );
}

/// A read-only kernel mount whose holder is SIGKILLed: gc keeps every layer it shows while
/// it is mounted; after the unmount, gc removes the pin and the layers.
#[test]
fn a_kernel_mount_whose_holder_was_killed_keeps_its_layers_from_gc() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    let lower = env.layer("lower", |d| {
        std::fs::write(d.join("a"), "lower a\n").unwrap()
    });
    let upper = env.layer("upper", |d| {
        std::fs::write(d.join("b"), "upper b\n").unwrap()
    });
    let (mnt, _unmount) = mount_kernel(&env, &[&lower, &upper]);
    let pid = holder(&env);
    kill(pid);
    wait_dead(pid);
    env.cmd("zcommit")
        .args(["untag", "lower", "upper"])
        .assert()
        .success();
    env.cmd("zcommit").arg("gc").assert().success();
    let read = |p: &str| std::fs::read_to_string(mnt.join(p)).unwrap();
    assert_eq!(
        (read("a"), read("b")),
        ("lower a\n".into(), "upper b\n".into())
    );
    let pins = env.store().join("pins");
    assert_eq!(
        util::names_in(&pins).len(),
        1,
        "the killed holder's pin stays"
    );
    assert_eq!(layers(&env.store()), 2);
    let out = env.cmd("zmount").arg("umount").arg(&mnt).output().unwrap();
    util::stdout_of(out, "zmount umount");
    env.cmd("zcommit").arg("gc").assert().success();
    assert!(
        util::names_in(&pins).is_empty(),
        "{:?}",
        util::names_in(&pins)
    );
    assert_eq!(layers(&env.store()), 0);
}

/// An editable kernel mount whose holder is SIGKILLed: the runtime stays taken until the
/// overlay is unmounted, then commits what was written through it.
#[test]
fn a_kernel_mount_whose_holder_was_killed_keeps_its_runtime_until_unmounted() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    let (mnt, _unmount) = orphaned_mount(&env);
    std::fs::write(mnt.join("b"), "after the kill\n").unwrap();
    let (ok, err) = try_commit(&env, "m");
    assert!(!ok && err.contains(&mnt.display().to_string()), "{err}");
    let out = env.cmd("zmount").arg("umount").arg(&mnt).output().unwrap();
    util::stdout_of(out, "zmount umount");
    let (ok, err) = try_commit(&env, "m");
    assert!(ok, "{err}");
    env.checkout("out", &["base", "done"]);
    assert_eq!(
        std::fs::read_to_string(env.path("out/b")).unwrap(),
        "after the kill\n"
    );
}

/// A kernel run started while an editable kernel mount (its holder killed) is up does not
/// keep that overlay alive in its namespace: once unmounted on the host, its runtime commits
/// while the run goes on.
#[test]
fn a_run_does_not_keep_a_view_mounted_elsewhere() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    let (mnt, _unmount) = orphaned_mount(&env);
    std::fs::write(mnt.join("b"), "through the mount\n").unwrap();
    let (ready, stop) = (env.path("ready"), env.path("stop"));
    let script = format!(
        "touch '{ready}'; while [ ! -e '{stop}' ]; do sleep 0.01; done",
        stop = stop.display(),
        ready = ready.display()
    );
    let mut run = env
        .std_cmd("zmount")
        .args(["run", "--backend", "kernel", "base", "--", "sh", "-c"])
        .arg(&script)
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _group = Group(run.id());
    util::wait_for("the run", TIMEOUT, || ready.exists());
    let out = env.cmd("zmount").arg("umount").arg(&mnt).output().unwrap();
    util::stdout_of(out, "zmount umount");
    let (ok, err) = try_commit(&env, "m");
    std::fs::write(&stop, "").unwrap();
    assert!(run.wait().unwrap().success());
    assert!(ok, "the run kept the unmounted view's runtime taken: {err}");
    env.checkout("out", &["base", "done"]);
    assert_eq!(
        std::fs::read_to_string(env.path("out/b")).unwrap(),
        "through the mount\n"
    );
}

/// How many layers the store holds.
fn layers(store: &Path) -> usize {
    let dir = store.join("layers");
    walk(&dir)
}

fn walk(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type().unwrap().is_dir() {
            true => walk(&e.path()),
            false => 1,
        })
        .sum()
}
