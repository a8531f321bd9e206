//! Every tool's output paths, when stderr or stdout cannot be written: the documented exit
//! status, never a panic (101).

mod util;

use std::fs::File;
use std::process::{Command, Stdio};
use util::{Scratch, bin_path};

/// Run a tool with stderr on /dev/full (writes fail with ENOSPC); returns its exit status.
fn status_with_full_stderr(tool: &str, args: &[&str], env: &[(&str, &str)]) -> Option<i32> {
    Command::new(bin_path(tool))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::options().write(true).open("/dev/full").unwrap())
        .status()
        .unwrap()
        .code()
}

#[test]
fn every_tool_fails_with_its_own_status_when_stderr_is_full() {
    let s = Scratch::new();
    let missing = s.path("missing/f");
    let missing = missing.to_str().unwrap();
    let store = s.path("store");
    let runtime = s.path("run");
    std::fs::create_dir(&runtime).unwrap();
    let cases: [(&str, Vec<&str>); 4] = [
        ("zwrite", vec![missing]),
        ("zlink", vec![missing, s.root().to_str().unwrap()]),
        ("zcommit", vec!["--store", store.to_str().unwrap(), missing]),
        ("zmount", vec!["status"]),
    ];
    for (tool, args) in cases {
        let env = [("XDG_RUNTIME_DIR", runtime.to_str().unwrap())];
        assert_eq!(
            status_with_full_stderr(tool, &args, &env),
            Some(1),
            "{tool} {args:?}"
        );
    }
}

#[test]
fn zwrite_keeps_its_statuses_when_stderr_is_full() {
    let s = Scratch::new();
    let f = s.path("f");
    let f = f.to_str().unwrap();
    // Success with something to say (-v) is still success.
    assert_eq!(
        status_with_full_stderr("zwrite", &["-v", "--from", "/dev/null", f], &[]),
        Some(0)
    );
    // A usage error is still 2.
    assert_eq!(
        status_with_full_stderr("zwrite", &["--no-such-option", f], &[]),
        Some(2)
    );
}

#[test]
fn stdout_errors_fail_but_a_closed_pipe_does_not() {
    let s = Scratch::new();
    let a = s.write("a", b"x");
    let link = |dest: &str, stdout: Stdio| {
        let mut child = Command::new(bin_path("zlink"))
            .args(["-q", "--json"])
            .arg(&a)
            .arg(s.path(dest))
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A reader that goes away at once: the tool meets a closed pipe.
        drop(child.stdout.take());
        child.wait_with_output().unwrap()
    };
    let full = link(
        "b",
        File::options()
            .write(true)
            .open("/dev/full")
            .unwrap()
            .into(),
    );
    let err = String::from_utf8_lossy(&full.stderr);
    assert_eq!(full.status.code(), Some(1), "{err}");
    assert!(err.contains("standard output: cannot write"), "{err}");

    let closed = link("c", Stdio::piped());
    assert_eq!(
        closed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&closed.stderr)
    );
    assert!(closed.stderr.is_empty());
}
