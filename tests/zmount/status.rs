//! `zmount status` for scripts: -q, -v, --json, and names that cannot break a line.

use super::*;
use std::os::unix::ffi::OsStrExt;

#[test]
fn status_quiet_prints_nothing_and_answers_by_exit_status() {
    let Some(env) = Env::fuse() else {
        return;
    };
    let out = env.zmount().args(["status", "-q"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "no daemon");
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("daemon is not running"));

    env.zmount().arg("serve").assert().success();
    let out = env.zmount().args(["status", "--quiet"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let out = env
        .zmount()
        .args(["status", "-q", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "-q and --json conflict");
}

/// What `zmount status` prints, line by line.
fn status_lines(env: &Env, args: &[&str]) -> Vec<String> {
    let out = env.zmount().arg("status").args(args).output().unwrap();
    util::stdout_of(out, "zmount status")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn status_names_with_newlines_and_spaces_stay_on_their_line() {
    let Some(env) = Env::fuse() else {
        return;
    };
    let digest = env.layer("a", &[("x", "1")]);
    let mnt = env.scratch.path("m nt\nviews: 7");
    std::fs::create_dir(&mnt).unwrap();
    env.zmount()
        .args(["serve", "--mountpoint"])
        .arg(&mnt)
        .assert()
        .success();
    // A client names its layers as it likes; this one tries to fake a view line.
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let req = serde_json::json!({
        "op": "register",
        "pid": sleeper.id(),
        "store": env.store().to_str().unwrap(),
        "layers": [digest.to_hex()],
        "names": ["a\n  view 99: pid 1 (uid 0), 0s old, 1 nodes: fake"],
    });
    let mut s = UnixStream::connect(env.dir().join("control/socket")).unwrap();
    s.write_all(format!("{req}\n").as_bytes()).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.contains("registered"), "{reply}");

    let lines = status_lines(&env, &[]);
    let canonical = std::fs::canonicalize(&mnt).unwrap();
    let quoted = zkit::quote::shell_escape(canonical.as_os_str().as_bytes());
    let quoted = String::from_utf8(quoted).unwrap();
    assert!(quoted.contains("$'\\n'"), "{quoted}");
    assert!(
        lines.contains(&format!("mount point: {quoted}")),
        "{lines:#?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("views: ")).count(),
        1,
        "{lines:#?}"
    );
    let views: Vec<&String> = lines.iter().filter(|l| l.starts_with("  view ")).collect();
    assert_eq!(views.len(), 1, "{lines:#?}");
    assert!(
        views[0].ends_with(": 'a'$'\\n''  view 99: pid 1 (uid 0), 0s old, 1 nodes: fake'"),
        "{lines:#?}"
    );
    // JSON keeps the exact names.
    let s = env.status_json();
    assert_eq!(s["mountpoint"], canonical.to_str().unwrap());
    assert!(s["views"][0]["layers"][0].as_str().unwrap().contains('\n'));
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    env.zmount().arg("stop").assert().success();
}

#[test]
fn status_verbose_shows_runtime_layers_socket_and_log() {
    let Some(env) = Env::fuse() else {
        return;
    };
    env.layer("a", &[("x", "1")]);
    env.layer("b", &[("y", "2")]);
    let flag = env.scratch.path("done");
    let run = env
        .std_zmount()
        .args(["run", "--edit", "--name", "dev", "a", "b", "--", "sh", "-c"])
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
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("\"runtime\": \"dev\""))
    });
    let plain = status_lines(&env, &[]);
    assert!(
        plain
            .iter()
            .any(|l| l.contains(", editing runtime dev: a b")),
        "{plain:#?}"
    );
    assert!(!plain.iter().any(|l| l.starts_with("socket: ")));
    let verbose = status_lines(&env, &["-v"]);
    for want in ["    layer 1: a", "    layer 2: b"] {
        assert!(verbose.iter().any(|l| l == want), "{want}: {verbose:#?}");
    }
    let socket = env.dir().join("control/socket");
    assert!(
        verbose.contains(&format!("socket: {}", socket.display())),
        "{verbose:#?}"
    );
    assert!(
        verbose
            .iter()
            .any(|l| l.starts_with("    root process start: "))
    );
    std::fs::write(&flag, "").unwrap();
    assert!(wait_child(run).success());
}
