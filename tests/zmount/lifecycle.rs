//! How servers end while processes still use their mounts: `zmount stop` (refused, forced),
//! a killed daemon, a signalled or killed single-view server. A process inside a view must
//! never have a write "succeed" into the directory beneath the mount point: it gets errors.

use super::*;

/// Where a writer's files go: by absolute path (a fresh lookup from `/` each time) or
/// relative to a working directory inside the mount.
#[derive(Clone, Copy)]
enum Path_ {
    Absolute,
    Cwd,
}

/// A shell loop that tries one small write after another in the mount at `$M` and logs each
/// outcome (`ok N` or `err N`) outside it, until its stop file exists.
struct Writer {
    log: PathBuf,
    stop: PathBuf,
    child: Option<Child>,
}

impl Writer {
    fn script(env: &Env, name: &str, how: Path_) -> (String, PathBuf, PathBuf) {
        let log = env.scratch.path(&format!("{name}.log"));
        let stop = env.scratch.path(&format!("{name}.stop"));
        let (setup, target) = match how {
            Path_::Absolute => ("", format!("\"$M\"/{name}-")),
            Path_::Cwd => ("cd \"$M\" || exit 9", format!("{name}-")),
        };
        let script = format!(
            r#"{setup}
i=0
while [ ! -e '{stop}' ]; do
  i=$((i+1))
  if ( echo "$i" > {target}$i ) 2>/dev/null; then echo "ok $i" >> '{log}'; else echo "err $i" >> '{log}'; fi
  sleep 0.01
done"#,
            stop = stop.display(),
            log = log.display(),
        );
        (script, log, stop)
    }

    /// A writer in a `zmount run --edit` view of `layer` (its mount is `$ZKIT_MOUNT`).
    fn in_run(env: &Env, name: &str, layer: &str, how: Path_) -> Writer {
        let (script, log, stop) = Writer::script(env, name, how);
        let child = env
            .std_zmount()
            .args(["run", "--edit", "--name", name, layer, "--", "sh", "-c"])
            .arg(format!("M=\"$ZKIT_MOUNT\"\n{script}"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Writer {
            log,
            stop,
            child: Some(child),
        }
    }

    /// A writer in the mount at `mnt` (a single-view mount: every process sees it).
    fn at(env: &Env, name: &str, mnt: &Path, how: Path_) -> Writer {
        let (script, log, stop) = Writer::script(env, name, how);
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("M", mnt)
            .spawn()
            .unwrap();
        Writer {
            log,
            stop,
            child: Some(child),
        }
    }

    /// Each attempt so far: did the write succeed?
    fn outcomes(&self) -> Vec<bool> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| l.starts_with("ok "))
            .collect()
    }

    fn wait_for_writes(&self, n: usize) {
        util::wait_for("the writer's writes to succeed", TIMEOUT, || {
            self.outcomes().iter().filter(|&&ok| ok).count() >= n
        });
    }

    /// From the moment the caller's action was complete (`since` attempts had been logged by
    /// then), the writer must see errors: at most the one attempt in flight (done, not yet
    /// logged) succeeds, and after the first error every attempt fails (ten more are watched).
    fn assert_only_errors_since(&self, since: usize, what: &str) {
        util::wait_for("more attempts", TIMEOUT, || {
            self.outcomes().len() >= since + 12
        });
        let o = self.outcomes();
        let after = &o[since..];
        let first_err = after.iter().position(|&ok| !ok).unwrap_or(after.len());
        assert!(
            first_err <= 1,
            "{what}: {first_err} writes succeeded after it returned (log {})",
            self.log.display()
        );
        assert!(
            after[first_err..].iter().all(|&ok| !ok),
            "{what}: a write succeeded after the first error (log {}): it went somewhere \
             no runtime sees",
            self.log.display()
        );
    }

    fn finish(&mut self) -> std::process::ExitStatus {
        std::fs::write(&self.stop, "").unwrap();
        wait_child(self.child.take().unwrap())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.stop, "");
        if let Some(mut c) = self.child.take() {
            // The loop sees its stop file within a turn, and a `zmount run` ends with it.
            // Killing the run at once would leave the loop running, looking for a stop file
            // that goes with the test's directory.
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether a process has exited (a zombie has: its descriptors are closed).
fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

/// Once nobody uses it any more: take every mount at `mnt` away and list what lies beneath.
fn beneath(mnt: &Path) -> Vec<String> {
    while util::mounted(mnt) {
        util::sh(&format!("umount -l '{}'", mnt.display()));
    }
    util::names_in(mnt)
}

#[test]
fn stop_refuses_while_views_are_in_use_and_names_them() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("a", &[("x", "1")]);
    let mut w = Writer::in_run(&env, "w", "a", Path_::Absolute);
    w.wait_for_writes(3);

    let out = env.zmount().arg("stop").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let mnt = std::fs::canonicalize(env.mnt()).unwrap();
    assert!(
        err.starts_with(&format!(
            "zmount: {}: 1 view is in use (view ",
            mnt.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("of pid {}: a", w.child.as_ref().unwrap().id())),
        "{err}"
    );
    assert!(err.contains("zmount stop --force"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    // Nothing changed: the daemon serves on and the writer's writes keep succeeding.
    let before = w.outcomes().len();
    util::wait_for("more writes", TIMEOUT, || {
        w.outcomes()[before..].iter().filter(|&&ok| ok).count() >= 3
    });
    assert!(w.outcomes()[before..].iter().all(|&ok| ok));
    assert!(w.finish().success());
    env.zmount().arg("stop").assert().success();
    assert!(!util::mounted(&env.mnt()), "a stop with no views unmounts");
}

#[test]
fn stop_force_gives_views_errors_and_nothing_lands_beneath_the_mount() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("a", &[("x", "1")]);
    let abs = Writer::in_run(&env, "abs", "a", Path_::Absolute);
    let cwd = Writer::in_run(&env, "cwd", "a", Path_::Cwd);
    abs.wait_for_writes(3);
    cwd.wait_for_writes(3);
    let out = env.zmount().arg("stop").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2 views are in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Writes go on succeeding while the daemon stops (they reach the runtime); from the
    // moment `stop` returns, none may.
    env.zmount().args(["stop", "--force"]).assert().success();
    let marks = (abs.outcomes().len(), cwd.outcomes().len());
    abs.assert_only_errors_since(marks.0, "stop --force (absolute paths)");
    cwd.assert_only_errors_since(marks.1, "stop --force (cwd in the mount)");
    assert!(
        util::mounted(&env.mnt()),
        "the dead mount stays while they run"
    );
    drop((abs, cwd));
    assert_eq!(beneath(&env.mnt()), Vec::<String>::new());
}

#[test]
fn a_killed_daemon_leaves_errors_until_the_next_run_replaces_its_mount() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("a", &[("which", "A\n")]);
    let abs = Writer::in_run(&env, "abs", "a", Path_::Absolute);
    let cwd = Writer::in_run(&env, "cwd", "a", Path_::Cwd);
    abs.wait_for_writes(3);
    cwd.wait_for_writes(3);
    let pid = env.status_json()["pid"].as_u64().unwrap();
    util::sh(&format!("kill -9 {pid}"));
    util::wait_for("the daemon to die", TIMEOUT, || exited(pid as u32));
    let marks = (abs.outcomes().len(), cwd.outcomes().len());
    abs.assert_only_errors_since(marks.0, "kill -9 (absolute paths)");
    cwd.assert_only_errors_since(marks.1, "kill -9 (cwd in the mount)");

    // The next run starts a daemon that puts its mount in place of the dead one, and the
    // writers, in no view of the new daemon, keep getting errors throughout.
    let marks = (abs.outcomes().len(), cwd.outcomes().len());
    let out = env
        .zmount()
        .args(["run", "a", "--", "sh", "-c", "cat \"$ZKIT_MOUNT/which\""])
        .output()
        .unwrap();
    assert_eq!(util::stdout_of(out, "zmount run"), "A\n");
    abs.assert_only_errors_since(marks.0, "the new daemon (absolute paths)");
    cwd.assert_only_errors_since(marks.1, "the new daemon (cwd in the dead mount)");
    drop((abs, cwd));
    env.zmount().arg("stop").assert().success();
    assert_eq!(beneath(&env.mnt()), Vec::<String>::new());
}

#[test]
fn sigterm_to_a_daemon_with_views_leaves_them_errors_not_the_directory_beneath() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("a", &[("x", "1")]);
    let abs = Writer::in_run(&env, "abs", "a", Path_::Absolute);
    abs.wait_for_writes(3);
    let pid = env.status_json()["pid"].as_u64().unwrap() as u32;
    // A signal cannot be refused: it is a forced stop.
    util::sh(&format!("kill -TERM {pid}"));
    util::wait_for("the daemon to exit", TIMEOUT, || exited(pid));
    let mark = abs.outcomes().len();
    abs.assert_only_errors_since(mark, "SIGTERM to the daemon");
    drop(abs);
    assert_eq!(beneath(&env.mnt()), Vec::<String>::new());
}

#[test]
fn a_daemon_stops_on_sigterm_even_when_its_socket_was_removed() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.zmount().arg("serve").assert().success();
    let pid = env.status_json()["pid"].as_u64().unwrap() as u32;
    std::fs::remove_file(env.dir().join("control/socket")).unwrap();
    util::sh(&format!("kill -TERM {pid}"));
    util::wait_for("the daemon to exit", TIMEOUT, || exited(pid));
    assert!(!util::mounted(&env.mnt()), "no views: it unmounted");
}

/// `zmount mount --foreground --edit --name single a MNT`, as a child; returns once mounted.
fn single_server(env: &Env, mnt: &Path) -> Child {
    std::fs::create_dir_all(mnt).unwrap();
    let child = env
        .std_zmount()
        .args(["mount", "--foreground", "--edit", "--name", "single", "a"])
        .arg(mnt)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    util::wait_for("the single-view mount", TIMEOUT, || util::mounted(mnt));
    child
}

#[test]
fn a_signalled_single_mount_in_use_is_left_dead_not_detached() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("a", &[("x", "1")]);
    let mnt = env.scratch.path("single");
    let server = single_server(&env, &mnt);
    let abs = Writer::at(&env, "abs", &mnt, Path_::Absolute);
    let cwd = Writer::at(&env, "cwd", &mnt, Path_::Cwd);
    abs.wait_for_writes(3);
    cwd.wait_for_writes(3);
    util::sh(&format!("kill -TERM {}", server.id()));
    wait_child(server);
    let marks = (abs.outcomes().len(), cwd.outcomes().len());
    abs.assert_only_errors_since(marks.0, "SIGTERM (absolute paths)");
    cwd.assert_only_errors_since(marks.1, "SIGTERM (cwd in the mount)");
    drop((abs, cwd));
    assert_eq!(beneath(&mnt), Vec::<String>::new());
}

#[test]
fn a_signalled_single_mount_nobody_uses_unmounts_and_keeps_its_writes() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("a", &[("x", "1")]);
    let mnt = env.scratch.path("single");
    let server = single_server(&env, &mnt);
    std::fs::write(mnt.join("kept"), "written through the kernel's cache\n").unwrap();
    util::sh(&format!("kill -TERM {}", server.id()));
    assert!(wait_child(server).success());
    assert!(!util::mounted(&mnt));
    assert_eq!(util::names_in(&mnt), Vec::<String>::new());
    let server = single_server(&env, &mnt);
    assert_eq!(
        read(&mnt.join("kept")),
        "written through the kernel's cache\n"
    );
    util::sh(&format!("kill -TERM {}", server.id()));
    wait_child(server);
}

#[test]
fn a_killed_single_mount_is_replaced_by_the_next_mount_without_a_gap() {
    require!(have("strace"), "needs strace");
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("a", &[("x", "1")]);
    let mnt = env.scratch.path("single");
    let server = single_server(&env, &mnt);
    let abs = Writer::at(&env, "abs", &mnt, Path_::Absolute);
    let cwd = Writer::at(&env, "cwd", &mnt, Path_::Cwd);
    abs.wait_for_writes(3);
    cwd.wait_for_writes(3);
    util::sh(&format!("kill -9 {}", server.id()));
    wait_child(server);
    let marks = (abs.outcomes().len(), cwd.outcomes().len());
    abs.assert_only_errors_since(marks.0, "kill -9 (absolute paths)");
    cwd.assert_only_errors_since(marks.1, "kill -9 (cwd in the mount)");

    // A read-only mount of the layer replaces the dead one: the absolute writer now meets
    // a read-only file system, the one in the dead mount ENOTCONN, and neither reaches the
    // directory beneath. The new server's move_mount is slowed down, so that a gap between
    // taking the dead mount away and putting the new one in place would be seen.
    let marks = (abs.outcomes().len(), cwd.outcomes().len());
    let server = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=move_mount,umount2",
        ])
        .args(["-e", "inject=move_mount:delay_enter=300000"])
        .arg(bin_path("zmount"))
        .args(["mount", "--foreground", "--backend", "fuse", "a"])
        .arg(&mnt)
        .env("ZKIT_STORE", env.store())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    util::wait_for("the new mount", TIMEOUT, || read(&mnt.join("x")) == "1");
    abs.assert_only_errors_since(marks.0, "the new mount (absolute paths)");
    cwd.assert_only_errors_since(marks.1, "the new mount (cwd in the dead mount)");
    drop((abs, cwd));
    // Unmounting ends the server (a signal would reach strace, not it).
    env.zmount().arg("umount").arg(&mnt).assert().success();
    wait_child(server);
    assert_eq!(beneath(&mnt), Vec::<String>::new());
}
